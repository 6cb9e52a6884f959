"""Lot tracing: backward to every origin with mass balance, forward to every lot and party.

A lot's *composition* — which share of it came from which ``lot.create`` origin — is fixed when
the lot is made and never changes afterwards: a split passes its parent's composition on, a merge
mixes its inputs' compositions weighted by the quantities merged, a transform gives every output
the mix of what it took from its inputs, and a loss at receipt shrinks the lot without changing
its mix (DESIGN.md §6, ``origins[].quantity``). So the quantity of a lot that came from an origin
is its composition share times its current quantity.

The functions walk a :class:`LineageView` one generation at a time (one query per hop in a
database), so a trace costs O(depth) round trips, not O(events).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any, Protocol

from ledger.encoding import format_quantity
from ledger.errors import RuleViolation
from ledger.state import Edge, Lot, LotStep, Shipment

__all__ = ["LineageView", "Origin", "Trace", "parties_reached", "trace_back", "trace_forward"]

_MOVES = frozenset({"lot.ship", "lot.receive"})
_SIX_PLACES = Decimal("0.000001")


class LineageView(Protocol):
    """Bulk lookups a trace needs (each answers for many lots at once)."""

    def parent_edges(self, lot_ids: Iterable[str]) -> list[Edge]: ...
    def child_edges(self, lot_ids: Iterable[str]) -> list[Edge]: ...
    def steps_of(self, lot_ids: Iterable[str]) -> list[LotStep]: ...
    def lots(self, lot_ids: Iterable[str]) -> list[Lot]: ...
    def shipments_of(self, lot_ids: Iterable[str]) -> list[Shipment]: ...


@dataclass(frozen=True, slots=True)
class Origin:
    """A ``lot.create`` a traced lot came from, and how much of it."""

    lot: Lot
    event_id: str
    quantity: Decimal

    def to_json(self) -> dict[str, Any]:
        """The wire form of DESIGN.md §6 (``origins[]``)."""
        return {
            "lot_id": self.lot.lot_id,
            "producer": self.lot.producer,
            "plot_id": self.lot.plot_id,
            "harvested_on": self.lot.harvested_on,
            "event_id": self.event_id,
            "index": self.lot.index,
            "quantity": format_quantity(self.quantity),
        }


@dataclass(frozen=True, slots=True)
class Trace:
    """The result of a trace, in the shape of ``GET /v1/lots/{lot_id}/trace``.

    ``parties`` (forward traces only) lists every party that held or was sent a traced lot.
    """

    lot_id: str
    direction: str
    lots: tuple[Lot, ...]
    steps: tuple[LotStep, ...]
    origins: tuple[Origin, ...]
    parties: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The wire form of DESIGN.md §6."""
        out: dict[str, Any] = {
            "lot_id": self.lot_id,
            "direction": self.direction,
            "lots": [
                {
                    "lot_id": lot.lot_id,
                    "commodity": lot.commodity,
                    "quantity": format_quantity(lot.quantity),
                    "uom": lot.uom,
                    "owner": lot.owner,
                    "status": lot.status,
                }
                for lot in self.lots
            ],
            "steps": [step.to_json() for step in self.steps],
            "origins": [origin.to_json() for origin in self.origins],
        }
        if self.direction == "forward":
            out["parties"] = list(self.parties)
        return out


def _walk(view: LineageView, lot_id: str, backward: bool) -> tuple[set[str], list[Edge]]:
    """Every lot reachable from ``lot_id`` and the edges walked, one generation per query."""
    reached = {lot_id}
    edges: list[Edge] = []
    frontier = [lot_id]
    while frontier:
        found = view.parent_edges(frontier) if backward else view.child_edges(frontier)
        edges.extend(found)
        frontier = []
        for edge in found:
            nxt = edge.parent if backward else edge.child
            if nxt not in reached:
                reached.add(nxt)
                frontier.append(nxt)
    return reached, edges


def _root(view: LineageView, lot_id: str) -> Lot:
    found = view.lots([lot_id])
    if not found:
        raise RuleViolation("lot.unknown", f"lot {lot_id} does not exist")
    return found[0]


def _creating(step: LotStep, lineage: set[str]) -> bool:
    return step.type not in _MOVES and any(o in lineage for o in step.outputs)


def trace_back(view: LineageView, lot_id: str) -> Trace:
    """Trace ``lot_id`` back to every origin, with the quantity that came from each.

    Raises:
        RuleViolation: ``lot.unknown``.
    """
    root = _root(view, lot_id)
    lineage, edges = _walk(view, lot_id, backward=True)
    lots = {lot.lot_id: lot for lot in view.lots(lineage)}
    parents: dict[str, list[Edge]] = {}
    derived_at: dict[str, int] = {}  # a lot's last event that fed the traced lineage
    for edge in edges:
        parents.setdefault(edge.child, []).append(edge)
        derived_at[edge.parent] = max(derived_at.get(edge.parent, -1), edge.index)
    steps = [
        step
        for step in view.steps_of(lineage)
        if _creating(step, lineage)
        or (
            step.type in _MOVES
            and step.inputs[0] in lineage
            and step.index < derived_at.get(step.inputs[0], step.index + 1)
        )
    ]
    steps.sort(key=lambda s: s.index)
    created_by = {o: s.event_id for s in steps if s.type == "lot.create" for o in s.outputs}
    shares = _composition(lots, parents)[root.lot_id]
    origins = tuple(
        Origin(lots[origin], created_by[origin], _quantity(share * root.quantity))
        for origin, share in sorted(shares.items(), key=lambda item: lots[item[0]].index)
    )
    ordered = tuple(sorted(lots.values(), key=lambda lot: (lot.index, lot.lot_id)))
    return Trace(lot_id, "back", ordered, tuple(steps), origins)


def _composition(
    lots: dict[str, Lot], parents: dict[str, list[Edge]]
) -> dict[str, dict[str, Decimal]]:
    """Each lot's composition: origin lot id → share (shares sum to 1)."""
    shares: dict[str, dict[str, Decimal]] = {}
    with localcontext() as context:
        context.prec = 50
        # Parents are always made before their children, so creation order is a topological
        # order of the lineage.
        for lot in sorted(lots.values(), key=lambda lot: (lot.index, lot.lot_id)):
            into = parents.get(lot.lot_id)
            if not into:
                shares[lot.lot_id] = {lot.lot_id: Decimal(1)}
                continue
            total = sum((edge.weight for edge in into), Decimal(0))
            mix: dict[str, Decimal] = {}
            for edge in into:
                for origin, share in shares[edge.parent].items():
                    mix[origin] = mix.get(origin, Decimal(0)) + share * edge.weight / total
            shares[lot.lot_id] = mix
    return shares


def _quantity(value: Decimal) -> Decimal:
    with localcontext() as context:
        context.prec = 50
        return value.quantize(_SIX_PLACES, rounding=ROUND_HALF_EVEN)


def trace_forward(view: LineageView, lot_id: str) -> Trace:
    """Trace ``lot_id`` forward to every lot made from it and every party that got any of it.

    Raises:
        RuleViolation: ``lot.unknown``.
    """
    _root(view, lot_id)
    reached, _ = _walk(view, lot_id, backward=False)
    lots = view.lots(reached)
    steps = [
        step
        for step in view.steps_of(reached)
        if _creating(step, reached) or (step.type in _MOVES and step.inputs[0] in reached)
    ]
    steps.sort(key=lambda s: s.index)
    ordered = tuple(sorted(lots, key=lambda lot: (lot.index, lot.lot_id)))
    return Trace(lot_id, "forward", ordered, tuple(steps), (), _parties(view, lots, reached))


def _parties(view: LineageView, lots: Iterable[Lot], reached: set[str]) -> tuple[str, ...]:
    # A lot changes owner only on receipt, so its owners are its current owner and the senders
    # of its shipments (the first owner shipped it first); recipients count from the shipping.
    parties = {lot.owner for lot in lots}
    for shipment in view.shipments_of(reached):
        parties.update((shipment.sender, shipment.to))
    return tuple(sorted(parties))


def parties_reached(view: LineageView, lot_id: str) -> tuple[str, ...]:
    """The ``parties`` of a forward trace of ``lot_id``, without its steps: every party that
    owned or was sent ``lot_id`` or any lot made from it, sorted.

    Raises:
        RuleViolation: ``lot.unknown``.
    """
    _root(view, lot_id)
    reached, _ = _walk(view, lot_id, backward=False)
    return _parties(view, view.lots(reached), reached)
