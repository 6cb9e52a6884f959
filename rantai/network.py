"""Local networks: ``rantai network init`` writes one, ``rantai node run`` runs one of its nodes.

A network directory holds ``genesis.json``, ``keys/governance.pem`` (the one governance admin
of a development network, threshold 1) and one ``node-K/`` per validator with its key
(``validator.pem``, mode 0600) and ``node.toml``::

    name = "node-1.kalbar-coop"
    host = "127.0.0.1"
    port = 8101
    key = "validator.pem"
    database = "sqlite:////path/to/node-1/ledger.db"
    genesis = "../genesis.json"

    [[peers]]
    name = "node-2.kalbar-coop"
    url = "http://127.0.0.1:8102"
    key_id = "…"
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from api.app import create_app
from ledger.blocks import GenesisDocument, parse_genesis
from ledger.encoding import format_time
from ledger.errors import EncodingError, StorageError
from ledger.keys import key_id, public_key_bytes
from node.consensus import Timeouts
from node.keystore import generate_key, load_key, save_key
from node.runtime import LedgerNode, Peer
from node.store import Store

__all__ = ["NodeConfig", "init_network", "load_config", "run_node"]


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """One node's configuration (``node.toml``), paths resolved."""

    directory: Path
    name: str
    host: str
    port: int
    key: Path
    database: str
    genesis: Path
    peers: tuple[Peer, ...]

    @property
    def url(self) -> str:
        """Where the node's API listens."""
        return f"http://{self.host}:{self.port}"


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def init_network(
    directory: Path,
    *,
    nodes: int,
    base_port: int,
    network: str = "kalbar-coop",
    database: str | None = None,
    host: str = "127.0.0.1",
) -> GenesisDocument:
    """Write a new local network (see the module docstring).

    Args:
        directory: where (created; must not hold a network already).
        nodes: how many validators.
        base_port: node K listens on ``base_port + K - 1``.
        network: the network id.
        database: a database URL template with ``{node}`` (e.g. a PostgreSQL URL); SQLite
            files in each node's directory when omitted.
        host: the address nodes listen on and reach each other at.

    Raises:
        StorageError: the directory already holds a network.
    """
    if (directory / "genesis.json").exists():
        raise StorageError(f"{directory} already holds a network (genesis.json exists)")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "keys").mkdir(exist_ok=True)
    governance = generate_key()
    save_key(governance, directory / "keys" / "governance.pem")
    keys = [generate_key() for _ in range(nodes)]
    names = [f"node-{k}.{network}" for k in range(1, nodes + 1)]
    document = {
        "v": 1,
        "network": network,
        "origin": f"rantai.local/{network}",
        "created_at": format_time(_dt.datetime.now(_dt.UTC).replace(microsecond=0)),
        "validators": [
            {"name": name, "public_key": public_key_bytes(key).hex()}
            for name, key in zip(names, keys, strict=True)
        ],
        "governance": {"admins": [public_key_bytes(governance).hex()], "threshold": 1},
    }
    genesis = parse_genesis(document)
    (directory / "genesis.json").write_text(json.dumps(document, indent=2) + "\n")
    for k, (name, key) in enumerate(zip(names, keys, strict=True), start=1):
        node_dir = directory / f"node-{k}"
        node_dir.mkdir(exist_ok=True)
        save_key(key, node_dir / "validator.pem")
        url = (
            database.format(node=k)
            if database
            else f"sqlite:///{(node_dir / 'ledger.db').resolve()}"
        )
        lines = [
            f"name = {_toml_string(name)}",
            f"host = {_toml_string(host)}",
            f"port = {base_port + k - 1}",
            'key = "validator.pem"',
            f"database = {_toml_string(url)}",
            'genesis = "../genesis.json"',
        ]
        for j, (peer_name, peer_key) in enumerate(zip(names, keys, strict=True), start=1):
            if j == k:
                continue
            lines += [
                "",
                "[[peers]]",
                f"name = {_toml_string(peer_name)}",
                f"url = {_toml_string(f'http://{host}:{base_port + j - 1}')}",
                f"key_id = {_toml_string(key_id(public_key_bytes(peer_key)))}",
            ]
        (node_dir / "node.toml").write_text("\n".join(lines) + "\n")
    return genesis


def load_config(directory: Path) -> NodeConfig:
    """Read ``directory/node.toml``.

    Raises:
        EncodingError: the file is missing a field or malformed.
    """
    try:
        raw = tomllib.loads((directory / "node.toml").read_text())
        return NodeConfig(
            directory=directory,
            name=str(raw["name"]),
            host=str(raw["host"]),
            port=int(raw["port"]),
            key=(directory / str(raw["key"])).resolve(),
            database=str(raw["database"]),
            genesis=(directory / str(raw["genesis"])).resolve(),
            peers=tuple(
                Peer(str(p["name"]), str(p["url"]), str(p["key_id"])) for p in raw.get("peers", [])
            ),
        )
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
        raise EncodingError(f"{directory / 'node.toml'}: {e}") from e


async def run_node(config: NodeConfig, *, timeouts: Timeouts | None = None) -> None:
    """Run one node until SIGINT or SIGTERM: open its store, serve its API, run consensus."""
    genesis = parse_genesis(config.genesis.read_bytes())
    store = Store.open(config.database)
    store.initialize(genesis)
    node = LedgerNode(
        genesis, store, load_key(config.key), config.name, config.peers, timeouts=timeouts
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(node),
            host=config.host,
            port=config.port,
            log_level="warning",
            access_log=False,
        )
    )
    await node.start()
    logging.getLogger("rantai.node").info("%s serving %s", config.name, config.url)
    try:
        await server.serve()
    finally:
        await node.stop()
        store.close()


def run(config: NodeConfig) -> None:
    """Blocking entry point for ``rantai node run``."""
    asyncio.run(run_node(config))
