"""A node's durable store: blocks, events, certificates and the Merkle log, behind one interface.

:class:`Store` appends a committed block, its events, its certificate and the Merkle nodes the
block completes in **one** database transaction: after a crash (``kill -9`` included) the
database holds either the whole block or none of it. Proofs for any tree size are built from
stored perfect-subtree hashes. A store holds the upper tree (the nodes from level 5 up, about
two bytes per leaf) in memory, so a proof reads at most one query: the few nodes inside the
leaf's block of 32 leaves, stored side by side (:func:`node.models.node_key`), and inside the tree's
last, incomplete block.

SQLite (WAL, ``synchronous=FULL``) is the default; PostgreSQL is used through a
``postgresql+psycopg://`` URL. The schema is created by the Alembic migrations in
``node/migrations``.

The store checks that a block extends its head (height, link, tree size and root); it does not
judge certificates or rules, which consensus and the chain verifier do before appending.
:meth:`Store.check_integrity` walks a whole database the same way, to find damage done to it
behind the store's back (a flipped byte, a deleted row); it checks no signature either.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy import Connection, Engine, create_engine, event, func, inspect, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, aliased

from ledger.blocks import (
    Block,
    BlockHeader,
    CommitCertificate,
    GenesisDocument,
    block_line,
    genesis_header,
    parse_certificate,
    parse_genesis,
    parse_header,
)
from ledger.encoding import canonical, parse_json
from ledger.errors import ChainError, LedgerError, ProofError, StorageError
from ledger.events import Envelope, parse_envelope
from ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_ranges,
    fold_range,
    inclusion_ranges,
    leaf_hash,
    range_nodes,
)
from ledger.rules import genesis_effects
from ledger.state import Effects
from node.ledger_state import write_effects
from node.models import (
    BLOCK_LEVELS,
    UPPER_KEYS,
    BlockRow,
    EventRow,
    MerkleNodeRow,
    MetaRow,
    driver_rows,
    in_query,
    insert_rows,
    node_key,
    node_of_key,
)

__all__ = [
    "SCHEMA_REVISION",
    "Head",
    "IntegrityReport",
    "Store",
    "StoredEvent",
    "create_store_engine",
    "migrate",
]

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SCHEMA_REVISION = "0006_merkle_blocks"
"""The newest migration, Alembic's head (a test keeps the two equal). A database already at
it is opened without importing Alembic, which would stay in a node's memory (about 10 MB)."""
_BLOCK_READ_CHUNK = 256
_INTEGRITY_ROWS = 4096
"""Rows fetched at a time by the integrity walk (it streams: memory does not grow with the log)."""
_KEYS_PER_QUERY = 900
"""Keys per ``IN`` list (under SQLite's oldest limit of 999 bound parameters)."""
_FOLDED_RANGES = 4096
"""Folded ranges a store keeps; all of them are forgotten at once when the map is full."""


@dataclass(frozen=True, slots=True)
class Head:
    """The newest committed block."""

    height: int
    block_hash: str
    tree_size: int
    tree_root: str
    time: str


@dataclass(frozen=True, slots=True)
class IntegrityReport:
    """What :meth:`Store.check_integrity` found.

    Attributes:
        blocks: how many blocks (from height 0) were found intact before the first fault.
        events: how many events (from log index 0) were found intact before the first fault.
        fault: the first fault, naming its height and, for an event, its log index; ``None``
            when the whole database is intact.
    """

    blocks: int
    events: int
    fault: ChainError | None = None

    @property
    def ok(self) -> bool:
        """No fault found."""
        return self.fault is None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A committed event and where it sits."""

    envelope: Envelope
    index: int
    height: int


def create_store_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL, full fsync and foreign keys.

    Raises:
        StorageError: the URL is not usable.
    """
    try:
        engine = create_engine(url, future=True)
    except (SQLAlchemyError, ImportError, ValueError) as e:
        raise StorageError(f"cannot open database {url!r}: {e}") from e
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (a database already there is only read).

    Raises:
        StorageError: the schema revision cannot be read, the database is at a revision this
            version does not know (a newer one), or a migration failed.
    """
    try:
        with engine.connect() as connection:
            if _revisions(connection) == [SCHEMA_REVISION]:
                return
    except SQLAlchemyError as e:
        raise StorageError(f"cannot read the database's schema revision: {e}") from e
    from alembic import command
    from alembic.config import Config
    from alembic.util.exc import CommandError

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except (SQLAlchemyError, CommandError) as e:
        raise StorageError(f"database migration failed: {e}") from e


def _revisions(connection: Connection) -> list[str]:
    """The Alembic revisions the database is at (none for a new one)."""
    if not inspect(connection).has_table("alembic_version"):
        return []
    return list(connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())


class Store:
    """Blocks, events and Merkle nodes of one node, in SQLite or PostgreSQL.

    Use :meth:`open` to migrate and load an existing database, then :meth:`initialize` once
    with the genesis document on a new one.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._genesis: GenesisDocument | None = None
        self._head: Head | None = None
        self._log = CompactRange()
        self._upper = _UpperTree()
        self._folded: dict[tuple[int, int], bytes] = {}

    @classmethod
    def open(cls, url: str, *, verify: bool = False) -> Store:
        """Open (and migrate) the database at ``url``.

        Args:
            url: the database URL.
            verify: first walk the whole database with :meth:`check_integrity` and refuse a
                damaged one.

        Raises:
            ChainError: ``verify`` found damage (the error names the height and index).
            StorageError: the database cannot be opened or is inconsistent.
        """
        engine = create_store_engine(url)
        migrate(engine)
        store = cls(engine)
        if verify:
            report = store.check_integrity()
            if report.fault is not None:
                engine.dispose()
                raise report.fault
        store._load()
        return store

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    @property
    def log(self) -> CompactRange:
        """The Merkle log up to the head (read it; it changes only by :meth:`append_block`)."""
        return self._log

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for the node's other tables)."""
        return self._engine

    # --- setup -----------------------------------------------------------------------------

    def _load(self) -> None:
        try:
            with Session(self._engine) as session:
                raw = session.get(MetaRow, "genesis")
                if raw is None:
                    return
                self._genesis = parse_genesis(raw.value)
                row = session.scalars(
                    select(BlockRow).order_by(BlockRow.height.desc()).limit(1)
                ).first()
                if row is None:
                    raise StorageError("the database has a genesis document but no blocks")
                header = parse_header(parse_json(row.header))
                self._head = _head_of(header)
                peaks_keys = [node_key(lvl, idx) for lvl, idx in range_nodes(0, header.tree_size)]
                found = _node_hashes(session, peaks_keys)
                upper = _UpperTree.read(session.connection(), header.tree_size)
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read the database: {e}") from e
        except LedgerError as e:
            raise StorageError(f"the database holds invalid data: {e}") from e
        if len(found) != len(peaks_keys) or upper is None:
            raise StorageError("the Merkle log in the database is incomplete")
        self._log = CompactRange.from_peaks(header.tree_size, [found[k] for k in peaks_keys])
        self._upper = upper
        if self._log.root().hex() != header.tree_root:
            raise StorageError(
                f"the stored Merkle log does not match block {header.height}'s tree_root"
            )

    def initialize(self, genesis: GenesisDocument) -> None:
        """Store the genesis document and the genesis block in a new database.

        Raises:
            StorageError: the database already holds a (different) genesis document.
        """
        if self._genesis is not None:
            if self._genesis.digest != genesis.digest:
                raise StorageError("the database belongs to a different genesis document")
            return
        header = genesis_header(genesis)
        try:
            with Session(self._engine) as session, session.begin():
                session.add(
                    MetaRow(key="genesis", value=canonical(genesis.document).decode("utf-8"))
                )
                write_effects(session, genesis_effects(genesis))
                session.add(
                    BlockRow(
                        height=0,
                        block_hash=header.block_hash,
                        header=header.canonical_bytes,
                        commit=None,
                        first_index=0,
                        event_count=0,
                    )
                )
        except IntegrityError:
            # Another process initialised the database first: agree with it or refuse.
            self._load()
            if self._genesis is None or self._genesis.digest != genesis.digest:
                raise StorageError(
                    "the database was initialised concurrently with another genesis document"
                ) from None
            return
        except SQLAlchemyError as e:
            raise StorageError(f"cannot initialise the database: {e}") from e
        self._genesis = genesis
        self._head = _head_of(header)

    # --- reads -----------------------------------------------------------------------------

    @property
    def genesis(self) -> GenesisDocument:
        """The genesis document.

        Raises:
            StorageError: the store is not initialised.
        """
        if self._genesis is None:
            raise StorageError("the database has no genesis document yet")
        return self._genesis

    def head(self) -> Head:
        """The newest block.

        Raises:
            StorageError: the store is not initialised.
        """
        if self._head is None:
            raise StorageError("the database has no genesis block yet")
        return self._head

    def block(self, height: int) -> Block:
        """The block at ``height``.

        Raises:
            StorageError: there is no such block.
        """
        blocks = list(self.blocks(height, height))
        if not blocks:
            raise StorageError(f"no block at height {height}")
        return blocks[0]

    def header(self, height: int) -> BlockHeader:
        """The header of the block at ``height``, read without its events.

        Raises:
            StorageError: there is no such block, or its stored header is unreadable.
        """
        try:
            with self._engine.connect() as connection:
                raw = connection.scalar(select(BlockRow.header).where(BlockRow.height == height))
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read block {height}: {e}") from e
        if raw is None:
            raise StorageError(f"no block at height {height}")
        try:
            return parse_header(parse_json(raw))
        except LedgerError as e:
            raise StorageError(f"the stored header of block {height} is unreadable: {e}") from e

    def blocks(self, start: int, end: int) -> Iterator[Block]:
        """Blocks ``start..end`` (inclusive) in height order, read in chunks."""
        for row, leaves in self._block_rows(start, end):
            yield _block_of(row, leaves)

    def block_lines(self, start: int, end: int) -> Iterator[bytes]:
        """The export lines (:func:`~ledger.blocks.block_line`) of blocks ``start..end``.

        Joined from the stored JCS bytes, unparsed: what the store holds is what is served,
        and whoever reads an export verifies it (D43).
        """
        for row, leaves in self._block_rows(start, end):
            yield block_line(row.header, leaves, row.commit)

    def _block_rows(self, start: int, end: int) -> Iterator[tuple[BlockRow, list[bytes]]]:
        """Block rows ``start..end`` with their events' leaves, read in chunks."""
        end = min(end, self.head().height)
        height = max(start, 0)
        while height <= end:
            last = min(end, height + _BLOCK_READ_CHUNK - 1)
            try:
                with Session(self._engine) as session:
                    rows = session.scalars(
                        select(BlockRow)
                        .where(BlockRow.height.between(height, last))
                        .order_by(BlockRow.height)
                    ).all()
                    leaves: dict[int, list[bytes]] = {}
                    for event_height, leaf in session.execute(
                        select(EventRow.height, EventRow.leaf)
                        .where(EventRow.height.between(height, last))
                        .order_by(EventRow.index)
                    ):
                        leaves.setdefault(event_height, []).append(leaf)
            except SQLAlchemyError as e:
                raise StorageError(f"cannot read blocks {height}..{last}: {e}") from e
            for row in rows:
                yield row, leaves.get(row.height, [])
            height = last + 1

    def event(self, event_id: str) -> StoredEvent | None:
        """The committed event with this id, or ``None``."""
        try:
            key = bytes.fromhex(event_id)
        except ValueError:
            return None
        return self._event_where(EventRow.event_id == key)

    def locations(self, event_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """``(height, index)`` of each of these events that is committed."""
        keys = []
        for event_id in event_ids:
            with contextlib.suppress(ValueError):
                keys.append(bytes.fromhex(event_id))
        found: dict[str, tuple[int, int]] = {}
        try:
            with self._engine.connect() as connection:
                for start in range(0, len(keys), _KEYS_PER_QUERY):
                    chunk = tuple(keys[start : start + _KEYS_PER_QUERY])
                    sql = in_query(_LOCATIONS, connection.dialect.paramstyle, len(chunk))
                    for key, height, index in driver_rows(connection, sql, chunk):
                        found[bytes(key).hex()] = (height, index)
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read events: {e}") from e
        return found

    def event_at(self, index: int) -> StoredEvent | None:
        """The committed event at log index ``index``, or ``None``."""
        return self._event_where(EventRow.index == index)

    def events(self, start: int, end: int) -> list[StoredEvent]:
        """Committed events with log index in ``start..end`` (inclusive)."""
        try:
            with Session(self._engine) as session:
                rows = session.scalars(
                    select(EventRow)
                    .where(EventRow.index.between(start, end))
                    .order_by(EventRow.index)
                ).all()
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read events {start}..{end}: {e}") from e
        return [_stored_event(row) for row in rows]

    def _event_where(self, condition: Any) -> StoredEvent | None:
        try:
            with Session(self._engine) as session:
                row = session.scalars(select(EventRow).where(condition)).first()
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read an event: {e}") from e
        return None if row is None else _stored_event(row)

    def count_events(self) -> int:
        """How many events the store holds (equals the head's ``tree_size`` when intact)."""
        try:
            with Session(self._engine) as session:
                return int(session.scalar(select(func.count()).select_from(EventRow)) or 0)
        except SQLAlchemyError as e:
            raise StorageError(f"cannot count events: {e}") from e

    # --- proofs ----------------------------------------------------------------------------

    def root(self, size: int) -> bytes:
        """The RFC 9162 root of the log's first ``size`` leaves.

        Raises:
            ProofError: ``size`` is negative or beyond the log.
        """
        self._check_size(size)
        if size == 0:
            return EMPTY_ROOT
        return self._range_roots([(0, size)])[0]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The inclusion proof of leaf ``index`` in the tree of ``size`` leaves.

        Raises:
            ProofError: ``index >= size``, or ``size`` beyond the log.
        """
        self._check_size(size)
        return self._range_roots(inclusion_ranges(index, size))

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """The consistency proof from tree size ``size1`` to ``size2``.

        Raises:
            ProofError: impossible sizes (``size1 == 0``, ``size1 > size2``, beyond the log).
        """
        self._check_size(size2)
        return self._range_roots(consistency_ranges(size1, size2))

    def inclusion(self, index: int, size: int) -> tuple[list[bytes], bytes, bytes]:
        """The inclusion proof of leaf ``index`` in the tree of ``size``, the leaf hash and
        the root, read together (one query).

        Raises:
            ProofError: ``index >= size``, or ``size`` beyond the log.
        """
        self._check_size(size)
        ranges = inclusion_ranges(index, size)
        *proof, leaf, root = self._range_roots([*ranges, (index, index + 1), (0, size)])
        return proof, leaf, root

    def consistency(self, size1: int, size2: int) -> tuple[list[bytes], bytes, bytes]:
        """The consistency proof from ``size1`` to ``size2`` and both roots (one query).

        Raises:
            ProofError: impossible sizes (``size1 == 0``, ``size1 > size2``, beyond the log).
        """
        self._check_size(size2)
        ranges = consistency_ranges(size1, size2)
        *proof, root1, root2 = self._range_roots([*ranges, (0, size1), (0, size2)])
        return proof, root1, root2

    def leaf_hash(self, index: int) -> bytes:
        """The leaf hash at ``index``.

        Raises:
            ProofError: ``index`` is negative or beyond the log.
        """
        if index < 0:  # -1 would pass the size check and read node key -64
            raise ProofError(f"leaf index {index} is negative")
        self._check_size(index + 1)
        return self._range_roots([(index, index + 1)])[0]

    def _check_size(self, size: int) -> None:
        if size < 0 or size > self._log.size:
            raise ProofError(f"tree size {size} is beyond the log's {self._log.size} entries")

    def _range_roots(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """The MTH of each ``[start, end)`` leaf range (each meets :func:`fold_range`'s
        precondition), in one read. A range of more than one node (the tree's right edge, a
        root) is kept once folded: its leaves never change."""
        folded = self._folded
        known = [folded.get(bounds) for bounds in ranges]
        groups = [
            () if root else range_nodes(*bounds) for bounds, root in zip(ranges, known, strict=True)
        ]
        roots = []
        for bounds, root, group, hashes in zip(
            ranges, known, groups, self._read_nodes(groups), strict=True
        ):
            if root is None and len(group) > 1:
                if len(folded) >= _FOLDED_RANGES:
                    folded.clear()
                root = folded[bounds] = fold_range(hashes)
            roots.append(root or (hashes[0] if hashes else EMPTY_ROOT))
        return roots

    def _read_nodes(self, groups: Sequence[Sequence[tuple[int, int]]]) -> list[list[bytes]]:
        """The hashes of ``groups`` of nodes: the upper tree's from memory, the others read
        in one query (for a proof, from the one or two pages of the leaf's block)."""
        nodes = [node for group in groups for node in group]
        found = self._upper.hashes(nodes)
        wanted = {node_key(*node) for node, digest in zip(nodes, found, strict=True) if not digest}
        stored: dict[int, bytes] = {}
        if wanted:
            try:
                stored = _node_hashes(self._engine, wanted)
            except SQLAlchemyError as e:
                raise StorageError(f"cannot read Merkle nodes: {e}") from e
            if len(stored) != len(wanted):
                raise StorageError("the stored Merkle log is missing nodes")
        complete = [
            digest or stored[node_key(*node)] for node, digest in zip(nodes, found, strict=True)
        ]
        hashes, at = [], 0
        for group in groups:
            hashes.append(complete[at : at + len(group)])
            at += len(group)
        return hashes

    # --- the append ------------------------------------------------------------------------

    def append_block(self, block: Block, effects: Effects | None = None) -> Head:
        """Append a committed block, its events, certificate, Merkle nodes and state atomically.

        Args:
            block: the committed block (its certificate already checked by the caller).
            effects: what the block's events change in the supply-chain state (see
                :func:`node.ledger_state.apply_block`); written in the same transaction.

        Raises:
            ChainError: the block does not extend the head (height, prev, sizes, root).
            StorageError: the database refused the write (nothing was written).
        """
        head = self.head()
        header = block.header
        if header.height != head.height + 1:
            raise ChainError(f"expected block {head.height + 1}", height=header.height)
        if header.prev != head.block_hash:
            raise ChainError("prev is not the head's block hash", height=header.height)
        if block.commit is None:
            raise ChainError("a block needs a commit certificate", height=header.height)
        if header.event_count != len(block.events):
            raise ChainError("event_count does not match the events", height=header.height)
        log = self._log.copy()
        first_index = log.size
        events: list[dict[str, Any]] = []
        nodes: list[dict[str, Any]] = []
        upper: list[tuple[int, int, bytes]] = []
        for envelope in block.events:
            leaf = envelope.leaf
            events.append(
                {
                    "index": log.size,
                    "event_id": bytes.fromhex(envelope.event_id),
                    "height": header.height,
                    "leaf": leaf,
                }
            )
            for level, index, digest in log.append(leaf_hash(leaf)):
                nodes.append({"key": node_key(level, index), "hash": digest})
                if level >= BLOCK_LEVELS:
                    upper.append((level, index, digest))
        if header.tree_size != log.size or header.tree_root != log.root().hex():
            raise ChainError(
                "tree_size/tree_root do not match the log with this block's events",
                height=header.height,
            )
        try:
            with Session(self._engine) as session, session.begin():
                session.add(
                    BlockRow(
                        height=header.height,
                        block_hash=header.block_hash,
                        header=header.canonical_bytes,
                        commit=canonical(block.commit.to_json()),
                        first_index=first_index,
                        event_count=len(events),
                    )
                )
                session.flush()
                if events:
                    insert_rows(session, EventRow, events)
                    insert_rows(session, MerkleNodeRow, nodes)
                if effects is not None:
                    write_effects(session, effects)
                self._before_commit(session)
        except SQLAlchemyError as e:
            raise StorageError(f"cannot append block {header.height}: {e}") from e
        self._log = log
        self._head = _head_of(header)
        for level, index, digest in upper:  # in log order: each the next of its level
            self._upper.add(level, index, digest)
        return self._head

    def certificate(self, height: int) -> CommitCertificate | None:
        """The certificate kept for the block at ``height`` (None for genesis).

        Raises:
            StorageError: no such block.
        """
        try:
            with self._engine.connect() as connection:
                row = connection.execute(
                    select(BlockRow.commit).where(BlockRow.height == height)
                ).first()
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read block {height}: {e}") from e
        if row is None:
            raise StorageError(f"no block at height {height}")
        return None if row.commit is None else parse_certificate(parse_json(row.commit))

    def replace_certificate(self, height: int, certificate: CommitCertificate) -> None:
        """Keep another certificate for a stored block (certificates are not in block hashes;
        consensus settles on one per block, see ``node.consensus.Proposal.last_commit``).

        Raises:
            StorageError: no such block, or the database refused.
        """
        try:
            with Session(self._engine) as session, session.begin():
                row = session.get(BlockRow, height)
                if row is None or height == 0:
                    raise StorageError(f"no certified block at height {height}")
                row.commit = canonical(certificate.to_json())
        except SQLAlchemyError as e:
            raise StorageError(f"cannot replace the certificate of block {height}: {e}") from e

    def _before_commit(self, session: Session) -> None:
        """A seam for tests that simulate a crash between the writes and the commit."""

    # --- integrity -------------------------------------------------------------------------

    def check_integrity(self) -> IntegrityReport:
        """Walk the stored chain from height 0 and report the first damage, without signatures.

        Checks, block by block in height order: heights are contiguous from 0; the stored
        header bytes parse, are canonical and hash to the stored block hash; height 0 is the
        genesis block of the stored genesis document and every other block links to the one
        before; the block's stored event count and first index agree with its header and the
        log; its events have contiguous log indexes and each leaf hashes to the leaf hash
        stored in the Merkle log; every interior Merkle node the block's events complete is
        stored as recomputed; the log with the block's events has the header's ``tree_size``
        and ``tree_root``. Then no event lies beyond the head and the Merkle log holds no node
        more than the recomputed ones (so its stored peaks, from which ``root`` and every
        proof are read, fold to the head's root). Blocks, events and nodes are streamed, so
        memory stays bounded (a few µs an event on SQLite). Certificates, event signatures
        and event ids are not checked: ``rantai verify`` checks an export.

        Returns:
            An :class:`IntegrityReport`; its ``fault`` names the first damaged height/index.

        Raises:
            StorageError: the database cannot be read.
        """
        try:
            with self._engine.connect() as connection:
                return _IntegrityWalk(connection).run()
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read the database: {e}") from e


class _IntegrityWalk:
    """One pass of :meth:`Store.check_integrity` over one connection (one snapshot)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection.execution_options(yield_per=_INTEGRITY_ROWS)
        self._log = CompactRange()
        self._blocks = 0
        self._nodes: list[tuple[int, bytes, int, int]] = []
        """Interior Merkle nodes recomputed but not yet compared with the stored ones, as
        ``(key, hash, height, index)`` of the event that completed them."""

    def run(self) -> IntegrityReport:
        try:
            self._walk()
        except ChainError as e:  # the first fault ends the walk
            return IntegrityReport(self._blocks, self._log.size, e)
        return IntegrityReport(self._blocks, self._log.size)

    def _fail(self, reason: str, *, height: int | None, index: int | None = None) -> NoReturn:
        raise ChainError(reason, height=height, index=index)

    def _walk(self) -> None:
        raw = self._connection.scalar(select(MetaRow.value).where(MetaRow.key == "genesis"))
        if raw is None:
            if self._connection.scalar(select(func.count()).select_from(BlockRow)):
                self._fail("blocks are stored without a genesis document", height=0)
            return
        try:
            genesis = genesis_header(parse_genesis(raw)).block_hash
        except LedgerError as e:
            self._fail(f"the stored genesis document is unreadable: {e}", height=0)
        blocks = select(
            BlockRow.height,
            BlockRow.block_hash,
            BlockRow.header,
            BlockRow.first_index,
            BlockRow.event_count,
        ).order_by(BlockRow.height)
        leaf_node = aliased(MerkleNodeRow)  # the stored leaf hash, joined in SQL: cheaper
        events = (
            select(EventRow.index, EventRow.height, EventRow.leaf, leaf_node.hash)
            .outerjoin(leaf_node, leaf_node.key == EventRow.index * 64)
            .order_by(EventRow.index)
        )
        # Closed even when a fault ends the walk early (streamed results hold cursors).
        with (
            self._connection.execute(blocks) as block_rows,
            self._connection.execute(events) as event_rows,
        ):
            self._walk_blocks(genesis, block_rows, iter(event_rows))
        size = self._log.size
        expected = 2 * size - size.bit_count()  # one node per complete subtree, leaves included
        stored = self._connection.scalar(select(func.count()).select_from(MerkleNodeRow))
        if stored != expected:
            self._fail(
                f"the Merkle log holds {stored} nodes, {expected} expected for {size} events",
                height=self._blocks - 1,
            )

    def _walk_blocks(self, genesis: str, blocks: Iterable[Any], events: Iterator[Any]) -> None:
        previous = ""
        for height, block_hash, header_bytes, first_index, event_count in blocks:
            if height != self._blocks:
                self._fail("the block is missing", height=self._blocks)
            header = self._header(height, block_hash, header_bytes)
            if height == 0 and block_hash != genesis:
                self._fail("not the genesis block of the stored genesis document", height=0)
            if height > 0 and header.prev != previous:
                self._fail(f"prev is not the hash of block {height - 1}", height=height)
            if first_index != self._log.size or event_count != header.event_count:
                self._fail(
                    f"the stored first index {first_index} and event count {event_count} "
                    f"disagree with the log size {self._log.size} and the header's "
                    f"event_count {header.event_count}",
                    height=height,
                )
            self._walk_events(height, header.event_count, events)
            self._compare_nodes()
            if header.tree_size != self._log.size or header.tree_root != self._log.root().hex():
                self._fail(
                    "the events do not hash to the header's tree_size and tree_root",
                    height=height,
                )
            previous = block_hash
            self._blocks += 1
        if self._blocks == 0:
            self._fail("the genesis block is missing", height=0)
        extra = next(events, None)
        if extra is not None:
            self._fail("an event is stored beyond the head", height=extra[1], index=extra[0])

    def _header(self, height: int, block_hash: str, header_bytes: bytes) -> BlockHeader:
        try:
            header = parse_header(parse_json(header_bytes))
        except LedgerError as e:
            self._fail(f"the stored header is unreadable: {e}", height=height)
        if header.height != height:
            self._fail(f"the stored header is the one of height {header.height}", height=height)
        if header.block_hash != block_hash or (
            hashlib.sha256(header_bytes).hexdigest() != block_hash
        ):
            self._fail("the stored header does not hash to the block's hash", height=height)
        return header

    def _walk_events(self, height: int, count: int, events: Iterator[Any]) -> None:
        log, nodes = self._log, self._nodes
        for _ in range(count):
            index = log.size
            row = next(events, None)
            if row is None or row[0] != index:
                self._fail("the event is missing", height=height, index=index)
            if row[1] != height:
                self._fail(f"the event is stored at height {row[1]}", height=height, index=index)
            digest = leaf_hash(row[2])
            if digest != row[3]:
                self._fail(
                    "the event's leaf does not hash to the leaf hash in the Merkle log",
                    height=height,
                    index=index,
                )
            for level, position, node in log.append(digest)[1:]:
                nodes.append((node_key(level, position), node, height, index))
            if len(nodes) >= _INTEGRITY_ROWS:
                self._compare_nodes()

    def _compare_nodes(self) -> None:
        """The stored interior Merkle nodes are the ones recomputed from the events."""
        for start in range(0, len(self._nodes), _KEYS_PER_QUERY):
            chunk = self._nodes[start : start + _KEYS_PER_QUERY]
            stored = _node_hashes(self._connection, [key for key, *_ in chunk])
            for key, digest, height, index in chunk:
                if stored.get(key) != digest:
                    level, position = node_of_key(key)
                    self._fail(
                        f"the Merkle log's node (level {level}, index {position}) completed "
                        "by this event is "
                        + ("missing" if key not in stored else "not the hash of the events"),
                        height=height,
                        index=index,
                    )
        self._nodes.clear()


class _UpperTree:
    """The log's Merkle nodes from :data:`~node.models.BLOCK_LEVELS` up, in memory: a
    ``bytearray`` of 32-byte hashes per level, about two bytes per leaf in all.

    A stored node never changes, so a node held here is the stored one. A level only grows
    at its end, after the block that completed the node is committed. Proofs read it on
    worker threads while the event loop's thread appends: a ``bytearray``'s slice and ``+=``
    are atomic under the GIL, and a node not here yet is read from the database.
    """

    __slots__ = ("_levels",)

    def __init__(self) -> None:
        self._levels: list[bytearray] = []

    @classmethod
    def read(cls, connection: Connection, size: int) -> _UpperTree | None:
        """The upper tree of the log's first ``size`` leaves, from the database (one range
        scan); None when a node of it is missing. Nodes beyond it are left out: ``size`` came
        from another statement, and a block may have been committed since."""
        tree = cls()
        rows = connection.exec_driver_sql(
            f'SELECT "key", hash FROM merkle_nodes WHERE "key" >= {UPPER_KEYS} ORDER BY "key"'  # noqa: S608
        )
        for key, digest in rows:
            level, index = node_of_key(key)
            if index < size >> level and not tree.add(level, index, digest):
                return None
        expected = [size >> level for level in range(BLOCK_LEVELS, size.bit_length())]
        return tree if [len(nodes) // 32 for nodes in tree._levels] == expected else None

    def hashes(self, nodes: Iterable[tuple[int, int]]) -> list[bytes | None]:
        """The hashes of ``(level, index)`` nodes, None for each one not in the upper tree."""
        levels, top = self._levels, len(self._levels)
        found: list[bytes | None] = []
        for level, index in nodes:
            row = level - BLOCK_LEVELS
            digest = levels[row][index * 32 : index * 32 + 32] if 0 <= row < top else None
            found.append(bytes(digest) if digest else None)
        return found

    def add(self, level: int, index: int, digest: bytes) -> bool:
        """Keep node ``(level, index)`` if it is the next of its level (at or above
        ``BLOCK_LEVELS``); False, keeping nothing, if it is not."""
        row = level - BLOCK_LEVELS
        if row == len(self._levels) and index == 0:
            self._levels.append(bytearray())
        if not 0 <= row < len(self._levels) or len(self._levels[row]) != index * 32:
            return False
        self._levels[row] += digest
        return True


def _node_hashes(session: Session | Connection | Engine, keys: Iterable[int]) -> dict[int, bytes]:
    """Merkle node hashes by key, in one query (see :func:`~node.models.in_query`) of at most
    :data:`_KEYS_PER_QUERY` keys."""
    wanted = tuple(keys)
    if not wanted:
        return {}  # ``IN ()`` is SQLite's, not standard SQL
    connection = session.connection() if isinstance(session, Session) else session
    sql = in_query(_NODE_HASHES, connection.dialect.paramstyle, len(wanted))
    return {key: bytes(digest) for key, digest in driver_rows(connection, sql, wanted)}


_NODE_HASHES = 'SELECT "key", hash FROM merkle_nodes WHERE "key"'
_LOCATIONS = "SELECT event_id, height, idx FROM events WHERE event_id"


def _head_of(header: BlockHeader) -> Head:
    return Head(header.height, header.block_hash, header.tree_size, header.tree_root, header.time)


def _block_of(row: BlockRow, leaves: list[bytes]) -> Block:
    header = parse_header(parse_json(row.header))
    commit = None if row.commit is None else parse_certificate(parse_json(row.commit))
    return Block(header, tuple(parse_envelope(leaf) for leaf in leaves), commit)


def _stored_event(row: EventRow) -> StoredEvent:
    return StoredEvent(parse_envelope(row.leaf), row.index, row.height)
