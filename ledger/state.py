"""The ledger's derived state: organisations, members, keys, plots, lots, shipments, lineage.

The rules (:mod:`ledger.rules`) read the state through the small :class:`StateView` protocol
and describe what an event changes as :class:`Effects`; nothing here knows where the state is
kept. :class:`MemoryState` keeps it in dictionaries (tests, offline replays); the node keeps it in
its database and lays an :class:`Overlay` over it while a block is being built, so the events of
one block see each other before anything is written.

:func:`state_digest` is the state's hash: SHA-256 over the JCS bytes of every entity in a fixed
order, so two nodes (or a node and a replay of its log) can compare states exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Protocol

from ledger.encoding import canonical, format_quantity

__all__ = [
    "DIGEST_KINDS",
    "Certification",
    "Edge",
    "Effects",
    "KeyRecord",
    "Lot",
    "LotStep",
    "Member",
    "MemoryState",
    "Org",
    "Overlay",
    "Plot",
    "Shipment",
    "StateView",
    "edge_id",
    "state_digest",
    "step_id",
]


@dataclass(frozen=True, slots=True)
class Org:
    """A registered organisation."""

    org_id: str
    name: str
    kind: str
    index: int

    def to_json(self) -> dict[str, Any]:
        """The wire and hashing form."""
        return {"org_id": self.org_id, "name": self.name, "kind": self.kind, "index": self.index}


@dataclass(frozen=True, slots=True)
class Member:
    """A member of an organisation (``<org_id>/<local>``)."""

    member_id: str
    org_id: str
    role: str
    profile_hash: str
    index: int

    def to_json(self) -> dict[str, Any]:
        """The wire and hashing form."""
        return {
            "member_id": self.member_id,
            "org_id": self.org_id,
            "role": self.role,
            "profile_hash": self.profile_hash,
            "index": self.index,
        }


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An event-signing key: a member's, or a genesis governance admin's (``member_id`` None)."""

    key_id: str
    public_key: bytes
    member_id: str | None
    index: int
    revoked_index: int | None = None

    @property
    def revoked(self) -> bool:
        """True once a ``key.revoke`` for this key has been applied."""
        return self.revoked_index is not None

    def to_json(self) -> dict[str, Any]:
        """The wire and hashing form."""
        return {
            "key_id": self.key_id,
            "public_key": self.public_key.hex(),
            "member_id": self.member_id,
            "index": self.index,
            "revoked_index": self.revoked_index,
        }


@dataclass(frozen=True, slots=True)
class Plot:
    """A production plot (EUDR geolocation)."""

    plot_id: str
    member_id: str
    commodity: str
    area_ha: str
    geometry: dict[str, Any]
    index: int

    def to_json(self) -> dict[str, Any]:
        """The wire and hashing form."""
        return {
            "plot_id": self.plot_id,
            "member_id": self.member_id,
            "commodity": self.commodity,
            "area_ha": self.area_ha,
            "geometry": self.geometry,
            "index": self.index,
        }


@dataclass(frozen=True, slots=True)
class Certification:
    """A certification claim an auditor attached to a lot."""

    scheme: str
    certificate: str
    valid_until: str
    auditor: str
    index: int

    def to_json(self) -> dict[str, Any]:
        """The wire and hashing form."""
        return {
            "scheme": self.scheme,
            "certificate": self.certificate,
            "valid_until": self.valid_until,
            "auditor": self.auditor,
            "index": self.index,
        }


@dataclass(frozen=True, slots=True)
class Lot:
    """A lot of goods.

    Attributes:
        quantity: what the lot holds now (0 once fully split, merged, transformed or lost).
        status: ``active``, ``in_transit`` or ``consumed``.
        origin: for a lot made by ``lot.create``, its producer, plot and harvest date;
            ``None`` for lots derived from other lots.
        shipment_id: the open shipment while ``in_transit``.
        loss: total quantity recorded as lost at receipt.
    """

    lot_id: str
    commodity: str
    quantity: Decimal
    uom: str
    owner: str
    status: str
    index: int
    producer: str | None = None
    plot_id: str | None = None
    harvested_on: str | None = None
    gtin: str | None = None
    shipment_id: str | None = None
    loss: Decimal = Decimal(0)
    certifications: tuple[Certification, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The wire and hashing form (quantities as decimal strings)."""
        return {
            "lot_id": self.lot_id,
            "commodity": self.commodity,
            "quantity": format_quantity(self.quantity),
            "uom": self.uom,
            "owner": self.owner,
            "status": self.status,
            "index": self.index,
            "producer": self.producer,
            "plot_id": self.plot_id,
            "harvested_on": self.harvested_on,
            "gtin": self.gtin,
            "shipment_id": self.shipment_id,
            "loss": format_quantity(self.loss),
            "certifications": [c.to_json() for c in self.certifications],
        }

    def with_(self, **changes: Any) -> Lot:
        """A copy with some fields changed."""
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Shipment:
    """A lot sent to a party; closed by ``lot.receive``."""

    shipment_id: str
    lot_id: str
    sender: str
    to: str
    quantity: Decimal
    index: int
    received_index: int | None = None
    quantity_received: Decimal | None = None

    def to_json(self) -> dict[str, Any]:
        """The wire and hashing form."""
        return {
            "shipment_id": self.shipment_id,
            "lot_id": self.lot_id,
            "sender": self.sender,
            "to": self.to,
            "quantity": format_quantity(self.quantity),
            "index": self.index,
            "received_index": self.received_index,
            "quantity_received": None
            if self.quantity_received is None
            else format_quantity(self.quantity_received),
        }


@dataclass(frozen=True, slots=True)
class Edge:
    """Lineage: ``child`` was made from ``parent`` at log index ``index``.

    ``weight`` is how much of ``parent`` went into the making: the quantity split off, merged
    in, or taken by a transform. It weighs ``parent``'s composition in ``child``'s; a transform
    with several outputs gives each output an edge with the whole quantity taken (all its
    outputs share one mix), so outgoing weights do not add up to quantities moved.
    """

    parent: str
    child: str
    weight: Decimal
    index: int

    def to_json(self) -> dict[str, Any]:
        """The wire and hashing form."""
        return {
            "parent": self.parent,
            "child": self.child,
            "weight": format_quantity(self.weight),
            "index": self.index,
        }


@dataclass(frozen=True, slots=True)
class LotStep:
    """An event on a lot's lineage: what it took (``inputs``) and what it made or moved."""

    index: int
    event_id: str
    type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def lots(self) -> tuple[str, ...]:
        """Every lot the step touches."""
        return self.inputs + tuple(o for o in self.outputs if o not in self.inputs)

    def to_json(self) -> dict[str, Any]:
        """The wire form of DESIGN.md §6 (``steps[]``)."""
        return {
            "type": self.type,
            "event_id": self.event_id,
            "index": self.index,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
        }


class StateView(Protocol):
    """Point lookups the rules need; ``None`` when the thing does not exist."""

    def org(self, org_id: str) -> Org | None: ...
    def member(self, member_id: str) -> Member | None: ...
    def key(self, key_id: str) -> KeyRecord | None: ...
    def plot(self, plot_id: str) -> Plot | None: ...
    def lot(self, lot_id: str) -> Lot | None: ...
    def shipment(self, shipment_id: str) -> Shipment | None: ...
    def event_index(self, event_id: str) -> int | None: ...
    def epcis_index(self, epcis_hash: str) -> int | None: ...


@dataclass
class Effects:
    """What applying events changes: new or replaced entities, new lineage edges and steps."""

    orgs: dict[str, Org] = field(default_factory=dict)
    members: dict[str, Member] = field(default_factory=dict)
    keys: dict[str, KeyRecord] = field(default_factory=dict)
    plots: dict[str, Plot] = field(default_factory=dict)
    lots: dict[str, Lot] = field(default_factory=dict)
    shipments: dict[str, Shipment] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    steps: list[LotStep] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    """Event id → log index of every event applied (so that none is applied twice)."""
    epcis: dict[str, int] = field(default_factory=dict)
    """CBV 2.0 event hash id → log index of the event captured from that EPCIS event."""

    def merge(self, other: Effects) -> None:
        """Take ``other``'s changes on top of these (later events win)."""
        self.events.update(other.events)
        self.epcis.update(other.epcis)
        self.orgs.update(other.orgs)
        self.members.update(other.members)
        self.keys.update(other.keys)
        self.plots.update(other.plots)
        self.lots.update(other.lots)
        self.shipments.update(other.shipments)
        self.edges.extend(other.edges)
        self.steps.extend(other.steps)


class Overlay:
    """A :class:`StateView` that shows pending :class:`Effects` on top of a base view."""

    def __init__(self, base: StateView) -> None:
        self.base = base
        self.pending = Effects()

    def apply(self, effects: Effects) -> None:
        """Lay ``effects`` over the view."""
        self.pending.merge(effects)

    def org(self, org_id: str) -> Org | None:
        found = self.pending.orgs.get(org_id)
        return found if found is not None else self.base.org(org_id)

    def member(self, member_id: str) -> Member | None:
        found = self.pending.members.get(member_id)
        return found if found is not None else self.base.member(member_id)

    def key(self, key_id: str) -> KeyRecord | None:
        found = self.pending.keys.get(key_id)
        return found if found is not None else self.base.key(key_id)

    def plot(self, plot_id: str) -> Plot | None:
        found = self.pending.plots.get(plot_id)
        return found if found is not None else self.base.plot(plot_id)

    def lot(self, lot_id: str) -> Lot | None:
        found = self.pending.lots.get(lot_id)
        return found if found is not None else self.base.lot(lot_id)

    def shipment(self, shipment_id: str) -> Shipment | None:
        found = self.pending.shipments.get(shipment_id)
        return found if found is not None else self.base.shipment(shipment_id)

    def event_index(self, event_id: str) -> int | None:
        found = self.pending.events.get(event_id)
        return found if found is not None else self.base.event_index(event_id)

    def epcis_index(self, epcis_hash: str) -> int | None:
        found = self.pending.epcis.get(epcis_hash)
        return found if found is not None else self.base.epcis_index(epcis_hash)


class MemoryState:
    """The whole state in dictionaries; also a :class:`~ledger.trace.LineageView` for tracing."""

    def __init__(self) -> None:
        self.data = Effects()
        self._parents: dict[str, list[Edge]] = {}
        self._children: dict[str, list[Edge]] = {}
        self._steps_by_lot: dict[str, list[LotStep]] = {}
        self._shipments_by_lot: dict[str, dict[str, Shipment]] = {}

    def apply(self, effects: Effects) -> None:
        """Take ``effects`` into the state."""
        self.data.merge(effects)
        for shipment in effects.shipments.values():
            self._shipments_by_lot.setdefault(shipment.lot_id, {})[shipment.shipment_id] = shipment
        for edge in effects.edges:
            self._parents.setdefault(edge.child, []).append(edge)
            self._children.setdefault(edge.parent, []).append(edge)
        for step in effects.steps:
            for lot_id in step.lots:
                self._steps_by_lot.setdefault(lot_id, []).append(step)

    def org(self, org_id: str) -> Org | None:
        return self.data.orgs.get(org_id)

    def member(self, member_id: str) -> Member | None:
        return self.data.members.get(member_id)

    def key(self, key_id: str) -> KeyRecord | None:
        return self.data.keys.get(key_id)

    def plot(self, plot_id: str) -> Plot | None:
        return self.data.plots.get(plot_id)

    def lot(self, lot_id: str) -> Lot | None:
        return self.data.lots.get(lot_id)

    def shipment(self, shipment_id: str) -> Shipment | None:
        return self.data.shipments.get(shipment_id)

    def event_index(self, event_id: str) -> int | None:
        return self.data.events.get(event_id)

    def epcis_index(self, epcis_hash: str) -> int | None:
        return self.data.epcis.get(epcis_hash)

    def parent_edges(self, lot_ids: Iterable[str]) -> list[Edge]:
        """Edges into any of ``lot_ids``."""
        return [e for lot_id in lot_ids for e in self._parents.get(lot_id, ())]

    def child_edges(self, lot_ids: Iterable[str]) -> list[Edge]:
        """Edges out of any of ``lot_ids``."""
        return [e for lot_id in lot_ids for e in self._children.get(lot_id, ())]

    def steps_of(self, lot_ids: Iterable[str]) -> list[LotStep]:
        """Steps that touch any of ``lot_ids`` (each once)."""
        seen: dict[int, LotStep] = {}
        for lot_id in lot_ids:
            for step in self._steps_by_lot.get(lot_id, ()):
                seen[step.index] = step
        return list(seen.values())

    def shipments_of(self, lot_ids: Iterable[str]) -> list[Shipment]:
        """Every shipment of any of ``lot_ids``."""
        return [s for lot_id in lot_ids for s in self._shipments_by_lot.get(lot_id, {}).values()]

    def lots(self, lot_ids: Iterable[str]) -> list[Lot]:
        """The lots among ``lot_ids`` that exist."""
        return [lot for lot_id in lot_ids if (lot := self.data.lots.get(lot_id)) is not None]

    def entities(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """Every entity as ``(kind, id, json)`` in :func:`state_digest` order."""
        data = self.data
        tables: dict[str, dict[str, Any]] = {
            "org": data.orgs,
            "member": data.members,
            "key": data.keys,
            "plot": data.plots,
            "lot": data.lots,
            "shipment": data.shipments,
            "edge": {edge_id(e): e for e in data.edges},
            "step": {step_id(s): s for s in data.steps},
        }
        captured = {h: {"epcis": h, "index": i} for h, i in data.epcis.items()}
        for kind in DIGEST_KINDS[:-1]:
            table = tables[kind]
            for identifier in sorted(table):
                yield kind, identifier, table[identifier].to_json()
        for identifier in sorted(captured):
            yield "epcis", identifier, captured[identifier]


DIGEST_KINDS = ("org", "member", "key", "plot", "lot", "shipment", "edge", "step", "epcis")
"""The order of entity kinds in :func:`state_digest`."""


def edge_id(edge: Edge) -> str:
    """A lineage edge's identifier in :func:`state_digest` (log index first, zero-padded)."""
    return f"{edge.index:016d}/{edge.parent}/{edge.child}"


def step_id(step: LotStep) -> str:
    """A lineage step's identifier in :func:`state_digest` (its zero-padded log index)."""
    return f"{step.index:016d}"


def state_digest(entities: Iterable[tuple[str, str, dict[str, Any]]]) -> str:
    """SHA-256 over every entity's JCS bytes, in kind then id order (hex).

    Args:
        entities: ``(kind, id, json)`` triples ordered by :data:`DIGEST_KINDS`, then by id
            (Python string order), as :meth:`MemoryState.entities` yields them and a database
            streams them with ``ORDER BY``; nothing is held in memory.

    Raises:
        ValueError: the entities are not in that order (the digest would not be comparable).
    """
    order = {kind: position for position, kind in enumerate(DIGEST_KINDS)}
    digest = hashlib.sha256()
    previous: tuple[int, str] | None = None
    for kind, identifier, value in entities:
        position = (order[kind], identifier)
        if previous is not None and position <= previous:
            raise ValueError(f"state entities out of order at {kind} {identifier}")
        previous = position
        digest.update(canonical([kind, identifier, value]))
        digest.update(b"\n")
    return digest.hexdigest()
