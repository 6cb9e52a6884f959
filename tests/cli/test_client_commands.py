"""The client library's checks, and the commands that talk to a node, over real HTTP.

The first part checks :mod:`rantai.client`'s verification in memory, on a sample chain: a proof
is only accepted against a trusted checkpoint, with the leaf hash recomputed from the envelope.
The second part runs every command that talks to a node against a real single-validator node
process (``tests/e2e/network.py``): its happy path and how it fails.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from ledger.checkpoint import Checkpoint, format_checkpoint, format_note, sign_checkpoint
from ledger.encoding import format_time
from ledger.errors import ProofError, SignatureError
from ledger.merkle import consistency_proof, inclusion_proof, leaf_hash, root
from node.epcis import EpcisError, capture_bodies
from node.keystore import save_key
from rantai.cli import EXIT_FAULT, EXIT_USAGE, cli
from rantai.client import (
    Client,
    ConsistencyProof,
    InclusionProof,
    TrustedCheckpoint,
    check_captured_lots,
    verify_checkpoint_consistency,
    verify_checkpoint_note,
    verify_event_inclusion,
)
from rantai.network import free_base_port
from rantai.samplechain import sample_network
from tests.e2e.network import Network, wait_for

NET = sample_network(4)
ENVELOPES = [e for block in NET.chain(4, 5) for e in block.events]
LEAVES = [leaf_hash(e.leaf) for e in ENVELOPES]


def trusted(size: int, signers: int | None = None) -> TrustedCheckpoint:
    checkpoint = Checkpoint(NET.genesis.origin, size, root(LEAVES[:size]))
    count = signers or NET.genesis.quorum
    keys = zip(NET.genesis.validators[:count], NET.validator_keys[:count], strict=True)
    note = format_note(
        format_checkpoint(checkpoint), [sign_checkpoint(checkpoint, v.name, k) for v, k in keys]
    )
    return verify_checkpoint_note(note, NET.genesis)


def proof_of(index: int, size: int) -> InclusionProof:
    return InclusionProof(
        index, size, LEAVES[index], tuple(inclusion_proof(LEAVES, index, size)), root(LEAVES[:size])
    )


# --- the client's checks, in memory ------------------------------------------------------------


def test_a_checkpoint_needs_a_quorum_of_genesis_validators() -> None:
    assert trusted(12).signed_by == tuple(v.name for v in NET.genesis.validators[:3])
    with pytest.raises(SignatureError, match="2 of 3 needed"):
        trusted(12, signers=2)


def test_an_included_event_verifies_against_the_checkpoint() -> None:
    envelope = ENVELOPES[7]
    proven = verify_event_inclusion(
        envelope.event_id, envelope.to_json(), proof_of(7, 15), trusted(15)
    )
    assert proven.event_id == envelope.event_id


def test_the_leaf_hash_is_recomputed_from_the_envelope() -> None:
    envelope = ENVELOPES[7].to_json()
    envelope["sigs"][0]["sig"] = ENVELOPES[8].to_json()["sigs"][0]["sig"]  # same id, other leaf
    with pytest.raises(ProofError, match="is not in the checkpoint's tree"):
        verify_event_inclusion(ENVELOPES[7].event_id, envelope, proof_of(7, 15), trusted(15))


@pytest.mark.parametrize(
    ("event", "proof", "message"),
    [
        (8, proof_of(7, 15), "is not in the checkpoint's tree"),
        (7, proof_of(7, 14), "the proof is for tree size 14"),
        (7, proof_of(6, 15), "is not in the checkpoint's tree"),
    ],
    ids=["another-event-at-that-index", "another-size", "another-index"],
)
def test_a_proof_that_does_not_fit_fails(event: int, proof: InclusionProof, message: str) -> None:
    envelope = ENVELOPES[event]
    with pytest.raises(ProofError, match=message):
        verify_event_inclusion(envelope.event_id, envelope.to_json(), proof, trusted(15))


def test_the_node_must_return_the_event_asked_for() -> None:
    with pytest.raises(ProofError, match="not " + ENVELOPES[8].event_id):
        verify_event_inclusion(
            ENVELOPES[8].event_id, ENVELOPES[7].to_json(), proof_of(7, 15), trusted(15)
        )


def _consistency(first: int, second: int) -> ConsistencyProof:
    return ConsistencyProof(
        first,
        second,
        tuple(consistency_proof(LEAVES, first, second)),
        root(LEAVES[:first]),
        root(LEAVES[:second]),
    )


def test_consistency_between_checkpoints() -> None:
    old, new = trusted(6).checkpoint, trusted(17).checkpoint
    verify_checkpoint_consistency(old, new, _consistency(6, 17))
    verify_checkpoint_consistency(new, new, None)
    with pytest.raises(ProofError, match="went back"):
        verify_checkpoint_consistency(new, old, None)
    with pytest.raises(ProofError, match="from 5 to 17, not from 6 to 17"):
        verify_checkpoint_consistency(old, new, _consistency(5, 17))
    forked = Checkpoint(old.origin, 17, root([*LEAVES[:16], leaf_hash(b"forged")]))
    with pytest.raises(ProofError):
        verify_checkpoint_consistency(old, forked, _consistency(6, 17))
    with pytest.raises(ProofError, match="two different roots"):
        verify_checkpoint_consistency(new, forked, None)


def _epcis_document(*events: dict[str, Any]) -> bytes:
    now = format_time(dt.datetime.now(dt.UTC).replace(microsecond=0))
    return json.dumps(
        {
            "@context": [
                "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
                {"rantai": "https://rantai.example/ns/epcis/"},
            ],
            "type": "EPCISDocument",
            "schemaVersion": "2.0",
            "creationDate": now,
            "epcisBody": {
                "eventList": [
                    {"eventTime": now, "eventTimeZoneOffset": "+07:00", **event} for event in events
                ]
            },
        }
    ).encode()


def harvest(lot_id: str, quantity: float = 12.5) -> dict[str, Any]:
    return {
        "type": "ObjectEvent",
        "action": "ADD",
        "bizStep": "commissioning",
        "quantityList": [
            {"epcClass": f"urn:rantai:kalbar-coop:lot:{lot_id}", "quantity": quantity, "uom": "KGM"}
        ],
        "sourceList": [
            {"type": "owning_party", "source": "urn:rantai:kalbar-coop:party:koperasi-kopi/siti"}
        ],
        "ilmd": {"rantai:commodity": "coffee", "cbvmda:harvestStartDate": "2026-11-20"},
    }


def receipt(lot_id: str, quantity: float, unit: str) -> dict[str, Any]:
    return {
        "type": "ObjectEvent",
        "action": "OBSERVE",
        "bizStep": "receiving",
        "quantityList": [
            {"epcClass": f"urn:rantai:kalbar-coop:lot:{lot_id}", "quantity": quantity, "uom": unit}
        ],
        "bizTransactionList": [
            {"type": "desadv", "bizTransaction": "urn:rantai:kalbar-coop:shipment:SH-1"}
        ],
    }


def _captured(*events: dict[str, Any]) -> Any:
    now = format_time(dt.datetime.now(dt.UTC).replace(microsecond=0))
    return capture_bodies(_epcis_document(*events), network="kalbar-coop", created_at=now)


def test_captured_units_must_be_the_lots() -> None:
    known = {"LOT-KG": {"lot_id": "LOT-KG", "uom": "kg", "gtin": None}}
    check_captured_lots("kalbar-coop", _captured(receipt("LOT-KG", 12, "KGM")), known.get)
    with pytest.raises(EpcisError, match="the event's unit g is not the lot's"):
        check_captured_lots("kalbar-coop", _captured(receipt("LOT-KG", 200, "GRM")), known.get)
    made_here = _captured(harvest("NEW-1"), receipt("NEW-1", 200, "GRM"))
    with pytest.raises(EpcisError, match="event 1"):
        check_captured_lots("kalbar-coop", made_here, known.get)


# --- the commands against a real node ----------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    network = Network.create(tmp_path_factory.mktemp("cli") / "net", 1)
    network.start_all()
    network.bootstrap(1)
    yield network
    network.stop_all()


@pytest.fixture(scope="module")
def producer_key(node: Network) -> Path:
    path = node.directory / "keys" / "siti.pem"
    save_key(node.key("producer"), path)
    return path


def run(*args: str) -> Result:
    return CliRunner(env={"COLUMNS": "200"}).invoke(cli, list(args))


def lot_events(*lot_ids: str, producer: str = "koperasi-kopi/siti") -> list[dict[str, Any]]:
    return [
        {
            "type": "lot.create",
            "payload": {
                "lot_id": lot_id,
                "commodity": "coffee",
                "quantity": "12.5",
                "uom": "kg",
                "producer": producer,
                "harvested_on": "2026-11-20",
            },
        }
        for lot_id in lot_ids
    ]


def write(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value))
    return path


def submitted_ids(result: Result) -> list[str]:
    return [line.split()[0] for line in result.stdout.splitlines() if "committed" in line]


@pytest.mark.slow
def test_submit_signs_here_and_waits_for_the_commit(
    node: Network, producer_key: Path, tmp_path: Path
) -> None:
    events = write(tmp_path / "events.json", lot_events("CLI-S1", "CLI-S2"))
    result = run("submit", str(events), "--key", str(producer_key), "--node", node.url(1))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert all(" committed  height " in line and " index " in line for line in lines)
    assert all(line.endswith("lot.create") for line in lines)
    stored = Client(node.url(1), node.validator(1)).event(submitted_ids(result)[0])
    assert stored["envelope"]["body"]["payload"]["lot_id"] == "CLI-S1"
    assert stored["envelope"]["body"]["network"] == "kalbar-coop"


@pytest.mark.slow
def test_submit_one_event_without_waiting(
    node: Network, producer_key: Path, tmp_path: Path
) -> None:
    event = write(tmp_path / "event.json", lot_events("CLI-NOWAIT")[0])
    result = run(
        "submit", str(event), "--key", str(producer_key), "--node", node.url(1), "--no-wait"
    )
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert line.split()[1] in {"pending", "committed"}


@pytest.mark.slow
def test_submit_prints_why_a_batch_is_refused(
    node: Network, producer_key: Path, tmp_path: Path
) -> None:
    events = lot_events("CLI-R1") + lot_events("CLI-R2", producer="koperasi-kopi/nobody")
    path = write(tmp_path / "events.json", events)
    result = run("submit", str(path), "--key", str(producer_key), "--node", node.url(1))
    assert result.exit_code == EXIT_FAULT, result.output
    assert "nothing was admitted" in result.output
    assert "event 1 (" in result.output
    assert "member.unknown" in result.output
    assert Client(node.url(1), node.validator(1)).lot("CLI-R1") is None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("content", "key", "message"),
    [
        ("{not json", "producer", "is not valid JSON"),
        ('[{"type": "lot.create"}]', "producer", "missing payload"),
        ("[]", "producer", "holds no events"),
        ('{"type": "lot.create", "payload": {}}', "missing", "cannot read"),
    ],
    ids=["malformed-json", "no-payload", "no-events", "missing-key"],
)
def test_submit_refuses_unusable_input_with_exit_code_2(
    node: Network, producer_key: Path, tmp_path: Path, content: str, key: str, message: str
) -> None:
    path = tmp_path / "events.json"
    path.write_text(content)
    key_path = producer_key if key == "producer" else tmp_path / "missing.pem"
    result = run("submit", str(path), "--key", str(key_path), "--node", node.url(1))
    assert result.exit_code == EXIT_USAGE, result.output
    assert message in result.output


def test_submit_to_a_node_that_does_not_answer(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    save_key(NET.key("producer"), key)
    path = write(tmp_path / "events.json", lot_events("X-1"))
    result = run(
        "submit", str(path), "--key", str(key), "--node", f"http://127.0.0.1:{free_base_port(1)}"
    )
    assert result.exit_code == EXIT_USAGE, result.output
    assert "cannot reach" in result.output


@pytest.mark.slow
def test_trace_prints_origins_and_steps(node: Network, producer_key: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "events.json", lot_events("CLI-T1"))
    assert (
        run("submit", str(path), "--key", str(producer_key), "--node", node.url(1)).exit_code == 0
    )
    result = run("trace", "CLI-T1", "--node", node.url(1))
    assert result.exit_code == 0, result.output
    assert "Origins" in result.stdout
    origin = next(line for line in result.stdout.splitlines() if "koperasi-kopi/siti" in line)
    assert "2026-11-20" in origin
    assert "12.5" in origin
    assert "lot.create" in result.stdout
    raw = run("trace", "CLI-T1", "--node", node.url(1), "--json")
    assert json.loads(raw.stdout) == Client(node.url(1)).trace("CLI-T1")
    forward = run("trace", "CLI-T1", "--direction", "forward", "--node", node.url(1))
    assert forward.exit_code == 0, forward.output
    assert "Origins" not in forward.stdout
    assert "Parties reached: koperasi-kopi/siti" in forward.stdout


@pytest.mark.slow
def test_trace_of_an_unknown_lot(node: Network) -> None:
    result = run("trace", "NO-SUCH-LOT", "--node", node.url(1))
    assert result.exit_code == EXIT_FAULT, result.output
    assert "no lot NO-SUCH-LOT" in result.output


@pytest.fixture(scope="module")
def validator_key(node: Network) -> Path:
    """Node 1's validator key file: it may read everything (an auditor's key would too)."""
    return node.directory / "node-1" / "validator.pem"


@pytest.mark.slow
def test_export_verifies_and_a_tampered_export_does_not(
    node: Network, validator_key: Path, tmp_path: Path
) -> None:
    out = tmp_path / "chain.ndjson"
    result = run("export", str(out), "--node", node.url(1), "-q", "--key", str(validator_key))
    assert result.exit_code == 0, result.output
    assert f"rantai verify {out}" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["chain.ndjson"]  # no partial file left
    genesis = str(node.directory / "genesis.json")
    verified = run("verify", str(out), "--genesis", genesis, "-q", "--workers", "1")
    assert verified.exit_code == 0, verified.output
    lines = out.read_bytes().splitlines(keepends=True)
    height, position = next(
        (h, p)
        for h, line in enumerate(lines[1:])
        for p, e in enumerate(json.loads(line)["events"])
        if e["body"]["type"] == "member.register"
    )
    block = json.loads(lines[height + 1])
    block["events"][position]["body"]["payload"]["role"] = "clerk"
    lines[height + 1] = json.dumps(block).encode() + b"\n"
    tampered = tmp_path / "tampered.ndjson"
    tampered.write_bytes(b"".join(lines))
    caught = run("verify", str(tampered), "--genesis", genesis, "-q", "--workers", "1")
    assert caught.exit_code == EXIT_FAULT, caught.output
    assert f"FAULT: height {height}" in caught.output


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signer", "message"),
    [(None, "401 signature missing"), ("producer", "403 forbidden")],
    ids=["unsigned", "a-producer"],
)
def test_export_needs_an_auditor_or_validator_key(
    node: Network, producer_key: Path, tmp_path: Path, signer: str | None, message: str
) -> None:
    out = tmp_path / "chain.ndjson"
    key = [] if signer is None else ["--key", str(producer_key)]
    result = run("export", str(out), "--node", node.url(1), "-q", *key)
    assert result.exit_code == EXIT_FAULT, result.output
    assert message in result.output
    assert "--key KEY.pem" in result.output
    assert not out.exists()


@pytest.mark.slow
def test_export_of_a_range(node: Network, validator_key: Path, tmp_path: Path) -> None:
    out = tmp_path / "part.ndjson"
    result = run(
        "export",
        str(out),
        "--node",
        node.url(1),
        "--from",
        "1",
        "--to",
        "1",
        "--key",
        str(validator_key),
    )
    assert result.exit_code == 0, result.output
    assert "wrote 1 blocks (heights 1..1)" in result.output
    genesis_line, block_line = out.read_bytes().splitlines()
    assert json.loads(genesis_line)["network"] == "kalbar-coop"
    assert json.loads(block_line)["header"]["height"] == 1


@pytest.mark.slow
def test_checkpoint_is_printed_and_verified(node: Network, tmp_path: Path) -> None:
    genesis = str(node.directory / "genesis.json")
    plain = run("checkpoint", "--node", node.url(1))
    assert plain.exit_code == 0, plain.output
    assert plain.stdout.splitlines()[0] == json.loads(Path(genesis).read_text())["origin"]
    checked = run("checkpoint", "--node", node.url(1), "--genesis", genesis)
    assert checked.exit_code == 0, checked.output
    assert "OK: tree size" in checked.output
    assert "cosigned by 1 of 1 validators (1 needed): node-1" in checked.output
    other = tmp_path / "other.json"
    document = dict(NET.genesis.document, origin=json.loads(Path(genesis).read_text())["origin"])
    other.write_text(json.dumps(document))
    refused = run("checkpoint", "--node", node.url(1), "--genesis", str(other))
    assert refused.exit_code == EXIT_FAULT, refused.output
    assert "FAULT: the checkpoint does not verify" in refused.output


@pytest.mark.slow
def test_proof_verifies_an_event_client_side(
    node: Network, producer_key: Path, tmp_path: Path
) -> None:
    path = write(tmp_path / "events.json", lot_events("CLI-P1"))
    submitted = run("submit", str(path), "--key", str(producer_key), "--node", node.url(1))
    (event_id,) = submitted_ids(submitted)
    genesis = str(node.directory / "genesis.json")
    signed = ("--node", node.url(1), "--key", str(producer_key))  # the producer signed it
    result = run("proof", event_id, "--genesis", genesis, *signed)
    assert result.exit_code == 0, result.output
    assert f"OK: event {event_id} (lot.create" in result.stdout
    assert "proof " in result.stdout
    unknown = run("proof", "0" * 64, "--genesis", genesis, *signed)
    assert unknown.exit_code == EXIT_FAULT, unknown.output
    assert "no event" in unknown.output
    unsigned = run("proof", event_id, "--node", node.url(1), "--genesis", genesis)
    assert unsigned.exit_code == EXIT_FAULT, unsigned.output
    assert "401 signature missing" in unsigned.output
    other = tmp_path / "other.json"
    other.write_text(json.dumps(NET.genesis.document))
    untrusted = run("proof", event_id, "--genesis", str(other), *signed)
    assert untrusted.exit_code == EXIT_FAULT, untrusted.output
    assert "FAULT" in untrusted.output


@pytest.mark.slow
def test_audit_watch_follows_a_growing_node(
    node: Network, producer_key: Path, tmp_path: Path
) -> None:
    genesis, state = str(node.directory / "genesis.json"), tmp_path / "audit.json"
    args = ("audit", "watch", node.url(1), "--genesis", genesis, "--state", str(state), "--once")
    first = run(*args)
    assert first.exit_code == 0, first.output
    assert "first contact" in first.output
    size = json.loads(state.read_text())["trusted"]["size"]
    path = write(tmp_path / "events.json", lot_events("CLI-A1", "CLI-A2"))
    assert (
        run("submit", str(path), "--key", str(producer_key), "--node", node.url(1)).exit_code == 0
    )
    client = Client(node.url(1))
    wait_for(lambda: int(client.checkpoint().split(b"\n")[1]) > size, 20, "a larger checkpoint")
    grown = run(*args)
    assert grown.exit_code == 0, grown.output
    assert "the consistency proof verifies" in grown.output
    assert json.loads(state.read_text())["trusted"]["size"] > size


@pytest.mark.slow
def test_epcis_capture_signs_and_submits(node: Network, producer_key: Path, tmp_path: Path) -> None:
    document = tmp_path / "harvest.jsonld"
    document.write_bytes(_epcis_document(harvest("CLI-E1"), harvest("CLI-E2", 3)))
    args = ("epcis", "capture", str(document), "--key", str(producer_key), "--node", node.url(1))
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert result.stdout.count(" committed ") == 2
    assert "lot.create (EPCIS event 1: ni:///sha-256;" in result.stdout
    lot = Client(node.url(1), node.validator(1)).lot("CLI-E2")
    assert lot is not None
    assert (lot["quantity"], lot["uom"], lot["owner"]) == ("3", "kg", "koperasi-kopi/siti")
    document.write_bytes(_epcis_document(harvest("CLI-E1", 99)))  # that lot exists already
    again = run(*args)
    assert again.exit_code == EXIT_FAULT, again.output
    assert "lot.exists" in again.output


@pytest.mark.slow
def test_epcis_capture_refuses_what_it_cannot_map(
    node: Network, producer_key: Path, tmp_path: Path
) -> None:
    document = tmp_path / "bad.jsonld"
    unmappable = dict(harvest("CLI-E3"), bizStep="inspecting")
    document.write_bytes(_epcis_document(harvest("CLI-E4"), unmappable))
    result = run(
        "epcis", "capture", str(document), "--key", str(producer_key), "--node", node.url(1)
    )
    assert result.exit_code == EXIT_USAGE, result.output
    assert "event 1" in result.output
    assert Client(node.url(1), node.validator(1)).lot("CLI-E4") is None
    wrong_unit = tmp_path / "unit.jsonld"
    wrong_unit.write_bytes(_epcis_document(receipt("CLI-E1", 200, "GRM")))
    refused = run(
        "epcis", "capture", str(wrong_unit), "--key", str(producer_key), "--node", node.url(1)
    )
    assert refused.exit_code == EXIT_USAGE, refused.output
    assert "is not the lot's (kg)" in refused.output
