"""EPCIS capture on a node (``node.epcis_capture``): signing, idempotent re-capture (pending and
committed), and the lot checks a payload cannot carry (GTIN, unit).

The node is built but never started: events are admitted to its mempool directly, so the
pending state is exactly what the test made it. The builders here also serve the API's
end-to-end tests.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ledger.events import Envelope
from ledger.keys import key_id, public_key_bytes
from node.epcis import EPCIS_CONTEXT, RANTAI_NAMESPACE, EpcisError, event_hash_id
from node.epcis_capture import CaptureLimitError, capture_envelopes, map_document
from node.runtime import LedgerNode
from node.store import Store
from rantai.samplechain import SampleNetwork, sample_network

CONTEXT: list[Any] = [EPCIS_CONTEXT, {"rantai": RANTAI_NAMESPACE}]
KOPI, SITI, CLERK = "koperasi-kopi", "koperasi-kopi/siti", "koperasi-kopi/clerk-1"


# --- EPCIS documents ----------------------------------------------------------------------------


def _urn(network: str, kind: str, name: str) -> str:
    return f"urn:rantai:{network}:{kind}:{name}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def epcis_document(*events: dict[str, Any]) -> dict[str, Any]:
    """A capture document holding ``events``."""
    return {
        "@context": CONTEXT,
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": _now(),
        "epcisBody": {"eventList": list(events)},
    }


def harvest(
    network: str,
    lot_id: str,
    quantity: int = 40,
    *,
    producer: str = SITI,
    epc_class: str | None = None,
    event_time: str | None = None,
) -> dict[str, Any]:
    """ObjectEvent ADD + commissioning: a ``lot.create`` of coffee in kg."""
    return {
        "type": "ObjectEvent",
        "eventTime": event_time or _now(),
        "eventTimeZoneOffset": "+07:00",
        "action": "ADD",
        "bizStep": "commissioning",
        "disposition": "active",
        "quantityList": [
            {
                "epcClass": epc_class or _urn(network, "lot", lot_id),
                "quantity": quantity,
                "uom": "KGM",
            }
        ],
        "sourceList": [{"type": "owning_party", "source": _urn(network, "party", producer)}],
        "ilmd": {"cbvmda:harvestStartDate": "2026-11-20", "rantai:commodity": "coffee"},
    }


def shipping(network: str, lot_id: str, shipment_id: str, to: str) -> dict[str, Any]:
    """ObjectEvent OBSERVE + shipping: a ``lot.ship``."""
    return {
        "type": "ObjectEvent",
        "eventTime": _now(),
        "eventTimeZoneOffset": "+07:00",
        "action": "OBSERVE",
        "bizStep": "shipping",
        "disposition": "in_transit",
        "quantityList": [{"epcClass": _urn(network, "lot", lot_id)}],
        "bizTransactionList": [
            {"type": "desadv", "bizTransaction": _urn(network, "shipment", shipment_id)}
        ],
        "destinationList": [{"type": "owning_party", "destination": _urn(network, "party", to)}],
    }


def receiving(
    network: str, lot_id: str, shipment_id: str, quantity: int, uom: str = "KGM"
) -> dict[str, Any]:
    """ObjectEvent OBSERVE + receiving: a ``lot.receive``."""
    return {
        "type": "ObjectEvent",
        "eventTime": _now(),
        "eventTimeZoneOffset": "+07:00",
        "action": "OBSERVE",
        "bizStep": "receiving",
        "quantityList": [
            {"epcClass": _urn(network, "lot", lot_id), "quantity": quantity, "uom": uom}
        ],
        "bizTransactionList": [
            {"type": "desadv", "bizTransaction": _urn(network, "shipment", shipment_id)}
        ],
    }


def hash_id(event: dict[str, Any]) -> str:
    """The CBV 2.0 event hash id of an event of :func:`epcis_document`."""
    return event_hash_id(event, CONTEXT)


# --- a node that is never started --------------------------------------------------------------


@dataclass
class Harness:
    """A built node, its network, and every event admitted to its mempool, in order."""

    net: SampleNetwork
    node: LedgerNode
    admitted: list[Envelope] = field(default_factory=list)

    def event(self, kind: str, payload: dict[str, Any], signer: str) -> Envelope:
        key = self.net.governance_key if signer == "governance" else self.net.key(signer)
        nonce = hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]
        return self.net.event(kind, payload, [key], nonce, _now())

    def admit(self, envelopes: list[Envelope]) -> None:
        assert self.node.check_batch(envelopes) == []
        for envelope in envelopes:
            assert self.node.app.submit(envelope).status == "pending"
        self.admitted.extend(envelopes)

    def commit(self) -> None:
        """Commit every admitted event in one certified block."""
        block = self.net.commit(
            self.node.ledger.head, self.node.ledger.log.copy(), self.admitted, _now()
        )
        assert block.commit is not None
        self.node.app.commit(block, block.commit)
        self.admitted.clear()

    def capture(self, *events: dict[str, Any]) -> list[Envelope]:
        raw = json.dumps(epcis_document(*events)).encode()
        mapped = map_document(raw, network=self.net.network, now=dt.datetime.now(dt.UTC))
        return capture_envelopes(self.node, mapped, self.net.key(CLERK))


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    net = sample_network(1)
    store = Store.open(f"sqlite:///{tmp_path / 'node.db'}")
    store.initialize(net.genesis)
    node = LedgerNode(net.genesis, store, net.validator_keys[0], net.genesis.validators[0].name, [])
    built = Harness(net, node)
    admin = public_key_bytes(net.key("admin")).hex()
    org = {"org_id": KOPI, "name": "Koperasi Kopi", "kind": "cooperative", "admins": [admin]}
    built.admit([built.event("org.register", org, "governance")])
    built.admit(
        [
            built.event(
                "member.register",
                {
                    "member_id": member,
                    "role": role,
                    "public_keys": [public_key_bytes(net.key(member)).hex()],
                    "profile_hash": hashlib.sha256(member.encode()).hexdigest(),
                },
                "admin",
            )
            for member, role in ((SITI, "producer"), (CLERK, "clerk"))
        ]
    )
    yield built
    store.close()


# --- tests --------------------------------------------------------------------------------------


def test_captured_events_are_signed_by_the_capture_key(harness: Harness) -> None:
    event = harvest(harness.net.network, "CAP-1")
    (envelope,) = harness.capture(event)
    assert envelope.type == "lot.create"
    assert envelope.payload["epcis"] == hash_id(event)
    assert [s.key for s in envelope.sigs] == [key_id(public_key_bytes(harness.net.key(CLERK)))]
    assert harness.node.check_batch([envelope]) == []


def test_recapturing_a_pending_event_gives_the_pending_event_back(harness: Harness) -> None:
    network = harness.net.network
    first, second = harvest(network, "CAP-1"), harvest(network, "CAP-2", 7)
    captured = harness.capture(first)
    harness.admit(captured)
    again = harness.capture(first, second)
    assert again[0] is harness.node.app.pending_event(captured[0].event_id)
    assert again[1].payload["lot_id"] == "CAP-2"
    assert harness.node.check_batch(again) == []


def test_recapturing_a_committed_event_gives_the_committed_event_back(harness: Harness) -> None:
    event = harvest(harness.net.network, "CAP-1")
    captured = harness.capture(event)
    harness.admit(captured)
    harness.commit()
    assert harness.node.store.event(captured[0].event_id) is not None
    (again,) = harness.capture(event)
    assert again == captured[0]


def test_an_epcis_event_twice_in_one_document_is_one_ledger_event(harness: Harness) -> None:
    event = harvest(harness.net.network, "CAP-1")
    first, second = harness.capture(event, event)
    assert first.event_id == second.event_id
    assert harness.node.check_batch([first, second]) == []


def _transform_to_gtin_output(network: str) -> dict[str, Any]:
    return {
        "type": "TransformationEvent",
        "eventTime": _now(),
        "eventTimeZoneOffset": "+07:00",
        "inputQuantityList": [
            {"epcClass": _urn(network, "lot", "CAP-1"), "quantity": 10, "uom": "KGM"}
        ],
        "outputQuantityList": [
            {
                "epcClass": "https://id.gs1.org/01/09521234543213/10/GB-1",
                "quantity": 8,
                "uom": "KGM",
            }
        ],
        "ilmd": {"rantai:commodity": "green_coffee"},
        "rantai:process": "hulling",
    }


_OTHER_GTIN_SHIPMENT = [{"epcClass": "https://id.gs1.org/01/04012345111118/10/CAP-1"}]


@pytest.mark.parametrize(
    ("events", "committed", "field", "detail"),
    [
        pytest.param(
            lambda n: [
                harvest(n, "CAP-1"),
                shipping(n, "CAP-1", "SHIP-1", KOPI),
                receiving(n, "CAP-1", "SHIP-1", 40_000, "GRM"),
            ],
            False,
            "epcisBody.eventList[2].quantityList[0].uom",
            "is GRM, but lot CAP-1 is kept in KGM",
            id="unit-of-a-lot-made-earlier-in-the-document",
        ),
        pytest.param(
            lambda n: [
                harvest(n, "CAP-1", epc_class="https://id.gs1.org/01/09521234543213/10/CAP-1"),
                shipping(n, "CAP-1", "SHIP-1", KOPI) | {"quantityList": _OTHER_GTIN_SHIPMENT},
            ],
            True,
            "epcisBody.eventList[0].quantityList[0].epcClass",
            "names GTIN 04012345111118, but lot CAP-1 has GTIN 09521234543213",
            id="gtin-of-another-product-on-a-committed-lot",
        ),
        pytest.param(
            lambda n: [harvest(n, "CAP-1"), _transform_to_gtin_output(n)],
            False,
            "epcisBody.eventList[1].outputQuantityList[0].epcClass",
            "the ledger records no GTIN for a transformation's outputs",
            id="gtin-of-a-transformation-output",
        ),
    ],
)
def test_lots_must_match_what_the_ledger_knows(
    harness: Harness, events: Any, committed: bool, field: str, detail: str
) -> None:
    made = events(harness.net.network)
    if committed:  # the lot is made and committed first; the document names it afterwards
        harness.admit(harness.capture(made[0]))
        harness.commit()
        made = made[1:]
    with pytest.raises(EpcisError) as caught:
        harness.capture(*made)
    assert caught.value.field == field
    assert caught.value.detail.startswith(detail)
    assert caught.value.position == int(field.split("[")[1].split("]")[0])


def test_a_document_over_the_capture_limit(harness: Harness) -> None:
    raw = json.dumps(epcis_document(*[{}] * 1001)).encode()
    with pytest.raises(CaptureLimitError):
        map_document(raw, network=harness.net.network, now=dt.datetime.now(dt.UTC))
