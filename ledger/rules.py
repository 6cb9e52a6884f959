"""The supply-chain rules of DESIGN.md §3: what each event may do, who may sign it, what it changes.

:func:`apply_event` checks one event against a :class:`~ledger.state.StateView` and returns the
:class:`~ledger.state.Effects` it has; it never mutates anything. Applying the same events in
the same order to the same state always gives the same effects.

It assumes the envelope's signatures were verified (by the chain verifier's process pool, or by
:func:`verify_event_signatures`): it checks that every signing key is registered and unrevoked at
this point of the log and that the signers are *authorised*, but does no cryptography itself.

Every refusal is a :class:`~ledger.errors.RuleViolation` whose ``rule`` is one of:

=====================  =====================================================================
rule                   meaning
=====================  =====================================================================
event.network          the event names another network
event.future           ``created_at`` is more than 5 minutes after the block time
event.type             unknown event type
event.duplicate        the same event (same id) is already in the log
event.epcis-captured   the EPCIS event named in ``epcis`` was already captured
event.payload          a payload field is missing, unknown or malformed (the detail names it),
                       a public key the Ed25519 policy refuses included (``docs/ed25519-policy.md``)
auth.unknown-key       a signing key was never registered
auth.revoked-key       a signing key was revoked earlier in the log
auth.unauthorised      a signer may not sign this event
auth.threshold         too few governance admins signed
org.exists             the organisation id is taken
org.unknown            the organisation does not exist
member.exists          the member id is taken
member.unknown         the member does not exist
member.role            the member has the wrong role for this (e.g. not a producer)
key.registered         the public key is already registered (to anyone)
key.unknown            the key is not this member's
key.revoked            the key is already revoked
plot.exists            the plot id is taken
plot.unknown           the plot does not exist
plot.owner             the plot is not the producer's
plot.commodity         the plot grows another commodity
plot.geometry          the geometry is not a valid Point or closed Polygon, or a plot above
                       4 ha has no Polygon
lot.exists             a lot id is taken (lot ids are unique network-wide)
lot.harvest-date       a harvest date after the day the event was created
lot.unknown            the lot does not exist
lot.not-active         the lot is consumed or in transit (no double spend)
lot.quantity           a quantity is too large for what the lot holds, or overflows
lot.mixed              merged or transformed inputs differ in commodity, unit or holder
party.unknown          a party (organisation or member) is not registered
shipment.to-holder     the lot would be shipped to the party that already holds it
shipment.exists        the shipment id is taken
shipment.unknown       the lot is not in transit under this shipment id
=====================  =====================================================================
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any, Protocol

from ledger.blocks import GenesisDocument
from ledger.encoding import format_quantity, parse_date, parse_hex, parse_quantity
from ledger.errors import EncodingError, RuleViolation, SignatureError
from ledger.events import MAX_EVENT_CLOCK_SKEW, Envelope
from ledger.keys import EVENT_PREFIX, key_id, verify_public_key, verify_signature
from ledger.state import (
    Certification,
    Edge,
    Effects,
    KeyRecord,
    Lot,
    LotStep,
    Member,
    MemoryState,
    Org,
    Plot,
    Shipment,
    StateView,
)

__all__ = [
    "EVENT_TYPES",
    "GENESIS_INDEX",
    "ORG_KINDS",
    "ROLES",
    "UNITS",
    "EventContext",
    "MutableState",
    "StateMachine",
    "apply_event",
    "check_event_time",
    "genesis_effects",
    "named_ids",
    "signer_keys",
    "verify_event_signatures",
]

ORG_KINDS = frozenset({"cooperative", "buyer", "processor", "transporter", "auditor"})
ROLES = frozenset({"admin", "clerk", "producer", "buyer", "auditor"})
UNITS: Mapping[str, str] = {"kg": "KGM", "g": "GRM", "t": "TNE", "l": "LTR", "ml": "MLT"}
"""Units of measure a lot may use, with their UN/ECE Recommendation 20 codes (for EPCIS)."""
POLYGON_REQUIRED_ABOVE_HA = Decimal(4)
MAX_QUANTITY = Decimal("999999999999999.999999")
_MAX_LIST = 1000
_MAX_TEXT = 200

ORG_ID = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")
MEMBER_LOCAL = re.compile(r"[A-Za-z0-9._-]{1,64}")
OBJECT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
COMMODITY = re.compile(r"[a-z][a-z0-9_-]{0,63}")
EPCIS_HASH = re.compile(r"ni:///sha-256;[0-9a-f]{64}\?ver=CBV2\.0")
GTIN = re.compile(r"[0-9]{8}|[0-9]{12,14}")


@dataclass(frozen=True, slots=True)
class EventContext:
    """Where an event is applied: its network, log index and block time."""

    network: str
    governance_threshold: int
    index: int
    block_time: _dt.datetime


def _violation(rule: str, detail: str) -> RuleViolation:
    return RuleViolation(rule, detail)


# --- payload fields ------------------------------------------------------------------------

Field = Callable[[Any, str], Any]
"""Checks a payload value (``path`` names it in errors) and returns it, normalised."""


def _bad(path: str, expected: str, value: Any, rule: str = "event.payload") -> RuleViolation:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return _violation(rule, f"{path} must be {expected}, got {shown}")


def _pattern(regex: re.Pattern[str], expected: str) -> Field:
    def check(value: Any, path: str) -> str:
        if type(value) is not str or regex.fullmatch(value) is None:
            raise _bad(path, expected, value)
        return value

    return check


def _member_id(value: Any, path: str) -> str:
    if type(value) is str and "/" in value:
        org_id, local = value.split("/", 1)
        if ORG_ID.fullmatch(org_id) and MEMBER_LOCAL.fullmatch(local):
            return value
    raise _bad(path, "a member id <org_id>/<local>", value)


def _party(value: Any, path: str) -> str:
    if type(value) is str and "/" in value:
        return _member_id(value, path)
    if type(value) is not str or ORG_ID.fullmatch(value) is None:
        raise _bad(path, "an organisation or member id", value)
    return value


def _text(value: Any, path: str) -> str:
    if (
        type(value) is not str
        or not value.strip()
        or len(value) > _MAX_TEXT
        or any(ord(c) < 0x20 or c == "\x7f" for c in value)
    ):
        raise _bad(path, f"a non-empty single-line text of at most {_MAX_TEXT} characters", value)
    return value


def _choice(options: frozenset[str] | Mapping[str, str]) -> Field:
    def check(value: Any, path: str) -> str:
        if type(value) is not str or value not in options:
            raise _bad(path, "one of " + ", ".join(sorted(options)), value)
        return value

    return check


def _quantity(value: Any, path: str) -> Decimal:
    try:
        quantity = parse_quantity(value, path)
    except EncodingError as e:
        raise _violation("event.payload", str(e)) from e
    if quantity <= 0:
        raise _bad(path, "greater than 0", value)
    return quantity


def _quantity_or_zero(value: Any, path: str) -> Decimal:
    try:
        return parse_quantity(value, path)
    except EncodingError as e:
        raise _violation("event.payload", str(e)) from e


def _date(value: Any, path: str) -> str:
    try:
        parse_date(value, path)
    except EncodingError as e:
        raise _violation("event.payload", str(e)) from e
    return str(value)


def _public_key(value: Any, path: str) -> bytes:
    try:
        return verify_public_key(parse_hex(value, 32, path), path)
    except EncodingError as e:
        raise _violation("event.payload", str(e)) from e


def _sha256_hex(value: Any, path: str) -> str:
    try:
        parse_hex(value, 32, path)
    except EncodingError as e:
        raise _violation("event.payload", str(e)) from e
    return str(value)


def _gtin(value: Any, path: str) -> str:
    if type(value) is not str or GTIN.fullmatch(value) is None:
        raise _bad(path, "a GTIN of 8, 12, 13 or 14 digits", value)
    digits = [int(d) for d in value]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(digits[:-1])))
    if (10 - total % 10) % 10 != digits[-1]:
        raise _bad(path, "a GTIN with a valid check digit", value)
    return value


def _list(item: Field, *, minimum: int = 1, unique: bool = False) -> Field:
    def check(value: Any, path: str) -> list[Any]:
        if type(value) is not list or not minimum <= len(value) <= _MAX_LIST:
            raise _bad(path, f"a list of {minimum} to {_MAX_LIST} items", value)
        items = [item(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if unique:
            seen: set[Any] = set()
            for position, checked in enumerate(items):
                marker = checked if not isinstance(checked, dict) else checked.get("lot_id")
                if marker in seen:
                    raise _violation("event.payload", f"{path}[{position}] repeats {marker!r}")
                seen.add(marker)
        return items

    return check


def _object(required: Mapping[str, Field], optional: Mapping[str, Field] | None = None) -> Field:
    def check(value: Any, path: str) -> dict[str, Any]:
        return _fields(value, path, required, optional or {})

    return check


def _fields(
    value: Any, path: str, required: Mapping[str, Field], optional: Mapping[str, Field]
) -> dict[str, Any]:
    if type(value) is not dict:
        raise _bad(path, "an object", value)
    unknown = sorted(value.keys() - required.keys() - optional.keys())
    if unknown:
        raise _violation("event.payload", f"{path}.{unknown[0]} is not a field of this event")
    missing = sorted(required.keys() - value.keys())
    if missing:
        raise _violation("event.payload", f"{path}.{missing[0]} is missing")
    checked = {name: check(value[name], f"{path}.{name}") for name, check in required.items()}
    checked.update(
        (name, check(value[name], f"{path}.{name}"))
        for name, check in optional.items()
        if name in value
    )
    return checked


def _coordinate(value: Any, path: str, low: int, high: int) -> float:
    if type(value) not in (int, float) or not low <= value <= high:
        raise _bad(path, f"a number between {low} and {high}", value, "plot.geometry")
    exponent = Decimal(repr(value)).as_tuple().exponent
    if isinstance(exponent, int) and exponent < -7:
        raise _bad(path, "a coordinate with at most 7 decimals", value, "plot.geometry")
    return float(value)


def _position(value: Any, path: str) -> list[float]:
    if type(value) is not list or len(value) != 2:
        raise _bad(path, "a [longitude, latitude] pair", value, "plot.geometry")
    return [
        _coordinate(value[0], f"{path}[0]", -180, 180),
        _coordinate(value[1], f"{path}[1]", -90, 90),
    ]


def _geometry(value: Any, path: str) -> dict[str, Any]:
    if type(value) is not dict or value.get("type") not in ("Point", "Polygon"):
        raise _violation("plot.geometry", f"{path} must be a GeoJSON Point or Polygon")
    if value.keys() != {"type", "coordinates"}:
        raise _violation("plot.geometry", f"{path} must have exactly type and coordinates")
    coordinates = value["coordinates"]
    if value["type"] == "Point":
        _position(coordinates, f"{path}.coordinates")
        return value
    if type(coordinates) is not list or not 1 <= len(coordinates) <= _MAX_LIST:
        raise _violation("plot.geometry", f"{path}.coordinates must be a list of linear rings")
    for r, ring in enumerate(coordinates):
        where = f"{path}.coordinates[{r}]"
        if type(ring) is not list or not 4 <= len(ring) <= _MAX_LIST:
            raise _violation("plot.geometry", f"{where} must be a ring of at least 4 positions")
        positions = [_position(p, f"{where}[{i}]") for i, p in enumerate(ring)]
        if positions[0] != positions[-1]:
            raise _violation("plot.geometry", f"{where} is not closed (first != last position)")
    return value


_epcis_hash = _pattern(EPCIS_HASH, "a CBV 2.0 event hash id ni:///sha-256;<hex>?ver=CBV2.0")
_org_id = _pattern(ORG_ID, "an organisation id (lowercase letters, digits, '-')")
_object_id = _pattern(OBJECT_ID, "an id of 1-128 characters A-Z a-z 0-9 . _ : -")
_commodity = _pattern(COMMODITY, "a commodity name like 'coffee' or 'fresh_fruit_bunch'")
_LOT_EXTRA = {"epcis": _epcis_hash}

SCHEMAS: Mapping[str, tuple[Mapping[str, Field], Mapping[str, Field]]] = {
    "org.register": (
        {
            "org_id": _org_id,
            "name": _text,
            "kind": _choice(ORG_KINDS),
            "admins": _list(_public_key, unique=True),
        },
        {},
    ),
    "member.register": (
        {
            "member_id": _member_id,
            "role": _choice(ROLES),
            "public_keys": _list(_public_key, unique=True),
            "profile_hash": _sha256_hex,
        },
        {},
    ),
    "key.revoke": ({"member_id": _member_id, "key": _sha256_hex}, {}),
    "key.add": ({"member_id": _member_id, "public_key": _public_key}, {}),
    "plot.register": (
        {
            "plot_id": _object_id,
            "member_id": _member_id,
            "commodity": _commodity,
            "area_ha": _quantity,
            "geometry": _geometry,
        },
        {},
    ),
    "lot.create": (
        {
            "lot_id": _object_id,
            "commodity": _commodity,
            "quantity": _quantity,
            "uom": _choice(UNITS),
            "producer": _member_id,
            "harvested_on": _date,
        },
        {"plot_id": _object_id, "gtin": _gtin, **_LOT_EXTRA},
    ),
    "lot.split": (
        {
            "lot_id": _object_id,
            "outputs": _list(_object({"lot_id": _object_id, "quantity": _quantity}), unique=True),
        },
        _LOT_EXTRA,
    ),
    "lot.merge": (
        {"inputs": _list(_object_id, minimum=2, unique=True), "lot_id": _object_id},
        _LOT_EXTRA,
    ),
    "lot.transform": (
        {
            "inputs": _list(_object({"lot_id": _object_id, "quantity": _quantity}), unique=True),
            "outputs": _list(
                _object(
                    {
                        "lot_id": _object_id,
                        "commodity": _commodity,
                        "quantity": _quantity,
                        "uom": _choice(UNITS),
                    }
                ),
                unique=True,
            ),
            "process": _text,
        },
        _LOT_EXTRA,
    ),
    "lot.ship": (
        {"lot_id": _object_id, "shipment_id": _object_id, "to": _party},
        _LOT_EXTRA,
    ),
    "lot.receive": (
        {"lot_id": _object_id, "shipment_id": _object_id, "quantity_received": _quantity_or_zero},
        _LOT_EXTRA,
    ),
    "lot.certify": (
        {"lot_id": _object_id, "scheme": _text, "certificate": _text, "valid_until": _date},
        _LOT_EXTRA,
    ),
}
EVENT_TYPES = frozenset(SCHEMAS)


# --- signers -------------------------------------------------------------------------------


def signer_keys(view: StateView, envelope: Envelope) -> list[KeyRecord]:
    """The registered, unrevoked key behind each signature of ``envelope``, in order.

    Raises:
        RuleViolation: ``auth.unknown-key`` or ``auth.revoked-key``.
    """
    records = []
    for signature in envelope.sigs:
        record = view.key(signature.key)
        if record is None:
            raise _violation("auth.unknown-key", f"key {signature.key} is not registered")
        if record.revoked:
            raise _violation(
                "auth.revoked-key",
                f"key {signature.key} was revoked at log index {record.revoked_index}",
            )
        records.append(record)
    return records


def verify_event_signatures(view: StateView, envelope: Envelope) -> None:
    """Check every signature of ``envelope`` with the keys registered in ``view``, in-line.

    Raises:
        RuleViolation: a signer is unknown or revoked.
        SignatureError: a signature does not verify.
    """
    for record, signature in zip(signer_keys(view, envelope), envelope.sigs, strict=True):
        try:
            verify_signature(record.public_key, EVENT_PREFIX, envelope.body_bytes, signature.sig)
        except SignatureError as e:
            raise SignatureError(f"signature by key {signature.key} does not verify") from e


@dataclass(frozen=True, slots=True)
class _Signers:
    """The members (or governance admins) behind an event's signatures."""

    members: tuple[Member, ...]
    governance: int

    def all(self, allowed: Callable[[Member], bool], what: str) -> None:
        """Every signer must be a member for whom ``allowed`` holds."""
        if self.governance:
            raise _violation("auth.unauthorised", f"a governance key may not sign {what}")
        for member in self.members:
            if not allowed(member):
                raise _violation(
                    "auth.unauthorised", f"{member.member_id} ({member.role}) may not sign {what}"
                )


def _signers(view: StateView, envelope: Envelope) -> _Signers:
    members = []
    governance = 0
    for record in signer_keys(view, envelope):
        if record.member_id is None:
            governance += 1
            continue
        member = view.member(record.member_id)
        if member is None:  # keys are only ever registered with their member
            raise _violation("member.unknown", f"key {record.key_id} has no member")
        members.append(member)
    return _Signers(tuple(members), governance)


def _org_of(party: str) -> str:
    return party.split("/", 1)[0]


def _may_hold_for(member: Member, owner: str) -> bool:
    """May ``member`` sign for a lot held by ``owner``? (DESIGN.md §3, *Holder*)."""
    if member.member_id == owner:
        return True
    return member.role in ("admin", "clerk") and _org_of(owner) == member.org_id


def _party_exists(view: StateView, party: str) -> bool:
    if "/" in party:
        return view.member(party) is not None
    return view.org(party) is not None


# --- the event handlers --------------------------------------------------------------------

Handler = Callable[[StateView, dict[str, Any], _Signers, Envelope, EventContext], Effects]


def _new_keys(
    view: StateView, public_keys: Sequence[bytes], member_id: str, index: int, effects: Effects
) -> None:
    for public_key in public_keys:
        identifier = key_id(public_key)
        if view.key(identifier) is not None or identifier in effects.keys:
            raise _violation("key.registered", f"key {identifier} is already registered")
        effects.keys[identifier] = KeyRecord(identifier, public_key, member_id, index)


def _org_register(
    view: StateView, p: dict[str, Any], signers: _Signers, _e: Envelope, ctx: EventContext
) -> Effects:
    if signers.members:
        raise _violation("auth.unauthorised", "only governance admins may register organisations")
    if signers.governance < ctx.governance_threshold:
        raise _violation(
            "auth.threshold",
            f"{signers.governance} of {ctx.governance_threshold} governance signatures",
        )
    if view.org(p["org_id"]) is not None:
        raise _violation("org.exists", f"organisation {p['org_id']} already exists")
    effects = Effects()
    effects.orgs[p["org_id"]] = Org(p["org_id"], p["name"], p["kind"], ctx.index)
    for number, public_key in enumerate(p["admins"], start=1):
        member_id = f"{p['org_id']}/admin-{number}"
        effects.members[member_id] = Member(member_id, p["org_id"], "admin", "", ctx.index)
        _new_keys(view, [public_key], member_id, ctx.index, effects)
    return effects


def _require_org_admin(signers: _Signers, org_id: str, what: str) -> None:
    signers.all(lambda m: m.role == "admin" and m.org_id == org_id, what)


def _member_register(
    view: StateView, p: dict[str, Any], signers: _Signers, _e: Envelope, ctx: EventContext
) -> Effects:
    member_id = p["member_id"]
    org_id = _org_of(member_id)
    if view.org(org_id) is None:
        raise _violation("org.unknown", f"organisation {org_id} does not exist")
    _require_org_admin(signers, org_id, f"member.register for {org_id}")
    if view.member(member_id) is not None:
        raise _violation("member.exists", f"member {member_id} already exists")
    effects = Effects()
    effects.members[member_id] = Member(member_id, org_id, p["role"], p["profile_hash"], ctx.index)
    _new_keys(view, p["public_keys"], member_id, ctx.index, effects)
    return effects


def _existing_member(view: StateView, member_id: str) -> Member:
    member = view.member(member_id)
    if member is None:
        raise _violation("member.unknown", f"member {member_id} does not exist")
    return member


def _key_revoke(
    view: StateView, p: dict[str, Any], signers: _Signers, _e: Envelope, ctx: EventContext
) -> Effects:
    member = _existing_member(view, p["member_id"])
    signers.all(
        lambda m: (
            m.member_id == member.member_id or (m.role == "admin" and m.org_id == member.org_id)
        ),
        f"key.revoke for {member.member_id}",
    )
    record = view.key(p["key"])
    if record is None or record.member_id != member.member_id:
        raise _violation("key.unknown", f"key {p['key']} is not a key of {member.member_id}")
    if record.revoked:
        raise _violation("key.revoked", f"key {p['key']} is already revoked")
    effects = Effects()
    effects.keys[record.key_id] = KeyRecord(
        record.key_id, record.public_key, record.member_id, record.index, ctx.index
    )
    return effects


def _key_add(
    view: StateView, p: dict[str, Any], signers: _Signers, _e: Envelope, ctx: EventContext
) -> Effects:
    member = _existing_member(view, p["member_id"])
    _require_org_admin(signers, member.org_id, f"key.add for {member.member_id}")
    effects = Effects()
    _new_keys(view, [p["public_key"]], member.member_id, ctx.index, effects)
    return effects


def _plot_register(
    view: StateView, p: dict[str, Any], signers: _Signers, _e: Envelope, ctx: EventContext
) -> Effects:
    member = _existing_member(view, p["member_id"])
    signers.all(
        lambda m: m.role in ("admin", "clerk") and m.org_id == member.org_id,
        f"plot.register for {member.member_id}",
    )
    if member.role != "producer":
        raise _violation("member.role", f"{member.member_id} is a {member.role}, not a producer")
    if view.plot(p["plot_id"]) is not None:
        raise _violation("plot.exists", f"plot {p['plot_id']} already exists")
    if p["area_ha"] > POLYGON_REQUIRED_ABOVE_HA and p["geometry"]["type"] != "Polygon":
        raise _violation("plot.geometry", "a plot above 4 ha needs a Polygon geometry")
    effects = Effects()
    effects.plots[p["plot_id"]] = Plot(
        p["plot_id"],
        member.member_id,
        p["commodity"],
        format_quantity(p["area_ha"]),
        p["geometry"],
        ctx.index,
    )
    return effects


def _new_lot_id(view: StateView, lot_id: str) -> None:
    if view.lot(lot_id) is not None:
        raise _violation("lot.exists", f"lot {lot_id} already exists")


def _step(
    envelope: Envelope, ctx: EventContext, inputs: Sequence[str], outputs: Sequence[str]
) -> LotStep:
    return LotStep(ctx.index, envelope.event_id, envelope.type, tuple(inputs), tuple(outputs))


def _lot_create(
    view: StateView, p: dict[str, Any], signers: _Signers, envelope: Envelope, ctx: EventContext
) -> Effects:
    producer = _existing_member(view, p["producer"])
    signers.all(
        lambda m: _may_hold_for(m, producer.member_id), f"lot.create for {producer.member_id}"
    )
    if producer.role != "producer":
        raise _violation(
            "member.role", f"{producer.member_id} is a {producer.role}, not a producer"
        )
    if p["harvested_on"] > envelope.created_at.date().isoformat():
        raise _violation(
            "lot.harvest-date",
            f"harvested_on {p['harvested_on']} is after the event was created "
            f"({envelope.created_at.date().isoformat()})",
        )
    plot_id = p.get("plot_id")
    if plot_id is not None:
        plot = view.plot(plot_id)
        if plot is None:
            raise _violation("plot.unknown", f"plot {plot_id} does not exist")
        if plot.member_id != producer.member_id:
            raise _violation("plot.owner", f"plot {plot_id} belongs to {plot.member_id}")
        if plot.commodity != p["commodity"]:
            raise _violation("plot.commodity", f"plot {plot_id} grows {plot.commodity}")
    _new_lot_id(view, p["lot_id"])
    effects = Effects()
    effects.lots[p["lot_id"]] = Lot(
        lot_id=p["lot_id"],
        commodity=p["commodity"],
        quantity=p["quantity"],
        uom=p["uom"],
        owner=producer.member_id,
        status="active",
        index=ctx.index,
        producer=producer.member_id,
        plot_id=plot_id,
        harvested_on=p["harvested_on"],
        gtin=p.get("gtin"),
    )
    effects.steps.append(_step(envelope, ctx, [], [p["lot_id"]]))
    return effects


def _existing_lot(view: StateView, lot_id: str) -> Lot:
    lot = view.lot(lot_id)
    if lot is None:
        raise _violation("lot.unknown", f"lot {lot_id} does not exist")
    return lot


def _active_lot(view: StateView, lot_id: str) -> Lot:
    lot = _existing_lot(view, lot_id)
    if lot.status != "active":
        raise _violation("lot.not-active", f"lot {lot_id} is {lot.status.replace('_', ' ')}")
    return lot


def _after_taking(lot: Lot, taken: Decimal) -> Lot:
    if taken > lot.quantity:
        raise _violation(
            "lot.quantity",
            f"lot {lot.lot_id} holds {format_quantity(lot.quantity)} {lot.uom}, "
            f"cannot take {format_quantity(taken)}",
        )
    remaining = lot.quantity - taken
    return lot.with_(quantity=remaining, status="active" if remaining else "consumed")


def _one_holder(signers: _Signers, lots: Sequence[Lot], what: str) -> str:
    owners = {lot.owner for lot in lots}
    if len(owners) != 1:
        raise _violation("lot.mixed", f"{what}: inputs are held by {', '.join(sorted(owners))}")
    owner = owners.pop()
    signers.all(lambda m: _may_hold_for(m, owner), f"{what} of lots held by {owner}")
    return owner


def _total(quantities: Sequence[Decimal]) -> Decimal:
    with localcontext() as context:
        context.prec = 60
        total = sum(quantities, Decimal(0))
    if total > MAX_QUANTITY:
        raise _violation("lot.quantity", f"total {total} exceeds the largest quantity")
    return total


def _lot_split(
    view: StateView, p: dict[str, Any], signers: _Signers, envelope: Envelope, ctx: EventContext
) -> Effects:
    parent = _active_lot(view, p["lot_id"])
    _one_holder(signers, [parent], "lot.split")
    effects = Effects()
    outputs = p["outputs"]
    effects.lots[parent.lot_id] = _after_taking(parent, _total([o["quantity"] for o in outputs]))
    for output in outputs:
        if output["lot_id"] == parent.lot_id:
            raise _violation("lot.exists", f"lot {parent.lot_id} cannot be its own output")
        _new_lot_id(view, output["lot_id"])
        effects.lots[output["lot_id"]] = Lot(
            lot_id=output["lot_id"],
            commodity=parent.commodity,
            quantity=output["quantity"],
            uom=parent.uom,
            owner=parent.owner,
            status="active",
            index=ctx.index,
        )
        effects.edges.append(Edge(parent.lot_id, output["lot_id"], output["quantity"], ctx.index))
    effects.steps.append(_step(envelope, ctx, [parent.lot_id], [o["lot_id"] for o in outputs]))
    return effects


def _lot_merge(
    view: StateView, p: dict[str, Any], signers: _Signers, envelope: Envelope, ctx: EventContext
) -> Effects:
    inputs = [_active_lot(view, lot_id) for lot_id in p["inputs"]]
    owner = _one_holder(signers, inputs, "lot.merge")
    kinds = {(lot.commodity, lot.uom) for lot in inputs}
    if len(kinds) != 1:
        raise _violation("lot.mixed", "merged lots must share one commodity and unit")
    if p["lot_id"] in p["inputs"]:
        raise _violation("lot.exists", f"lot {p['lot_id']} is one of the inputs")
    _new_lot_id(view, p["lot_id"])
    effects = Effects()
    for lot in inputs:
        effects.lots[lot.lot_id] = lot.with_(quantity=Decimal(0), status="consumed")
        effects.edges.append(Edge(lot.lot_id, p["lot_id"], lot.quantity, ctx.index))
    effects.lots[p["lot_id"]] = Lot(
        lot_id=p["lot_id"],
        commodity=inputs[0].commodity,
        quantity=_total([lot.quantity for lot in inputs]),
        uom=inputs[0].uom,
        owner=owner,
        status="active",
        index=ctx.index,
    )
    effects.steps.append(_step(envelope, ctx, p["inputs"], [p["lot_id"]]))
    return effects


def _lot_transform(
    view: StateView, p: dict[str, Any], signers: _Signers, envelope: Envelope, ctx: EventContext
) -> Effects:
    taken = [(_active_lot(view, item["lot_id"]), item["quantity"]) for item in p["inputs"]]
    owner = _one_holder(signers, [lot for lot, _ in taken], "lot.transform")
    if len({lot.uom for lot, _ in taken}) != 1:
        raise _violation("lot.mixed", "transformed inputs must share one unit (for mass balance)")
    input_ids = {lot.lot_id for lot, _ in taken}
    effects = Effects()
    for lot, quantity in taken:
        effects.lots[lot.lot_id] = _after_taking(lot, quantity)
    for output in p["outputs"]:
        if output["lot_id"] in input_ids:
            raise _violation("lot.exists", f"lot {output['lot_id']} is one of the inputs")
        _new_lot_id(view, output["lot_id"])
        effects.lots[output["lot_id"]] = Lot(
            lot_id=output["lot_id"],
            commodity=output["commodity"],
            quantity=output["quantity"],
            uom=output["uom"],
            owner=owner,
            status="active",
            index=ctx.index,
        )
        effects.edges.extend(
            Edge(lot.lot_id, output["lot_id"], quantity, ctx.index) for lot, quantity in taken
        )
    effects.steps.append(
        _step(envelope, ctx, [lot.lot_id for lot, _ in taken], [o["lot_id"] for o in p["outputs"]])
    )
    return effects


def _lot_ship(
    view: StateView, p: dict[str, Any], signers: _Signers, envelope: Envelope, ctx: EventContext
) -> Effects:
    lot = _active_lot(view, p["lot_id"])
    _one_holder(signers, [lot], "lot.ship")
    if not _party_exists(view, p["to"]):
        raise _violation("party.unknown", f"party {p['to']} is not registered")
    if p["to"] == lot.owner:
        raise _violation("shipment.to-holder", f"lot {lot.lot_id} is already held by {p['to']}")
    if view.shipment(p["shipment_id"]) is not None:
        raise _violation("shipment.exists", f"shipment {p['shipment_id']} already exists")
    effects = Effects()
    effects.lots[lot.lot_id] = lot.with_(status="in_transit", shipment_id=p["shipment_id"])
    effects.shipments[p["shipment_id"]] = Shipment(
        p["shipment_id"], lot.lot_id, lot.owner, p["to"], lot.quantity, ctx.index
    )
    effects.steps.append(_step(envelope, ctx, [lot.lot_id], [lot.lot_id]))
    return effects


def _lot_receive(
    view: StateView, p: dict[str, Any], signers: _Signers, envelope: Envelope, ctx: EventContext
) -> Effects:
    lot = _existing_lot(view, p["lot_id"])
    shipment = view.shipment(p["shipment_id"])
    if (
        lot.status != "in_transit"
        or shipment is None
        or lot.shipment_id != shipment.shipment_id
        or shipment.lot_id != lot.lot_id
    ):
        raise _violation(
            "shipment.unknown", f"lot {lot.lot_id} is not in transit as {p['shipment_id']}"
        )
    to = shipment.to
    if "/" in to:
        # As for holding (DESIGN.md §3): a member receives for itself, and an admin or clerk
        # of its organisation may record the receipt for a member without a phone.
        signers.all(lambda m: _may_hold_for(m, to), f"lot.receive for {to}")
    else:
        signers.all(
            lambda m: m.org_id == to and m.role in ("admin", "clerk", "buyer"),
            f"lot.receive for {to}",
        )
    received = p["quantity_received"]
    if received > shipment.quantity:
        raise _violation(
            "lot.quantity",
            f"received {format_quantity(received)} but {format_quantity(shipment.quantity)} "
            "were shipped",
        )
    effects = Effects()
    effects.lots[lot.lot_id] = lot.with_(
        owner=to,
        quantity=received,
        status="active" if received else "consumed",
        shipment_id=None,
        loss=lot.loss + (shipment.quantity - received),
    )
    effects.shipments[shipment.shipment_id] = Shipment(
        shipment.shipment_id,
        shipment.lot_id,
        shipment.sender,
        shipment.to,
        shipment.quantity,
        shipment.index,
        ctx.index,
        received,
    )
    effects.steps.append(_step(envelope, ctx, [lot.lot_id], [lot.lot_id]))
    return effects


def _lot_certify(
    view: StateView, p: dict[str, Any], signers: _Signers, _e: Envelope, ctx: EventContext
) -> Effects:
    lot = _existing_lot(view, p["lot_id"])
    signers.all(lambda m: m.role == "auditor", "lot.certify")
    auditor = signers.members[0].member_id
    claim = Certification(p["scheme"], p["certificate"], p["valid_until"], auditor, ctx.index)
    effects = Effects()
    effects.lots[lot.lot_id] = lot.with_(certifications=(*lot.certifications, claim))
    return effects


HANDLERS: Mapping[str, Handler] = {
    "org.register": _org_register,
    "member.register": _member_register,
    "key.revoke": _key_revoke,
    "key.add": _key_add,
    "plot.register": _plot_register,
    "lot.create": _lot_create,
    "lot.split": _lot_split,
    "lot.merge": _lot_merge,
    "lot.transform": _lot_transform,
    "lot.ship": _lot_ship,
    "lot.receive": _lot_receive,
    "lot.certify": _lot_certify,
}


def named_ids(envelope: Envelope) -> dict[str, set[str]]:
    """The lots, shipments and EPCIS events an event's payload names, by kind.

    A hint for reading state in bulk before the rules run (the rules look every one up
    themselves): malformed payloads give whatever ids they hold, or none.
    """
    payload = envelope.payload
    lots: set[str] = set()
    for name in ("lot_id", "inputs", "outputs"):
        value = payload.get(name)
        for item in value if type(value) is list else [value]:
            lot_id = item.get("lot_id") if type(item) is dict else item
            if type(lot_id) is str:
                lots.add(lot_id)
    named = {"lot": lots, "shipment": set[str](), "epcis": set[str]()}
    for kind, name in (("shipment", "shipment_id"), ("epcis", "epcis")):
        if type(payload.get(name)) is str:
            named[kind].add(payload[name])
    return named


def check_event_time(envelope: Envelope, block_time: _dt.datetime) -> None:
    """The one rule that depends on the block's time: ``event.future``.

    Raises:
        RuleViolation: ``created_at`` is more than 5 minutes after ``block_time``.
    """
    if envelope.created_at - block_time > MAX_EVENT_CLOCK_SKEW:  # a sum could overflow
        raise RuleViolation(
            "event.future",
            "created_at is more than 5 minutes after the block time",
            envelope.event_id,
        )


def apply_event(
    view: StateView,
    envelope: Envelope,
    ctx: EventContext,
    checked_payloads: MutableMapping[str, dict[str, Any]] | None = None,
) -> Effects:
    """Check ``envelope`` against the state and return what it changes.

    What an event changes depends on the state before it and its log index, never on the
    block time, which only :func:`check_event_time` reads.

    Args:
        view: the state before the event (including earlier events of the same block).
        envelope: an envelope whose signatures were verified.
        ctx: the event's network, log index and block time.
        checked_payloads: payloads that passed their type's schema, by event id, to look in
            and add to. The schema check reads the payload alone, and the event id is the
            hash of the body, so an answer found there is this event's.

    Raises:
        RuleViolation: naming the rule and this event.
    """
    try:
        body = envelope.body
        if body["network"] != ctx.network:
            raise _violation("event.network", f"event is for network {body['network']!r}")
        check_event_time(envelope, ctx.block_time)
        kind = envelope.type
        schema = SCHEMAS.get(kind)
        if schema is None:
            raise _violation("event.type", f"unknown event type {kind!r}")
        payload = None if checked_payloads is None else checked_payloads.get(envelope.event_id)
        if payload is None:
            payload = _fields(envelope.payload, "payload", *schema)
            if checked_payloads is not None:
                checked_payloads[envelope.event_id] = payload
        earlier = view.event_index(envelope.event_id)
        if earlier is not None:
            raise _violation("event.duplicate", f"the event is already in the log at {earlier}")
        epcis = payload.get("epcis")
        if epcis is not None and (captured := view.epcis_index(epcis)) is not None:
            raise _violation(
                "event.epcis-captured", f"EPCIS event {epcis} was captured at log index {captured}"
            )
        effects = HANDLERS[kind](view, payload, _signers(view, envelope), envelope, ctx)
        effects.events[envelope.event_id] = ctx.index
        if epcis is not None:
            effects.epcis[epcis] = ctx.index
        return effects
    except RuleViolation as e:
        raise RuleViolation(e.rule, e.detail, envelope.event_id) from None


GENESIS_INDEX = -1
"""The log index recorded for keys that come from the genesis document."""


def genesis_effects(genesis: GenesisDocument) -> Effects:
    """The state before the first event: the genesis governance admins' keys."""
    effects = Effects()
    for public_key in genesis.governance_admins:
        identifier = key_id(public_key)
        effects.keys[identifier] = KeyRecord(identifier, public_key, None, GENESIS_INDEX)
    return effects


class MutableState(StateView, Protocol):
    """A state view that can take effects (:class:`MemoryState`, :class:`Overlay`)."""

    def apply(self, effects: Effects) -> None: ...


class StateMachine:
    """Applies events in log order to a state; an ``EventAuthority`` for the chain verifier.

    Args:
        genesis: the network's genesis document (network id, governance threshold).
        state: where the state lives; a new :class:`MemoryState` holding the genesis keys when
            omitted. A given state must already hold them (see :func:`genesis_effects`).
        checked_payloads: see :func:`apply_event` (a validator checks an event up to three
            times: when it admits it, in a block, and when its mempool is rebuilt).
    """

    def __init__(
        self,
        genesis: GenesisDocument,
        state: MutableState | None = None,
        checked_payloads: MutableMapping[str, dict[str, Any]] | None = None,
    ) -> None:
        self._checked_payloads = checked_payloads
        self._network = genesis.network
        self._threshold = genesis.governance_threshold
        if state is None:
            memory = MemoryState()
            memory.apply(genesis_effects(genesis))
            state = memory
        self.state: MutableState = state

    def context(self, index: int, block_time: _dt.datetime) -> EventContext:
        """The context of the event at log index ``index`` in a block of ``block_time``."""
        return EventContext(self._network, self._threshold, index, block_time)

    def signer_keys(self, envelope: Envelope) -> list[bytes]:
        """The public key of each signer (for batched signature checks).

        Raises:
            RuleViolation: a signer is unknown or revoked.
        """
        try:
            return [record.public_key for record in signer_keys(self.state, envelope)]
        except RuleViolation as e:
            raise RuleViolation(e.rule, e.detail, envelope.event_id) from None

    def apply(self, envelope: Envelope, index: int, block_time: _dt.datetime) -> Effects:
        """Check the event and take its effects into the state.

        Raises:
            RuleViolation: the event is refused; the state is unchanged.
        """
        context = self.context(index, block_time)
        effects = apply_event(self.state, envelope, context, self._checked_payloads)
        self.state.apply(effects)
        return effects
