"""Merkle nodes keyed by the block of 32 leaves they lie in, and the upper tree apart.

Before: node ``(level, index)`` had key ``index << 6 | level``, so the nodes of one inclusion
path lay on as many pages as the path has levels. After (``node.models.node_key``):

* a node below level 5 has key ``first_leaf << 6 | level``, next to the other nodes of its
  aligned block of 32 leaves;
* a node from level 5 up has key ``1 << 62 | level << 50 | index``: the upper tree, level by
  level, which a store reads whole when it opens.

Every key is rewritten in place, on SQLite and PostgreSQL alike, in two passes so that no new
key meets an old one: first each key ``k`` becomes ``-1 - k`` (all keys are non-negative), then
each negative key becomes the new (or, downgrading, the old) key of ``-1 - k``.

Revision ID: 0006_merkle_blocks
Revises: 0005_sqlite_keys
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0006_merkle_blocks"
down_revision = "0005_sqlite_keys"
branch_labels = None
depends_on = None

_UPPER = 1 << 62
_INDEX_MASK = (1 << 50) - 1

_OLD = '(-1 - "key")'
"""The key before the second pass."""

_NEW_FROM_OLD = (
    f"CASE WHEN ({_OLD} & 63) < 5"
    f" THEN ((({_OLD} >> 6) << CAST({_OLD} & 63 AS INTEGER)) << 6) | ({_OLD} & 63)"
    f" ELSE {_UPPER} | (({_OLD} & 63) << 50) | ({_OLD} >> 6) END"
)

_OLD_FROM_NEW = (
    f"CASE WHEN {_OLD} >= {_UPPER}"
    f" THEN (({_OLD} & {_INDEX_MASK}) << 6) | (({_OLD} >> 50) & 63)"
    f" ELSE ((({_OLD} >> 6) >> CAST({_OLD} & 63 AS INTEGER)) << 6) | ({_OLD} & 63) END"
)


def _rekey(expression: str) -> None:
    op.execute('UPDATE merkle_nodes SET "key" = -1 - "key"')
    op.execute(f'UPDATE merkle_nodes SET "key" = {expression}')  # noqa: S608


def upgrade() -> None:
    _rekey(_NEW_FROM_OLD)


def downgrade() -> None:
    _rekey(_OLD_FROM_NEW)
