"""A hypothesis state machine over the supply-chain rules (DESIGN.md §3 and §6 ``origins``).

The machine starts from :func:`tests.builders.fixture_world` and submits random lot events
(create, split, merge, transform, ship, receive) and key events (revoke, add): valid ones, and
ones broken on purpose — quantities above what a lot holds, mixed commodities or holders, unknown
or own parties, wrong shipments, lots already consumed or in transit, and signatures by members
of the wrong org or role, by revoked keys, by keys never registered and by the governance key.

Beside the ledger it keeps a model written from DESIGN.md §3 and the choices docs/decisions.md
D15 records where §3 leaves room (it never asks the rules what they think): who is a member
with which role, which key belongs to whom and whether it is revoked, every lot's quantity,
owner, status and composition by origin, every shipment, and the books per commodity and unit
(created, made by transforms, taken by transforms, lost at receipt). For each event the model
decides whether it must be accepted and, if not, which rules may refuse it; the ledger must
agree, and a refusal must leave the state digest as it was.

Checked after every step: the model and the state hold the same lots and keys; the books
balance (live + taken + lost == created + made, per commodity and unit and in total); a lot
once consumed stays consumed with quantity 0; replaying ``world.applied`` into a fresh world gives
the same digest; and every lot traces back to ``lot.create`` origins whose quantities are the
model's composition of the lot and sum to its quantity (0 for a consumed lot, D17), and forward
from each origin to it.

What it does not cover: org, member, plot and certification events (the fixture makes them, the
unit tests break them), blocks, signature cryptography, schema errors (``event.payload``).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, TypeVar

from hypothesis import HealthCheck, event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ledger.errors import RuleViolation
from ledger.events import Envelope
from ledger.trace import trace_back, trace_forward
from tests.builders import (
    CREATED_AT,
    GOVERNANCE,
    World,
    fixture_world,
    public_key_hex,
    signing_key_id,
)

T = TypeVar("T")

# --- who is who in fixture_world() (its docstring), written down independently ---------------

ORGS = ("koperasi-karet", "koperasi-kopi", "pengolah-kalbar", "eu-buyer", "auditor-kalbar")
FIXTURE_MEMBERS = {
    **{f"{org}/admin-1": "admin" for org in ORGS},
    "koperasi-karet/clerk": "clerk",
    "koperasi-kopi/clerk": "clerk",
    "pengolah-kalbar/clerk": "clerk",
    "koperasi-karet/budi": "producer",
    "koperasi-karet/ani": "producer",
    "koperasi-kopi/siti": "producer",
    "eu-buyer/anna": "buyer",
    "auditor-kalbar/dewi": "auditor",
}
FIXTURE_PLOTS = {  # plot id -> (member, commodity)
    "PLOT-BUDI-1": ("koperasi-karet/budi", "rubber"),
    "PLOT-ANI-1": ("koperasi-karet/ani", "rubber"),
    "PLOT-SITI-1": ("koperasi-kopi/siti", "coffee"),
}
FIXTURE_LOTS = {  # lot id -> (commodity, quantity, producer); all in kg
    "RB-BUDI-1": ("rubber", "500", "koperasi-karet/budi"),
    "RB-BUDI-2": ("rubber", "300.5", "koperasi-karet/budi"),
    "RB-ANI-1": ("rubber", "250", "koperasi-karet/ani"),
    "KP-SITI-1": ("coffee", "1200", "koperasi-kopi/siti"),
}

UNKNOWN_LABELS = ("stranger-1", "stranger-2")
"""Key labels never registered (``auth.unknown-key``)."""
UNKNOWN_MEMBER = "koperasi-karet/ghost"
UNKNOWN_PARTIES = ("ghost-org", UNKNOWN_MEMBER)
COMMODITIES = ("rubber", "coffee", "cocoa")
PRODUCTS = ("rubber", "crumb_rubber", "green_bean", "cocoa_butter")
UNITS = ("kg", "t")
MICRO = Decimal("0.000001")
HALF_MICRO = Decimal("0.0000005")
LARGEST = Decimal("999999999999999.999999")
"""The largest quantity DESIGN.md §2 can write (15 integer digits, 6 decimals)."""
UNAUTHORISED = "auth.unauthorised"
LIVE = ("active", "in_transit")
Books = dict[tuple[str, str], Decimal]


@dataclass
class ModelKey:
    member: str | None  # None: the genesis governance admin
    revoked: bool = False


@dataclass
class ModelLot:
    commodity: str
    uom: str
    quantity: Decimal
    owner: str
    status: str = "active"
    shipment: str | None = None
    loss: Decimal = Decimal(0)
    composition: dict[str, Fraction] = field(default_factory=dict)
    """Origin lot id -> share of this lot that came from it (shares sum to 1)."""


@dataclass
class ModelShipment:
    lot_id: str
    to: str
    quantity: Decimal
    open: bool = True


@dataclass(frozen=True)
class Verdict:
    """What DESIGN.md §3 says of an event: accepted (no rules), or refused by one of ``rules``."""

    rules: frozenset[str]

    @property
    def accepted(self) -> bool:
        return not self.rules


def judge(key_faults: set[str], pre: set[str], authorised: bool, later: set[str]) -> Verdict:
    """The model's verdict on an event.

    Args:
        key_faults: ``auth.unknown-key``/``auth.revoked-key`` for the signers; these decide alone,
            as a signature is checked against the key registry before its event is read.
        pre: faults that leave the event's authority undecidable or moot (an unknown, consumed
            or in-transit lot, inputs of several holders, an unknown member, a wrong shipment).
            Either one of them or, if the signers are not authorised, ``auth.unauthorised``.
        authorised: whether the signers meet the event type's authority rule.
        later: faults in what an authorised signer asks for (quantities, ids, parties).
    """
    if key_faults:
        return Verdict(frozenset(key_faults))
    if pre:
        return Verdict(frozenset(pre if authorised else {*pre, UNAUTHORISED}))
    if not authorised:
        return Verdict(frozenset({UNAUTHORISED}))
    return Verdict(frozenset(later))


def org_of(party: str) -> str:
    return party.split("/", 1)[0]


def text(quantity: Decimal) -> str:
    """A quantity as DESIGN.md §2 writes it (trailing zeros kept on purpose: they are valid)."""
    return format(quantity, "f")


def six_places(value: Fraction) -> Decimal:
    """``value`` rounded half-even to 6 decimals."""
    return Decimal(round(value * 10**6)).scaleb(-6)


def mix(parts: Sequence[tuple[Decimal, dict[str, Fraction]]]) -> dict[str, Fraction]:
    """The composition of a lot made of ``(quantity, composition)`` parts."""
    total = sum((Fraction(q) for q, _ in parts), Fraction(0))
    out: dict[str, Fraction] = defaultdict(Fraction)
    for quantity, composition in parts:
        for origin, share in composition.items():
            out[origin] += share * Fraction(quantity) / total
    return dict(out)


class RulesMachine(RuleBasedStateMachine):
    """Random valid and invalid lot and key events against fixture_world(), checked by a model."""

    def __init__(self) -> None:
        super().__init__()
        self.world = fixture_world()
        self.members = dict(FIXTURE_MEMBERS)
        self.parties = {*ORGS, *self.members}
        self.keys = {GOVERNANCE: ModelKey(None), **{m: ModelKey(m) for m in self.members}}
        self.lots: dict[str, ModelLot] = {}
        self.origins: dict[str, str] = {}  # lot id made by lot.create -> that event's id
        for lot_id, (commodity, quantity, producer) in FIXTURE_LOTS.items():
            self.lots[lot_id] = ModelLot(
                commodity, "kg", Decimal(quantity), producer, composition={lot_id: Fraction(1)}
            )
        for envelope in self.world.applied:
            if envelope.type == "lot.create":
                self.origins[envelope.payload["lot_id"]] = envelope.event_id
        assert set(self.origins) == set(FIXTURE_LOTS)
        self.shipments: dict[str, ModelShipment] = {}
        self.consumed: set[str] = set()
        self.created: Books = defaultdict(Decimal)
        self.made: Books = defaultdict(Decimal)  # transform outputs
        self.taken: Books = defaultdict(Decimal)  # transform inputs
        self.lost: Books = defaultdict(Decimal)  # shortfalls at receipt
        for lot in self.lots.values():
            self.created[lot.commodity, lot.uom] += lot.quantity
        self.fresh = itertools.count(1)

    # --- the model's reading of DESIGN.md §3 -----------------------------------------------

    def may_hold_for(self, member: str, owner: str) -> bool:
        """*Holder*: the owner itself, or an admin or clerk of the owner's org."""
        return member == owner or (
            self.members[member] in ("admin", "clerk") and org_of(member) == org_of(owner)
        )

    def may_receive(self, member: str, to: str) -> bool:
        """``lot.receive``: ``to`` itself, or an admin/clerk/buyer member of the org ``to``.

        A member ``to`` may also have an admin or clerk of its org record the receipt
        (docs/decisions.md D15, the same reading as *Holder*).
        """
        if "/" in to:
            return self.may_hold_for(member, to)
        return org_of(member) == to and self.members[member] in ("admin", "clerk", "buyer")

    def may_revoke(self, member: str, target: str) -> bool:
        """``key.revoke``: an admin of that org, or the key's own member."""
        return member == target or (
            self.members[member] == "admin" and org_of(member) == org_of(target)
        )

    def may_add_key(self, member: str, target: str) -> bool:
        """``key.add``: an admin of that org."""
        return self.members[member] == "admin" and org_of(member) == org_of(target)

    def key_faults(self, signers: Sequence[str]) -> set[str]:
        faults = set()
        for label in signers:
            key = self.keys.get(label)
            if key is None:
                faults.add("auth.unknown-key")
            elif key.revoked:
                faults.add("auth.revoked-key")
        return faults

    def authorised(self, signers: Sequence[str], allowed: Callable[[str], bool]) -> bool:
        """Every signer is a member (not governance) for whom ``allowed`` holds."""
        for label in signers:
            key = self.keys.get(label)
            if key is None or key.member is None or not allowed(key.member):
                return False
        return True

    def holder_faults(self, lot_ids: Sequence[str]) -> set[str]:
        faults = set()
        for lot_id in lot_ids:
            lot = self.lots.get(lot_id)
            if lot is None:
                faults.add("lot.unknown")
            elif lot.status != "active":
                faults.add("lot.not-active")
        if len({self.lots[i].owner for i in lot_ids if i in self.lots}) > 1:
            faults.add("lot.mixed")
        return faults

    def may_hold_all(self, lot_ids: Sequence[str]) -> Callable[[str], bool]:
        owners = {self.lots[i].owner for i in lot_ids if i in self.lots}
        return lambda member: all(self.may_hold_for(member, owner) for owner in owners)

    def active_lots(self) -> list[str]:
        return sorted(i for i, lot in self.lots.items() if lot.status == "active")

    def consume(self, lot_id: str) -> None:
        lot = self.lots[lot_id]
        lot.quantity, lot.status = Decimal(0), "consumed"
        self.consumed.add(lot_id)

    # --- drawing events ----------------------------------------------------------------------

    def pick(self, data: st.DataObject, preferred: Sequence[T], anything: Sequence[T]) -> T:
        """Mostly one of ``preferred`` (what a valid event would use), else any of ``anything``."""
        if preferred and data.draw(st.integers(0, 4), label="preferred?") < 4:
            return data.draw(st.sampled_from(preferred))
        return data.draw(st.sampled_from(anything))

    def fresh_id(self, prefix: str) -> str:
        return f"{prefix}{next(self.fresh)}"

    def new_lot_id(self, data: st.DataObject, taken: Sequence[str] = ()) -> str:
        """A fresh lot id, or now and then one that exists (``lot.exists``)."""
        if data.draw(st.integers(0, 9), label="reuse a lot id?") == 9:
            existing = sorted({*self.lots, *taken})
            return data.draw(st.sampled_from(existing), label="reused lot id")
        return self.fresh_id("L")

    def draw_quantity(self, data: st.DataObject, at_most: Decimal | None = None) -> Decimal:
        """A positive quantity with 0-6 decimals, at most ``at_most`` (>= 0.000001) when given."""
        places = data.draw(st.integers(0, 6), label="decimal places")
        unit = Decimal(1).scaleb(-places)
        if at_most is None:
            if data.draw(st.integers(0, 15), label="huge?") == 15:
                return Decimal(data.draw(st.integers(10**14, 9 * 10**14)))
            top = 10**7
        else:
            top = int(at_most / unit)
            if top < 1:
                unit, top = MICRO, int(at_most / MICRO)
        return data.draw(st.integers(1, top)) * unit

    def more_than(self, data: st.DataObject, quantity: Decimal) -> Decimal:
        """A quantity above ``quantity`` that can still be written (else the largest one)."""
        return min(quantity + self.draw_quantity(data), LARGEST)

    def draw_signers(self, data: st.DataObject, allowed: Callable[[str], bool]) -> list[str]:
        """Mostly one authorised, registered, unrevoked key; else any key (revoked, unknown,
        governance, wrong org or role); now and then a second signer."""
        usable = [
            label
            for label, key in sorted(self.keys.items())
            if not key.revoked and key.member is not None and allowed(key.member)
        ]
        anyone = [*sorted(self.keys), *UNKNOWN_LABELS]
        signers = [self.pick(data, usable, anyone)]
        if data.draw(st.integers(0, 9), label="cosigner?") == 9:
            second = self.pick(
                data,
                [label for label in usable if label != signers[0]],
                [label for label in anyone if label != signers[0]],
            )
            signers.append(second)
        return signers

    def submit(
        self, kind: str, payload: dict[str, Any], signers: Sequence[str], verdict: Verdict
    ) -> Envelope | None:
        """Sign and apply an event; check the ledger agrees with ``verdict``.

        Returns:
            the envelope if it was accepted (the caller then updates the model), else None.
        """
        return self.apply_envelope(self.world.envelope(kind, payload, signers), verdict, signers)

    def apply_envelope(
        self, envelope: Envelope, verdict: Verdict, signers: Sequence[str]
    ) -> Envelope | None:
        world = self.world
        kind = envelope.type
        before = world.digest()
        index, logged = world.index, len(world.applied)
        note(f"{kind} {envelope.payload} signed by {list(signers)}: expect {sorted(verdict.rules)}")
        refusal: RuleViolation | None = None
        try:
            world.apply(envelope)
        except RuleViolation as e:
            refusal = e
        if refusal is None:
            event(f"{kind} accepted")
            assert verdict.accepted, f"{kind} accepted, must be refused by {sorted(verdict.rules)}"
            return envelope
        event(f"{kind} refused: {refusal.rule}")
        assert not verdict.accepted, (
            f"{kind} refused ({refusal.rule}: {refusal.detail}) but DESIGN §3 accepts it"
        )
        assert refusal.rule in verdict.rules, (
            f"{kind} refused with {refusal.rule} ({refusal.detail}), "
            f"expected one of {sorted(verdict.rules)}"
        )
        assert refusal.event_id == envelope.event_id
        assert world.digest() == before, f"refused {kind} changed the state"
        assert (world.index, len(world.applied)) == (index, logged)
        return None

    # --- rules ---------------------------------------------------------------------------------

    @rule(data=st.data())
    def create_lot(self, data: st.DataObject) -> None:
        producers = sorted(m for m, role in self.members.items() if role == "producer")
        producer = self.pick(data, producers, [*sorted(self.members), UNKNOWN_MEMBER])
        commodity = data.draw(st.sampled_from(COMMODITIES), label="commodity")
        uom = data.draw(st.sampled_from(UNITS), label="uom")
        own_plots = [p for p, owned in FIXTURE_PLOTS.items() if owned == (producer, commodity)]
        plot_id = self.pick(data, [None, *own_plots], [*FIXTURE_PLOTS, "PLOT-NONE"])
        lot_id = self.new_lot_id(data)
        quantity = self.draw_quantity(data)
        harvested_on = self.pick(data, ["2026-11-25", "2026-11-29"], ["2026-11-30", "2027-01-01"])
        signers = self.draw_signers(data, lambda m: self.may_hold_for(m, producer))
        payload = {
            "lot_id": lot_id,
            "commodity": commodity,
            "quantity": text(quantity),
            "uom": uom,
            "producer": producer,
            "harvested_on": harvested_on,
        }
        if plot_id is not None:
            payload["plot_id"] = plot_id
        pre = set() if producer in self.members else {"member.unknown"}
        later = set()
        if self.members.get(producer, "producer") != "producer":
            later.add("member.role")
        if harvested_on > CREATED_AT[:10]:
            later.add("lot.harvest-date")  # docs/decisions.md D15
        if plot_id is not None:
            if plot_id not in FIXTURE_PLOTS:
                later.add("plot.unknown")
            else:
                owner, grows = FIXTURE_PLOTS[plot_id]
                later |= {"plot.owner"} if owner != producer else set()
                later |= {"plot.commodity"} if grows != commodity else set()
        if lot_id in self.lots:
            later.add("lot.exists")
        allowed = self.authorised(signers, lambda m: self.may_hold_for(m, producer))
        verdict = judge(self.key_faults(signers), pre, allowed, later)
        envelope = self.submit("lot.create", payload, signers, verdict)
        if envelope is None:
            return
        self.lots[lot_id] = ModelLot(
            commodity, uom, quantity, producer, composition={lot_id: Fraction(1)}
        )
        self.origins[lot_id] = envelope.event_id
        self.created[commodity, uom] += quantity

    @rule(data=st.data())
    def split(self, data: st.DataObject) -> None:
        parent_id = self.pick(data, self.active_lots(), [*sorted(self.lots), "L-NONE"])
        parent = self.lots.get(parent_id)
        held = parent.quantity if parent is not None and parent.quantity > 0 else None
        within = held is not None and data.draw(st.integers(0, 3), label="within?") < 3
        budget = held if held is not None else Decimal(0)
        outputs: list[dict[str, Any]] = []
        for _ in range(data.draw(st.integers(1, 3), label="outputs")):
            if within and budget < MICRO:
                break
            quantity = self.draw_quantity(data, budget if within else held)
            budget -= quantity
            child = self.new_lot_id(data, [parent_id])
            if any(o["lot_id"] == child for o in outputs):
                child = self.fresh_id("L")
            outputs.append({"lot_id": child, "quantity": quantity})
        if within and budget > 0 and data.draw(st.booleans(), label="split it all?"):
            outputs[-1]["quantity"] += budget
        signers = self.draw_signers(data, self.may_hold_all([parent_id]))
        total = sum((o["quantity"] for o in outputs), Decimal(0))
        later = set()
        if parent is not None and total > parent.quantity:
            later.add("lot.quantity")
        if any(o["lot_id"] in self.lots for o in outputs):
            later.add("lot.exists")
        verdict = judge(
            self.key_faults(signers),
            self.holder_faults([parent_id]),
            self.authorised(signers, self.may_hold_all([parent_id])),
            later,
        )
        payload = {
            "lot_id": parent_id,
            "outputs": [{"lot_id": o["lot_id"], "quantity": text(o["quantity"])} for o in outputs],
        }
        if self.submit("lot.split", payload, signers, verdict) is None:
            return
        assert parent is not None
        parent.quantity -= total
        if parent.quantity == 0:
            self.consume(parent_id)
        for o in outputs:
            self.lots[o["lot_id"]] = ModelLot(
                parent.commodity,
                parent.uom,
                o["quantity"],
                parent.owner,
                composition=dict(parent.composition),
            )

    def groups(self, key: Callable[[ModelLot], tuple[str, ...]]) -> list[list[str]]:
        """Active lots grouped by ``key`` (sorted, so draws are reproducible)."""
        grouped: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for lot_id in self.active_lots():
            grouped[key(self.lots[lot_id])].append(lot_id)
        return [grouped[k] for k in sorted(grouped)]

    @rule(data=st.data())
    def merge(self, data: st.DataObject) -> None:
        groups = [g for g in self.groups(lambda x: (x.owner, x.commodity, x.uom)) if len(g) > 1]
        pool = self.pick(data, groups, [sorted(self.lots)])
        inputs = data.draw(
            st.lists(st.sampled_from(pool), min_size=2, max_size=3, unique=True), label="inputs"
        )
        lot_id = self.new_lot_id(data, inputs)
        signers = self.draw_signers(data, self.may_hold_all(inputs))
        lots = [self.lots[i] for i in inputs]
        total = sum((lot.quantity for lot in lots), Decimal(0))
        later = set()
        if len({(lot.commodity, lot.uom) for lot in lots}) > 1:
            later.add("lot.mixed")
        if total > LARGEST:
            later.add("lot.quantity")
        if lot_id in self.lots:
            later.add("lot.exists")
        verdict = judge(
            self.key_faults(signers),
            self.holder_faults(inputs),
            self.authorised(signers, self.may_hold_all(inputs)),
            later,
        )
        payload = {"inputs": inputs, "lot_id": lot_id}
        if self.submit("lot.merge", payload, signers, verdict) is None:
            return
        composition = mix([(lot.quantity, lot.composition) for lot in lots])
        for input_id in inputs:
            self.consume(input_id)
        first = lots[0]
        self.lots[lot_id] = ModelLot(
            first.commodity, first.uom, total, first.owner, composition=composition
        )

    @rule(data=st.data())
    def transform(self, data: st.DataObject) -> None:
        groups = self.groups(lambda x: (x.owner, x.uom))
        pool = self.pick(data, groups, [sorted(self.lots)])
        inputs = data.draw(
            st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True), label="inputs"
        )
        takes: list[Decimal] = []
        for input_id in inputs:
            held = self.lots[input_id].quantity
            how = data.draw(st.sampled_from(["part", "all", "more"]), label="take")
            if held == 0 or how == "more":
                takes.append(self.more_than(data, held))
            elif how == "all":
                takes.append(held)
            else:
                takes.append(self.draw_quantity(data, held))
        outputs: list[dict[str, Any]] = []
        for _ in range(data.draw(st.integers(1, 2), label="outputs")):
            out_id = self.new_lot_id(data, inputs)
            if any(o["lot_id"] == out_id for o in outputs):
                out_id = self.fresh_id("L")
            outputs.append(
                {
                    "lot_id": out_id,
                    "commodity": data.draw(st.sampled_from(PRODUCTS), label="product"),
                    "quantity": self.draw_quantity(data),
                    "uom": data.draw(st.sampled_from(UNITS), label="uom"),
                }
            )
        signers = self.draw_signers(data, self.may_hold_all(inputs))
        lots = [self.lots[i] for i in inputs]
        later = set()
        if len({lot.uom for lot in lots}) > 1:
            later.add("lot.mixed")  # docs/decisions.md D15: inputs share a unit
        if any(take > lot.quantity for lot, take in zip(lots, takes, strict=True)):
            later.add("lot.quantity")
        if any(o["lot_id"] in self.lots for o in outputs):
            later.add("lot.exists")
        verdict = judge(
            self.key_faults(signers),
            self.holder_faults(inputs),
            self.authorised(signers, self.may_hold_all(inputs)),
            later,
        )
        payload = {
            "inputs": [
                {"lot_id": i, "quantity": text(q)} for i, q in zip(inputs, takes, strict=True)
            ],
            "outputs": [{**o, "quantity": text(o["quantity"])} for o in outputs],
            "process": "milling",
        }
        if self.submit("lot.transform", payload, signers, verdict) is None:
            return
        composition = mix([(q, lot.composition) for lot, q in zip(lots, takes, strict=True)])
        for input_id, lot, take in zip(inputs, lots, takes, strict=True):
            lot.quantity -= take
            self.taken[lot.commodity, lot.uom] += take
            if lot.quantity == 0:
                self.consume(input_id)
        for o in outputs:
            self.lots[o["lot_id"]] = ModelLot(
                o["commodity"], o["uom"], o["quantity"], lots[0].owner, composition=composition
            )
            self.made[o["commodity"], o["uom"]] += o["quantity"]

    @rule(data=st.data())
    def ship(self, data: st.DataObject) -> None:
        lot_id = self.pick(data, self.active_lots(), [*sorted(self.lots), "L-NONE"])
        lot = self.lots.get(lot_id)
        owner = lot.owner if lot is not None else ""
        to = self.pick(
            data,
            sorted(self.parties - {owner}),
            [*sorted(self.parties), *UNKNOWN_PARTIES, *([owner] * 3 if owner else [])],
        )
        shipment_id = self.pick(data, [self.fresh_id("S")], sorted(self.shipments) or ["S0"])
        signers = self.draw_signers(data, self.may_hold_all([lot_id]))
        later = set()
        if to not in self.parties:
            later.add("party.unknown")
        elif to == owner:
            later.add("shipment.to-holder")  # docs/decisions.md D15
        if shipment_id in self.shipments:
            later.add("shipment.exists")
        verdict = judge(
            self.key_faults(signers),
            self.holder_faults([lot_id]),
            self.authorised(signers, self.may_hold_all([lot_id])),
            later,
        )
        payload = {"lot_id": lot_id, "shipment_id": shipment_id, "to": to}
        if self.submit("lot.ship", payload, signers, verdict) is None:
            return
        assert lot is not None
        lot.status, lot.shipment = "in_transit", shipment_id
        self.shipments[shipment_id] = ModelShipment(lot_id, to, lot.quantity)

    @rule(data=st.data())
    def receive(self, data: st.DataObject) -> None:
        moving = sorted(i for i, lot in self.lots.items() if lot.status == "in_transit")
        lot_id = self.pick(data, moving, [*sorted(self.lots), "L-NONE"])
        lot = self.lots.get(lot_id)
        right = [lot.shipment] if lot is not None and lot.shipment is not None else []
        shipment_id = self.pick(data, right, [*sorted(self.shipments), "S-NONE"])
        shipment = self.shipments.get(shipment_id)
        shipped = shipment.quantity if shipment is not None else Decimal(1)
        how = data.draw(st.sampled_from(["all", "less", "none", "more"]), label="received")
        if how == "all":
            received = shipped
        elif how == "less" and shipped >= MICRO:
            received = self.draw_quantity(data, shipped)
        elif how == "more":
            received = self.more_than(data, shipped)
        else:
            received = Decimal(0)
        to = shipment.to if shipment is not None else ""

        def may_receive(member: str) -> bool:
            return shipment is None or self.may_receive(member, to)

        signers = self.draw_signers(data, may_receive)
        pre = set()
        if lot is None:
            pre.add("lot.unknown")
        elif lot.status != "in_transit" or lot.shipment != shipment_id:
            pre.add("shipment.unknown")
        later = {"lot.quantity"} if received > shipped else set()
        verdict = judge(self.key_faults(signers), pre, self.authorised(signers, may_receive), later)
        payload = {
            "lot_id": lot_id,
            "shipment_id": shipment_id,
            "quantity_received": text(received),
        }
        if self.submit("lot.receive", payload, signers, verdict) is None:
            return
        assert lot is not None
        assert shipment is not None
        self.lost[lot.commodity, lot.uom] += shipped - received
        lot.loss += shipped - received
        lot.owner, lot.shipment, lot.quantity, lot.status = to, None, received, "active"
        shipment.open = False
        if received == 0:
            self.consume(lot_id)

    @rule(data=st.data())
    def revoke_key(self, data: st.DataObject) -> None:
        with_keys = sorted({k.member for k in self.keys.values() if k.member and not k.revoked})
        member = self.pick(data, with_keys, [*sorted(self.members), UNKNOWN_MEMBER])
        own = sorted(
            label for label, k in self.keys.items() if k.member == member and not k.revoked
        )
        label = self.pick(data, own, [*sorted(self.keys), *UNKNOWN_LABELS])
        signers = self.draw_signers(data, lambda m: self.may_revoke(m, member))
        pre = set() if member in self.members else {"member.unknown"}
        key = self.keys.get(label)
        later = set()
        if key is None or key.member != member:
            later.add("key.unknown")
        if key is not None and key.revoked:
            later.add("key.revoked")
        allowed = self.authorised(signers, lambda m: self.may_revoke(m, member))
        verdict = judge(self.key_faults(signers), pre, allowed, later)
        payload = {"member_id": member, "key": signing_key_id(label)}
        if self.submit("key.revoke", payload, signers, verdict) is None:
            return
        assert key is not None
        key.revoked = True

    @rule(data=st.data())
    def add_key(self, data: st.DataObject) -> None:
        member = self.pick(data, sorted(self.members), [*sorted(self.members), UNKNOWN_MEMBER])
        label = self.pick(data, [f"{member}#{next(self.fresh)}"], sorted(self.keys))
        signers = self.draw_signers(data, lambda m: self.may_add_key(m, member))
        pre = set() if member in self.members else {"member.unknown"}
        later = {"key.registered"} if label in self.keys else set()
        allowed = self.authorised(signers, lambda m: self.may_add_key(m, member))
        verdict = judge(self.key_faults(signers), pre, allowed, later)
        payload = {"member_id": member, "public_key": public_key_hex(label)}
        if self.submit("key.add", payload, signers, verdict) is None:
            return
        self.keys[label] = ModelKey(member)

    @precondition(lambda self: any(k.revoked for k in self.keys.values()))
    @rule(data=st.data())
    def sign_with_revoked_key(self, data: st.DataObject) -> None:
        """A revoked key signs an event its member could otherwise sign: always auth.revoked-key."""
        revoked = sorted(label for label, k in self.keys.items() if k.revoked)
        label = data.draw(st.sampled_from(revoked), label="revoked key")
        member = self.keys[label].member
        assert member is not None
        producers = sorted(m for m, role in self.members.items() if role == "producer")
        own = [p for p in producers if self.may_hold_for(member, p)]
        producer = data.draw(st.sampled_from(own or producers), label="producer")
        payload = {
            "lot_id": self.fresh_id("L"),
            "commodity": "rubber",
            "quantity": "1",
            "uom": "kg",
            "producer": producer,
            "harvested_on": "2026-11-25",
        }
        verdict = judge(self.key_faults([label]), set(), True, set())
        assert verdict.rules == {"auth.revoked-key"}
        self.submit("lot.create", payload, [label], verdict)

    @precondition(lambda self: any(lot.status != "active" for lot in self.lots.values()))
    @rule(data=st.data())
    def double_spend(self, data: st.DataObject) -> None:
        """Use a consumed or in-transit lot again, signed for its owner: always lot.not-active."""
        spent_id = data.draw(
            st.sampled_from(sorted(i for i, x in self.lots.items() if x.status != "active")),
            label="spent lot",
        )
        spent = self.lots[spent_id]
        kind = data.draw(
            st.sampled_from(["lot.split", "lot.merge", "lot.transform", "lot.ship"]), label="kind"
        )
        inputs = [spent_id]
        payload: dict[str, Any]
        if kind == "lot.split":
            payload = {
                "lot_id": spent_id,
                "outputs": [{"lot_id": self.fresh_id("L"), "quantity": "1"}],
            }
        elif kind == "lot.merge":
            like = [
                i
                for i in sorted(self.lots)
                if i != spent_id
                and (self.lots[i].owner, self.lots[i].commodity, self.lots[i].uom)
                == (spent.owner, spent.commodity, spent.uom)
            ]
            inputs.append(self.pick(data, like, [i for i in sorted(self.lots) if i != spent_id]))
            inputs = data.draw(st.permutations(inputs), label="input order")
            payload = {"inputs": inputs, "lot_id": self.fresh_id("L")}
        elif kind == "lot.transform":
            payload = {
                "inputs": [{"lot_id": spent_id, "quantity": "1"}],
                "outputs": [
                    {
                        "lot_id": self.fresh_id("L"),
                        "commodity": "crumb_rubber",
                        "quantity": "1",
                        "uom": spent.uom,
                    }
                ],
                "process": "milling",
            }
        else:
            to = data.draw(st.sampled_from(sorted(self.parties - {spent.owner})), label="to")
            payload = {"lot_id": spent_id, "shipment_id": self.fresh_id("S"), "to": to}
        signers = self.draw_signers(data, self.may_hold_all(inputs))
        verdict = judge(
            self.key_faults(signers),
            self.holder_faults(inputs),
            self.authorised(signers, self.may_hold_all(inputs)),
            set(),
        )
        if verdict.rules == {"lot.not-active"}:
            event("double spend by an authorised signer")
        assert self.submit(kind, payload, signers, verdict) is None

    @rule(data=st.data())
    def resubmit(self, data: st.DataObject) -> None:
        """Any event already in the log again: event.duplicate, nothing changes."""
        envelope = data.draw(st.sampled_from(self.world.applied), label="logged event")
        assert (
            self.apply_envelope(envelope, Verdict(frozenset({"event.duplicate"})), ["(as logged)"])
            is None
        )

    # --- invariants ----------------------------------------------------------------------------

    def check_trace(self, lot_id: str) -> None:
        """DESIGN.md §6: origins are lot.create lots, their quantities are the lot's
        composition and sum to its quantity within rounding; forward from each reaches it."""
        memory = self.world.memory
        lot = self.lots[lot_id]
        origins = trace_back(memory, lot_id).origins
        found = {o.lot.lot_id: o for o in origins}
        assert len(found) == len(origins), f"{lot_id}: an origin is listed twice"
        assert set(found) == set(lot.composition), (
            f"{lot_id} traces back to {sorted(found)}, expected {sorted(lot.composition)}"
        )
        total = sum((o.quantity for o in origins), Decimal(0))
        assert abs(total - lot.quantity) <= len(origins) * HALF_MICRO, (
            f"{lot_id}: origins sum to {total}, the lot holds {lot.quantity}"
        )
        for origin_id, origin in found.items():
            assert origin_id in self.origins, f"{lot_id}: origin {origin_id} not made by lot.create"
            assert origin.event_id == self.origins[origin_id], (
                f"{lot_id}: origin {origin_id} names {origin.event_id}, not its lot.create"
            )
            expected = six_places(lot.composition[origin_id] * Fraction(lot.quantity))
            assert abs(origin.quantity - expected) <= MICRO, (
                f"{lot_id}: {origin.quantity} from {origin_id}, expected {expected}"
            )
            forward = trace_forward(memory, origin_id)
            assert lot_id in {x.lot_id for x in forward.lots}, (
                f"{origin_id} does not reach {lot_id}"
            )

    @invariant()
    def state_matches_model(self) -> None:
        data = self.world.memory.data
        assert set(data.lots) == set(self.lots)
        for lot_id, lot in self.lots.items():
            actual = data.lots[lot_id]
            seen = (actual.commodity, actual.uom, actual.quantity, actual.owner, actual.status)
            assert seen == (lot.commodity, lot.uom, lot.quantity, lot.owner, lot.status), lot_id
            assert (actual.shipment_id, actual.loss) == (lot.shipment, lot.loss), lot_id
        assert len(data.keys) == len(self.keys)
        for label, key in self.keys.items():
            record = data.keys[signing_key_id(label)]
            assert (record.member_id, record.revoked) == (key.member, key.revoked), label
        for shipment_id, shipment in self.shipments.items():
            actual_shipment = data.shipments[shipment_id]
            assert (actual_shipment.lot_id, actual_shipment.to) == (shipment.lot_id, shipment.to)
            assert actual_shipment.quantity == shipment.quantity
            assert (actual_shipment.received_index is None) == shipment.open, shipment_id

    @invariant()
    def quantities_balance(self) -> None:
        """live + taken by transforms + lost at receipt == created + made by transforms."""
        live: Books = defaultdict(Decimal)
        lost: Books = defaultdict(Decimal)
        for lot in self.world.memory.data.lots.values():
            assert lot.quantity >= 0, lot.lot_id
            assert lot.loss >= 0, lot.lot_id
            if lot.status in LIVE:
                live[lot.commodity, lot.uom] += lot.quantity
            lost[lot.commodity, lot.uom] += lot.loss
        kinds = {*live, *lost, *self.created, *self.made, *self.taken}
        for kind in kinds:
            books_in = self.created[kind] + self.made[kind]
            books_out = live[kind] + self.taken[kind] + lost[kind]
            assert lost[kind] == self.lost[kind], (
                f"{kind}: {lost[kind]} lost, expected {self.lost[kind]}"
            )
            assert books_out == books_in, f"{kind}: {books_out} out of {books_in} in"
        everything_in = sum(self.created.values(), Decimal(0)) + sum(self.made.values(), Decimal(0))
        everything_out = (
            sum(live.values(), Decimal(0))
            + sum(self.taken.values(), Decimal(0))
            + sum(lost.values(), Decimal(0))
        )
        assert everything_out == everything_in

    @invariant()
    def consumed_lots_stay_consumed(self) -> None:
        lots = self.world.memory.data.lots
        for lot_id in self.consumed:
            assert self.lots[lot_id].status == "consumed", lot_id
            assert (lots[lot_id].status, lots[lot_id].quantity) == ("consumed", Decimal(0)), lot_id

    @invariant()
    def replay_gives_same_digest(self) -> None:
        replay = World(self.world.genesis)
        for envelope in self.world.applied:
            replay.apply(envelope)
        assert replay.digest() == self.world.digest(), "replaying world.applied gives another state"
        assert replay.index == self.world.index

    @invariant()
    def lots_trace_back_to_their_origins(self) -> None:
        """Every live lot; consumed ones too (their origins all hold 0, docs/decisions.md D17)."""
        for lot_id in self.lots:
            self.check_trace(lot_id)


# max_examples comes from the hypothesis profile (tests/conftest.py): 200 in `ci` takes ~25 s.
RulesMachine.TestCase.settings = settings(
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestRulesMachine = RulesMachine.TestCase
