"""The EPCIS event query behind ``GET /epcis/events`` (``node.epcis_query``).

The filters decide from the ledger event what its EPCIS form will say; the reference here is
the EPCIS form itself: every query must pick exactly the events whose exported EPCIS event
matches it by the standard's definitions.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

import pytest

from ledger.encoding import format_time
from ledger.keys import public_key_bytes
from ledger.rules import StateMachine
from ledger.state import MemoryState
from node.epcis import CommittedLotEvent, LotClass, export_event, parse_lot_epc_class
from node.epcis_query import (
    DEFAULT_PER_PAGE,
    EventQuery,
    QueryParameterError,
    matches,
    page_token,
    parse_event_query,
)
from rantai.samplechain import sample_network

NET = sample_network(1)
NETWORK = NET.network
T0 = dt.datetime(2026, 11, 29, 3, 0, tzinfo=dt.UTC)
GTIN14 = "09521234543213"
KOPI, SITI, BUYER, AUDITORS, DEWI = (
    "koperasi-kopi",
    "koperasi-kopi/siti",
    "eu-buyer",
    "auditor-kalbar",
    "auditor-kalbar/dewi",
)


@dataclass
class History:
    state: MemoryState
    events: list[CommittedLotEvent]


def _build_history() -> History:
    machine = StateMachine(NET.genesis)
    events: list[CommittedLotEvent] = []

    def submit(kind: str, payload: dict[str, Any], signer: str) -> None:
        created = T0 + dt.timedelta(minutes=len(events))
        key = NET.governance_key if signer == "governance" else NET.key(signer)
        envelope = NET.event(kind, payload, [key], f"q-{len(events)}", format_time(created))
        block_time = created + dt.timedelta(seconds=30)
        machine.apply(envelope, len(events), block_time)
        events.append(CommittedLotEvent(envelope, len(events), format_time(block_time)))

    for org_id, kind in ((KOPI, "cooperative"), (BUYER, "buyer"), (AUDITORS, "auditor")):
        admins = [public_key_bytes(NET.key(f"{org_id}/admin-1")).hex()]
        submit(
            "org.register",
            {"org_id": org_id, "name": org_id, "kind": kind, "admins": admins},
            "governance",
        )
    for member_id, role in ((SITI, "producer"), (DEWI, "auditor")):
        payload = {
            "member_id": member_id,
            "role": role,
            "public_keys": [public_key_bytes(NET.key(member_id)).hex()],
            "profile_hash": hashlib.sha256(member_id.encode()).hexdigest(),
        }
        submit("member.register", payload, member_id.split("/")[0] + "/admin-1")
    create = {"commodity": "coffee", "uom": "kg", "producer": SITI, "harvested_on": "2026-11-20"}
    submit("lot.create", create | {"lot_id": "KP-1", "quantity": "1000", "gtin": GTIN14}, SITI)
    submit("lot.create", create | {"lot_id": "KP-2", "quantity": "300"}, SITI)
    outputs = [{"lot_id": "KP-1A", "quantity": "400"}, {"lot_id": "KP-1B", "quantity": "500"}]
    submit("lot.split", {"lot_id": "KP-1", "outputs": outputs}, SITI)
    submit("lot.merge", {"inputs": ["KP-1B", "KP-2"], "lot_id": "KP-M"}, SITI)
    output = {"lot_id": "GB-1", "commodity": "green_bean", "quantity": "640", "uom": "kg"}
    transform = {
        "inputs": [{"lot_id": "KP-M", "quantity": "800"}],
        "outputs": [output],
        "process": "hulling",
    }
    submit("lot.transform", transform, SITI)
    submit("lot.ship", {"lot_id": "GB-1", "shipment_id": "SHIP-1", "to": BUYER}, SITI)
    receipt = {"lot_id": "GB-1", "shipment_id": "SHIP-1", "quantity_received": "639"}
    submit("lot.receive", receipt, f"{BUYER}/admin-1")
    certification = {
        "lot_id": "KP-1A",
        "scheme": "Rainforest Alliance",
        "certificate": "RA-1",
        "valid_until": "2027-12-31",
    }
    submit("lot.certify", certification, DEWI)
    assert isinstance(machine.state, MemoryState)
    return History(machine.state, events)


@pytest.fixture(scope="module")
def history() -> History:
    return _build_history()


# --- the reference: the standard's definitions over the exported EPCIS event ---------------------


def _classes(event: dict[str, Any], lists: tuple[str, ...]) -> list[LotClass]:
    return [
        parse_lot_epc_class(NETWORK, element["epcClass"])
        for name in lists
        for element in event.get(name, [])
    ]


def _named(wanted: tuple[LotClass, ...], named: list[LotClass]) -> bool:
    return any(w.lot_id == n.lot_id and w.gtin in (None, n.gtin) for w in wanted for n in named)


def _reference(query: EventQuery, event: dict[str, Any]) -> bool:
    time = dt.datetime.fromisoformat(event["eventTime"])
    return (
        (query.event_types is None or event["type"] in query.event_types)
        and (query.ge_event_time is None or time >= query.ge_event_time)
        and (query.lt_event_time is None or time < query.lt_event_time)
        and (query.biz_steps is None or event.get("bizStep") in query.biz_steps)
        and (
            query.epc_classes is None
            or _named(query.epc_classes, _classes(event, ("quantityList",)))
        )
        and (
            query.any_epc_classes is None
            or _named(
                query.any_epc_classes,
                _classes(event, ("quantityList", "inputQuantityList", "outputQuantityList")),
            )
        )
    )


def _lot(lot_id: str) -> str:
    return f"urn:rantai:{NETWORK}:lot:{lot_id}"


QUERIES = {
    "everything": "",
    "object-events": "eventType=ObjectEvent",
    "transformations": "eventType=TransformationEvent",
    "aggregations": "eventType=AggregationEvent",
    "two-types": "eventType=ObjectEvent|TransformationEvent",
    "commissioning": "EQ_bizStep=commissioning",
    "shipping-or-receiving-uris": (
        "EQ_bizStep=https://ref.gs1.org/cbv/BizStep-shipping"
        "&EQ_bizStep=urn:epcglobal:cbv:bizstep:receiving"
    ),
    "repackaging-transformations": "EQ_bizStep=repackaging&eventType=TransformationEvent",
    "from-minute-5": "GE_eventTime=2026-11-29T03:05:00Z",
    "before-minute-8-in-wib": "LT_eventTime=2026-11-29T10:08:00+07:00",
    "time-window": "GE_eventTime=2026-11-29T03:06:00Z&LT_eventTime=2026-11-29T03:09:00Z",
    "kp-1-urn": f"MATCH_epcClass={_lot('KP-1')}",
    "kp-1-digital-link": f"MATCH_epcClass=https://id.gs1.org/01/{GTIN14}/10/KP-1",
    "kp-1-lgtin": "MATCH_epcClass=urn:epc:class:lgtin:9521234.054321.KP-1",
    "kp-1-other-gtin": "MATCH_epcClass=https://id.gs1.org/01/04012345111118/10/KP-1",
    "gb-1": f"MATCH_epcClass={_lot('GB-1')}",
    "any-kp-1": f"MATCH_anyEPCClass={_lot('KP-1')}",
    "any-kp-m-or-kp-1a": f"MATCH_anyEPCClass={_lot('KP-M')}|{_lot('KP-1A')}",
    "any-kp-2-as-object-event": f"MATCH_anyEPCClass={_lot('KP-2')}&eventType=ObjectEvent",
    "kp-2-in-quantity-list-only": f"MATCH_epcClass={_lot('KP-2')}",
}


def _parameters(text: str) -> list[tuple[str, str]]:
    return [tuple(pair.split("=", 1)) for pair in text.split("&") if pair]  # type: ignore[misc]


def _query(text: str) -> EventQuery:
    return parse_event_query(_parameters(text), network=NETWORK, log_size=100)


@pytest.mark.parametrize("text", QUERIES.values(), ids=QUERIES.keys())
def test_filters_pick_what_the_epcis_form_matches(history: History, text: str) -> None:
    query = _query(text)
    picked, expected = [], []
    for committed in history.events:
        exported = export_event(committed, network=NETWORK, lots=history.state)
        if matches(query, committed.envelope, history.state):
            picked.append(committed.index)
        if exported is not None and _reference(query, exported):
            expected.append(committed.index)
    assert picked == expected


def test_the_filters_are_not_vacuous(history: History) -> None:
    def count(text: str) -> int:
        query = _query(text)
        return sum(matches(query, c.envelope, history.state) for c in history.events)

    assert count("") == 8  # every lot.* event, none of the registrations
    assert count(QUERIES["kp-1-digital-link"]) == 1
    assert count(QUERIES["kp-1-other-gtin"]) == 0
    assert count(QUERIES["any-kp-1"]) == 2  # its harvest and its split
    assert count(QUERIES["aggregations"]) == 0


def test_defaults_and_several_values() -> None:
    query = _query("eventType=ObjectEvent&eventType=TransformationEvent|ObjectEvent")
    assert query.event_types == frozenset({"ObjectEvent", "TransformationEvent"})
    assert (query.per_page, query.start) == (DEFAULT_PER_PAGE, 0)
    spaced = _query("GE_eventTime=2026-11-29T10:00:00 07:00")  # an unencoded '+'
    assert spaced.ge_event_time == dt.datetime(2026, 11, 29, 3, 0, tzinfo=dt.UTC)


def test_page_tokens_round_trip() -> None:
    for index in (0, 7, 100):
        assert _query(f"nextPageToken={page_token(index)}").start == index


@pytest.mark.parametrize(
    ("text", "parameter"),
    [
        ("perPage=0", "perPage"),
        ("perPage=1001", "perPage"),
        ("perPage=ten", "perPage"),
        ("perPage=5&perPage=6", "perPage"),
        ("eventType=Object", "eventType"),
        ("eventType=ObjectEvent|", "eventType"),
        ("GE_eventTime=yesterday", "GE_eventTime"),
        ("LT_eventTime=2026-11-29T03:00:00", "LT_eventTime"),
        ("LT_eventTime=2026-02-30T03:00:00Z", "LT_eventTime"),
        ("MATCH_epcClass=urn:epc:idpat:sgtin:0614141.107346.*", "MATCH_epcClass"),
        ("MATCH_anyEPCClass=urn:rantai:other-net:lot:KP-1", "MATCH_anyEPCClass"),
        ("nextPageToken=!!", "nextPageToken"),
        ("nextPageToken=MDA", "nextPageToken"),  # "00": not a token this node made
        (f"nextPageToken={page_token(101)}", "nextPageToken"),  # beyond the log
        ("EQ_action=ADD", "EQ_action"),
        ("limit=10", "limit"),
    ],
)
def test_bad_parameters_are_named(text: str, parameter: str) -> None:
    with pytest.raises(QueryParameterError) as caught:
        _query(text)
    assert caught.value.parameter == parameter
