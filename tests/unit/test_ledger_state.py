"""The supply-chain state in the node's database: written with each block, replayable, traceable.

Runs on SQLite and PostgreSQL (the ``database_url`` fixture). The events are those of
``tests.builders.fixture_world`` plus a delivery, merge, split and shipment, committed in
certified blocks of a few events each.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from ledger.blocks import Block, genesis_header
from ledger.errors import RuleViolation, SignatureError
from ledger.events import Envelope
from ledger.merkle import CompactRange, leaf_hash
from ledger.state import state_digest
from ledger.trace import trace_back, trace_forward
from node.ledger_state import (
    CachedState,
    DatabaseState,
    apply_block,
    check_state,
    rebuild_state,
)
from node.models import LotRow
from node.store import Store
from rantai.samplechain import SampleNetwork, sample_network
from tests.builders import World, fixture_world

CLERK = "koperasi-karet/clerk"


def _world() -> World:
    world = fixture_world()
    world.ship("RB-BUDI-1", "SH-1", "koperasi-karet", signer="koperasi-karet/budi")
    world.receive("RB-BUDI-1", "SH-1", "495", signer=CLERK)
    world.ship("RB-ANI-1", "SH-2", "koperasi-karet", signer="koperasi-karet/ani")
    world.receive("RB-ANI-1", "SH-2", "250", signer=CLERK)
    world.submit("lot.merge", {"inputs": ["RB-BUDI-1", "RB-ANI-1"], "lot_id": "M-1"}, [CLERK])
    world.submit(
        "lot.split",
        {"lot_id": "M-1", "outputs": [{"lot_id": "EXP-1", "quantity": "600"}]},
        [CLERK],
    )
    world.ship("EXP-1", "SH-EU-1", "eu-buyer", signer=CLERK)
    world.receive("EXP-1", "SH-EU-1", "598.5", signer="eu-buyer/anna")
    return world


@pytest.fixture(scope="module")
def world() -> World:
    return _world()


def _network(world: World) -> SampleNetwork:
    sample = sample_network()
    return SampleNetwork(world.genesis, sample.validator_keys, sample.governance_key, sample.seed)


def _blocks(world: World, events: list[Envelope], per_block: int = 4) -> Iterator[Block]:
    net = _network(world)
    header = genesis_header(world.genesis)
    log = CompactRange()
    moment = dt.datetime(2026, 11, 29, 3, 0, tzinfo=dt.UTC)
    for start in range(0, len(events), per_block):
        block = net.commit(header, log, events[start : start + per_block], _time(moment))
        header = block.header
        yield block


def _time(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def store(database_url: str, world: World) -> Iterator[Store]:
    opened = Store.open(database_url)
    opened.initialize(world.genesis)
    yield opened
    opened.close()


def test_committed_state_equals_the_in_memory_state(store: Store, world: World) -> None:
    for block in _blocks(world, world.applied):
        apply_block(store, block)
    assert state_digest(DatabaseState(store.engine).entities()) == world.digest()
    check = check_state(store)
    assert check.ok
    assert check.stored == world.digest()


def test_traces_from_the_database_equal_traces_in_memory(store: Store, world: World) -> None:
    for block in _blocks(world, world.applied):
        apply_block(store, block)
    database = DatabaseState(store.engine)
    for lot_id in ("EXP-1", "M-1", "RB-BUDI-2", "KP-SITI-1"):
        assert trace_back(database, lot_id) == trace_back(world.memory, lot_id)
    for lot_id in ("RB-BUDI-1", "RB-ANI-1", "EXP-1"):
        assert trace_forward(database, lot_id) == trace_forward(world.memory, lot_id)
    origins = {o.lot.lot_id: str(o.quantity) for o in trace_back(database, "EXP-1").origins}
    # EXP-1 has M-1's mix (495 of budi's, 250 of ani's in 745): 598.5 * 495/745, 598.5 * 250/745.
    assert origins == {"RB-BUDI-1": "397.661074", "RB-ANI-1": "200.838926"}


def test_a_block_with_an_invalid_event_writes_nothing(store: Store, world: World) -> None:
    good = list(_blocks(world, world.applied[:20]))
    for block in good:
        apply_block(store, block)
    head, digest = store.head(), state_digest(DatabaseState(store.engine).entities())
    # applied[20] ships RB-BUDI-1; budi then tries to split the lot that is on its way.
    double_spend = world.envelope(
        "lot.split",
        {"lot_id": "RB-BUDI-1", "outputs": [{"lot_id": "X", "quantity": "600"}]},
        ["koperasi-karet/budi"],
    )
    bad = _network(world).commit(
        good[-1].header,
        _log_of(good),
        [world.applied[20], double_spend],
        _time(dt.datetime.now(dt.UTC)),
    )
    with pytest.raises(RuleViolation) as raised:
        apply_block(store, bad)
    assert raised.value.rule == "lot.not-active"
    assert raised.value.event_id == double_spend.event_id
    assert store.head() == head
    assert state_digest(DatabaseState(store.engine).entities()) == digest


def test_a_bad_signature_writes_nothing(store: Store, world: World) -> None:
    first = next(_blocks(world, world.applied[:1]))
    forged = Envelope(
        first.events[0].body,
        tuple(type(s)(s.key, bytes(64)) for s in first.events[0].sigs),
        first.events[0].body_bytes,
        first.events[0].event_id,
        first.events[0].created_at,
    )
    block = _network(world).commit(
        genesis_header(world.genesis), CompactRange(), [forged], first.header.time
    )
    with pytest.raises(SignatureError):
        apply_block(store, block)
    assert store.head().height == 0


def test_a_tampered_state_is_detected_and_rebuilt(store: Store, world: World) -> None:
    for block in _blocks(world, world.applied):
        apply_block(store, block)
    with Session(store.engine) as session, session.begin():
        session.execute(update(LotRow).where(LotRow.lot_id == "EXP-1").values(quantity="700"))
    broken = check_state(store)
    assert not broken.ok
    assert broken.replayed == world.digest()
    assert rebuild_state(store).ok
    assert DatabaseState(store.engine).lot("EXP-1").quantity == world.memory.lot("EXP-1").quantity  # type: ignore[union-attr]


def test_a_crash_before_commit_leaves_the_state_untouched(
    store: Store, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = list(_blocks(world, world.applied))
    for block in blocks[:-1]:
        apply_block(store, block)
    digest = state_digest(DatabaseState(store.engine).entities())

    def crash(self: Store, session: Session) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(Store, "_before_commit", crash)
    with pytest.raises(RuntimeError):
        apply_block(store, blocks[-1])
    assert state_digest(DatabaseState(store.engine).entities()) == digest
    monkeypatch.undo()
    apply_block(store, blocks[-1])
    assert check_state(store).ok


def _log_of(blocks: list[Block]) -> CompactRange:
    log = CompactRange()
    for block in blocks:
        for envelope in block.events:
            log.append(leaf_hash(envelope.leaf))
    return log


def test_cached_state_answers_like_the_database(store: Store, world: World) -> None:
    database = DatabaseState(store.engine)
    cached = CachedState(database, capacity=3)  # small: evictions happen
    assert cached.lot("EXP-1") is None  # a miss is cached too ...
    for block in _blocks(world, world.applied):
        cached.apply(apply_block(store, block))  # ... and corrected by the write-through
    lots = ["EXP-1", "M-1", "RB-BUDI-1", "RB-ANI-1", "KP-SITI-1", "NOPE"]
    for lot_id in lots + lots:
        assert cached.lot(lot_id) == database.lot(lot_id)
    for envelope in world.applied[::5]:
        assert cached.event_index(envelope.event_id) == database.event_index(envelope.event_id)
    member = "koperasi-karet/budi"
    assert cached.member(member) == database.member(member)
    assert cached.shipment("SH-EU-1") == database.shipment("SH-EU-1")
