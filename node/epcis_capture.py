"""EPCIS capture on a node (DESIGN.md §6): captured events become ledger events signed by the
node's capture key.

Two steps, so that the expensive one can run off the event loop:

* :func:`map_document` parses an EPCIS 2.0 capture document and maps its events with
  :func:`node.epcis.capture_bodies` (pure and CPU-bound: about 1.7 ms per event for the hash id).
* :func:`capture_envelopes` turns the mapped events into envelopes against the node's current
  state, committed and pending, all or nothing. An EPCIS event the ledger already holds (its
  CBV 2.0 hash id recorded as a payload's ``epcis``) gives back the ledger event that holds it,
  so capturing again is idempotent (docs/decisions.md D20). Every other event is checked against
  what the ledger knows of the lots it names -- the GTIN of an EPC class and the unit of a
  quantity, which a payload cannot carry for an existing lot (``docs/epcis.md`` E4) -- and
  signed with the capture key.

What it does not do: apply the ledger's rules (the caller runs the envelopes through
:meth:`~node.runtime.LedgerNode.submit` as it would any submission), authenticate callers
or read the clock.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.encoding import format_time, parse_json
from ledger.events import Envelope, sign_event
from ledger.rules import UNITS
from ledger.state import Overlay, StateView
from node.epcis import MAX_EVENTS, CapturedEvent, EpcisError, capture_bodies, parse_lot_epc_class
from node.runtime import LedgerNode

__all__ = ["CaptureLimitError", "MappedDocument", "capture_envelopes", "map_document"]

_QUANTITY_LISTS = ("quantityList", "inputQuantityList", "outputQuantityList")


class CaptureLimitError(EpcisError):
    """A capture document with more events than one capture may hold (the API answers 413)."""


@dataclass(frozen=True, slots=True)
class MappedDocument:
    """A capture document's events and the ledger bodies they map to, in document order.

    Attributes:
        events: the EPCIS events as captured (to name fields in errors).
        captured: what :func:`~node.epcis.capture_bodies` made of each.
    """

    events: tuple[Mapping[str, Any], ...]
    captured: tuple[CapturedEvent, ...]


def map_document(raw: bytes, *, network: str, now: _dt.datetime) -> MappedDocument:
    """Parse and map a capture document (see :func:`node.epcis.capture_bodies`).

    Args:
        raw: the ``EPCISDocument`` as JSON bytes.
        network: the node's network.
        now: the capture time, the bodies' ``created_at`` (cut to milliseconds).

    Raises:
        CaptureLimitError: more than :data:`~node.epcis.MAX_EVENTS` events.
        EpcisError: an event, or the document, cannot be mapped.
        EncodingError: the bytes are not strict JSON.
    """
    document = parse_json(raw)
    body = document.get("epcisBody") if type(document) is dict else None
    events = body.get("eventList") if type(body) is dict else None
    if type(events) is list and len(events) > MAX_EVENTS:
        raise CaptureLimitError(
            "epcisBody.eventList", f"holds {len(events)} events; at most {MAX_EVENTS} per capture"
        )
    created_at = format_time(now.replace(microsecond=now.microsecond // 1000 * 1000))
    captured = capture_bodies(document, network=network, created_at=created_at)
    return MappedDocument(tuple(document["epcisBody"]["eventList"]), tuple(captured))


def capture_envelopes(
    node: LedgerNode, mapped: MappedDocument, key: Ed25519PrivateKey
) -> list[Envelope]:
    """The envelopes a mapped capture document becomes on ``node``, in document order.

    Args:
        node: the node (its committed state and pending events are read, nothing changes).
        mapped: the result of :func:`map_document`.
        key: the capture key (a registered clerk's) that signs every new event.

    Returns:
        For each EPCIS event, the ledger event that already holds it, or a new one signed by
        ``key``.

    Raises:
        EpcisError: an event names an existing lot with another GTIN or unit, or gives a
            transformation output a GTIN (the ledger records none for outputs).
    """
    network = node.genesis.network
    view = node.app.pending_view
    made: dict[str, tuple[str | None, str]] = {}  # lots made by earlier events of the document
    envelopes: list[Envelope] = []
    for item, event in zip(mapped.captured, mapped.events, strict=True):
        existing = _recorded(node, item.epcis)
        if existing is not None:
            envelopes.append(existing)
            continue
        _check_lots(item, event, view, made, network)
        made.update(_made_lots(item))
        envelopes.append(sign_event(item.body, [key]))
    return envelopes


def _recorded(node: LedgerNode, epcis: str) -> Envelope | None:
    """The committed or pending ledger event captured from the EPCIS event ``epcis``, if any."""
    view = node.app.pending_view
    index = view.epcis_index(epcis)
    if index is None:
        return None
    stored = node.store.event_at(index)
    if stored is not None:
        return stored.envelope
    # A pending event: the mempool's view is an Overlay whose pending effects map event ids to
    # the log indexes they will take.
    if isinstance(view, Overlay):
        for event_id, at in view.pending.events.items():
            if at == index:
                return node.app.pending_event(event_id)
    return None


def _lot_facts(view: StateView, lot_id: str) -> tuple[str | None, str] | None:
    """A lot's GTIN-14 (``None`` without one) and unit, or ``None`` for an unknown lot."""
    lot = view.lot(lot_id)
    if lot is None:
        return None
    return (lot.gtin.zfill(14) if lot.gtin is not None else None), lot.uom


def _made_lots(item: CapturedEvent) -> dict[str, tuple[str | None, str]]:
    """The lots an event creates, with their GTIN-14 and unit."""
    payload = item.payload
    if item.type == "lot.create":
        gtin = payload.get("gtin")
        return {payload["lot_id"]: (None if gtin is None else gtin.zfill(14), payload["uom"])}
    if item.type == "lot.transform":
        return {output["lot_id"]: (None, output["uom"]) for output in payload["outputs"]}
    return {}


def _check_lots(
    item: CapturedEvent,
    event: Mapping[str, Any],
    view: StateView,
    made: Mapping[str, tuple[str | None, str]],
    network: str,
) -> None:
    new = _made_lots(item)
    for reference in item.lots:
        lot_id = reference.lot_id
        if lot_id in new:
            if item.type == "lot.transform" and reference.gtin is not None:
                raise _lot_error(
                    item,
                    event,
                    network,
                    lot_id,
                    "epcClass",
                    "the ledger records no GTIN for a transformation's outputs: name output "
                    f"{lot_id} urn:rantai:{network}:lot:{lot_id}",
                )
            continue
        facts = made.get(lot_id) or _lot_facts(view, lot_id)
        if facts is None:
            continue  # an unknown lot: the rules refuse the event and say so
        gtin, uom = facts
        if reference.gtin is not None and reference.gtin != gtin:
            raise _lot_error(
                item,
                event,
                network,
                lot_id,
                "epcClass",
                f"names GTIN {reference.gtin}, but lot {lot_id} has "
                + (f"GTIN {gtin}" if gtin is not None else "no GTIN"),
            )
        if reference.uom is not None and reference.uom != uom:
            raise _lot_error(
                item,
                event,
                network,
                lot_id,
                "uom",
                f"is {UNITS[reference.uom]}, but lot {lot_id} is kept in {UNITS[uom]}",
            )


def _lot_error(
    item: CapturedEvent,
    event: Mapping[str, Any],
    network: str,
    lot_id: str,
    leaf: str,
    detail: str,
) -> EpcisError:
    """An error naming the quantity element of ``event`` that names ``lot_id``."""
    where = f"epcisBody.eventList[{item.position}]"
    for name in _QUANTITY_LISTS:
        for i, element in enumerate(event.get(name) or ()):
            with contextlib.suppress(EpcisError):
                if parse_lot_epc_class(network, element.get("epcClass")).lot_id == lot_id:
                    return EpcisError(f"{where}.{name}[{i}].{leaf}", detail, item.position)
    return EpcisError(where, detail, item.position)
