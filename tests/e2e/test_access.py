"""Who may read what, through real HTTP on a running node (``api.access``, docs/decisions.md D27).

The whole matrix: every role (anonymous, a producer, clerk and admin of a cooperative, a buyer
of another organisation, an auditor by role, a clerk of an auditor organisation, a validator,
the governance admin, a revoked key, an unknown key) against every route, each answering
``200`` (or the route's own status), ``401`` or ``403``. Then the signatures a node refuses:
expired, from the future, replayed, over another body or path.

The cooperative ``koperasi-kopi`` has two lots: ``LOT-A`` stays with its producer, ``LOT-B``
is shipped to and received by ``eu-buyer``, which splits ``LOT-B1`` off it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from api.access import ROUTE_ACCESS
from ledger.keys import key_id, public_key_bytes
from node.httpsig import ACCEPT_SIGNATURE, MAX_SKEW_SECONDS, sign_request
from node.keystore import load_key
from tests.e2e.network import Network

pytestmark = pytest.mark.slow

KOPI, BUYER, LSK = "koperasi-kopi", "eu-buyer", "lsk-kalbar"
MEMBERS = {  # role label → (member id, role)
    "producer-a": (f"{KOPI}/siti", "producer"),
    "clerk-a": (f"{KOPI}/clerk-1", "clerk"),
    "auditor-role": (f"{KOPI}/pengawas", "auditor"),  # the cooperative's own supervisor
    "revoked": (f"{KOPI}/old", "clerk"),
    "buyer-b": (f"{BUYER}/anna", "buyer"),
    "auditor-org": (f"{LSK}/clerk-1", "clerk"),  # any member of an auditor organisation
}
ROLES = [
    "anonymous",
    "producer-a",
    "clerk-a",
    "admin-a",
    "buyer-b",
    "auditor-role",
    "auditor-org",
    "validator",
    "governance",
    "revoked",
    "unknown",
]
UNAUTHENTICATED = {"anonymous", "revoked", "unknown"}
A = {"producer-a", "clerk-a", "admin-a", "auditor-role"}  # members of koperasi-kopi
B = {"buyer-b"}
EVERYTHING = {"auditor-role", "auditor-org", "validator"}
SIGNED = set(ROLES) - UNAUTHENTICATED
PUBLIC = None


@dataclass(frozen=True)
class Route:
    """A request to a route (its path template), who may make it (``PUBLIC``: anyone) and
    what it answers them."""

    method: str
    path: str
    template: str
    allowed: set[str] | None
    status: int = 200
    body: bytes = b""


ROUTES = {
    "checkpoint": Route("GET", "/v1/checkpoint", "/v1/checkpoint", PUBLIC),
    "proof": Route("GET", "/v1/events/{lot_a}/proof", "/v1/events/{event_id}/proof", PUBLIC),
    "consistency": Route(
        "GET", "/v1/proofs/consistency?from=1&to=2", "/v1/proofs/consistency", PUBLIC
    ),
    "trace": Route("GET", "/v1/lots/LOT-A/trace", "/v1/lots/{lot_id}/trace", PUBLIC),
    "healthz": Route("GET", "/healthz", "/healthz", PUBLIC),
    "metrics": Route("GET", "/metrics", "/metrics", PUBLIC),
    "openapi": Route("GET", "/openapi.json", "/openapi.json", PUBLIC),
    "docs": Route("GET", "/docs", "/docs", PUBLIC),
    "submit": Route("POST", "/v1/events", "/v1/events", PUBLIC, 400, b'{"events": []}'),
    "capture": Route("POST", "/epcis/capture", "/epcis/capture", PUBLIC, 404, b"{}"),
    "status": Route("GET", "/v1/status", "/v1/status", SIGNED),
    "orgs": Route("GET", "/v1/orgs", "/v1/orgs", SIGNED),
    "epcis-events": Route("GET", "/epcis/events", "/epcis/events", SIGNED),
    "export": Route("GET", "/v1/export", "/v1/export", EVERYTHING),
    "block": Route("GET", "/v1/blocks/1", "/v1/blocks/{height}", EVERYTHING),
    "lot-a": Route("GET", "/v1/lots/LOT-A", "/v1/lots/{lot_id}", A | EVERYTHING),
    "lot-b": Route("GET", "/v1/lots/LOT-B", "/v1/lots/{lot_id}", A | B | EVERYTHING),
    "lot-b1": Route("GET", "/v1/lots/LOT-B1", "/v1/lots/{lot_id}", B | EVERYTHING),
    "lot-unknown": Route(
        "GET", "/v1/lots/NO-SUCH-LOT", "/v1/lots/{lot_id}", SIGNED - {"governance"}, 404
    ),
    "event-lot-a": Route("GET", "/v1/events/{lot_a}", "/v1/events/{event_id}", A | EVERYTHING),
    "event-lot-b": Route("GET", "/v1/events/{lot_b}", "/v1/events/{event_id}", A | B | EVERYTHING),
    "event-buyer": Route("GET", "/v1/events/{anna}", "/v1/events/{event_id}", B | EVERYTHING),
    "event-unknown": Route(
        "GET", "/v1/events/" + "0" * 64, "/v1/events/{event_id}", SIGNED - {"governance"}, 404
    ),
    "member-a": Route(
        "GET", "/v1/members/koperasi-kopi/siti", "/v1/members/{member_id}", A | EVERYTHING
    ),
    "member-b": Route(
        "GET", "/v1/members/eu-buyer/anna", "/v1/members/{member_id}", B | EVERYTHING
    ),
    "peer-inbox": Route(
        "POST", "/v1/peer/inbox", "/v1/peer/inbox", {"validator"}, 204, b'{"items": []}'
    ),
}


def expected(route: Route, role: str) -> int:
    if route.allowed is PUBLIC:
        return route.status
    if role in UNAUTHENTICATED:
        return 401
    return route.status if role in route.allowed else 403


@dataclass
class Setup:
    network: Network
    keys: dict[str, Ed25519PrivateKey]
    events: dict[str, str]
    http: httpx.Client

    def send(
        self,
        role: str,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        created: int | None = None,
        signed_path: str | None = None,
        signed_body: bytes | None = None,
    ) -> httpx.Response:
        """A request from ``role``, signed as ``signed_path`` and ``signed_body`` say (by
        default: what is sent)."""
        headers = {"content-type": "application/json"} if body else {}
        if role != "anonymous":
            key = self.keys[role]
            headers |= sign_request(
                method,
                signed_path or path,
                body if signed_body is None else signed_body,
                key,
                key_id(public_key_bytes(key)),
                int(time.time()) if created is None else created,
            )
        return self.http.request(method, self.network.url(1) + path, content=body, headers=headers)

    def path(self, route: Route) -> str:
        return route.path.format(**self.events)


def _committed(network: Network, events: list[dict[str, Any]]) -> list[str]:
    response = network.submit(1, events)
    assert response.status_code == 200, response.text
    answered = response.json()["events"]
    assert all(a["status"] == "committed" for a in answered), answered
    return [a["event_id"] for a in answered]


def _profile(member: str) -> str:
    return hashlib.sha256(member.encode()).hexdigest()


def _bootstrap(network: Network) -> tuple[dict[str, Ed25519PrivateKey], dict[str, str]]:
    keys = {role: network.key(role) for role in [*MEMBERS, "admin-a", "admin-b", "admin-l"]}
    keys["governance"] = load_key(network.directory / "keys" / "governance.pem")
    keys["validator"] = network.validator(1)
    keys["unknown"] = network.key("never-registered")
    governance = keys["governance"]

    def pub(role: str) -> str:
        return public_key_bytes(keys[role]).hex()

    orgs = [
        (KOPI, "cooperative", "admin-a"),
        (BUYER, "buyer", "admin-b"),
        (LSK, "auditor", "admin-l"),
    ]
    _committed(
        network,
        [
            network.event(
                "org.register",
                {"org_id": org, "name": org, "kind": kind, "admins": [pub(admin)]},
                [governance],
            )
            for org, kind, admin in orgs
        ],
    )
    admins = {KOPI: keys["admin-a"], BUYER: keys["admin-b"], LSK: keys["admin-l"]}
    registered = _committed(
        network,
        [
            network.event(
                "member.register",
                {
                    "member_id": member,
                    "role": role,
                    "public_keys": [pub(label)],
                    "profile_hash": _profile(member),
                },
                [admins[member.split("/")[0]]],
            )
            for label, (member, role) in MEMBERS.items()
        ],
    )
    siti = keys["producer-a"]
    harvest = {"commodity": "coffee", "quantity": "10", "uom": "kg", "producer": f"{KOPI}/siti"}
    revoked = key_id(public_key_bytes(keys["revoked"]))
    lot_a, lot_b, _ = _committed(
        network,
        [
            network.event(
                "lot.create", {"lot_id": "LOT-A", **harvest, "harvested_on": "2026-11-20"}, [siti]
            ),
            network.event(
                "lot.create", {"lot_id": "LOT-B", **harvest, "harvested_on": "2026-11-21"}, [siti]
            ),
            network.event(
                "key.revoke", {"member_id": f"{KOPI}/old", "key": revoked}, [keys["admin-a"]]
            ),
        ],
    )
    (ship,) = _committed(
        network,
        [
            network.event(
                "lot.ship", {"lot_id": "LOT-B", "shipment_id": "SH-B", "to": BUYER}, [siti]
            )
        ],
    )
    anna = keys["buyer-b"]
    (receive,) = _committed(
        network,
        [
            network.event(
                "lot.receive",
                {"lot_id": "LOT-B", "shipment_id": "SH-B", "quantity_received": "10"},
                [anna],
            )
        ],
    )
    (split,) = _committed(
        network,
        [
            network.event(
                "lot.split",
                {"lot_id": "LOT-B", "outputs": [{"lot_id": "LOT-B1", "quantity": "4"}]},
                [keys["admin-b"]],
            )
        ],
    )
    anna_registered = registered[list(MEMBERS).index("buyer-b")]
    events = {
        "lot_a": lot_a,
        "lot_b": lot_b,
        "ship_b": ship,
        "receive_b": receive,
        "split_b": split,
        "anna": anna_registered,
    }
    return keys, events


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    network = Network.create(tmp_path_factory.mktemp("access") / "net", 1)
    network.start_all()
    try:
        keys, events = _bootstrap(network)
        with httpx.Client(timeout=10) as http:
            yield Setup(network, keys, events, http)
    finally:
        network.stop_all()


# --- the matrix ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", list(ROUTES))
def test_each_role_on_each_route(setup: Setup, route: str, role: str) -> None:
    request = ROUTES[route]
    response = setup.send(role, request.method, setup.path(request), request.body)
    want = expected(request, role)
    assert response.status_code == want, f"{role} {route}: {response.text[:300]}"
    if want in (401, 403):
        problem = response.json()
        assert response.headers["content-type"].startswith("application/problem+json")
        assert problem["status"] == want
    if want == 401:
        assert response.headers["accept-signature"] == ACCEPT_SIGNATURE
        assert response.headers["www-authenticate"] == 'Signature realm="rantai"'
        reason = {"anonymous": "signature-missing", "revoked": "key-revoked"}.get(
            role, "key-unknown"
        )
        assert response.json()["type"].endswith("/" + reason)
    if want == 403:
        assert response.json()["type"].endswith("/forbidden")


def test_the_matrix_covers_every_route_of_the_app(setup: Setup) -> None:
    document = setup.send("anonymous", "GET", "/openapi.json").json()
    documented = {(m.upper(), path) for path, item in document["paths"].items() for m in item}
    assert set(ROUTE_ACCESS) - {("POST", "/v1/peer/inbox")} == documented
    assert {(r.method, r.template) for r in ROUTES.values()} >= set(ROUTE_ACCESS)


# --- what a member sees in a list -----------------------------------------------------------------


def _listed(setup: Setup, role: str) -> set[str]:
    response = setup.send(role, "GET", "/epcis/events?perPage=1000")
    assert response.status_code == 200, response.text
    return {
        event["rantai:eventID"]
        for event in response.json()["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    }


@pytest.mark.parametrize(
    ("role", "visible"),
    [
        ("buyer-b", {"lot_b", "ship_b", "receive_b", "split_b"}),
        ("producer-a", {"lot_a", "lot_b", "ship_b", "receive_b", "split_b"}),
        ("auditor-org", {"lot_a", "lot_b", "ship_b", "receive_b", "split_b"}),
        ("governance", set()),
    ],
    ids=["buyer", "producer", "auditor", "governance"],
)
def test_epcis_events_are_filtered_to_what_the_member_may_read(
    setup: Setup, role: str, visible: set[str]
) -> None:
    assert _listed(setup, role) == {setup.events[name] for name in visible}


# --- refused signatures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "reason"),
    [(-(MAX_SKEW_SECONDS + 60), "signature-expired"), (MAX_SKEW_SECONDS + 60, "signature-future")],
    ids=["created-6-minutes-ago", "created-6-minutes-ahead"],
)
def test_a_signature_outside_the_window(setup: Setup, offset: int, reason: str) -> None:
    response = setup.send("auditor-org", "GET", "/v1/status", created=int(time.time()) + offset)
    assert response.status_code == 401
    assert response.json()["type"].endswith("/" + reason)


def test_a_replayed_request_is_refused(setup: Setup) -> None:
    key = setup.keys["buyer-b"]
    headers = sign_request(
        "GET", "/v1/lots/LOT-B", b"", key, key_id(public_key_bytes(key)), int(time.time())
    )
    url = setup.network.url(1) + "/v1/lots/LOT-B"
    first = setup.http.get(url, headers=headers)
    assert first.status_code == 200, first.text
    again = setup.http.get(url, headers=headers)
    assert again.status_code == 401
    assert again.json()["type"].endswith("/replayed")
    fresh = setup.send("buyer-b", "GET", "/v1/lots/LOT-B")
    assert fresh.status_code == 200


def test_a_replayed_peer_request_is_refused(setup: Setup) -> None:
    """The peer inbox checks a validator's signature on the event loop: same replay guard."""
    key, body = setup.keys["validator"], b'{"items": []}'
    headers = {"content-type": "application/json"} | sign_request(
        "POST", "/v1/peer/inbox", body, key, key_id(public_key_bytes(key)), int(time.time())
    )
    url = setup.network.url(1) + "/v1/peer/inbox"
    assert setup.http.post(url, content=body, headers=headers).status_code == 204
    again = setup.http.post(url, content=body, headers=headers)
    assert again.status_code == 401
    assert again.json()["type"].endswith("/replayed")


def test_a_body_altered_after_signing(setup: Setup) -> None:
    signed, sent = b'{"items": []}', json.dumps({"items": [{"kind": "message"}]}).encode()
    response = setup.send("validator", "POST", "/v1/peer/inbox", sent, signed_body=signed)
    assert response.status_code == 401
    assert response.json()["type"].endswith("/digest-mismatch")


def test_a_signature_for_another_path(setup: Setup) -> None:
    response = setup.send("buyer-b", "GET", "/v1/lots/LOT-A", signed_path="/v1/lots/LOT-B")
    assert response.status_code == 401
    assert response.json()["type"].endswith("/signature-mismatch")


def test_a_forbidden_answer_says_who_may(setup: Setup) -> None:
    problem = setup.send("buyer-b", "GET", "/v1/export").json()
    assert problem["detail"] == (
        "eu-buyer/anna (buyer) may not GET /v1/export: auditors and validators may"
    )


def test_the_openapi_document_says_who_may_call_each_route(setup: Setup) -> None:
    paths = setup.send("anonymous", "GET", "/openapi.json").json()["paths"]
    export = paths["/v1/export"]["get"]
    assert export["security"] == [{"requestSignature": []}]
    assert {"401", "403"} <= set(export["responses"])
    assert "auditors and validators" in export["description"]
    assert "security" not in paths["/v1/checkpoint"]["get"]
    assert "401" not in paths["/v1/lots/{lot_id}/trace"]["get"]["responses"]
