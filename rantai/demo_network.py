"""``rantai demo``: a local network of validator processes with a West Kalimantan data set.

Two cooperatives (rubber in Sanggau, coffee in Kayong Utara), a processor, an EU buyer and a
certifier; producer members with plots, harvests recorded by clerks, deliveries with a loss at
receipt, a merge, a split, processing into block rubber and green coffee, a certification, and
shipments received by the buyer. Every event is signed here with the member's own key (saved
under ``DIR/keys/``) and submitted over HTTP to the nodes, which decide on it by consensus. The
certifier's auditor (``keys/lsk-kalbar__dewi.pem``) signs the requests that read the whole
chain; the buyer's key (``keys/eu-buyer__anna.pem``) reads what its lots came from.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console

from ledger.errors import StorageError
from ledger.keys import public_key_bytes
from node.keystore import generate_key, load_key, save_key
from rantai.client import Client, build_event
from rantai.network import init_network

__all__ = ["AUDITOR", "BUYER", "BUYER_LOT", "member_key_path", "run_network_demo"]

BUYER_LOT = "RB-SIR20-0001"
"""The block rubber the EU buyer received (trace it back to the producers)."""
AUDITOR = "lsk-kalbar/dewi"
"""The certifier's auditor: its key reads everything (``rantai export --key``)."""
BUYER = "eu-buyer/anna"
"""The EU buyer's member: its key reads the lots it bought and what they came from."""
_MARKER = ".rantai-demo"


def member_key_path(keys: Path, member: str) -> Path:
    """Where the demo keeps a member's key (``keys/<org>__<local>.pem``)."""
    return keys / (member.replace("/", "__") + ".pem")


class _Members:
    """The demo's member keys, generated once and kept as PEM files under ``keys/``."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._keys: dict[str, Ed25519PrivateKey] = {}

    def __getitem__(self, member: str) -> Ed25519PrivateKey:
        if member not in self._keys:
            path = member_key_path(self._directory, member)
            if path.exists():
                self._keys[member] = load_key(path)
            else:
                key = generate_key()
                save_key(key, path)
                self._keys[member] = key
        return self._keys[member]

    def public(self, member: str) -> str:
        return public_key_bytes(self[member]).hex()


def _events(network: str, members: _Members, governance: Ed25519PrivateKey) -> Iterator[list[Any]]:
    """The data set, batch by batch (each batch only needs the ones before it committed)."""

    def event(kind: str, payload: dict[str, Any], *signers: str) -> Any:
        keys = [governance if s == "governance" else members[s] for s in signers]
        return build_event(network, kind, payload, keys)

    orgs = [
        ("koperasi-karet", "Koperasi Produsen Karet Sanggau Jaya", "cooperative"),
        ("koperasi-kopi", "Koperasi Kopi Liberika Kayong Utara", "cooperative"),
        ("pengolah-kalbar", "PT Pengolahan Hasil Bumi Kalbar", "processor"),
        ("eu-buyer", "Hamburg Rubber & Coffee GmbH", "buyer"),
        ("lsk-kalbar", "Lembaga Sertifikasi Kalimantan Barat", "auditor"),
    ]
    yield [
        event(
            "org.register",
            {"org_id": o, "name": n, "kind": k, "admins": [members.public(f"{o}/admin-1")]},
            "governance",
        )
        for o, n, k in orgs
    ]
    people = [
        ("koperasi-karet/clerk-1", "clerk"),
        ("koperasi-karet/budi", "producer"),
        ("koperasi-karet/ani", "producer"),
        ("koperasi-karet/yohanes", "producer"),
        ("koperasi-kopi/clerk-1", "clerk"),
        ("koperasi-kopi/siti", "producer"),
        ("koperasi-kopi/markus", "producer"),
        ("pengolah-kalbar/clerk-1", "clerk"),
        ("eu-buyer/anna", "buyer"),
        ("lsk-kalbar/dewi", "auditor"),
    ]
    yield [
        event(
            "member.register",
            {
                "member_id": m,
                "role": role,
                "public_keys": [members.public(m)],
                "profile_hash": hashlib.sha256(f"profile+salt:{m}".encode()).hexdigest(),
            },
            f"{m.split('/')[0]}/admin-1",
        )
        for m, role in people
    ]
    ring = [  # 6.2 ha of rubber garden near Sanggau
        [110.6101234, 0.0901234],
        [110.6123234, 0.0901234],
        [110.6123234, 0.0929834],
        [110.6101234, 0.0929834],
        [110.6101234, 0.0901234],
    ]
    plots = [
        ("PLT-BUDI-01", "koperasi-karet/budi", "rubber", "2.5", [110.5912345, 0.1234567]),
        ("PLT-ANI-01", "koperasi-karet/ani", "rubber", "6.2", None),
        ("PLT-YOH-01", "koperasi-karet/yohanes", "rubber", "3.1", [110.6398712, 0.0567321]),
        ("PLT-SITI-01", "koperasi-kopi/siti", "coffee", "1.8", [109.9876543, -1.0123456]),
        ("PLT-MARKUS-01", "koperasi-kopi/markus", "coffee", "2.2", [110.0213457, -1.0456789]),
    ]
    yield [
        event(
            "plot.register",
            {
                "plot_id": p,
                "member_id": m,
                "commodity": c,
                "area_ha": a,
                "geometry": {"type": "Point", "coordinates": xy}
                if xy
                else {"type": "Polygon", "coordinates": [ring]},
            },
            f"{m.split('/')[0]}/clerk-1",
        )
        for p, m, c, a, xy in plots
    ]
    harvests = [
        ("RB-BUDI-2611", "koperasi-karet/budi", "rubber", "480", "PLT-BUDI-01", "2026-11-24"),
        ("RB-ANI-2611", "koperasi-karet/ani", "rubber", "350", "PLT-ANI-01", "2026-11-25"),
        ("RB-YOH-2611", "koperasi-karet/yohanes", "rubber", "620", "PLT-YOH-01", "2026-11-25"),
        ("KP-SITI-2611", "koperasi-kopi/siti", "coffee", "900", "PLT-SITI-01", "2026-11-22"),
        ("KP-MARKUS-2611", "koperasi-kopi/markus", "coffee", "640", "PLT-MARKUS-01", "2026-11-23"),
    ]
    yield [  # recorded by the cooperatives' clerks: the producers have no phone
        event(
            "lot.create",
            {
                "lot_id": lot,
                "commodity": c,
                "quantity": q,
                "uom": "kg",
                "producer": m,
                "plot_id": p,
                "harvested_on": d,
            },
            f"{m.split('/')[0]}/clerk-1",
        )
        for lot, m, c, q, p, d in harvests
    ]
    yield [
        event(
            "lot.ship",
            {"lot_id": lot, "shipment_id": f"DLV-{lot}", "to": m.split("/")[0]},
            f"{m.split('/')[0]}/clerk-1",
        )
        for lot, m, *_ in harvests
    ]
    received = {"RB-YOH-2611": "612.5"}  # 7.5 kg lost on the way to the collection point
    yield [
        event(
            "lot.receive",
            {
                "lot_id": lot,
                "shipment_id": f"DLV-{lot}",
                "quantity_received": received.get(lot, q),
            },
            f"{m.split('/')[0]}/clerk-1",
        )
        for lot, m, _, q, *_ in harvests
    ]
    yield [
        event(
            "lot.merge",
            {"inputs": ["RB-BUDI-2611", "RB-ANI-2611", "RB-YOH-2611"], "lot_id": "RB-KARET-0001"},
            "koperasi-karet/clerk-1",
        ),
        event(
            "lot.merge",
            {"inputs": ["KP-SITI-2611", "KP-MARKUS-2611"], "lot_id": "KP-KOPI-0001"},
            "koperasi-kopi/clerk-1",
        ),
    ]
    yield [
        event(
            "lot.split",
            {"lot_id": "RB-KARET-0001", "outputs": [{"lot_id": "RB-EXP-0001", "quantity": "1000"}]},
            "koperasi-karet/clerk-1",
        ),
        event(
            "lot.transform",
            {
                "inputs": [{"lot_id": "KP-KOPI-0001", "quantity": "1540"}],
                "outputs": [
                    {
                        "lot_id": "KP-GREEN-0001",
                        "commodity": "green_coffee",
                        "quantity": "290",
                        "uom": "kg",
                    }
                ],
                "process": "pulping, drying and hulling of liberica cherries",
            },
            "koperasi-kopi/clerk-1",
        ),
    ]
    yield [
        event(
            "lot.ship",
            {"lot_id": "RB-EXP-0001", "shipment_id": "SHP-PROC-0001", "to": "pengolah-kalbar"},
            "koperasi-karet/clerk-1",
        ),
        event(
            "lot.certify",
            {
                "lot_id": "KP-GREEN-0001",
                "scheme": "EUDR due diligence (deforestation-free after 2020-12-31)",
                "certificate": "LSK-EUDR-2026-0117",
                "valid_until": "2027-11-30",
            },
            "lsk-kalbar/dewi",
        ),
    ]
    yield [
        event(
            "lot.receive",
            {"lot_id": "RB-EXP-0001", "shipment_id": "SHP-PROC-0001", "quantity_received": "1000"},
            "pengolah-kalbar/clerk-1",
        )
    ]
    yield [
        event(
            "lot.transform",
            {
                "inputs": [{"lot_id": "RB-EXP-0001", "quantity": "1000"}],
                "outputs": [
                    {
                        "lot_id": BUYER_LOT,
                        "commodity": "block_rubber",
                        "quantity": "620",
                        "uom": "kg",
                    }
                ],
                "process": "SIR 20 crumb rubber milling",
            },
            "pengolah-kalbar/clerk-1",
        )
    ]
    yield [
        event(
            "lot.ship",
            {"lot_id": BUYER_LOT, "shipment_id": "SHP-EU-0001", "to": "eu-buyer"},
            "pengolah-kalbar/clerk-1",
        ),
        event(
            "lot.ship",
            {"lot_id": "KP-GREEN-0001", "shipment_id": "SHP-EU-0002", "to": "eu-buyer"},
            "koperasi-kopi/clerk-1",
        ),
    ]
    yield [
        event(
            "lot.receive",
            {"lot_id": lot, "shipment_id": shipment, "quantity_received": q},
            "eu-buyer/anna",
        )
        for lot, shipment, q in (
            (BUYER_LOT, "SHP-EU-0001", "620"),
            ("KP-GREEN-0001", "SHP-EU-0002", "288.5"),
        )
    ]


def _prepare(directory: Path) -> None:
    if directory.exists() and any(directory.iterdir()):
        if not (directory / _MARKER).exists():
            raise StorageError(
                f"{directory} is not empty and not a previous demo; choose another --dir"
            )
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / _MARKER).write_text("made by rantai demo; removed by the next one\n")


def _wait_healthy(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise StorageError(f"the node at {url} did not start (see its log)")


def start_network_demo(
    directory: Path, *, nodes: int, base_port: int, console: Console
) -> list[subprocess.Popen[bytes]]:
    """Create, start and load the demo network; returns the node processes (still running)."""
    _prepare(directory)
    genesis = init_network(directory, nodes=nodes, base_port=base_port)
    processes = []
    for k in range(1, nodes + 1):
        log = (directory / f"node-{k}" / "node.log").open("ab")
        processes.append(
            subprocess.Popen(  # noqa: S603 - our own interpreter and command
                [sys.executable, "-m", "rantai", "node", "run", str(directory / f"node-{k}")],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    urls = [f"http://127.0.0.1:{base_port + k}" for k in range(nodes)]
    try:
        for url in urls:
            _wait_healthy(url, time.monotonic() + 60)
        members = _Members(directory / "keys")
        governance = load_key(directory / "keys" / "governance.pem")
        clients = [Client(url) for url in urls]
        for number, batch in enumerate(_events(genesis.network, members, governance)):
            clients[number % nodes].submit(batch, wait=True)
        for client in clients:
            client.close()
    except BaseException:
        stop_network_demo(processes)
        raise
    console.print(f"[bold green]network[/] {genesis.network}: {nodes} validators, data loaded")
    return processes


def stop_network_demo(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop the node processes cleanly (SIGTERM, then wait)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def run_network_demo(directory: Path, *, nodes: int, base_port: int) -> None:
    """The main job on a fresh machine: start the demo network, print where to look, wait."""
    console = Console(soft_wrap=True)  # commands stay on one line, to copy and paste
    processes = start_network_demo(directory, nodes=nodes, base_port=base_port, console=console)
    first = f"http://127.0.0.1:{base_port}"
    keys, genesis = directory / "keys", directory / "genesis.json"
    with contextlib.closing(Client(first)) as client:
        harvest = client.trace(BUYER_LOT)["steps"][0]["event_id"]
    console.print("\n[bold]Nodes[/] (checkpoints, proofs and traces are public; other reads")
    console.print("are signed with a member key: rantai … --key KEY.pem)")
    for k in range(nodes):
        console.print(f"  node-{k + 1}  http://127.0.0.1:{base_port + k}/healthz")
    console.print("\n[bold]A buyer traces the block rubber back to the producers[/]")
    console.print(f"  curl -s {first}/v1/lots/{BUYER_LOT}/trace | python3 -m json.tool")
    console.print(f"  .venv/bin/rantai trace {BUYER_LOT} --node {first}")
    console.print("\n[bold]… and proves a harvest it came from, without trusting the node[/]")
    console.print(
        f"  .venv/bin/rantai proof {harvest} --node {first} --genesis {genesis} "
        f"--key {member_key_path(keys, BUYER)}"
    )
    console.print("\n[bold]An auditor exports the whole chain and verifies it offline[/]")
    console.print(
        f"  .venv/bin/rantai export {directory}/export.ndjson --node {first} "
        f"--key {member_key_path(keys, AUDITOR)}"
    )
    console.print(f"  .venv/bin/rantai verify {directory}/export.ndjson --genesis {genesis}")
    console.print(f"  .venv/bin/rantai checkpoint --node {first} --genesis {genesis}")
    console.print(f"\nMember keys: {keys}/   Logs: {directory}/node-K/node.log")
    console.print("[dim]Ctrl-C stops the network.[/]")
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
        console.print("[red]a node stopped; see its log[/]")
    except KeyboardInterrupt:
        console.print("\nstopping…")
    finally:
        stop_network_demo(processes)
