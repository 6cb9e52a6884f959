"""End to end: real node processes on loopback, crashes included.

Four validators commit events submitted to different nodes; the proposer is killed with
``kill -9`` in the middle of the load; the three others keep committing; the killed node
restarts, catches up from its peers, and all four export identical chains that pass
``rantai verify``, with every acknowledged event in them. Also one validator alone, and seven.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ledger.encoding import canonical
from tests.e2e.network import Network, wait_for

pytestmark = pytest.mark.slow


def _committed_ids(response_json: dict) -> set[str]:  # type: ignore[type-arg]
    return {e["event_id"] for e in response_json["events"] if e["status"] == "committed"}


def _verify(network: Network, k: int, height: int, tmp: Path) -> bytes:
    export = network.export(k, height)
    path = tmp / f"export-{k}.ndjson"
    path.write_bytes(export)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rantai",
            "verify",
            str(path),
            "-q",
            "--genesis",
            str(network.directory / "genesis.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return export


@pytest.fixture
def four(tmp_path: Path):  # type: ignore[no-untyped-def]
    network = Network.create(tmp_path / "net", 4)
    network.start_all()
    yield network
    network.stop_all()


def test_four_nodes_survive_the_proposer_being_killed(four: Network, tmp_path: Path) -> None:
    four.bootstrap(1)
    acknowledged: set[str] = set()
    targets = itertools.cycle([1, 2, 3, 4])
    for _ in range(6):
        response = four.submit(next(targets), four.harvests(20))
        assert response.status_code == 200, response.text
        acknowledged |= _committed_ids(response.json())

    status = four.status(1)
    height, round_ = status["consensus"]["height"], status["consensus"]["round"]
    order = [v["key_id"] for v in status["validators"]]
    proposer = order[(height + round_) % 4]
    victim = 1 + order.index(proposer)
    four.kill(victim)

    alive = [k for k in (1, 2, 3, 4) if k != victim]
    for k in itertools.islice(itertools.cycle(alive), 9):
        response = four.submit(k, four.harvests(20))
        assert response.status_code == 200, response.text
        acknowledged |= _committed_ids(response.json())

    four.start(victim)
    caught_up = max(four.height(k) for k in alive)
    wait_for(lambda: four.height(victim) >= caught_up, 60, f"node {victim} to catch up")
    # One more block settles the certificate of the one before it (see decision D19).
    response = four.submit(victim, four.harvests(20))
    assert response.status_code == 200, response.text
    acknowledged |= _committed_ids(response.json())
    final = max(four.height(k) for k in (1, 2, 3, 4))
    wait_for(lambda: min(four.height(k) for k in (1, 2, 3, 4)) >= final, 30, "all at one height")
    target = final - 1

    exports = {k: _verify(four, k, target, tmp_path) for k in (1, 2, 3, 4)}
    assert len(set(exports.values())) == 1, f"the chains differ: {_differences(exports)}"
    chain = exports[1]
    events = {
        envelope_id
        for line in chain.splitlines()[2:]
        for envelope_id in _event_ids(json.loads(line))
    }
    in_final_block = {e["event_id"] for e in response.json()["events"]}
    assert acknowledged - in_final_block <= events, "an acknowledged event is missing"
    assert len(acknowledged) == 16 * 20


def _differences(exports: dict[int, bytes]) -> list[str]:
    """Which lines of the exports differ, and how (for the failure message)."""
    lines = {k: export.splitlines() for k, export in exports.items()}
    found = []
    for number in range(max(len(v) for v in lines.values())):
        versions = {k: v[number] if number < len(v) else b"" for k, v in lines.items()}
        if len(set(versions.values())) > 1:
            for k, line in versions.items():
                block = json.loads(line) if line else {}
                height = block.get("header", {}).get("height")
                commit = block.get("commit") or {}
                voters = [vote["node"][:6] for vote in commit.get("sigs", [])]
                found.append(
                    f"line {number} node {k}: height {height} "
                    f"round {commit.get('round')} votes {voters}"
                )
    return found


def _event_ids(block: dict) -> list[str]:  # type: ignore[type-arg]
    return [hashlib.sha256(canonical(e["body"])).hexdigest() for e in block["events"]]


@pytest.mark.parametrize("nodes", [1, 7])
def test_networks_of_one_and_seven(tmp_path: Path, nodes: int) -> None:
    network = Network.create(tmp_path / "net", nodes)
    network.start_all()
    try:
        network.bootstrap(1)
        for k in range(1, nodes + 1):
            response = network.submit(k, network.harvests(5))
            assert response.status_code == 200, response.text
        height = max(network.height(k) for k in range(1, nodes + 1))
        wait_for(
            lambda: all(network.height(k) >= height for k in range(1, nodes + 1)),
            30,
            "every node at the same height",
        )
        exports = {_verify(network, k, height - 1, tmp_path) for k in range(1, nodes + 1)}
        assert len(exports) == 1
    finally:
        network.stop_all()
