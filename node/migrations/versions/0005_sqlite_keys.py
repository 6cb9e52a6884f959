"""SQLite: the hottest tables keyed by the row's own B-tree.

A SQLite table whose primary key is ``BIGINT`` keeps two B-trees, the rows by a hidden rowid
and an index from the key to the rowid: every insert writes both and every lookup searches
both. This rebuilds, on SQLite only, the tables a block writes a row into for each event:

* ``events``, ``merkle_nodes``, ``lot_steps``: the key becomes ``INTEGER PRIMARY KEY``, an
  alias of the rowid (SQLite integers are 64-bit, like ``BIGINT``);
* ``lot_step_lots``, ``lot_edges``, ``epcis_events`` (short rows under a composite or text
  key): ``WITHOUT ROWID``, the rows stored in the primary key's B-tree.

PostgreSQL keeps its tables as they are (a heap and a primary-key index either way). No table
references these ones, so each is rebuilt inside the migration's transaction: a copy under a
new name, the old table dropped, the copy renamed, its indexes made again.

Revision ID: 0005_sqlite_keys
Revises: 0004_checkpoints
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005_sqlite_keys"
down_revision = "0004_checkpoints"
branch_labels = None
depends_on = None


def _events(key: Any) -> list[Any]:
    return [
        sa.Column("idx", key, primary_key=True, autoincrement=False),
        sa.Column("event_id", sa.LargeBinary(32), nullable=False, unique=True),
        sa.Column("height", sa.BigInteger(), sa.ForeignKey("blocks.height"), nullable=False),
        sa.Column("leaf", sa.LargeBinary(), nullable=False),
    ]


def _merkle_nodes(key: Any) -> list[Any]:
    return [
        sa.Column("key", key, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    ]


def _lot_steps(key: Any) -> list[Any]:
    return [
        sa.Column("idx", key, autoincrement=False, nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("inputs", sa.Text(), nullable=False),
        sa.Column("outputs", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("idx"),
    ]


def _lot_step_lots() -> list[Any]:
    return [
        sa.Column("lot_id", sa.String(length=128), nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("lot_id", "idx"),
    ]


def _lot_edges() -> list[Any]:
    return [
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("parent", sa.String(length=128), nullable=False),
        sa.Column("child", sa.String(length=128), nullable=False),
        sa.Column("weight", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("idx", "parent", "child"),
    ]


def _epcis_events() -> list[Any]:
    return [
        sa.Column("epcis_hash", sa.String(length=128), nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("epcis_hash"),
        sa.UniqueConstraint("idx"),
    ]


_Indexes = list[tuple[str, list[str]]]

_ROWID_KEYED: list[tuple[str, Callable[[Any], list[Any]], _Indexes]] = [
    ("events", _events, [("ix_events_height", ["height"])]),
    ("merkle_nodes", _merkle_nodes, []),
    ("lot_steps", _lot_steps, []),
]
"""Tables whose integer key becomes the rowid: name, columns given the key's type, indexes."""

_CLUSTERED: list[tuple[str, Callable[[], list[Any]], _Indexes]] = [
    ("lot_step_lots", _lot_step_lots, []),
    (
        "lot_edges",
        _lot_edges,
        [("ix_lot_edges_child", ["child"]), ("ix_lot_edges_parent", ["parent"])],
    ),
    ("epcis_events", _epcis_events, []),
]
"""Tables stored ``WITHOUT ROWID``: name, columns, indexes."""


def _copy(name: str, elements: list[Any], options: dict[str, Any], indexes: _Indexes) -> None:
    """Replace table ``name`` by a copy of its rows laid out as ``elements`` and ``options``."""
    quote = op.get_bind().dialect.identifier_preparer.quote
    copy = f"_rebuild_{name}"
    # pysqlite opens its transaction at the first INSERT, so a CREATE TABLE before it commits
    # on its own: a copy left by an interrupted run goes first.
    op.execute(f"DROP TABLE IF EXISTS {copy}")
    table = op.create_table(copy, *elements, **options)
    columns = ", ".join(quote(c.name) for c in table.columns)
    key = ", ".join(quote(c.name) for c in table.primary_key)
    op.execute(  # in key order: the copy's B-tree is written densely, left to right
        f"INSERT INTO {copy} ({columns}) SELECT {columns} FROM {name} ORDER BY {key}"  # noqa: S608
    )
    op.drop_table(name)
    op.rename_table(copy, name)
    for index, indexed in indexes:
        op.create_index(index, name, indexed, unique=False)


def _rebuild(new: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, rowid_layout, indexes in _ROWID_KEYED:
        _copy(name, rowid_layout(sa.Integer() if new else sa.BigInteger()), {}, indexes)
    for name, layout, indexes in _CLUSTERED:
        _copy(name, layout(), {"sqlite_with_rowid": False} if new else {}, indexes)


def upgrade() -> None:
    _rebuild(new=True)


def downgrade() -> None:
    _rebuild(new=False)
