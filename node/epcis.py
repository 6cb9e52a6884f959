"""GS1 EPCIS 2.0 / CBV 2.0 on the ledger: identifiers, event hash ids, export and capture.

What it does:
  * Identifiers (DESIGN.md §6): a lot's EPC class is the GS1 Digital Link
    ``https://id.gs1.org/01/{GTIN-14}/10/{lot_id}`` when the lot has a GTIN, else
    ``urn:rantai:{network}:lot:{lot_id}``; a party is ``urn:rantai:{network}:party:{party_id}``;
    a shipment is the business transaction ``urn:rantai:{network}:shipment:{shipment_id}``.
    The parsers are strict and name the field they refuse.
  * Event hash ids: :func:`event_hash_id` computes the CBV 2.0 event hash
    (``ni:///sha-256;<hex>?ver=CBV2.0``) with the ``epcis-event-hash-generator`` package, offline:
    JSON-LD contexts are served from the copies the package ships and every other URL is
    refused, so no network access is ever attempted.
  * Export: :func:`export_document` turns committed ``lot.*`` events into one EPCIS 2.0
    JSON-LD ``EPCISDocument`` whose events carry their hash ids as ``eventID``.
  * Capture: :func:`capture_bodies` maps the lot-level events of an EPCIS document to ledger event
    bodies ready to be signed, all or nothing: the first event that cannot be mapped makes the
    whole call raise :class:`EpcisError` (position and field path included).

What it does not do: sign, submit or check events against the ledger state (the caller signs
with its capture key and the rules decide), read clocks, touch the network or a database, or
accept instance-level EPCs, aggregation/association/transaction events or EPCIS query documents.
The mapping and every CBV value chosen are written down in ``docs/epcis.md``.
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import ModuleType
from typing import Any, Protocol
from urllib.parse import quote, unquote

from ledger.encoding import format_quantity, parse_date, parse_json, parse_time
from ledger.errors import EncodingError, RuleViolation
from ledger.events import MAX_EVENT_CLOCK_SKEW, Envelope
from ledger.rules import COMMODITY, GTIN, MEMBER_LOCAL, OBJECT_ID, ORG_ID, SCHEMAS, UNITS
from ledger.state import Lot, Shipment

__all__ = [
    "EPCIS_CONTEXT",
    "EXPORT_CONTEXT",
    "MAX_DOCUMENT_BYTES",
    "MAX_EVENTS",
    "RANTAI_NAMESPACE",
    "CapturedEvent",
    "CommittedLotEvent",
    "EpcisError",
    "LotClass",
    "LotDirectory",
    "LotReference",
    "capture_bodies",
    "event_hash_id",
    "export_document",
    "export_event",
    "lot_epc_class",
    "parse_lot_epc_class",
    "parse_party_urn",
    "parse_shipment_urn",
    "party_urn",
    "shipment_urn",
]

EPCIS_CONTEXT = "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"
"""The standard EPCIS 2.0 JSON-LD context that exported documents name."""
RANTAI_NAMESPACE = "https://rantai.example/ns/epcis/"
"""IRI of Rantai's EPCIS extension fields (prefix ``rantai``). A placeholder under the
``.example`` domain until the project owns one; changing it changes every exported eventID."""
EXPORT_CONTEXT: tuple[str | Mapping[str, str], ...] = (EPCIS_CONTEXT, {"rantai": RANTAI_NAMESPACE})
"""The ``@context`` of an exported document (copied into each document as a list)."""
MAX_EVENTS = 1000
"""Most events one captured document may hold (``GS1-EPCIS-Capture-Limit``)."""
MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
"""Largest captured document (``GS1-EPCIS-Capture-File-Size-Limit``)."""
_MAX_DEPTH = 32
_MAX_VALUES = 200_000
_MAX_LIST = 1000
_MAX_SAFE_INTEGER = 2**53 - 1

# Context URLs answered from the copies inside epcis-event-hash-generator. The unversioned
# URL is the one most tools (openepcis among them) write; it serves the current 2.0.x context,
# which we take to be the 2.0.0 one (an assumption documented in docs/epcis.md).
_CONTEXT_COPIES: Mapping[str, str] = {
    EPCIS_CONTEXT: EPCIS_CONTEXT,
    "https://ref.gs1.org/standards/epcis/epcis-context.jsonld": EPCIS_CONTEXT,
    "https://gs1.github.io/EPCIS/epcis-context.jsonld": (
        "https://gs1.github.io/EPCIS/epcis-context.jsonld"
    ),
}
# The prefixes the EPCIS context defines (all of its terms are @protected).
_STANDARD_PREFIXES: Mapping[str, str] = {
    "epcis": "https://ref.gs1.org/epcis/",
    "cbv": "https://ref.gs1.org/cbv/",
    "cbvmda": "urn:epcglobal:cbv:mda:",
    "gs1": "https://gs1.org/voc/",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "dcterms": "http://purl.org/dc/terms/",
}
_CBVMDA = "urn:epcglobal:cbv:mda:"
_HARVEST_START = _CBVMDA + "harvestStartDate"
_HARVEST_END = _CBVMDA + "harvestEndDate"
_COMMODITY = RANTAI_NAMESPACE + "commodity"
_PLOT = RANTAI_NAMESPACE + "plotID"
_PROCESS = RANTAI_NAMESPACE + "process"
_DECLARE = f'; Rantai fields need the prefix declared: {{"rantai": "{RANTAI_NAMESPACE}"}}'

# CBV 2.0 vocabularies (the bare words the EPCIS JSON schema enumerates).
_BIZ_STEPS = frozenset(
    [
        "accepting",
        "arriving",
        "assembling",
        "collecting",
        "commissioning",
        "consigning",
        "creating_class_instance",
        "cycle_counting",
        "decommissioning",
        "departing",
        "destroying",
        "disassembling",
        "dispensing",
        "encoding",
        "entering_exiting",
        "holding",
        "inspecting",
        "installing",
        "killing",
        "loading",
        "other",
        "packing",
        "picking",
        "receiving",
        "removing",
        "repackaging",
        "repairing",
        "replacing",
        "reserving",
        "retail_selling",
        "shipping",
        "staging_outbound",
        "stock_taking",
        "stocking",
        "storing",
        "transporting",
        "unloading",
        "unpacking",
        "void_shipping",
        "sensor_reporting",
        "sampling",
    ]
)
_DISPOSITIONS = frozenset(
    [
        "active",
        "container_closed",
        "damaged",
        "destroyed",
        "dispensed",
        "disposed",
        "encoded",
        "expired",
        "in_progress",
        "in_transit",
        "inactive",
        "no_pedigree_match",
        "non_sellable_other",
        "partially_dispensed",
        "recalled",
        "reserved",
        "retail_sold",
        "returned",
        "sellable_accessible",
        "sellable_not_accessible",
        "stolen",
        "unknown",
        "available",
        "completeness_verified",
        "completeness_inferred",
        "conformant",
        "container_open",
        "mismatch_instance",
        "mismatch_class",
        "mismatch_quantity",
        "needs_replacement",
        "non_conformant",
        "unavailable",
    ]
)
_SOURCE_TYPES = frozenset({"owning_party", "possessing_party", "location"})
_TRANSACTION_TYPES = frozenset(
    [
        "bol",
        "cert",
        "desadv",
        "inv",
        "pedigree",
        "po",
        "poc",
        "prodorder",
        "recadv",
        "rma",
        "testprd",
        "testres",
        "upevt",
    ]
)
_UNIT_OF_CODE: Mapping[str, str] = {code: unit for unit, code in UNITS.items()}

_COMMON_FIELDS = frozenset(
    {
        "type",
        "eventTime",
        "recordTime",
        "eventTimeZoneOffset",
        "eventID",
        "certificationInfo",
        "errorDeclaration",
    }
)
_SHARED_FIELDS = frozenset(
    {
        "bizStep",
        "disposition",
        "persistentDisposition",
        "readPoint",
        "bizLocation",
        "bizTransactionList",
        "sourceList",
        "destinationList",
        "sensorElementList",
        "ilmd",
    }
)
_EVENT_FIELDS: Mapping[str, frozenset[str]] = {
    "ObjectEvent": _COMMON_FIELDS | _SHARED_FIELDS | {"action", "epcList", "quantityList"},
    "TransformationEvent": _COMMON_FIELDS
    | _SHARED_FIELDS
    | {
        "inputEPCList",
        "inputQuantityList",
        "outputEPCList",
        "outputQuantityList",
        "transformationID",
    },
}
_QUANTITY_LISTS = ("quantityList", "inputQuantityList", "outputQuantityList")
_EPC_LISTS = ("epcList", "inputEPCList", "outputEPCList")

_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})"
)
_OFFSET = re.compile(r"[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)")
_VERSION = re.compile(r"2(\.[0-9]+)*")
_UOM = re.compile(r"[A-Z0-9]{2,3}")
_IRI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
_PREFIX_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_DIGITAL_LINK = re.compile(
    r"https://[A-Za-z0-9.-]+(?::[0-9]{1,5})?/01/([0-9]{8}|[0-9]{12,14})/10/([^/?#]+)"
)
_LGTIN = re.compile(r"urn:epc:class:lgtin:([0-9]{6,12})\.([0-9]{1,7})\.(.+)")


# --- errors ----------------------------------------------------------------------------------


class EpcisError(EncodingError):
    """An EPCIS document or value that cannot be mapped (the API answers ``422``).

    Attributes:
        position: index of the offending event in ``epcisBody.eventList``; ``None`` when the
            problem is not in one event (the document itself, or a lone identifier).
        field: where the problem is, as a path like
            ``epcisBody.eventList[2].quantityList[0].uom``.
        detail: what is wrong.
    """

    def __init__(self, field: str, detail: str, position: int | None = None) -> None:
        where = f"event {position} ({field})" if position is not None else field
        super().__init__(f"{where}: {detail}")
        self.position = position
        self.field = field
        self.detail = detail


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- identifiers -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LotClass:
    """A lot named by an EPC class: its ledger id and, for GS1 identifiers, its GTIN-14."""

    lot_id: str
    gtin: str | None


def _gtin_check_digit(body: str) -> int:
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10


def _gtin14(gtin: str) -> str | None:
    """The GTIN padded to 14 digits, or ``None`` if it is not a GTIN with a valid check digit."""
    if GTIN.fullmatch(gtin) is None or _gtin_check_digit(gtin[:-1]) != int(gtin[-1]):
        return None
    return gtin.zfill(14)


def lot_epc_class(network: str, lot_id: str, gtin: str | None) -> str:
    """The EPC class of a lot (DESIGN.md §6).

    Args:
        network: the network id.
        lot_id: the ledger's lot id.
        gtin: the lot's GTIN-8/12/13/14, if it has one (padded to 14 digits here).

    Returns:
        ``https://id.gs1.org/01/{GTIN-14}/10/{lot_id}`` (the lot id percent-encoded) for a lot
        with a GTIN, else ``urn:rantai:{network}:lot:{lot_id}``.

    Raises:
        EncodingError: the lot id or the GTIN is malformed.
    """
    if OBJECT_ID.fullmatch(lot_id) is None:
        raise EncodingError(f"lot id {lot_id!r} is not a ledger lot id")
    if gtin is None:
        return f"urn:rantai:{network}:lot:{lot_id}"
    padded = _gtin14(gtin)
    if padded is None:
        raise EncodingError(f"gtin {gtin!r} is not a GTIN with a valid check digit")
    return f"https://id.gs1.org/01/{padded}/10/{quote(lot_id, safe='')}"


def parse_lot_epc_class(network: str, epc_class: Any, field: str = "epcClass") -> LotClass:
    """The lot an EPC class names.

    Accepts ``urn:rantai:{network}:lot:{lot_id}``, a GS1 Digital Link
    ``https://{host}/01/{GTIN}/10/{lot}`` and an EPC URN ``urn:epc:class:lgtin:…``; the lot
    must be a valid ledger lot id and the GTIN must have a valid check digit (it comes back as
    GTIN-14).

    Raises:
        EpcisError: anything else (a product class without a lot, a pattern, another network).
    """
    if type(epc_class) is not str:
        raise EpcisError(field, f"an EPC class must be a string, got {_shown(epc_class)}")
    own = f"urn:rantai:{network}:lot:"
    gtin: str | None = None
    if epc_class.startswith(own):
        lot_id = epc_class[len(own) :]
    elif (link := _DIGITAL_LINK.fullmatch(epc_class)) is not None:
        gtin = _gtin14(link.group(1))
        if gtin is None:
            raise EpcisError(field, f"GTIN {link.group(1)} has a wrong check digit")
        lot_id = unquote(link.group(2), errors="strict")
    elif (urn := _LGTIN.fullmatch(epc_class)) is not None:
        company, item = urn.group(1), urn.group(2)
        if len(company) + len(item) != 13:
            raise EpcisError(field, "an LGTIN's company prefix and item reference need 13 digits")
        body = item[0] + company + item[1:]
        gtin = body + str(_gtin_check_digit(body))
        lot_id = unquote(urn.group(3), errors="strict")
    else:
        raise EpcisError(
            field,
            f"{_shown(epc_class)} names no lot: expected urn:rantai:{network}:lot:<lot id>, a "
            "GS1 Digital Link with a GTIN and a lot (/01/<gtin>/10/<lot>) or an "
            "urn:epc:class:lgtin: class",
        )
    if OBJECT_ID.fullmatch(lot_id) is None:
        raise EpcisError(
            field, f"lot {_shown(lot_id)} is not a ledger lot id (1-128 of A-Z a-z 0-9 . _ : -)"
        )
    return LotClass(lot_id, gtin)


def _is_party(party_id: str) -> bool:
    if "/" in party_id:
        org_id, local = party_id.split("/", 1)
        return ORG_ID.fullmatch(org_id) is not None and MEMBER_LOCAL.fullmatch(local) is not None
    return ORG_ID.fullmatch(party_id) is not None


def party_urn(network: str, party: str) -> str:
    """``urn:rantai:{network}:party:{party_id}`` for an organisation or member id.

    Raises:
        EncodingError: ``party`` is neither an organisation id nor a member id.
    """
    if not _is_party(party):
        raise EncodingError(f"{party!r} is not an organisation or member id")
    return f"urn:rantai:{network}:party:{party}"


def parse_party_urn(network: str, urn: Any, field: str = "party") -> str:
    """The organisation or member id a party URN of ``network`` names.

    Raises:
        EpcisError: another form, another network, or not a valid party id.
    """
    prefix = f"urn:rantai:{network}:party:"
    if type(urn) is not str or not urn.startswith(prefix) or not _is_party(urn[len(prefix) :]):
        raise EpcisError(
            field,
            f"expected {prefix}<org id or member id>, got {_shown(urn)}",
        )
    return urn[len(prefix) :]


def shipment_urn(network: str, shipment_id: str) -> str:
    """``urn:rantai:{network}:shipment:{shipment_id}``, a shipment as a business transaction.

    Raises:
        EncodingError: not a valid shipment id.
    """
    if OBJECT_ID.fullmatch(shipment_id) is None:
        raise EncodingError(f"{shipment_id!r} is not a shipment id")
    return f"urn:rantai:{network}:shipment:{shipment_id}"


def parse_shipment_urn(network: str, urn: Any, field: str = "bizTransaction") -> str:
    """The shipment id a shipment URN of ``network`` names.

    Raises:
        EpcisError: another form, another network, or not a valid shipment id.
    """
    prefix = f"urn:rantai:{network}:shipment:"
    if (
        type(urn) is not str
        or not urn.startswith(prefix)
        or OBJECT_ID.fullmatch(urn[len(prefix) :]) is None
    ):
        raise EpcisError(field, f"expected {prefix}<shipment id>, got {_shown(urn)}")
    return urn[len(prefix) :]


def _certificate_urn(network: str, scheme: str, certificate: str) -> str:
    return (
        f"urn:rantai:{network}:certificate:{quote(scheme, safe='')}:{quote(certificate, safe='')}"
    )


# --- contexts and event hash ids ---------------------------------------------------------------


def _context_prefixes(context: Any, where: str = "@context") -> dict[str, str]:
    """Check a document's ``@context`` and return the prefixes it defines (standard ones too).

    Only the EPCIS context URLs we hold a copy of and flat ``{prefix: IRI}`` objects are
    accepted, so that expanding the document never needs to load anything.

    Raises:
        EpcisError: anything else, or no EPCIS context at all.
    """
    items = context if type(context) is list else [context]
    if not items or len(items) > 64:
        raise EpcisError(where, "must name the EPCIS 2.0 context (and at most 64 entries)")
    prefixes = dict(_STANDARD_PREFIXES)
    has_epcis = False
    for position, item in enumerate(items):
        path = f"{where}[{position}]" if type(context) is list else where
        if type(item) is str:
            if item not in _CONTEXT_COPIES:
                raise EpcisError(
                    path,
                    f"unknown context {_shown(item)}: only the EPCIS 2.0 context "
                    f"({EPCIS_CONTEXT}) and inline prefix definitions are accepted "
                    "(no context is ever fetched)",
                )
            has_epcis = True
        elif type(item) is dict:
            for name, iri in item.items():
                if _PREFIX_NAME.fullmatch(name) is None:
                    raise EpcisError(
                        f"{path}.{name}", "only plain prefix definitions are accepted here"
                    )
                if type(iri) is not str or _IRI.fullmatch(iri) is None:
                    raise EpcisError(
                        f"{path}.{name}", f"must be an absolute IRI, got {_shown(iri)}"
                    )
                if name in _STANDARD_PREFIXES and iri != _STANDARD_PREFIXES[name]:
                    raise EpcisError(
                        f"{path}.{name}",
                        f"redefines the protected EPCIS prefix {name} "
                        f"(which is {_STANDARD_PREFIXES[name]})",
                    )
                if name not in _STANDARD_PREFIXES and name in _epcis_terms():
                    raise EpcisError(f"{path}.{name}", "redefines a protected EPCIS term")
                prefixes[name] = iri
        else:
            raise EpcisError(path, "must be a context URL or an object of prefix definitions")
    if not has_epcis:
        raise EpcisError(where, f"does not name the EPCIS 2.0 context {EPCIS_CONTEXT}")
    return prefixes


_loaded_contexts: dict[str, Any] = {}


@functools.cache
def _hashing() -> tuple[ModuleType, ModuleType, ModuleType, Any]:
    """``hash_generator``, ``json_to_py`` and ``jsonld``, and the package's context loader.

    Imported on first use: the packages (and the JSON-LD machinery under them) cost a node
    about 20 MB, and most nodes never hash an EPCIS event.
    """
    from epcis_event_hash_generator import file_document_loader, hash_generator, json_to_py
    from pyld import jsonld  # type: ignore[import-untyped]

    return hash_generator, json_to_py, jsonld, file_document_loader.file_document_loader()


def _offline_document_loader(url: str, options: Any = None) -> dict[str, Any]:
    """A pyld document loader that serves the shipped EPCIS contexts and refuses everything else.

    Each context file is read once (through the package's own loader, which never goes to the
    network for these URLs) and handed out as a fresh copy.
    """
    _, _, jsonld, package_loader = _hashing()
    target = _CONTEXT_COPIES.get(url) if type(url) is str else None
    if target is None:
        raise jsonld.JsonLdError(
            f"refusing to load {url!r}: Rantai never fetches JSON-LD documents",
            "jsonld.LoadDocumentError",
            code="loading document failed",
        )
    if target not in _loaded_contexts:
        _loaded_contexts[target] = package_loader(target)["document"]
    return {
        "contentType": "application/ld+json",
        "contextUrl": None,
        "documentUrl": url,
        "document": copy.deepcopy(_loaded_contexts[target]),
    }


_HASH_LOCK = threading.Lock()


@functools.cache
def _epcis_terms() -> frozenset[str]:
    """The terms of the EPCIS 2.0 context (all @protected: a document may not redefine them)."""
    with _HASH_LOCK:
        context = _offline_document_loader(EPCIS_CONTEXT)["document"]["@context"]
    return frozenset(context)


def _prehash(event: Mapping[str, Any], context: Any) -> str:
    """The pre-hash string of one event, from epcis-event-hash-generator (under a lock).

    The package keeps module-level state (a namespace table that would otherwise leak from one
    document into the next, the join string) and mutates its input, so every call gets a fresh
    deep copy, a cleared namespace table and our offline document loader.
    """
    hash_generator, json_to_py, jsonld, _ = _hashing()
    document = copy.deepcopy(
        {"@context": context, "type": "EPCISDocument", "epcisBody": {"eventList": [event]}}
    )
    with _HASH_LOCK:
        previous_loader = jsonld.get_document_loader()
        jsonld.set_document_loader(_offline_document_loader)
        json_to_py._namespaces.clear()
        try:
            events = json_to_py.event_list_from_epcis_document_json(document)
            prehashes = hash_generator.derive_prehashes_from_events(events, "")
        finally:
            json_to_py._namespaces.clear()
            jsonld.set_document_loader(previous_loader)
    if type(prehashes) is not list or len(prehashes) != 1 or type(prehashes[0]) is not str:
        # derive_prehashes_from_events logs and skips an event it cannot process.
        raise EpcisError("event", "epcis-event-hash-generator could not process this event")
    return prehashes[0]


def event_hash_id(epcis_event: Mapping[str, Any], context: Any) -> str:
    """The CBV 2.0 event hash id of one EPCIS event, e.g. ``ni:///sha-256;…?ver=CBV2.0``.

    Computed with the ``epcis-event-hash-generator`` package over the event as given (the
    algorithm itself leaves out ``eventID``, ``recordTime`` and ``errorDeclaration``), with the
    ``@context`` of the document the event belongs to. Nothing is fetched from the network.

    Args:
        epcis_event: the event (a JSON object).
        context: the ``@context`` of its document: the EPCIS 2.0 context URL and inline
            ``{prefix: IRI}`` objects.

    Raises:
        EpcisError: an unsupported context, or an event the package cannot hash.
    """
    _context_prefixes(context)
    try:
        prehash = _prehash(epcis_event, context)
        hashes = _hashing()[0].calculate_hashes_from_pre_hashes([prehash], "sha256")
    except EpcisError:
        raise
    except Exception as e:  # a foreign library met hostile input: wrap whatever it raised
        raise EpcisError(
            "event", f"cannot compute the event hash: {type(e).__name__}: {_shown(str(e))}"
        ) from e
    return str(hashes[0])


# --- export ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommittedLotEvent:
    """A committed ledger event with where it sits in the log.

    Attributes:
        envelope: the event.
        index: its global log index.
        block_time: the time of its block (RFC 3339 UTC), the EPCIS ``recordTime``.
    """

    envelope: Envelope
    index: int
    block_time: str


class LotDirectory(Protocol):
    """What export needs to know beyond the events (any ledger ``StateView`` will do).

    A lot's GTIN and unit and a shipment's sender never change once recorded, so the current
    state answers for past events too.
    """

    def lot(self, lot_id: str) -> Lot | None: ...
    def shipment(self, shipment_id: str) -> Shipment | None: ...


def _number(quantity: Decimal | str) -> int | float:
    """A ledger quantity as a JSON number, exactly or not at all."""
    value = Decimal(quantity)
    if value == value.to_integral_value():
        return int(value)
    number = float(value)
    if Decimal(repr(number)) != value:
        raise EncodingError(
            f"quantity {quantity} has more significant digits than a JSON number carries exactly"
        )
    return number


@dataclass
class _Exporter:
    network: str
    lots: LotDirectory

    def lot(self, lot_id: str) -> Lot:
        found = self.lots.lot(lot_id)
        if found is None:
            raise EncodingError(f"lot {lot_id} is unknown to the state the export reads")
        return found

    def shipment(self, shipment_id: str) -> Shipment:
        found = self.lots.shipment(shipment_id)
        if found is None:
            raise EncodingError(f"shipment {shipment_id} is unknown to the state the export reads")
        return found

    def epc_class(self, lot_id: str) -> str:
        return lot_epc_class(self.network, lot_id, self.lot(lot_id).gtin)

    def element(
        self, lot_id: str, quantity: Decimal | str | None = None, uom: str | None = None
    ) -> dict[str, Any]:
        element: dict[str, Any] = {"epcClass": self.epc_class(lot_id)}
        if quantity is not None:
            element["quantity"] = _number(quantity)
            element["uom"] = UNITS[uom if uom is not None else self.lot(lot_id).uom]
        return element

    def party(self, kind: str, party: str) -> dict[str, str]:
        return {"type": "owning_party", kind: party_urn(self.network, party)}

    def shipment_transaction(self, shipment_id: str) -> dict[str, str]:
        return {"type": "desadv", "bizTransaction": shipment_urn(self.network, shipment_id)}

    def create(self, p: Mapping[str, Any]) -> dict[str, Any]:
        ilmd: dict[str, Any] = {
            "cbvmda:harvestStartDate": p["harvested_on"],
            "cbvmda:harvestEndDate": p["harvested_on"],
            "rantai:commodity": p["commodity"],
        }
        if "plot_id" in p:
            ilmd["rantai:plotID"] = p["plot_id"]
        return {
            "type": "ObjectEvent",
            "action": "ADD",
            "bizStep": "commissioning",
            "disposition": "active",
            "quantityList": [
                {
                    "epcClass": lot_epc_class(self.network, p["lot_id"], p.get("gtin")),
                    "quantity": _number(p["quantity"]),
                    "uom": UNITS[p["uom"]],
                }
            ],
            "sourceList": [self.party("source", p["producer"])],
            "ilmd": ilmd,
        }

    def split(self, p: Mapping[str, Any]) -> dict[str, Any]:
        uom = self.lot(p["lot_id"]).uom
        taken = sum((Decimal(o["quantity"]) for o in p["outputs"]), Decimal(0))
        return {
            "type": "TransformationEvent",
            "inputQuantityList": [self.element(p["lot_id"], taken, uom)],
            "outputQuantityList": [
                self.element(o["lot_id"], o["quantity"], uom) for o in p["outputs"]
            ],
            "bizStep": "repackaging",
        }

    def merge(self, p: Mapping[str, Any]) -> dict[str, Any]:
        # The ledger event names whole lots; how much each held is state, not event data.
        return {
            "type": "TransformationEvent",
            "inputQuantityList": [self.element(lot_id) for lot_id in p["inputs"]],
            "outputQuantityList": [self.element(p["lot_id"])],
            "bizStep": "repackaging",
        }

    def transform(self, p: Mapping[str, Any]) -> dict[str, Any]:
        commodities = [o["commodity"] for o in p["outputs"]]
        return {
            "type": "TransformationEvent",
            "inputQuantityList": [self.element(i["lot_id"], i["quantity"]) for i in p["inputs"]],
            "outputQuantityList": [
                self.element(o["lot_id"], o["quantity"], o["uom"]) for o in p["outputs"]
            ],
            "bizStep": "commissioning",
            "disposition": "active",
            "ilmd": {
                "rantai:commodity": commodities[0] if len(set(commodities)) == 1 else commodities
            },
            "rantai:process": p["process"],
        }

    def ship(self, p: Mapping[str, Any]) -> dict[str, Any]:
        shipment = self.shipment(p["shipment_id"])
        return {
            "type": "ObjectEvent",
            "action": "OBSERVE",
            "bizStep": "shipping",
            "disposition": "in_transit",
            "quantityList": [self.element(p["lot_id"])],
            "bizTransactionList": [self.shipment_transaction(p["shipment_id"])],
            "sourceList": [self.party("source", shipment.sender)],
            "destinationList": [self.party("destination", p["to"])],
        }

    def receive(self, p: Mapping[str, Any]) -> dict[str, Any]:
        shipment = self.shipment(p["shipment_id"])
        return {
            "type": "ObjectEvent",
            "action": "OBSERVE",
            "bizStep": "receiving",
            "quantityList": [self.element(p["lot_id"], p["quantity_received"])],
            "bizTransactionList": [self.shipment_transaction(p["shipment_id"])],
            "sourceList": [self.party("source", shipment.sender)],
            "destinationList": [self.party("destination", shipment.to)],
        }

    def certify(self, p: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "type": "ObjectEvent",
            "certificationInfo": _certificate_urn(self.network, p["scheme"], p["certificate"]),
            "action": "OBSERVE",
            "bizStep": "inspecting",
            "disposition": "conformant",
            "quantityList": [self.element(p["lot_id"])],
            "rantai:certificationScheme": p["scheme"],
            "rantai:certificate": p["certificate"],
            "rantai:certificationValidUntil": p["valid_until"],
        }


_BUILDERS: Mapping[str, Callable[[_Exporter, Mapping[str, Any]], dict[str, Any]]] = {
    "lot.create": _Exporter.create,
    "lot.split": _Exporter.split,
    "lot.merge": _Exporter.merge,
    "lot.transform": _Exporter.transform,
    "lot.ship": _Exporter.ship,
    "lot.receive": _Exporter.receive,
    "lot.certify": _Exporter.certify,
}


def export_event(
    committed: CommittedLotEvent, *, network: str, lots: LotDirectory
) -> dict[str, Any] | None:
    """One committed event as an EPCIS 2.0 event, or ``None`` if it is not a ``lot.*`` event.

    The mapping is the table in ``docs/epcis.md``. ``eventID`` is the CBV 2.0 hash id of the
    event (computed over the event without it, in :data:`EXPORT_CONTEXT`).

    Raises:
        EncodingError: the event is of another network, names a lot or shipment the directory
            does not know, or holds a quantity a JSON number cannot carry exactly.
    """
    envelope = committed.envelope
    build = _BUILDERS.get(envelope.type)
    if build is None:
        return None
    if envelope.body["network"] != network:
        raise EncodingError(
            f"event {envelope.event_id} belongs to network {envelope.body['network']!r}"
        )
    payload = envelope.payload
    specific = build(_Exporter(network, lots), payload)
    event: dict[str, Any] = {
        "type": specific.pop("type"),
        "eventTime": envelope.body["created_at"],
        "eventTimeZoneOffset": "+00:00",
        "recordTime": committed.block_time,
        **specific,
        "rantai:eventID": envelope.event_id,
        "rantai:logIndex": committed.index,
        "rantai:eventType": envelope.type,
    }
    if "epcis" in payload:
        event["rantai:capturedFrom"] = payload["epcis"]
    context = list(EXPORT_CONTEXT)
    return {"eventID": event_hash_id(event, context), **event}


def export_document(
    events: Iterable[CommittedLotEvent], *, network: str, lots: LotDirectory, created: str
) -> dict[str, Any]:
    """Committed ledger events as one EPCIS 2.0 JSON-LD ``EPCISDocument`` (a pure function).

    Only ``lot.*`` events become EPCIS events; the others are skipped.

    Args:
        events: committed events, in log order.
        network: the network id (every event must belong to it).
        lots: where lots' GTINs and units and shipments' senders are looked up (the events
            themselves do not carry them), e.g. the node's state view.
        created: the document's ``creationDate`` (RFC 3339).

    Returns:
        The document, valid against the EPCIS 2.0 JSON Schema.

    Raises:
        EncodingError: see :func:`export_event`.
    """
    event_list = [
        exported
        for committed in events
        if (exported := export_event(committed, network=network, lots=lots)) is not None
    ]
    return {
        "@context": [dict(item) if isinstance(item, Mapping) else item for item in EXPORT_CONTEXT],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": created,
        "epcisBody": {"eventList": event_list},
    }


# --- capture ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LotReference:
    """A lot a captured EPCIS event names, with what the event says about it.

    A ledger payload names existing lots by id only; the GTIN in the EPC class and the unit of a
    quantity cannot go into it. The caller should check them against the lot before signing.

    Attributes:
        lot_id: the ledger lot id.
        gtin: the GTIN-14 of a GS1 EPC class, ``None`` for a ``urn:rantai`` class.
        uom: the ledger unit of the quantity the event states for this lot, if any.
    """

    lot_id: str
    gtin: str | None
    uom: str | None


@dataclass(frozen=True, slots=True)
class CapturedEvent:
    """One EPCIS event mapped to a ledger event.

    Attributes:
        position: its index in the document's ``eventList``.
        type: the ledger event type (``lot.create``, ``lot.transform``, ``lot.ship``,
            ``lot.receive``).
        payload: the payload, exactly as ``ledger.rules.SCHEMAS`` expects it, with ``epcis``.
        epcis: the CBV 2.0 event hash id of the EPCIS event (also ``payload["epcis"]``).
        lots: every lot the event names (see :class:`LotReference`).
        body: the ledger event body to sign: ``{v, network, type, nonce, created_at,
            payload}``, with the hash's hex digits as nonce.
    """

    position: int
    type: str
    payload: dict[str, Any]
    epcis: str
    lots: tuple[LotReference, ...]
    body: dict[str, Any]


def _check_tree(value: Any) -> None:
    """Refuse what is not plain, bounded JSON: depth, size, types, unsafe numbers, surrogates."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    count = 0
    size = 0
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > _MAX_VALUES or depth > _MAX_DEPTH:
            raise EpcisError(
                "(document)",
                f"too large: at most {_MAX_VALUES} values nested at most {_MAX_DEPTH} deep",
            )
        kind = type(item)
        if kind is str:
            size += len(item)
            _check_text(item)
        elif kind is dict:
            for key, child in item.items():
                if type(key) is not str:
                    raise EpcisError("(document)", "object keys must be strings")
                size += len(key)
                _check_text(key)
                stack.append((child, depth + 1))
        elif kind is list:
            stack.extend((child, depth + 1) for child in item)
        elif kind is int:
            if not -_MAX_SAFE_INTEGER <= item <= _MAX_SAFE_INTEGER:
                raise EpcisError("(document)", "integers must lie within ±(2^53 - 1)")
        elif kind is float:
            if not math.isfinite(item):
                raise EpcisError("(document)", "NaN and infinite numbers are not JSON")
        elif item is not None and kind is not bool:
            raise EpcisError("(document)", f"{kind.__name__} is not a JSON value")
        if size > MAX_DOCUMENT_BYTES:
            raise EpcisError("(document)", f"larger than {MAX_DOCUMENT_BYTES} bytes")


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise EpcisError("(document)", "a string holds a lone surrogate") from e


def _load_document(document: Any) -> dict[str, Any]:
    if isinstance(document, bytes | bytearray):
        if len(document) > MAX_DOCUMENT_BYTES:
            raise EpcisError("(document)", f"larger than {MAX_DOCUMENT_BYTES} bytes")
        document = parse_json(bytes(document))
    if type(document) is not dict:
        raise EpcisError("(document)", "an EPCIS document must be a JSON object")
    _check_tree(document)
    return document


def _cbv_word(value: Any, kind: str, words: frozenset[str], path: str) -> str:
    """A CBV value as its bare word (``shipping``), or another URI unchanged.

    Accepts the bare word, ``https://ref.gs1.org/cbv/{Kind}-word``, the ``cbv:{Kind}-word`` CURIE,
    ``https://ns.gs1.org/cbv/{Kind}-word`` and ``urn:epcglobal:cbv:{kind}:word``.

    Raises:
        EpcisError: not a string, a bare word CBV does not define, or a CBV URI for an unknown
            word.
    """
    if type(value) is not str or not value:
        raise EpcisError(path, f"must be a CBV value or a URI, got {_shown(value)}")
    for prefix in (
        f"https://ref.gs1.org/cbv/{kind}-",
        f"https://ns.gs1.org/cbv/{kind}-",
        f"cbv:{kind}-",
        f"urn:epcglobal:cbv:{kind.lower()}:",
    ):
        if value.startswith(prefix):
            word = value[len(prefix) :]
            if word not in words:
                raise EpcisError(path, f"{_shown(value)} is not a CBV 2.0 value")
            return word
    if ":" in value:
        if _IRI.fullmatch(value) is None:
            raise EpcisError(path, f"{_shown(value)} is not a URI")
        return value
    if value not in words:
        raise EpcisError(
            path, f"{_shown(value)} is not a CBV 2.0 value (non-CBV values must be URIs)"
        )
    return value


def _quantity(value: Any, path: str, *, positive: bool) -> str:
    """An EPCIS quantity (a JSON number) as a ledger decimal string."""
    if type(value) is int:
        if abs(value) > 10**16:
            raise EpcisError(path, f"quantity {value} is too large")
        number = Decimal(value)
    elif type(value) is float and math.isfinite(value):
        number = Decimal(repr(value))
    else:
        raise EpcisError(path, f"quantity must be a finite JSON number, got {_shown(value)}")
    if number < 0:
        raise EpcisError(path, f"quantity {value} is negative")
    if positive and number == 0:
        raise EpcisError(path, "quantity must be greater than 0")
    try:
        return format_quantity(number)
    except EncodingError as e:
        raise EpcisError(
            path, f"quantity {value} does not fit the ledger (at most 6 decimals, < 10^15)"
        ) from e


def _unit(value: Any, path: str) -> str:
    unit = _UNIT_OF_CODE.get(value) if type(value) is str else None
    if unit is None:
        known = ", ".join(f"{code} ({name})" for name, code in UNITS.items())
        raise EpcisError(path, f"unit {_shown(value)} is not one the ledger keeps: {known}")
    return unit


def _parse_event_time(value: Any, path: str) -> _dt.datetime:
    match = _TIME.fullmatch(value) if type(value) is str else None
    if match is None:
        raise EpcisError(path, f"must be an RFC 3339 time with an offset, got {_shown(value)}")
    fraction = (match.group(7) or ".0")[1:7].ljust(6, "0")
    offset = match.group(8)
    try:
        zone = (
            _dt.UTC
            if offset == "Z"
            else _dt.timezone(
                (-1 if offset[0] == "-" else 1)
                * _dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
            )
        )
        year, month, day, hour, minute, second = (int(match.group(g)) for g in range(1, 7))
        return _dt.datetime(year, month, day, hour, minute, second, int(fraction), tzinfo=zone)
    except ValueError as e:
        raise EpcisError(path, f"{_shown(value)} is not a real time: {e}") from e


@dataclass
class _EventReader:
    """Reads one EPCIS event for capture; every refusal names the event and the field."""

    position: int
    event: dict[str, Any]
    prefixes: Mapping[str, str]
    network: str

    def path(self, suffix: str = "") -> str:
        return f"epcisBody.eventList[{self.position}]{suffix}"

    def error(self, suffix: str, detail: str) -> EpcisError:
        return EpcisError(self.path(suffix), detail, self.position)

    def expand(self, key: str) -> str | None:
        """The IRI a (compact) key stands for, or ``None`` for a bare term."""
        prefix, sep, rest = key.partition(":")
        if not sep or _IRI.fullmatch(key) is None:
            return None
        if prefix in self.prefixes:
            return self.prefixes[prefix] + rest
        return key

    def text(self, value: Any, suffix: str) -> str:
        if type(value) is not str or not value:
            raise self.error(suffix, f"must be a non-empty string, got {_shown(value)}")
        return value

    def items(self, name: str, *, maximum: int = _MAX_LIST) -> list[Any]:
        """The list ``name`` (empty when absent)."""
        value = self.event.get(name, [])
        if type(value) is not list or len(value) > maximum:
            raise self.error(f".{name}", f"must be a list of at most {maximum} items")
        return value

    # -- checks every captured event goes through --------------------------------------------

    def check_common(self, kind: str, capture_time: _dt.datetime) -> None:
        event = self.event
        for key in event:
            if key == "@context":
                raise self.error(
                    ".@context",
                    "an event-level @context is not supported; declare prefixes in the "
                    "document's @context",
                )
            if key not in _EVENT_FIELDS[kind] and self.expand(key) is None:
                raise self.error(
                    f".{key}",
                    f"is not a field of an {kind}; extension fields need a namespace "
                    "(prefix:name with a declared prefix, or an absolute IRI)",
                )
        if "errorDeclaration" in event:
            raise self.error(
                ".errorDeclaration",
                "an error declaration corrects an earlier event; the ledger is append-only "
                "and records corrections as new events",
            )
        for name in ("eventTime", "eventTimeZoneOffset"):
            if name not in event:
                raise self.error(f".{name}", "is missing")
        event_time = _parse_event_time(event["eventTime"], self.path(".eventTime"))
        if event_time - capture_time > MAX_EVENT_CLOCK_SKEW:  # a sum overflows near year 9999
            raise self.error(".eventTime", "lies more than 5 minutes after the capture time")
        offset = event["eventTimeZoneOffset"]
        if type(offset) is not str or _OFFSET.fullmatch(offset) is None:
            raise self.error(".eventTimeZoneOffset", f"must be like +07:00, got {_shown(offset)}")
        if "recordTime" in event:
            _parse_event_time(event["recordTime"], self.path(".recordTime"))
        if "eventID" in event and (
            type(event["eventID"]) is not str or _IRI.fullmatch(event["eventID"]) is None
        ):
            raise self.error(".eventID", f"must be a URI, got {_shown(event['eventID'])}")
        if "bizStep" in event:
            _cbv_word(event["bizStep"], "BizStep", _BIZ_STEPS, self.path(".bizStep"))
        if "disposition" in event:
            _cbv_word(event["disposition"], "Disp", _DISPOSITIONS, self.path(".disposition"))
        self.check_certification_info()
        for name in _QUANTITY_LISTS:
            for i, element in enumerate(self.items(name)):
                self.check_quantity_element(element, f".{name}[{i}]")
        for name in _EPC_LISTS:
            for i, epc in enumerate(self.items(name)):
                if type(epc) is not str or _IRI.fullmatch(epc) is None:
                    raise self.error(f".{name}[{i}]", f"must be a URI, got {_shown(epc)}")
        for name, key in (("sourceList", "source"), ("destinationList", "destination")):
            for i, entry in enumerate(self.items(name)):
                self.check_entry(entry, f".{name}[{i}]", key, "SDT", _SOURCE_TYPES, True)
        for i, entry in enumerate(self.items("bizTransactionList")):
            self.check_entry(
                entry,
                f".bizTransactionList[{i}]",
                "bizTransaction",
                "BTT",
                _TRANSACTION_TYPES,
                False,
            )
        if "ilmd" in event:
            self.check_ilmd(kind)

    def check_certification_info(self) -> None:
        if "certificationInfo" not in self.event:
            return
        value = self.event["certificationInfo"]
        values = value if type(value) is list else [value]
        for i, item in enumerate(values):
            if type(item) is not str or _IRI.fullmatch(item) is None:
                where = f".certificationInfo[{i}]" if type(value) is list else ".certificationInfo"
                raise self.error(where, f"must be a URI, got {_shown(item)}")

    def check_quantity_element(self, element: Any, suffix: str) -> None:
        if type(element) is not dict:
            raise self.error(suffix, "must be an object {epcClass, quantity, uom}")
        unknown = sorted(element.keys() - {"epcClass", "quantity", "uom"})
        if unknown:
            raise self.error(f"{suffix}.{unknown[0]}", "is not a field of a quantity element")
        if "epcClass" not in element:
            raise self.error(f"{suffix}.epcClass", "is missing")
        self.text(element["epcClass"], f"{suffix}.epcClass")
        if "quantity" in element:
            quantity = element["quantity"]
            if type(quantity) not in (int, float):
                raise self.error(
                    f"{suffix}.quantity", f"must be a JSON number, got {_shown(quantity)}"
                )
        if "uom" in element:
            uom = element["uom"]
            if type(uom) is not str or _UOM.fullmatch(uom) is None:
                raise self.error(
                    f"{suffix}.uom", f"must be a UN/ECE Rec. 20 code, got {_shown(uom)}"
                )
            if "quantity" not in element:
                raise self.error(f"{suffix}.uom", "a unit needs a quantity")

    def check_entry(
        self,
        entry: Any,
        suffix: str,
        key: str,
        kind: str,
        words: frozenset[str],
        type_required: bool,
    ) -> None:
        if type(entry) is not dict:
            raise self.error(suffix, f"must be an object {{type, {key}}}")
        unknown = sorted(entry.keys() - {"type", key})
        if unknown:
            raise self.error(f"{suffix}.{unknown[0]}", f"is not a field of a {key} entry")
        if key not in entry:
            raise self.error(f"{suffix}.{key}", "is missing")
        if type(entry[key]) is not str or _IRI.fullmatch(entry[key]) is None:
            raise self.error(f"{suffix}.{key}", f"must be a URI, got {_shown(entry[key])}")
        if "type" in entry:
            _cbv_word(entry["type"], kind, words, self.path(f"{suffix}.type"))
        elif type_required:
            raise self.error(f"{suffix}.type", "is missing")

    def check_ilmd(self, kind: str) -> None:
        ilmd = self.event["ilmd"]
        if type(ilmd) is not dict:
            raise self.error(".ilmd", "must be an object")
        if kind == "ObjectEvent" and self.event.get("action") != "ADD":
            raise self.error(".ilmd", "instance/lot master data only goes with action ADD")
        for key in ilmd:
            if self.expand(key) is None:
                raise self.error(
                    f".ilmd.{key}",
                    "ILMD fields need a namespace (prefix:name with a declared prefix, or an "
                    "absolute IRI)",
                )

    # -- reading what the mapping needs -----------------------------------------------------

    def lookup(self, container: Mapping[str, Any], iri: str, where: str) -> tuple[str, Any] | None:
        """The (key, value) of ``container`` whose key expands to ``iri``, if any."""
        found = [(key, value) for key, value in container.items() if self.expand(key) == iri]
        if len(found) > 1:
            raise self.error(where, f"names <{iri}> twice ({', '.join(k for k, _ in found)})")
        return found[0] if found else None

    def biz_step(self) -> str | None:
        if "bizStep" not in self.event:
            return None
        return _cbv_word(self.event["bizStep"], "BizStep", _BIZ_STEPS, self.path(".bizStep"))

    def lot_element(
        self, element: dict[str, Any], suffix: str, *, quantity: str
    ) -> tuple[LotClass, str | None, str | None]:
        """A quantity element: its lot, quantity (ledger string) and unit.

        ``quantity`` is ``"required"``, ``"positive"`` (required and > 0) or ``"absent"``.
        """
        lot = parse_lot_epc_class(
            self.network, element["epcClass"], self.path(f"{suffix}.epcClass")
        )
        if quantity == "absent":
            if "quantity" in element:
                raise self.error(
                    f"{suffix}.quantity",
                    "lot.ship moves the whole lot, whose quantity only the ledger knows: omit "
                    "quantity (split the lot first to ship part of it)",
                )
            return lot, None, None
        if "quantity" not in element:
            raise self.error(f"{suffix}.quantity", "is missing")
        if "uom" not in element:
            raise self.error(f"{suffix}.uom", "is missing (without a unit a quantity counts items)")
        amount = _quantity(
            element["quantity"], self.path(f"{suffix}.quantity"), positive=quantity == "positive"
        )
        return lot, amount, _unit(element["uom"], self.path(f"{suffix}.uom"))

    def only_lots(self, epcs: str, quantities: str) -> list[Any]:
        """The elements of quantity list ``quantities``; no instance-level EPCs in ``epcs``."""
        if self.items(epcs):
            raise self.error(
                f".{epcs}",
                "instance-level EPCs cannot be captured: the ledger tracks lots, named in "
                f"{quantities} by their EPC class",
            )
        elements = self.items(quantities)
        if not elements:
            raise self.error(
                f".{quantities}",
                "is missing or empty: the ledger tracks lots, named here by their EPC class",
            )
        return elements

    def single_lot(self, *, quantity: str) -> tuple[LotClass, str | None, str | None]:
        elements = self.only_lots("epcList", "quantityList")
        if len(elements) != 1:
            raise self.error(".quantityList", "must name exactly one lot for this event")
        return self.lot_element(elements[0], ".quantityList[0]", quantity=quantity)

    def one_party(self, list_name: str, key: str) -> str:
        """The party of the single ``owning_party`` entry of ``sourceList``/``destinationList``."""
        found = [
            (i, entry[key])
            for i, entry in enumerate(self.items(list_name))
            if _cbv_word(entry["type"], "SDT", _SOURCE_TYPES, self.path(f".{list_name}[{i}].type"))
            == "owning_party"
        ]
        if len(found) != 1:
            raise self.error(
                f".{list_name}",
                f"needs exactly one entry of type owning_party (urn:rantai:{self.network}:"
                f"party:<party id>), found {len(found)}",
            )
        i, urn = found[0]
        return parse_party_urn(self.network, urn, self.path(f".{list_name}[{i}].{key}"))

    def shipment(self) -> str:
        found = [
            (i, entry["bizTransaction"])
            for i, entry in enumerate(self.items("bizTransactionList"))
            if "type" in entry
            and _cbv_word(
                entry["type"],
                "BTT",
                _TRANSACTION_TYPES,
                self.path(f".bizTransactionList[{i}].type"),
            )
            == "desadv"
        ]
        if len(found) != 1:
            raise self.error(
                ".bizTransactionList",
                "needs exactly one business transaction of type desadv naming the shipment "
                f"(urn:rantai:{self.network}:shipment:<shipment id>), found {len(found)}",
            )
        i, urn = found[0]
        return parse_shipment_urn(
            self.network, urn, self.path(f".bizTransactionList[{i}].bizTransaction")
        )

    def ilmd(self) -> dict[str, Any]:
        ilmd = self.event.get("ilmd")
        if ilmd is None:
            raise self.error(".ilmd", "is missing")
        assert type(ilmd) is dict  # check_ilmd ran
        return ilmd

    def ilmd_text(
        self, ilmd: Mapping[str, Any], iri: str, pattern: re.Pattern[str], expected: str
    ) -> str | None:
        found = self.lookup(ilmd, iri, ".ilmd")
        if found is None:
            return None
        key, value = found
        if type(value) is not str or pattern.fullmatch(value) is None:
            raise self.error(f".ilmd.{key}", f"must be {expected}, got {_shown(value)}")
        return value

    def harvest_date(self, ilmd: Mapping[str, Any]) -> str:
        start = self.lookup(ilmd, _HARVEST_START, ".ilmd")
        if start is None:
            raise self.error(
                ".ilmd.cbvmda:harvestStartDate", "is missing (the harvest date, YYYY-MM-DD)"
            )
        key, day = start
        try:
            parse_date(day, self.path(f".ilmd.{key}"))
        except EncodingError as e:
            raise self.error(f".ilmd.{key}", str(e)) from e
        end = self.lookup(ilmd, _HARVEST_END, ".ilmd")
        if end is not None and end[1] != day:
            raise self.error(
                f".ilmd.{end[0]}",
                "the ledger records one harvest day: harvestEndDate must equal harvestStartDate",
            )
        return str(day)


def _lot_create(reader: _EventReader) -> tuple[dict[str, Any], list[LotReference]]:
    lot, quantity, unit = reader.single_lot(quantity="positive")
    producer = reader.one_party("sourceList", "source")
    if "/" not in producer:
        raise reader.error(
            ".sourceList",
            f"the owning party must be a producer member <org>/<local>, not {producer}",
        )
    ilmd = reader.ilmd()
    commodity = reader.ilmd_text(ilmd, _COMMODITY, COMMODITY, "a commodity like 'coffee'")
    if commodity is None:
        raise reader.error(".ilmd.rantai:commodity", f"is missing (the lot's commodity){_DECLARE}")
    payload: dict[str, Any] = {
        "lot_id": lot.lot_id,
        "commodity": commodity,
        "quantity": quantity,
        "uom": unit,
        "producer": producer,
        "harvested_on": reader.harvest_date(ilmd),
    }
    plot_id = reader.ilmd_text(ilmd, _PLOT, OBJECT_ID, "a plot id")
    if plot_id is not None:
        payload["plot_id"] = plot_id
    if lot.gtin is not None:
        payload["gtin"] = lot.gtin
    return payload, [LotReference(lot.lot_id, lot.gtin, unit)]


def _lot_ship(reader: _EventReader) -> tuple[dict[str, Any], list[LotReference]]:
    lot, _, _ = reader.single_lot(quantity="absent")
    if not reader.items("destinationList"):
        raise reader.error(".destinationList", "is missing: a shipment needs its receiver")
    payload = {
        "lot_id": lot.lot_id,
        "shipment_id": reader.shipment(),
        "to": reader.one_party("destinationList", "destination"),
    }
    return payload, [LotReference(lot.lot_id, lot.gtin, None)]


def _lot_receive(reader: _EventReader) -> tuple[dict[str, Any], list[LotReference]]:
    lot, quantity, unit = reader.single_lot(quantity="required")
    payload = {
        "lot_id": lot.lot_id,
        "shipment_id": reader.shipment(),
        "quantity_received": quantity,
    }
    return payload, [LotReference(lot.lot_id, lot.gtin, unit)]


def _lot_transform(reader: _EventReader) -> tuple[dict[str, Any], list[LotReference]]:
    references: list[LotReference] = []
    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for side, epcs, name, target in (
        ("input", "inputEPCList", "inputQuantityList", inputs),
        ("output", "outputEPCList", "outputQuantityList", outputs),
    ):
        for i, element in enumerate(reader.only_lots(epcs, name)):
            lot, quantity, unit = reader.lot_element(element, f".{name}[{i}]", quantity="positive")
            if lot.lot_id in seen:
                raise reader.error(
                    f".{name}[{i}].epcClass", f"lot {lot.lot_id} appears twice in the event"
                )
            seen.add(lot.lot_id)
            references.append(LotReference(lot.lot_id, lot.gtin, unit))
            item = {"lot_id": lot.lot_id, "quantity": quantity}
            if side == "output":
                item["uom"] = unit
            target.append(item)
    ilmd = reader.ilmd()
    found = reader.lookup(ilmd, _COMMODITY, ".ilmd")
    if found is None:
        raise reader.error(
            ".ilmd.rantai:commodity",
            f"is missing (the outputs' commodity, or one per output){_DECLARE}",
        )
    key, value = found
    commodities = value if type(value) is list else [value] * len(outputs)
    if len(commodities) != len(outputs):
        raise reader.error(
            f".ilmd.{key}", f"lists {len(commodities)} commodities for {len(outputs)} outputs"
        )
    for i, (output, commodity) in enumerate(zip(outputs, commodities, strict=True)):
        if type(commodity) is not str or COMMODITY.fullmatch(commodity) is None:
            where = f".ilmd.{key}[{i}]" if type(value) is list else f".ilmd.{key}"
            raise reader.error(where, f"must be a commodity like 'coffee', got {_shown(commodity)}")
        output["commodity"] = commodity
    payload = {"inputs": inputs, "outputs": outputs, "process": _process(reader)}
    return payload, references


def _process(reader: _EventReader) -> str:
    """``rantai:process``, else ``transformationID``, else ``bizStep``: what the process was."""
    found = reader.lookup(reader.event, _PROCESS, "")
    if found is not None:
        key, value = found
        where = f".{key}"
    elif "transformationID" in reader.event:
        value, where = reader.event["transformationID"], ".transformationID"
    elif "bizStep" in reader.event:
        value, where = reader.biz_step(), ".bizStep"
    else:
        raise reader.error(
            ".rantai:process",
            f"is missing (or a transformationID or a bizStep to name the process){_DECLARE}",
        )
    if (
        type(value) is not str
        or not value.strip()
        or len(value) > 200
        or any(ord(c) < 0x20 or c == "\x7f" for c in value)
    ):
        raise reader.error(
            where, f"must be a single-line text of 1-200 characters, got {_shown(value)}"
        )
    return value


_Mapper = Callable[[_EventReader], tuple[dict[str, Any], list[LotReference]]]


def _mapper(reader: _EventReader, kind: str) -> tuple[str, _Mapper]:
    """Which ledger event an EPCIS event becomes (DESIGN.md §6), or refuse it."""
    if kind == "TransformationEvent":
        return "lot.transform", _lot_transform
    if "action" not in reader.event:
        raise reader.error(".action", "is missing")
    action = reader.event["action"]
    if action not in ("ADD", "OBSERVE", "DELETE"):
        raise reader.error(".action", f"must be ADD, OBSERVE or DELETE, got {_shown(action)}")
    step = reader.biz_step()
    if action == "ADD" and step == "commissioning":
        return "lot.create", _lot_create
    if action == "OBSERVE" and step == "shipping":
        return "lot.ship", _lot_ship
    if action == "OBSERVE" and step == "receiving":
        return "lot.receive", _lot_receive
    raise reader.error(
        ".bizStep" if action != "DELETE" else ".action",
        f"an ObjectEvent with action {action} and bizStep {step or '(none)'} has no ledger "
        "event; captured are ADD + commissioning (lot.create), OBSERVE + shipping (lot.ship) "
        "and OBSERVE + receiving (lot.receive)",
    )


def _check_payload(reader: _EventReader, kind: str, payload: Mapping[str, Any]) -> None:
    """The mapped payload must pass the ledger's own field checks (a last safety net)."""
    required, optional = SCHEMAS[kind]
    unknown = sorted(payload.keys() - required.keys() - optional.keys())
    missing = sorted(required.keys() - payload.keys())
    if unknown or missing:
        raise reader.error(
            "", f"mapped {kind} payload has fields {unknown} extra, {missing} missing"
        )
    try:
        for name, check in (*required.items(), *optional.items()):
            if name in payload:
                check(payload[name], f"payload.{name}")
    except RuleViolation as e:
        raise reader.error("", f"the mapped {kind} payload is refused: {e.detail}") from e


def _capture_event(
    position: int,
    event: Any,
    *,
    context: Any,
    prefixes: Mapping[str, str],
    network: str,
    created_at: str,
    capture_time: _dt.datetime,
) -> CapturedEvent:
    if type(event) is not dict:
        raise EpcisError(
            f"epcisBody.eventList[{position}]", "an event must be a JSON object", position
        )
    try:
        return _capture_checked(
            _EventReader(position, event, prefixes, network),
            context=context,
            created_at=created_at,
            capture_time=capture_time,
        )
    except EpcisError as e:
        if e.position is not None:
            raise
        # Helpers shared with the document level name the full path but not the position.
        raise EpcisError(e.field, e.detail, position) from e


def _capture_checked(
    reader: _EventReader, *, context: Any, created_at: str, capture_time: _dt.datetime
) -> CapturedEvent:
    position, event, network = reader.position, reader.event, reader.network
    kind = event.get("type")
    if type(kind) is not str or kind not in _EVENT_FIELDS:
        raise reader.error(
            ".type",
            f"{_shown(kind)} has no ledger event: only lot-level ObjectEvents and "
            "TransformationEvents are captured",
        )
    reader.check_common(kind, capture_time)
    ledger_type, mapper = _mapper(reader, kind)
    payload, references = mapper(reader)
    try:
        hash_id = event_hash_id(event, context)
    except EpcisError as e:
        raise reader.error("", e.detail) from e
    payload["epcis"] = hash_id
    _check_payload(reader, ledger_type, payload)
    body = {
        "v": 1,
        "network": network,
        "type": ledger_type,
        "nonce": hash_id.split(";", 1)[1][:64],
        "created_at": created_at,
        "payload": payload,
    }
    return CapturedEvent(position, ledger_type, payload, hash_id, tuple(references), body)


def capture_bodies(
    document: Mapping[str, Any] | bytes, *, network: str, created_at: str
) -> list[CapturedEvent]:
    """Map an EPCIS 2.0 capture document to ledger event bodies, all or nothing.

    ObjectEvent ADD + commissioning with a quantityList → ``lot.create``; TransformationEvent →
    ``lot.transform``; ObjectEvent OBSERVE + shipping with a destinationList → ``lot.ship``;
    ObjectEvent OBSERVE + receiving → ``lot.receive``. The fields read (and refused when
    missing) are listed in ``docs/epcis.md``. Each body's ``nonce`` is the hex part of the
    event's hash id and its payload's ``epcis`` the hash id itself.

    Args:
        document: the ``EPCISDocument`` as JSON bytes or as a parsed object.
        network: the network the bodies are for (EPC classes and party URNs must name it).
        created_at: the bodies' ``created_at`` (RFC 3339 UTC, the capture time); an event whose
            ``eventTime`` lies more than 5 minutes after it is refused.

    Returns:
        One :class:`CapturedEvent` per event, in document order.

    Raises:
        EpcisError: the first event (or document field) that cannot be mapped; nothing is
            returned then.
        EncodingError: the bytes are not strict JSON, or ``created_at`` is malformed.
    """
    capture_time = parse_time(created_at, "created_at")
    doc = _load_document(document)
    if doc.get("type") != "EPCISDocument":
        raise EpcisError("type", f"must be EPCISDocument, got {_shown(doc.get('type'))}")
    if "@context" not in doc:
        raise EpcisError("@context", "is missing")
    prefixes = _context_prefixes(doc["@context"])
    version = doc.get("schemaVersion")
    if type(version) is not str or _VERSION.fullmatch(version) is None:
        raise EpcisError(
            "schemaVersion", f"must be an EPCIS 2 version like '2.0', got {_shown(version)}"
        )
    if "creationDate" not in doc:
        raise EpcisError("creationDate", "is missing")
    _parse_event_time(doc["creationDate"], "creationDate")
    body = doc.get("epcisBody")
    if type(body) is not dict or type(body.get("eventList")) is not list:
        raise EpcisError("epcisBody.eventList", "is missing (a list of events)")
    events: Sequence[Any] = body["eventList"]
    if len(events) > MAX_EVENTS:
        raise EpcisError(
            "epcisBody.eventList", f"holds {len(events)} events; at most {MAX_EVENTS} per document"
        )
    return [
        _capture_event(
            position,
            event,
            context=doc["@context"],
            prefixes=prefixes,
            network=network,
            created_at=created_at,
            capture_time=capture_time,
        )
        for position, event in enumerate(events)
    ]
