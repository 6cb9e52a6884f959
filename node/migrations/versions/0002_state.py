"""The supply-chain state derived from the log (ledger.state), kept beside it.

Revision ID: 0002_state
Revises: 0001_log
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_state"
down_revision = "0001_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "keys",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("public_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("member_id", sa.String(length=129), nullable=True),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.Column("revoked_index", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.create_index(op.f("ix_keys_member_id"), "keys", ["member_id"], unique=False)
    op.create_table(
        "lot_edges",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("parent", sa.String(length=128), nullable=False),
        sa.Column("child", sa.String(length=128), nullable=False),
        sa.Column("weight", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("idx", "parent", "child"),
    )
    op.create_index(op.f("ix_lot_edges_child"), "lot_edges", ["child"], unique=False)
    op.create_index(op.f("ix_lot_edges_parent"), "lot_edges", ["parent"], unique=False)
    op.create_table(
        "lot_step_lots",
        sa.Column("lot_id", sa.String(length=128), nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("lot_id", "idx"),
    )
    op.create_table(
        "lot_steps",
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.Column("outputs", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("idx"),
    )
    op.create_table(
        "lots",
        sa.Column("lot_id", sa.String(length=128), nullable=False),
        sa.Column("commodity", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.String(length=32), nullable=False),
        sa.Column("uom", sa.String(length=8), nullable=False),
        sa.Column("owner", sa.String(length=129), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.Column("producer", sa.String(length=129), nullable=True),
        sa.Column("plot_id", sa.String(length=128), nullable=True),
        sa.Column("harvested_on", sa.String(length=10), nullable=True),
        sa.Column("gtin", sa.String(length=14), nullable=True),
        sa.Column("shipment_id", sa.String(length=128), nullable=True),
        sa.Column("loss", sa.String(length=32), nullable=False),
        sa.Column("certifications", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("lot_id"),
    )
    op.create_index(op.f("ix_lots_owner"), "lots", ["owner"], unique=False)
    op.create_table(
        "members",
        sa.Column("member_id", sa.String(length=129), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("profile_hash", sa.String(length=64), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("member_id"),
    )
    op.create_index(op.f("ix_members_org_id"), "members", ["org_id"], unique=False)
    op.create_table(
        "orgs",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("org_id"),
    )
    op.create_table(
        "plots",
        sa.Column("plot_id", sa.String(length=128), nullable=False),
        sa.Column("member_id", sa.String(length=129), nullable=False),
        sa.Column("commodity", sa.String(length=64), nullable=False),
        sa.Column("area_ha", sa.String(length=32), nullable=False),
        sa.Column("geometry", sa.Text(), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("plot_id"),
    )
    op.create_index(op.f("ix_plots_member_id"), "plots", ["member_id"], unique=False)
    op.create_table(
        "shipments",
        sa.Column("shipment_id", sa.String(length=128), nullable=False),
        sa.Column("lot_id", sa.String(length=128), nullable=False),
        sa.Column("sender", sa.String(length=129), nullable=False),
        sa.Column("to_party", sa.String(length=129), nullable=False),
        sa.Column("quantity", sa.String(length=32), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.Column("received_index", sa.BigInteger(), nullable=True),
        sa.Column("quantity_received", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("shipment_id"),
    )
    op.create_index(op.f("ix_shipments_lot_id"), "shipments", ["lot_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_shipments_lot_id"), table_name="shipments")
    op.drop_table("shipments")
    op.drop_index(op.f("ix_plots_member_id"), table_name="plots")
    op.drop_table("plots")
    op.drop_table("orgs")
    op.drop_index(op.f("ix_members_org_id"), table_name="members")
    op.drop_table("members")
    op.drop_index(op.f("ix_lots_owner"), table_name="lots")
    op.drop_table("lots")
    op.drop_table("lot_steps")
    op.drop_table("lot_step_lots")
    op.drop_index(op.f("ix_lot_edges_parent"), table_name="lot_edges")
    op.drop_index(op.f("ix_lot_edges_child"), table_name="lot_edges")
    op.drop_table("lot_edges")
    op.drop_index(op.f("ix_keys_member_id"), table_name="keys")
    op.drop_table("keys")
