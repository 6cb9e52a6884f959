"""A node's durable store: blocks, events, certificates and the Merkle log, behind one interface.

:class:`Store` appends a committed block, its events, its certificate and the Merkle nodes the
block completes in **one** database transaction: after a crash (``kill -9`` included) the
database holds either the whole block or none of it. Proofs for any tree size are built from
stored perfect-subtree hashes with a single query of O(log n) keys.

SQLite (WAL, ``synchronous=FULL``) is the default; PostgreSQL is used through a
``postgresql+psycopg://`` URL. The schema is created by the Alembic migrations in
``node/migrations``.

The store checks that a block extends its head (height, link, tree size and root); it does not
judge certificates or rules, which consensus and the chain verifier do before appending.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from ledger.blocks import (
    Block,
    BlockHeader,
    CommitCertificate,
    GenesisDocument,
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
from node.models import BlockRow, EventRow, MerkleNodeRow, MetaRow, node_key

__all__ = ["Head", "Store", "StoredEvent", "create_store_engine", "migrate"]

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_BLOCK_READ_CHUNK = 256


@dataclass(frozen=True, slots=True)
class Head:
    """The newest committed block."""

    height: int
    block_hash: str
    tree_size: int
    tree_root: str
    time: str


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
    """Bring the schema to the newest Alembic revision.

    Raises:
        StorageError: a migration failed.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except SQLAlchemyError as e:
        raise StorageError(f"database migration failed: {e}") from e


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

    @classmethod
    def open(cls, url: str) -> Store:
        """Open (and migrate) the database at ``url``.

        Raises:
            StorageError: the database cannot be opened or is inconsistent.
        """
        engine = create_store_engine(url)
        migrate(engine)
        store = cls(engine)
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
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read the database: {e}") from e
        except LedgerError as e:
            raise StorageError(f"the database holds invalid data: {e}") from e
        if len(found) != len(peaks_keys):
            raise StorageError("the Merkle log in the database is incomplete")
        self._log = CompactRange.from_peaks(header.tree_size, [found[k] for k in peaks_keys])
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

    def blocks(self, start: int, end: int) -> Iterator[Block]:
        """Blocks ``start..end`` (inclusive) in height order, read in chunks."""
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
                yield _block_of(row, leaves.get(row.height, []))
            height = last + 1

    def event(self, event_id: str) -> StoredEvent | None:
        """The committed event with this id, or ``None``."""
        try:
            key = bytes.fromhex(event_id)
        except ValueError:
            return None
        return self._event_where(EventRow.event_id == key)

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
        return fold_range(self._read_nodes([range_nodes(0, size)])[0])

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The inclusion proof of leaf ``index`` in the tree of ``size`` leaves.

        Raises:
            ProofError: ``index >= size``, or ``size`` beyond the log.
        """
        self._check_size(size)
        return self._proof(inclusion_ranges(index, size))

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """The consistency proof from tree size ``size1`` to ``size2``.

        Raises:
            ProofError: impossible sizes (``size1 == 0``, ``size1 > size2``, beyond the log).
        """
        self._check_size(size2)
        return self._proof(consistency_ranges(size1, size2))

    def leaf_hash(self, index: int) -> bytes:
        """The leaf hash at ``index``.

        Raises:
            ProofError: ``index`` is negative or beyond the log.
        """
        if index < 0:  # -1 would pass the size check and read node key -64
            raise ProofError(f"leaf index {index} is negative")
        self._check_size(index + 1)
        return self._read_nodes([[(0, index)]])[0][0]

    def _check_size(self, size: int) -> None:
        if size < 0 or size > self._log.size:
            raise ProofError(f"tree size {size} is beyond the log's {self._log.size} entries")

    def _proof(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        groups = [range_nodes(start, end) for start, end in ranges]
        return [fold_range(hashes) for hashes in self._read_nodes(groups)]

    def _read_nodes(self, groups: Sequence[Sequence[tuple[int, int]]]) -> list[list[bytes]]:
        keys = {node_key(level, index) for group in groups for level, index in group}
        if not keys:
            return [[] for _ in groups]
        try:
            with Session(self._engine) as session:
                found = _node_hashes(session, keys)
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read Merkle nodes: {e}") from e
        if len(found) != len(keys):
            raise StorageError("the stored Merkle log is missing nodes")
        return [[found[node_key(level, index)] for level, index in group] for group in groups]

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
            nodes.extend(
                {"key": node_key(level, index), "hash": digest}
                for level, index, digest in log.append(leaf_hash(leaf))
            )
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
                    session.execute(insert(EventRow), events)
                    session.execute(insert(MerkleNodeRow), nodes)
                if effects is not None:
                    write_effects(session, effects)
                self._before_commit(session)
        except SQLAlchemyError as e:
            raise StorageError(f"cannot append block {header.height}: {e}") from e
        self._log = log
        self._head = _head_of(header)
        return self._head

    def certificate(self, height: int) -> CommitCertificate | None:
        """The certificate kept for the block at ``height`` (None for genesis).

        Raises:
            StorageError: no such block.
        """
        return self.block(height).commit

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


def _node_hashes(session: Session, keys: Iterable[int]) -> dict[int, bytes]:
    """Merkle node hashes by key, in one query."""
    query = select(MerkleNodeRow.key, MerkleNodeRow.hash).where(MerkleNodeRow.key.in_(keys))
    return {key: digest for key, digest in session.execute(query)}


def _head_of(header: BlockHeader) -> Head:
    return Head(header.height, header.block_hash, header.tree_size, header.tree_root, header.time)


def _block_of(row: BlockRow, leaves: list[bytes]) -> Block:
    header = parse_header(parse_json(row.header))
    commit = None if row.commit is None else parse_certificate(parse_json(row.commit))
    return Block(header, tuple(parse_envelope(leaf) for leaf in leaves), commit)


def _stored_event(row: EventRow) -> StoredEvent:
    return StoredEvent(parse_envelope(row.leaf), row.index, row.height)
