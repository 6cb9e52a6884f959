"""A real network under load: committed events/s, submit-to-commit latency, node memory.

Starts ``nodes`` node processes on loopback (``rantai node run``, SQLite), registers a
cooperative and a producer, signs every event ahead of time (the load generator must not be
what limits the figure), then:

* **throughput**: ``concurrency`` clients each submit batches of ``batch`` signed events to the
  nodes in turn with ``?wait=commit`` (closed loop: a client sends its next batch once the last
  one is committed); committed events/s is read from the nodes' tree size over the measured
  window, after a warm-up;
* **latency**: open loop at ``latency_fraction`` of the measured rate: a batch of
  ``latency_batch`` events is sent every ``latency_batch / rate`` seconds whatever happened to
  the ones before, and each batch's submit-to-commit time is recorded;
* **memory**: each node's resident set (``VmRSS``) sampled throughout; the maximum is reported;
* **catch-up**: the last node is stopped, its database replaced by an empty one, and restarted;
  events/s until its tree size equals the others' (it fetches certified blocks from its
  peers and checks every certificate, signature and rule).

Every validator verifies every event's signature (on admission or in the proposal it votes
on), so the network's ceiling is the machine's Ed25519 rate divided by the number of nodes.
This module measures; it does not judge (``rantai.bench`` puts the figures next to targets).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import hashlib
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ledger.encoding import canonical, format_time
from ledger.events import sign_event
from ledger.keys import public_key_bytes
from node.keystore import load_key
from rantai.client import Client
from rantai.network import free_base_port, init_network
from rantai.samplechain import derive_key

__all__ = ["FLAT_MIB_PER_MINUTE", "NetworkLoad", "measure_network", "soak"]

_NETWORK = "kalbar-coop"


@dataclass(frozen=True, slots=True)
class NetworkLoad:
    """How to load the network."""

    nodes: int = 4
    seconds: float = 20.0
    warmup: float = 5.0
    concurrency: int = 8
    batch: int = 250
    latency_seconds: float = 15.0
    latency_fraction: float = 0.5
    latency_batch: int = 25


def _rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class _Events:
    """Signed events, made before the clock starts."""

    def __init__(self, directory: Path) -> None:
        self._governance = load_key(directory / "keys" / "governance.pem")
        self._admin = derive_key(b"netbench", "admin")
        self._producer = derive_key(b"netbench", "producer")
        self._serial = 0
        self._now = format_time(_dt.datetime.now(_dt.UTC).replace(microsecond=0))

    def _event(self, kind: str, payload: dict[str, Any], signer: Any) -> dict[str, Any]:
        self._serial += 1
        body = {
            "v": 1,
            "network": _NETWORK,
            "type": kind,
            "nonce": f"netbench-{self._serial}",
            "created_at": self._now,
            "payload": payload,
        }
        return sign_event(body, [signer]).to_json()

    def bootstrap(self) -> list[dict[str, Any]]:
        return [
            self._event(
                "org.register",
                {
                    "org_id": "koperasi-bench",
                    "name": "Koperasi Bench",
                    "kind": "cooperative",
                    "admins": [public_key_bytes(self._admin).hex()],
                },
                self._governance,
            ),
            self._event(
                "member.register",
                {
                    "member_id": "koperasi-bench/ani",
                    "role": "producer",
                    "public_keys": [public_key_bytes(self._producer).hex()],
                    "profile_hash": hashlib.sha256(b"ani").hexdigest(),
                },
                self._admin,
            ),
        ]

    def harvests(self, count: int) -> list[dict[str, Any]]:
        return [
            self._event(
                "lot.create",
                {
                    "lot_id": f"NB-{self._serial}",
                    "commodity": "rubber",
                    "quantity": "125.5",
                    "uom": "kg",
                    "producer": "koperasi-bench/ani",
                    "harvested_on": "2026-11-20",
                },
                self._producer,
            )
            for _ in range(count)
        ]


FLAT_MIB_PER_MINUTE = 0.1
"""The soak's bound on memory growth once warm (6 MiB an hour)."""
_UNLIMITED = "\n[limits]\naddress_per_second = 0\nkey_per_second = 0\n"
"""The load generator stands in for many clients with one address and one key: no rate limits."""


class _Network:
    def __init__(self, directory: Path, nodes: int) -> None:
        self.directory = directory
        self.base = free_base_port(nodes)
        init_network(directory, nodes=nodes, base_port=self.base, network=_NETWORK)
        for k in range(1, nodes + 1):
            with (directory / f"node-{k}" / "node.toml").open("a") as config:
                config.write(_UNLIMITED)
        self.urls = [f"http://127.0.0.1:{self.base + k}" for k in range(nodes)]
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.processes = [self._spawn(k) for k in range(1, len(self.urls) + 1)]
        for url in self.urls:
            self._wait_healthy(url)

    def _spawn(self, k: int) -> subprocess.Popen[bytes]:
        log = (self.directory / f"node-{k}" / "node.log").open("ab")
        return subprocess.Popen(  # noqa: S603 - our own interpreter and command
            [sys.executable, "-m", "rantai", "node", "run", str(self.directory / f"node-{k}")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    @staticmethod
    def _wait_healthy(url: str) -> None:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the node at {url} did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def catch_up_rate(self) -> tuple[float, int]:
        """Replace the last node's database with an empty one; events/s until it is level."""
        k = len(self.urls)
        process = self.processes[k - 1]
        process.send_signal(signal.SIGTERM)
        process.wait(15)
        target = self.tree_size()
        for path in (self.directory / f"node-{k}").glob("ledger.db*"):
            path.unlink()
        start = time.monotonic()
        self.processes[k - 1] = self._spawn(k)
        self._wait_healthy(self.urls[k - 1])
        while self.tree_size(k - 1) < target:
            if time.monotonic() - start > 600:
                raise RuntimeError("the new node did not catch up within 10 minutes")
            time.sleep(0.05)
        return target / (time.monotonic() - start), target

    def timings(self) -> list[dict[str, tuple[float, float]]]:
        """Each node's step timings from ``/metrics``: histogram name -> (sum, count)."""
        found = []
        for url in self.urls:
            text = httpx.get(f"{url}/metrics", timeout=10).text
            sums: dict[str, tuple[float, float]] = {}
            for family in text_string_to_metric_families(text):
                if family.type != "histogram":
                    continue
                values = {sample.name: sample.value for sample in family.samples}
                sums[family.name] = (values[f"{family.name}_sum"], values[f"{family.name}_count"])
            found.append(sums)
        return found

    def tree_size(self, k: int = 0) -> int:
        """Node ``k + 1``'s tree size (its status answers requests signed by a member key)."""
        validator = load_key(self.directory / "node-1" / "validator.pem")
        with contextlib.closing(Client(self.urls[k], validator, timeout=10)) as client:
            return int(client.status()["tree_size"])


class _MemorySampler:
    """Samples the nodes' resident sets in a thread until stopped."""

    def __init__(self, pids: list[int]) -> None:
        self._pids = pids
        self.peak = dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            for pid in self._pids:
                self.peak[pid] = max(self.peak[pid], _rss_mib(pid))

    def __enter__(self) -> _MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _body(events: list[dict[str, Any]]) -> bytes:
    return canonical({"events": events})


async def _throughput(
    net: _Network, batches: Iterator[bytes], load: NetworkLoad
) -> tuple[float, int]:
    """Closed-loop batched load; committed events/s over the window after the warm-up."""
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=load.concurrency * 2)

    async def client(number: int, http: httpx.AsyncClient) -> None:
        url = f"{net.urls[number % len(net.urls)]}/v1/events"
        while not stop.is_set():
            body = next(batches, None)
            if body is None:
                return
            response = await http.post(
                url,
                params={"wait": "commit", "timeout": 30},
                content=body,
                headers={"content-type": "application/json"},
            )
            if response.status_code not in (200, 202):
                raise RuntimeError(f"the node refused a batch: {response.text[:500]}")

    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        tasks = [asyncio.create_task(client(i, http)) for i in range(load.concurrency)]
        await asyncio.sleep(load.warmup)
        start_size, start = await asyncio.to_thread(net.tree_size), time.monotonic()
        await asyncio.sleep(load.seconds)
        end_size, end = await asyncio.to_thread(net.tree_size), time.monotonic()
        stop.set()
        await asyncio.gather(*tasks)
    return (end_size - start_size) / (end - start), end_size - start_size


async def _latency(
    net: _Network, batches: Iterator[bytes], rate: float, load: NetworkLoad
) -> list[float]:
    """Open loop at ``rate`` events/s: each batch's submit-to-commit time, in seconds."""
    interval = load.latency_batch / rate
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=1000)

    async def one(number: int, body: bytes, http: httpx.AsyncClient) -> None:
        url = f"{net.urls[number % len(net.urls)]}/v1/events"
        start = time.monotonic()
        response = await http.post(
            url,
            params={"wait": "commit", "timeout": 30},
            content=body,
            headers={"content-type": "application/json"},
        )
        if response.status_code != 200:
            raise RuntimeError(f"a batch was not committed: {response.text[:500]}")
        latencies.append(time.monotonic() - start)

    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        tasks = []
        begin = time.monotonic()
        number = 0
        while time.monotonic() - begin < load.latency_seconds:
            body = next(batches, None)
            if body is None:
                break
            tasks.append(asyncio.create_task(one(number, body, http)))
            number += 1
            await asyncio.sleep(max(0.0, begin + number * interval - time.monotonic()))
        await asyncio.gather(*tasks)
    return latencies


def _step_means(
    before: list[dict[str, tuple[float, float]]], after: list[dict[str, tuple[float, float]]]
) -> dict[str, float]:
    """The mean of each node step between two scrapes, in ms, over all nodes."""
    means = {}
    for name in sorted(after[0]):
        total = count = 0.0
        for node_after, node_before in zip(after, before, strict=True):
            first_sum, first_count = node_before.get(name, (0.0, 0.0))
            total += node_after[name][0] - first_sum
            count += node_after[name][1] - first_count
        step = name.removeprefix("rantai_").removesuffix("_seconds")
        means[step] = total / count * 1000 if count else 0.0
    return means


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure_network(load: NetworkLoad, directory: Path | None = None) -> dict[str, Any]:
    """Run the network benchmark (see the module docstring) and return its figures."""
    with tempfile.TemporaryDirectory(prefix="rantai-netbench-") as scratch:
        net = _Network(Path(directory or scratch) / "network", load.nodes)
        events = _Events(net.directory)
        bootstrap = events.bootstrap()
        # More than the network can take in the windows: the generator never runs dry.
        budget = int(4000 * (load.warmup + load.seconds + 5))
        throughput_batches = [
            _body(events.harvests(load.batch)) for _ in range(budget // load.batch)
        ]
        net.start()
        try:
            response = httpx.post(
                f"{net.urls[0]}/v1/events",
                params={"wait": "commit"},
                content=_body(bootstrap),
                headers={"content-type": "application/json"},
                timeout=30,
            )
            response.raise_for_status()
            with _MemorySampler([p.pid for p in net.processes]) as memory:
                rate, committed = asyncio.run(_throughput(net, iter(throughput_batches), load))
                target = rate * load.latency_fraction
                count = int(target * load.latency_seconds / load.latency_batch) + 1
                latency_batches = [_body(events.harvests(load.latency_batch)) for _ in range(count)]
                before = net.timings()
                latencies = asyncio.run(_latency(net, iter(latency_batches), target, load))
                steps = _step_means(before, net.timings())
            catch_up, caught_up = net.catch_up_rate()
        finally:
            net.stop()
    return {
        "nodes": load.nodes,
        "committed_events_per_s": rate,
        "committed_in_window": committed,
        "window_s": load.seconds,
        "concurrency": load.concurrency,
        "batch": load.batch,
        "latency_rate_events_per_s": target,
        "latency_batch": load.latency_batch,
        "latency_p50_ms": statistics.median(latencies) * 1000,
        "latency_p99_ms": _percentile(latencies, 0.99) * 1000,
        "latency_samples": len(latencies),
        "latency_step_means_ms": steps,
        "node_rss_peak_mib": sorted(memory.peak.values()),
        "catch_up_events_per_s": catch_up,
        "catch_up_events": caught_up,
    }


async def _steady_load(
    net: _Network,
    events: _Events,
    rate: float,
    batch: int,
    seconds: float,
    window: float,
    report: Callable[[dict[str, Any]], None],
) -> None:
    """Open loop at ``rate`` events/s for ``seconds``; a row to ``report`` every ``window``."""
    interval = batch / rate
    latencies: list[float] = []
    failures = 0
    limits = httpx.Limits(max_connections=1000)

    async def one(number: int, body: bytes, http: httpx.AsyncClient) -> None:
        nonlocal failures
        start = time.monotonic()
        try:
            response = await http.post(
                f"{net.urls[number % len(net.urls)]}/v1/events",
                params={"wait": "commit", "timeout": 30},
                content=body,
                headers={"content-type": "application/json"},
            )
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok:
            latencies.append(time.monotonic() - start)
        else:
            failures += 1

    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        tasks: set[asyncio.Task[None]] = set()
        begin = window_start = time.monotonic()
        size = await asyncio.to_thread(net.tree_size)
        timings = await asyncio.to_thread(net.timings)
        number = 0
        while time.monotonic() - begin < seconds:
            body = _body(events.harvests(batch))
            task = asyncio.create_task(one(number, body, http))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            number += 1
            await asyncio.sleep(max(0.0, begin + number * interval - time.monotonic()))
            if time.monotonic() - window_start >= window:
                now_size = await asyncio.to_thread(net.tree_size)
                now_timings = await asyncio.to_thread(net.timings)
                elapsed = time.monotonic() - window_start
                done, latencies = latencies, []
                report(
                    {
                        "elapsed_s": round(time.monotonic() - begin),
                        "committed_events_per_s": (now_size - size) / elapsed,
                        "latency_p50_ms": statistics.median(done) * 1000 if done else None,
                        "latency_p99_ms": _percentile(done, 0.99) * 1000 if done else None,
                        "failed_batches": failures,
                        "node_rss_mib": [_rss_mib(p.pid) for p in net.processes],
                        "step_means_ms": _step_means(timings, now_timings),
                    }
                )
                size, window_start, failures = now_size, time.monotonic(), 0
                timings = now_timings
        await asyncio.gather(*tasks)


def soak(
    seconds: float,
    *,
    rate: float = 500.0,
    batch: int = 25,
    window: float = 60.0,
    report: Callable[[dict[str, Any]], None] = lambda row: None,
) -> dict[str, Any]:
    """Hold a steady load on a 4-node network for ``seconds``; rows over time and a verdict.

    Memory counts as flat when, over the second half of the run (the first half includes the
    warm-up: bounded caches filling, the database's page cache, the allocator's arenas), no
    node's resident set grows faster than :data:`FLAT_MIB_PER_MINUTE` (least-squares slope).
    """
    rows: list[dict[str, Any]] = []

    def record(row: dict[str, Any]) -> None:
        rows.append(row)
        report(row)

    with tempfile.TemporaryDirectory(prefix="rantai-soak-") as scratch:
        net = _Network(Path(scratch) / "network", 4)
        events = _Events(net.directory)
        bootstrap = events.bootstrap()
        net.start()
        try:
            httpx.post(
                f"{net.urls[0]}/v1/events",
                params={"wait": "commit"},
                content=_body(bootstrap),
                headers={"content-type": "application/json"},
                timeout=30,
            ).raise_for_status()
            asyncio.run(_steady_load(net, events, rate, batch, seconds, window, record))
        finally:
            net.stop()
    if not rows:
        raise RuntimeError(f"a soak needs at least one {window:.0f}-second window")
    first, last = rows[0]["node_rss_mib"], rows[-1]["node_rss_mib"]
    slopes = _second_half_slopes(rows)
    return {
        "seconds": seconds,
        "rate": rate,
        "batch": batch,
        "rows": rows,
        "rss_growth_last_over_first": max(b / a for a, b in zip(first, last, strict=True)),
        "rss_slope_second_half_mib_per_min": slopes,
        "memory_flat": max(slopes) <= FLAT_MIB_PER_MINUTE,
    }


def _second_half_slopes(rows: list[dict[str, Any]]) -> list[float]:
    """Each node's resident-set growth, MiB a minute, fitted over the second half's rows."""
    half = rows[len(rows) // 2 :]
    if len(half) < 2:
        return [0.0 for _ in rows[0]["node_rss_mib"]]
    minutes = [row["elapsed_s"] / 60 for row in half]
    return [
        statistics.linear_regression(minutes, [row["node_rss_mib"][k] for row in half]).slope
        for k in range(len(half[0]["node_rss_mib"]))
    ]


if __name__ == "__main__":
    import json

    print(json.dumps(measure_network(NetworkLoad()), indent=2))
