"""The Alembic migrations create exactly the schema the models describe, on every backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, func, select

import node
from ledger.errors import StorageError
from node.models import Base, node_key
from node.store import SCHEMA_REVISION, Store, create_store_engine, migrate
from rantai.samplechain import sample_network
from tests._paths import REPO


def test_migrations_match_the_models(database_url: str) -> None:
    engine = create_store_engine(database_url)
    try:
        migrate(engine)
        migrate(engine)  # a second run is a no-op
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_the_schema_revision_is_alembics_head() -> None:
    assert ScriptDirectory.from_config(_config()).get_current_head() == SCHEMA_REVISION


def test_a_database_at_the_newest_revision_opens_without_alembic(database_url: str) -> None:
    """Alembic costs a node about 10 MB of memory for good; it is loaded only to migrate."""
    Store.open(database_url).close()
    opened = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from node.store import Store; Store.open(sys.argv[1]).close(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))",
            database_url,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert opened.stdout.strip() == "[]"


def test_a_database_from_a_newer_version_is_refused_clearly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    Store.open(url).close()
    engine = create_store_engine(url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0099_future'")
        with pytest.raises(StorageError, match=r"migration failed.*0099_future"):
            migrate(engine)
    finally:
        engine.dispose()


def _schema(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type='table'")
        return {name: sql for name, sql in rows}


def test_sqlite_keys_migrate_both_ways_keeping_every_row(database_url: str) -> None:
    """Migration 0005 rebuilds SQLite's per-event tables (D35) without losing or changing a
    row, and its downgrade restores the old layout; PostgreSQL is untouched."""
    net = sample_network()
    store = Store.open(database_url)
    store.initialize(net.genesis)
    for block in list(net.chain(5, 4, lineage_depth=3))[1:]:
        store.append_block(block)
    engine = store.engine
    counts = _row_counts(engine)
    head = store.head()
    _downgrade(engine, "0004_checkpoints")
    if engine.dialect.name == "sqlite":
        old = _schema(engine)
        assert "idx BIGINT NOT NULL" in old["events"]
        assert "WITHOUT ROWID" not in old["lot_step_lots"]
    assert _row_counts(engine) == counts
    store.close()
    store = Store.open(database_url)  # migrates to the newest revision again
    try:
        if store.engine.dialect.name == "sqlite":
            new = _schema(store.engine)
            assert '"key" INTEGER NOT NULL' in new["merkle_nodes"]
            assert "WITHOUT ROWID" in new["lot_step_lots"]
        assert _row_counts(store.engine) == counts
        assert store.head() == head
        assert store.check_integrity().fault is None
    finally:
        store.close()


def _node_keys(engine: Engine) -> dict[int, bytes]:
    with engine.connect() as connection:
        return dict(connection.exec_driver_sql('SELECT "key", hash FROM merkle_nodes').all())


def test_merkle_node_keys_migrate_both_ways(database_url: str) -> None:
    """Migration 0006 moves every Merkle node to its block's or the upper tree's key and back,
    its hash unchanged, on SQLite and PostgreSQL."""
    net = sample_network()
    store = Store.open(database_url)
    store.initialize(net.genesis)
    for block in list(net.chain(5, 40))[1:]:  # 200 leaves: levels 0 to 7
        store.append_block(block)
    size = store.head().tree_size
    nodes = [(level, index) for level in range(size.bit_length()) for index in range(size >> level)]
    new = _node_keys(store.engine)
    assert sorted(new) == sorted(node_key(level, index) for level, index in nodes)
    proofs = [store.inclusion_proof(index, size) for index in range(size)]
    _downgrade(store.engine, "0005_sqlite_keys")
    old = _node_keys(store.engine)
    assert old == {index << 6 | level: new[node_key(level, index)] for level, index in nodes}
    store.close()
    store = Store.open(database_url)
    try:
        assert _node_keys(store.engine) == new
        assert store.check_integrity().fault is None
        assert [store.inclusion_proof(index, size) for index in range(size)] == proofs
    finally:
        store.close()


def test_an_interrupted_sqlite_keys_migration_runs_again(tmp_path: Path) -> None:
    """pysqlite commits a ``CREATE TABLE`` before the migration's transaction opens, so an
    interrupted run of 0005 can leave its first copy behind; the next start still migrates."""
    url = f"sqlite:///{tmp_path / 'node.db'}"
    net = sample_network()
    store = Store.open(url)
    store.initialize(net.genesis)
    for block in list(net.chain(3, 4))[1:]:
        store.append_block(block)
    head = store.head()
    _downgrade(store.engine, "0004_checkpoints")
    with store.engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE _rebuild_events (idx INTEGER PRIMARY KEY)")
    store.close()
    store = Store.open(url)
    try:
        assert store.head() == head
        assert "_rebuild_events" not in _schema(store.engine)
        assert store.check_integrity().fault is None
    finally:
        store.close()


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(node.__file__).parent / "migrations"))
    return config


def _downgrade(engine: Engine, revision: str) -> None:
    config = _config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def _row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in Base.metadata.sorted_tables
        }
