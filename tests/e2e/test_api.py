"""The HTTP API through real HTTP on a running (single-validator) node: answers and errors.

The node is configured with a capture key (``[capture]`` in its ``node.toml``): the key of a
clerk of the cooperative, registered right after the node starts. A second node, without a
capture key, answers ``POST /epcis/capture`` with ``404``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import MAX_BODY_BYTES
from ledger.blocks import parse_genesis
from ledger.checkpoint import verify_checkpoint
from ledger.events import parse_envelope, sign_event
from ledger.keys import key_id, public_key_bytes
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.verifier import verify_export
from node.epcis import MAX_DOCUMENT_BYTES
from node.epcis_query import page_token
from node.keystore import load_key, save_key
from tests.e2e.network import Network
from tests.epcis_schema import epcis_schema_validator
from tests.unit.test_api_capture import epcis_document, harvest, hash_id, receiving, shipping

pytestmark = pytest.mark.slow

NETWORK = "kalbar-coop"
KOPI, CLERK = "koperasi-kopi", "koperasi-kopi/clerk-1"
TOKEN = "e2e-capture-token-4f9a1c7d"


def _configure_capture(network: Network) -> None:
    """Give node 1 a capture key: the clerk's PEM and a token in ``[capture]``."""
    node_dir = network.directory / "node-1"
    save_key(network.key("clerk"), node_dir / "capture-clerk.pem")
    with (node_dir / "node.toml").open("a") as config:
        config.write(f'\n[capture]\nkey = "capture-clerk.pem"\ntoken = "{TOKEN}"\n')


def _register_clerk(network: Network) -> None:
    clerk = network.event(
        "member.register",
        {
            "member_id": CLERK,
            "role": "clerk",
            "public_keys": [public_key_bytes(network.key("clerk")).hex()],
            "profile_hash": hashlib.sha256(b"clerk").hexdigest(),
        },
        [network.key("admin")],
    )
    response = network.submit(1, [clerk])
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    network = Network.create(tmp_path_factory.mktemp("api") / "net", 1)
    _configure_capture(network)
    network.start_all()
    network.bootstrap(1)
    _register_clerk(network)
    yield network
    network.stop_all()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """A node without a capture key."""
    network = Network.create(tmp_path_factory.mktemp("plain") / "net", 1)
    network.start_all()
    yield network
    network.stop_all()


def _get(node: Network, path: str, **params: Any) -> httpx.Response:
    """A GET signed by the validator's key (which may read every route; see test_access)."""
    return node.get(1, path, **params)


def _is_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["type"].startswith("https://")
    assert problem["title"]
    return problem


def test_submit_commit_and_read_back(node: Network) -> None:
    events = node.harvests(3)
    response = node.submit(1, events)
    assert response.status_code == 200, response.text
    answered = response.json()["events"]
    assert [a["status"] for a in answered] == ["committed"] * 3
    again = node.submit(1, events)  # idempotent: the same events, nothing new
    assert again.status_code == 200
    assert again.json()["events"] == answered
    event = _get(node, f"/v1/events/{answered[0]['event_id']}").json()
    assert event["status"] == "committed"
    assert event["envelope"]["body"] == events[0]["body"]
    assert (event["height"], event["index"]) == (answered[0]["height"], answered[0]["index"])


def test_a_batch_with_one_bad_event_admits_nothing(node: Network) -> None:
    good, bad = node.harvests(2)
    bad_body = dict(bad["body"], payload=dict(bad["body"]["payload"], producer="koperasi-kopi/x"))
    bad = sign_event(bad_body, [node.key("producer")]).to_json()
    problem = _is_problem(node.submit(1, [good, bad]), 422)
    (error,) = problem["errors"]
    assert error["position"] == 1
    assert error["rule"] == "member.unknown"
    assert len(error["event_id"]) == 64
    good_id = parse_envelope(good).event_id
    _is_problem(_get(node, f"/v1/events/{good_id}"), 404)


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"{not json", 400),
        (b'{"events": []}', 400),
        (b'{"body": {}, "sigs": []}', 400),
        (b'{"events": [1, 2]}', 400),
    ],
    ids=["malformed-json", "empty-batch", "malformed-envelope", "not-envelopes"],
)
def test_bad_submissions_are_problems(node: Network, content: bytes, status: int) -> None:
    response = httpx.post(f"{node.url(1)}/v1/events", content=content, timeout=10)
    _is_problem(response, status)


def test_a_batch_over_the_limit(node: Network) -> None:
    events = node.harvests(1) * 1001
    _is_problem(node.submit(1, events), 413)


def test_proofs_and_checkpoint_verify_client_side(node: Network) -> None:
    answered = node.submit(1, node.harvests(4)).json()["events"]
    genesis = parse_genesis((node.directory / "genesis.json").read_bytes())
    note = _get(node, "/v1/checkpoint")
    assert note.status_code == 200
    checkpoint = verify_checkpoint(
        note.content, genesis.origin, genesis.note_verifiers, genesis.quorum
    )
    proof = _get(node, f"/v1/events/{answered[-1]['event_id']}/proof").json()
    assert proof["size"] == checkpoint.size
    verify_inclusion(
        bytes.fromhex(proof["leaf_hash"]),
        proof["index"],
        proof["size"],
        [bytes.fromhex(h) for h in proof["proof"]],
        checkpoint.root_hash,
    )
    bundle = _get(node, f"/v1/events/{answered[0]['event_id']}/proof", format="tlog-proof")
    assert bundle.status_code == 200
    lines = bundle.text.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    assert lines[1] == f"index {answered[0]['index']}"
    blank = lines.index("")
    assert all(len(base64.b64decode(line)) == 32 for line in lines[2:blank])
    bundled = "\n".join(lines[blank + 1 :]).encode()
    assert verify_checkpoint(bundled, genesis.origin, genesis.note_verifiers, 1).size >= 1
    consistency = _get(node, "/v1/proofs/consistency", **{"from": 1, "to": checkpoint.size})
    body = consistency.json()
    verify_consistency(
        1,
        checkpoint.size,
        [bytes.fromhex(h) for h in body["proof"]],
        bytes.fromhex(body["root_from"]),
        checkpoint.root_hash,
    )
    _is_problem(_get(node, "/v1/proofs/consistency", **{"from": 5, "to": 3}), 400)


def test_lots_members_orgs_blocks_status(node: Network) -> None:
    answered = node.submit(1, node.harvests(1)).json()["events"]
    event = _get(node, f"/v1/events/{answered[0]['event_id']}").json()
    lot_id = event["envelope"]["body"]["payload"]["lot_id"]
    lot = _get(node, f"/v1/lots/{lot_id}").json()
    assert (lot["owner"], lot["status"], lot["quantity"]) == (
        "koperasi-kopi/siti",
        "active",
        "12.5",
    )
    trace = _get(node, f"/v1/lots/{lot_id}/trace").json()
    assert [o["lot_id"] for o in trace["origins"]] == [lot_id]
    _is_problem(_get(node, "/v1/lots/NO-SUCH-LOT"), 404)
    _is_problem(_get(node, f"/v1/lots/{lot_id}/trace", direction="sideways"), 422)
    assert _get(node, "/v1/members/koperasi-kopi/siti").json()["role"] == "producer"
    assert "koperasi-kopi" in [o["org_id"] for o in _get(node, "/v1/orgs").json()["orgs"]]
    status = _get(node, "/v1/status").json()
    block = _get(node, f"/v1/blocks/{status['height']}").json()
    assert block["header"]["tree_size"] == status["tree_size"]
    _is_problem(_get(node, f"/v1/blocks/{status['height'] + 5}"), 404)
    assert status["peers"] == []
    assert status["evidence"] == []


def test_export_streams_a_verifiable_chain(node: Network, tmp_path: Path) -> None:
    export = _get(node, "/v1/export")
    assert export.headers["content-type"].startswith("application/x-ndjson")
    lines = export.content.splitlines()
    assert len(lines) == node.height(1) + 2
    genesis = parse_genesis((node.directory / "genesis.json").read_bytes())
    assert verify_export(export.content.splitlines(keepends=True), genesis=genesis).height >= 1


def test_metrics(node: Network) -> None:
    response = _get(node, "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    height = node.height(1)
    assert f"rantai_height {float(height)}" in text
    assert "rantai_events_committed_total" in text
    assert "rantai_pending_events 0.0" in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    commits = {s.name: s.value for s in families["rantai_block_commit_seconds"].samples}
    assert commits["rantai_block_commit_seconds_count"] >= 1
    assert commits["rantai_block_commit_seconds_sum"] > 0
    for name in ("rantai_vote_persist_seconds", "rantai_height_seconds"):
        assert families[name].type == "histogram"


def test_the_openapi_document_is_served(node: Network) -> None:
    document = _get(node, "/openapi.json").json()
    assert document["openapi"].startswith("3.1.")
    assert "Problem" in document["components"]["schemas"]
    assert "/epcis/capture" in document["paths"]
    assert "/v1/peer/inbox" not in document["paths"]  # validators' own route, not for clients


# --- EPCIS capture ------------------------------------------------------------------------------


def _capture(
    node: Network, document: Any, token: str | None = TOKEN, **params: Any
) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    content = document if isinstance(document, bytes) else json.dumps(document).encode()
    return httpx.post(
        f"{node.url(1)}/epcis/capture",
        params={k: v for k, v in {"wait": "commit", **params}.items() if v is not None},
        content=content,
        headers=headers,
        timeout=30,
    )


def test_capture_records_epcis_events_signed_by_the_capture_key(node: Network) -> None:
    create = harvest(NETWORK, "CAP-A", 40)
    ship = shipping(NETWORK, "CAP-A", "CAP-SHIP-A", KOPI)
    response = _capture(node, epcis_document(create, ship))
    assert response.status_code == 200, response.text
    answered = response.json()["events"]
    assert [a["status"] for a in answered] == ["committed", "committed"]
    event = _get(node, f"/v1/events/{answered[0]['event_id']}").json()
    assert event["envelope"]["body"]["type"] == "lot.create"
    assert event["envelope"]["body"]["payload"]["epcis"] == hash_id(create)
    clerk_key = key_id(public_key_bytes(node.key("clerk")))
    assert [s["key"] for s in event["envelope"]["sigs"]] == [clerk_key]
    lot = _get(node, "/v1/lots/CAP-A").json()
    assert (lot["status"], lot["owner"]) == ("in_transit", "koperasi-kopi/siti")

    receipt = receiving(NETWORK, "CAP-A", "CAP-SHIP-A", 39)
    response = _capture(node, epcis_document(receipt))
    assert response.status_code == 200, response.text
    lot = _get(node, "/v1/lots/CAP-A").json()
    assert (lot["status"], lot["owner"], lot["quantity"], lot["loss"]) == (
        "active",
        KOPI,
        "39",
        "1",
    )


def test_recapture_answers_with_the_ledger_events_already_there(node: Network) -> None:
    create = harvest(NETWORK, "CAP-B", 12)
    first = _capture(node, epcis_document(create))
    assert first.status_code == 200, first.text
    size = node.status(1)["tree_size"]
    again = _capture(node, epcis_document(create))
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    without_wait = _capture(node, epcis_document(create), wait=None)
    assert without_wait.status_code == 202
    assert without_wait.json() == first.json()
    assert node.status(1)["tree_size"] == size  # nothing new was signed or logged


def test_capture_needs_the_token(node: Network) -> None:
    document = epcis_document(harvest(NETWORK, "CAP-NO-TOKEN"))
    for token in (None, "wrong-token-0123456789", TOKEN[:-1]):
        response = _capture(node, document, token=token)
        _is_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
    basic = httpx.post(
        f"{node.url(1)}/epcis/capture",
        content=json.dumps(document),
        headers={"Authorization": f"Basic {TOKEN}"},
        timeout=10,
    )
    _is_problem(basic, 401)
    _is_problem(_get(node, "/v1/lots/CAP-NO-TOKEN"), 404)


def test_capture_needs_a_capture_key(plain: Network) -> None:
    problem = _is_problem(_capture(plain, epcis_document(harvest(NETWORK, "CAP-X"))), 404)
    assert problem["type"].endswith("/capture-not-configured")


def test_an_unsupported_event_refuses_the_whole_capture(node: Network) -> None:
    inspecting = shipping(NETWORK, "CAP-A", "CAP-SHIP-X", KOPI) | {"bizStep": "inspecting"}
    response = _capture(node, epcis_document(harvest(NETWORK, "CAP-C"), inspecting))
    problem = _is_problem(response, 422)
    assert problem["type"].endswith("/epcis-unsupported")
    (error,) = problem["errors"]
    assert (error["position"], error["field"], error["rule"]) == (
        1,
        "epcisBody.eventList[1].bizStep",
        "epcis.unsupported",
    )
    _is_problem(_get(node, "/v1/lots/CAP-C"), 404)  # the good event was not admitted either


def test_a_captured_event_the_rules_refuse(node: Network) -> None:
    stranger = harvest(NETWORK, "CAP-D", producer="koperasi-kopi/nobody")
    problem = _is_problem(_capture(node, epcis_document(stranger)), 422)
    (error,) = problem["errors"]
    assert (error["position"], error["rule"]) == (0, "member.unknown")
    assert len(error["event_id"]) == 64


def test_a_receipt_in_another_unit_is_refused(node: Network) -> None:
    document = epcis_document(
        harvest(NETWORK, "CAP-E", 5),
        shipping(NETWORK, "CAP-E", "CAP-SHIP-E", KOPI),
        receiving(NETWORK, "CAP-E", "CAP-SHIP-E", 5000, "GRM"),
    )
    problem = _is_problem(_capture(node, document), 422)
    assert problem["errors"][0]["field"] == "epcisBody.eventList[2].quantityList[0].uom"


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"{not json", 400),
        (b"[]", 422),
        (json.dumps(epcis_document(*[{}] * 1001)).encode(), 413),
        (b" " * (MAX_DOCUMENT_BYTES + 1), 413),
    ],
    ids=["malformed-json", "not-a-document", "too-many-events", "too-many-bytes"],
)
def test_bad_capture_documents(node: Network, content: bytes, status: int) -> None:
    _is_problem(_capture(node, content), status)


# --- EPCIS query --------------------------------------------------------------------------------


def _pages(node: Network, **params: Any) -> list[dict[str, Any]]:
    """Every page of a query, following the Link headers."""
    pages = []
    path: str | None = "/epcis/events"
    query: dict[str, Any] = params
    while path is not None:
        response = node.get(1, path, timeout=30, **query)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/ld+json")
        pages.append(response.json())
        link = response.links.get("next")
        path, query = None, {}
        if link is not None:
            following = urlsplit(link["url"])
            assert parse_qs(following.query)["nextPageToken"]
            path = f"{following.path}?{following.query}"
    return pages


def _ledger_ids(pages: list[dict[str, Any]]) -> list[str]:
    return [
        event["rantai:eventID"]
        for page in pages
        for event in page["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    ]


def _committed_events(node: Network) -> list[dict[str, Any]]:
    lines = _get(node, "/v1/export").content.splitlines()[2:]
    return [envelope for line in lines for envelope in json.loads(line)["events"]]


def test_query_pages_through_matching_events(node: Network) -> None:
    node.submit(1, node.harvests(3))  # the log ends with harvests: the last page is full
    pages = _pages(node, eventType="ObjectEvent", EQ_bizStep="commissioning", perPage=2)
    validator = epcis_schema_validator()
    for page in pages:
        validator.validate(page)
        assert page["type"] == "EPCISQueryDocument"
        assert len(page["epcisBody"]["queryResults"]["resultsBody"]["eventList"]) <= 2
    harvests = [
        parse_envelope(e).event_id
        for e in _committed_events(node)
        if e["body"]["type"] == "lot.create"
    ]
    assert len(harvests) >= 5
    assert len(pages) == (len(harvests) + 1) // 2
    assert _ledger_ids(pages) == harvests


def test_query_filters(node: Network) -> None:
    lot = f"urn:rantai:{NETWORK}:lot:CAP-A"
    steps = [
        e["bizStep"]
        for page in _pages(node, MATCH_epcClass=lot)
        for e in page["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    ]
    assert steps == ["commissioning", "shipping", "receiving"]
    assert len(_ledger_ids(_pages(node, MATCH_anyEPCClass=lot, EQ_bizStep="shipping"))) == 1
    assert _ledger_ids(_pages(node, LT_eventTime="2000-01-01T00:00:00Z")) == []
    assert _ledger_ids(_pages(node, eventType="AggregationEvent")) == []
    recent = _pages(node, GE_eventTime="2000-01-01T00:00:00+07:00", perPage=1000)
    assert len(recent) == 1
    assert len(_ledger_ids(recent)) == sum(
        e["body"]["type"].startswith("lot.") for e in _committed_events(node)
    )


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"perPage": 0}, "perPage"),
        ({"perPage": "many"}, "perPage"),
        ({"eventType": "BlockEvent"}, "eventType"),
        ({"GE_eventTime": "yesterday"}, "GE_eventTime"),
        ({"MATCH_epcClass": "urn:epc:idpat:sgtin:0614141.107346.*"}, "MATCH_epcClass"),
        ({"nextPageToken": "not-a-token!"}, "nextPageToken"),
        ({"nextPageToken": page_token(10**9)}, "nextPageToken"),
        ({"EQ_action": "ADD"}, "EQ_action"),
    ],
    ids=lambda value: json.dumps(value) if isinstance(value, dict) else value,
)
def test_query_refuses_bad_parameters(
    node: Network, params: dict[str, Any], parameter: str
) -> None:
    problem = _is_problem(_get(node, "/epcis/events", **params), 400)
    assert problem["parameter"] == parameter
    assert parameter in problem["detail"]


# --- lists --------------------------------------------------------------------------------------


def test_orgs_come_in_pages(node: Network) -> None:
    governance = load_key(node.directory / "keys" / "governance.pem")
    batch = [
        node.event(
            "org.register",
            {
                "org_id": f"page-org-{i}",
                "name": f"Org {i}",
                "kind": "buyer",
                "admins": [public_key_bytes(node.key(f"page-org-{i}")).hex()],
            },
            [governance],
        )
        for i in range(3)
    ]
    response = node.submit(1, batch)
    assert response.status_code == 200, response.text
    everything = _get(node, "/v1/orgs").json()
    assert everything["next"] is None
    seen: list[str] = []
    after = None
    while True:
        params = {"limit": 2} if after is None else {"limit": 2, "after": after}
        page = _get(node, "/v1/orgs", **params).json()
        assert len(page["orgs"]) <= 2
        seen += [org["org_id"] for org in page["orgs"]]
        after = page["next"]
        if after is None:
            break
    assert seen == [org["org_id"] for org in everything["orgs"]] == sorted(seen)
    assert len(seen) >= 4
    for limit in (0, 1001, "x"):
        _is_problem(_get(node, "/v1/orgs", limit=limit), 422)


# --- malformed input: always a 4xx problem, never a 5xx -----------------------------------------

ZEROS = "0" * 64


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/v1/lots/bad lot", {}, 422),
        ("/v1/lots/" + "L" * 129, {}, 422),
        ("/v1/lots/%00", {}, 422),
        ("/v1/lots/kop%C3%AD", {}, 422),
        ("/v1/lots/bad lot/trace", {}, 422),
        ("/v1/members/no-slash", {}, 422),
        ("/v1/members/a/b/c", {}, 422),
        ("/v1/events/not-hex", {}, 422),
        (f"/v1/events/{ZEROS}/proof", {"size": 10**30}, 422),
        (f"/v1/events/{ZEROS}/proof", {"size": 0}, 422),
        ("/v1/proofs/consistency", {"from": 5, "to": 3}, 400),
        ("/v1/proofs/consistency", {"from": 1, "to": 10**40}, 422),
        ("/v1/proofs/consistency", {"from": 10**6, "to": 10**6 + 1}, 400),
        ("/v1/export", {"from": 10**6}, 404),
        ("/v1/export", {"from": 3, "to": 1}, 400),
        ("/v1/export", {"from": 10**40}, 422),
        ("/v1/blocks/99999999999999999999999", {}, 404),
        ("/v1/blocks/abc", {}, 422),
        ("/v1/orgs", {"after": "x" * 200}, 422),
    ],
)
def test_malformed_requests_are_problems(
    node: Network, path: str, params: dict[str, Any], status: int
) -> None:
    _is_problem(_get(node, path, **params), status)


def test_a_proof_beyond_the_log(node: Network) -> None:
    (answered,) = node.submit(1, node.harvests(1)).json()["events"]
    proof = f"/v1/events/{answered['event_id']}/proof"
    _is_problem(_get(node, proof, size=10**6), 400)
    _is_problem(_get(node, proof, size=10**6, format="tlog-proof"), 400)


@pytest.mark.parametrize(
    ("params", "content", "status"),
    [
        ({"timeout": "nan"}, b"{}", 422),
        ({"timeout": "inf"}, b"{}", 422),
        ({"wait": "forever"}, b"{}", 422),
        ({}, b"[" * 100_000 + b"]" * 100_000, 400),
        ({}, b'{"events": "none"}', 400),
        ({}, b" " * (MAX_BODY_BYTES + 1), 413),
    ],
    ids=["nan-timeout", "infinite-timeout", "bad-wait", "deep-nesting", "events-not-a-list", "big"],
)
def test_malformed_submissions_are_problems(
    node: Network, params: dict[str, Any], content: bytes, status: int
) -> None:
    response = httpx.post(f"{node.url(1)}/v1/events", params=params, content=content, timeout=30)
    _is_problem(response, status)


def test_a_content_length_that_is_no_number(node: Network) -> None:
    """The HTTP server itself refuses it; the node never answers 5xx."""
    port = int(node.url(1).rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ten\r\n\r\n{}"
        )
        status_line = connection.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"400"
