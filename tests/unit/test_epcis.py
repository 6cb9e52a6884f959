"""EPCIS 2.0 export and capture (``node.epcis``, DESIGN.md §6, ``docs/epcis.md``).

A realistic history of a coffee cooperative is applied through the real rules and exported:
the document must validate against the EPCIS 2.0 JSON Schema, every mapped field is checked,
and every eventID must be the CBV 2.0 hash id the generator package computes. Export followed by
capture must give the ledger payloads back. The standard's own examples and the openepcis test
documents are captured or refused with a named field; hostile input only ever raises
``EpcisError``/``EncodingError``; nothing ever touches the network.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import hashlib
import json
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from epcis_event_hash_generator import hash_generator, json_to_py
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_outcome
from hypothesis import strategies as st

from ledger.encoding import format_time
from ledger.errors import EncodingError
from ledger.events import parse_envelope, sign_event
from ledger.keys import public_key_bytes
from ledger.rules import StateMachine
from ledger.state import MemoryState
from node.epcis import (
    EPCIS_CONTEXT,
    MAX_DOCUMENT_BYTES,
    MAX_EVENTS,
    RANTAI_NAMESPACE,
    CapturedEvent,
    CommittedLotEvent,
    EpcisError,
    LotClass,
    LotReference,
    capture_bodies,
    event_hash_id,
    export_document,
    lot_epc_class,
    parse_lot_epc_class,
    parse_party_urn,
    parse_shipment_urn,
    party_urn,
    shipment_urn,
)
from rantai.samplechain import sample_network
from tests._paths import TESTDATA
from tests.epcis_schema import epcis_schema_validator

EPCIS_DATA = TESTDATA / "epcis"
NET = sample_network()
NETWORK = NET.network
T0 = _dt.datetime(2026, 11, 29, 3, 0, tzinfo=_dt.UTC)
CAPTURED_AT = "2026-11-29T06:00:00Z"
GTIN14 = "09521234543213"
KOPI, SITI, ADMIN = "koperasi-kopi", "koperasi-kopi/siti", "koperasi-kopi/admin-1"
BUYER, BUYER_ADMIN = "eu-buyer", "eu-buyer/admin-1"
AUDITOR, DEWI = "auditor-kalbar", "auditor-kalbar/dewi"
HASH_ID = re.compile(r"ni:///sha-256;[0-9a-f]{64}\?ver=CBV2\.0")


def _urn(kind: str, name: str) -> str:
    return f"urn:rantai:{NETWORK}:{kind}:{name}"


# --- a realistic history, applied through the real rules ------------------------------------


@dataclass
class History:
    state: MemoryState
    committed: list[CommittedLotEvent]
    named: dict[str, CommittedLotEvent]

    def lot_events(self, *names: str) -> list[CommittedLotEvent]:
        return [self.named[name] for name in names]


def _public(label: str) -> str:
    return public_key_bytes(NET.key(label)).hex()


def _build_history() -> History:
    machine = StateMachine(NET.genesis)
    committed: list[CommittedLotEvent] = []
    named: dict[str, CommittedLotEvent] = {}

    def submit(name: str, kind: str, payload: dict[str, Any], signer: str | None) -> None:
        created = T0 + _dt.timedelta(minutes=len(committed))
        block = created + _dt.timedelta(seconds=30)
        key = NET.governance_key if signer is None else NET.key(signer)
        envelope = NET.event(kind, payload, [key], name, format_time(created))
        machine.apply(envelope, len(committed), block)
        named[name] = CommittedLotEvent(envelope, len(committed), format_time(block))
        committed.append(named[name])

    for org_id, org_name, org_kind in (
        (KOPI, "Koperasi Kopi Liberika Kayong", "cooperative"),
        (BUYER, "EU Buyer GmbH", "buyer"),
        (AUDITOR, "Lembaga Sertifikasi Kalbar", "auditor"),
    ):
        admins = [_public(f"{org_id}/admin-1")]
        payload = {"org_id": org_id, "name": org_name, "kind": org_kind, "admins": admins}
        submit(f"org-{org_id}", "org.register", payload, None)
    for member_id, role in ((SITI, "producer"), (DEWI, "auditor")):
        payload = {
            "member_id": member_id,
            "role": role,
            "public_keys": [_public(member_id)],
            "profile_hash": hashlib.sha256(member_id.encode()).hexdigest(),
        }
        submit(
            f"member-{member_id}", "member.register", payload, member_id.split("/")[0] + "/admin-1"
        )
    plot = {
        "plot_id": "PLOT-SITI-1",
        "member_id": SITI,
        "commodity": "coffee",
        "area_ha": "2",
        "geometry": {"type": "Point", "coordinates": [109.9876543, -1.0123456]},
    }
    submit("plot", "plot.register", plot, ADMIN)
    submit("create-1", "lot.create", CREATE_1, SITI)
    submit("create-2", "lot.create", CREATE_2, SITI)
    submit("split", "lot.split", SPLIT, SITI)
    submit("merge", "lot.merge", MERGE, SITI)
    submit("transform", "lot.transform", TRANSFORM, SITI)
    submit("ship", "lot.ship", SHIP, SITI)
    submit("receive", "lot.receive", RECEIVE, BUYER_ADMIN)
    submit("certify", "lot.certify", CERTIFY, DEWI)
    assert isinstance(machine.state, MemoryState)
    return History(machine.state, committed, named)


CREATE_1: dict[str, Any] = {
    "lot_id": "KP-1",
    "commodity": "coffee",
    "quantity": "1200.5",
    "uom": "kg",
    "producer": SITI,
    "plot_id": "PLOT-SITI-1",
    "harvested_on": "2026-11-18",
    "gtin": GTIN14,
}
CREATE_2: dict[str, Any] = {
    "lot_id": "KP-2",
    "commodity": "coffee",
    "quantity": "300",
    "uom": "kg",
    "producer": SITI,
    "harvested_on": "2026-11-20",
}
SPLIT: dict[str, Any] = {
    "lot_id": "KP-1",
    "outputs": [{"lot_id": "KP-1A", "quantity": "400.25"}, {"lot_id": "KP-1B", "quantity": "500"}],
}
MERGE: dict[str, Any] = {"inputs": ["KP-1B", "KP-2"], "lot_id": "KP-M"}
TRANSFORM: dict[str, Any] = {
    "inputs": [{"lot_id": "KP-M", "quantity": "800"}],
    "outputs": [
        {"lot_id": "GB-1", "commodity": "green_bean", "quantity": "640", "uom": "kg"},
        {"lot_id": "HUSK-1", "commodity": "husk", "quantity": "150", "uom": "kg"},
    ],
    "process": "hulling and drying",
}
SHIP: dict[str, Any] = {"lot_id": "GB-1", "shipment_id": "SHIP-1", "to": BUYER}
RECEIVE: dict[str, Any] = {"lot_id": "GB-1", "shipment_id": "SHIP-1", "quantity_received": "639.5"}
CERTIFY: dict[str, Any] = {
    "lot_id": "KP-1A",
    "scheme": "Rainforest Alliance",
    "certificate": "RA-2026/0042: coffee",
    "valid_until": "2027-12-31",
}
LOT_EVENTS = ("create-1", "create-2", "split", "merge", "transform", "ship", "receive", "certify")
CAPTURABLE = ("create-1", "create-2", "transform", "ship", "receive")


@pytest.fixture(scope="module")
def history() -> History:
    return _build_history()


@pytest.fixture(scope="module")
def document(history: History) -> dict[str, Any]:
    return export_document(
        history.committed, network=NETWORK, lots=history.state, created=CAPTURED_AT
    )


@pytest.fixture(scope="module")
def schema() -> jsonschema.protocols.Validator:
    """The EPCIS 2.0 JSON Schema with its formats enforced (see ``tests/epcis_schema.py``)."""
    return epcis_schema_validator()


def _capturable_document(history: History) -> dict[str, Any]:
    return export_document(
        history.lot_events(*CAPTURABLE), network=NETWORK, lots=history.state, created=CAPTURED_AT
    )


# --- identifiers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lot_id", "gtin", "expected"),
    [
        ("KP-1", None, "urn:rantai:kalbar-coop:lot:KP-1"),
        ("KP-1", GTIN14, f"https://id.gs1.org/01/{GTIN14}/10/KP-1"),
        ("KP-1", "4006381333931", "https://id.gs1.org/01/04006381333931/10/KP-1"),
        ("KP-1", "036000291452", "https://id.gs1.org/01/00036000291452/10/KP-1"),
        ("KP-1", "96385074", "https://id.gs1.org/01/00000096385074/10/KP-1"),
        ("2026:A.b_c-1", GTIN14, f"https://id.gs1.org/01/{GTIN14}/10/2026%3AA.b_c-1"),
    ],
    ids=["no-gtin", "gtin-14", "gtin-13", "gtin-12", "gtin-8", "escaped-lot"],
)
def test_lot_epc_class(lot_id: str, gtin: str | None, expected: str) -> None:
    assert lot_epc_class(NETWORK, lot_id, gtin) == expected
    assert parse_lot_epc_class(NETWORK, expected) == LotClass(
        lot_id, None if gtin is None else gtin.zfill(14)
    )


@pytest.mark.parametrize(
    ("lot_id", "gtin"),
    [("KP/1", None), ("", None), ("KP-1", "09521234543214"), ("KP-1", "1234567")],
    ids=["slash", "empty", "check-digit", "seven-digits"],
)
def test_lot_epc_class_refuses(lot_id: str, gtin: str | None) -> None:
    with pytest.raises(EncodingError):
        lot_epc_class(NETWORK, lot_id, gtin)


@pytest.mark.parametrize(
    ("epc_class", "expected"),
    [
        ("urn:epc:class:lgtin:4012345.012345.998877", LotClass("998877", "04012345123456")),
        ("urn:epc:class:lgtin:0614141.107346.2017-10", LotClass("2017-10", "10614141073464")),
        (f"https://example.com/01/{GTIN14}/10/L%2E1", LotClass("L.1", GTIN14)),
        ("https://id.gs1.org/01/70614141123451/10/998877", LotClass("998877", "70614141123451")),
    ],
    ids=["lgtin", "lgtin-indicator", "other-resolver", "example-9.6.2"],
)
def test_parse_lot_epc_class_gs1_forms(epc_class: str, expected: LotClass) -> None:
    assert parse_lot_epc_class(NETWORK, epc_class) == expected


@pytest.mark.parametrize(
    "epc_class",
    [
        "urn:rantai:other-coop:lot:KP-1",
        "urn:rantai:kalbar-coop:lot:",
        "urn:rantai:kalbar-coop:lot:KP/1",
        f"https://id.gs1.org/01/{GTIN14}",
        f"https://id.gs1.org/01/{GTIN14}/21/serial-1",
        "https://id.gs1.org/01/09521234543214/10/KP-1",
        f"https://id.gs1.org/01/{GTIN14}/10/KP%2F1",
        f"http://id.gs1.org/01/{GTIN14}/10/KP-1",
        f"https://id.gs1.org/01/{GTIN14}/10/KP-1?linkType=all",
        "urn:epc:class:lgtin:4012345.0123456.998877",
        "urn:epc:idpat:sgtin:4012345.066666.*",
        "urn:epc:id:sgtin:0614141.107346.2017",
        "KP-1",
        42,
        None,
    ],
    ids=[
        "other-network",
        "empty-lot",
        "slash-lot",
        "product-class",
        "serial",
        "check-digit",
        "encoded-slash",
        "http",
        "query",
        "lgtin-14-digits",
        "pattern",
        "instance",
        "bare",
        "number",
        "null",
    ],
)
def test_parse_lot_epc_class_refuses(epc_class: Any) -> None:
    with pytest.raises(EpcisError) as caught:
        parse_lot_epc_class(NETWORK, epc_class, "quantityList[0].epcClass")
    assert caught.value.field == "quantityList[0].epcClass"
    assert caught.value.position is None
    assert "quantityList[0].epcClass" in str(caught.value)


@pytest.mark.parametrize("party", [KOPI, SITI, "eu-buyer/anna.b_2-x"])
def test_party_urn_round_trip(party: str) -> None:
    assert party_urn(NETWORK, party) == _urn("party", party)
    assert parse_party_urn(NETWORK, party_urn(NETWORK, party)) == party


@pytest.mark.parametrize(
    "urn",
    [
        "urn:rantai:other-coop:party:koperasi-kopi",
        "urn:rantai:kalbar-coop:party:",
        "urn:rantai:kalbar-coop:party:Koperasi",
        "urn:rantai:kalbar-coop:party:koperasi-kopi/",
        "urn:rantai:kalbar-coop:party:a/b/c!",
        "urn:epc:id:pgln:4012345.00225",
        ["urn:rantai:kalbar-coop:party:koperasi-kopi"],
    ],
)
def test_parse_party_urn_refuses(urn: Any) -> None:
    with pytest.raises(EpcisError) as caught:
        parse_party_urn(NETWORK, urn, "sourceList[0].source")
    assert caught.value.field == "sourceList[0].source"


def test_shipment_urn_round_trip() -> None:
    assert parse_shipment_urn(NETWORK, shipment_urn(NETWORK, "SHIP-1")) == "SHIP-1"
    with pytest.raises(EpcisError):
        parse_shipment_urn(NETWORK, "urn:rantai:other-coop:shipment:SHIP-1")
    with pytest.raises(EncodingError):
        shipment_urn(NETWORK, "SHIP/1")


# --- export ----------------------------------------------------------------------------------


def test_export_validates_against_the_epcis_json_schema(
    document: dict[str, Any], schema: jsonschema.protocols.Validator
) -> None:
    errors = sorted(schema.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_the_schema_check_is_not_vacuous(
    document: dict[str, Any], schema: jsonschema.protocols.Validator
) -> None:
    broken = copy.deepcopy(document)
    broken["epcisBody"]["eventList"][0]["bizStep"] = "transforming"
    broken["epcisBody"]["eventList"][1]["quantityList"][0]["uom"] = "kilogram"
    del broken["epcisBody"]["eventList"][2]["eventTimeZoneOffset"]
    paths = {tuple(e.absolute_path)[:3] for e in schema.iter_errors(broken)}
    assert paths == {("epcisBody", "eventList", n) for n in (0, 1, 2)}


def test_export_document_envelope(document: dict[str, Any], history: History) -> None:
    assert document["@context"] == [EPCIS_CONTEXT, {"rantai": RANTAI_NAMESPACE}]
    assert document["type"] == "EPCISDocument"
    assert document["schemaVersion"] == "2.0"
    assert document["creationDate"] == CAPTURED_AT
    events = document["epcisBody"]["eventList"]
    # org, member and plot events are not lot events: only the eight lot.* events are exported.
    assert [e["rantai:eventType"] for e in events] == [
        history.named[name].envelope.type for name in LOT_EVENTS
    ]


def _common(history: History, name: str) -> dict[str, Any]:
    committed = history.named[name]
    return {
        "eventTime": committed.envelope.body["created_at"],
        "eventTimeZoneOffset": "+00:00",
        "recordTime": committed.block_time,
        "rantai:eventID": committed.envelope.event_id,
        "rantai:logIndex": committed.index,
        "rantai:eventType": committed.envelope.type,
    }


KP1 = f"https://id.gs1.org/01/{GTIN14}/10/KP-1"
EXPECTED_EVENTS: dict[str, dict[str, Any]] = {
    "create-1": {
        "type": "ObjectEvent",
        "action": "ADD",
        "bizStep": "commissioning",
        "disposition": "active",
        "quantityList": [{"epcClass": KP1, "quantity": 1200.5, "uom": "KGM"}],
        "sourceList": [{"type": "owning_party", "source": _urn("party", SITI)}],
        "ilmd": {
            "cbvmda:harvestStartDate": "2026-11-18",
            "cbvmda:harvestEndDate": "2026-11-18",
            "rantai:commodity": "coffee",
            "rantai:plotID": "PLOT-SITI-1",
        },
    },
    "create-2": {
        "type": "ObjectEvent",
        "action": "ADD",
        "bizStep": "commissioning",
        "disposition": "active",
        "quantityList": [{"epcClass": _urn("lot", "KP-2"), "quantity": 300, "uom": "KGM"}],
        "sourceList": [{"type": "owning_party", "source": _urn("party", SITI)}],
        "ilmd": {
            "cbvmda:harvestStartDate": "2026-11-20",
            "cbvmda:harvestEndDate": "2026-11-20",
            "rantai:commodity": "coffee",
        },
    },
    "split": {
        "type": "TransformationEvent",
        "inputQuantityList": [{"epcClass": KP1, "quantity": 900.25, "uom": "KGM"}],
        "outputQuantityList": [
            {"epcClass": _urn("lot", "KP-1A"), "quantity": 400.25, "uom": "KGM"},
            {"epcClass": _urn("lot", "KP-1B"), "quantity": 500, "uom": "KGM"},
        ],
        "bizStep": "repackaging",
    },
    "merge": {
        "type": "TransformationEvent",
        "inputQuantityList": [
            {"epcClass": _urn("lot", "KP-1B")},
            {"epcClass": _urn("lot", "KP-2")},
        ],
        "outputQuantityList": [{"epcClass": _urn("lot", "KP-M")}],
        "bizStep": "repackaging",
    },
    "transform": {
        "type": "TransformationEvent",
        "inputQuantityList": [{"epcClass": _urn("lot", "KP-M"), "quantity": 800, "uom": "KGM"}],
        "outputQuantityList": [
            {"epcClass": _urn("lot", "GB-1"), "quantity": 640, "uom": "KGM"},
            {"epcClass": _urn("lot", "HUSK-1"), "quantity": 150, "uom": "KGM"},
        ],
        "bizStep": "commissioning",
        "disposition": "active",
        "ilmd": {"rantai:commodity": ["green_bean", "husk"]},
        "rantai:process": "hulling and drying",
    },
    "ship": {
        "type": "ObjectEvent",
        "action": "OBSERVE",
        "bizStep": "shipping",
        "disposition": "in_transit",
        "quantityList": [{"epcClass": _urn("lot", "GB-1")}],
        "bizTransactionList": [{"type": "desadv", "bizTransaction": _urn("shipment", "SHIP-1")}],
        "sourceList": [{"type": "owning_party", "source": _urn("party", SITI)}],
        "destinationList": [{"type": "owning_party", "destination": _urn("party", BUYER)}],
    },
    "receive": {
        "type": "ObjectEvent",
        "action": "OBSERVE",
        "bizStep": "receiving",
        "quantityList": [{"epcClass": _urn("lot", "GB-1"), "quantity": 639.5, "uom": "KGM"}],
        "bizTransactionList": [{"type": "desadv", "bizTransaction": _urn("shipment", "SHIP-1")}],
        "sourceList": [{"type": "owning_party", "source": _urn("party", SITI)}],
        "destinationList": [{"type": "owning_party", "destination": _urn("party", BUYER)}],
    },
    "certify": {
        "type": "ObjectEvent",
        "certificationInfo": (
            "urn:rantai:kalbar-coop:certificate:Rainforest%20Alliance:RA-2026%2F0042%3A%20coffee"
        ),
        "action": "OBSERVE",
        "bizStep": "inspecting",
        "disposition": "conformant",
        "quantityList": [{"epcClass": _urn("lot", "KP-1A")}],
        "rantai:certificationScheme": "Rainforest Alliance",
        "rantai:certificate": "RA-2026/0042: coffee",
        "rantai:certificationValidUntil": "2027-12-31",
    },
}


@pytest.mark.parametrize("name", LOT_EVENTS)
def test_export_maps_every_field(document: dict[str, Any], history: History, name: str) -> None:
    event = dict(document["epcisBody"]["eventList"][LOT_EVENTS.index(name)])
    event_id = event.pop("eventID")
    assert HASH_ID.fullmatch(event_id)
    assert event == EXPECTED_EVENTS[name] | _common(history, name)


def test_export_carries_the_captured_from_hash(history: History) -> None:
    source = "ni:///sha-256;" + "ab" * 32 + "?ver=CBV2.0"
    envelope = NET.event(
        "lot.create",
        CREATE_2 | {"lot_id": "KP-9", "epcis": source},
        [NET.key(SITI)],
        "n",
        "2026-11-29T03:00:00Z",
    )
    [event] = export_document(
        [CommittedLotEvent(envelope, 99, "2026-11-29T03:00:01Z")],
        network=NETWORK,
        lots=history.state,
        created=CAPTURED_AT,
    )["epcisBody"]["eventList"]
    assert event["rantai:capturedFrom"] == source
    assert event["eventID"] != source


def test_event_ids_are_the_cbv_hash_ids(document: dict[str, Any]) -> None:
    events = document["epcisBody"]["eventList"]
    ids = [event["eventID"] for event in events]
    assert len(set(ids)) == len(ids)
    for event in events:
        without = {k: v for k, v in event.items() if k != "eventID"}
        assert event_hash_id(without, document["@context"]) == event["eventID"]
        assert event_hash_id(event, document["@context"]) == event["eventID"]  # eventID ignored


def test_event_ids_recomputed_by_the_package_over_the_whole_document(
    document: dict[str, Any],
) -> None:
    json_to_py._namespaces.clear()
    events = json_to_py.event_list_from_epcis_document_json(copy.deepcopy(document))
    prehashes = hash_generator.derive_prehashes_from_events(events, "")
    hashes = hash_generator.calculate_hashes_from_pre_hashes(prehashes, "sha256")
    json_to_py._namespaces.clear()
    assert hashes == [event["eventID"] for event in document["epcisBody"]["eventList"]]


def test_export_refuses_another_network_and_unknown_lots(history: History) -> None:
    other = sample_network(network="other-coop")
    envelope = other.event("lot.create", CREATE_2, [other.key(SITI)], "n", "2026-11-29T03:00:00Z")
    with pytest.raises(EncodingError, match="other-coop"):
        export_document(
            [CommittedLotEvent(envelope, 0, "2026-11-29T03:00:01Z")],
            network=NETWORK,
            lots=history.state,
            created=CAPTURED_AT,
        )
    with pytest.raises(EncodingError, match="KP-1"):
        export_document(
            history.lot_events("split"), network=NETWORK, lots=MemoryState(), created=CAPTURED_AT
        )


def test_export_refuses_a_quantity_no_json_number_carries(history: History) -> None:
    payload = CREATE_2 | {"lot_id": "KP-BIG", "quantity": "123456789012.123456"}
    envelope = NET.event("lot.create", payload, [NET.key(SITI)], "n", "2026-11-29T03:00:00Z")
    with pytest.raises(EncodingError, match="significant digits"):
        export_document(
            [CommittedLotEvent(envelope, 0, "2026-11-29T03:00:01Z")],
            network=NETWORK,
            lots=history.state,
            created=CAPTURED_AT,
        )


# --- capture: round trip -----------------------------------------------------------------------


def _capture(document: Any, **kwargs: Any) -> list[CapturedEvent]:
    return capture_bodies(document, network=NETWORK, created_at=CAPTURED_AT, **kwargs)


def test_round_trip_gives_the_payloads_back(history: History) -> None:
    document = _capturable_document(history)
    captured = _capture(json.dumps(document).encode())
    assert [c.position for c in captured] == list(range(len(CAPTURABLE)))
    for item, name, event in zip(
        captured, CAPTURABLE, document["epcisBody"]["eventList"], strict=True
    ):
        original = history.named[name].envelope
        assert item.type == original.type
        assert item.epcis == event["eventID"]
        assert item.payload == original.payload | {"epcis": event["eventID"]}


def test_round_trip_lot_references(history: History) -> None:
    captured = _capture(_capturable_document(history))
    assert [c.lots for c in captured] == [
        (LotReference("KP-1", GTIN14, "kg"),),
        (LotReference("KP-2", None, "kg"),),
        (
            LotReference("KP-M", None, "kg"),
            LotReference("GB-1", None, "kg"),
            LotReference("HUSK-1", None, "kg"),
        ),
        (LotReference("GB-1", None, None),),
        (LotReference("GB-1", None, "kg"),),
    ]


def test_captured_bodies_are_ready_to_sign(history: History) -> None:
    for item in _capture(_capturable_document(history)):
        assert item.body == {
            "v": 1,
            "network": NETWORK,
            "type": item.type,
            "nonce": item.epcis[len("ni:///sha-256;") : -len("?ver=CBV2.0")],
            "created_at": CAPTURED_AT,
            "payload": item.payload,
        }
        envelope = sign_event(item.body, [NET.key(ADMIN)])
        assert parse_envelope(envelope.to_json()).event_id == envelope.event_id


def test_capture_does_not_change_its_input(history: History) -> None:
    document = _capturable_document(history)
    before = copy.deepcopy(document)
    _capture(document)
    assert document == before


def test_capture_is_all_or_nothing(document: dict[str, Any]) -> None:
    # The full export holds a split (a TransformationEvent without commodities) and a
    # certification (OBSERVE + inspecting): the first of them refuses the whole document.
    with pytest.raises(EpcisError) as caught:
        _capture(document)
    assert caught.value.position == LOT_EVENTS.index("split")
    assert caught.value.field == "epcisBody.eventList[2].ilmd"
    assert str(caught.value).startswith("event 2 (epcisBody.eventList[2].ilmd): ")


def test_capture_takes_a_gtin_13_back_as_gtin_14(history: History) -> None:
    envelope = NET.event(
        "lot.create",
        CREATE_2 | {"lot_id": "KP-13", "gtin": "4006381333931"},
        [NET.key(SITI)],
        "n",
        "2026-11-29T03:00:00Z",
    )
    exported = export_document(
        [CommittedLotEvent(envelope, 0, "2026-11-29T03:00:01Z")],
        network=NETWORK,
        lots=history.state,
        created=CAPTURED_AT,
    )
    [item] = _capture(exported)
    assert item.payload["gtin"] == "04006381333931"


# --- capture: the standard's examples and the openepcis documents ------------------------------


STANDARD_EXAMPLES = {
    # Instance-level EPCs (epcList) only: the ledger tracks lots.
    "Example_9.6.1-ObjectEvent.jsonld": (0, "epcisBody.eventList[0].epcList"),
    "Example_9.6.1-ObjectEventWithDigitalLink.jsonld": (0, "epcisBody.eventList[0].epcList"),
    "Example_9.6.1-ObjectEvent-with-pseudo-SBDH-headers.jsonld": (
        0,
        "epcisBody.eventList[0].epcList",
    ),
    "Example_9.6.1-with-comment.jsonld": (0, "epcisBody.eventList[0].epcList"),
    # Lot-level receiving, but no desadv business transaction naming the shipment.
    "Example_9.6.2-ObjectEvent.jsonld": (0, "epcisBody.eventList[0].bizTransactionList"),
    "Example_9.6.2-ObjectEventWithDigitalLink.jsonld": (
        0,
        "epcisBody.eventList[0].bizTransactionList",
    ),
    "Example_9.6.3-AggregationEvent.jsonld": (0, "epcisBody.eventList[0].type"),
    "Example_9.6.3-AggregationEventWithDigitalLink.jsonld": (0, "epcisBody.eventList[0].type"),
    # Instance-level inputs and outputs next to the lot-level inputs.
    "Example_9.6.4-TransformationEvent.jsonld": (0, "epcisBody.eventList[0].inputEPCList"),
    "Example_9.6.4-TransformationEventWithDigitalLink.jsonld": (
        0,
        "epcisBody.eventList[0].inputEPCList",
    ),
    "EPCISQueryDocument.jsonld": (None, "type"),
    "aggregation_event_all_possible_fields.jsonld": (0, "epcisBody.eventList[0].type"),
    "association_event_all_possible_fields.jsonld": (0, "epcisBody.eventList[0].type"),
    "object_event_all_possible_fields.jsonld": (0, "epcisBody.eventList[0].errorDeclaration"),
    "transaction_event_all_possible_fields.jsonld": (0, "epcisBody.eventList[0].type"),
    # Redefines the @protected cbvmda prefix of the EPCIS context.
    "transformation_event_all_possible_fields.jsonld": (None, "@context[4].cbvmda"),
}


def test_every_standard_example_is_listed() -> None:
    assert {p.name for p in (EPCIS_DATA / "examples").iterdir()} == set(STANDARD_EXAMPLES)


@pytest.mark.parametrize("name", sorted(STANDARD_EXAMPLES))
def test_standard_examples_are_refused_naming_the_field(name: str) -> None:
    position, field = STANDARD_EXAMPLES[name]
    with pytest.raises(EpcisError) as caught:
        _capture((EPCIS_DATA / "examples" / name).read_bytes())
    assert (caught.value.position, caught.value.field) == (position, field)


def _example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EPCIS_DATA / "examples" / name).read_text())
    return loaded


def test_example_9_6_2_with_a_shipment_is_a_receipt() -> None:
    for name, gtin in (
        ("Example_9.6.2-ObjectEvent.jsonld", "04012345123456"),
        ("Example_9.6.2-ObjectEventWithDigitalLink.jsonld", "70614141123451"),
    ):
        document = _example(name)
        event = document["epcisBody"]["eventList"][0]
        event["bizTransactionList"] = [
            {"type": "desadv", "bizTransaction": _urn("shipment", "ASN-998877")}
        ]
        [item] = _capture(document)
        assert item.type == "lot.receive"
        assert item.payload == {
            "lot_id": "998877",
            "shipment_id": "ASN-998877",
            "quantity_received": "200",
            "epcis": event_hash_id(event, document["@context"]),
        }
        assert item.lots == (LotReference("998877", gtin, "kg"),)


def test_example_9_6_4_with_lot_outputs_is_a_transform() -> None:
    document = _example("Example_9.6.4-TransformationEventWithDigitalLink.jsonld")
    event = document["epcisBody"]["eventList"][0]
    del event["inputEPCList"], event["outputEPCList"]
    event["inputQuantityList"] = [
        {"epcClass": "urn:epc:class:lgtin:4012345.011111.4444", "quantity": 10, "uom": "KGM"},
        {"epcClass": "https://id.gs1.org/01/00614141777778/10/987", "quantity": 30, "uom": "KGM"},
    ]
    event["outputQuantityList"] = [
        {"epcClass": _urn("lot", "XYZ"), "quantity": 39.5, "uom": "KGM"},
    ]
    event["ilmd"]["rantai:commodity"] = "roasted_coffee"
    document["@context"].append({"rantai": RANTAI_NAMESPACE})
    [item] = _capture(document)
    assert item.type == "lot.transform"
    assert item.payload == {
        "inputs": [{"lot_id": "4444", "quantity": "10"}, {"lot_id": "987", "quantity": "30"}],
        "outputs": [
            {"lot_id": "XYZ", "commodity": "roasted_coffee", "quantity": "39.5", "uom": "kg"}
        ],
        "process": "commissioning",  # no rantai:process, no transformationID: the bizStep
        "epcis": event_hash_id(event, document["@context"]),
    }
    assert item.lots[0] == LotReference("4444", "04012345111118", "kg")


def _openepcis(kind: str) -> list[Path]:
    return sorted((EPCIS_DATA / "openepcis" / kind).glob("*.json"))


@pytest.mark.parametrize("path", _openepcis("valid"), ids=lambda p: p.stem)
def test_openepcis_valid_documents_are_captured_or_cleanly_refused(path: Path) -> None:
    refusal: EpcisError | None = None
    try:
        captured = _capture(path.read_bytes())
    except EpcisError as e:
        refusal = e
    if refusal is not None:
        assert refusal.field
        assert refusal.position is None or 0 <= refusal.position < MAX_EVENTS
    else:
        assert all(HASH_ID.fullmatch(item.epcis) for item in captured)


OPENEPCIS_INVALID = {
    "Combination_of_events_with_missing_mandatory_fields": "epcisBody.eventList[0].action",
    "Combination_of_multiple_invalid_fields": "epcisBody.eventList[0].bizStep",
    "Combination_of_non_standard_bizStep_and_disposition": "epcisBody.eventList[0].bizStep",
    "EPCISDocument_without_context": "@context",
    "ObjectEvent_with_ilmd_field_without_namespace": "epcisBody.eventList[0].ilmd.materialType",
    "ObjectEvent_with_invalid_action": "epcisBody.eventList[0].action",
    "ObjectEvent_with_invalid_certificationInfo": "epcisBody.eventList[0].certificationInfo[0]",
    "ObjectEvent_with_invalid_eventTime_format": "epcisBody.eventList[0].eventTime",
    "ObjectEvent_with_non_standard_bizStep": "epcisBody.eventList[0].bizStep",
    "ObjectEvent_with_non_standard_bizStep_in_second_event": "epcisBody.eventList[0].bizStep",
    "ObjectEvent_with_non_standard_disposition": "epcisBody.eventList[0].disposition",
    "ObjectEvent_with_quantity_as_text": "epcisBody.eventList[0].quantityList[0].quantity",
    "ObjectEvent_with_unknown_field_in_quantityList": (
        "epcisBody.eventList[0].quantityList[0].weight"
    ),
    "ObjectEvent_without_action_and_eventTime": "epcisBody.eventList[0].eventTime",
    "ObjectEvent_without_identifier_list": "epcisBody.eventList[0].bizStep",
}


def test_every_openepcis_invalid_document_is_listed() -> None:
    assert {p.stem for p in _openepcis("invalid")} == set(OPENEPCIS_INVALID)


@pytest.mark.parametrize("path", _openepcis("invalid"), ids=lambda p: p.stem)
def test_openepcis_invalid_documents_are_refused(path: Path) -> None:
    with pytest.raises(EpcisError) as caught:
        _capture(path.read_bytes())
    assert caught.value.field == OPENEPCIS_INVALID[path.stem]


# --- capture: refusals, one field at a time ---------------------------------------------------


def _single(history: History, name: str) -> dict[str, Any]:
    return export_document(
        history.lot_events(name), network=NETWORK, lots=history.state, created=CAPTURED_AT
    )


REFUSALS: list[tuple[str, str, Any, str]] = [
    # (event, path to change (dotted; [n] for lists), new value or DELETE, refused field)
    ("create-1", "quantityList[0].quantity", -5, "quantityList[0].quantity"),
    ("create-1", "quantityList[0].quantity", 0, "quantityList[0].quantity"),
    ("create-1", "quantityList[0].quantity", 1.0000001, "quantityList[0].quantity"),
    ("create-1", "quantityList[0].quantity", 1e16, "quantityList[0].quantity"),
    ("create-1", "quantityList[0].quantity", True, "quantityList[0].quantity"),
    ("create-1", "quantityList[0].quantity", "12.5", "quantityList[0].quantity"),
    ("create-1", "quantityList[0].quantity", "DELETE", "quantityList[0].uom"),
    ("create-1", "quantityList[0].uom", "LBR", "quantityList[0].uom"),
    ("create-1", "quantityList[0].uom", "kg", "quantityList[0].uom"),
    ("create-1", "quantityList[0].uom", "DELETE", "quantityList[0].uom"),
    (
        "create-1",
        "quantityList[0].epcClass",
        "urn:rantai:other-coop:lot:KP-1",
        "quantityList[0].epcClass",
    ),
    ("create-1", "quantityList", [], "quantityList"),
    ("create-1", "epcList", ["urn:epc:id:sgtin:0614141.107346.2017"], "epcList"),
    ("create-1", "sourceList", [], "sourceList"),
    ("create-1", "sourceList[0].source", _urn("party", KOPI), "sourceList"),
    ("create-1", "sourceList[0].source", "urn:epc:id:pgln:4012345.00225", "sourceList[0].source"),
    ("create-1", "sourceList[0].type", "owner", "sourceList[0].type"),
    ("create-1", "ilmd", "DELETE", "ilmd"),
    ("create-1", "ilmd.rantai:commodity", "DELETE", "ilmd.rantai:commodity"),
    ("create-1", "ilmd.rantai:commodity", "Kopi Luwak", "ilmd.rantai:commodity"),
    ("create-1", "ilmd.cbvmda:harvestStartDate", "DELETE", "ilmd.cbvmda:harvestStartDate"),
    (
        "create-1",
        "ilmd.cbvmda:harvestStartDate",
        "2026-11-18T00:00:00Z",
        "ilmd.cbvmda:harvestStartDate",
    ),
    ("create-1", "ilmd.cbvmda:harvestEndDate", "2026-11-19", "ilmd.cbvmda:harvestEndDate"),
    ("create-1", "ilmd.rantai:plotID", "PLOT/1", "ilmd.rantai:plotID"),
    ("create-1", "ilmd.harvest", "2026-11-18", "ilmd.harvest"),
    ("create-1", "action", "OBSERVE", "ilmd"),
    ("create-1", "action", "DELETE", "ilmd"),
    ("create-1", "bizStep", "urn:epcglobal:cbv:bizstep:destroying", "bizStep"),
    ("create-1", "bizStep", "https://ref.gs1.org/cbv/BizStep-harvesting", "bizStep"),
    ("create-1", "disposition", "fresh", "disposition"),
    ("create-1", "eventTime", "2026-11-29T06:05:01Z", "eventTime"),
    ("create-1", "eventTime", "2026-11-29T25:00:00Z", "eventTime"),
    ("create-1", "eventTimeZoneOffset", "+15:00", "eventTimeZoneOffset"),
    ("create-1", "recordTime", "yesterday", "recordTime"),
    ("create-1", "eventID", "not a uri", "eventID"),
    ("create-1", "certificationInfo", 7, "certificationInfo"),
    ("create-1", "myField", "x", "myField"),
    ("create-1", "@context", {"ex": "https://ex.example/"}, "@context"),
    (
        "create-1",
        "errorDeclaration",
        {"declarationTime": "2026-11-29T03:00:00Z"},
        "errorDeclaration",
    ),
    ("create-1", "type", "AssociationEvent", "type"),
    ("create-1", "type", 5, "type"),
    ("ship", "quantityList[0].quantity", 640, "quantityList[0].quantity"),
    ("ship", "destinationList", "DELETE", "destinationList"),
    (
        "ship",
        "destinationList[0].destination",
        "urn:rantai:kalbar-coop:party:EU",
        "destinationList[0].destination",
    ),
    ("ship", "bizTransactionList", "DELETE", "bizTransactionList"),
    ("ship", "bizTransactionList[0].type", "po", "bizTransactionList"),
    (
        "ship",
        "bizTransactionList[0].bizTransaction",
        "urn:rantai:kalbar-coop:shipment:",
        "bizTransactionList[0].bizTransaction",
    ),
    ("ship", "bizTransactionList[0].extra", "x", "bizTransactionList[0].extra"),
    ("receive", "quantityList[0].uom", "DELETE", "quantityList[0].uom"),
    ("receive", "quantityList[0].quantity", -1, "quantityList[0].quantity"),
    (
        "transform",
        "outputQuantityList[1].epcClass",
        _urn("lot", "GB-1"),
        "outputQuantityList[1].epcClass",
    ),
    ("transform", "inputQuantityList", [], "inputQuantityList"),
    ("transform", "outputEPCList", ["urn:epc:id:sgtin:0614141.107346.2017"], "outputEPCList"),
    ("transform", "ilmd.rantai:commodity", ["green_bean"], "ilmd.rantai:commodity"),
    ("transform", "ilmd.rantai:commodity", ["green_bean", 7], "ilmd.rantai:commodity[1]"),
    ("transform", "rantai:process", "", "rantai:process"),
    ("transform", "rantai:process", "x" * 201, "rantai:process"),
    ("transform", "inputQuantityList[0].quantity", 0, "inputQuantityList[0].quantity"),
    ("transform", "action", "ADD", "action"),
]


def _set(event: dict[str, Any], path: str, value: Any) -> None:
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    target: Any = event
    for part in parts[:-1]:
        target = target[int(part[1:-1])] if part.startswith("[") else target[part]
    last = parts[-1]
    key: Any = int(last[1:-1]) if last.startswith("[") else last
    if value == "DELETE":
        del target[key]
    else:
        target[key] = value


@pytest.mark.parametrize(
    ("name", "path", "value", "field"),
    REFUSALS,
    ids=[f"{n}-{p}-{str(v)[:20]}" for n, p, v, _ in REFUSALS],
)
def test_capture_refusals_name_the_field(
    history: History, name: str, path: str, value: Any, field: str
) -> None:
    document = _single(history, name)
    event = document["epcisBody"]["eventList"][0]
    _set(event, path, value)
    with pytest.raises(EpcisError) as caught:
        _capture(document)
    assert caught.value.position == 0
    assert caught.value.field == f"epcisBody.eventList[0].{field}"


def test_process_falls_back_to_transformation_id_then_biz_step(history: History) -> None:
    document = _single(history, "transform")
    event = document["epcisBody"]["eventList"][0]
    del event["rantai:process"]
    assert _capture(document)[0].payload["process"] == "commissioning"
    event["transformationID"] = "urn:uuid:5d5c0d3a-3b1e-4a4f-8a0e-0b0e8b1c2d3e"
    assert _capture(document)[0].payload["process"] == event["transformationID"]


def test_extension_fields_are_read_by_iri_not_by_prefix(history: History) -> None:
    document = _single(history, "create-2")
    document["@context"][1] = {"r": RANTAI_NAMESPACE}
    event = document["epcisBody"]["eventList"][0]
    event["ilmd"]["r:commodity"] = event["ilmd"].pop("rantai:commodity")
    event["ilmd"][_CBVMDA_START] = event["ilmd"].pop("cbvmda:harvestStartDate")
    [item] = _capture(document)
    assert item.payload["commodity"] == "coffee"
    assert item.payload["harvested_on"] == "2026-11-20"
    event["ilmd"][RANTAI_NAMESPACE + "commodity"] = "coffee"
    with pytest.raises(EpcisError, match="twice"):
        _capture(document)


_CBVMDA_START = "urn:epcglobal:cbv:mda:harvestStartDate"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d.update(type="EPCISQueryDocument"), "type"),
        (lambda d: d.pop("@context"), "@context"),
        (lambda d: d.update({"@context": "https://example.com/context.jsonld"}), "@context"),
        (
            lambda d: d.update({"@context": [EPCIS_CONTEXT, "https://evil.example/c.jsonld"]}),
            "@context[1]",
        ),
        (lambda d: d.update({"@context": [{"rantai": RANTAI_NAMESPACE}]}), "@context"),
        (
            lambda d: d.update({"@context": [EPCIS_CONTEXT, {"@vocab": "https://x.example/"}]}),
            "@context[1].@vocab",
        ),
        (lambda d: d.update({"@context": [EPCIS_CONTEXT, {"x": 5}]}), "@context[1].x"),
        (
            lambda d: d.update({"@context": [EPCIS_CONTEXT, {"gs1": "https://x.example/"}]}),
            "@context[1].gs1",
        ),
        (
            lambda d: d.update({"@context": [EPCIS_CONTEXT, {"type": "https://x.example/"}]}),
            "@context[1].type",
        ),
        (lambda d: d.update({"@context": [EPCIS_CONTEXT, 5]}), "@context[1]"),
        (lambda d: d.update(schemaVersion="1.2"), "schemaVersion"),
        (lambda d: d.update(schemaVersion=2.0), "schemaVersion"),
        (lambda d: d.pop("creationDate"), "creationDate"),
        (lambda d: d.update(creationDate="today"), "creationDate"),
        (lambda d: d.update(epcisBody={"event": {}}), "epcisBody.eventList"),
        (lambda d: d.update(epcisBody=[]), "epcisBody.eventList"),
        (
            lambda d: d["epcisBody"].update(
                eventList=d["epcisBody"]["eventList"] * (MAX_EVENTS + 1)
            ),
            "epcisBody.eventList",
        ),
    ],
    ids=[
        "query-document",
        "no-context",
        "unknown-context",
        "remote-context",
        "no-epcis-context",
        "vocab",
        "prefix-not-iri",
        "protected-prefix",
        "protected-term",
        "context-number",
        "version-1.2",
        "version-number",
        "no-creation-date",
        "bad-creation-date",
        "single-event",
        "body-list",
        "too-many-events",
    ],
)
def test_document_refusals_name_the_field(history: History, change: Any, field: str) -> None:
    document = _single(history, "create-2")
    change(document)
    with pytest.raises(EpcisError) as caught:
        _capture(document)
    assert (caught.value.position, caught.value.field) == (None, field)


@pytest.mark.parametrize(
    "document",
    [
        b"[]",
        b"null",
        b'{"type": "EPCISDocument", "type": "EPCISDocument"}',
        b'{"a": NaN}',
        b"\xff",
        b"{" * 100 + b"}" * 100,
        b" " * (MAX_DOCUMENT_BYTES + 1),
        {"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
        {"a": float("nan")},
        {"a": 2**60},
        {"a": (1, 2)},
        {1: "a"},
        {"a": "\ud800"},
        "a string",
        None,
    ],
    ids=[
        "list",
        "null",
        "duplicate-key",
        "nan",
        "not-utf8",
        "deep-bytes",
        "too-large",
        "deep",
        "nan-float",
        "huge-int",
        "tuple",
        "int-key",
        "surrogate",
        "str",
        "none",
    ],
)
def test_malformed_documents_raise_encoding_errors(document: Any) -> None:
    with pytest.raises(EncodingError):
        _capture(document)


def test_capture_refuses_a_malformed_capture_time(history: History) -> None:
    with pytest.raises(EncodingError):
        capture_bodies(_single(history, "create-2"), network=NETWORK, created_at="now")


def test_an_empty_event_list_captures_nothing(history: History) -> None:
    document = _single(history, "create-2")
    document["epcisBody"]["eventList"] = []
    assert _capture(document) == []


# --- offline: the package must never reach for the network -----------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, ...]]]:
    attempts: list[tuple[Any, ...]] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield attempts
    assert not attempts


def test_hashing_and_capture_work_offline(
    no_network: list[tuple[Any, ...]], history: History
) -> None:
    # Most openepcis documents name the unversioned context URL, which the package itself
    # would fetch; we answer it from the shipped 2.0.0 copy.
    document = json.loads((EPCIS_DATA / "openepcis" / "valid" / "ObjectEvent.json").read_text())
    assert document["@context"][0] == "https://ref.gs1.org/standards/epcis/epcis-context.jsonld"
    assert HASH_ID.fullmatch(
        event_hash_id(document["epcisBody"]["eventList"][0], document["@context"])
    )
    assert len(_capture(_capturable_document(history))) == len(CAPTURABLE)


def test_remote_contexts_are_refused_without_fetching(no_network: list[tuple[Any, ...]]) -> None:
    event = {
        "type": "ObjectEvent",
        "eventTime": "2026-11-29T03:00:00Z",
        "eventTimeZoneOffset": "+00:00",
        "action": "OBSERVE",
        "epcList": ["urn:epc:id:sgtin:0614141.107346.2017"],
    }
    with pytest.raises(EpcisError, match="context"):
        event_hash_id(event, [EPCIS_CONTEXT, "https://evil.example/context.jsonld"])
    nested = event | {"ex:f": {"@context": "https://evil.example/context.jsonld", "ex:g": "x"}}
    with pytest.raises(EpcisError, match="JsonLdError"):
        event_hash_id(nested, [EPCIS_CONTEXT, {"ex": "https://ex.example/"}])


def test_a_time_the_package_cannot_round_is_refused_not_dropped() -> None:
    # epcis-event-hash-generator rounds to milliseconds with datetime.replace, which fails for
    # .9995-.9999 s; it then logs and silently skips the event.
    event = {
        "type": "ObjectEvent",
        "eventTime": "2026-11-29T03:00:00.9996Z",
        "eventTimeZoneOffset": "+00:00",
        "action": "OBSERVE",
        "epcList": ["urn:epc:id:sgtin:0614141.107346.2017"],
    }
    with pytest.raises(EpcisError, match="could not process"):
        event_hash_id(event, [EPCIS_CONTEXT])


def test_hash_ids_do_not_depend_on_earlier_documents() -> None:
    # The package keeps the namespaces of every document it saw in a module-level table.
    event = {
        "type": "ObjectEvent",
        "eventTime": "2026-11-29T03:00:00Z",
        "eventTimeZoneOffset": "+00:00",
        "action": "OBSERVE",
        "epcList": ["urn:epc:id:sgtin:0614141.107346.2017"],
        "ex:f": "v",
    }
    before = event_hash_id(event, [EPCIS_CONTEXT])
    event_hash_id(event, [EPCIS_CONTEXT, {"ex": "https://ex.example/"}])
    assert event_hash_id(event, [EPCIS_CONTEXT]) == before


# --- hostile input ----------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_VALUES)
def test_arbitrary_json_maps_or_raises_encoding_errors(value: Any) -> None:
    with contextlib.suppress(EncodingError):
        _capture(value)
    with contextlib.suppress(EncodingError):
        _capture(json.dumps(value).encode())


@pytest.fixture(scope="module")
def seed_document(history: History) -> dict[str, Any]:
    return _capturable_document(history)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for position, child in enumerate(value):
            yield from _paths(child, (*prefix, position))


MUTATION_TOKENS = st.sampled_from(
    [
        None,
        0,
        -1,
        1e308,
        0.1,
        True,
        "",
        "ADD",
        "shipping",
        "receiving",
        "commissioning",
        "desadv",
        "owning_party",
        "KGM",
        "@context",
        "urn:rantai:kalbar-coop:lot:X",
        "urn:rantai:kalbar-coop:party:koperasi-kopi/siti",
        "https://id.gs1.org/01/09521234543213/10/L",
        "https://evil.example/ctx.jsonld",
        "2026-11-29T03:00:00Z",
        [],
        {},
        {"@context": "https://evil.example/ctx.jsonld"},
        {"@id": "x"},
        [{"epcClass": "urn:rantai:kalbar-coop:lot:X", "quantity": 1, "uom": "KGM"}],
    ]
).map(copy.deepcopy)  # the tokens are shared objects; a mutation must never change them


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_documents_map_or_raise_encoding_errors(
    seed_document: dict[str, Any], data: st.DataObject
) -> None:
    document = copy.deepcopy(seed_document)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = [p for p in _paths(document) if p]
        path = data.draw(st.sampled_from(paths))
        parent: Any = document
        for step in path[:-1]:
            parent = parent[step]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = data.draw(MUTATION_TOKENS | JSON_VALUES)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[data.draw(st.sampled_from(["rantai:x", "ex:y", "bizStep", "x", "@context"]))] = (
                data.draw(MUTATION_TOKENS)
            )
        else:
            parent.append(data.draw(MUTATION_TOKENS))
    try:
        captured = _capture(document)
    except EpcisError as e:
        note_outcome(f"refused at {re.sub(r'[0-9]+', 'n', e.field)}")
        return
    except EncodingError:
        note_outcome("malformed")
        return
    note_outcome(f"captured {len(captured)} events")
    for item in captured:
        assert HASH_ID.fullmatch(item.epcis)
        assert item.payload["epcis"] == item.epcis
