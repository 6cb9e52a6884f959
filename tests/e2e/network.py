"""Real node processes on loopback for end-to-end tests: start, stop, kill -9, submit, export."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.events import sign_event
from ledger.keys import key_id, public_key_bytes
from node.httpsig import sign_request
from node.keystore import load_key
from rantai.network import free_base_port, init_network
from rantai.samplechain import derive_key
from tests._paths import REPO


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Wait until ``condition()`` holds, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (httpx.HTTPError, OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Network:
    """A local network of node processes under ``directory``."""

    directory: Path
    nodes: int
    base_port: int
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    serial: int = 0

    @classmethod
    def create(cls, directory: Path, nodes: int) -> Network:
        base = free_base_port(nodes)
        init_network(directory, nodes=nodes, base_port=base)
        return cls(directory, nodes, base)

    def url(self, k: int) -> str:
        return f"http://127.0.0.1:{self.base_port + k - 1}"

    def start(self, k: int, entry: Sequence[str] = ("rantai", "node", "run")) -> None:
        """Run ``python -m <entry> <node directory>`` (a test entry point may stand in for
        ``rantai node run``) and wait until the node serves."""
        log = (self.directory / f"node-{k}.log").open("ab")
        self.processes[k] = subprocess.Popen(
            [sys.executable, "-m", *entry, str(self.directory / f"node-{k}")],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        process = self.processes[k]

        def serving() -> bool:
            if process.poll() is not None:
                log_text = (self.directory / f"node-{k}.log").read_text(errors="replace")
                raise AssertionError(f"node {k} exited ({process.returncode}):\n{log_text[-2000:]}")
            return httpx.get(f"{self.url(k)}/healthz").status_code == 200

        wait_for(serving, 30, f"node {k}")

    def start_all(self) -> None:
        for k in range(1, self.nodes + 1):
            self.start(k)

    def kill(self, k: int) -> None:
        """``kill -9``: no chance to clean up."""
        process = self.processes.pop(k)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self, k: int) -> None:
        """SIGTERM: a clean stop."""
        process = self.processes.pop(k)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def stop_all(self) -> None:
        for k in list(self.processes):
            self.stop(k)

    def route_peer(self, k: int, j: int, url: str) -> None:
        """Make node ``k`` reach node ``j`` at ``url`` (a proxy, say) from its next start."""
        path = self.directory / f"node-{k}" / "node.toml"
        text = path.read_text()
        old = f"url = {json.dumps(self.url(j))}"
        assert text.count(old) == 1, f"node {k} does not list node {j} as a peer"
        path.write_text(text.replace(old, f"url = {json.dumps(url)}"))

    def validator(self, k: int) -> Ed25519PrivateKey:
        """Node ``k``'s validator key: it may read every route of every node."""
        return load_key(self.directory / f"node-{k}" / "validator.pem")

    def get(
        self,
        k: int,
        path: str,
        *,
        key: Ed25519PrivateKey | None = None,
        timeout: float = 10,
        **params: Any,
    ) -> httpx.Response:
        """``GET path`` from node ``k``, signed (RFC 9421) by ``key`` (default: node k's
        validator key); ``path`` may carry its query."""
        signer = key or self.validator(k)
        request = httpx.Request("GET", f"{self.url(k)}{path}", params=params or None)
        target = request.url.raw_path.decode("ascii")
        signer_id = key_id(public_key_bytes(signer))
        request.headers.update(
            sign_request("GET", target, b"", signer, signer_id, int(time.time()))
        )
        with httpx.Client(timeout=timeout) as client:
            return client.send(request)

    def status(self, k: int) -> dict[str, Any]:
        return self.get(k, "/v1/status", timeout=5).json()  # type: ignore[no-any-return]

    def height(self, k: int) -> int:
        return int(self.status(k)["height"])

    def export(self, k: int, to: int) -> bytes:
        return self.get(k, "/v1/export", timeout=30, to=to).content

    # --- clients -------------------------------------------------------------------------

    def key(self, label: str) -> Ed25519PrivateKey:
        return derive_key(b"e2e-members", label)

    def event(
        self, kind: str, payload: dict[str, Any], signers: list[Ed25519PrivateKey]
    ) -> dict[str, Any]:
        self.serial += 1
        body = {
            "v": 1,
            "network": "kalbar-coop",
            "type": kind,
            "nonce": f"e2e-{self.serial}-{os.getpid()}",
            "created_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "payload": payload,
        }
        return sign_event(body, signers).to_json()

    def bootstrap(self, k: int = 1) -> None:
        """Register a cooperative and a producer (committed before returning)."""
        governance = load_key(self.directory / "keys" / "governance.pem")
        admin, producer = self.key("admin"), self.key("producer")
        batch = [
            self.event(
                "org.register",
                {
                    "org_id": "koperasi-kopi",
                    "name": "Koperasi Kopi Sambas",
                    "kind": "cooperative",
                    "admins": [public_key_bytes(admin).hex()],
                },
                [governance],
            ),
            self.event(
                "member.register",
                {
                    "member_id": "koperasi-kopi/siti",
                    "role": "producer",
                    "public_keys": [public_key_bytes(producer).hex()],
                    "profile_hash": hashlib.sha256(b"siti").hexdigest(),
                },
                [admin],
            ),
        ]
        response = self.submit(k, batch)
        assert response.status_code == 200, response.text

    def harvests(self, count: int) -> list[dict[str, Any]]:
        producer = self.key("producer")
        return [
            self.event(
                "lot.create",
                {
                    "lot_id": f"E2E-{self.serial}-{i}",
                    "commodity": "coffee",
                    "quantity": "12.5",
                    "uom": "kg",
                    "producer": "koperasi-kopi/siti",
                    "harvested_on": "2026-11-20",
                },
                [producer],
            )
            for i in range(count)
        ]

    def submit(self, k: int, events: list[dict[str, Any]], timeout: float = 20) -> httpx.Response:
        return httpx.post(
            f"{self.url(k)}/v1/events",
            params={"wait": "commit", "timeout": timeout},
            json={"events": events},
            timeout=timeout + 10,
        )
