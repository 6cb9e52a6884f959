"""The log: genesis, blocks, events and Merkle nodes.

Revision ID: 0001_log
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_log"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "blocks",
        sa.Column("height", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("block_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("header", sa.LargeBinary(), nullable=False),
        sa.Column("commit", sa.LargeBinary(), nullable=True),
        sa.Column("first_index", sa.BigInteger(), nullable=False),
        sa.Column("event_count", sa.Integer(), nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.LargeBinary(32), nullable=False, unique=True),
        sa.Column("height", sa.BigInteger(), sa.ForeignKey("blocks.height"), nullable=False),
        sa.Column("leaf", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_events_height", "events", ["height"])
    op.create_table(
        "merkle_nodes",
        sa.Column("key", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("merkle_nodes")
    op.drop_index("ix_events_height", "events")
    op.drop_table("events")
    op.drop_table("blocks")
    op.drop_table("meta")
