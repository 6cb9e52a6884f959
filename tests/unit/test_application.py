"""The mempool and block checks of a validator (``node.application``)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from ledger.blocks import Block, CommitCertificate
from ledger.errors import RuleViolation, SignatureError
from ledger.events import Envelope, EventSignature
from node.application import LedgerApplication, MemoryLedger
from tests.builders import BLOCK_TIME, GOVERNANCE, World, public_key_hex


def _setup() -> tuple[World, LedgerApplication]:
    world = World()
    ledger = MemoryLedger(world.genesis)
    proposer = world.genesis.validators[0].key_id
    return world, LedgerApplication(world.genesis, ledger, proposer, lambda: BLOCK_TIME)


def _org(world: World, org_id: str) -> Envelope:
    payload = {
        "org_id": org_id,
        "name": f"Koperasi {org_id}",
        "kind": "cooperative",
        "admins": [public_key_hex(f"{org_id}/admin-1")],
    }
    return world.envelope("org.register", payload, [GOVERNANCE])


def _forged(envelope: Envelope) -> Envelope:
    """The same body (so the same event id) with its signature's last byte flipped."""
    signature = envelope.sigs[0]
    bad = EventSignature(signature.key, signature.sig[:-1] + bytes([signature.sig[-1] ^ 1]))
    return dataclasses.replace(envelope, sigs=(bad,))


def _commit(app: LedgerApplication, block: Block) -> None:
    app.commit(block, CommitCertificate(0, ()))  # the certificate is checked by consensus


def test_a_pending_event_with_forged_signatures_in_a_proposal_is_refused() -> None:
    # The event id covers the body only: a proposer could pair a pending event's body with
    # signatures that do not verify. That block must not pass because the body was seen.
    world, app = _setup()
    event = _org(world, "koperasi-a")
    app.submit(event)
    honest = app.build_block(1, 0)
    assert honest.events == (event,)
    forged = _forged(event)
    assert forged.event_id == event.event_id
    assert forged.leaf != event.leaf
    builder = LedgerApplication(
        world.genesis, MemoryLedger(world.genesis), honest.header.proposer, lambda: BLOCK_TIME
    )
    builder._verified.add((forged.event_id, forged.sigs))  # a proposer that does not check
    builder._pending[forged.event_id] = forged
    with pytest.raises(SignatureError):
        app.validate_block(builder.build_block(1, 0))
    app.validate_block(honest)


def test_a_batch_is_admitted_whole_or_not_at_all() -> None:
    world, app = _setup()
    first, duplicate_org = _org(world, "koperasi-a"), _org(world, "koperasi-a")
    admissions, refused = app.submit_batch([first, duplicate_org])
    assert [position for position, _, _ in refused] == [1]
    assert isinstance(refused[0][2], RuleViolation)
    assert admissions[0].status == "pending"
    assert app.pending_count == 0
    assert not app.is_pending(first.event_id)
    second = _org(world, "koperasi-b")
    admissions, refused = app.submit_batch([first, second, first], admit=False)
    assert not refused
    assert app.pending_count == 0
    admissions, refused = app.submit_batch([first, second, first])
    assert not refused
    assert [a.status for a in admissions] == ["pending"] * 3
    assert app.pending_count == 2
    assert app.pending_view.org("koperasi-b") is not None


def test_a_batch_is_checked_after_the_pending_events() -> None:
    world, app = _setup()
    app.submit(_org(world, "koperasi-a"))
    _, refused = app.submit_batch([_org(world, "koperasi-a")])
    assert refused
    assert isinstance(refused[0][2], RuleViolation)
    assert refused[0][2].rule == "org.exists"


def test_committing_another_block_than_the_one_validated_uses_its_own_events() -> None:
    world, app = _setup()
    a, b = _org(world, "koperasi-a"), _org(world, "koperasi-b")
    app.submit(a)
    first = app.build_block(1, 0)
    app.validate_block(first)  # kept: the committed block below is another one
    app.submit(b)
    second = app.build_block(1, 1)
    assert second.header.block_hash != first.header.block_hash
    _commit(app, second)
    assert app.ledger.state.org("koperasi-b") is not None
    assert app.pending_count == 0


def test_after_a_block_of_the_first_pending_events_the_rest_stay_checked() -> None:
    world, app = _setup()
    a, b, c = (_org(world, f"koperasi-{x}") for x in "abc")
    app.submit_batch([a, b, c])
    app._max_events = 1
    _commit(app, app.build_block(1, 0))  # holds a: the mempool is not rebuilt
    assert app.pending_count == 2
    for again in (_org(world, "koperasi-a"), _org(world, "koperasi-b")):
        _, refused = app.submit_batch([again])
        assert [error.rule for _, _, error in refused] == ["org.exists"]  # type: ignore[attr-defined]
    assert app.pending_view.event_index(b.event_id) == 1
    app._max_events = 10
    _commit(app, app.build_block(2, 0))
    assert app.pending_count == 0
    assert app.ledger.state.event_index(c.event_id) == 2


def test_a_block_that_skips_pending_events_rebuilds_the_mempool() -> None:
    world, app = _setup()
    a, b = _org(world, "koperasi-a"), _org(world, "koperasi-b")
    app.submit_batch([a, b])
    other = LedgerApplication(
        world.genesis, MemoryLedger(world.genesis), app._proposer_id, lambda: BLOCK_TIME
    )
    other.submit(b)
    _commit(app, other.build_block(1, 0))  # holds b only
    assert app.pending_count == 1
    assert app.is_pending(a.event_id)
    assert app.pending_view.event_index(a.event_id) == 1  # re-checked at its new index


def test_a_block_of_pending_events_has_the_effects_a_fresh_check_gives() -> None:
    world, app = _setup()
    world.register_org("koperasi-a", "A", "cooperative")
    world.register_member("koperasi-a/ani", "producer")
    lots = [
        world.envelope(
            "lot.create",
            {
                "lot_id": f"L-{i}",
                "commodity": "rubber",
                "quantity": "12.5",
                "uom": "kg",
                "producer": "koperasi-a/ani",
                "harvested_on": "2026-11-20",
            },
            ["koperasi-a/ani"],
        )
        for i in range(3)
    ]
    app.submit_batch([*world.applied, *lots])
    block = app.build_block(1, 0)
    app._validated = None  # forget the proposer's own answer: take the mempool's
    fresh = LedgerApplication(
        world.genesis, MemoryLedger(world.genesis), app._proposer_id, lambda: BLOCK_TIME
    )
    assert app.effects_of(block) == fresh.effects_of(block)


def test_a_block_of_pending_events_is_still_checked_against_its_own_time() -> None:
    world = World()
    later = BLOCK_TIME + dt.timedelta(minutes=10)
    app = LedgerApplication(
        world.genesis,
        MemoryLedger(world.genesis),
        world.genesis.validators[0].key_id,
        lambda: later,
    )
    event = world.envelope(
        "org.register",
        {
            "org_id": "koperasi-late",
            "name": "Late",
            "kind": "cooperative",
            "admins": [public_key_hex("koperasi-late/admin-1")],
        },
        [GOVERNANCE],
        created_at="2026-11-29T03:14:00Z",
    )
    app.submit(event)  # fine at 03:10: four minutes ahead
    block = app.build_block(1, 0)
    earlier = dataclasses.replace(block.header, time="2026-11-29T03:05:00Z")
    app._validated = None
    with pytest.raises(RuleViolation) as refused:
        app.effects_of(Block(earlier, block.events, None))
    assert refused.value.rule == "event.future"
