"""SQLAlchemy models of a node's database. Only :mod:`node.store` and the migrations use them.

Tables:
  * ``meta``: the genesis document and other one-off values, by key;
  * ``blocks``: one row per committed block: canonical header bytes, certificate;
  * ``events``: one row per log entry: its global index, id, block and Merkle leaf bytes
    (``JCS(envelope)`` with sorted signatures, from which the envelope is rebuilt);
  * ``merkle_nodes``: the hash of every perfect subtree of the log, keyed by
    :func:`node_key` ``(level, index)``, so any proof costs O(log n) reads, most of them
    from a node's copy of the upper tree;
  * ``orgs``, ``members``, ``keys``, ``plots``, ``lots``, ``shipments``, ``lot_edges``,
    ``lot_steps``, ``lot_step_lots``: the supply-chain state derived from the log
    (``ledger.state``), written in the same transaction as the block that changed it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    Connection,
    Dialect,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    insert,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.pool import PoolProxiedConnection

from ledger.errors import StorageError

__all__ = [
    "BLOCK_LEVELS",
    "UPPER_KEYS",
    "Base",
    "BlockRow",
    "CheckpointRow",
    "EdgeRow",
    "EpcisEventRow",
    "EventRow",
    "KeyRow",
    "LotRow",
    "MemberRow",
    "MerkleNodeRow",
    "MetaRow",
    "OrgRow",
    "PlotRow",
    "ShipmentRow",
    "StepLotRow",
    "StepRow",
    "delete_in",
    "driver_rows",
    "in_query",
    "insert_rows",
    "node_key",
    "node_of_key",
    "select_in",
]

_LEVEL_BITS = 6

_ROWID_KEY = BigInteger().with_variant(Integer(), "sqlite")
"""The integer key of a table written once per event: on SQLite ``INTEGER PRIMARY KEY``, the
rowid itself, so the table is one B-tree (a ``BIGINT`` key is a second one; migration 0005)."""

_CLUSTERED = {"sqlite_with_rowid": False}
"""Table options of a table of short rows under a composite or text key: on SQLite the rows
live in the primary key's B-tree (``WITHOUT ROWID``; migration 0005)."""


BLOCK_LEVELS = 5
"""Merkle nodes below this level lie inside one aligned block of ``2**5`` leaves and are stored
with it (62 nodes, most often on one 4 KiB page); the ones from this level up are the upper
tree, about two bytes per leaf in all."""

UPPER_KEYS = 1 << 62
"""The first key of the upper tree's nodes (the block nodes' keys are all below it)."""

_INDEX_BITS = 50


def node_key(level: int, index: int) -> int:
    """The primary key of Merkle node ``(level, index)`` (migration 0006).

    * below :data:`BLOCK_LEVELS`: ``(index << level) << 6 | level``, the node's first leaf and
      its level, so the nodes of one block of 32 leaves are neighbours and the part of a proof
      inside the block is read from one page, or two;
    * from :data:`BLOCK_LEVELS` up: ``UPPER_KEYS | level << 50 | index``, the upper tree level
      by level in a key range of its own, which a store reads whole when it opens.
    """
    if level < BLOCK_LEVELS:
        return (index << level << _LEVEL_BITS) | level
    return UPPER_KEYS | (level << _INDEX_BITS) | index


def node_of_key(key: int) -> tuple[int, int]:
    """The ``(level, index)`` of the Merkle node stored under ``key`` (see :func:`node_key`)."""
    if key >= UPPER_KEYS:
        return (key >> _INDEX_BITS) & ((1 << _LEVEL_BITS) - 1), key & ((1 << _INDEX_BITS) - 1)
    level = key & ((1 << _LEVEL_BITS) - 1)
    return level, key >> _LEVEL_BITS >> level


@cache
def _insert_statement(
    model: type[Base], dialect: Dialect
) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``INSERT`` of every column of ``model`` in ``dialect``'s SQL, and its parameters as
    ``(bind name, attribute name)`` pairs (in order, for a positional driver)."""
    attribute = {attr.columns[0].key: attr.key for attr in model.__mapper__.column_attrs}
    compiled = insert(cast(Table, model.__table__)).compile(
        dialect=dialect, column_keys=list(attribute)
    )
    binds = compiled.positiontup if dialect.positional else list(compiled.params)
    if binds is None:
        raise StorageError(f"cannot compile an INSERT into {model.__tablename__}")
    return str(compiled), tuple((name, attribute[name]) for name in binds)


def insert_rows(session: Session, model: type[Base], rows: Sequence[dict[str, Any]]) -> None:
    """``INSERT`` rows given by attribute name (every column), as one driver ``executemany``.

    The statement is compiled once per table and dialect: SQLAlchemy's per-row parameter
    processing (and the ORM's bulk path, several times more) would cost more than the rows'
    I/O, and block writes are on a node's hot path. Values are plain ``str``, ``int``,
    ``bytes`` or ``None``, which every driver takes as they are; no column has a default.
    """
    if not rows:
        return
    connection = session.connection()
    sql, params = _insert_statement(model, connection.dialect)
    attributes = [a for _, a in params]
    if connection.dialect.positional:
        connection.exec_driver_sql(sql, [tuple(map(row.get, attributes)) for row in rows])
    else:
        binds = [b for b, _ in params]
        connection.exec_driver_sql(
            sql, [dict(zip(binds, map(row.get, attributes), strict=True)) for row in rows]
        )


def driver_rows(source: Connection | Engine, sql: str, parameters: tuple[Any, ...]) -> list[Any]:
    """The rows of a query in the driver's own SQL, straight from a driver cursor.

    For the hot reads of a few dozen rows (proofs, an event's place in the log): SQLAlchemy's
    result rows cost more than the lookups (a proof from a million-event log took a third less
    time without them). Given an engine rather than a connection, the query runs on a driver
    connection checked out of the engine's pool for it alone, without SQLAlchemy's
    :class:`Connection` around it (10 µs less, of the 80 µs a proof takes). A driver error is
    raised as SQLAlchemy's :class:`DBAPIError`, as ``exec_driver_sql`` would, and a lost
    database connection is invalidated, so that the pool does not hand it out again.
    """
    if isinstance(source, Engine):
        driver_error = source.dialect.loaded_dbapi.Error
        try:
            pooled = source.raw_connection()
        except driver_error as e:  # the pool could not connect: SQLAlchemy's error, as above
            raise DBAPIError.instance(
                sql, parameters, e, driver_error, dialect=source.dialect
            ) from e
        try:
            return _cursor_rows(source.dialect, pooled, pooled.invalidate, sql, parameters)
        finally:
            pooled.close()
    return _cursor_rows(source.dialect, source.connection, source.invalidate, sql, parameters)


def _cursor_rows(
    dialect: Dialect,
    pooled: PoolProxiedConnection,
    invalidate: Callable[[BaseException], None],
    sql: str,
    parameters: tuple[Any, ...],
) -> list[Any]:
    driver_error = dialect.loaded_dbapi.Error
    cursor = None
    try:
        cursor = pooled.cursor()
        cursor.execute(sql, parameters)
        return list(cursor.fetchall())
    except driver_error as e:
        lost = dialect.is_disconnect(e, pooled.dbapi_connection, cursor)
        if lost:
            invalidate(e)
        raise DBAPIError.instance(
            sql, parameters, e, driver_error, connection_invalidated=lost, dialect=dialect
        ) from e
    finally:
        if cursor is not None:
            with contextlib.suppress(driver_error):
                cursor.close()


_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}
"""The positional placeholder of each DB-API parameter style (SQLite's, psycopg's)."""


@functools.lru_cache(maxsize=128)
def in_query(prefix: str, paramstyle: str, count: int) -> str:
    """``prefix IN (…)`` with ``count`` placeholders, in the driver's own SQL.

    Cached, but bounded: a proof asks for at most 2·⌈log₂ n⌉ + 2 keys, while the counts a
    batch of event ids brings are up to 900, each text a few kilobytes, in a long-running node.

    Hot read paths (proofs, an event's place in the log) send it to the driver as it is (see
    :func:`driver_rows`): the text is the same for a given count, and SQLAlchemy's expansion of
    an ``IN`` parameter costs more than the lookups.

    Raises:
        StorageError: a driver whose placeholders are neither ``?`` nor ``%s``.
    """
    mark = _PLACEHOLDERS.get(paramstyle)
    if mark is None:
        raise StorageError(f"no query for a driver with {paramstyle} parameters")
    return f"{prefix} IN ({', '.join([mark] * count)})"


@cache
def _select_prefix(model: type[Base], key: str, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
    """``SELECT`` of every column of ``model`` ``WHERE`` the column of attribute ``key``, in
    ``dialect``'s SQL (for :func:`in_query`), and the attribute names in column order."""
    quote = dialect.identifier_preparer.quote
    attrs = model.__mapper__.column_attrs
    columns = ", ".join(quote(attr.columns[0].name) for attr in attrs)
    where = quote(attrs[key].columns[0].name)
    return (
        f"SELECT {columns} FROM {quote(model.__tablename__)} WHERE {where}",  # noqa: S608 - names from the schema
        tuple(attr.key for attr in attrs),
    )


def delete_in(connection: Connection, model: type[Base], key: str, values: Sequence[Any]) -> None:
    """Delete the rows of ``model`` whose attribute ``key`` is one of ``values`` (at most a
    few hundred), as one statement in the driver's SQL: a block's state rows are replaced
    this way (SQLAlchemy's ORM ``delete`` cost more than the rows' I/O)."""
    if not values:
        return
    quote = connection.dialect.identifier_preparer.quote
    column = model.__mapper__.column_attrs[key].columns[0].name
    prefix = f"DELETE FROM {quote(model.__tablename__)} WHERE {quote(column)}"  # noqa: S608 - names from the schema
    sql = in_query(prefix, connection.dialect.paramstyle, len(values))
    connection.exec_driver_sql(sql, tuple(values))


def select_in(
    connection: Connection, model: type[Base], key: str, values: Sequence[Any]
) -> list[dict[str, Any]]:
    """Rows of ``model`` (by attribute name) whose attribute ``key`` is one of ``values``.

    One driver query (:func:`driver_rows`), so at most a few hundred values: a node looks up
    the lots and events a batch of events names this way, tens of times a second, and
    SQLAlchemy's statement and result handling cost four times the lookup. The columns are
    strings, integers and bytes, which every driver returns as they are.
    """
    if not values:
        return []  # ``IN ()`` is SQLite's, not standard SQL
    prefix, names = _select_prefix(model, key, connection.dialect)
    sql = in_query(prefix, connection.dialect.paramstyle, len(values))
    rows = driver_rows(connection, sql, tuple(values))
    return [dict(zip(names, row, strict=True)) for row in rows]


class Base(DeclarativeBase):
    """Declarative base of the node's schema."""


class MetaRow(Base):
    """One-off values: ``genesis`` (the genesis document's JSON)."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class BlockRow(Base):
    """A committed block."""

    __tablename__ = "blocks"

    height: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    block_hash: Mapped[str] = mapped_column(String(64), unique=True)
    header: Mapped[bytes] = mapped_column(LargeBinary)
    commit: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    first_index: Mapped[int] = mapped_column(BigInteger)
    event_count: Mapped[int] = mapped_column(Integer)


class EventRow(Base):
    """A committed event at its global log index."""

    __tablename__ = "events"

    index: Mapped[int] = mapped_column("idx", _ROWID_KEY, primary_key=True, autoincrement=False)
    event_id: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    height: Mapped[int] = mapped_column(BigInteger, ForeignKey("blocks.height"), index=True)
    leaf: Mapped[bytes] = mapped_column(LargeBinary)


class MerkleNodeRow(Base):
    """The hash of one perfect subtree of the log."""

    __tablename__ = "merkle_nodes"

    key: Mapped[int] = mapped_column(_ROWID_KEY, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


# --- the derived supply-chain state (ledger.state), rebuilt from the log on demand ------------


class OrgRow(Base):
    """An organisation (``ledger.state.Org``)."""

    __tablename__ = "orgs"

    org_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32))
    index: Mapped[int] = mapped_column("idx", BigInteger)


class MemberRow(Base):
    """A member (``ledger.state.Member``)."""

    __tablename__ = "members"

    member_id: Mapped[str] = mapped_column(String(129), primary_key=True)
    org_id: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(16))
    profile_hash: Mapped[str] = mapped_column(String(64))
    index: Mapped[int] = mapped_column("idx", BigInteger)


class KeyRow(Base):
    """An event-signing key (``ledger.state.KeyRecord``); ``member_id`` NULL for governance."""

    __tablename__ = "keys"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    member_id: Mapped[str | None] = mapped_column(String(129), nullable=True, index=True)
    index: Mapped[int] = mapped_column("idx", BigInteger)
    revoked_index: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class PlotRow(Base):
    """A production plot (``ledger.state.Plot``); geometry as canonical GeoJSON."""

    __tablename__ = "plots"

    plot_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    member_id: Mapped[str] = mapped_column(String(129), index=True)
    commodity: Mapped[str] = mapped_column(String(64))
    area_ha: Mapped[str] = mapped_column(String(32))
    geometry: Mapped[str] = mapped_column(Text)
    index: Mapped[int] = mapped_column("idx", BigInteger)


class LotRow(Base):
    """A lot (``ledger.state.Lot``); quantities as decimal strings, certifications as JSON."""

    __tablename__ = "lots"

    lot_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    commodity: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[str] = mapped_column(String(32))
    uom: Mapped[str] = mapped_column(String(8))
    owner: Mapped[str] = mapped_column(String(129), index=True)
    status: Mapped[str] = mapped_column(String(16))
    index: Mapped[int] = mapped_column("idx", BigInteger)
    producer: Mapped[str | None] = mapped_column(String(129), nullable=True)
    plot_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    harvested_on: Mapped[str | None] = mapped_column(String(10), nullable=True)
    gtin: Mapped[str | None] = mapped_column(String(14), nullable=True)
    shipment_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    loss: Mapped[str] = mapped_column(String(32))
    certifications: Mapped[str] = mapped_column(Text)


class ShipmentRow(Base):
    """A shipment (``ledger.state.Shipment``)."""

    __tablename__ = "shipments"

    shipment_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    lot_id: Mapped[str] = mapped_column(String(128), index=True)
    sender: Mapped[str] = mapped_column(String(129))
    to: Mapped[str] = mapped_column("to_party", String(129))
    quantity: Mapped[str] = mapped_column(String(32))
    index: Mapped[int] = mapped_column("idx", BigInteger)
    received_index: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    quantity_received: Mapped[str | None] = mapped_column(String(32), nullable=True)


class EdgeRow(Base):
    """Lineage: ``weight`` of lot ``parent`` went into lot ``child`` at log index ``idx``."""

    __tablename__ = "lot_edges"
    __table_args__ = _CLUSTERED

    index: Mapped[int] = mapped_column("idx", BigInteger, primary_key=True, autoincrement=False)
    parent: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)
    child: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)
    weight: Mapped[str] = mapped_column(String(32))


class StepRow(Base):
    """A lineage step (``ledger.state.LotStep``): one ``lot.*`` event that made or moved lots."""

    __tablename__ = "lot_steps"

    index: Mapped[int] = mapped_column("idx", _ROWID_KEY, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(32))
    inputs: Mapped[str] = mapped_column(Text)
    outputs: Mapped[str] = mapped_column(Text)


class StepLotRow(Base):
    """Which steps touch which lot (so a lot's steps are one indexed lookup)."""

    __tablename__ = "lot_step_lots"
    __table_args__ = _CLUSTERED

    lot_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    index: Mapped[int] = mapped_column("idx", BigInteger, primary_key=True, autoincrement=False)


class EpcisEventRow(Base):
    """An EPCIS event captured into the ledger: its CBV 2.0 hash id and the ledger event's index."""

    __tablename__ = "epcis_events"
    __table_args__ = _CLUSTERED

    epcis_hash: Mapped[str] = mapped_column(String(128), primary_key=True)
    index: Mapped[int] = mapped_column("idx", BigInteger, unique=True)


class CheckpointRow(Base):
    """A checkpoint cosigned by a quorum of validators (a C2SP signed note), by tree size."""

    __tablename__ = "checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    note: Mapped[str] = mapped_column(Text)
