"""EPCIS events captured into the ledger, by their CBV 2.0 event hash id.

Revision ID: 0003_epcis
Revises: 0002_state
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_epcis"
down_revision = "0002_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "epcis_events",
        sa.Column("epcis_hash", sa.String(length=128), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("epcis_hash"),
        sa.UniqueConstraint("idx"),
    )


def downgrade() -> None:
    op.drop_table("epcis_events")
