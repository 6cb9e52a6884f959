"""``rantai audit watch`` against fake nodes over real HTTP: growth, rewrites, split views,
rollbacks and bad signatures.

A fake node serves checkpoints cosigned by the sample network's real validator keys, over logs
the test chooses: the genuine log of a sample chain, or a rewritten one that keeps a prefix and
then differs. Its signatures are valid, so only the consistency checks can catch it.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.checkpoint import Checkpoint, format_checkpoint, format_note, sign_checkpoint
from ledger.errors import ProofError
from ledger.merkle import consistency_proof, leaf_hash, root, verify_consistency
from rantai.cli import EXIT_FAULT, EXIT_USAGE, cli
from rantai.client import verify_checkpoint_note
from rantai.network import free_base_port
from rantai.samplechain import derive_key, sample_network

NET = sample_network(4)
VALIDATORS = [(v.name, k) for v, k in zip(NET.genesis.validators, NET.validator_keys, strict=True)]
GENUINE = [leaf_hash(e.leaf) for block in NET.chain(5, 4) for e in block.events]
# The same first 6 events, then others: a rewrite that keeps a prefix (20 events each).
REWRITTEN = GENUINE[:6] + [leaf_hash(b"forged " + h) for h in GENUINE[6:]]


def note(
    leaves: list[bytes], size: int, signers: list[tuple[str, Ed25519PrivateKey]] | None = None
) -> bytes:
    """A checkpoint of ``leaves[:size]`` cosigned by ``signers`` (default: a quorum)."""
    checkpoint = Checkpoint(NET.genesis.origin, size, root(leaves[:size]))
    chosen = VALIDATORS[: NET.genesis.quorum] if signers is None else signers
    return format_note(
        format_checkpoint(checkpoint),
        [sign_checkpoint(checkpoint, name, key) for name, key in chosen],
    )


def corrupted(signed: bytes) -> bytes:
    """``signed`` with one bit of its first signature flipped."""
    text, _, lines = signed.decode().rpartition("\n\n")
    first, *rest = lines.split("\n")
    prefix, _, encoded = first.rpartition(" ")
    raw = bytearray(base64.b64decode(encoded))
    raw[-1] ^= 1
    first = f"{prefix} {base64.b64encode(bytes(raw)).decode()}"
    return "\n".join([text + "\n", first, *rest]).encode()


class FakeNode:
    """An HTTP server that answers /v1/checkpoint and /v1/proofs/consistency like a node."""

    def __init__(self) -> None:
        self.leaves: list[bytes] = []
        self.note = b""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                return

            def _send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/v1/checkpoint":
                    self._send(200, fake.note, "text/plain; charset=utf-8")
                    return
                if url.path != "/v1/proofs/consistency":
                    self._send(404, b'{"title": "not found"}', "application/problem+json")
                    return
                query = parse_qs(url.query)
                first, second = int(query["from"][0]), int(query["to"][0])
                if not 1 <= first <= second <= len(fake.leaves):
                    self._send(400, b'{"title": "bad sizes"}', "application/problem+json")
                    return
                body = {
                    "from": first,
                    "to": second,
                    "proof": [h.hex() for h in consistency_proof(fake.leaves, first, second)],
                    "root_from": root(fake.leaves[:first]).hex(),
                    "root_to": root(fake.leaves[:second]).hex(),
                }
                self._send(200, json.dumps(body).encode(), "application/json")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve(self, leaves: list[bytes], size: int, signed: bytes | None = None) -> None:
        """Serve ``leaves`` with a checkpoint of ``size`` (or the given signed note)."""
        self.leaves = leaves
        self.note = note(leaves, size) if signed is None else signed

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def nodes() -> Iterator[list[FakeNode]]:
    fakes = [FakeNode(), FakeNode()]
    yield fakes
    for fake in fakes:
        fake.close()


@pytest.fixture
def genesis(tmp_path: Path) -> Path:
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(NET.genesis.document))
    return path


def watch(genesis: Path, state: Path, *urls: str) -> Result:
    return CliRunner().invoke(
        cli,
        ["audit", "watch", *urls, "--genesis", str(genesis), "--state", str(state), "--once"],
    )


def flat(output: str) -> str:
    """The output without panel borders and line breaks (rich wraps at the terminal width)."""
    return " ".join(output.replace("│", " ").split())


def evidence(state: Path) -> dict[str, Any]:
    (path,) = state.parent.glob(f"{state.name}.evidence-*.json")
    found: dict[str, Any] = json.loads(path.read_text())
    return found


def trusted_size(state: Path) -> int:
    size: int = json.loads(state.read_text())["trusted"]["size"]
    return size


def test_first_contact_is_trusted_then_growth_is_proven(
    nodes: list[FakeNode], genesis: Path, tmp_path: Path
) -> None:
    node, state = nodes[0], tmp_path / "audit.json"
    node.serve(GENUINE, 8)
    first = watch(genesis, state, node.url)
    assert first.exit_code == 0, first.output
    assert "first contact" in first.output
    assert "trust on first use" in first.output
    assert trusted_size(state) == 8
    again = watch(genesis, state, node.url)
    assert again.exit_code == 0, again.output
    assert "first contact" not in again.output
    node.serve(GENUINE, 19)
    grown = watch(genesis, state, node.url)
    assert grown.exit_code == 0, grown.output
    assert "grew from 8 to 19 events; the consistency proof verifies" in grown.output
    assert trusted_size(state) == 19
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.json", "genesis.json"]


def test_a_rewritten_history_is_caught_with_evidence(
    nodes: list[FakeNode], genesis: Path, tmp_path: Path
) -> None:
    node, state = nodes[0], tmp_path / "audit.json"
    node.serve(GENUINE, 8)
    assert watch(genesis, state, node.url).exit_code == 0
    before = state.read_bytes()
    node.serve(REWRITTEN, 14)  # validly cosigned, but not an extension of what was trusted
    result = watch(genesis, state, node.url)
    assert result.exit_code == EXIT_FAULT, result.output
    assert "AUDIT FAULT: REWRITE" in result.output
    assert "does not extend the one of size 8" in flat(result.output)
    assert state.read_bytes() == before  # the trusted checkpoint stays the genuine one
    found = evidence(state)
    assert found["kind"] == "rewrite"
    assert found["genesis"] == NET.genesis.digest
    older, newer = (
        verify_checkpoint_note(c["note"].encode(), NET.genesis) for c in found["checkpoints"]
    )
    assert (older.size, newer.size) == (8, 14)
    proof = found["proof"]
    assert (proof["from"], proof["to"], proof["url"]) == (8, 14, node.url)
    with pytest.raises(ProofError):  # anyone can check the evidence again
        verify_consistency(
            8, 14, [bytes.fromhex(h) for h in proof["proof"]], older.root_hash, newer.root_hash
        )


def test_two_roots_for_one_size_is_a_split_view(
    nodes: list[FakeNode], genesis: Path, tmp_path: Path
) -> None:
    node, state = nodes[0], tmp_path / "audit.json"
    node.serve(GENUINE, 12)
    assert watch(genesis, state, node.url).exit_code == 0
    node.serve(REWRITTEN, 12)
    result = watch(genesis, state, node.url)
    assert result.exit_code == EXIT_FAULT, result.output
    assert "AUDIT FAULT: SPLIT-VIEW" in result.output
    assert "two different roots for tree size 12" in flat(result.output)
    assert evidence(state)["kind"] == "split-view"


def test_nodes_showing_different_histories_are_a_split_view(
    nodes: list[FakeNode], genesis: Path, tmp_path: Path
) -> None:
    honest, forked = nodes
    state = tmp_path / "audit.json"
    honest.serve(GENUINE, 12)
    forked.serve(REWRITTEN, 10)  # behind, and not a prefix of the honest log
    result = watch(genesis, state, honest.url, forked.url)
    assert result.exit_code == EXIT_FAULT, result.output
    assert "AUDIT FAULT: SPLIT-VIEW" in result.output
    assert "the nodes show different histories" in flat(result.output)
    found = evidence(state)
    assert [c["url"] for c in found["checkpoints"]] == [forked.url, honest.url]
    assert found["proof"]["url"] == honest.url
    assert not state.exists()


def test_a_node_that_lags_behind_consistently_is_fine(
    nodes: list[FakeNode], genesis: Path, tmp_path: Path
) -> None:
    ahead, behind = nodes
    state = tmp_path / "audit.json"
    ahead.serve(GENUINE, 12)
    behind.serve(GENUINE[:10], 10)
    result = watch(genesis, state, behind.url, ahead.url)
    assert result.exit_code == 0, result.output
    assert trusted_size(state) == 12
    assert set(json.loads(state.read_text())["nodes"]) == {ahead.url, behind.url}


def test_a_node_going_back_is_a_rollback(
    nodes: list[FakeNode], genesis: Path, tmp_path: Path
) -> None:
    node, state = nodes[0], tmp_path / "audit.json"
    node.serve(GENUINE, 12)
    assert watch(genesis, state, node.url).exit_code == 0
    node.serve(GENUINE, 8)
    result = watch(genesis, state, node.url)
    assert result.exit_code == EXIT_FAULT, result.output
    assert "AUDIT FAULT: ROLLBACK" in result.output
    found = evidence(state)
    assert found["kind"] == "rollback"
    assert [c["role"] for c in found["checkpoints"]] == ["before", "now"]
    assert trusted_size(state) == 12


@pytest.mark.parametrize(
    "signed",
    [
        pytest.param(note(GENUINE, 8, VALIDATORS[:2]), id="below-quorum"),
        pytest.param(
            note(GENUINE, 8, [(name, derive_key(b"intruder", name)) for name, _ in VALIDATORS]),
            id="impostor-keys",
        ),
        pytest.param(corrupted(note(GENUINE, 8)), id="corrupted-signature"),
        pytest.param(note(GENUINE, 8)[:-20], id="truncated"),
    ],
)
def test_a_checkpoint_without_a_quorum_is_a_bad_signature(
    nodes: list[FakeNode], genesis: Path, tmp_path: Path, signed: bytes
) -> None:
    node, state = nodes[0], tmp_path / "audit.json"
    node.serve(GENUINE, 8, signed=signed)
    result = watch(genesis, state, node.url)
    assert result.exit_code == EXIT_FAULT, result.output
    assert "AUDIT FAULT: BAD-SIGNATURE" in result.output
    assert evidence(state)["kind"] == "bad-signature"
    assert not state.exists()


def test_an_unreachable_node_is_not_checked(genesis: Path, tmp_path: Path) -> None:
    state = tmp_path / "audit.json"
    result = watch(genesis, state, f"http://127.0.0.1:{free_base_port(1)}")
    assert result.exit_code == EXIT_USAGE, result.output
    assert "not checked" in result.output
    assert not state.exists()


def test_a_state_of_another_network_is_refused(
    nodes: list[FakeNode], genesis: Path, tmp_path: Path
) -> None:
    node, state = nodes[0], tmp_path / "audit.json"
    node.serve(GENUINE, 8)
    assert watch(genesis, state, node.url).exit_code == 0
    other = tmp_path / "other.json"
    other.write_text(json.dumps(sample_network(4, seed=b"other").genesis.document))
    result = watch(other, state, node.url)
    assert result.exit_code == EXIT_USAGE, result.output
    assert "belongs to genesis" in result.output
