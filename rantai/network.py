"""Local networks: ``rantai network init`` writes one, ``rantai node run`` runs one of its nodes,
``rantai node check`` and ``rantai node rebuild`` check and replace a node's database.

A network directory holds ``genesis.json``, ``keys/governance.pem`` (the one governance admin
of a development network, threshold 1) and one ``node-K/`` per validator with its key
(``validator.pem``, mode 0600), its SQLite database (``ledger.db``, created with the genesis
block unless a database URL template is given) and ``node.toml``::

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

A node that serves ``POST /epcis/capture`` also has a ``[capture]`` section (DESIGN.md §6): the
PEM of a registered clerk member whose key signs captured events (relative to the node
directory) and the bearer token callers authenticate with (at least 16 characters)::

    [capture]
    key = "capture-clerk.pem"
    token = "…"

An optional ``[limits]`` section sets the rate limits (``api.limits``; tokens a second and the
most saved up; a rate of 0 turns a limit off). The defaults::

    [limits]
    address_per_second = 1000  # a request costs one token, each event it submits one more
    address_burst = 10000
    key_per_second = 500       # each event or read a key signed
    key_burst = 10000
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import gc
import json
import logging
import os
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from api.app import CaptureSettings, RateLimits, create_app
from ledger.blocks import GenesisDocument, parse_genesis
from ledger.encoding import format_time
from ledger.errors import EncodingError, StorageError
from ledger.keys import key_id, public_key_bytes
from node.consensus import Timeouts
from node.keystore import generate_key, load_key, save_key
from node.runtime import LedgerNode, Peer
from node.store import IntegrityReport, Store, create_store_engine, migrate

__all__ = [
    "CaptureConfig",
    "NodeConfig",
    "check_database",
    "free_base_port",
    "init_network",
    "load_config",
    "rebuild_database",
    "run_node",
]

MIN_CAPTURE_TOKEN = 16
"""The shortest capture token accepted (a bearer token is only as good as it is long)."""


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    """The ``[capture]`` section: the capture key's PEM (resolved) and the callers' token."""

    key: Path
    token: str


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
    capture: CaptureConfig | None = None
    limits: RateLimits = field(default_factory=RateLimits)

    @property
    def url(self) -> str:
        """Where the node's API listens."""
        return f"http://{self.host}:{self.port}"


EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
"""Where Linux keeps the range it draws outgoing connections' source ports from."""

LOWEST_BASE_PORT = 10000


def _ephemeral_ports() -> tuple[int, int]:
    """The range of ports the kernel may hand an outgoing connection (Linux's default where
    unknown)."""
    try:
        first, last = (int(n) for n in EPHEMERAL_PORTS.read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return first, last


def free_base_port(count: int) -> int:
    """A base port with ``count`` consecutive free ports after it on 127.0.0.1 (for local
    networks of the benchmarks and tests).

    The ports lie outside the kernel's ephemeral range, below it or above it: a port that is
    free now but inside it may be taken as the source port of some outgoing connection
    (another node's, dialling its peers) before the node meant to listen on it binds.

    Raises:
        RuntimeError: no room outside the ephemeral range, or none free in 200 tries.
    """
    first, last = _ephemeral_ports()
    bases: list[int] = [
        *range(LOWEST_BASE_PORT, first - count + 1),
        *range(max(last + 1, LOWEST_BASE_PORT), 65536 - count + 1),
    ]
    if not bases:
        raise RuntimeError(f"no {count} ports outside the ephemeral range {first}-{last}")
    for _ in range(200):
        base = bases[int.from_bytes(os.urandom(4), "big") % len(bases)]
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                bound = socket.socket()
                sockets.append(bound)
                bound.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for bound in sockets:
                bound.close()
        return base
    raise RuntimeError("no free ports")


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
        if not database:
            _new_database(url, genesis)
    return genesis


def _new_database(url: str, genesis: GenesisDocument) -> None:
    """Create a node's database at the newest schema, holding the genesis block.

    Done here rather than at the node's first start so that the node's own long-running
    process never needs Alembic (``node.store.migrate``), which would stay in its memory.
    """
    store = Store.open(url)
    try:
        store.initialize(genesis)
    finally:
        store.close()


def _capture_config(directory: Path, raw: object) -> CaptureConfig | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise TypeError("[capture] must be a table")
    token = raw["token"]
    if not isinstance(token, str) or len(token.strip()) < MIN_CAPTURE_TOKEN or " " in token:
        raise ValueError(
            f"[capture] token must be a string of at least {MIN_CAPTURE_TOKEN} characters "
            "without spaces"
        )
    return CaptureConfig(key=(directory / str(raw["key"])).resolve(), token=token)


_LIMIT_FIELDS = {
    "address_per_second": "address_rate",
    "address_burst": "address_burst",
    "key_per_second": "key_rate",
    "key_burst": "key_burst",
}


def _limits_config(raw: object) -> RateLimits:
    if raw is None:
        return RateLimits()
    if not isinstance(raw, dict):
        raise TypeError("[limits] must be a table")
    unknown = sorted(set(raw) - set(_LIMIT_FIELDS))
    if unknown:
        raise ValueError(f"[limits] has unknown settings {', '.join(unknown)}")
    values = {}
    for name, value in raw.items():
        if type(value) not in (int, float):
            raise TypeError(f"[limits] {name} must be a number, got {value!r}")
        values[_LIMIT_FIELDS[name]] = float(value)
    return RateLimits(**values)


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
            capture=_capture_config(directory, raw.get("capture")),
            limits=_limits_config(raw.get("limits")),
        )
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as e:
        raise EncodingError(f"{directory / 'node.toml'}: {e}") from e


def _tune_garbage_collector() -> None:
    """Collect cyclic garbage less often than CPython's default (every 700 allocations).

    A node holds many long-lived small objects (state caches, the mempool, parsed blocks), so
    with the default thresholds the collector keeps walking them; the benchmark's 4-node
    network commits about a fifth more events per second with these settings. Rarer still
    (50,000 / 50 / 50) gained another 3 % but let cyclic garbage grow a node by 10 MiB.
    What was allocated while starting (modules, the genesis, the opened store) is frozen out
    of collection for good.
    """
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)


async def run_node(config: NodeConfig, *, timeouts: Timeouts | None = None) -> None:
    """Run one node until SIGINT or SIGTERM: open its store, serve its API, run consensus.

    The whole stored chain is checked first (``Store.check_integrity``): a node never serves
    from a damaged database.

    Raises:
        ChainError: the database is damaged (the error names the height and index); see
            :func:`rebuild_database`.
        StorageError: the database cannot be opened.
    """
    genesis = parse_genesis(config.genesis.read_bytes())
    store = Store.open(config.database, verify=True)
    store.initialize(genesis)
    node = LedgerNode(
        genesis, store, load_key(config.key), config.name, config.peers, timeouts=timeouts
    )
    capture = (
        None
        if config.capture is None
        else CaptureSettings(load_key(config.capture.key), config.capture.token)
    )
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(node, capture, config.limits),
            host=config.host,
            port=config.port,
            log_level="warning",
            access_log=False,
        )
    )
    _tune_garbage_collector()
    await node.start()
    logging.getLogger("rantai.node").info("%s serving %s", config.name, config.url)
    try:
        await server.serve()
    finally:
        await node.stop()
        store.close()


def check_database(config: NodeConfig) -> IntegrityReport:
    """Walk a node's whole database with ``Store.check_integrity`` (the node may be running).

    Raises:
        StorageError: the database cannot be opened, or its SQLite file does not exist.
    """
    _sqlite_file(config)  # a missing SQLite file is an error here, not a new database
    engine = create_store_engine(config.database)
    try:
        migrate(engine)
        return Store(engine).check_integrity()
    finally:
        engine.dispose()


def rebuild_database(config: NodeConfig) -> Path:
    """Move a node's damaged SQLite database aside and start a fresh one from the genesis.

    Started again, the node catches up from its peers: it fetches their certified blocks and
    checks every certificate and event, so it gets back everything a quorum committed.

    Returns:
        Where the damaged database now is: ``<file>.damaged-<UTC time>`` (its WAL beside it).

    Raises:
        StorageError: the database is not a SQLite file, there is none, or the node is still
            running (its port answers).
    """
    path = _sqlite_file(config)
    if path is None:
        raise StorageError(
            "rebuild moves a SQLite database file aside; for another database, create an "
            "empty one and point node.toml at it"
        )
    if _answers(config.host, config.port):
        raise StorageError(f"{config.name} is running ({config.url} answers): stop it first")
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):  # SQLite finds a WAL by the database's name
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(f"{aside}{suffix}")
    _new_database(config.database, parse_genesis(config.genesis.read_bytes()))
    return aside


def _sqlite_file(config: NodeConfig) -> Path | None:
    """The node's SQLite file (``None`` for another database).

    Raises:
        StorageError: the file does not exist.
    """
    try:
        url = make_url(config.database)
    except ArgumentError as e:
        raise StorageError(f"cannot use database {config.database!r}: {e}") from e
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    path = Path(str(url.database))
    if not path.exists():
        raise StorageError(f"there is no database at {path}")
    return path


def _answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def run(config: NodeConfig) -> None:
    """Blocking entry point for ``rantai node run`` (on uvloop where it is installed)."""
    try:
        import uvloop  # optional: not built for every platform
    except ImportError:
        asyncio.run(run_node(config))
    else:
        uvloop.run(run_node(config))
