"""The supply-chain rules (DESIGN.md §3, ``ledger.rules``): every event type, every rule.

For each event type: a valid case that checks the exact resulting state (and that nothing else
changed), then a table of every way to break it with the rule name it must give. A refused event
must name itself (``event_id``) and leave the state exactly as it was (the state digest, the
lineage steps, the applied-event index and the log index). Holder rules and ``lot.receive``
signers get their own tables.
Every world starts from :func:`tests.builders.fixture_world` (see its docstring for who is who).
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

import ledger.rules
from ledger.encoding import canonical, parse_time
from ledger.errors import EncodingError, RuleViolation
from ledger.events import Envelope, EventSignature
from ledger.keys import EVENT_PREFIX, sign
from ledger.rules import EVENT_TYPES, ORG_KINDS, ROLES, StateMachine
from ledger.state import (
    Certification,
    Edge,
    Effects,
    KeyRecord,
    Lot,
    LotStep,
    Member,
    Org,
    Overlay,
    Plot,
    Shipment,
    edge_id,
)
from tests.builders import (
    BLOCK_TIME,
    CREATED_AT,
    GOVERNANCE,
    World,
    fixture_world,
    make_genesis,
    private_key,
    profile_hash,
    public_key_hex,
    signing_key_id,
)

GOV = GOVERNANCE
KARET, KOPI, PROCESSOR, BUYER_ORG = "koperasi-karet", "koperasi-kopi", "pengolah-kalbar", "eu-buyer"
KARET_ADMIN, KARET_CLERK = "koperasi-karet/admin-1", "koperasi-karet/clerk"
BUDI, ANI = "koperasi-karet/budi", "koperasi-karet/ani"
KOPI_ADMIN, KOPI_CLERK, SITI = "koperasi-kopi/admin-1", "koperasi-kopi/clerk", "koperasi-kopi/siti"
PROCESSOR_ADMIN, PROCESSOR_CLERK = "pengolah-kalbar/admin-1", "pengolah-kalbar/clerk"
BUYER_ADMIN, ANNA = "eu-buyer/admin-1", "eu-buyer/anna"
AUDITOR_ADMIN, DEWI = "auditor-kalbar/admin-1", "auditor-kalbar/dewi"
MAX = "999999999999999.999999"
EPCIS = "ni:///sha-256;" + hashlib.sha256(b"epcis event 1").hexdigest() + "?ver=CBV2.0"

# --------------------------------------------------------------------------------------------
# Valid payloads, one per event type, against the fixture world

ORG: dict[str, Any] = {
    "org_id": "koperasi-sawit",
    "name": "Koperasi Sawit Ketapang",
    "kind": "cooperative",
    "admins": [public_key_hex("koperasi-sawit/admin-1")],
}
MEMBER: dict[str, Any] = {
    "member_id": "koperasi-karet/citra",
    "role": "producer",
    "public_keys": [public_key_hex("koperasi-karet/citra")],
    "profile_hash": profile_hash("koperasi-karet/citra"),
}
REVOKE: dict[str, Any] = {"member_id": BUDI, "key": signing_key_id(BUDI)}
ADD_KEY: dict[str, Any] = {"member_id": BUDI, "public_key": public_key_hex("koperasi-karet/budi#2")}
POINT: dict[str, Any] = {"type": "Point", "coordinates": [110.5923456, 0.1245678]}
RING = [
    [110.5801234, 0.1401234],
    [110.5841234, 0.1401234],
    [110.5841234, 0.1441234],
    [110.5801234, 0.1441234],
    [110.5801234, 0.1401234],
]
POLYGON: dict[str, Any] = {"type": "Polygon", "coordinates": [RING]}
PLOT: dict[str, Any] = {
    "plot_id": "PLOT-BUDI-2",
    "member_id": BUDI,
    "commodity": "rubber",
    "area_ha": "3.75",
    "geometry": POINT,
}
LOT: dict[str, Any] = {
    "lot_id": "RB-BUDI-3",
    "commodity": "rubber",
    "quantity": "120.75",
    "uom": "kg",
    "producer": BUDI,
    "plot_id": "PLOT-BUDI-1",
    "harvested_on": "2026-11-25",
}
SPLIT: dict[str, Any] = {
    "lot_id": "RB-BUDI-1",
    "outputs": [
        {"lot_id": "RB-BUDI-1a", "quantity": "200"},
        {"lot_id": "RB-BUDI-1b", "quantity": "100.25"},
    ],
}
MERGE: dict[str, Any] = {"inputs": ["RB-BUDI-1", "RB-BUDI-2"], "lot_id": "RB-BUDI-M"}
TRANSFORM: dict[str, Any] = {
    "inputs": [
        {"lot_id": "RB-BUDI-1", "quantity": "200"},
        {"lot_id": "RB-BUDI-2", "quantity": "300.5"},
    ],
    "outputs": [{"lot_id": "RSS-1", "commodity": "rubber_sheet", "quantity": "0.18", "uom": "t"}],
    "process": "ribbed smoked sheet",
}
SHIP: dict[str, Any] = {"lot_id": "RB-BUDI-1", "shipment_id": "SHP-EU-1", "to": BUYER_ORG}
RECEIVE: dict[str, Any] = {
    "lot_id": "RB-BUDI-1",
    "shipment_id": "SHP-EU-1",
    "quantity_received": "498.5",
}
CERTIFY: dict[str, Any] = {
    "lot_id": "RB-BUDI-1",
    "scheme": "FSC Chain of Custody",
    "certificate": "FSC-C123456",
    "valid_until": "2027-11-30",
}

DROP: Any = object()


def edit(payload: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of ``payload`` with fields replaced (or removed with ``DROP``)."""
    result = copy.deepcopy(payload)
    for name, value in changes.items():
        if value is DROP:
            del result[name]
        else:
            result[name] = value
    return result


def plot_with(geometry: Any, area_ha: str = "3.75") -> dict[str, Any]:
    return edit(PLOT, geometry=geometry, area_ha=area_ha)


# --------------------------------------------------------------------------------------------
# Setups: events applied before the one under test

Setup = Callable[[World], object]
Make = Callable[[World], Envelope]


def ship_to_buyer(world: World) -> None:
    world.ship("RB-BUDI-1", "SHP-EU-1", BUYER_ORG, signer=BUDI)


def deliver_to_buyer(world: World) -> None:
    ship_to_buyer(world)
    world.receive("RB-BUDI-1", "SHP-EU-1", "500", signer=ANNA)


def deliver_to_anna(world: World) -> None:
    world.ship("RB-BUDI-1", "SHP-ANNA-1", ANNA, signer=BUDI)
    world.receive("RB-BUDI-1", "SHP-ANNA-1", "500", signer=ANNA)


def deliver_to_karet(world: World) -> None:
    world.ship("RB-BUDI-2", "SHP-KARET-1", KARET, signer=BUDI)
    world.receive("RB-BUDI-2", "SHP-KARET-1", "300.5", signer=KARET_CLERK)


def split_all(world: World) -> None:
    outputs = [{"lot_id": "RB-BUDI-1x", "quantity": "500"}]
    world.submit("lot.split", {"lot_id": "RB-BUDI-1", "outputs": outputs}, [BUDI])


def merge_budi(world: World) -> None:
    world.submit("lot.merge", MERGE, [BUDI])


def revoke_budi(world: World) -> None:
    world.submit("key.revoke", REVOKE, [KARET_ADMIN])


def budi_revokes_own_key(world: World) -> None:
    world.submit("key.revoke", REVOKE, [BUDI])


def admin_revokes_own_key(world: World) -> None:
    payload = {"member_id": KARET_ADMIN, "key": signing_key_id(KARET_ADMIN)}
    world.submit("key.revoke", payload, [KARET_ADMIN])


def budi_coffee(world: World) -> None:
    world.create_lot("KP-BUDI-1", BUDI, "coffee", "40")


def budi_tonnes(world: World) -> None:
    world.create_lot("RB-BUDI-T", BUDI, "rubber", "0.5", uom="t")


def budi_huge(world: World) -> None:
    world.create_lot("RB-HUGE-1", BUDI, "rubber", MAX)
    world.create_lot("RB-HUGE-2", BUDI, "rubber", "0.000001")


def event(kind: str, payload: dict[str, Any], *signers: str, **options: Any) -> Make:
    """Builds the event under test (the payload is copied, so cases never share state)."""

    def make(world: World) -> Envelope:
        return world.envelope(kind, copy.deepcopy(payload), signers, **options)

    return make


def forged(kind: str, payload: dict[str, Any], *signers: str) -> Make:
    """A signed envelope that skips ``parse_envelope`` (so a float can reach the rules)."""

    def make(world: World) -> Envelope:
        body = {
            "v": 1,
            "network": world.genesis.network,
            "type": kind,
            "nonce": "forged",
            "created_at": CREATED_AT,
            "payload": copy.deepcopy(payload),
        }
        body_bytes = canonical(body)
        sigs = sorted(
            (
                EventSignature(
                    signing_key_id(label), sign(private_key(label), EVENT_PREFIX, body_bytes)
                )
                for label in signers
            ),
            key=lambda s: s.key,
        )
        digest = hashlib.sha256(body_bytes).hexdigest()
        return Envelope(body, tuple(sigs), body_bytes, digest, parse_time(CREATED_AT))

    return make


def repeated(
    payload: dict[str, Any], first: list[str], again: list[str], kind: str = "lot.create"
) -> Make:
    """The same body again (same event id), signed by ``again`` after ``first`` signed it."""

    def make(world: World) -> Envelope:
        world.apply(world.envelope(kind, payload, first, nonce="once"))
        return world.envelope(kind, payload, again, nonce="once")

    return make


def after(*setups: Setup, then: Make) -> Make:
    def make(world: World) -> Envelope:
        for setup in setups:
            setup(world)
        return then(world)

    return make


def case(name: str, rule: str, make: Make, detail: str = "") -> Any:
    """One refusal: ``name`` starts with the event type; ``detail`` must appear in the detail."""
    return pytest.param(make, rule, detail, id=name)


# --------------------------------------------------------------------------------------------
# Checking helpers


def entities(world: World) -> dict[tuple[str, str], dict[str, Any]]:
    """Every entity but lineage steps and captured EPCIS ids (checked on their own)."""
    return {
        (kind, ident): value
        for kind, ident, value in world.memory.entities()
        if kind not in ("step", "epcis")
    }


def refuse(world: World, envelope: Envelope, rule: str, detail: str = "") -> RuleViolation:
    """Apply ``envelope``, expect ``rule``, and check that nothing changed."""
    data = world.memory.data
    digest, steps, events, index = world.digest(), len(data.steps), len(data.events), world.index
    with pytest.raises(RuleViolation) as caught:
        world.apply(envelope)
    error = caught.value
    assert (error.rule, error.event_id) == (rule, envelope.event_id), error.detail
    assert detail in error.detail
    assert world.digest() == digest
    assert (len(data.steps), len(data.events), world.index) == (steps, events, index)
    return error


def accept(world: World, envelope: Envelope) -> tuple[Effects, set[tuple[str, str]]]:
    """Apply ``envelope``; return its effects and the (kind, id) of every entity it changed."""
    before = entities(world)
    effects = world.apply(envelope)
    now = entities(world)
    assert before.keys() <= now.keys()
    return effects, {key for key, value in now.items() if before.get(key) != value}


def assert_mass_balance(world: World) -> None:
    """Per unit: what lot.create and lot.transform made = what lots hold + loss + transform input.

    Computed from the applied payloads, not from the rules' own lineage edges.
    """
    made: dict[str, Decimal] = defaultdict(Decimal)
    gone: dict[str, Decimal] = defaultdict(Decimal)
    for envelope in world.applied:
        p = envelope.payload
        if envelope.type == "lot.create":
            made[p["uom"]] += Decimal(p["quantity"])
        elif envelope.type == "lot.transform":
            for output in p["outputs"]:
                made[output["uom"]] += Decimal(output["quantity"])
            for item in p["inputs"]:
                lot = world.memory.lot(item["lot_id"])
                assert lot is not None
                gone[lot.uom] += Decimal(item["quantity"])
    for lot in world.memory.data.lots.values():
        gone[lot.uom] += lot.quantity + lot.loss
        assert lot.quantity >= 0
        assert lot.loss >= 0
        assert (lot.status == "consumed") == (lot.quantity == 0), lot
    assert dict(made) == {uom: total for uom, total in gone.items() if total or uom in made}


@pytest.fixture
def world() -> World:
    return fixture_world()


def test_fixture_world_is_as_documented(world: World) -> None:
    assert world.index == 20
    assert sorted(world.memory.data.orgs) == [
        "auditor-kalbar",
        BUYER_ORG,
        KARET,
        KOPI,
        PROCESSOR,
    ]
    assert {m.member_id: m.role for m in world.memory.data.members.values()} == {
        "auditor-kalbar/admin-1": "admin",
        BUYER_ADMIN: "admin",
        KARET_ADMIN: "admin",
        KOPI_ADMIN: "admin",
        PROCESSOR_ADMIN: "admin",
        KARET_CLERK: "clerk",
        KOPI_CLERK: "clerk",
        PROCESSOR_CLERK: "clerk",
        BUDI: "producer",
        ANI: "producer",
        SITI: "producer",
        ANNA: "buyer",
        DEWI: "auditor",
    }
    assert {
        lot.lot_id: (lot.owner, lot.quantity, lot.status) for lot in world.memory.data.lots.values()
    } == {
        "RB-BUDI-1": (BUDI, Decimal(500), "active"),
        "RB-BUDI-2": (BUDI, Decimal("300.5"), "active"),
        "RB-ANI-1": (ANI, Decimal(250), "active"),
        "KP-SITI-1": (SITI, Decimal(1200), "active"),
    }
    assert_mass_balance(world)


# --------------------------------------------------------------------------------------------
# Valid cases: the exact state each event type leaves


@pytest.mark.parametrize("kind", sorted(ORG_KINDS))
def test_org_register(world: World, kind: str) -> None:
    index = world.index
    admins = [public_key_hex("koperasi-sawit/admin-1"), public_key_hex("koperasi-sawit/admin-2")]
    envelope = world.envelope("org.register", edit(ORG, kind=kind, admins=admins), [GOV])
    effects, changed = accept(world, envelope)
    assert world.memory.org("koperasi-sawit") == Org(
        "koperasi-sawit", "Koperasi Sawit Ketapang", kind, index
    )
    for number in (1, 2):
        member_id = f"koperasi-sawit/admin-{number}"
        assert world.memory.member(member_id) == Member(
            member_id, "koperasi-sawit", "admin", "", index
        )
        key = signing_key_id(member_id)
        assert world.memory.key(key) == KeyRecord(
            key, bytes.fromhex(public_key_hex(member_id)), member_id, index
        )
    assert changed == {
        ("org", "koperasi-sawit"),
        ("member", "koperasi-sawit/admin-1"),
        ("member", "koperasi-sawit/admin-2"),
        ("key", signing_key_id("koperasi-sawit/admin-1")),
        ("key", signing_key_id("koperasi-sawit/admin-2")),
    }
    assert (effects.steps, effects.edges) == ([], [])
    # the second admin can act for the new organisation
    world.register_member("koperasi-sawit/clerk", "clerk", signer="koperasi-sawit/admin-2")


@pytest.mark.parametrize("role", sorted(ROLES))
def test_member_register(world: World, role: str) -> None:
    index = world.index
    keys = [public_key_hex("koperasi-karet/citra"), public_key_hex("koperasi-karet/citra#2")]
    payload = edit(MEMBER, role=role, public_keys=keys)
    _, changed = accept(world, world.envelope("member.register", payload, [KARET_ADMIN]))
    citra = "koperasi-karet/citra"
    assert world.memory.member(citra) == Member(
        citra, KARET, role, profile_hash("koperasi-karet/citra"), index
    )
    for label in (citra, "koperasi-karet/citra#2"):
        key = signing_key_id(label)
        assert world.memory.key(key) == KeyRecord(
            key, bytes.fromhex(public_key_hex(label)), citra, index
        )
    assert changed == {
        ("member", citra),
        ("key", signing_key_id(citra)),
        ("key", signing_key_id("koperasi-karet/citra#2")),
    }


@pytest.mark.parametrize("signer", [KARET_ADMIN, BUDI], ids=["org-admin", "own-member"])
def test_key_revoke(world: World, signer: str) -> None:
    index = world.index
    record = world.memory.key(signing_key_id(BUDI))
    assert record is not None
    assert record.revoked_index is None
    _, changed = accept(world, world.envelope("key.revoke", REVOKE, [signer]))
    assert world.memory.key(record.key_id) == KeyRecord(
        record.key_id, record.public_key, BUDI, record.index, index
    )
    assert changed == {("key", record.key_id)}


def test_revoked_key_signs_nothing_after_its_revocation_but_its_past_stays(world: World) -> None:
    lot_before = world.memory.lot("RB-BUDI-1")
    signed_before = world.envelope("lot.create", LOT, [BUDI])  # signed, not yet in the log
    world.submit("key.revoke", REVOKE, [BUDI])
    revoked_at = world.index - 1
    for envelope in (
        world.envelope("lot.split", SPLIT, [BUDI]),
        signed_before,  # log order counts, not created_at
        world.envelope("key.revoke", REVOKE, [BUDI]),
        world.envelope("lot.split", SPLIT, [BUDI, KARET_CLERK]),
    ):
        refuse(world, envelope, "auth.revoked-key", f"revoked at log index {revoked_at}")
    # what the key signed earlier stays, and the key record stays with its member
    assert world.memory.lot("RB-BUDI-1") == lot_before
    record = world.memory.key(signing_key_id(BUDI))
    assert record is not None
    assert (record.member_id, record.revoked_index) == (BUDI, revoked_at)
    # the member is not locked out: the clerk signs for him, the admin gives him a new key
    world.submit("lot.split", SPLIT, [KARET_CLERK])
    world.submit("key.add", ADD_KEY, [KARET_ADMIN])
    world.submit("lot.create", LOT, ["koperasi-karet/budi#2"])
    lot = world.memory.lot("RB-BUDI-3")
    assert lot is not None
    assert lot.owner == BUDI
    assert_mass_balance(world)


def test_revocation_holds_for_later_events_of_the_same_block() -> None:
    """The node lays an Overlay over its state while building a block: same rule there."""
    world = fixture_world()
    base_digest = world.digest()
    machine = StateMachine(world.genesis, Overlay(world.memory))
    revoke = world.envelope("key.revoke", REVOKE, [KARET_ADMIN])
    machine.apply(revoke, 20, BLOCK_TIME)
    with pytest.raises(RuleViolation) as caught:
        machine.apply(world.envelope("lot.split", SPLIT, [BUDI]), 21, BLOCK_TIME)
    assert caught.value.rule == "auth.revoked-key"
    # the base state is untouched until the block is written
    assert world.digest() == base_digest
    record = world.memory.key(signing_key_id(BUDI))
    assert record is not None
    assert record.revoked_index is None


def test_key_add(world: World) -> None:
    index = world.index
    _, changed = accept(world, world.envelope("key.add", ADD_KEY, [KARET_ADMIN]))
    new = signing_key_id("koperasi-karet/budi#2")
    assert world.memory.key(new) == KeyRecord(
        new, bytes.fromhex(public_key_hex("koperasi-karet/budi#2")), BUDI, index
    )
    assert changed == {("key", new)}
    # both keys sign for budi now
    world.submit("lot.create", LOT, ["koperasi-karet/budi#2"])
    world.submit("lot.create", edit(LOT, lot_id="RB-BUDI-4"), [BUDI])
    owners = {lot.owner for lot in world.memory.lots(["RB-BUDI-3", "RB-BUDI-4"])}
    assert (len(world.memory.lots(["RB-BUDI-3", "RB-BUDI-4"])), owners) == (2, {BUDI})


HOLED_POLYGON: dict[str, Any] = {
    "type": "Polygon",
    "coordinates": [
        RING,
        [
            [110.5811234, 0.1411234],
            [110.5821234, 0.1411234],
            [110.5821234, 0.1421234],
            [110.5811234, 0.1411234],
        ],
    ],
}


@pytest.mark.parametrize(
    ("area", "geometry", "signer", "stored_area"),
    [
        pytest.param("3.75", POINT, KARET_CLERK, "3.75", id="point-by-clerk"),
        pytest.param("4.000000", POINT, KARET_ADMIN, "4", id="point-at-exactly-4ha-by-admin"),
        pytest.param("12.50", POLYGON, KARET_ADMIN, "12.5", id="polygon-above-4ha"),
        pytest.param("0.8", POLYGON, KARET_CLERK, "0.8", id="polygon-below-4ha"),
        pytest.param("9", HOLED_POLYGON, KARET_CLERK, "9", id="polygon-with-a-hole"),
        pytest.param(
            "1", {"type": "Point", "coordinates": [110, -1]}, KARET_CLERK, "1", id="integer-point"
        ),
    ],
)
def test_plot_register(
    world: World, area: str, geometry: dict[str, Any], signer: str, stored_area: str
) -> None:
    index = world.index
    _, changed = accept(world, world.envelope("plot.register", plot_with(geometry, area), [signer]))
    assert world.memory.plot("PLOT-BUDI-2") == Plot(
        "PLOT-BUDI-2", BUDI, "rubber", stored_area, geometry, index
    )
    assert changed == {("plot", "PLOT-BUDI-2")}


@pytest.mark.parametrize(
    ("changes", "signer", "expected"),
    [
        pytest.param({}, BUDI, {"plot_id": "PLOT-BUDI-1"}, id="producer-with-plot"),
        pytest.param(
            {"gtin": "8991234567891", "epcis": EPCIS},
            KARET_CLERK,
            {"plot_id": "PLOT-BUDI-1", "gtin": "8991234567891"},
            id="clerk-with-gtin13-and-epcis",
        ),
        pytest.param(
            {"plot_id": DROP, "gtin": "96385074"},
            KARET_ADMIN,
            {"gtin": "96385074"},
            id="admin-gtin8",
        ),
        pytest.param(
            {"plot_id": DROP, "quantity": "0.000001", "uom": "t"},
            BUDI,
            {"quantity": Decimal("0.000001"), "uom": "t"},
            id="smallest-quantity",
        ),
        pytest.param(
            {"plot_id": DROP, "quantity": MAX},
            BUDI,
            {"quantity": Decimal(MAX)},
            id="largest-quantity",
        ),
    ],
)
def test_lot_create(
    world: World, changes: dict[str, Any], signer: str, expected: dict[str, Any]
) -> None:
    index = world.index
    envelope = world.envelope("lot.create", edit(LOT, **changes), [signer])
    effects, changed = accept(world, envelope)
    assert world.memory.lot("RB-BUDI-3") == Lot(
        **{
            "lot_id": "RB-BUDI-3",
            "commodity": "rubber",
            "quantity": Decimal("120.75"),
            "uom": "kg",
            "owner": BUDI,
            "status": "active",
            "index": index,
            "producer": BUDI,
            "harvested_on": "2026-11-25",
            **expected,
        }
    )
    assert changed == {("lot", "RB-BUDI-3")}
    assert effects.epcis == (
        {expected_epcis: index} if (expected_epcis := changes.get("epcis")) else {}
    )
    assert effects.edges == []
    assert effects.steps == [LotStep(index, envelope.event_id, "lot.create", (), ("RB-BUDI-3",))]
    assert world.memory.steps_of(["RB-BUDI-3"]) == effects.steps
    assert_mass_balance(world)


@pytest.mark.parametrize("signer", [BUDI, KARET_CLERK, KARET_ADMIN])
def test_lot_split(world: World, signer: str) -> None:
    index = world.index
    parent = world.memory.lot("RB-BUDI-1")
    assert parent is not None
    envelope = world.envelope("lot.split", SPLIT, [signer])
    effects, changed = accept(world, envelope)
    assert world.memory.lot("RB-BUDI-1") == parent.with_(quantity=Decimal("199.75"))
    for child, quantity in (("RB-BUDI-1a", "200"), ("RB-BUDI-1b", "100.25")):
        assert world.memory.lot(child) == Lot(
            child, "rubber", Decimal(quantity), "kg", BUDI, "active", index
        )
    edges = [
        Edge("RB-BUDI-1", "RB-BUDI-1a", Decimal(200), index),
        Edge("RB-BUDI-1", "RB-BUDI-1b", Decimal("100.25"), index),
    ]
    assert effects.edges == edges
    assert world.memory.child_edges(["RB-BUDI-1"]) == edges
    assert world.memory.parent_edges(["RB-BUDI-1b"]) == edges[1:]
    step = LotStep(
        index, envelope.event_id, "lot.split", ("RB-BUDI-1",), ("RB-BUDI-1a", "RB-BUDI-1b")
    )
    assert effects.steps == [step]
    assert world.memory.steps_of(["RB-BUDI-1b"]) == [step]
    assert changed == {
        ("lot", "RB-BUDI-1"),
        ("lot", "RB-BUDI-1a"),
        ("lot", "RB-BUDI-1b"),
        *(("edge", edge_id(e)) for e in edges),
    }
    assert_mass_balance(world)


def test_split_that_leaves_zero_consumes_the_parent(world: World) -> None:
    split_all(world)
    parent = world.memory.lot("RB-BUDI-1")
    assert parent is not None
    assert (parent.quantity, parent.status) == (Decimal(0), "consumed")
    child = world.memory.lot("RB-BUDI-1x")
    assert child is not None
    assert (child.quantity, child.status, child.owner) == (Decimal(500), "active", BUDI)
    assert_mass_balance(world)


@pytest.mark.parametrize("signer", [BUDI, KARET_CLERK])
def test_lot_merge(world: World, signer: str) -> None:
    index = world.index
    inputs = [world.memory.lot(i) for i in MERGE["inputs"]]
    envelope = world.envelope("lot.merge", MERGE, [signer])
    effects, changed = accept(world, envelope)
    for lot in inputs:
        assert lot is not None
        assert world.memory.lot(lot.lot_id) == lot.with_(quantity=Decimal(0), status="consumed")
    assert world.memory.lot("RB-BUDI-M") == Lot(
        "RB-BUDI-M", "rubber", Decimal("800.5"), "kg", BUDI, "active", index
    )
    edges = [
        Edge("RB-BUDI-1", "RB-BUDI-M", Decimal(500), index),
        Edge("RB-BUDI-2", "RB-BUDI-M", Decimal("300.5"), index),
    ]
    assert effects.edges == edges
    assert world.memory.parent_edges(["RB-BUDI-M"]) == edges
    assert effects.steps == [
        LotStep(index, envelope.event_id, "lot.merge", ("RB-BUDI-1", "RB-BUDI-2"), ("RB-BUDI-M",))
    ]
    assert changed == {
        ("lot", "RB-BUDI-1"),
        ("lot", "RB-BUDI-2"),
        ("lot", "RB-BUDI-M"),
        *(("edge", edge_id(e)) for e in edges),
    }
    assert_mass_balance(world)


def test_merge_of_lots_held_by_an_org(world: World) -> None:
    deliver_to_karet(world)
    world.ship("RB-ANI-1", "SHP-KARET-2", KARET, signer=ANI)
    world.receive("RB-ANI-1", "SHP-KARET-2", "249", signer=KARET_ADMIN)
    world.submit(
        "lot.merge", {"inputs": ["RB-BUDI-2", "RB-ANI-1"], "lot_id": "RB-KOP-1"}, [KARET_CLERK]
    )
    merged = world.memory.lot("RB-KOP-1")
    assert merged is not None
    assert (merged.owner, merged.quantity) == (KARET, Decimal("549.5"))
    assert_mass_balance(world)


@pytest.mark.parametrize("signer", [BUDI, KARET_CLERK])
def test_lot_transform_takes_part_of_one_input_and_all_of_another(
    world: World, signer: str
) -> None:
    index = world.index
    first, second = world.memory.lot("RB-BUDI-1"), world.memory.lot("RB-BUDI-2")
    assert first is not None
    assert second is not None
    envelope = world.envelope("lot.transform", TRANSFORM, [signer])
    effects, changed = accept(world, envelope)
    assert world.memory.lot("RB-BUDI-1") == first.with_(quantity=Decimal(300))
    assert world.memory.lot("RB-BUDI-2") == second.with_(quantity=Decimal(0), status="consumed")
    assert world.memory.lot("RSS-1") == Lot(
        "RSS-1", "rubber_sheet", Decimal("0.18"), "t", BUDI, "active", index
    )
    edges = [
        Edge("RB-BUDI-1", "RSS-1", Decimal(200), index),
        Edge("RB-BUDI-2", "RSS-1", Decimal("300.5"), index),
    ]
    assert effects.edges == edges
    assert effects.steps == [
        LotStep(index, envelope.event_id, "lot.transform", ("RB-BUDI-1", "RB-BUDI-2"), ("RSS-1",))
    ]
    assert changed == {
        ("lot", "RB-BUDI-1"),
        ("lot", "RB-BUDI-2"),
        ("lot", "RSS-1"),
        *(("edge", edge_id(e)) for e in edges),
    }
    assert_mass_balance(world)


def test_lot_transform_with_two_outputs(world: World) -> None:
    """Cherry to green bean and husk; each output gets an edge weighted with all that was taken."""
    index = world.index
    payload = {
        "inputs": [{"lot_id": "KP-SITI-1", "quantity": "1200"}],
        "outputs": [
            {"lot_id": "GB-1", "commodity": "green_coffee", "quantity": "216", "uom": "kg"},
            {"lot_id": "HUSK-1", "commodity": "coffee_husk", "quantity": "540", "uom": "kg"},
        ],
        "process": "wet hulling",
        "epcis": EPCIS,
    }
    effects = world.submit("lot.transform", payload, [KOPI_CLERK])
    siti_lot = world.memory.lot("KP-SITI-1")
    assert siti_lot is not None
    assert (siti_lot.quantity, siti_lot.status) == (Decimal(0), "consumed")
    assert world.memory.lot("GB-1") == Lot(
        "GB-1", "green_coffee", Decimal(216), "kg", SITI, "active", index
    )
    assert world.memory.lot("HUSK-1") == Lot(
        "HUSK-1", "coffee_husk", Decimal(540), "kg", SITI, "active", index
    )
    assert effects.edges == [
        Edge("KP-SITI-1", "GB-1", Decimal(1200), index),
        Edge("KP-SITI-1", "HUSK-1", Decimal(1200), index),
    ]
    assert_mass_balance(world)


@pytest.mark.parametrize(
    ("setup", "lot_id", "to", "signer", "sender"),
    [
        pytest.param(None, "RB-BUDI-1", BUYER_ORG, BUDI, BUDI, id="member-to-org"),
        pytest.param(None, "RB-BUDI-1", ANNA, KARET_CLERK, BUDI, id="clerk-for-member-to-member"),
        pytest.param(None, "RB-BUDI-2", KARET, BUDI, BUDI, id="member-delivers-to-own-coop"),
        pytest.param(
            deliver_to_karet, "RB-BUDI-2", PROCESSOR, KARET_CLERK, KARET, id="org-to-processor"
        ),
        pytest.param(
            deliver_to_karet, "RB-BUDI-2", BUDI, KARET_ADMIN, KARET, id="org-back-to-member"
        ),
    ],
)
def test_lot_ship(
    world: World, setup: Setup | None, lot_id: str, to: str, signer: str, sender: str
) -> None:
    if setup is not None:
        setup(world)
    index = world.index
    lot = world.memory.lot(lot_id)
    assert lot is not None
    envelope = world.envelope(
        "lot.ship", {"lot_id": lot_id, "shipment_id": "SHP-9", "to": to}, [signer]
    )
    effects, changed = accept(world, envelope)
    assert world.memory.lot(lot_id) == lot.with_(status="in_transit", shipment_id="SHP-9")
    assert lot.owner == sender
    assert world.memory.shipment("SHP-9") == Shipment(
        "SHP-9", lot_id, sender, to, lot.quantity, index
    )
    assert effects.steps == [LotStep(index, envelope.event_id, "lot.ship", (lot_id,), (lot_id,))]
    assert changed == {("lot", lot_id), ("shipment", "SHP-9")}
    assert_mass_balance(world)


@pytest.mark.parametrize(
    ("to", "signer", "received", "status", "loss"),
    [
        pytest.param(BUYER_ORG, ANNA, "498.5", "active", "1.5", id="buyer-member-less-is-loss"),
        pytest.param(BUYER_ORG, BUYER_ADMIN, "500", "active", "0", id="org-admin-all"),
        pytest.param(KARET, KARET_CLERK, "500.000000", "active", "0", id="coop-clerk"),
        pytest.param(ANNA, ANNA, "0.000001", "active", "499.999999", id="member-itself"),
        pytest.param(BUYER_ORG, ANNA, "0", "consumed", "500", id="zero-consumes"),
    ],
)
def test_lot_receive(
    world: World, to: str, signer: str, received: str, status: str, loss: str
) -> None:
    world.ship("RB-BUDI-1", "SHP-EU-1", to, signer=BUDI)
    shipped_at = world.index - 1
    index = world.index
    lot = world.memory.lot("RB-BUDI-1")
    assert lot is not None
    envelope = world.envelope("lot.receive", edit(RECEIVE, quantity_received=received), [signer])
    effects, changed = accept(world, envelope)
    assert world.memory.lot("RB-BUDI-1") == lot.with_(
        owner=to, quantity=Decimal(received), status=status, shipment_id=None, loss=Decimal(loss)
    )
    assert world.memory.shipment("SHP-EU-1") == Shipment(
        "SHP-EU-1", "RB-BUDI-1", BUDI, to, Decimal(500), shipped_at, index, Decimal(received)
    )
    assert effects.steps == [
        LotStep(index, envelope.event_id, "lot.receive", ("RB-BUDI-1",), ("RB-BUDI-1",))
    ]
    assert changed == {("lot", "RB-BUDI-1"), ("shipment", "SHP-EU-1")}
    assert_mass_balance(world)


def test_loss_accumulates_over_shipments(world: World) -> None:
    world.ship("RB-BUDI-1", "SHP-1", KARET, signer=BUDI)
    world.receive("RB-BUDI-1", "SHP-1", "499", signer=KARET_CLERK)
    world.ship("RB-BUDI-1", "SHP-2", BUYER_ORG, signer=KARET_CLERK)
    world.receive("RB-BUDI-1", "SHP-2", "497.5", signer=ANNA)
    lot = world.memory.lot("RB-BUDI-1")
    assert lot is not None
    assert (lot.owner, lot.quantity, lot.loss) == (BUYER_ORG, Decimal("497.5"), Decimal("2.5"))
    assert_mass_balance(world)


@pytest.mark.parametrize(
    ("setup", "auditor"),
    [
        pytest.param(None, DEWI, id="auditor-org-member"),
        pytest.param(ship_to_buyer, DEWI, id="lot-in-transit"),
        pytest.param(
            lambda w: w.register_member("koperasi-karet/pengawas", "auditor"),
            "koperasi-karet/pengawas",
            id="coop-pengawas",
        ),
    ],
)
def test_lot_certify(world: World, setup: Setup | None, auditor: str) -> None:
    if setup is not None:
        setup(world)
    index = world.index
    lot = world.memory.lot("RB-BUDI-1")
    assert lot is not None
    effects, changed = accept(world, world.envelope("lot.certify", CERTIFY, [auditor]))
    first = Certification("FSC Chain of Custody", "FSC-C123456", "2027-11-30", auditor, index)
    assert world.memory.lot("RB-BUDI-1") == lot.with_(certifications=(first,))
    assert changed == {("lot", "RB-BUDI-1")}
    assert (effects.steps, effects.edges) == ([], [])
    world.submit("lot.certify", edit(CERTIFY, scheme="EUDR due diligence"), [DEWI])
    certified = world.memory.lot("RB-BUDI-1")
    assert certified is not None
    assert certified.certifications == (
        first,
        Certification("EUDR due diligence", "FSC-C123456", "2027-11-30", DEWI, index + 1),
    )


@pytest.mark.parametrize(
    "created_at",
    ["2026-11-29T03:05:00Z", "2026-11-29T03:04:59.999Z", "2026-01-01T00:00:00Z"],
    ids=["exactly-5-minutes-ahead", "just-under-5-minutes-ahead", "signed-offline-months-ago"],
)
def test_created_at_up_to_5_minutes_after_block_time_is_accepted(
    world: World, created_at: str
) -> None:
    harvested_earlier = edit(LOT, harvested_on="2025-12-31")
    world.apply(world.envelope("lot.create", harvested_earlier, [BUDI], created_at=created_at))
    assert world.memory.lot("RB-BUDI-3") is not None


@pytest.mark.parametrize(
    ("harvested_on", "allowed"),
    [("2026-11-29", True), ("2026-11-30", False)],
    ids=["harvested-the-day-it-was-recorded", "harvested-after-it-was-recorded"],
)
def test_a_harvest_cannot_come_after_its_record(
    world: World, harvested_on: str, allowed: bool
) -> None:
    envelope = world.envelope("lot.create", edit(LOT, harvested_on=harvested_on), [BUDI])
    if allowed:
        world.apply(envelope)
        return
    refuse(world, envelope, "lot.harvest-date", "after the event was created")


def test_a_float_quantity_never_gets_as_far_as_the_rules(world: World) -> None:
    with pytest.raises(EncodingError, match="decimal strings"):
        world.envelope("lot.create", edit(LOT, quantity=120.75), [BUDI])


def test_mass_balance_through_a_whole_supply_chain(world: World) -> None:
    world.submit("lot.split", SPLIT, [BUDI])
    world.submit(
        "lot.merge", {"inputs": ["RB-BUDI-1a", "RB-BUDI-2"], "lot_id": "RB-M"}, [KARET_CLERK]
    )
    world.ship("RB-M", "SHP-1", KARET, signer=BUDI)
    world.receive("RB-M", "SHP-1", "498", signer=KARET_CLERK)
    world.ship("RB-M", "SHP-2", PROCESSOR, signer=KARET_CLERK)
    world.receive("RB-M", "SHP-2", "497", signer=PROCESSOR_CLERK)
    transform = {
        "inputs": [{"lot_id": "RB-M", "quantity": "400"}],
        "outputs": [
            {"lot_id": "RSS-9", "commodity": "rubber_sheet", "quantity": "0.25", "uom": "t"}
        ],
        "process": "ribbed smoked sheet",
    }
    world.submit("lot.transform", transform, [PROCESSOR_CLERK])
    world.ship("RSS-9", "SHP-3", BUYER_ORG, signer=PROCESSOR_ADMIN)
    world.receive("RSS-9", "SHP-3", "0.249", signer=ANNA)
    world.ship("RB-BUDI-1b", "SHP-4", ANNA, signer=BUDI)
    world.receive("RB-BUDI-1b", "SHP-4", "0", signer=ANNA)
    world.submit("lot.certify", edit(CERTIFY, lot_id="RSS-9"), [DEWI])
    lots = world.memory.data.lots
    assert (lots["RB-M"].quantity, lots["RB-M"].loss, lots["RB-M"].owner) == (
        Decimal(97),
        Decimal("3.5"),
        PROCESSOR,
    )
    assert (lots["RSS-9"].owner, lots["RSS-9"].quantity, lots["RSS-9"].loss) == (
        BUYER_ORG,
        Decimal("0.249"),
        Decimal("0.001"),
    )
    assert lots["RB-BUDI-1b"].status == "consumed"
    assert_mass_balance(world)


# --------------------------------------------------------------------------------------------
# Holders (DESIGN.md §3): who may split, ship or transform a lot


def _split(lot_id: str) -> tuple[str, dict[str, Any]]:
    return "lot.split", {
        "lot_id": lot_id,
        "outputs": [{"lot_id": f"{lot_id}-part", "quantity": "1"}],
    }


def _ship(lot_id: str) -> tuple[str, dict[str, Any]]:
    return "lot.ship", {"lot_id": lot_id, "shipment_id": "SHP-HOLDER", "to": PROCESSOR}


def _transform(lot_id: str) -> tuple[str, dict[str, Any]]:
    return "lot.transform", {
        "inputs": [{"lot_id": lot_id, "quantity": "1"}],
        "outputs": [
            {
                "lot_id": f"{lot_id}-sheet",
                "commodity": "rubber_sheet",
                "quantity": "0.9",
                "uom": "kg",
            }
        ],
        "process": "ribbed smoked sheet",
    }


HOLDER_SITUATIONS: dict[str, tuple[Setup | None, str]] = {
    "member-lot": (None, "RB-BUDI-1"),
    "coop-lot": (deliver_to_karet, "RB-BUDI-2"),
    "buyer-org-lot": (deliver_to_buyer, "RB-BUDI-1"),
    "buyer-member-lot": (deliver_to_anna, "RB-BUDI-1"),
}
HOLDERS = [
    ("member-lot", [BUDI], True, "producer-itself"),
    ("member-lot", [KARET_CLERK], True, "clerk-of-members-org"),
    ("member-lot", [KARET_ADMIN], True, "admin-of-members-org"),
    ("member-lot", [BUDI, KARET_CLERK], True, "producer-and-clerk"),
    ("member-lot", [ANI], False, "other-producer-same-org"),
    ("member-lot", [BUDI, ANI], False, "producer-and-other-producer"),
    ("member-lot", [KOPI_CLERK], False, "clerk-of-other-org"),
    ("member-lot", [KOPI_ADMIN], False, "admin-of-other-org"),
    ("member-lot", [PROCESSOR_CLERK], False, "processor-clerk"),
    ("member-lot", [ANNA], False, "buyer"),
    ("member-lot", [DEWI], False, "auditor"),
    ("member-lot", [GOV], False, "governance"),
    ("coop-lot", [KARET_CLERK], True, "clerk-of-org"),
    ("coop-lot", [KARET_ADMIN], True, "admin-of-org"),
    ("coop-lot", [BUDI], False, "producer-member-of-org"),
    ("coop-lot", [ANI], False, "other-producer-member-of-org"),
    ("coop-lot", [KOPI_CLERK], False, "clerk-of-other-org"),
    ("buyer-org-lot", [BUYER_ADMIN], True, "admin-of-org"),
    ("buyer-org-lot", [ANNA], False, "buyer-member-of-org"),
    ("buyer-org-lot", [BUDI], False, "former-owner"),
    ("buyer-org-lot", [KARET_CLERK], False, "clerk-of-former-owners-org"),
    ("buyer-member-lot", [ANNA], True, "member-itself"),
    ("buyer-member-lot", [BUYER_ADMIN], True, "admin-of-members-org"),
    ("buyer-member-lot", [KARET_CLERK], False, "clerk-of-former-owners-org"),
]


@pytest.mark.parametrize(
    "operation", [_split, _ship, _transform], ids=["split", "ship", "transform"]
)
@pytest.mark.parametrize(
    ("situation", "signers", "allowed"),
    [pytest.param(s, signers, ok, id=f"{s}/{name}") for s, signers, ok, name in HOLDERS],
)
def test_holder_rules(
    world: World,
    operation: Callable[[str], tuple[str, dict[str, Any]]],
    situation: str,
    signers: list[str],
    allowed: bool,
) -> None:
    setup, lot_id = HOLDER_SITUATIONS[situation]
    if setup is not None:
        setup(world)
    lot = world.memory.lot(lot_id)
    assert lot is not None
    assert lot.status == "active"
    kind, payload = operation(lot_id)
    envelope = world.envelope(kind, payload, signers)
    if not allowed:
        refuse(world, envelope, "auth.unauthorised", "may not sign")
        return
    world.apply(envelope)
    after_lot = world.memory.lot(lot_id)
    assert after_lot is not None
    assert after_lot.owner == lot.owner
    if kind == "lot.ship":
        assert after_lot.status == "in_transit"
    else:
        assert after_lot.quantity == lot.quantity - 1
    assert_mass_balance(world)


def _with_extra_members(world: World) -> None:
    world.register_member("eu-buyer/clerk", "clerk")
    world.register_member("eu-buyer/pembeli", "buyer")
    world.register_member("koperasi-karet/pembeli", "buyer")


RECEIVERS = [
    (BUYER_ORG, [ANNA], True, "org/buyer-member"),
    (BUYER_ORG, [BUYER_ADMIN], True, "org/admin"),
    (BUYER_ORG, ["eu-buyer/clerk"], True, "org/clerk"),
    (BUYER_ORG, [ANNA, BUYER_ADMIN], True, "org/buyer-and-admin"),
    (BUYER_ORG, [BUDI], False, "org/shipper-itself"),
    (BUYER_ORG, [KARET_CLERK], False, "org/shippers-clerk"),
    (BUYER_ORG, [ANNA, BUDI], False, "org/buyer-and-shipper"),
    (BUYER_ORG, [KOPI_CLERK], False, "org/clerk-of-other-org"),
    (BUYER_ORG, [DEWI], False, "org/auditor"),
    (BUYER_ORG, [GOV], False, "org/governance"),
    (KARET, [KARET_CLERK], True, "coop/clerk"),
    (KARET, [KARET_ADMIN], True, "coop/admin"),
    (KARET, ["koperasi-karet/pembeli"], True, "coop/buyer-member"),
    (KARET, [ANI], False, "coop/producer-member"),
    (KARET, [BUDI], False, "coop/shipper-is-producer-member"),
    (PROCESSOR, [PROCESSOR_CLERK], True, "processor/clerk"),
    (PROCESSOR, [KARET_ADMIN], False, "processor/admin-of-other-org"),
    (ANNA, [ANNA], True, "member/itself"),
    (ANNA, [BUYER_ADMIN], True, "member/admin-of-its-org"),
    (ANNA, ["eu-buyer/clerk"], True, "member/clerk-of-its-org"),
    (ANNA, ["eu-buyer/pembeli"], False, "member/other-buyer-of-its-org"),
    (ANNA, [BUDI], False, "member/shipper"),
]


@pytest.mark.parametrize(
    ("to", "signers", "allowed"),
    [pytest.param(to, signers, ok, id=name) for to, signers, ok, name in RECEIVERS],
)
def test_who_may_receive(world: World, to: str, signers: list[str], allowed: bool) -> None:
    _with_extra_members(world)
    world.ship("RB-BUDI-1", "SHP-EU-1", to, signer=BUDI)
    envelope = world.envelope("lot.receive", RECEIVE, signers)
    if not allowed:
        refuse(world, envelope, "auth.unauthorised", "lot.receive for")
        return
    world.apply(envelope)
    lot = world.memory.lot("RB-BUDI-1")
    assert lot is not None
    assert (lot.owner, lot.status) == (to, "active")


# --------------------------------------------------------------------------------------------
# Governance threshold: 2 of 3


GOV_2_OF_3 = ("gov-1", "gov-2", "gov-3")


@pytest.mark.parametrize(
    ("signers", "rule"),
    [
        pytest.param(["gov-1"], "auth.threshold", id="1-of-3"),
        pytest.param(["gov-3"], "auth.threshold", id="another-1-of-3"),
        pytest.param(["gov-1", "gov-2"], None, id="2-of-3"),
        pytest.param(["gov-2", "gov-3"], None, id="other-2-of-3"),
        pytest.param(list(GOV_2_OF_3), None, id="3-of-3"),
        pytest.param(["gov-1", "gov-2", KARET_ADMIN], "auth.unauthorised", id="2-plus-member"),
        pytest.param(["gov-1", KARET_ADMIN], "auth.unauthorised", id="1-plus-member"),
        pytest.param([KARET_ADMIN], "auth.unauthorised", id="member-only"),
        pytest.param(["gov-1", GOV], "auth.unknown-key", id="1-plus-a-key-of-another-genesis"),
    ],
)
def test_governance_threshold(signers: list[str], rule: str | None) -> None:
    world = World(make_genesis(GOV_2_OF_3, threshold=2))
    world.register_org(
        "koperasi-karet", "Koperasi Karet Sanggau Jaya", "cooperative", signers=["gov-1", "gov-2"]
    )
    envelope = world.envelope("org.register", ORG, signers)
    if rule is not None:
        refuse(world, envelope, rule)
        return
    world.apply(envelope)
    org = world.memory.org("koperasi-sawit")
    assert org is not None
    assert org.index == 1


def test_governance_signers_may_not_register_members_even_at_threshold() -> None:
    world = World(make_genesis(GOV_2_OF_3, threshold=2))
    world.register_org(
        "koperasi-karet", "Koperasi Karet Sanggau Jaya", "cooperative", signers=["gov-2", "gov-3"]
    )
    refuse(
        world,
        world.envelope("member.register", MEMBER, ["gov-1", "gov-2"]),
        "auth.unauthorised",
        "governance key",
    )


# --------------------------------------------------------------------------------------------
# Every refusal: (event type:what, rule, the event, a fragment of the detail)


def lot(**changes: Any) -> Make:
    return event("lot.create", edit(LOT, **changes), BUDI)


def plot(geometry: Any, area_ha: str = "3.75") -> Make:
    return event("plot.register", plot_with(geometry, area_ha), KARET_CLERK)


REFUSALS = [
    # ---- the envelope ------------------------------------------------------------------
    case(
        "event:network",
        "event.network",
        event("lot.create", LOT, BUDI, network="java-coop"),
        "java-coop",
    ),
    case(
        "event:future-by-5min-1s",
        "event.future",
        event("lot.create", LOT, BUDI, created_at="2026-11-29T03:05:01Z"),
    ),
    case(
        "event:future-by-5min-1ms",
        "event.future",
        event("lot.create", LOT, BUDI, created_at="2026-11-29T03:05:00.001Z"),
    ),
    case("event:type-unknown", "event.type", event("lot.destroy", {"lot_id": "RB-BUDI-1"}, BUDI)),
    case("event:type-case", "event.type", event("Lot.Create", LOT, BUDI), "'Lot.Create'"),
    case("event:type-key.rotate", "event.type", event("key.rotate", ADD_KEY, KARET_ADMIN)),
    case(
        "event:duplicate",
        "event.duplicate",
        repeated(LOT, [BUDI], [BUDI]),
        "already in the log at 20",
    ),
    case(
        "event:duplicate-other-signatures",
        "event.duplicate",
        repeated(LOT, [BUDI], [KARET_CLERK]),
        "already in the log at 20",
    ),
    case(
        "event:duplicate-signed-by-now-revoked-key",
        "event.duplicate",
        repeated(REVOKE, [BUDI], [BUDI], kind="key.revoke"),
    ),
    # ---- payload: shared checks, shown on lot.create ------------------------------------
    case(
        "lot.create:missing-field",
        "event.payload",
        lot(harvested_on=DROP),
        "payload.harvested_on is missing",
    ),
    case(
        "lot.create:unknown-field", "event.payload", lot(grade="A"), "payload.grade is not a field"
    ),
    case("lot.create:quantity-int", "event.payload", lot(quantity=120), "payload.quantity"),
    case(
        "lot.create:epcis-event-captured-twice",
        "event.epcis-captured",
        after(
            lambda w: w.submit("lot.create", edit(LOT, lot_id="RB-BUDI-9", epcis=EPCIS), [BUDI]),
            then=lot(epcis=EPCIS),
        ),
        "was captured at log index 20",
    ),
    case(
        "lot.create:harvested-after-the-record",
        "lot.harvest-date",
        lot(harvested_on="2026-11-30"),
        "after the event was created",
    ),
    case(
        "lot.create:quantity-float",
        "event.payload",
        forged("lot.create", edit(LOT, quantity=120.75), BUDI),
        "payload.quantity",
    ),
    case("lot.create:quantity-negative", "event.payload", lot(quantity="-5"), "payload.quantity"),
    case("lot.create:quantity-zero", "event.payload", lot(quantity="0"), "greater than 0"),
    case(
        "lot.create:quantity-zero-decimals",
        "event.payload",
        lot(quantity="0.000000"),
        "greater than 0",
    ),
    case(
        "lot.create:quantity-7-decimals",
        "event.payload",
        lot(quantity="1.1234567"),
        "payload.quantity",
    ),
    case(
        "lot.create:quantity-16-digits",
        "event.payload",
        lot(quantity="1000000000000000"),
        "payload.quantity",
    ),
    case("lot.create:quantity-exponent", "event.payload", lot(quantity="1e3"), "payload.quantity"),
    case(
        "lot.create:quantity-leading-zero",
        "event.payload",
        lot(quantity="0120.5"),
        "payload.quantity",
    ),
    case("lot.create:quantity-space", "event.payload", lot(quantity=" 120"), "payload.quantity"),
    case("lot.create:lot-id-slash", "event.payload", lot(lot_id="RB/BUDI/3"), "payload.lot_id"),
    case("lot.create:lot-id-empty", "event.payload", lot(lot_id=""), "payload.lot_id"),
    case("lot.create:lot-id-129-chars", "event.payload", lot(lot_id="R" * 129), "payload.lot_id"),
    case("lot.create:producer-no-org", "event.payload", lot(producer="budi"), "payload.producer"),
    case(
        "lot.create:producer-uppercase-org",
        "event.payload",
        lot(producer="Koperasi-Karet/budi"),
        "payload.producer",
    ),
    case(
        "lot.create:producer-space",
        "event.payload",
        lot(producer="koperasi-karet/bu di"),
        "payload.producer",
    ),
    case("lot.create:producer-list", "event.payload", lot(producer=[BUDI]), "payload.producer"),
    case(
        "lot.create:date-not-real",
        "event.payload",
        lot(harvested_on="2026-02-30"),
        "payload.harvested_on",
    ),
    case(
        "lot.create:date-dmy",
        "event.payload",
        lot(harvested_on="25-11-2026"),
        "payload.harvested_on",
    ),
    case(
        "lot.create:date-is-a-time",
        "event.payload",
        lot(harvested_on="2026-11-25T00:00:00Z"),
        "payload.harvested_on",
    ),
    case("lot.create:gtin-check-digit", "event.payload", lot(gtin="8991234567892"), "check digit"),
    case("lot.create:gtin-length", "event.payload", lot(gtin="899123456"), "payload.gtin"),
    case("lot.create:gtin-int", "event.payload", lot(gtin=8991234567891), "payload.gtin"),
    case(
        "lot.create:epcis-uppercase-hex",
        "event.payload",
        lot(epcis=EPCIS.replace(EPCIS[14:78], EPCIS[14:78].upper())),
        "payload.epcis",
    ),
    case(
        "lot.create:epcis-no-version",
        "event.payload",
        lot(epcis=EPCIS.split("?")[0]),
        "payload.epcis",
    ),
    case(
        "lot.create:epcis-short-hash",
        "event.payload",
        lot(epcis=EPCIS[:20] + "?ver=CBV2.0"),
        "payload.epcis",
    ),
    case("lot.create:uom-unknown", "event.payload", lot(uom="lb"), "payload.uom"),
    case("lot.create:uom-as-unece-code", "event.payload", lot(uom="KGM"), "payload.uom"),
    case(
        "lot.create:commodity-capitalised",
        "event.payload",
        lot(commodity="Rubber"),
        "payload.commodity",
    ),
    case("lot.create:plot-id-int", "event.payload", lot(plot_id=7), "payload.plot_id"),
    # ---- org.register -------------------------------------------------------------------
    case(
        "org.register:kind-unknown",
        "event.payload",
        event("org.register", edit(ORG, kind="farm"), GOV),
        "payload.kind",
    ),
    case(
        "org.register:name-newline",
        "event.payload",
        event("org.register", edit(ORG, name="Koperasi\nSawit"), GOV),
        "payload.name",
    ),
    case(
        "org.register:name-blank",
        "event.payload",
        event("org.register", edit(ORG, name="  "), GOV),
        "payload.name",
    ),
    case(
        "org.register:name-201-chars",
        "event.payload",
        event("org.register", edit(ORG, name="K" * 201), GOV),
        "payload.name",
    ),
    case(
        "org.register:no-admins",
        "event.payload",
        event("org.register", edit(ORG, admins=[]), GOV),
        "payload.admins",
    ),
    case(
        "org.register:admin-twice",
        "event.payload",
        event("org.register", edit(ORG, admins=ORG["admins"] * 2), GOV),
        "payload.admins[1] repeats",
    ),
    case(
        "org.register:admin-key-uppercase-hex",
        "event.payload",
        event("org.register", edit(ORG, admins=[ORG["admins"][0].upper()]), GOV),
        "payload.admins[0]",
    ),
    case(
        "org.register:admin-key-31-bytes",
        "event.payload",
        event("org.register", edit(ORG, admins=[ORG["admins"][0][:62]]), GOV),
        "payload.admins[0]",
    ),
    case(
        "org.register:org-id-uppercase",
        "event.payload",
        event("org.register", edit(ORG, org_id="Koperasi-Sawit"), GOV),
        "payload.org_id",
    ),
    case(
        "org.register:org-id-1-char",
        "event.payload",
        event("org.register", edit(ORG, org_id="k"), GOV),
        "payload.org_id",
    ),
    case(
        "org.register:org-id-leading-dash",
        "event.payload",
        event("org.register", edit(ORG, org_id="-sawit"), GOV),
        "payload.org_id",
    ),
    case(
        "org.register:epcis-not-a-field",
        "event.payload",
        event("org.register", edit(ORG, epcis=EPCIS), GOV),
        "payload.epcis",
    ),
    case(
        "org.register:by-member",
        "auth.unauthorised",
        event("org.register", ORG, KARET_ADMIN),
        "governance admins",
    ),
    case(
        "org.register:by-governance-and-member",
        "auth.unauthorised",
        event("org.register", ORG, GOV, KARET_ADMIN),
    ),
    case(
        "org.register:unknown-key",
        "auth.unknown-key",
        event("org.register", ORG, GOV, "stranger"),
        signing_key_id("stranger"),
    ),
    case(
        "org.register:org-exists",
        "org.exists",
        event("org.register", edit(ORG, org_id=KARET, kind="buyer"), GOV),
        KARET,
    ),
    case(
        "org.register:admin-key-of-a-member",
        "key.registered",
        event("org.register", edit(ORG, admins=[public_key_hex(BUDI)]), GOV),
        signing_key_id(BUDI),
    ),
    case(
        "org.register:admin-key-is-governance",
        "key.registered",
        event("org.register", edit(ORG, admins=[public_key_hex(GOV)]), GOV),
    ),
    # ---- member.register ----------------------------------------------------------------
    case(
        "member.register:role-unknown",
        "event.payload",
        event("member.register", edit(MEMBER, role="owner"), KARET_ADMIN),
        "payload.role",
    ),
    case(
        "member.register:profile-hash-not-hex",
        "event.payload",
        event("member.register", edit(MEMBER, profile_hash="siti-from-sambas"), KARET_ADMIN),
        "payload.profile_hash",
    ),
    case(
        "member.register:no-keys",
        "event.payload",
        event("member.register", edit(MEMBER, public_keys=[]), KARET_ADMIN),
        "payload.public_keys",
    ),
    case(
        "member.register:key-twice",
        "event.payload",
        event("member.register", edit(MEMBER, public_keys=MEMBER["public_keys"] * 2), KARET_ADMIN),
        "repeats",
    ),
    case(
        "member.register:member-id-empty-local",
        "event.payload",
        event("member.register", edit(MEMBER, member_id="koperasi-karet/"), KARET_ADMIN),
        "payload.member_id",
    ),
    case(
        "member.register:by-governance",
        "auth.unauthorised",
        event("member.register", MEMBER, GOV),
        "governance key",
    ),
    case(
        "member.register:by-admin-of-other-org",
        "auth.unauthorised",
        event("member.register", MEMBER, KOPI_ADMIN),
        KOPI_ADMIN,
    ),
    case(
        "member.register:by-clerk",
        "auth.unauthorised",
        event("member.register", MEMBER, KARET_CLERK),
        KARET_CLERK,
    ),
    case(
        "member.register:by-producer",
        "auth.unauthorised",
        event("member.register", MEMBER, BUDI),
        BUDI,
    ),
    case(
        "member.register:by-admin-and-clerk",
        "auth.unauthorised",
        event("member.register", MEMBER, KARET_ADMIN, KARET_CLERK),
    ),
    case(
        "member.register:by-revoked-admin",
        "auth.revoked-key",
        after(admin_revokes_own_key, then=event("member.register", MEMBER, KARET_ADMIN)),
    ),
    case(
        "member.register:org-unknown",
        "org.unknown",
        event("member.register", edit(MEMBER, member_id="koperasi-lada/citra"), KARET_ADMIN),
        "koperasi-lada",
    ),
    case(
        "member.register:member-exists",
        "member.exists",
        event("member.register", edit(MEMBER, member_id=BUDI), KARET_ADMIN),
        BUDI,
    ),
    case(
        "member.register:admin-id-exists",
        "member.exists",
        event("member.register", edit(MEMBER, member_id=KARET_ADMIN, role="admin"), KARET_ADMIN),
    ),
    case(
        "member.register:key-of-another-member",
        "key.registered",
        event("member.register", edit(MEMBER, public_keys=[public_key_hex(SITI)]), KARET_ADMIN),
        signing_key_id(SITI),
    ),
    case(
        "member.register:second-key-already-registered",
        "key.registered",
        event(
            "member.register",
            edit(MEMBER, public_keys=[*MEMBER["public_keys"], public_key_hex(KARET_ADMIN)]),
            KARET_ADMIN,
        ),
    ),
    case(
        "member.register:revoked-key",
        "key.registered",
        after(
            revoke_budi,
            then=event(
                "member.register", edit(MEMBER, public_keys=[public_key_hex(BUDI)]), KARET_ADMIN
            ),
        ),
    ),
    case(
        "member.register:governance-key",
        "key.registered",
        event("member.register", edit(MEMBER, public_keys=[public_key_hex(GOV)]), KARET_ADMIN),
        signing_key_id(GOV),
    ),
    # ---- key.revoke ---------------------------------------------------------------------
    case(
        "key.revoke:key-not-hex",
        "event.payload",
        event("key.revoke", edit(REVOKE, key="budi-phone"), KARET_ADMIN),
        "payload.key",
    ),
    case(
        "key.revoke:member-missing",
        "event.payload",
        event("key.revoke", edit(REVOKE, member_id=DROP), KARET_ADMIN),
        "payload.member_id",
    ),
    case(
        "key.revoke:by-other-producer", "auth.unauthorised", event("key.revoke", REVOKE, ANI), ANI
    ),
    case(
        "key.revoke:by-clerk",
        "auth.unauthorised",
        event("key.revoke", REVOKE, KARET_CLERK),
        KARET_CLERK,
    ),
    case(
        "key.revoke:by-admin-of-other-org",
        "auth.unauthorised",
        event("key.revoke", REVOKE, KOPI_ADMIN),
        KOPI_ADMIN,
    ),
    case(
        "key.revoke:by-governance",
        "auth.unauthorised",
        event("key.revoke", REVOKE, GOV),
        "governance key",
    ),
    case(
        "key.revoke:member-unknown",
        "member.unknown",
        event("key.revoke", edit(REVOKE, member_id="koperasi-karet/joko"), KARET_ADMIN),
        "koperasi-karet/joko",
    ),
    case(
        "key.revoke:key-of-another-member",
        "key.unknown",
        event("key.revoke", edit(REVOKE, key=signing_key_id(ANI)), KARET_ADMIN),
        f"is not a key of {BUDI}",
    ),
    case(
        "key.revoke:key-never-registered",
        "key.unknown",
        event("key.revoke", edit(REVOKE, key=signing_key_id("stranger")), BUDI),
    ),
    case(
        "key.revoke:governance-key",
        "key.unknown",
        event("key.revoke", {"member_id": KARET_ADMIN, "key": signing_key_id(GOV)}, KARET_ADMIN),
    ),
    case(
        "key.revoke:twice",
        "key.revoked",
        after(revoke_budi, then=event("key.revoke", REVOKE, KARET_ADMIN)),
        "already revoked",
    ),
    # ---- key.add ------------------------------------------------------------------------
    case(
        "key.add:key-31-bytes",
        "event.payload",
        event("key.add", edit(ADD_KEY, public_key="ab" * 31), KARET_ADMIN),
        "payload.public_key",
    ),
    case(
        "key.add:by-the-member-itself", "auth.unauthorised", event("key.add", ADD_KEY, BUDI), BUDI
    ),
    case(
        "key.add:by-clerk", "auth.unauthorised", event("key.add", ADD_KEY, KARET_CLERK), KARET_CLERK
    ),
    case(
        "key.add:by-admin-of-other-org",
        "auth.unauthorised",
        event("key.add", ADD_KEY, KOPI_ADMIN),
        KOPI_ADMIN,
    ),
    case(
        "key.add:by-governance",
        "auth.unauthorised",
        event("key.add", ADD_KEY, GOV),
        "governance key",
    ),
    case(
        "key.add:member-unknown",
        "member.unknown",
        event("key.add", edit(ADD_KEY, member_id="koperasi-karet/joko"), KARET_ADMIN),
    ),
    case(
        "key.add:own-key-again",
        "key.registered",
        event("key.add", edit(ADD_KEY, public_key=public_key_hex(BUDI)), KARET_ADMIN),
    ),
    case(
        "key.add:key-of-another-member",
        "key.registered",
        event(
            "key.add", edit(ADD_KEY, member_id=ANI, public_key=public_key_hex(BUDI)), KARET_ADMIN
        ),
    ),
    case(
        "key.add:revoked-key",
        "key.registered",
        after(
            revoke_budi,
            then=event("key.add", edit(ADD_KEY, public_key=public_key_hex(BUDI)), KARET_ADMIN),
        ),
    ),
    case(
        "key.add:governance-key",
        "key.registered",
        event("key.add", edit(ADD_KEY, public_key=public_key_hex(GOV)), KARET_ADMIN),
    ),
    # ---- plot.register ------------------------------------------------------------------
    case(
        "plot.register:area-zero",
        "event.payload",
        event("plot.register", edit(PLOT, area_ha="0"), KARET_CLERK),
        "payload.area_ha",
    ),
    case(
        "plot.register:area-comma",
        "event.payload",
        event("plot.register", edit(PLOT, area_ha="3,75"), KARET_CLERK),
        "payload.area_ha",
    ),
    case(
        "plot.register:commodity-missing",
        "event.payload",
        event("plot.register", edit(PLOT, commodity=DROP), KARET_CLERK),
        "payload.commodity",
    ),
    case(
        "plot.register:by-the-producer",
        "auth.unauthorised",
        event("plot.register", PLOT, BUDI),
        BUDI,
    ),
    case(
        "plot.register:by-clerk-of-other-org",
        "auth.unauthorised",
        event("plot.register", PLOT, KOPI_CLERK),
        KOPI_CLERK,
    ),
    case(
        "plot.register:by-admin-of-other-org",
        "auth.unauthorised",
        event("plot.register", PLOT, KOPI_ADMIN),
        KOPI_ADMIN,
    ),
    case("plot.register:by-buyer", "auth.unauthorised", event("plot.register", PLOT, ANNA), ANNA),
    case("plot.register:by-governance", "auth.unauthorised", event("plot.register", PLOT, GOV)),
    case(
        "plot.register:member-unknown",
        "member.unknown",
        event("plot.register", edit(PLOT, member_id="koperasi-karet/joko"), KARET_CLERK),
    ),
    case(
        "plot.register:for-a-clerk",
        "member.role",
        event("plot.register", edit(PLOT, member_id=KARET_CLERK), KARET_ADMIN),
        "not a producer",
    ),
    case(
        "plot.register:for-a-buyer",
        "member.role",
        event("plot.register", edit(PLOT, member_id=ANNA), BUYER_ADMIN),
        "not a producer",
    ),
    case(
        "plot.register:plot-exists",
        "plot.exists",
        event("plot.register", edit(PLOT, plot_id="PLOT-BUDI-1"), KARET_CLERK),
    ),
    case(
        "plot.register:plot-id-of-another-member",
        "plot.exists",
        event("plot.register", edit(PLOT, plot_id="PLOT-SITI-1"), KARET_CLERK),
    ),
    case(
        "plot.register:ring-open",
        "plot.geometry",
        plot({"type": "Polygon", "coordinates": [RING[:-1]]}),
        "not closed",
    ),
    case(
        "plot.register:ring-of-3",
        "plot.geometry",
        plot({"type": "Polygon", "coordinates": [[RING[0], RING[1], RING[0]]]}),
        "at least 4",
    ),
    case(
        "plot.register:ring-of-1",
        "plot.geometry",
        plot({"type": "Polygon", "coordinates": [[RING[0]]]}),
    ),
    case("plot.register:no-rings", "plot.geometry", plot({"type": "Polygon", "coordinates": []})),
    case(
        "plot.register:ring-not-nested",
        "plot.geometry",
        plot({"type": "Polygon", "coordinates": RING}),
    ),
    case(
        "plot.register:8-decimals",
        "plot.geometry",
        plot({"type": "Point", "coordinates": [110.59234567, 0.1245678]}),
        "at most 7 decimals",
    ),
    case(
        "plot.register:8-decimals-in-a-ring",
        "plot.geometry",
        plot(
            {"type": "Polygon", "coordinates": [[*RING[:2], [110.58412345, 0.14412345], *RING[3:]]]}
        ),
        "at most 7 decimals",
    ),
    case(
        "plot.register:longitude-181",
        "plot.geometry",
        plot({"type": "Point", "coordinates": [181, 0.1]}),
    ),
    case(
        "plot.register:latitude-minus-91",
        "plot.geometry",
        plot({"type": "Point", "coordinates": [110.59, -91]}),
    ),
    case(
        "plot.register:lat-lon-swapped-out-of-range",
        "plot.geometry",
        plot({"type": "Point", "coordinates": [0.1245678, 110.5923456]}),
    ),
    case(
        "plot.register:coordinate-string",
        "plot.geometry",
        plot({"type": "Point", "coordinates": ["110.59", "0.12"]}),
    ),
    case(
        "plot.register:coordinate-bool",
        "plot.geometry",
        plot({"type": "Point", "coordinates": [True, 0.12]}),
    ),
    case(
        "plot.register:position-with-altitude",
        "plot.geometry",
        plot({"type": "Point", "coordinates": [110.59, 0.12, 40]}),
    ),
    case(
        "plot.register:point-above-4ha", "plot.geometry", plot(POINT, "4.000001"), "needs a Polygon"
    ),
    case(
        "plot.register:linestring",
        "plot.geometry",
        plot({"type": "LineString", "coordinates": RING}),
    ),
    case("plot.register:bbox", "plot.geometry", plot({**POINT, "bbox": [110, 0, 111, 1]})),
    case("plot.register:not-an-object", "plot.geometry", plot("POINT(110.5923456 0.1245678)")),
    # ---- lot.create ---------------------------------------------------------------------
    case("lot.create:by-other-producer", "auth.unauthorised", event("lot.create", LOT, ANI), ANI),
    case(
        "lot.create:by-producer-and-other-producer",
        "auth.unauthorised",
        event("lot.create", LOT, BUDI, ANI),
        ANI,
    ),
    case(
        "lot.create:by-clerk-of-other-org",
        "auth.unauthorised",
        event("lot.create", LOT, KOPI_CLERK),
        KOPI_CLERK,
    ),
    case(
        "lot.create:by-admin-of-other-org",
        "auth.unauthorised",
        event("lot.create", LOT, KOPI_ADMIN),
        KOPI_ADMIN,
    ),
    case("lot.create:by-buyer", "auth.unauthorised", event("lot.create", LOT, ANNA), ANNA),
    case("lot.create:by-auditor", "auth.unauthorised", event("lot.create", LOT, DEWI), DEWI),
    case(
        "lot.create:by-processor",
        "auth.unauthorised",
        event("lot.create", LOT, PROCESSOR_CLERK),
        PROCESSOR_CLERK,
    ),
    case(
        "lot.create:by-governance",
        "auth.unauthorised",
        event("lot.create", LOT, GOV),
        "governance key",
    ),
    case("lot.create:unknown-key", "auth.unknown-key", event("lot.create", LOT, "stranger")),
    case(
        "lot.create:producer-and-unknown-key",
        "auth.unknown-key",
        event("lot.create", LOT, BUDI, "stranger"),
    ),
    case(
        "lot.create:revoked-key",
        "auth.revoked-key",
        after(revoke_budi, then=event("lot.create", LOT, BUDI)),
    ),
    case(
        "lot.create:revoked-key-with-clerk",
        "auth.revoked-key",
        after(revoke_budi, then=event("lot.create", LOT, BUDI, KARET_CLERK)),
    ),
    case(
        "lot.create:producer-unknown",
        "member.unknown",
        event("lot.create", edit(LOT, producer="koperasi-karet/joko", plot_id=DROP), KARET_CLERK),
    ),
    case(
        "lot.create:for-a-clerk",
        "member.role",
        event("lot.create", edit(LOT, producer=KARET_CLERK, plot_id=DROP), KARET_CLERK),
        "not a producer",
    ),
    case(
        "lot.create:buyer-for-itself",
        "member.role",
        event("lot.create", edit(LOT, producer=ANNA, plot_id=DROP), ANNA),
        "is a buyer",
    ),
    case(
        "lot.create:for-an-admin",
        "member.role",
        event("lot.create", edit(LOT, producer=KARET_ADMIN, plot_id=DROP), KARET_ADMIN),
    ),
    case("lot.create:plot-unknown", "plot.unknown", lot(plot_id="PLOT-BUDI-9"), "PLOT-BUDI-9"),
    case("lot.create:plot-of-other-producer", "plot.owner", lot(plot_id="PLOT-ANI-1"), ANI),
    case(
        "lot.create:plot-of-other-org-and-commodity",
        "plot.owner",
        lot(plot_id="PLOT-SITI-1", commodity="coffee"),
    ),
    case("lot.create:plot-grows-rubber", "plot.commodity", lot(commodity="coffee"), "grows rubber"),
    case("lot.create:lot-exists", "lot.exists", lot(lot_id="RB-BUDI-1"), "RB-BUDI-1"),
    case("lot.create:lot-id-of-other-producer", "lot.exists", lot(lot_id="KP-SITI-1")),
    case(
        "lot.create:lot-id-of-a-split-child",
        "lot.exists",
        after(split_all, then=lot(lot_id="RB-BUDI-1x")),
    ),
    # ---- lot.split ----------------------------------------------------------------------
    case(
        "lot.split:no-outputs",
        "event.payload",
        event("lot.split", edit(SPLIT, outputs=[]), BUDI),
        "payload.outputs",
    ),
    case(
        "lot.split:duplicate-outputs",
        "event.payload",
        event("lot.split", edit(SPLIT, outputs=[SPLIT["outputs"][0]] * 2), BUDI),
        "payload.outputs[1] repeats 'RB-BUDI-1a'",
    ),
    case(
        "lot.split:output-zero",
        "event.payload",
        event("lot.split", edit(SPLIT, outputs=[{"lot_id": "RB-BUDI-1a", "quantity": "0"}]), BUDI),
        "payload.outputs[0].quantity",
    ),
    case(
        "lot.split:output-without-quantity",
        "event.payload",
        event("lot.split", edit(SPLIT, outputs=[{"lot_id": "RB-BUDI-1a"}]), BUDI),
        "payload.outputs[0].quantity is missing",
    ),
    case(
        "lot.split:output-with-commodity",
        "event.payload",
        event(
            "lot.split",
            edit(SPLIT, outputs=[{"lot_id": "RB-BUDI-1a", "quantity": "1", "commodity": "rubber"}]),
            BUDI,
        ),
        "payload.outputs[0].commodity is not a field",
    ),
    case(
        "lot.split:outputs-not-a-list",
        "event.payload",
        event("lot.split", edit(SPLIT, outputs={"lot_id": "x"}), BUDI),
    ),
    case(
        "lot.split:bad-epcis",
        "event.payload",
        event("lot.split", edit(SPLIT, epcis="urn:epc:1"), BUDI),
        "payload.epcis",
    ),
    case("lot.split:by-other-producer", "auth.unauthorised", event("lot.split", SPLIT, ANI), ANI),
    case(
        "lot.split:by-clerk-of-other-org",
        "auth.unauthorised",
        event("lot.split", SPLIT, KOPI_CLERK),
        KOPI_CLERK,
    ),
    case("lot.split:by-buyer", "auth.unauthorised", event("lot.split", SPLIT, ANNA)),
    case("lot.split:by-governance", "auth.unauthorised", event("lot.split", SPLIT, GOV)),
    case(
        "lot.split:lot-unknown",
        "lot.unknown",
        event("lot.split", edit(SPLIT, lot_id="RB-NOPE"), BUDI),
    ),
    case(
        "lot.split:consumed-double-spend",
        "lot.not-active",
        after(split_all, then=event("lot.split", SPLIT, BUDI)),
        "consumed",
    ),
    case(
        "lot.split:consumed-by-merge",
        "lot.not-active",
        after(merge_budi, then=event("lot.split", SPLIT, BUDI)),
    ),
    case(
        "lot.split:in-transit",
        "lot.not-active",
        after(ship_to_buyer, then=event("lot.split", SPLIT, BUDI)),
        "in transit",
    ),
    case(
        "lot.split:in-transit-by-receiver",
        "lot.not-active",
        after(ship_to_buyer, then=event("lot.split", SPLIT, BUYER_ADMIN)),
    ),
    case(
        "lot.split:output-is-existing-lot",
        "lot.exists",
        event("lot.split", edit(SPLIT, outputs=[{"lot_id": "RB-BUDI-2", "quantity": "1"}]), BUDI),
        "RB-BUDI-2",
    ),
    case(
        "lot.split:output-is-the-parent",
        "lot.exists",
        event("lot.split", edit(SPLIT, outputs=[{"lot_id": "RB-BUDI-1", "quantity": "1"}]), BUDI),
        "its own output",
    ),
    case(
        "lot.split:more-than-the-lot",
        "lot.quantity",
        event(
            "lot.split",
            edit(
                SPLIT,
                outputs=[
                    {"lot_id": "a", "quantity": "250"},
                    {"lot_id": "b", "quantity": "250.000001"},
                ],
            ),
            BUDI,
        ),
        "holds 500 kg, cannot take 500.000001",
    ),
    case(
        "lot.split:outputs-above-largest-quantity",
        "lot.quantity",
        event(
            "lot.split",
            edit(
                SPLIT,
                outputs=[{"lot_id": "a", "quantity": MAX}, {"lot_id": "b", "quantity": "0.000001"}],
            ),
            BUDI,
        ),
        "exceeds the largest quantity",
    ),
    # ---- lot.merge ----------------------------------------------------------------------
    case(
        "lot.merge:one-input",
        "event.payload",
        event("lot.merge", edit(MERGE, inputs=["RB-BUDI-1"]), BUDI),
        "payload.inputs",
    ),
    case(
        "lot.merge:same-input-twice",
        "event.payload",
        event("lot.merge", edit(MERGE, inputs=["RB-BUDI-1", "RB-BUDI-1"]), BUDI),
        "repeats",
    ),
    case(
        "lot.merge:inputs-not-a-list",
        "event.payload",
        event("lot.merge", edit(MERGE, inputs="RB-BUDI-1,RB-BUDI-2"), BUDI),
    ),
    case("lot.merge:by-other-producer", "auth.unauthorised", event("lot.merge", MERGE, ANI), ANI),
    case(
        "lot.merge:by-clerk-of-other-org",
        "auth.unauthorised",
        event("lot.merge", MERGE, KOPI_CLERK),
    ),
    case(
        "lot.merge:input-unknown",
        "lot.unknown",
        event("lot.merge", edit(MERGE, inputs=["RB-BUDI-1", "RB-NOPE"]), BUDI),
    ),
    case(
        "lot.merge:input-consumed",
        "lot.not-active",
        after(split_all, then=event("lot.merge", MERGE, BUDI)),
    ),
    case(
        "lot.merge:merge-twice",
        "lot.not-active",
        after(merge_budi, then=event("lot.merge", edit(MERGE, lot_id="RB-BUDI-M2"), BUDI)),
    ),
    case(
        "lot.merge:input-in-transit",
        "lot.not-active",
        after(ship_to_buyer, then=event("lot.merge", MERGE, BUDI)),
    ),
    case(
        "lot.merge:output-is-an-input",
        "lot.exists",
        event("lot.merge", edit(MERGE, lot_id="RB-BUDI-2"), BUDI),
        "one of the inputs",
    ),
    case(
        "lot.merge:output-exists",
        "lot.exists",
        event("lot.merge", edit(MERGE, lot_id="RB-ANI-1"), BUDI),
    ),
    case(
        "lot.merge:overflow",
        "lot.quantity",
        after(
            budi_huge, then=event("lot.merge", edit(MERGE, inputs=["RB-HUGE-1", "RB-HUGE-2"]), BUDI)
        ),
        "exceeds the largest quantity",
    ),
    case(
        "lot.merge:different-commodity",
        "lot.mixed",
        after(
            budi_coffee,
            then=event("lot.merge", edit(MERGE, inputs=["RB-BUDI-1", "KP-BUDI-1"]), BUDI),
        ),
        "commodity and unit",
    ),
    case(
        "lot.merge:different-unit",
        "lot.mixed",
        after(
            budi_tonnes,
            then=event("lot.merge", edit(MERGE, inputs=["RB-BUDI-1", "RB-BUDI-T"]), BUDI),
        ),
        "commodity and unit",
    ),
    case(
        "lot.merge:members-of-one-org",
        "lot.mixed",
        event("lot.merge", edit(MERGE, inputs=["RB-BUDI-1", "RB-ANI-1"]), KARET_CLERK),
        "held by",
    ),
    case(
        "lot.merge:member-and-its-org",
        "lot.mixed",
        after(deliver_to_karet, then=event("lot.merge", MERGE, KARET_CLERK)),
        "held by",
    ),
    # ---- lot.transform ------------------------------------------------------------------
    case(
        "lot.transform:same-input-twice",
        "event.payload",
        event("lot.transform", edit(TRANSFORM, inputs=[TRANSFORM["inputs"][0]] * 2), BUDI),
        "repeats 'RB-BUDI-1'",
    ),
    case(
        "lot.transform:output-uom-unknown",
        "event.payload",
        event(
            "lot.transform",
            edit(TRANSFORM, outputs=[{**TRANSFORM["outputs"][0], "uom": "lb"}]),
            BUDI,
        ),
        "payload.outputs[0].uom",
    ),
    case(
        "lot.transform:output-without-uom",
        "event.payload",
        event(
            "lot.transform",
            edit(
                TRANSFORM,
                outputs=[{"lot_id": "RSS-1", "commodity": "rubber_sheet", "quantity": "1"}],
            ),
            BUDI,
        ),
        "payload.outputs[0].uom is missing",
    ),
    case(
        "lot.transform:take-zero",
        "event.payload",
        event(
            "lot.transform",
            edit(TRANSFORM, inputs=[{"lot_id": "RB-BUDI-1", "quantity": "0"}]),
            BUDI,
        ),
        "payload.inputs[0].quantity",
    ),
    case(
        "lot.transform:process-empty",
        "event.payload",
        event("lot.transform", edit(TRANSFORM, process=""), BUDI),
        "payload.process",
    ),
    case(
        "lot.transform:no-outputs",
        "event.payload",
        event("lot.transform", edit(TRANSFORM, outputs=[]), BUDI),
        "payload.outputs",
    ),
    case(
        "lot.transform:by-processor",
        "auth.unauthorised",
        event("lot.transform", TRANSFORM, PROCESSOR_CLERK),
        PROCESSOR_CLERK,
    ),
    case(
        "lot.transform:by-other-producer",
        "auth.unauthorised",
        event("lot.transform", TRANSFORM, ANI),
        ANI,
    ),
    case(
        "lot.transform:input-unknown",
        "lot.unknown",
        event(
            "lot.transform", edit(TRANSFORM, inputs=[{"lot_id": "RB-NOPE", "quantity": "1"}]), BUDI
        ),
    ),
    case(
        "lot.transform:input-consumed",
        "lot.not-active",
        after(split_all, then=event("lot.transform", TRANSFORM, BUDI)),
    ),
    case(
        "lot.transform:input-in-transit",
        "lot.not-active",
        after(ship_to_buyer, then=event("lot.transform", TRANSFORM, BUDI)),
    ),
    case(
        "lot.transform:output-is-an-input",
        "lot.exists",
        event(
            "lot.transform",
            edit(TRANSFORM, outputs=[{**TRANSFORM["outputs"][0], "lot_id": "RB-BUDI-2"}]),
            BUDI,
        ),
        "one of the inputs",
    ),
    case(
        "lot.transform:output-exists",
        "lot.exists",
        event(
            "lot.transform",
            edit(TRANSFORM, outputs=[{**TRANSFORM["outputs"][0], "lot_id": "RB-ANI-1"}]),
            BUDI,
        ),
    ),
    case(
        "lot.transform:more-than-held",
        "lot.quantity",
        event(
            "lot.transform",
            edit(TRANSFORM, inputs=[{"lot_id": "RB-BUDI-2", "quantity": "300.500001"}]),
            BUDI,
        ),
        "holds 300.5 kg",
    ),
    case(
        "lot.transform:inputs-in-different-units",
        "lot.mixed",
        after(
            budi_tonnes,
            then=event(
                "lot.transform",
                edit(
                    TRANSFORM,
                    inputs=[
                        {"lot_id": "RB-BUDI-1", "quantity": "1"},
                        {"lot_id": "RB-BUDI-T", "quantity": "0.1"},
                    ],
                ),
                BUDI,
            ),
        ),
        "one unit",
    ),
    case(
        "lot.transform:inputs-of-two-members",
        "lot.mixed",
        event(
            "lot.transform",
            edit(
                TRANSFORM,
                inputs=[
                    {"lot_id": "RB-BUDI-1", "quantity": "1"},
                    {"lot_id": "RB-ANI-1", "quantity": "1"},
                ],
            ),
            KARET_CLERK,
        ),
        "held by",
    ),
    # ---- lot.ship -----------------------------------------------------------------------
    case(
        "lot.ship:to-bad-id",
        "event.payload",
        event("lot.ship", edit(SHIP, to="EU Buyer"), BUDI),
        "payload.to",
    ),
    case(
        "lot.ship:to-empty-member",
        "event.payload",
        event("lot.ship", edit(SHIP, to="eu-buyer/"), BUDI),
        "payload.to",
    ),
    case(
        "lot.ship:shipment-id-slash",
        "event.payload",
        event("lot.ship", edit(SHIP, shipment_id="SHP/1"), BUDI),
        "payload.shipment_id",
    ),
    case("lot.ship:by-other-producer", "auth.unauthorised", event("lot.ship", SHIP, ANI), ANI),
    case("lot.ship:by-the-receiver", "auth.unauthorised", event("lot.ship", SHIP, ANNA), ANNA),
    case(
        "lot.ship:by-clerk-of-other-org", "auth.unauthorised", event("lot.ship", SHIP, KOPI_CLERK)
    ),
    case(
        "lot.ship:lot-unknown", "lot.unknown", event("lot.ship", edit(SHIP, lot_id="RB-NOPE"), BUDI)
    ),
    case(
        "lot.ship:consumed", "lot.not-active", after(split_all, then=event("lot.ship", SHIP, BUDI))
    ),
    case(
        "lot.ship:twice",
        "lot.not-active",
        after(
            ship_to_buyer,
            then=event("lot.ship", edit(SHIP, shipment_id="SHP-EU-2", to=KARET), BUDI),
        ),
        "in transit",
    ),
    case(
        "lot.ship:to-unregistered-org",
        "party.unknown",
        event("lot.ship", edit(SHIP, to="eu-importir"), BUDI),
        "eu-importir",
    ),
    case(
        "lot.ship:to-unregistered-member",
        "party.unknown",
        event("lot.ship", edit(SHIP, to="eu-buyer/ghost"), BUDI),
        "eu-buyer/ghost",
    ),
    case(
        "lot.ship:to-member-of-unregistered-org",
        "party.unknown",
        event("lot.ship", edit(SHIP, to="eu-importir/anna"), BUDI),
    ),
    case(
        "lot.ship:to-current-owner",
        "shipment.to-holder",
        event("lot.ship", edit(SHIP, to=BUDI), BUDI),
        "already held by",
    ),
    case(
        "lot.ship:org-to-itself",
        "shipment.to-holder",
        after(
            deliver_to_karet,
            then=event("lot.ship", edit(SHIP, lot_id="RB-BUDI-2", to=KARET), KARET_CLERK),
        ),
        "already held by",
    ),
    case(
        "lot.ship:shipment-id-in-use",
        "shipment.exists",
        after(ship_to_buyer, then=event("lot.ship", edit(SHIP, lot_id="RB-BUDI-2"), BUDI)),
        "SHP-EU-1",
    ),
    case(
        "lot.ship:shipment-id-of-a-closed-shipment",
        "shipment.exists",
        after(deliver_to_buyer, then=event("lot.ship", edit(SHIP, lot_id="RB-BUDI-2"), BUDI)),
    ),
    # ---- lot.receive --------------------------------------------------------------------
    case(
        "lot.receive:negative",
        "event.payload",
        after(
            ship_to_buyer, then=event("lot.receive", edit(RECEIVE, quantity_received="-1"), ANNA)
        ),
        "payload.quantity_received",
    ),
    case(
        "lot.receive:7-decimals",
        "event.payload",
        after(
            ship_to_buyer,
            then=event("lot.receive", edit(RECEIVE, quantity_received="1.0000001"), ANNA),
        ),
    ),
    case(
        "lot.receive:int",
        "event.payload",
        after(ship_to_buyer, then=event("lot.receive", edit(RECEIVE, quantity_received=500), ANNA)),
    ),
    case(
        "lot.receive:float",
        "event.payload",
        after(
            ship_to_buyer, then=forged("lot.receive", edit(RECEIVE, quantity_received=498.5), ANNA)
        ),
    ),
    case(
        "lot.receive:by-the-shipper",
        "auth.unauthorised",
        after(ship_to_buyer, then=event("lot.receive", RECEIVE, BUDI)),
        f"lot.receive for {BUYER_ORG}",
    ),
    case(
        "lot.receive:by-the-shipping-org",
        "auth.unauthorised",
        after(
            deliver_to_karet,
            lambda w: w.ship("RB-BUDI-2", "SHP-EU-2", BUYER_ORG, signer=KARET_CLERK),
            then=event(
                "lot.receive",
                edit(RECEIVE, lot_id="RB-BUDI-2", shipment_id="SHP-EU-2"),
                KARET_CLERK,
            ),
        ),
    ),
    case(
        "lot.receive:by-producer-member-of-to",
        "auth.unauthorised",
        after(
            lambda w: w.ship("RB-ANI-1", "SHP-KARET-2", KARET, signer=ANI),
            then=event(
                "lot.receive", {**RECEIVE, "lot_id": "RB-ANI-1", "shipment_id": "SHP-KARET-2"}, BUDI
            ),
        ),
    ),
    case(
        "lot.receive:to-member-by-another-orgs-admin",
        "auth.unauthorised",
        after(
            lambda w: w.ship("RB-BUDI-1", "SHP-EU-1", ANNA, signer=BUDI),
            then=event("lot.receive", RECEIVE, KARET_ADMIN),
        ),
    ),
    case(
        "lot.receive:by-governance",
        "auth.unauthorised",
        after(ship_to_buyer, then=event("lot.receive", RECEIVE, GOV)),
    ),
    case(
        "lot.receive:lot-unknown",
        "lot.unknown",
        event("lot.receive", edit(RECEIVE, lot_id="RB-NOPE"), ANNA),
    ),
    case(
        "lot.receive:wrong-shipment-id",
        "shipment.unknown",
        after(
            ship_to_buyer, then=event("lot.receive", edit(RECEIVE, shipment_id="SHP-EU-9"), ANNA)
        ),
        "SHP-EU-9",
    ),
    case("lot.receive:lot-not-in-transit", "shipment.unknown", event("lot.receive", RECEIVE, ANNA)),
    case(
        "lot.receive:twice",
        "shipment.unknown",
        after(deliver_to_buyer, then=event("lot.receive", RECEIVE, ANNA)),
    ),
    case(
        "lot.receive:shipment-of-another-lot",
        "shipment.unknown",
        after(
            ship_to_buyer,
            lambda w: w.ship("RB-BUDI-2", "SHP-EU-2", BUYER_ORG, signer=BUDI),
            then=event("lot.receive", edit(RECEIVE, shipment_id="SHP-EU-2"), ANNA),
        ),
    ),
    case(
        "lot.receive:consumed-lot",
        "shipment.unknown",
        after(split_all, then=event("lot.receive", RECEIVE, ANNA)),
    ),
    case(
        "lot.receive:more-than-shipped",
        "lot.quantity",
        after(
            ship_to_buyer,
            then=event("lot.receive", edit(RECEIVE, quantity_received="500.000001"), ANNA),
        ),
        "received 500.000001 but 500 were shipped",
    ),
    # ---- lot.certify --------------------------------------------------------------------
    case(
        "lot.certify:valid-until-not-real",
        "event.payload",
        event("lot.certify", edit(CERTIFY, valid_until="2027-13-01"), DEWI),
        "payload.valid_until",
    ),
    case(
        "lot.certify:scheme-201-chars",
        "event.payload",
        event("lot.certify", edit(CERTIFY, scheme="S" * 201), DEWI),
        "payload.scheme",
    ),
    case(
        "lot.certify:certificate-missing",
        "event.payload",
        event("lot.certify", edit(CERTIFY, certificate=DROP), DEWI),
        "payload.certificate",
    ),
    case(
        "lot.certify:scheme-tab",
        "event.payload",
        event("lot.certify", edit(CERTIFY, scheme="FSC\tCoC"), DEWI),
    ),
    case("lot.certify:by-buyer", "auth.unauthorised", event("lot.certify", CERTIFY, ANNA), ANNA),
    case(
        "lot.certify:by-clerk",
        "auth.unauthorised",
        event("lot.certify", CERTIFY, KARET_CLERK),
        KARET_CLERK,
    ),
    case("lot.certify:by-the-producer", "auth.unauthorised", event("lot.certify", CERTIFY, BUDI)),
    case(
        "lot.certify:by-admin-of-auditor-org",
        "auth.unauthorised",
        event("lot.certify", CERTIFY, AUDITOR_ADMIN),
        AUDITOR_ADMIN,
    ),
    case("lot.certify:by-governance", "auth.unauthorised", event("lot.certify", CERTIFY, GOV)),
    case(
        "lot.certify:auditor-with-producer",
        "auth.unauthorised",
        event("lot.certify", CERTIFY, DEWI, BUDI),
        BUDI,
    ),
    case(
        "lot.certify:lot-unknown",
        "lot.unknown",
        event("lot.certify", edit(CERTIFY, lot_id="RB-NOPE"), DEWI),
    ),
]


@pytest.mark.parametrize(("make", "rule", "detail"), REFUSALS)
def test_refused(world: World, make: Make, rule: str, detail: str) -> None:
    envelope = make(world)
    refuse(world, envelope, rule, detail)


@pytest.mark.parametrize(("make", "rule", "detail"), REFUSALS)
def test_refused_alike_when_checked_payloads_are_remembered(
    world: World, make: Make, rule: str, detail: str
) -> None:
    # A validator remembers payloads that passed their schema (``checked_payloads``) and
    # checks an event again in a block: it is refused for the same rule every time.
    envelope = make(world)
    world.machine = StateMachine(world.genesis, world.memory, checked_payloads={})
    for _ in range(2):
        refuse(world, envelope, rule, detail)


def test_remembered_payloads_give_the_state_a_fresh_check_gives(world: World) -> None:
    checked: dict[str, dict[str, Any]] = {}
    for _ in range(2):  # the second pass finds every payload remembered
        again = World(world.genesis)
        again.machine = StateMachine(again.genesis, again.memory, checked_payloads=checked)
        for envelope in world.applied:
            again.apply(envelope)
        assert again.digest() == world.digest()
    assert set(checked) == {envelope.event_id for envelope in world.applied}


def _documented_rules() -> set[str]:
    doc = ledger.rules.__doc__
    assert doc is not None
    table = doc.split("=====================  ", 2)[2].split("\n=====")[0]
    return set(re.findall(r"^([a-z]+\.[a-z-]+) ", table, flags=re.MULTILINE))


def test_every_documented_rule_is_broken_somewhere() -> None:
    documented = _documented_rules()
    assert len(documented) == 33
    broken = {param.values[1] for param in REFUSALS} | {"auth.threshold"}
    assert broken == documented


def test_every_event_type_is_refused_somewhere() -> None:
    refused_types = {param.id.split(":")[0] for param in REFUSALS} - {"event"}
    assert refused_types == EVENT_TYPES


def test_refusal_ids_are_unique() -> None:
    ids = [param.id for param in REFUSALS]
    assert len(ids) == len(set(ids))
