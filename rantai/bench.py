"""``scripts/bench``: measure Rantai against its targets on this machine, in one run.

Every figure is a median over repeated runs, and every comparison is a ratio measured in the
same run (absolute times drift on shared machines). Results print as a table and are written
to ``bench-results.json``. Large data sets are built once under ``bench-data/`` and reused.

Measurements (issue [1/6]):
  * raw Ed25519 verification rate, one core and all cores (the machine's limit);
  * offline chain verification (``check_export`` with a process pool), events/s and its ratio
    to the all-core raw rate (target ≥ 0.8);
  * verifier peak memory (resident set of the verifying process) for two chain lengths;
  * the same verification with the supply-chain rules replayed (rate and memory);
  * a 10-hop backward trace and a forward trace from the SQLite store of the large ledger
    (target median < 20 ms);
  * inclusion and consistency proofs from the SQLite store of the large log (target median
    < 1 ms).
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ledger.blocks import Block, export_lines
from ledger.encoding import parse_time
from ledger.keys import EVENT_PREFIX, SignatureJob, verify_jobs
from ledger.merkle import verify_consistency, verify_inclusion
from ledger.rules import StateMachine
from ledger.state import Overlay
from ledger.trace import trace_back, trace_forward
from ledger.verifier import check_export
from node.ledger_state import DatabaseState
from node.store import Store, create_store_engine
from rantai.samplechain import LINEAGE_FINAL_LOT, sample_network

__all__ = ["main"]

_DATA_VERSION = "2"
_LINEAGE_DEPTH = 10
_EVENTS_PER_BLOCK = 1000
console = Console(width=None if sys.stdout.isatty() else 120)


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


def _build_data(data: Path, events: int) -> tuple[Path, Path]:
    """The export and the SQLite store of a sample chain with ``events`` events (cached)."""
    data.mkdir(parents=True, exist_ok=True)
    export = _export_path(data, events)
    database = data / f"store-{events}-v{_DATA_VERSION}.db"
    done = data / f"store-{events}-v{_DATA_VERSION}.done"
    if done.exists() and export.exists() and database.exists():
        return export, database
    for stale in (export, database, done):
        stale.unlink(missing_ok=True)
    net = sample_network(4, seed=b"bench")
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
        values.sort()
        results[f"{direction}_median_ms"] = statistics.median(values) * 1e3
        results[f"{direction}_p99_ms"] = values[int(0.99 * len(values))] * 1e3
    return results


def _proof_latencies(database: Path, samples: int) -> dict[str, float]:
    store = Store.open(f"sqlite:///{database}")
    try:
        size = store.head().tree_size
        root = store.root(size)
        rng = random.Random(7)
        inclusion, consistency = [], []
        for _ in range(samples):
            index = rng.randrange(size)
            start = time.perf_counter()
            proof = store.inclusion_proof(index, size)
            inclusion.append(time.perf_counter() - start)
            verify_inclusion(store.leaf_hash(index), index, size, proof, root)
            old = rng.randrange(1, size)
            start = time.perf_counter()
            proof = store.consistency_proof(old, size)
            consistency.append(time.perf_counter() - start)
            verify_consistency(old, size, proof, store.root(old), root)
    finally:
        store.close()
    return {
        "inclusion_median_ms": statistics.median(inclusion) * 1e3,
        "inclusion_p99_ms": sorted(inclusion)[int(0.99 * len(inclusion))] * 1e3,
        "consistency_median_ms": statistics.median(consistency) * 1e3,
        "consistency_p99_ms": sorted(consistency)[int(0.99 * len(consistency))] * 1e3,
    }


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
def main(quick: bool, data: Path, out: Path) -> None:
    """Measure Rantai on this machine; print a table and write bench-results.json."""
    large = 100_000 if quick else 1_000_000
    small = large // 10
    runs = 3 if quick else 5
    cores = os.cpu_count() or 1
    export, database = _build_data(data, large)
    small_export = _prefix_export(
        export, data / f"chain-{small}-v{_DATA_VERSION}.ndjson", small // _EVENTS_PER_BLOCK
    )
    results: dict[str, Any] = {
        "machine": {
            "cores": cores,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu": _cpu_model(),
        },
        "quick": quick,
        "events_large": large,
        "events_small": small,
    }
    jobs = _signature_jobs(2000)
    with ProcessPoolExecutor(cores) as pool:
        list(pool.map(verify_jobs, [jobs[:10]] * cores))
        raw_one, _ = _median_of(runs, lambda: _raw_rate(pool, 1, jobs))
        raw_all, _ = _median_of(runs, lambda: _raw_rate(pool, cores, jobs))
        verify_rate, verify_runs = _median_of(
            max(1, runs - 2), lambda: _verify_rate(export, pool, rules=False)
        )
        rules_rate, _ = _median_of(1, lambda: _verify_rate(export, pool, rules=True))
    results["ed25519_verify_per_s_one_core"] = raw_one
    results["ed25519_verify_per_s_all_cores"] = raw_all
    results["chain_verify_events_per_s"] = verify_rate
    results["chain_verify_runs"] = verify_runs
    results["chain_verify_ratio_to_raw"] = verify_rate / raw_all
    results["chain_verify_with_rules_events_per_s"] = rules_rate
    results["verifier_peak_mib"] = {
        str(small): _verifier_peak_mib(small_export, rules=False),
        str(large): _verifier_peak_mib(export, rules=False),
    }
    results["verifier_with_rules_peak_mib"] = {
        str(small): _verifier_peak_mib(small_export, rules=True),
        str(large): _verifier_peak_mib(export, rules=True),
    }
    results["proofs"] = _proof_latencies(database, 300 if quick else 2000)
    results["trace"] = _trace_latencies(database, 100 if quick else 500)
    results["sqlite_bytes_per_event"] = database.stat().st_size / large
    out.write_text(json.dumps(results, indent=2) + "\n")
    _print_table(results)
    console.print(f"written to {out}")


def _print_table(results: dict[str, Any]) -> None:
    large, small = results["events_large"], results["events_small"]
    proofs = results["proofs"]
    peak = results["verifier_peak_mib"]
    ratio = results["chain_verify_ratio_to_raw"]
    table = Table(title=f"Rantai benchmarks ({results['machine']['cores']} cores)")
    for column in ("measurement", "value", "compared with", "target", "met"):
        table.add_column(column)
    table.add_row(
        "Ed25519 verify, raw",
        f"{results['ed25519_verify_per_s_all_cores']:,.0f}/s all cores",
        f"{results['ed25519_verify_per_s_one_core']:,.0f}/s one core",
        "—",
        "",
    )
    table.add_row(
        f"chain verification ({large:,} events)",
        f"{results['chain_verify_events_per_s']:,.0f} events/s",
        f"ratio to raw all-core rate {ratio:.2f}",
        "≥ 0.80",
        _met(ratio >= 0.8),
    )
    with_rules = results["chain_verify_with_rules_events_per_s"]
    table.add_row(
        "chain verification with rules (replay)",
        f"{with_rules:,.0f} events/s",
        f"ratio to raw {with_rules / results['ed25519_verify_per_s_all_cores']:.2f}",
        "—",
        "",
    )
    rules_peak = results["verifier_with_rules_peak_mib"]
    table.add_row(
        "verifier peak memory with rules",
        f"{rules_peak[str(small)]:.0f} MiB @ {small:,}; "
        f"{rules_peak[str(large)]:.0f} MiB @ {large:,}",
        "grows with the state (lots, keys, event ids)",
        "—",
        "",
    )
    trace = results["trace"]
    table.add_row(
        f"backward trace, {trace['hops']:.0f} hops, {large:,}-event SQLite store",
        f"median {trace['back_median_ms']:.2f} ms",
        f"p99 {trace['back_p99_ms']:.2f} ms; forward median {trace['forward_median_ms']:.2f} ms",
        "median < 20 ms",
        _met(trace["back_median_ms"] < 20),
    )
    table.add_row(
        "verifier peak memory",
        f"{peak[str(small)]:.0f} MiB @ {small:,}; {peak[str(large)]:.0f} MiB @ {large:,}",
        f"growth ×{peak[str(large)] / peak[str(small)]:.2f} for ×10 events",
        "flat",
        _met(peak[str(large)] <= 1.25 * peak[str(small)]),
    )
    for kind in ("inclusion", "consistency"):
        median = proofs[f"{kind}_median_ms"]
        table.add_row(
            f"{kind} proof, SQLite store, {large:,} events",
            f"median {median:.3f} ms",
            f"p99 {proofs[f'{kind}_p99_ms']:.3f} ms",
            "median < 1 ms",
            _met(median < 1.0),
        )
    table.add_row(
        "SQLite bytes per event",
        f"{results['sqlite_bytes_per_event']:.0f} B",
        "",
        "",
        "",
    )
    console.print(table)


def _met(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[red]no[/]"


if __name__ == "__main__":
    main()
