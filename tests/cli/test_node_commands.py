"""``rantai node check`` and ``rantai node rebuild`` on a node directory (no node running), and
the databases ``rantai network init`` creates.

The node's database holds the sample network's chain; ``check`` walks it (exit 0, or 1 naming
the first damaged height and index), ``rebuild`` moves a damaged database aside and starts a
fresh one from the genesis document, and refuses while the node's port answers or when the
database is not a SQLite file. A node refusing to start from a damaged database is an
end-to-end test (``tests/e2e/test_faults.py``).
"""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from node.store import SCHEMA_REVISION, Store
from rantai import network
from rantai.cli import EXIT_FAULT, EXIT_USAGE, cli
from rantai.network import load_config
from rantai.samplechain import sample_network


@pytest.fixture
def node_dir(tmp_path: Path) -> Path:
    """A node directory whose SQLite database holds the genesis block and 6 blocks of 3 events."""
    net = sample_network()
    (tmp_path / "genesis.json").write_text(json.dumps(net.genesis.document))
    directory = tmp_path / "node-1"
    directory.mkdir()
    url = f"sqlite:///{directory / 'ledger.db'}"
    store = Store.open(url)
    store.initialize(net.genesis)
    for block in list(net.chain(6, 3))[1:]:
        store.append_block(block)
    store.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (directory / "node.toml").write_text(
        f'name = "node-1.kalbar-coop"\nhost = "127.0.0.1"\nport = {port}\n'
        f'key = "validator.pem"\ndatabase = {json.dumps(url)}\ngenesis = "../genesis.json"\n'
    )
    return directory


def damage(directory: Path) -> None:
    with contextlib.closing(sqlite3.connect(directory / "ledger.db")) as db, db:
        db.execute("DELETE FROM events WHERE idx = 10")


def test_check_passes_an_intact_database(node_dir: Path) -> None:
    result = CliRunner().invoke(cli, ["node", "check", str(node_dir)])
    assert result.exit_code == 0, result.output
    assert "OK: blocks 0..6 and 18 events intact" in result.output


def test_check_names_the_first_damaged_height_and_index(node_dir: Path) -> None:
    damage(node_dir)
    result = CliRunner().invoke(cli, ["node", "check", str(node_dir)])
    assert result.exit_code == EXIT_FAULT, result.output
    assert "FAULT: height 4, index 10: the event is missing" in result.output


def test_rebuild_keeps_the_damaged_database_and_starts_from_the_genesis(node_dir: Path) -> None:
    damage(node_dir)
    runner = CliRunner()

    result = runner.invoke(cli, ["node", "rebuild", str(node_dir)])

    assert result.exit_code == 0, result.output
    (aside,) = node_dir.glob("ledger.db.damaged-*")
    assert f"moved the damaged database to {aside}" in result.output
    with contextlib.closing(sqlite3.connect(aside)) as db:
        assert db.execute("SELECT count(*) FROM events").fetchone() == (17,)
    result = runner.invoke(cli, ["node", "check", str(node_dir)])
    assert result.exit_code == 0, result.output
    assert "OK: blocks 0..0 and 0 events intact" in result.output


def test_rebuild_refuses_while_the_node_answers(node_dir: Path) -> None:
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", load_config(node_dir).port))
        listening.listen()
        result = CliRunner().invoke(cli, ["node", "rebuild", str(node_dir)])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "stop it first" in result.output
    assert not list(node_dir.glob("ledger.db.damaged-*"))


def test_rebuild_refuses_a_database_that_is_not_a_sqlite_file(node_dir: Path) -> None:
    config = node_dir / "node.toml"
    url = "postgresql+psycopg://rantai@127.0.0.1:1/node1"
    config.write_text(
        "\n".join(
            f"database = {json.dumps(url)}" if line.startswith("database") else line
            for line in config.read_text().splitlines()
        )
    )
    result = CliRunner().invoke(cli, ["node", "rebuild", str(node_dir)])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "SQLite" in result.output


def test_local_network_ports_lie_outside_the_ephemeral_range(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A node's port must not be one the kernel may give an outgoing connection before the node
    binds it (CI once lost a node of seven to ``address already in use`` that way)."""
    ports = tmp_path / "ip_local_port_range"
    monkeypatch.setattr(network, "EPHEMERAL_PORTS", ports)
    ports.write_text("20100\t60999\n")
    for _ in range(50):
        base = network.free_base_port(7)
        assert base + 7 <= 20100 or base > 60999
        assert base >= network.LOWEST_BASE_PORT
    ports.write_text("1024\t65000\n")  # no room below: the ports lie above
    assert all(network.free_base_port(7) > 65000 for _ in range(20))
    ports.write_text("1024\t65535\n")
    with pytest.raises(RuntimeError, match="outside the ephemeral range"):
        network.free_base_port(7)


def test_a_new_network_s_databases_are_ready_for_their_nodes(tmp_path: Path) -> None:
    """``network init`` creates each node's SQLite database at the newest schema with the
    genesis block, so a node's own process never needs Alembic (about 10 MB it would keep)."""
    genesis = network.init_network(tmp_path, nodes=2, base_port=18_000)
    for k in (1, 2):
        with contextlib.closing(sqlite3.connect(tmp_path / f"node-{k}" / "ledger.db")) as db:
            assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [
                (SCHEMA_REVISION,)
            ]
        store = Store.open(load_config(tmp_path / f"node-{k}").database)
        try:
            assert store.genesis == genesis
            assert store.head().height == 0
        finally:
            store.close()
