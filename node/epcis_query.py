"""The EPCIS 2.0 event query of the REST binding (``GET /epcis/events``) over a node's log.

:func:`parse_event_query` checks the standard query parameters this node supports
(``eventType``, ``GE_eventTime``, ``LT_eventTime``, ``EQ_bizStep``, ``MATCH_epcClass``,
``MATCH_anyEPCClass``, ``perPage``, ``nextPageToken``) and refuses every other one, naming it.
:func:`run_event_query` walks the committed log from the page token on, picks the ``lot.*``
events whose EPCIS form matches -- decided from the ledger event, without building the EPCIS
event and its hash id -- and exports one page of them with :func:`node.epcis.export_document`
as an ``EPCISQueryDocument``.

Choices (docs/decisions.md D21): results are in log order; a page token is the log index to
resume at (base64url, opaque to clients, valid for ever since the log only grows); list
parameters take several values separated by ``|`` or repeated; EPC classes are matched by the
lot they name (any of the three lot class forms of ``docs/epcis.md`` E1), not as strings, and
patterns (``urn:epc:idpat:…``) are refused; ``eventTime`` is the ledger event's
``created_at``. One request examines at most :data:`MAX_SCAN` events, so a selective query may
answer a short (even empty) page with a next page token.

What it does not do: pending events (only committed events have a ``recordTime``), other
query parameters, subscriptions, HTTP.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.errors import EncodingError
from ledger.events import Envelope
from node.epcis import (
    CommittedLotEvent,
    EpcisError,
    LotClass,
    LotDirectory,
    export_document,
    parse_lot_epc_class,
)
from node.ledger_state import DatabaseState
from node.store import Store, StoredEvent

__all__ = [
    "DEFAULT_PER_PAGE",
    "EVENT_TYPES",
    "MAX_PER_PAGE",
    "MAX_SCAN",
    "PARAMETERS",
    "EventQuery",
    "QueryPage",
    "QueryParameterError",
    "matches",
    "page_token",
    "parse_event_query",
    "run_event_query",
]

DEFAULT_PER_PAGE = 30
"""Events per page when ``perPage`` is not given (the REST binding's default)."""
MAX_PER_PAGE = 1000
"""The largest ``perPage``."""
MAX_SCAN = 10_000
"""The most committed events one request examines."""
EVENT_TYPES = frozenset(
    {
        "ObjectEvent",
        "AggregationEvent",
        "TransactionEvent",
        "TransformationEvent",
        "AssociationEvent",
    }
)
"""The EPCIS 2.0 event types ``eventType`` may name (the ledger exports only two of them)."""
_LIST_PARAMETERS = ("eventType", "EQ_bizStep", "MATCH_epcClass", "MATCH_anyEPCClass")
_ONE_VALUE_PARAMETERS = ("GE_eventTime", "LT_eventTime", "perPage", "nextPageToken")
PARAMETERS = (*_LIST_PARAMETERS, *_ONE_VALUE_PARAMETERS)
"""The query parameters this node supports."""
_READ_CHUNK = 256
_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_TOKEN = re.compile(r"0|[1-9][0-9]{0,15}")
_BIZ_STEP_PREFIXES = (
    "https://ref.gs1.org/cbv/BizStep-",
    "https://ns.gs1.org/cbv/BizStep-",
    "cbv:BizStep-",
    "urn:epcglobal:cbv:bizstep:",
)


class QueryParameterError(EncodingError):
    """A query parameter that is malformed or not supported (the API answers ``400``).

    Attributes:
        parameter: the parameter's name.
        detail: what is wrong with it.
    """

    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(f"{parameter}: {detail}")
        self.parameter = parameter
        self.detail = detail


@dataclass(frozen=True, slots=True)
class EventQuery:
    """A checked query. ``None`` filters are absent; list filters match any of their values.

    Attributes:
        event_types: EPCIS event types.
        ge_event_time: events at or after this time.
        lt_event_time: events before this time.
        biz_steps: CBV business steps as bare words, or other URIs.
        epc_classes: lots in an ObjectEvent's ``quantityList``.
        any_epc_classes: lots anywhere in an event (quantity, input and output lists).
        per_page: the most events in a page.
        start: the log index the page starts at.
    """

    event_types: frozenset[str] | None = None
    ge_event_time: _dt.datetime | None = None
    lt_event_time: _dt.datetime | None = None
    biz_steps: frozenset[str] | None = None
    epc_classes: tuple[LotClass, ...] | None = None
    any_epc_classes: tuple[LotClass, ...] | None = None
    per_page: int = DEFAULT_PER_PAGE
    start: int = 0


@dataclass(frozen=True, slots=True)
class QueryPage:
    """One page of results.

    Attributes:
        document: the ``EPCISQueryDocument``.
        next_page_token: where the next page starts, ``None`` after the last page.
    """

    document: dict[str, Any]
    next_page_token: str | None


# --- parameters ------------------------------------------------------------------------------


def page_token(index: int) -> str:
    """The opaque ``nextPageToken`` of a page that starts at log index ``index``."""
    return base64.urlsafe_b64encode(str(index).encode()).decode().rstrip("=")


def _page_start(token: str, log_size: int) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        text = base64.b64decode(padded, altchars=b"-_", validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError) as e:
        raise QueryParameterError("nextPageToken", "is not a page token of this node") from e
    if _TOKEN.fullmatch(text) is None or page_token(int(text)) != token:
        raise QueryParameterError("nextPageToken", "is not a page token of this node")
    start = int(text)
    if start > log_size:
        raise QueryParameterError("nextPageToken", "points beyond this node's log")
    return start


def _time(parameter: str, value: str) -> _dt.datetime:
    # A '+' left unencoded in a query string arrives as a space.
    text = value.replace(" ", "+")
    if _TIME.fullmatch(text) is None:
        raise QueryParameterError(
            parameter, f"must be an RFC 3339 time with an offset, got {value[:40]!r}"
        )
    try:
        return _dt.datetime.fromisoformat(text)
    except ValueError as e:
        raise QueryParameterError(parameter, f"{value[:40]!r} is not a valid time") from e


def _per_page(value: str) -> int:
    if re.fullmatch(r"[1-9][0-9]{0,3}", value) is None or int(value) > MAX_PER_PAGE:
        raise QueryParameterError(
            "perPage", f"must be a whole number from 1 to {MAX_PER_PAGE}, got {value[:20]!r}"
        )
    return int(value)


def _biz_step(value: str) -> str:
    for prefix in _BIZ_STEP_PREFIXES:
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


def _lot_classes(parameter: str, values: Sequence[str], network: str) -> tuple[LotClass, ...]:
    classes = []
    for value in values:
        try:
            classes.append(parse_lot_epc_class(network, value, parameter))
        except EpcisError as e:
            raise QueryParameterError(parameter, e.detail) from e
    return tuple(classes)


def parse_event_query(
    parameters: Iterable[tuple[str, str]], *, network: str, log_size: int
) -> EventQuery:
    """Check the query parameters of ``GET /epcis/events``.

    Args:
        parameters: the query string's ``(name, value)`` pairs, in order; a list parameter may
            come more than once and hold several values separated by ``|``.
        network: the node's network (EPC classes must name its lots).
        log_size: the committed log's size (a page token may not point beyond it).

    Raises:
        QueryParameterError: an unsupported parameter, an empty or malformed value, a
            one-value parameter given twice.
    """
    lists: dict[str, list[str]] = {}
    single: dict[str, str] = {}
    for name, value in parameters:
        if name in _LIST_PARAMETERS:
            values = value.split("|")
            if not all(values):
                raise QueryParameterError(name, "has an empty value")
            lists.setdefault(name, []).extend(values)
        elif name in _ONE_VALUE_PARAMETERS:
            if name in single:
                raise QueryParameterError(name, "may be given once")
            single[name] = value
        else:
            raise QueryParameterError(
                name[:80], f"is not supported here (supported: {', '.join(PARAMETERS)})"
            )
    unknown_types = sorted(set(lists.get("eventType", ())) - EVENT_TYPES)
    if unknown_types:
        raise QueryParameterError(
            "eventType", f"{unknown_types[0][:40]!r} is not an EPCIS 2.0 event type"
        )

    def optional(name: str, parse: Callable[[str, str], _dt.datetime]) -> _dt.datetime | None:
        return parse(name, single[name]) if name in single else None

    return EventQuery(
        event_types=frozenset(lists["eventType"]) if "eventType" in lists else None,
        ge_event_time=optional("GE_eventTime", _time),
        lt_event_time=optional("LT_eventTime", _time),
        biz_steps=(
            frozenset(_biz_step(v) for v in lists["EQ_bizStep"]) if "EQ_bizStep" in lists else None
        ),
        epc_classes=(
            _lot_classes("MATCH_epcClass", lists["MATCH_epcClass"], network)
            if "MATCH_epcClass" in lists
            else None
        ),
        any_epc_classes=(
            _lot_classes("MATCH_anyEPCClass", lists["MATCH_anyEPCClass"], network)
            if "MATCH_anyEPCClass" in lists
            else None
        ),
        per_page=_per_page(single["perPage"]) if "perPage" in single else DEFAULT_PER_PAGE,
        start=_page_start(single["nextPageToken"], log_size) if "nextPageToken" in single else 0,
    )


# --- matching --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Shape:
    """What the EPCIS form of a ledger event type says (``node.epcis`` export, docs/epcis.md E3).

    ``lots`` are every lot the event names; an ObjectEvent names its one lot in
    ``quantityList``, a TransformationEvent its lots in the input and output lists.
    """

    event_type: str
    biz_step: str
    lots: Callable[[Mapping[str, Any]], tuple[str, ...]]

    @property
    def in_quantity_list(self) -> bool:
        return self.event_type == "ObjectEvent"


def _one_lot(p: Mapping[str, Any]) -> tuple[str, ...]:
    return (p["lot_id"],)


def _split_lots(p: Mapping[str, Any]) -> tuple[str, ...]:
    return (p["lot_id"], *(o["lot_id"] for o in p["outputs"]))


def _merge_lots(p: Mapping[str, Any]) -> tuple[str, ...]:
    return (*p["inputs"], p["lot_id"])


def _transform_lots(p: Mapping[str, Any]) -> tuple[str, ...]:
    return (*(i["lot_id"] for i in p["inputs"]), *(o["lot_id"] for o in p["outputs"]))


_SHAPES: Mapping[str, _Shape] = {
    "lot.create": _Shape("ObjectEvent", "commissioning", _one_lot),
    "lot.split": _Shape("TransformationEvent", "repackaging", _split_lots),
    "lot.merge": _Shape("TransformationEvent", "repackaging", _merge_lots),
    "lot.transform": _Shape("TransformationEvent", "commissioning", _transform_lots),
    "lot.ship": _Shape("ObjectEvent", "shipping", _one_lot),
    "lot.receive": _Shape("ObjectEvent", "receiving", _one_lot),
    "lot.certify": _Shape("ObjectEvent", "inspecting", _one_lot),
}


def _names_any(wanted: Sequence[LotClass], lot_ids: Sequence[str], lots: LotDirectory) -> bool:
    for lot_id in lot_ids:
        for lot_class in wanted:
            if lot_class.lot_id != lot_id:
                continue
            if lot_class.gtin is None:
                return True
            lot = lots.lot(lot_id)
            if lot is not None and lot.gtin is not None and lot.gtin.zfill(14) == lot_class.gtin:
                return True
    return False


def matches(query: EventQuery, envelope: Envelope, lots: LotDirectory) -> bool:
    """Does the EPCIS form of ``envelope`` match ``query``'s filters? (``False`` for events that
    are not exported: only ``lot.*`` events are.)

    Args:
        query: the filters (``per_page`` and ``start`` play no part).
        envelope: a committed event.
        lots: the state the event's lots are looked up in (for the GTIN of an EPC class).
    """
    shape = _SHAPES.get(envelope.type)
    if shape is None:
        return False
    if query.event_types is not None and shape.event_type not in query.event_types:
        return False
    if query.ge_event_time is not None and envelope.created_at < query.ge_event_time:
        return False
    if query.lt_event_time is not None and envelope.created_at >= query.lt_event_time:
        return False
    if query.biz_steps is not None and shape.biz_step not in query.biz_steps:
        return False
    named = shape.lots(envelope.payload)
    if query.epc_classes is not None and not (
        shape.in_quantity_list and _names_any(query.epc_classes, named, lots)
    ):
        return False
    return query.any_epc_classes is None or _names_any(query.any_epc_classes, named, lots)


# --- running a query -------------------------------------------------------------------------


def _query_document(exported: Mapping[str, Any]) -> dict[str, Any]:
    """An ``EPCISDocument`` made by :func:`~node.epcis.export_document` as the answer to a
    ``SimpleEventQuery``."""
    return {
        "@context": exported["@context"],
        "type": "EPCISQueryDocument",
        "schemaVersion": exported["schemaVersion"],
        "creationDate": exported["creationDate"],
        "epcisBody": {
            "queryResults": {
                "queryName": "SimpleEventQuery",
                "resultsBody": {"eventList": exported["epcisBody"]["eventList"]},
            }
        },
    }


def run_event_query(
    store: Store,
    query: EventQuery,
    *,
    created: str,
    visible: Callable[[Envelope], bool] | None = None,
) -> QueryPage:
    """One page of the committed ``lot.*`` events that match ``query``, in log order.

    Args:
        store: the node's store.
        query: the checked query.
        created: the document's ``creationDate`` (RFC 3339 UTC).
        visible: which events the caller may see (``None``: all); the others are skipped
            as if they did not match.

    Raises:
        EncodingError: an event cannot be exported (see :func:`node.epcis.export_event`).
    """
    lots = DatabaseState(store.engine)
    end = store.head().tree_size
    index, scanned = query.start, 0
    found: list[StoredEvent] = []
    while index < end and len(found) < query.per_page and scanned < MAX_SCAN:
        chunk = store.events(index, min(end, index + _READ_CHUNK) - 1)
        if not chunk:
            break
        for stored in chunk:
            index, scanned = stored.index + 1, scanned + 1
            if matches(query, stored.envelope, lots) and (
                visible is None or visible(stored.envelope)
            ):
                found.append(stored)
            if len(found) == query.per_page or scanned == MAX_SCAN:
                break
    block_times: dict[int, str] = {}
    for stored in found:
        if stored.height not in block_times:
            block_times[stored.height] = store.header(stored.height).time
    exported = export_document(
        [CommittedLotEvent(s.envelope, s.index, block_times[s.height]) for s in found],
        network=store.genesis.network,
        lots=lots,
        created=created,
    )
    return QueryPage(_query_document(exported), page_token(index) if index < end else None)
