"""The storage contract suite: every test runs on SQLite and on PostgreSQL (``database_url``).

What a node's :class:`node.store.Store` promises (DESIGN.md §4–5): the schema comes from the
Alembic migrations; a block, its events, its certificate and its Merkle nodes are written in one
transaction, so a refused or interrupted append leaves no trace; reads give back exactly what was
appended; proofs for every tree size equal the in-memory RFC 9162 proofs of ``ledger.merkle`` and
cost one query of O(log n) keys.

The chain is built with the deterministic sample network. Its blocks carry real signed events and
certificates, but the store judges neither: only the height, the link, the certificate's presence,
the event count and the tree size and root.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import math
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, func, inspect, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

import node.models
import node.store
from ledger import merkle
from ledger.blocks import Block, genesis_header, parse_block
from ledger.encoding import canonical, format_time
from ledger.errors import ChainError, ProofError, StorageError
from ledger.events import Envelope
from node.models import (
    BLOCK_LEVELS,
    UPPER_KEYS,
    BlockRow,
    EventRow,
    MerkleNodeRow,
    MetaRow,
    node_key,
)
from node.store import Head, Store
from rantai.samplechain import SampleNetwork, sample_network
from tests._paths import REPO

# Events per block of the test chain: 30 blocks, 61 events, with empty and one-event blocks;
# the heads' tree sizes include powers of two (2, 32) and many that are not.
CHAIN_SIZES = (2, 0, 1, 3, 1, 0, 5, 2, 4, 1, 0, 7, 1, 2, 3, 0, 1, 6, 2, 1, 4, 1, 0, 2, 3, 1, 5, 2)
CHAIN_SIZES += (0, 1)
START = dt.datetime(2026, 11, 29, 3, 0, tzinfo=dt.UTC)

# --------------------------------------------------------------------------------------------
# Building blocks


def harvest(net: SampleNetwork, serial: int, time: str) -> Envelope:
    """A signed ``lot.create`` by the sample producer; ``serial`` makes it unique."""
    return net.event(
        "lot.create",
        {
            "lot_id": f"LOT-{serial:06d}",
            "commodity": "coffee",
            "quantity": f"{10 + serial}.5",
            "uom": "kg",
            "producer": "koperasi-kopi/siti",
            "harvested_on": "2026-11-20",
        },
        [net.key("producer")],
        f"lot-{serial}",
        time,
    )


def log_of(blocks: list[Block]) -> merkle.CompactRange:
    """The compact range of the log after ``blocks``."""
    log = merkle.CompactRange()
    for block in blocks:
        for envelope in block.events:
            log.append(merkle.leaf_hash(envelope.leaf))
    return log


def next_block(net: SampleNetwork, blocks: list[Block], events: list[Envelope]) -> Block:
    """A correctly certified block with ``events`` on top of ``blocks``."""
    previous = blocks[-1].header
    time = format_time(START + dt.timedelta(seconds=previous.height + 1))
    return net.commit(previous, log_of(blocks), events, time)


@functools.cache
def sample_chain() -> tuple[SampleNetwork, tuple[Block, ...]]:
    """The genesis block and one block per entry of ``CHAIN_SIZES`` (built once per session)."""
    net = sample_network()
    blocks = [Block(genesis_header(net.genesis), (), None)]
    log = merkle.CompactRange()
    serial = 0
    for count in CHAIN_SIZES:
        previous = blocks[-1].header
        time = format_time(START + dt.timedelta(seconds=previous.height + 1))
        events = [harvest(net, serial + i, time) for i in range(count)]
        serial += count
        blocks.append(net.commit(previous, log, events, time))
    return net, tuple(blocks)


def chain_leaf_hashes() -> list[bytes]:
    _, blocks = sample_chain()
    return [merkle.leaf_hash(e.leaf) for b in blocks for e in b.events]


# --------------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture
def open_store(database_url: str) -> Iterator[Callable[[], Store]]:
    """Open a Store on the test database; every store opened is closed at teardown."""
    opened: list[Store] = []

    def opener() -> Store:
        store = Store.open(database_url)
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


def filled(store: Store, up_to: int) -> Store:
    """Initialise ``store`` and append the sample chain's blocks 1..up_to."""
    net, blocks = sample_chain()
    store.initialize(net.genesis)
    for block in blocks[1 : up_to + 1]:
        store.append_block(block)
    return store


def snapshot(engine: Engine) -> dict[str, list[Any]]:
    """Every row of the store's tables, read with plain SQLAlchemy (not through the Store)."""
    with engine.connect() as connection:
        return {
            "meta": list(connection.execute(select(MetaRow.key, MetaRow.value).order_by("key"))),
            "blocks": list(
                connection.execute(
                    select(
                        BlockRow.height,
                        BlockRow.block_hash,
                        BlockRow.header,
                        BlockRow.commit,
                        BlockRow.first_index,
                        BlockRow.event_count,
                    ).order_by(BlockRow.height)
                )
            ),
            "events": list(
                connection.execute(
                    select(
                        EventRow.index, EventRow.event_id, EventRow.height, EventRow.leaf
                    ).order_by(EventRow.index)
                )
            ),
            "merkle_nodes": list(
                connection.execute(
                    select(MerkleNodeRow.key, MerkleNodeRow.hash).order_by(MerkleNodeRow.key)
                )
            ),
        }


def table_counts(engine: Engine, height: int) -> tuple[int, int, int]:
    """(block rows at ``height``, event rows at ``height``, all Merkle node rows)."""
    with engine.connect() as connection:
        return (
            connection.scalar(
                select(func.count()).select_from(BlockRow).where(BlockRow.height == height)
            )
            or 0,
            connection.scalar(
                select(func.count()).select_from(EventRow).where(EventRow.height == height)
            )
            or 0,
            connection.scalar(select(func.count()).select_from(MerkleNodeRow)) or 0,
        )


def head_of(block: Block) -> Head:
    h = block.header
    return Head(h.height, h.block_hash, h.tree_size, h.tree_root, h.time)


class StatementLog:
    """Records the SQL statements an engine executes while active: those SQLAlchemy runs, and
    those the node sends to a driver cursor itself (``node.models.driver_rows``, which
    ``node.store`` imports by name)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements: list[tuple[str, Any]] = []
        self._driver_rows = node.models.driver_rows

    def _record(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        self.statements.append((statement, parameters))

    def _record_driver_rows(self, connection: Connection, sql: str, parameters: Any) -> Any:
        if connection.engine is self.engine:
            self.statements.append((sql, parameters))
        return self._driver_rows(connection, sql, parameters)

    def __enter__(self) -> StatementLog:
        event.listen(self.engine, "before_cursor_execute", self._record)
        node.models.driver_rows = node.store.driver_rows = self._record_driver_rows
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)
        node.models.driver_rows = node.store.driver_rows = self._driver_rows


def log_bound(size: int) -> int:
    """The most Merkle node keys one proof in a tree of ``size`` leaves may read."""
    return 2 * math.ceil(math.log2(size)) + 2


# --------------------------------------------------------------------------------------------
# Opening, migrating, initialising


def alembic_head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(REPO / "node" / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_open_on_an_empty_database_runs_the_migrations(open_store: Callable[[], Store]) -> None:
    from alembic.migration import MigrationContext

    store = open_store()
    tables = set(inspect(store.engine).get_table_names())
    assert {"alembic_version", "meta", "blocks", "events", "merkle_nodes"} <= tables
    with store.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == alembic_head()
    # (tests/unit/test_migrations.py checks that the migrated schema matches the models.)
    # Nothing is there until initialize().
    assert snapshot(store.engine) == {"meta": [], "blocks": [], "events": [], "merkle_nodes": []}
    with pytest.raises(StorageError):
        store.head()
    with pytest.raises(StorageError):
        _ = store.genesis


def test_initialize_writes_the_genesis_document_and_block_0(
    open_store: Callable[[], Store],
) -> None:
    net, blocks = sample_chain()
    store = open_store()
    store.initialize(net.genesis)

    assert store.head() == head_of(blocks[0])
    assert store.head().tree_size == 0
    assert store.genesis.digest == net.genesis.digest
    rows = snapshot(store.engine)
    assert rows["meta"] == [("genesis", canonical(net.genesis.document).decode())]
    assert [(r.height, r.block_hash, r.header, r.commit) for r in rows["blocks"]] == [
        (0, blocks[0].header.block_hash, blocks[0].header.canonical_bytes, None)
    ]
    assert rows["events"] == rows["merkle_nodes"] == []
    assert store.block(0).to_json() == blocks[0].to_json()
    assert store.root(0) == merkle.EMPTY_ROOT


def test_reopening_gives_the_same_head_genesis_and_merkle_state(
    open_store: Callable[[], Store],
) -> None:
    net, blocks = sample_chain()
    store = filled(open_store(), up_to=12)
    size = store.head().tree_size
    before = snapshot(store.engine)
    store.close()

    again = open_store()
    assert again.head() == head_of(blocks[12])
    assert again.genesis.digest == net.genesis.digest
    assert again.genesis.document == net.genesis.document
    assert again.root(size).hex() == blocks[12].header.tree_root
    hashes = chain_leaf_hashes()
    assert again.inclusion_proof(3, size) == merkle.inclusion_proof(hashes, 3, size)
    assert snapshot(again.engine) == before
    # The reloaded log continues where the old one stopped.
    assert again.append_block(blocks[13]) == head_of(blocks[13])


def test_initialize_with_another_genesis_is_refused(open_store: Callable[[], Store]) -> None:
    other = sample_network(network="other-coop").genesis
    store = filled(open_store(), up_to=2)
    head = store.head()
    before = snapshot(store.engine)

    with pytest.raises(StorageError, match="different genesis"):
        store.initialize(other)
    with pytest.raises(StorageError, match="different genesis"):
        open_store().initialize(other)
    assert store.head() == head
    assert snapshot(store.engine) == before


def test_opening_and_initialising_twice_is_idempotent(open_store: Callable[[], Store]) -> None:
    net, blocks = sample_chain()
    first = open_store()
    second = open_store()  # migrations run again on an up-to-date schema: a no-op
    with pytest.raises(StorageError):
        second.head()
    filled(first, up_to=3)
    before = snapshot(first.engine)

    first.initialize(net.genesis)  # the same genesis again: nothing happens
    third = open_store()
    third.initialize(net.genesis)
    fourth = open_store()

    assert third.head() == fourth.head() == first.head() == head_of(blocks[3])
    assert snapshot(fourth.engine) == before


def test_two_stores_racing_to_initialise_agree_or_refuse(
    open_store: Callable[[], Store],
) -> None:
    net, blocks = sample_chain()
    winner, loser, stranger = open_store(), open_store(), open_store()  # all see no genesis
    winner.initialize(net.genesis)
    before = snapshot(winner.engine)

    loser.initialize(net.genesis)  # the insert collides; it adopts the stored genesis
    assert loser.head() == head_of(blocks[0])
    with pytest.raises(StorageError, match="another genesis"):
        stranger.initialize(sample_network(network="other-coop").genesis)
    assert snapshot(winner.engine) == before


# --------------------------------------------------------------------------------------------
# Appending and reading back


def assert_event_stored(store: Store, envelope: Envelope, index: int, height: int) -> None:
    for found in (store.event(envelope.event_id), store.event_at(index)):
        assert found is not None
        assert (found.index, found.height) == (index, height)
        assert found.envelope.event_id == envelope.event_id
        assert found.envelope.leaf == envelope.leaf
        assert found.envelope.to_json() == envelope.to_json()


def test_append_then_read_back_blocks_and_events(open_store: Callable[[], Store]) -> None:
    net, blocks = sample_chain()
    store = open_store()
    store.initialize(net.genesis)
    index = 0
    for block in blocks[1:]:
        height = block.header.height
        head = store.append_block(block)
        assert head == store.head() == head_of(block)
        assert store.block(height).to_json() == block.to_json()
        assert store.block(height).commit == block.commit
        assert store.header(height) == block.header
        first = index
        for envelope in block.events:
            assert_event_stored(store, envelope, index, height)
            index += 1
        assert [e.envelope.event_id for e in store.events(first, index - 1)] == [
            e.event_id for e in block.events
        ]
        assert store.event_at(index) is None
        if height % 7 == 0:  # carry on with a freshly loaded store now and then
            store.close()
            store = open_store()
            assert store.head() == head_of(block)
    assert store.count_events() == index == sum(CHAIN_SIZES)

    top = blocks[-1].header.height
    assert [b.to_json() for b in store.blocks(0, top)] == [b.to_json() for b in blocks]
    assert [b.to_json() for b in store.blocks(5, 9)] == [b.to_json() for b in blocks[5:10]]
    assert [b.header.height for b in store.blocks(top - 2, top + 10)] == [top - 2, top - 1, top]
    assert list(store.blocks(top + 1, top + 5)) == []
    with pytest.raises(StorageError):
        store.block(top + 1)
    with pytest.raises(StorageError, match="no block at height"):
        store.header(top + 1)
    assert store.header(0) == blocks[0].header

    everything = [e for b in blocks for e in b.events]
    stored = store.events(0, index - 1)
    assert [(s.index, s.envelope.to_json()) for s in stored] == [
        (i, e.to_json()) for i, e in enumerate(everything)
    ]
    heights = [b.header.height for b in blocks for _ in b.events]
    assert [s.height for s in stored] == heights
    assert [s.index for s in store.events(10, 20)] == list(range(10, 21))
    assert store.events(index, index + 5) == []

    assert store.event("00" * 32) is None
    assert store.event("not hex") is None
    assert store.event(everything[0].event_id[:-2]) is None
    assert store.event_at(-1) is None
    assert store.event_at(index) is None


def test_blocks_are_read_in_chunks(
    open_store: Callable[[], Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, blocks = sample_chain()
    store = filled(open_store(), up_to=len(blocks) - 1)
    monkeypatch.setattr(node.store, "_BLOCK_READ_CHUNK", 4)
    top = blocks[-1].header.height

    with StatementLog(store.engine) as log:
        read = [b.to_json() for b in store.blocks(0, top)]
    assert read == [b.to_json() for b in blocks]
    block_reads = [s for s, _ in log.statements if "FROM blocks" in s]
    assert len(block_reads) == math.ceil((top + 1) / 4)

    # Start and end inside chunks; events must stay with their own block across the seams.
    assert [b.to_json() for b in store.blocks(3, 18)] == [b.to_json() for b in blocks[3:19]]


@pytest.mark.parametrize(("start", "end"), [(0, 99), (0, 0), (3, 18), (4, 7), (19, 99), (99, 99)])
def test_block_lines_are_the_blocks_canonical_bytes(
    open_store: Callable[[], Store], monkeypatch: pytest.MonkeyPatch, start: int, end: int
) -> None:
    _, blocks = sample_chain()
    store = filled(open_store(), up_to=len(blocks) - 1)
    monkeypatch.setattr(node.store, "_BLOCK_READ_CHUNK", 4)

    with StatementLog(store.engine) as log:
        lines = list(store.block_lines(start, end))
    assert lines == [b.canonical_bytes for b in blocks[start : end + 1]]
    assert [parse_block(line).to_json() for line in lines] == [
        b.to_json() for b in blocks[start : end + 1]
    ]
    assert lines == [b.canonical_bytes for b in store.blocks(start, end)]
    assert not [s for s, _ in log.statements if "merkle" in s]


# --------------------------------------------------------------------------------------------
# Refused appends leave no trace

REFUSE_AT = 6  # the store holds blocks 0..6; block 7 (five events) is the one to forge


def _forge(name: str) -> Block:
    _, blocks = sample_chain()
    good = blocks[REFUSE_AT + 1]
    h = good.header
    other = blocks[REFUSE_AT - 1]
    forgeries: dict[str, Block] = {
        "height-replayed": blocks[REFUSE_AT],
        "height-skipped": blocks[REFUSE_AT + 2],
        "height-off-by-one": dataclasses.replace(good, header=dataclasses.replace(h, height=8)),
        "prev-wrong": dataclasses.replace(good, header=dataclasses.replace(h, prev="ab" * 32)),
        "prev-grandparent": dataclasses.replace(
            good, header=dataclasses.replace(h, prev=other.header.block_hash)
        ),
        "certificate-missing": dataclasses.replace(good, commit=None),
        "event-count-too-high": dataclasses.replace(
            good, header=dataclasses.replace(h, event_count=h.event_count + 1)
        ),
        "event-dropped": dataclasses.replace(good, events=good.events[:-1]),
        "tree-size-wrong": dataclasses.replace(
            good, header=dataclasses.replace(h, tree_size=h.tree_size + 1)
        ),
        "tree-root-wrong": dataclasses.replace(
            good, header=dataclasses.replace(h, tree_root=other.header.tree_root)
        ),
        "events-reordered": dataclasses.replace(
            good, events=(good.events[1], good.events[0], *good.events[2:])
        ),
        "event-replaced": dataclasses.replace(
            good, events=(*good.events[:-1], blocks[REFUSE_AT + 2].events[0])
        ),
    }
    return forgeries[name]


@pytest.mark.parametrize(
    "forgery",
    [
        "height-replayed",
        "height-skipped",
        "height-off-by-one",
        "prev-wrong",
        "prev-grandparent",
        "certificate-missing",
        "event-count-too-high",
        "event-dropped",
        "tree-size-wrong",
        "tree-root-wrong",
        "events-reordered",
        "event-replaced",
    ],
)
def test_append_refuses_a_block_that_does_not_extend_the_head(
    open_store: Callable[[], Store], forgery: str
) -> None:
    _, blocks = sample_chain()
    store = filled(open_store(), up_to=REFUSE_AT)
    head = store.head()
    before = snapshot(store.engine)
    bad = _forge(forgery)

    with pytest.raises(ChainError) as refused:
        store.append_block(bad)
    assert refused.value.height == bad.header.height
    assert store.head() == head
    assert store.count_events() == head.tree_size
    assert snapshot(store.engine) == before
    assert open_store().head() == head
    # The store is not wedged: the genuine block goes in.
    assert store.append_block(blocks[REFUSE_AT + 1]) == head_of(blocks[REFUSE_AT + 1])


@pytest.mark.parametrize(
    "which",
    ["stored-event-alone", "new-then-stored", "same-new-event-twice"],
)
def test_append_refuses_an_event_id_that_is_already_stored(
    open_store: Callable[[], Store], which: str
) -> None:
    net, blocks = sample_chain()
    store = filled(open_store(), up_to=REFUSE_AT)
    head = store.head()
    before = snapshot(store.engine)
    stored = blocks[4].events[1]
    new = blocks[REFUSE_AT + 1].events[0]
    events = {
        "stored-event-alone": [stored],
        "new-then-stored": [new, stored],
        "same-new-event-twice": [new, new],
    }[which]
    duplicate = next_block(net, list(blocks[: REFUSE_AT + 1]), events)

    with pytest.raises(StorageError):
        store.append_block(duplicate)
    assert store.head() == head
    assert snapshot(store.engine) == before
    assert store.event(new.event_id) is None
    found = store.event(stored.event_id)
    assert found is not None
    assert found.height == 4
    assert open_store().head() == head
    assert store.append_block(blocks[REFUSE_AT + 1]) == head_of(blocks[REFUSE_AT + 1])


# --------------------------------------------------------------------------------------------
# A crash between the writes and the commit


class SimulatedCrashError(Exception):
    """Raised from ``_before_commit`` in place of a crash."""


def _crash(self: Store, session: Session) -> None:
    raise SimulatedCrashError("power cut")


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (SimulatedCrashError("power cut"), SimulatedCrashError),
        (OperationalError("COMMIT", {}, Exception("disk I/O error")), StorageError),
    ],
    ids=["foreign-exception-propagates", "database-error-becomes-storage-error"],
)
def test_a_crash_before_commit_leaves_no_trace(
    open_store: Callable[[], Store],
    monkeypatch: pytest.MonkeyPatch,
    raised: Exception,
    expected: type[Exception],
) -> None:
    _, blocks = sample_chain()
    store = filled(open_store(), up_to=REFUSE_AT)
    head = store.head()
    size = head.tree_size
    block = blocks[REFUSE_AT + 1]
    height = block.header.height
    before = snapshot(store.engine)
    old_proof = store.inclusion_proof(2, size)
    old_consistency = store.consistency_proof(3, size)
    seen_in_transaction: list[tuple[int, int, int]] = []

    def crash(self: Store, session: Session) -> None:
        # The rows are really there, inside the transaction, when the crash comes.
        seen_in_transaction.append(
            (
                session.scalar(
                    select(func.count()).select_from(BlockRow).where(BlockRow.height == height)
                )
                or 0,
                session.scalar(
                    select(func.count()).select_from(EventRow).where(EventRow.height == height)
                )
                or 0,
                session.scalar(select(func.count()).select_from(MerkleNodeRow)) or 0,
            )
        )
        raise raised

    with monkeypatch.context() as patch:
        patch.setattr(Store, "_before_commit", crash)
        with pytest.raises(expected):
            store.append_block(block)
    nodes_before = len(before["merkle_nodes"])
    log = log_of(list(blocks[: REFUSE_AT + 1]))
    new_nodes = sum(len(log.append(merkle.leaf_hash(e.leaf))) for e in block.events)
    assert new_nodes > len(block.events)  # the block completes interior nodes too
    assert seen_in_transaction == [(1, len(block.events), nodes_before + new_nodes)]

    # (a) The same Store object still serves the old head and proofs.
    assert store.head() == head
    assert store.root(size).hex() == head.tree_root
    assert store.inclusion_proof(2, size) == old_proof
    assert store.consistency_proof(3, size) == old_consistency
    with pytest.raises(ProofError):
        store.root(size + 1)

    # (b) A store opened afresh sees no trace of the block.
    fresh = open_store()
    assert fresh.head() == head
    assert table_counts(fresh.engine, height) == (0, 0, nodes_before)
    assert snapshot(fresh.engine) == before
    assert all(fresh.event(e.event_id) is None for e in block.events)

    # (c) The same block goes in afterwards, on the old object and then as seen afresh.
    assert store.append_block(block) == head_of(block)
    assert open_store().head() == head_of(block)
    assert table_counts(store.engine, height) == (1, len(block.events), nodes_before + new_nodes)


_KILL_SCRIPT = """
import os, signal, sys
from pathlib import Path
from sqlalchemy import func, select
from ledger.blocks import parse_block
from node.models import EventRow
from node.store import Store

url, block_file, when = sys.argv[1:4]
block = parse_block(Path(block_file).read_bytes())
store = Store.open(url)

def kill(self, session):
    written = session.scalar(
        select(func.count()).select_from(EventRow).where(EventRow.height == block.header.height)
    )
    print(f"written {written}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

if when == "before-commit":
    Store._before_commit = kill
store.append_block(block)
print("committed", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("when", ["before-commit", "after-commit"])
def test_sqlite_survives_kill_9_during_an_append(tmp_path: Path, when: str) -> None:
    _, blocks = sample_chain()
    url = f"sqlite:///{tmp_path / 'node.db'}"
    store = filled(Store.open(url), up_to=REFUSE_AT)
    head = store.head()
    before = snapshot(store.engine)
    store.close()
    block = blocks[REFUSE_AT + 1]
    block_file = tmp_path / "block.json"
    block_file.write_text(json.dumps(block.to_json()))

    process = subprocess.run(
        [sys.executable, "-c", _KILL_SCRIPT, url, str(block_file), when],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr
    store = Store.open(url)
    try:
        if when == "before-commit":
            assert process.stdout == f"written {len(block.events)}\n"
            assert store.head() == head
            assert snapshot(store.engine) == before
            assert store.append_block(block) == head_of(block)
        else:
            assert process.stdout == "committed\n"
            assert store.head() == head_of(block)
            assert store.block(block.header.height).to_json() == block.to_json()
            assert store.count_events() == block.header.tree_size
            assert store.root(block.header.tree_size).hex() == block.header.tree_root
            assert store.append_block(blocks[REFUSE_AT + 2]) == head_of(blocks[REFUSE_AT + 2])
    finally:
        store.close()


# --------------------------------------------------------------------------------------------
# Proofs


def test_proofs_equal_the_in_memory_rfc9162_proofs(open_store: Callable[[], Store]) -> None:
    _, blocks = sample_chain()
    store = filled(open_store(), up_to=len(blocks) - 1)
    hashes = chain_leaf_hashes()
    total = len(hashes)
    assert store.head().tree_size == total

    assert [store.leaf_hash(i) for i in range(total)] == hashes
    roots = [store.root(size) for size in range(total + 1)]
    assert roots == [merkle.root(hashes[:size]) for size in range(total + 1)]
    for block in blocks:
        assert roots[block.header.tree_size].hex() == block.header.tree_root

    for size in range(1, total + 1):
        for index in range(size):
            proof = store.inclusion_proof(index, size)
            assert proof == merkle.inclusion_proof(hashes, index, size), (index, size)
            merkle.verify_inclusion(hashes[index], index, size, proof, roots[size])
            assert store.inclusion(index, size) == (proof, hashes[index], roots[size])
        for size1 in range(1, size + 1):
            proof = store.consistency_proof(size1, size)
            assert proof == merkle.consistency_proof(hashes, size1, size), (size1, size)
            merkle.verify_consistency(size1, size, proof, roots[size1], roots[size])
            assert store.consistency(size1, size) == (proof, roots[size1], roots[size])


def test_impossible_proofs_raise_proof_error(open_store: Callable[[], Store]) -> None:
    store = filled(open_store(), up_to=REFUSE_AT)
    n = store.head().tree_size
    impossible: dict[str, Callable[[], object]] = {
        "inclusion index == size": lambda: store.inclusion_proof(n, n),
        "inclusion index > size": lambda: store.inclusion_proof(5, 3),
        "inclusion negative index": lambda: store.inclusion_proof(-1, n),
        "inclusion size beyond log": lambda: store.inclusion_proof(0, n + 1),
        "inclusion empty tree": lambda: store.inclusion_proof(0, 0),
        "consistency from 0": lambda: store.consistency_proof(0, n),
        "consistency 0 to 0": lambda: store.consistency_proof(0, 0),
        "consistency shrinking": lambda: store.consistency_proof(n, n - 1),
        "consistency beyond log": lambda: store.consistency_proof(1, n + 1),
        "consistency negative": lambda: store.consistency_proof(-1, n),
        "root beyond log": lambda: store.root(n + 1),
        "root negative": lambda: store.root(-1),
        "leaf beyond log": lambda: store.leaf_hash(n),
        "leaf -1": lambda: store.leaf_hash(-1),
        "leaf -5": lambda: store.leaf_hash(-5),
    }
    wrong = []
    for name, call in impossible.items():
        try:
            call()
        except ProofError:
            continue
        except Exception as e:
            wrong.append(f"{name}: {type(e).__name__}: {e}")
        else:
            wrong.append(f"{name}: no error")
    assert wrong == []


def test_a_driver_error_in_a_hot_read_is_a_storage_error(
    open_store: Callable[[], Store],
) -> None:
    """Proofs and event locations read through a driver cursor; its errors keep the contract."""
    store = filled(open_store(), up_to=REFUSE_AT)
    n = store.head().tree_size
    first = store.event_at(0)
    assert first is not None
    with store.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE merkle_nodes RENAME TO merkle_nodes_gone")
        connection.exec_driver_sql("ALTER TABLE events RENAME TO events_gone")
    with pytest.raises(StorageError, match="cannot read Merkle nodes"):
        store.inclusion_proof(0, n)
    with pytest.raises(StorageError, match="cannot read Merkle nodes"):
        store.consistency_proof(1, n)
    with pytest.raises(StorageError, match="cannot read events"):
        store.locations([first.envelope.event_id])


def test_a_header_read_alone_keeps_the_storage_contract(open_store: Callable[[], Store]) -> None:
    store = filled(open_store(), up_to=REFUSE_AT)
    with store.engine.begin() as connection:
        connection.execute(update(BlockRow).where(BlockRow.height == 2).values(header=b"{"))
    with pytest.raises(StorageError, match="header of block 2 is unreadable"):
        store.header(2)
    with store.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE blocks RENAME TO blocks_gone")
    with pytest.raises(StorageError, match="cannot read block 3"):
        store.header(3)


def test_a_connection_lost_in_a_hot_read_is_not_handed_out_again(
    database_url: str, open_store: Callable[[], Store]
) -> None:
    """The server ends a pooled connection: the next proof fails, and drops it from the pool."""
    if not database_url.startswith("postgresql"):
        pytest.skip("needs a server that can end a connection")
    store = filled(open_store(), up_to=REFUSE_AT)
    n = store.head().tree_size
    proof = store.inclusion_proof(0, n)
    doomed, other = store.engine.connect(), store.engine.connect()
    pid = doomed.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    doomed.close()  # back to the pool, first in line (the pool hands out the oldest first)
    other.exec_driver_sql("SELECT pg_terminate_backend(%s)", (pid,))
    deadline = time.monotonic() + 10
    while other.exec_driver_sql(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
    ).scalar():
        assert time.monotonic() < deadline, "the server did not end the connection"
        time.sleep(0.01)
    other.close()
    with pytest.raises(StorageError, match="cannot read Merkle nodes") as lost:
        store.inclusion_proof(0, n)
    assert getattr(lost.value.__cause__, "connection_invalidated", False)
    assert store.inclusion_proof(0, n) == proof


def _proof_reads(
    store: Store, make_proof: Callable[[], list[bytes]]
) -> tuple[list[bytes], list[int]]:
    """A proof and the Merkle node keys it read: at most one query, never the upper tree's
    (a store holds it in memory), never the events."""
    with StatementLog(store.engine) as log:
        proof = make_proof()
    for statement, _ in log.statements:
        assert "merkle_nodes" in statement
        assert "events" not in statement  # a proof never needs the leaves
    assert len(log.statements) <= 1
    keys = [key for _, parameters in log.statements for key in parameters]
    assert all(key < UPPER_KEYS for key in keys)
    return proof, keys


def _check_proof_reads(store: Store, hashes: list[bytes], sizes: Iterable[int]) -> None:
    """Every proof for trees of ``sizes`` is RFC 9162's and reads logarithmically many keys;
    an inclusion proof only the leaf's block of 32 and the tree's last, incomplete one."""

    def reads(make_proof: Callable[[], list[bytes]]) -> tuple[list[bytes], list[int]]:
        return _proof_reads(store, make_proof)

    for size in sizes:
        last_block = size >> BLOCK_LEVELS << BLOCK_LEVELS
        for index in range(size):
            proof, keys = reads(lambda index=index, size=size: store.inclusion_proof(index, size))
            assert proof == merkle.inclusion_proof(hashes, index, size)
            assert len(keys) <= log_bound(size), (index, size, keys)
            assert keys or index ^ 1 >= size, (index, size)  # the leaf's sibling is read
            block = index >> BLOCK_LEVELS << BLOCK_LEVELS
            assert all(
                block << 6 <= key < (block + (1 << BLOCK_LEVELS)) << 6 or key >= last_block << 6
                for key in keys
            ), (index, size, keys)
        for size1 in range(1, size):
            proof, keys = reads(lambda m=size1, size=size: store.consistency_proof(m, size))
            assert proof == merkle.consistency_proof(hashes, size1, size)
            assert len(keys) <= log_bound(size), (size1, size, keys)


def test_proofs_beyond_one_block_read_only_the_leafs_block(tmp_path: Path) -> None:
    net = sample_network()
    store = Store.open(f"sqlite:///{tmp_path / 'node.db'}")
    blocks = list(net.chain(9, 32))
    store.initialize(net.genesis)
    for block in blocks[1:]:
        store.append_block(block)
    hashes = [merkle.leaf_hash(e.leaf) for b in blocks for e in b.events]
    assert len(hashes) > 2 << BLOCK_LEVELS  # the upper tree has two levels
    try:
        _check_proof_reads(store, hashes, (64, 65, 127, 128, 129, 200, len(hashes)))
        store.close()
        store = Store.open(f"sqlite:///{tmp_path / 'node.db'}")  # the upper tree read back
        _check_proof_reads(store, hashes, (len(hashes),))
    finally:
        store.close()


def test_a_refused_block_leaves_no_node_in_the_upper_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After the crash, another block is decided at that height: the refused block's upper
    # nodes (5, 1) and (6, 0) must not be served for it.
    net = sample_network()
    first, refused = list(net.chain(2, 32))[1:]
    other = list(net.chain(2, 32, start=dt.datetime(2026, 11, 30, tzinfo=dt.UTC)))[2]
    log = merkle.CompactRange()
    for envelope in first.events:
        log.append(merkle.leaf_hash(envelope.leaf))
    decided = net.commit(first.header, log, list(other.events), refused.header.time)
    store = Store.open(f"sqlite:///{tmp_path / 'node.db'}")
    store.initialize(net.genesis)
    store.append_block(first)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(Store, "_before_commit", _crash)
            with pytest.raises(SimulatedCrashError):
                store.append_block(refused)
        store.append_block(decided)
        hashes = [merkle.leaf_hash(e.leaf) for b in (first, decided) for e in b.events]
        _check_proof_reads(store, hashes, (33, 64))
    finally:
        store.close()


def _store_of_160_leaves(url: str) -> tuple[Store, list[bytes]]:
    """A store of 160 leaves: its upper tree is nodes (5, 0) to (5, 4), (6, 0), (6, 1), (7, 0)."""
    net = sample_network()
    store = Store.open(url)
    store.initialize(net.genesis)
    blocks = list(net.chain(4, 40))
    for block in blocks[1:]:
        store.append_block(block)
    return store, [merkle.leaf_hash(e.leaf) for b in blocks for e in b.events]


def test_a_store_missing_a_node_of_its_upper_tree_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    store, _ = _store_of_160_leaves(url)
    with store.engine.begin() as connection:
        connection.exec_driver_sql(f'DELETE FROM merkle_nodes WHERE "key" = {node_key(6, 1)}')
    store.close()
    with pytest.raises(StorageError, match="Merkle log in the database is incomplete"):
        Store.open(url)


def test_upper_nodes_beyond_the_head_are_left_out(tmp_path: Path) -> None:
    """Another process may commit a block between the head and the upper tree being read."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    store, hashes = _store_of_160_leaves(url)
    with store.engine.begin() as connection:
        connection.exec_driver_sql(
            f"INSERT INTO merkle_nodes VALUES ({node_key(7, 1)}, zeroblob(32))"
        )
    store.close()
    store = Store.open(url)
    try:
        _check_proof_reads(store, hashes, (len(hashes),))
        fault = store.check_integrity().fault
        assert fault is not None  # the integrity walk still sees the extra row
        assert "nodes" in str(fault)
    finally:
        store.close()


def test_folded_ranges_are_forgotten_at_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, hashes = _store_of_160_leaves(f"sqlite:///{tmp_path / 'node.db'}")
    monkeypatch.setattr(node.store, "_FOLDED_RANGES", 8)
    try:
        for size in range(1, len(hashes) + 1):
            assert store.root(size) == merkle.root(hashes[:size])
            assert len(store._folded) <= 8
        _check_proof_reads(store, hashes, (len(hashes),))
    finally:
        store.close()


def test_a_proof_when_the_database_cannot_be_reached_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "here").mkdir()
    store, _ = _store_of_160_leaves(f"sqlite:///{tmp_path / 'here' / 'node.db'}")
    store.engine.dispose()  # the pool's connections are closed; the next one must connect
    (tmp_path / "here").rename(tmp_path / "gone")
    try:
        with pytest.raises(StorageError, match="cannot read Merkle nodes"):
            store.inclusion_proof(3, 100)
    finally:
        store.close()


def test_proofs_read_at_most_one_query_of_logarithmically_many_keys(
    open_store: Callable[[], Store],
) -> None:
    _, blocks = sample_chain()
    store = filled(open_store(), up_to=len(blocks) - 1)
    hashes = chain_leaf_hashes()
    total = len(hashes)
    _check_proof_reads(store, hashes, (2, 16, 33, 48, total))
    # A one-leaf tree and equal sizes need no hashes, and read nothing.
    assert _proof_reads(store, lambda: store.inclusion_proof(0, 1)) == ([], [])
    assert _proof_reads(store, lambda: store.consistency_proof(total, total)) == ([], [])
