"""The plain FastAPI + SQLite baseline of ``scripts/bench``, and the HTTP harness it runs on.

The baseline is what a cooperative could run instead of Rantai: one FastAPI app that stores
each JSON event it is sent as one row of one SQLite table, with the durability of Rantai's
store (WAL, ``synchronous=FULL``: every insert is fsynced before it is acknowledged). It
checks no signature, applies no rule, keeps no Merkle log and replicates nothing, so it is the
ceiling that Rantai's committed throughput is compared with.

The harness serves an app factory with uvicorn in a subprocess on 127.0.0.1
(:func:`served`) and drives an endpoint with concurrent keep-alive clients for a fixed
duration (:func:`drive_load`). Neither knows about Rantai's ledger.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

__all__ = [
    "drive_load",
    "measure_plain_app",
    "measure_sqlite_inserts",
    "percentile",
    "plain_app",
    "served",
]

_READY_SECONDS = 30.0

_SERVE_SCRIPT = """
import importlib, socket, sys, uvicorn
module, name = sys.argv[1].split(":")
app = getattr(importlib.import_module(module), name)(*sys.argv[2:])
# proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so (else Nagle's
# algorithm and delayed ACKs add 40 ms to every response written in two parts)
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
uvicorn.Server(config).run(sockets=[sock])
"""


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank, no interpolation)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _open_events(database: Path) -> sqlite3.Connection:
    """The baseline's table, with Rantai's durability: WAL, and an fsync at every commit."""
    connection = sqlite3.connect(database, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, body BLOB)")
    return connection


def _insert(connection: sqlite3.Connection, body: bytes) -> int:
    """Store one event in its own transaction (autocommit: one fsync each)."""
    cursor = connection.execute("INSERT INTO events (body) VALUES (?)", (body,))
    return cursor.lastrowid or 0


def plain_app(database: str) -> FastAPI:
    """The baseline app: ``POST /events`` stores the JSON body as one row of ``database``.

    The body is parsed (a malformed one gets a 400) and stored as sent. One connection does
    every insert, one at a time, in a worker thread: SQLite has one writer at a time anyway,
    and requests queue in order for it instead of sleeping in SQLite's busy handler.
    """
    connection = _open_events(Path(database))
    writer = asyncio.Lock()  # first come, first served
    app = FastAPI(title="plain FastAPI + SQLite baseline")

    @app.post("/events")
    async def store_event(request: Request) -> Response:
        body = await request.body()
        try:
            json.loads(body)
        except ValueError:
            return JSONResponse({"detail": "not JSON"}, status_code=400)
        async with writer:
            row = await run_in_threadpool(_insert, connection, body)
        return JSONResponse({"id": row}, status_code=201)

    @app.get("/healthz")
    def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    return app


@contextmanager
def served(factory: str, *args: str) -> Iterator[str]:
    """Serve ``factory(*args)`` (``"module:function"``, returning an ASGI app) on 127.0.0.1.

    The app runs under uvicorn in a subprocess, which binds a free port and prints it; this
    yields the base URL once ``GET /healthz`` answers, and stops the server on exit.

    Raises:
        RuntimeError: the server did not come up.
    """
    with subprocess.Popen(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", _SERVE_SCRIPT, factory, *args], stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line.strip().isdigit():
                raise RuntimeError(f"the server for {factory} did not start")
            url = f"http://127.0.0.1:{int(line)}"
            _wait_until_healthy(url, process)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def _wait_until_healthy(url: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + _READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server at {url} exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the server at {url} did not answer within {_READY_SECONDS:.0f} s")


def drive_load(
    url: str,
    bodies: Sequence[bytes],
    *,
    seconds: float,
    concurrency: int,
    expected_status: int,
) -> dict[str, float]:
    """POST ``bodies`` (in order, cycling) to ``url`` from ``concurrency`` clients.

    Each client sends its next request when the previous one is answered, over its own
    keep-alive connection, until ``seconds`` have passed; requests in flight then finish.

    Returns:
        ``requests``, ``seconds`` (elapsed), ``per_s`` (answered requests per second), and
        ``p50_ms`` / ``p99_ms`` request latency.

    Raises:
        RuntimeError: a response's status was not ``expected_status``.
    """
    latencies, elapsed = asyncio.run(_drive(url, bodies, seconds, concurrency, expected_status))
    return {
        "requests": float(len(latencies)),
        "seconds": elapsed,
        "per_s": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1e3,
        "p99_ms": percentile(latencies, 0.99) * 1e3,
    }


async def _drive(
    url: str, bodies: Sequence[bytes], seconds: float, concurrency: int, expected_status: int
) -> tuple[list[float], float]:
    headers = {"content-type": "application/json"}
    latencies: list[float] = []
    order = itertools.count()
    started = time.perf_counter()
    deadline = started + seconds

    async def one_client() -> None:
        # A client (and connection pool) each: one shared pool of N connections costs httpx
        # several times the CPU per request, and the load generator shares the cores.
        async with httpx.AsyncClient(timeout=30.0) as client:
            while time.perf_counter() < deadline:
                body = bodies[next(order) % len(bodies)]
                sent = time.perf_counter()
                response = await client.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - sent)
                if response.status_code != expected_status:
                    raise RuntimeError(
                        f"{url} answered {response.status_code}: {response.text[:200]}"
                    )

    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


def measure_plain_app(
    events: list[bytes], seconds: float, concurrency: int, *, directory: Path | None = None
) -> dict[str, float]:
    """Sustained inserts per second of the baseline app, on a new database, over HTTP.

    Args:
        events: JSON event bodies, sent one per request (in order, cycling).
        seconds: how long to drive the app.
        concurrency: how many clients send at once.
        directory: where the throwaway database goes (pick the file system the compared
            store lives on: fsync costs differ between file systems).

    Returns:
        ``events_per_s``, ``p50_ms``, ``p99_ms``, ``events`` (how many were stored) and
        ``seconds``.

    Raises:
        RuntimeError: the server did not start, refused an event, or lost one.
    """
    with tempfile.TemporaryDirectory(dir=directory, prefix="plain-app-") as scratch:
        database = Path(scratch) / "events.db"
        with served("rantai.bench_baseline:plain_app", str(database)) as url:
            load = drive_load(
                f"{url}/events",
                events,
                seconds=seconds,
                concurrency=concurrency,
                expected_status=201,
            )
        with closing(sqlite3.connect(database)) as connection:
            stored = connection.execute("SELECT count(*) FROM events").fetchone()[0]
    if stored != load["requests"]:
        raise RuntimeError(f"the baseline acknowledged {load['requests']:.0f}, stored {stored}")
    return {
        "events_per_s": load["per_s"],
        "p50_ms": load["p50_ms"],
        "p99_ms": load["p99_ms"],
        "events": load["requests"],
        "seconds": load["seconds"],
    }


def measure_sqlite_inserts(
    events: list[bytes], seconds: float, *, directory: Path | None = None
) -> float:
    """Inserts per second of the baseline's table alone: no HTTP, one writer, one at a time.

    It is bounded by how fast the file system completes an fsync, which is what bounds the
    plain app too once HTTP is fast enough; both are measured on a new database in
    ``directory``.
    """
    with (
        tempfile.TemporaryDirectory(dir=directory, prefix="sqlite-inserts-") as scratch,
        closing(_open_events(Path(scratch) / "events.db")) as connection,
    ):
        started = time.perf_counter()
        deadline = started + seconds
        count = 0
        while time.perf_counter() < deadline:
            _insert(connection, events[count % len(events)])
            count += 1
        return count / (time.perf_counter() - started)
