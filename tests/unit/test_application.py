"""The mempool and block checks of a validator (``node.application``)."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from ledger.blocks import Block, CommitCertificate, genesis_header
from ledger.encoding import canonical
from ledger.errors import ChainError, RuleViolation, SignatureError
from ledger.events import Envelope, EventSignature
from node.application import LedgerApplication, MemoryLedger, verified
from node.consensus import Proposal, parse_message
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


def _proposal_wire(block: Block) -> dict[str, object]:
    """A proposal of ``block`` as it travels (its signature is not what these tests check)."""
    return Proposal(1, 0, -1, block, block.header.proposer, bytes(64)).to_json()


def test_a_proposal_takes_the_events_the_validator_holds() -> None:
    world, app = _setup()
    held, new = _org(world, "koperasi-a"), _org(world, "koperasi-b")
    app.submit(held)
    builder = LedgerApplication(
        world.genesis, MemoryLedger(world.genesis), app._proposer_id, lambda: BLOCK_TIME
    )
    builder.submit_batch([held, new])
    proposal = parse_message(_proposal_wire(builder.build_block(1, 0)), held=app.held)
    assert isinstance(proposal, Proposal)
    first, second = proposal.block.events
    assert first is app.pending_event(held.event_id)  # taken, not parsed again
    assert second is not new
    assert second.event_id == new.event_id  # parsed
    app.validate_block(proposal.block)
    _commit(app, proposal.block)
    assert app.held(held.to_json()) is None  # committed: no longer held


@pytest.mark.parametrize(
    "change",
    [
        lambda wire: wire["body"]["payload"].update(name="Koperasi lain"),
        lambda wire: wire.update(extra=1),
        lambda wire: wire["sigs"][0].update(key="00" * 32),
        lambda wire: wire.pop("body"),
        lambda wire: wire.update(sigs=[]),
        lambda wire: wire.update(sigs="not a list"),
    ],
)
def test_a_held_event_is_taken_only_for_its_wire_form(
    change: Callable[[dict[str, Any]], None],
) -> None:
    world, app = _setup()
    event = _org(world, "koperasi-a")
    app.submit(event)
    assert app.held(event.to_json()) is app.pending_event(event.event_id)
    wire = copy.deepcopy(event.to_json())
    change(wire)
    assert app.held(wire) is None
    assert app.held("not an event") is None


def test_a_held_event_equal_only_to_python_is_caught_by_the_tree_root() -> None:
    # ``{"v": true} == {"v": 1}`` in Python: an event whose wire form differs from a held one
    # only so is taken as the held one, and the block's tree root, computed over the other
    # event's bytes, no longer matches: the block is refused, never stored with other events.
    world, app = _setup()
    event = _org(world, "koperasi-a")
    app.submit(event)
    body = {**event.body, "v": True}
    twin = dataclasses.replace(event, body=body, body_bytes=canonical(body))
    assert twin.to_json() == event.to_json()
    assert twin.leaf != event.leaf
    builder = LedgerApplication(
        world.genesis, MemoryLedger(world.genesis), app._proposer_id, lambda: BLOCK_TIME
    )
    builder._verified.add((twin.event_id, twin.sigs))
    builder._pending[twin.event_id] = twin
    proposal = parse_message(_proposal_wire(builder.build_block(1, 0)), held=app.held)
    assert isinstance(proposal, Proposal)
    assert proposal.block.events == (event,)
    with pytest.raises(ChainError, match="tree_root"):
        app.validate_block(proposal.block)


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


def test_a_proposer_leaves_out_an_event_dated_after_its_block() -> None:
    # Admitted while the clock read 03:10; the clock then went back five minutes (NTP), so
    # one event is nine minutes ahead of the block: it is left out, the others go in.
    world = World()
    clock = [BLOCK_TIME + dt.timedelta(minutes=10)]
    app = LedgerApplication(
        world.genesis,
        MemoryLedger(world.genesis),
        world.genesis.validators[0].key_id,
        lambda: clock[0],
    )
    early, late, after = (
        world.envelope(
            "org.register",
            {
                "org_id": org_id,
                "name": org_id,
                "kind": "cooperative",
                "admins": [public_key_hex(f"{org_id}/admin-1")],
            },
            [GOVERNANCE],
            created_at=created_at,
        )
        for org_id, created_at in (
            ("koperasi-a", "2026-11-29T03:00:00Z"),
            ("koperasi-b", "2026-11-29T03:14:00Z"),
            ("koperasi-c", "2026-11-29T03:01:00Z"),
        )
    )
    assert not app.submit_batch([early, late, after])[1]
    clock[0] -= dt.timedelta(minutes=5)
    block = app.build_block(1, 0)
    assert block.events == (early, after)
    _commit(app, block)
    assert app.ledger.state.event_index(after.event_id) == 1  # checked at its own index
    assert app.ledger.state.event_index(late.event_id) is None


def test_payloads_of_refused_events_are_not_kept_without_bound() -> None:
    # Each copy passes the schema, so its payload is remembered, then org.exists refuses it;
    # no block commits to drop them: the oldest are forgotten beyond the limit.
    world, app = _setup()
    app.submit(_org(world, "koperasi-a"))
    app._payloads._limit = 3
    for _ in range(5):
        with pytest.raises(RuleViolation):
            app.submit(_org(world, "koperasi-a"))
    assert len(app._payloads) == 3


def test_signatures_are_checked_ahead_with_keys_registered_earlier_in_the_batch() -> None:
    # A catching-up node checks a batch's signatures in another process before it applies
    # the blocks: a signer may be registered by an event of an earlier block of the batch.
    world, app = _setup()
    org = _org(world, "koperasi-a")
    member = {
        "member_id": "koperasi-a/ani",
        "role": "producer",
        "public_keys": [public_key_hex("koperasi-a/ani")],
        "profile_hash": "0" * 64,
    }
    by_admin = world.envelope("member.register", member, ["koperasi-a/admin-1"])
    harvest = {
        "lot_id": "LOT-1",
        "commodity": "coffee",
        "quantity": "10",
        "uom": "kg",
        "producer": "koperasi-a/ani",
        "harvested_on": "2026-11-20",
    }
    by_member = world.envelope("lot.create", harvest, ["koperasi-a/ani"])
    forged = _forged(
        world.envelope("lot.create", harvest | {"lot_id": "LOT-2"}, ["koperasi-a/ani"])
    )
    by_stranger = world.envelope("lot.create", harvest, ["koperasi-b/admin-1"])
    header = genesis_header(world.genesis)  # signature_jobs reads the events only
    blocks = [
        Block(header, (org,), None),
        Block(header, (by_admin, by_member, forged, by_stranger), None),
    ]
    jobs = app.signature_jobs(blocks)
    assert [[signed for signed, _ in block] for block in jobs] == [
        [(e.event_id, e.sigs) for e in events] for events in ([org], [by_admin, by_member, forged])
    ]
    checked = verified([job for block in jobs for job in block])
    assert checked == [(e.event_id, e.sigs) for e in (org, by_admin, by_member)]
    app.take_verified(checked)
    assert app.signature_jobs(blocks) == [[], [jobs[1][2]]]  # verified ones are not asked again
