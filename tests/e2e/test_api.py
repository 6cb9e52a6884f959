"""The HTTP API through real HTTP on a running (single-validator) node: answers and errors."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.blocks import parse_genesis
from ledger.checkpoint import verify_checkpoint
from ledger.events import parse_envelope, sign_event
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.verifier import verify_export
from tests.e2e.network import Network

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    network = Network.create(tmp_path_factory.mktemp("api") / "net", 1)
    network.start_all()
    network.bootstrap(1)
    yield network
    network.stop_all()


def _get(node: Network, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{node.url(1)}{path}", params=params, timeout=10)


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
    assert [o["org_id"] for o in _get(node, "/v1/orgs").json()["orgs"]] == ["koperasi-kopi"]
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
