"""End to end, under faults: real node processes on loopback, and what they must survive.

* ``kill -9`` of random nodes, the proposer included, again and again under load: the network
  commits whenever three of four are up, and every acknowledged event ends in one chain;
* partitions through a fault-injecting proxy between the nodes (``faultproxy.py``): a cut-off
  minority falls behind, two halves stall, and after healing the network goes on without a fork;
* a Byzantine validator (``byzantine_node.py``) that equivocates and sends garbage: the honest
  nodes agree on one verified chain and record its double votes as evidence;
* a database damaged on disk (a flipped byte in an event's leaf or in a header, a deleted event
  row): the node refuses to start and names the height and index; ``rantai node check`` does
  too; ``rantai node rebuild`` and a catch-up from the peers repair it;
* a full and a read-only database (``faulty_disk_node.py``): the node reports the fault on
  ``/healthz`` and ``/v1/status`` while the others go on, stores no partial block, and rejoins
  once it can write again;
* wall clocks up to two minutes apart (``skewed_node.py``): still safe and live.

Every test ends the same way: one more block settles the certificates (decision D19), then every
node exports the same chain, and ``rantai verify`` accepts it. The kill test draws its victims
from a seeded RNG and prints the seed; ``RANTAI_E2E_SEED=<seed>`` replays the same choices.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import itertools
import json
import os
import random
import secrets
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.blocks import vote_bytes
from ledger.encoding import canonical, parse_time
from ledger.keys import VOTE_PREFIX, verify_signature
from tests.e2e.byzantine_node import REPORT
from tests.e2e.faultproxy import FaultProxy
from tests.e2e.faulty_disk_node import CONTROL
from tests.e2e.network import Network, wait_for

pytestmark = pytest.mark.slow

NODES = range(1, 5)


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    """Four validators, not started yet; every process is stopped at the end."""
    created = Network.create(tmp_path / "net", 4)
    yield created
    created.stop_all()


# --------------------------------------------------------------------------------------------
# Helpers


class Load:
    """Batches of harvests, one after another, to random running nodes, from a thread.

    ``acknowledged`` holds the events of every ``200`` answer to ``?wait=commit``: the events
    the network promised are committed.
    """

    def __init__(self, network: Network, rng: random.Random, nodes: Sequence[int]) -> None:
        self.acknowledged: set[str] = set()
        self.refused: list[str] = []
        self._network, self._rng, self._nodes = network, rng, nodes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        while not self._stop.is_set():
            running = [k for k in self._nodes if k in self._network.processes]
            if not running:
                self._stop.wait(0.1)
                continue
            k = self._rng.choice(running)
            try:
                response = self._network.submit(k, self._network.harvests(10), timeout=10)
            except httpx.HTTPError:  # the node was killed under the request, say
                self._stop.wait(0.1)
                continue
            if response.status_code == 200:
                self.acknowledged |= {e["event_id"] for e in response.json()["events"]}
            elif response.status_code != 202:  # 202: not committed within the wait
                self.refused.append(f"node {k}: {response.status_code} {response.text[:200]}")


def run_rantai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rantai", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def verified_export(network: Network, k: int, height: int, tmp: Path) -> bytes:
    """Node ``k``'s export of heights 0..``height``, after ``rantai verify`` accepted it."""
    export = network.export(k, height)
    path = tmp / f"export-{k}.ndjson"
    path.write_bytes(export)
    genesis = str(network.directory / "genesis.json")
    result = run_rantai("verify", str(path), "-q", "--genesis", genesis)
    assert result.returncode == 0, f"node {k}: {result.stdout}{result.stderr}"
    return export


def agreed_chain(network: Network, tmp: Path, nodes: Sequence[int] = NODES) -> bytes:
    """Settle the certificates with one more block, then the chain every node of ``nodes``
    exports: the same on all, and verified."""
    response = network.submit(nodes[0], network.harvests(5), timeout=30)
    assert response.status_code == 200, response.text
    final = max(network.height(k) for k in nodes)
    wait_for(lambda: min(network.height(k) for k in nodes) >= final, 60, "all at one height")
    exports = {k: verified_export(network, k, final - 1, tmp) for k in nodes}
    first = {k: _first_difference(exports[nodes[0]], export) for k, export in exports.items()}
    assert not any(first.values()), f"the chains differ: {first}"
    return exports[nodes[0]]


def _first_difference(one: bytes, other: bytes) -> str:
    for number, (a, b) in enumerate(itertools.zip_longest(one.splitlines(), other.splitlines())):
        if a != b:
            return f"line {number}: {(a or b'')[:120]!r} vs {(b or b'')[:120]!r}"
    return ""


def blocks_of(chain: bytes) -> list[dict[str, Any]]:
    """The blocks of an export (its first line is the genesis document)."""
    return [json.loads(line) for line in chain.splitlines()[1:]]


def event_ids(chain: bytes) -> set[str]:
    return {
        hashlib.sha256(canonical(envelope["body"])).hexdigest()
        for block in blocks_of(chain)
        for envelope in block["events"]
    }


def proposer(network: Network, k: int) -> int:
    """The node that proposes in node ``k``'s current height and round."""
    status = network.status(k)
    order = [v["key_id"] for v in status["validators"]]
    current = status["consensus"]
    return 1 + int(current["height"] + current["round"]) % len(order)


def committed_everywhere(network: Network, batch: list[dict[str, Any]]) -> bool:
    """Every event of ``batch`` is committed at every node."""
    ids = [hashlib.sha256(canonical(envelope["body"])).hexdigest() for envelope in batch]
    return all(
        network.get(k, f"/v1/events/{i}").json()["status"] == "committed"
        for k in NODES
        for i in ids
    )


def wait_for_blocks(network: Network, nodes: Sequence[int], count: int, what: str) -> None:
    """Wait until ``nodes`` have committed ``count`` more blocks."""
    before = max(network.height(k) for k in nodes)
    try:
        wait_for(lambda: max(network.height(k) for k in nodes) >= before + count, 30, what)
    except AssertionError as e:
        raise AssertionError(f"{e}; stuck at: {consensus_of(network, nodes)}") from None


def consensus_of(network: Network, nodes: Sequence[int]) -> dict[int, Any]:
    """Where each node's consensus is, and which peers it reaches (for failure messages)."""
    found: dict[int, Any] = {}
    for k in nodes:
        try:
            status = network.status(k)
        except httpx.HTTPError as e:
            found[k] = repr(e)
            continue
        peers = {p["name"].split(".")[0]: (p["connected"], p["height"]) for p in status["peers"]}
        found[k] = {"height": status["height"], **status["consensus"], "peers": peers}
    return found


def wait_for_catch_up(network: Network, k: int, others: Sequence[int], what: str) -> None:
    """Wait until node ``k`` reaches the height the ``others`` have now."""
    reached = max(network.height(j) for j in others)
    wait_for(lambda: network.height(k) >= reached, 60, what)


# --------------------------------------------------------------------------------------------
# kill -9


KILL_CYCLES = 10


def test_nodes_killed_again_and_again_under_load(network: Network, tmp_path: Path) -> None:
    seed = int(os.environ.get("RANTAI_E2E_SEED") or secrets.randbits(32))
    print(f"seed {seed}: RANTAI_E2E_SEED={seed} replays the choice of victims")
    rng = random.Random(seed)
    network.start_all()
    network.bootstrap(1)
    with Load(network, random.Random(rng.random()), NODES) as load:
        for cycle in range(KILL_CYCLES):
            running = sorted(network.processes)
            # Every other cycle the proposer of the current round: the costliest victim.
            victim = proposer(network, running[0]) if cycle % 2 == 0 else rng.choice(running)
            others = [k for k in running if k != victim]
            network.kill(victim)
            wait_for_blocks(
                network, others, 2, f"seed {seed}, cycle {cycle}: blocks without node {victim}"
            )
            network.start(victim)
            wait_for_catch_up(
                network, victim, others, f"seed {seed}, cycle {cycle}: node {victim} to catch up"
            )
    assert not load.refused, load.refused
    assert len(load.acknowledged) >= KILL_CYCLES * 10, "hardly any load got through"

    chain = agreed_chain(network, tmp_path)

    missing = load.acknowledged - event_ids(chain)
    assert not missing, f"seed {seed}: {len(missing)} acknowledged events are not in the chain"


# --------------------------------------------------------------------------------------------
# Partitions


def test_partitions_heal_without_a_fork(network: Network, tmp_path: Path) -> None:
    proxy = FaultProxy({k: network.base_port + k - 1 for k in NODES})
    try:
        for i, j in itertools.permutations(NODES, 2):
            network.route_peer(i, j, f"http://127.0.0.1:{proxy.port(i, j)}")
        network.start_all()
        network.bootstrap(1)
        wait_for(lambda: len({network.height(k) for k in NODES}) == 1, 30, "all at one height")

        # A minority cut off: the other three commit; it hears nothing of it.
        proxy.partition({1, 2, 3}, {4})
        isolated_at = network.height(4)
        for k in (1, 2, 3):
            response = network.submit(k, network.harvests(10))
            assert response.status_code == 200, response.text
        assert network.height(4) == isolated_at
        assert max(network.height(k) for k in (1, 2, 3)) >= isolated_at + 3

        # Two halves, messages swallowed: neither has a quorum, nothing commits.
        proxy.heal()
        proxy.partition({1, 2}, {3, 4}, mode="blackhole")
        split_at = max(network.height(k) for k in NODES)
        stalled = [network.harvests(10), network.harvests(10)]
        for k, batch in zip((1, 3), stalled, strict=True):
            response = network.submit(k, batch, timeout=3)
            assert response.status_code == 202, response.text
        assert max(network.height(k) for k in NODES) == split_at

        # Healed: what stalled commits, everywhere, on one chain.
        proxy.heal()
        for batch in stalled:
            wait_for(
                functools.partial(committed_everywhere, network, batch),
                60,
                "the stalled events to commit after healing",
            )
        chain = agreed_chain(network, tmp_path)
    finally:
        proxy.close()
    heights = [block["header"]["height"] for block in blocks_of(chain)]
    assert heights == list(range(len(heights)))


# --------------------------------------------------------------------------------------------
# A Byzantine validator


def test_a_byzantine_validator_breaks_neither_safety_nor_liveness(
    network: Network, tmp_path: Path
) -> None:
    honest, byzantine = [1, 2, 3], 4
    for k in honest:
        network.start(k)
    network.start(byzantine, entry=("tests.e2e.byzantine_node",))
    network.bootstrap(1)
    for k in itertools.islice(itertools.cycle(honest), 9):
        response = network.submit(k, network.harvests(10))
        assert response.status_code == 200, response.text

    genesis = json.loads((network.directory / "genesis.json").read_text())
    accused_key = bytes.fromhex(genesis["validators"][byzantine - 1]["public_key"])
    accused = hashlib.sha256(accused_key).hexdigest()
    wait_for(
        lambda: all(network.status(k)["evidence"] for k in honest),
        30,
        "every honest node to record evidence",
    )
    for k in honest:
        for evidence in network.status(k)["evidence"]:
            assert evidence["node"] == accused, f"node {k} accuses an honest validator"
            first, second = evidence["votes"]
            assert first["block_hash"] != second["block_hash"]
            for vote in (first, second):
                assert (vote["node"], vote["height"], vote["round"], vote["type"]) == (
                    accused,
                    evidence["height"],
                    evidence["round"],
                    evidence["type"],
                )
                signed = vote_bytes(
                    genesis["network"],
                    vote["height"],
                    vote["round"],
                    vote["type"],
                    vote["block_hash"],
                )
                verify_signature(accused_key, VOTE_PREFIX, signed, bytes.fromhex(vote["sig"]))

    agreed_chain(network, tmp_path, honest)

    account = json.loads((network.directory / f"node-{byzantine}" / REPORT).read_text())
    assert account.get("proposals"), "the Byzantine validator never proposed twice"
    assert account.get("votes"), "the Byzantine validator never voted twice"
    answers = {int(status): count for status, count in account["answers"].items()}
    assert answers, "the Byzantine validator's garbage got no answers"
    assert all(status < 500 for status in answers), f"garbage made a peer fail: {answers}"


# --------------------------------------------------------------------------------------------
# A damaged database


def flip(value: bytes, at: int) -> bytes:
    return value[:at] + bytes([value[at] ^ 0x01]) + value[at + 1 :]


def flip_a_leaf(db: sqlite3.Connection) -> str:
    index, height, leaf = db.execute(
        "SELECT idx, height, leaf FROM events ORDER BY idx LIMIT 1 OFFSET 25"
    ).fetchone()
    db.execute("UPDATE events SET leaf = ? WHERE idx = ?", (flip(leaf, 30), index))
    return f"height {height}, index {index}: "


def flip_a_header(db: sqlite3.Connection) -> str:
    (header,) = db.execute("SELECT header FROM blocks WHERE height = 2").fetchone()
    at = header.index(b'"time":"') + 10  # a digit of the year: still valid JSON
    db.execute("UPDATE blocks SET header = ? WHERE height = 2", (flip(header, at),))
    return "height 2: "


def delete_an_event(db: sqlite3.Connection) -> str:
    index, height = db.execute(
        "SELECT idx, height FROM events ORDER BY idx LIMIT 1 OFFSET 40"
    ).fetchone()
    db.execute("DELETE FROM events WHERE idx = ?", (index,))
    return f"height {height}, index {index}: "


def test_a_damaged_database_is_refused_and_rebuilt_from_the_peers(
    network: Network, tmp_path: Path
) -> None:
    network.start_all()
    network.bootstrap(1)
    for k in (1, 2, 3):
        response = network.submit(k, network.harvests(20))
        assert response.status_code == 200, response.text

    damage: dict[int, Callable[[sqlite3.Connection], str]] = {
        2: flip_a_leaf,
        3: flip_a_header,
        4: delete_an_event,
    }
    for k, change in damage.items():
        directory = network.directory / f"node-{k}"
        network.stop(k)
        with contextlib.closing(sqlite3.connect(directory / "ledger.db")) as db, db:
            where = change(db)

        started = run_rantai("node", "run", str(directory))
        assert started.returncode == 1, started.stderr
        assert f"the database is damaged at {where}" in started.stderr, started.stderr
        checked = run_rantai("node", "check", str(directory))
        assert checked.returncode == 1, checked.stderr
        assert f"FAULT: {where}" in checked.stderr, checked.stderr

        response = network.submit(1, network.harvests(10))  # the others go on meanwhile
        assert response.status_code == 200, response.text
        rebuilt = run_rantai("node", "rebuild", str(directory))
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert list(directory.glob("ledger.db.damaged-*")), "the damaged database was not kept"
        network.start(k)
        wait_for_catch_up(network, k, [j for j in NODES if j != k], f"node {k} to catch up")

    agreed_chain(network, tmp_path)
    for k in damage:
        checked = run_rantai("node", "check", str(network.directory / f"node-{k}"))
        assert checked.returncode == 0, checked.stderr


# --------------------------------------------------------------------------------------------
# A full or read-only disk


def test_a_node_that_cannot_write_says_so_and_rejoins(network: Network, tmp_path: Path) -> None:
    faulty, others = 4, [1, 2, 3]
    for k in others:
        network.start(k)
    network.start(faulty, entry=("tests.e2e.faulty_disk_node",))
    network.bootstrap(1)

    for fault, words in (("full", "full"), ("read-only", "readonly")):
        with Load(network, random.Random(fault), others) as load:
            break_and_repair(network, faulty, others, fault, words)
        assert not load.refused, load.refused
        assert load.acknowledged, f"nothing committed while node {faulty} was {fault}"

    agreed_chain(network, tmp_path)
    network.stop(faulty)
    checked = run_rantai("node", "check", str(network.directory / f"node-{faulty}"))
    assert checked.returncode == 0, f"a partial block was stored: {checked.stderr}"


def break_and_repair(
    network: Network, faulty: int, others: list[int], fault: str, words: str
) -> None:
    """Make node ``faulty``'s database ``fault`` under load, then writable again; the node
    reports an error naming ``words`` meanwhile."""
    control = network.directory / f"node-{faulty}" / CONTROL

    def reported() -> bool:
        health = network.get(faulty, "/healthz")
        return health.status_code == 503 and words in health.text.lower()

    def cleared() -> bool:
        return network.get(faulty, "/healthz").status_code == 200

    control.write_text(fault)
    wait_for(reported, 30, f"node {faulty} to report the {fault} database on /healthz")
    wait_for(
        lambda: words in (network.status(faulty)["fault"] or "").lower(),
        30,
        f"node {faulty} to report the {fault} database on /v1/status",
    )
    stuck = network.height(faulty)
    wait_for_blocks(network, others, 2, f"blocks while node {faulty}'s database is {fault}")
    if fault == "read-only":  # a full database may still fill its free pages
        assert network.height(faulty) == stuck, "a read-only database grew"

    control.write_text("")  # space is back, the file writable again
    wait_for(cleared, 30, f"node {faulty} to clear its fault")
    assert not network.status(faulty)["fault"]
    wait_for_catch_up(network, faulty, others, f"node {faulty} to catch up")


# --------------------------------------------------------------------------------------------
# Clock skew


SKEWS = {1: -120, 2: 0, 3: 60, 4: 120}
"""Seconds each node's wall clock is off."""


def test_clocks_two_minutes_apart(network: Network, tmp_path: Path) -> None:
    for k, skew in SKEWS.items():
        network.start(k, entry=("tests.e2e.skewed_node", str(skew)))
    network.bootstrap(2)
    for k in itertools.islice(itertools.cycle(NODES), 12):
        response = network.submit(k, network.harvests(10))
        assert response.status_code == 200, response.text

    chain = agreed_chain(network, tmp_path)

    times = [parse_time(block["header"]["time"]) for block in blocks_of(chain)[1:]]
    assert times == sorted(times), "block time went back"
    ahead = max(times) - dt.datetime.now(dt.UTC)
    assert ahead > dt.timedelta(seconds=30), "no block came from a node whose clock is ahead"
