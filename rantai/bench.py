"""``scripts/bench``: measure Rantai against its targets on this machine, in one run.

Every figure is a median over repeated runs, and every comparison is a ratio measured in the
same run (absolute times drift on shared machines). Results print as a table and are written
to ``bench-results.json`` (the figures, and the table's rows). Large data sets are built once
under ``bench-data/`` and reused.

The run is a sequence of :data:`SECTIONS`. A section is a function of the :class:`BenchRun`
(data sets, sizes, repeats) that records its figures in ``run.results`` under its own keys and
returns its rows of the table; a section may read the figures of the sections before it.

Measurements:
  * raw Ed25519 verification rate, one core and all cores (the machine's limit);
  * offline chain verification (``check_export`` with a process pool), events/s and its ratio
    to the all-core raw rate (target ≥ 0.8), and the same with the supply-chain rules;
  * verifier peak memory (resident set of the verifying process) for two chain lengths;
  * a 10-hop backward trace and a forward trace from the SQLite store of the large ledger
    (target median < 20 ms);
  * inclusion and consistency proofs from the SQLite store of the large log (target median
    < 1 ms), and pymerkle's ``SqliteTree`` of the same leaves answering the same challenges
    (target: Rantai ≥ 10× faster);
  * the same proofs through the node's HTTP API over keep-alive connections (target median
    < 2 ms);
  * SQLite bytes per event against the mean size of an event's JSON envelope (target ≤ 3×);
  * a plain FastAPI + SQLite app storing the same events, events/s over HTTP
    (:mod:`rantai.bench_baseline`): the baseline for the network's committed throughput;
  * a 4-node loopback network (:mod:`rantai.netbench`): committed events/s under batched load
    against the verification limit and the plain app, submit-to-commit latency at half that
    rate, each node's resident memory, and the catch-up rate of an empty node.
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import httpx
import pymerkle  # type: ignore[import-untyped]
from fastapi import FastAPI
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from api.app import create_app
from ledger.blocks import Block, export_lines
from ledger.encoding import parse_time
from ledger.keys import EVENT_PREFIX, SignatureJob, verify_jobs
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.rules import StateMachine
from ledger.state import Overlay
from ledger.trace import trace_back, trace_forward
from ledger.verifier import check_export
from node.ledger_state import DatabaseState
from node.models import EventRow
from node.runtime import LedgerNode
from node.store import Store, create_store_engine
from rantai.bench_baseline import (
    measure_plain_app,
    measure_sqlite_inserts,
    percentile,
    served,
)
from rantai.netbench import FLAT_MIB_PER_MINUTE, NetworkLoad, measure_network, soak
from rantai.samplechain import LINEAGE_FINAL_LOT, SampleNetwork, sample_network

__all__ = ["SECTIONS", "BenchRun", "Row", "main", "read_only_node_app"]

_DATA_VERSION = "5"
"""Bumped when the data sets change shape: 5 is the Merkle node keys of migration 0006 (D41),
written in key order rather than rewritten in place."""
_NETWORK_SEED = b"bench"
_LINEAGE_DEPTH = 10
_EVENTS_PER_BLOCK = 1000
_PLAIN_APP_EVENTS = 10_000
_PLAIN_APP_CONCURRENCY = 32
console = Console(width=None if sys.stdout.isatty() else 120)


@dataclass(frozen=True, slots=True)
class Row:
    """One row of the table (and of ``rows`` in ``bench-results.json``).

    ``met`` is None for a row without a target.
    """

    measurement: str
    value: str
    compared_with: str = ""
    target: str = "—"
    met: bool | None = None


@dataclass
class BenchRun:
    """What the sections measure: the data sets, their sizes, the repeats, and the results."""

    quick: bool
    data: Path
    large: int
    small: int
    runs: int
    samples: int
    cores: int
    export: Path
    small_export: Path
    database: Path
    results: dict[str, Any]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _median_of(runs: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    values = [measure() for _ in range(runs)]
    return statistics.median(values), values


def _latency_ms(prefix: str, seconds: list[float]) -> dict[str, float]:
    return {
        f"{prefix}_median_ms": statistics.median(seconds) * 1e3,
        f"{prefix}_p99_ms": percentile(seconds, 0.99) * 1e3,
    }


def _bench_network() -> SampleNetwork:
    return sample_network(4, seed=_NETWORK_SEED)


# --- raw Ed25519 ---------------------------------------------------------------------------


def _signature_jobs(count: int) -> list[SignatureJob]:
    net = sample_network(1, seed=b"bench-raw")
    key = net.key("signer")
    public = key.public_key().public_bytes_raw()
    jobs = []
    for i in range(count):
        message = EVENT_PREFIX + (b'{"bench":%d,"pad":"' % i) + b"x" * 300 + b'"}'
        jobs.append((public, message, key.sign(message)))
    return jobs


def _raw_rate(pool: ProcessPoolExecutor, workers: int, jobs: list[SignatureJob]) -> float:
    """Verifications per second with ``workers`` processes each checking ``jobs``."""
    start = time.perf_counter()
    results = list(pool.map(verify_jobs, [jobs] * workers))
    elapsed = time.perf_counter() - start
    if not all(all(r) for r in results):
        raise RuntimeError("a benchmark signature did not verify")
    return workers * len(jobs) / elapsed


# --- data sets -----------------------------------------------------------------------------


def _export_path(data: Path, events: int) -> Path:
    return data / f"chain-{events}-v{_DATA_VERSION}.ndjson"


_DATA_FILE = re.compile(r"(?:chain|store|pymerkle)-\d+-v(\d+)\.(?:ndjson|db|done|partial)$")
"""The name of a data set file, with its data version."""


def _drop_stale(data: Path) -> None:
    """Remove the data sets of other data versions (a million-event set takes about 2 GB)."""
    for path in sorted(data.iterdir()):
        match = _DATA_FILE.match(path.name)
        if match is not None and match[1] != _DATA_VERSION:
            console.print(f"removing {path.name}, data of version {match[1]}")
            path.unlink()


def _build_data(data: Path, events: int) -> tuple[Path, Path]:
    """The export and the SQLite store of a sample chain with ``events`` events (cached)."""
    data.mkdir(parents=True, exist_ok=True)
    _drop_stale(data)
    export = _export_path(data, events)
    database = data / f"store-{events}-v{_DATA_VERSION}.db"
    done = data / f"store-{events}-v{_DATA_VERSION}.done"
    if done.exists() and export.exists() and database.exists():
        return export, database
    for stale in (export, database, done):
        stale.unlink(missing_ok=True)
    net = _bench_network()
    store = Store.open(f"sqlite:///{database}")
    store.initialize(net.genesis)
    blocks = events // _EVENTS_PER_BLOCK
    console.print(f"building a {events:,}-event chain ({blocks} blocks) in {data} (once)…")
    started = time.perf_counter()
    with export.open("wb") as handle:
        chain = net.chain(blocks, _EVENTS_PER_BLOCK, lineage_depth=_LINEAGE_DEPTH)
        handle.writelines(export_lines(net.genesis, _appended(chain, store)))
    store.close()
    done.write_text(str(events))
    console.print(f"  built in {time.perf_counter() - started:.0f} s")
    return export, database


def _appended(chain: Iterator[Block], store: Store) -> Iterator[Block]:
    """Pass blocks through, appending each (but genesis) with its state to ``store``.

    The rules run over an in-memory copy of the state (the same rules a node runs over its
    database), which builds a million-event store in minutes rather than hours.
    """
    machine = StateMachine(store.genesis)
    memory = machine.state
    for block in chain:
        if block.header.height > 0:
            overlay = Overlay(memory)
            replay = StateMachine(store.genesis, overlay)
            first = block.header.tree_size - len(block.events)
            block_time = parse_time(block.header.time)
            for offset, envelope in enumerate(block.events):
                replay.apply(envelope, first + offset, block_time)
            store.append_block(block, overlay.pending)
            memory.apply(overlay.pending)
        yield block


def _prefix_export(source: Path, target: Path, blocks: int) -> Path:
    """The first ``blocks`` blocks of an export (a shorter, valid chain)."""
    if not target.exists():
        with source.open("rb") as reader, target.open("wb") as writer:
            for number, line in enumerate(reader):
                if number > blocks:
                    break
                writer.write(line)
    return target


def _leaves(database: Path, limit: int | None = None) -> Iterator[bytes]:
    """The log's leaves (each event's JSON envelope, as stored) in log order."""
    engine = create_store_engine(f"sqlite:///{database}")
    try:
        query = select(EventRow.leaf).order_by(EventRow.index).limit(limit)
        with engine.connect() as connection:
            for (leaf,) in connection.execution_options(yield_per=10_000).execute(query):
                yield leaf
    finally:
        engine.dispose()


def _pymerkle_tree(data: Path, database: Path, events: int) -> Path:
    """pymerkle's ``SqliteTree`` of the store's leaves (cached), checked against its root."""
    path = data / f"pymerkle-{events}-v{_DATA_VERSION}.db"
    if path.exists():
        return path
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    console.print(f"building pymerkle's SQLite tree of {events:,} leaves (once)…")
    started = time.perf_counter()
    tree = pymerkle.SqliteTree(str(partial))
    try:
        tree.append_entries(_leaves(database))
        root: bytes = tree.get_root()
    finally:
        tree.close()
    store = Store.open(f"sqlite:///{database}")
    try:
        expected = store.root(store.head().tree_size)
    finally:
        store.close()
    if root != expected:
        raise RuntimeError("pymerkle's tree has another root than the store's log")
    partial.rename(path)
    console.print(f"  built in {time.perf_counter() - started:.0f} s")
    return path


# --- measurements --------------------------------------------------------------------------


def _verify_rate(export: Path, pool: ProcessPoolExecutor, rules: bool) -> float:
    """Events per second that ``check_export`` verifies ``export`` at."""
    start = time.perf_counter()
    with export.open("rb") as handle:
        report = check_export(handle, executor=pool, rules=rules)
    elapsed = time.perf_counter() - start
    if report.summary is None or report.error is not None:
        raise RuntimeError(f"the benchmark chain did not verify: {report.error}")
    return report.summary.tree_size / elapsed


_PEAK_SCRIPT = """
import resource, sys
from concurrent.futures import ProcessPoolExecutor
from ledger.verifier import check_export
with ProcessPoolExecutor() as pool, open(sys.argv[1], "rb") as handle:
    report = check_export(handle, executor=pool, rules=sys.argv[2] == "rules")
if not report.ok:
    raise SystemExit(str(report.error))
try:  # VmHWM belongs to this program's memory map; ru_maxrss survives exec from the parent
    with open("/proc/self/status") as status:
        print(next(l.split()[1] for l in status if l.startswith("VmHWM:")))
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _verifier_peak_mib(export: Path, rules: bool) -> float:
    """Peak resident memory (MiB) of a fresh process verifying ``export``."""
    mode = "rules" if rules else "no-rules"
    output = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", _PEAK_SCRIPT, str(export), mode],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(output.strip().splitlines()[-1]) / 1024


def _trace_latencies(database: Path, samples: int) -> dict[str, float]:
    """Median and p99 of a 10-hop backward trace and a forward trace, from the SQLite store."""
    engine = create_store_engine(f"sqlite:///{database}")
    state = DatabaseState(engine)
    try:
        back = trace_back(state, LINEAGE_FINAL_LOT)
        if len(back.origins) < 2:
            raise RuntimeError("the benchmark lineage is missing")
        origin = back.origins[0].lot.lot_id
        timings: dict[str, list[float]] = {"back": [], "forward": []}
        for _ in range(samples):
            start = time.perf_counter()
            trace_back(state, LINEAGE_FINAL_LOT)
            timings["back"].append(time.perf_counter() - start)
            start = time.perf_counter()
            trace_forward(state, origin)
            timings["forward"].append(time.perf_counter() - start)
    finally:
        engine.dispose()
    results = {"hops": float(_LINEAGE_DEPTH), "back_lots": float(len(back.lots))}
    for direction, values in timings.items():
        results.update(_latency_ms(direction, values))
    return results


def _challenges(size: int, samples: int, seed: int = 7) -> list[tuple[int, int]]:
    """``(leaf index, older tree size)`` pairs: what each proof measurement is asked."""
    rng = random.Random(seed)
    return [(rng.randrange(size), rng.randrange(1, size)) for _ in range(samples)]


def _read_through(path: Path) -> None:
    """Read a file once, so that its pages are in the OS cache, as a busy server's would be."""
    with path.open("rb") as handle:
        while handle.read(1 << 20):
            pass


def _proof_latencies(store: Store, challenges: list[tuple[int, int]]) -> dict[str, float]:
    """Rantai's proofs from the store, each checked after it is timed."""
    size = store.head().tree_size
    root = store.root(size)
    inclusion, consistency = [], []
    for index, old in challenges:
        start = time.perf_counter()
        proof = store.inclusion_proof(index, size)
        inclusion.append(time.perf_counter() - start)
        verify_inclusion(store.leaf_hash(index), index, size, proof, root)
        start = time.perf_counter()
        proof = store.consistency_proof(old, size)
        consistency.append(time.perf_counter() - start)
        verify_consistency(old, size, proof, store.root(old), root)
    return _latency_ms("inclusion", inclusion) | _latency_ms("consistency", consistency)


def _pymerkle_latencies(
    tree_path: Path, store: Store, challenges: list[tuple[int, int]]
) -> dict[str, float]:
    """pymerkle's proofs for the same challenges, each checked against the store's roots.

    The tree is opened afresh, as the store is: pymerkle's cache of subtree roots (which it
    computes from the leaf hashes) starts empty and fills during the run.
    """
    size = store.head().tree_size
    root = store.root(size)
    tree = pymerkle.SqliteTree(str(tree_path))
    inclusion, consistency = [], []
    try:
        for index, old in challenges:
            start = time.perf_counter()
            proof = tree.prove_inclusion(index + 1, size)  # pymerkle counts leaves from 1
            inclusion.append(time.perf_counter() - start)
            pymerkle.verify_inclusion(store.leaf_hash(index), root, proof)
            start = time.perf_counter()
            proof = tree.prove_consistency(old, size)
            consistency.append(time.perf_counter() - start)
            pymerkle.verify_consistency(store.root(old), root, proof)
    finally:
        tree.close()
    return (
        _latency_ms("inclusion", inclusion)
        | _latency_ms("consistency", consistency)
        | {"first_inclusion_ms": inclusion[0] * 1e3, "first_consistency_ms": consistency[0] * 1e3}
    )


def read_only_node_app(database: str) -> FastAPI:
    """The node's HTTP API over the bench store at ``database``, for the HTTP proof figures.

    The node is the bench network's first validator, never started: no consensus, no peers,
    no block is ever written, so an existing store is served as it is.
    """
    net = _bench_network()
    store = Store.open(f"sqlite:///{database}")
    name = net.genesis.validators[0].name
    return create_app(LedgerNode(net.genesis, store, net.validator_keys[0], name, peers=()))


def _http_proof_latencies(
    url: str, store: Store, challenges: list[tuple[int, int]]
) -> dict[str, float]:
    """Proofs through ``GET /v1/events/{id}/proof`` and ``/v1/proofs/consistency``."""
    size = store.head().tree_size
    root = store.root(size).hex()
    event_ids = []
    for index, _ in challenges:
        stored = store.event_at(index)
        if stored is None:
            raise RuntimeError(f"the store has no event at {index}")
        event_ids.append(stored.envelope.event_id)
    inclusion, consistency = [], []
    answers = []
    with httpx.Client(base_url=url, timeout=10.0) as client:
        for event_id in event_ids[:20]:  # open the connection and warm the server's caches
            client.get(f"/v1/events/{event_id}/proof", params={"size": size}).raise_for_status()
        for event_id, (_, old) in zip(event_ids, challenges, strict=True):
            start = time.perf_counter()
            response = client.get(f"/v1/events/{event_id}/proof", params={"size": size})
            inclusion.append(time.perf_counter() - start)
            answers.append(response)
            start = time.perf_counter()
            response = client.get("/v1/proofs/consistency", params={"from": old, "to": size})
            consistency.append(time.perf_counter() - start)
            answers.append(response)
    for response in answers:
        response.raise_for_status()
        body = response.json()
        proof = [bytes.fromhex(h) for h in body["proof"]]
        if "index" in body:
            leaf = bytes.fromhex(body["leaf_hash"])
            verify_inclusion(leaf, body["index"], size, proof, bytes.fromhex(root))
        else:
            old_root = bytes.fromhex(body["root_from"])
            verify_consistency(body["from"], size, proof, old_root, bytes.fromhex(root))
        if body.get("root", body.get("root_to")) != root:
            raise RuntimeError("the node answered a proof for another root")
    return _latency_ms("inclusion", inclusion) | _latency_ms("consistency", consistency)


def _mean_envelope_bytes(database: Path) -> float:
    """The mean size of an event's JSON envelope (its leaf) in the store."""
    engine = create_store_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            mean = connection.scalar(select(func.avg(func.length(EventRow.leaf))))
    finally:
        engine.dispose()
    return float(mean or 0.0)


# --- sections ------------------------------------------------------------------------------


def _verification(run: BenchRun) -> list[Row]:
    """Raw Ed25519, chain verification with and without rules, verifier peak memory."""
    results, large, small = run.results, run.large, run.small
    jobs = _signature_jobs(2000)
    with ProcessPoolExecutor(run.cores) as pool:
        list(pool.map(verify_jobs, [jobs[:10]] * run.cores))
        raw_one, _ = _median_of(run.runs, lambda: _raw_rate(pool, 1, jobs))
        raw_all, _ = _median_of(run.runs, lambda: _raw_rate(pool, run.cores, jobs))
        verify_rate, verify_runs = _median_of(
            max(1, run.runs - 2), lambda: _verify_rate(run.export, pool, rules=False)
        )
        rules_rate, _ = _median_of(1, lambda: _verify_rate(run.export, pool, rules=True))
    ratio = verify_rate / raw_all
    peak = {
        str(small): _verifier_peak_mib(run.small_export, rules=False),
        str(large): _verifier_peak_mib(run.export, rules=False),
    }
    rules_peak = {
        str(small): _verifier_peak_mib(run.small_export, rules=True),
        str(large): _verifier_peak_mib(run.export, rules=True),
    }
    results["ed25519_verify_per_s_one_core"] = raw_one
    results["ed25519_verify_per_s_all_cores"] = raw_all
    results["chain_verify_events_per_s"] = verify_rate
    results["chain_verify_runs"] = verify_runs
    results["chain_verify_ratio_to_raw"] = ratio
    results["chain_verify_with_rules_events_per_s"] = rules_rate
    results["verifier_peak_mib"] = peak
    results["verifier_with_rules_peak_mib"] = rules_peak
    return [
        Row(
            "Ed25519 verify, raw",
            f"{raw_all:,.0f}/s all cores",
            f"{raw_one:,.0f}/s one core",
        ),
        Row(
            f"chain verification ({large:,} events)",
            f"{verify_rate:,.0f} events/s",
            f"ratio to raw all-core rate {ratio:.2f}",
            "≥ 0.80",
            ratio >= 0.8,
        ),
        Row(
            "chain verification with rules (replay)",
            f"{rules_rate:,.0f} events/s",
            f"ratio to raw {rules_rate / raw_all:.2f}",
        ),
        Row(
            "verifier peak memory",
            f"{peak[str(small)]:.0f} MiB @ {small:,}; {peak[str(large)]:.0f} MiB @ {large:,}",
            f"growth ×{peak[str(large)] / peak[str(small)]:.2f} for ×10 events",
            "flat",
            peak[str(large)] <= 1.25 * peak[str(small)],
        ),
        Row(
            "verifier peak memory with rules",
            f"{rules_peak[str(small)]:.0f} MiB @ {small:,}; "
            f"{rules_peak[str(large)]:.0f} MiB @ {large:,}",
            "grows with the state (lots, keys, event ids)",
        ),
    ]


def _traces(run: BenchRun) -> list[Row]:
    """A 10-hop backward trace and a forward trace from the large store."""
    trace = _trace_latencies(run.database, 100 if run.quick else 500)
    run.results["trace"] = trace
    return [
        Row(
            f"backward trace, {trace['hops']:.0f} hops, {run.large:,}-event SQLite store",
            f"median {trace['back_median_ms']:.2f} ms",
            f"p99 {trace['back_p99_ms']:.2f} ms; "
            f"forward median {trace['forward_median_ms']:.2f} ms",
            "median < 20 ms",
            trace["back_median_ms"] < 20,
        )
    ]


def _proofs(run: BenchRun) -> list[Row]:
    """Proofs from the store, from pymerkle's tree of the same leaves, and over HTTP."""
    tree = _pymerkle_tree(run.data, run.database, run.large)
    store = Store.open(f"sqlite:///{run.database}")
    try:
        size = store.head().tree_size
        cold = _proof_latencies(store, _challenges(size, run.samples, seed=8))
        challenges = _challenges(size, run.samples)
        _read_through(run.database)
        rantai = _proof_latencies(store, challenges)
        _read_through(tree)
        other = _pymerkle_latencies(tree, store, challenges)
        with served("rantai.bench:read_only_node_app", str(run.database)) as url:
            http = _http_proof_latencies(url, store, challenges)
    finally:
        store.close()
    run.results["proofs"] = rantai | {f"cold_{key}": value for key, value in cold.items()}
    run.results["pymerkle_proofs"] = other | {
        f"{kind}{cache}_ratio": other[f"{kind}_median_ms"] / proofs[f"{kind}_median_ms"]
        for kind in ("inclusion", "consistency")
        for cache, proofs in (("", rantai), ("_cold", cold))
    }
    run.results["http_proofs"] = http
    rows = []
    for kind in ("inclusion", "consistency"):
        median = rantai[f"{kind}_median_ms"]
        rows.append(
            Row(
                f"{kind} proof, SQLite store, {run.large:,} events",
                f"median {median:.3f} ms",
                f"p99 {rantai[f'{kind}_p99_ms']:.3f} ms; file not read first: "
                f"median {cold[f'{kind}_median_ms']:.3f} ms",
                "median < 1 ms",
                median < 1.0,
            )
        )
    for kind in ("inclusion", "consistency"):
        ratio = run.results["pymerkle_proofs"][f"{kind}_ratio"]
        rows.append(
            Row(
                f"{kind} proof vs pymerkle {pymerkle.__version__} SqliteTree, same challenges",
                f"pymerkle median {other[f'{kind}_median_ms']:.3f} ms, "
                f"p99 {other[f'{kind}_p99_ms']:.3f} ms",
                f"Rantai {ratio:.1f}× faster (median; store file not read first: "
                f"{run.results['pymerkle_proofs'][f'{kind}_cold_ratio']:.1f}×); "
                f"pymerkle's first proof {other[f'first_{kind}_ms']:.0f} ms",
                "≥ 10×",
                ratio >= 10,
            )
        )
    for kind, route in (
        ("inclusion", "GET /v1/events/{id}/proof?size=N"),
        ("consistency", "GET /v1/proofs/consistency"),
    ):
        median = http[f"{kind}_median_ms"]
        rows.append(
            Row(
                f"{kind} proof over HTTP, {route}",
                f"median {median:.2f} ms",
                f"p99 {http[f'{kind}_p99_ms']:.2f} ms; "
                f"in-process median {rantai[f'{kind}_median_ms']:.2f} ms",
                "median < 2 ms",
                median < 2.0,
            )
        )
    return rows


def _storage(run: BenchRun) -> list[Row]:
    """SQLite bytes per event against the mean size of an event's JSON envelope."""
    per_event = run.database.stat().st_size / run.large
    envelope = _mean_envelope_bytes(run.database)
    ratio = per_event / envelope
    run.results["sqlite_bytes_per_event"] = per_event
    run.results["envelope_json_mean_bytes"] = envelope
    run.results["sqlite_bytes_ratio_to_envelope"] = ratio
    return [
        Row(
            "SQLite bytes per event (log, Merkle nodes, state)",
            f"{per_event:,.0f} B",
            f"mean JSON envelope {envelope:,.0f} B: ratio {ratio:.2f}",
            "≤ 3×",
            ratio <= 3,
        )
    ]


def _plain_app(run: BenchRun) -> list[Row]:
    """The plain FastAPI + SQLite baseline storing the sample chain's events over HTTP."""
    events = list(_leaves(run.database, _PLAIN_APP_EVENTS))
    seconds = 5.0 if run.quick else 10.0
    measured, alone = [], []
    for _ in range(run.runs):
        measured.append(
            measure_plain_app(events, seconds, _PLAIN_APP_CONCURRENCY, directory=run.data)
        )
        alone.append(measure_sqlite_inserts(events, seconds / 5, directory=run.data))
    plain = {
        key: statistics.median(m[key] for m in measured)
        for key in ("events_per_s", "p50_ms", "p99_ms")
    }
    sqlite_alone = statistics.median(alone)
    run.results["plain_app"] = plain | {
        "runs": [m["events_per_s"] for m in measured],
        "concurrency": _PLAIN_APP_CONCURRENCY,
        "seconds": seconds,
        "sqlite_alone_inserts_per_s": sqlite_alone,
    }
    return [
        Row(
            f"plain FastAPI + SQLite app, one event per request, {_PLAIN_APP_CONCURRENCY} clients",
            f"{plain['events_per_s']:,.0f} events/s "
            f"(p50 {plain['p50_ms']:.1f} ms, p99 {plain['p99_ms']:.1f} ms)",
            f"its SQLite table alone, no HTTP: {sqlite_alone:,.0f} inserts/s",
        )
    ]


def _network(run: BenchRun) -> list[Row]:
    """A 4-node loopback network under load, next to the verification limit and the plain app."""
    load = (
        NetworkLoad(seconds=10, warmup=3, latency_seconds=8)
        if run.quick
        else NetworkLoad(seconds=20, warmup=5, latency_seconds=15)
    )
    measured = [measure_network(load) for _ in range(1 if run.quick else 3)]

    def median(key: str) -> float:
        return float(statistics.median(m[key] for m in measured))

    rate, p50, p99 = (
        median("committed_events_per_s"),
        median("latency_p50_ms"),
        median("latency_p99_ms"),
    )
    steps = {
        step: statistics.median(m["latency_step_means_ms"][step] for m in measured)
        for step in measured[0]["latency_step_means_ms"]
    }
    rss = max(max(m["node_rss_peak_mib"]) for m in measured)
    catch_up = median("catch_up_events_per_s")
    raw_all = run.results["ed25519_verify_per_s_all_cores"]
    limit = raw_all / load.nodes  # every validator verifies every event's signature once
    plain = run.results["plain_app"]["events_per_s"]
    run.results["network"] = {
        "runs": measured,
        "committed_events_per_s": rate,
        "verification_limit_events_per_s": limit,
        "ratio_to_limit": rate / limit,
        "ratio_to_plain_app": rate / plain,
        "latency_p50_ms": p50,
        "latency_p99_ms": p99,
        "latency_step_means_ms": steps,
        "node_rss_peak_mib": rss,
        "catch_up_events_per_s": catch_up,
        "catch_up_ratio_to_raw": catch_up / raw_all,
    }
    nodes = f"{load.nodes}-node loopback network"
    return [
        Row(
            f"committed events/s, {nodes}, batches of {load.batch}, {load.concurrency} clients",
            f"{rate:,.0f} events/s",
            f"(a) limit {limit:,.0f}/s (raw {raw_all:,.0f}/s ÷ {load.nodes} verifications): "
            f"{rate / limit:.2f}; (b) plain app {plain:,.0f}/s: {rate / plain:.2f}",
            "≥ 1,500/s; ≥ 0.5 (a); ≥ 0.4 (b)",
            rate >= 1500 and rate / limit >= 0.5 and rate / plain >= 0.4,
        ),
        Row(
            f"submit-to-commit latency at half that rate (batches of {load.latency_batch})",
            f"p50 {p50:,.0f} ms, p99 {p99:,.0f} ms",
            f"{rate * load.latency_fraction:,.0f} events/s offered; mean per node: "
            + ", ".join(f"{step} {ms:,.1f} ms" for step, ms in steps.items()),
            "≤ 300 ms / ≤ 1 s",
            p50 <= 300 and p99 <= 1000,
        ),
        Row(
            "resident memory per node under load",
            f"{rss:.0f} MiB (highest of {load.nodes} nodes)",
            "",
            "≤ 150 MB",
            rss * 1.048576 <= 150,
        ),
        Row(
            "catch-up of an empty node from its peers",
            f"{catch_up:,.0f} events/s",
            f"raw all-core Ed25519 {raw_all:,.0f}/s: {catch_up / raw_all:.2f}",
            "≥ 0.5",
            catch_up / raw_all >= 0.5,
        ),
    ]


SECTIONS: tuple[Callable[[BenchRun], list[Row]], ...] = (
    _verification,
    _traces,
    _proofs,
    _storage,
    _plain_app,
    _network,
)
"""The benchmark's sections, run in this order (see the module docstring)."""


@click.command()
@click.option("--quick", is_flag=True, help="A smoke run: smaller data, fewer repeats.")
@click.option(
    "--data",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("bench-data"),
    show_default=True,
    help="Where the large data sets are built once and reused.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("bench-results.json"),
    show_default=True,
)
@click.option(
    "--soak",
    "soak_for",
    metavar="DURATION",
    help="Instead: hold a steady load on a 4-node network for DURATION (e.g. 30m, 90s) and "
    "report throughput, latency and memory over time (written to --out).",
)
def main(quick: bool, data: Path, out: Path, soak_for: str | None) -> None:
    """Measure Rantai on this machine; print a table and write bench-results.json.

    \b
    Examples:
      scripts/bench --quick          # a smoke run of a few minutes
      scripts/bench                  # every target, 1,000,000-event data sets
      scripts/bench --soak 30m --out soak-results.json
    """
    if soak_for is not None:
        _soak(_duration(soak_for), out)
        return
    large = 100_000 if quick else 1_000_000
    small = large // 10
    cores = os.cpu_count() or 1
    export, database = _build_data(data, large)
    small_export = _prefix_export(
        export, data / f"chain-{small}-v{_DATA_VERSION}.ndjson", small // _EVENTS_PER_BLOCK
    )
    run = BenchRun(
        quick=quick,
        data=data,
        large=large,
        small=small,
        runs=3 if quick else 5,
        samples=300 if quick else 2000,
        cores=cores,
        export=export,
        small_export=small_export,
        database=database,
        results={
            "machine": {
                "cores": cores,
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpu": _cpu_model(),
            },
            "quick": quick,
            "events_large": large,
            "events_small": small,
        },
    )
    rows = [row for section in SECTIONS for row in section(run)]
    run.results["rows"] = [asdict(row) for row in rows]
    out.write_text(json.dumps(run.results, indent=2) + "\n")
    _print_table(rows, cores)
    console.print(f"written to {out}")


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError) as e:
        raise click.BadParameter(f"{text!r} is not a duration like 30m, 90s or 1h") from e


def _soak(seconds: float, out: Path) -> None:
    """``--soak``: a steady load over time, a row a minute (or ten per run when shorter)."""
    window = min(60.0, max(10.0, seconds / 10))
    table = Table(title=f"soak: 4 nodes, {seconds:,.0f} s")
    for column in ("elapsed", "committed/s", "p50 ms", "p99 ms", "failed", "node RSS MiB"):
        table.add_column(column, justify="right")

    def report(row: dict[str, Any]) -> None:
        console.print(
            f"{row['elapsed_s']:>6} s  {row['committed_events_per_s']:8,.0f}/s  "
            f"p50 {row['latency_p50_ms'] or 0:6,.0f} ms  "
            f"p99 {row['latency_p99_ms'] or 0:6,.0f} ms  "
            f"RSS {', '.join(f'{m:.0f}' for m in row['node_rss_mib'])} MiB  "
            + ", ".join(f"{step} {ms:.0f}" for step, ms in row["step_means_ms"].items())
            + " ms"
        )

    result = soak(seconds, window=window, report=report)
    for row in result["rows"]:
        table.add_row(
            f"{row['elapsed_s']} s",
            f"{row['committed_events_per_s']:,.0f}",
            f"{row['latency_p50_ms'] or 0:,.0f}",
            f"{row['latency_p99_ms'] or 0:,.0f}",
            str(row["failed_batches"]),
            ", ".join(f"{m:.0f}" for m in row["node_rss_mib"]),
        )
    console.print(table)
    verdict = "flat" if result["memory_flat"] else "GROWING"
    slopes = ", ".join(f"{s:+.3f}" for s in result["rss_slope_second_half_mib_per_min"])
    console.print(
        f"memory over the second half: {slopes} MiB/min per node "
        f"(flat: ≤ {FLAT_MIB_PER_MINUTE} MiB/min): {verdict}; last window / first window "
        f"≤ {result['rss_growth_last_over_first']:.2f}"
    )
    out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"written to {out}")


def _print_table(rows: list[Row], cores: int) -> None:
    table = Table(title=f"Rantai benchmarks ({cores} cores)")
    for column in ("measurement", "value", "compared with", "target", "met"):
        table.add_column(column)
    for row in rows:
        met = "" if row.met is None else "[green]yes[/]" if row.met else "[red]no[/]"
        table.add_row(row.measurement, row.value, row.compared_with, row.target, met)
    console.print(table)


if __name__ == "__main__":
    main()
