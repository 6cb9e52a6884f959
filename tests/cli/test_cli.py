"""The ``rantai`` command line: keygen, verify (including tampered exports) and the demo."""

from __future__ import annotations

import importlib.metadata
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger.blocks import export_lines
from ledger.keys import key_id, private_key_from_pem, public_key_bytes
from rantai.cli import EXIT_FAULT, EXIT_USAGE, cli
from rantai.samplechain import sample_network


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    net = sample_network(4)
    directory = tmp_path_factory.mktemp("export")
    path = directory / "export.ndjson"
    path.write_bytes(b"".join(export_lines(net.genesis, net.chain(20, 5))))
    genesis = directory / "genesis.json"
    genesis.write_text(json.dumps(net.genesis.document))
    return path, genesis


@pytest.mark.parametrize(
    "command",
    [
        ["keygen"],
        ["verify"],
        ["demo"],
        ["state", "check"],
        ["state", "rebuild"],
        ["network", "init"],
        ["node", "run"],
        ["node", "check"],
        ["node", "rebuild"],
        ["submit"],
        ["trace"],
        ["export"],
        ["checkpoint"],
        ["proof"],
        ["audit", "watch"],
        ["epcis", "capture"],
    ],
    ids=" ".join,
)
def test_every_command_explains_itself_with_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert f"rantai {command[0]}" in result.output


def test_keygen_writes_a_private_key_readable_by_its_owner_only(tmp_path: Path) -> None:
    out = tmp_path / "siti.pem"
    result = CliRunner().invoke(cli, ["keygen", str(out)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    public = public_key_bytes(private_key_from_pem(out.read_bytes()))
    assert f"public_key {public.hex()}" in result.output
    assert f"key_id     {key_id(public)}" in result.output


def test_keygen_refuses_to_overwrite_a_key(tmp_path: Path) -> None:
    out = tmp_path / "siti.pem"
    runner = CliRunner()
    assert runner.invoke(cli, ["keygen", str(out)]).exit_code == 0
    before = out.read_bytes()
    result = runner.invoke(cli, ["keygen", str(out)])
    assert result.exit_code == EXIT_USAGE
    assert "refusing to overwrite" in result.output
    assert out.read_bytes() == before
    assert runner.invoke(cli, ["keygen", "--force", str(out)]).exit_code == 0
    assert out.read_bytes() != before


@pytest.mark.parametrize("rules", ["--rules", "--no-rules"])
def test_verify_accepts_an_intact_export(export: tuple[Path, Path], rules: str) -> None:
    path, genesis = export
    result = CliRunner().invoke(
        cli, ["verify", str(path), "--genesis", str(genesis), "--quiet", "--workers", "1", rules]
    )
    assert result.exit_code == 0, result.output
    assert "OK: chain intact" in result.output
    assert "height     20 (21 blocks)" in result.output


def test_verify_names_the_tampered_event(export: tuple[Path, Path], tmp_path: Path) -> None:
    path, genesis = export
    lines = path.read_bytes().splitlines(keepends=True)
    block = json.loads(lines[11])
    block["events"][3]["body"]["payload"]["quantity"] = "99.5"
    lines[11] = json.dumps(block).encode() + b"\n"
    tampered = tmp_path / "tampered.ndjson"
    tampered.write_bytes(b"".join(lines))
    result = CliRunner().invoke(
        cli, ["verify", str(tampered), "--genesis", str(genesis), "-q", "--workers", "2"]
    )
    assert result.exit_code == EXIT_FAULT
    assert "FAULT: height 10, index 48" in result.output
    assert "does not verify" in result.output


def test_verify_refuses_another_networks_genesis(export: tuple[Path, Path], tmp_path: Path) -> None:
    path, _ = export
    other = tmp_path / "other.json"
    other.write_text(json.dumps(sample_network(4, seed=b"other").genesis.document))
    result = CliRunner().invoke(cli, ["verify", str(path), "--genesis", str(other), "-q"])
    assert result.exit_code == EXIT_FAULT
    assert "not the trusted one" in result.output


def test_verify_reports_unusable_input_with_exit_code_2(tmp_path: Path) -> None:
    bad_genesis = tmp_path / "genesis.json"
    bad_genesis.write_text("{}")
    export = tmp_path / "export.ndjson"
    export.write_text("")
    result = CliRunner().invoke(cli, ["verify", str(export), "--genesis", str(bad_genesis)])
    assert result.exit_code == EXIT_USAGE
    assert "not a valid genesis document" in result.output
    missing = CliRunner().invoke(cli, ["verify", str(tmp_path / "missing.ndjson")])
    assert missing.exit_code == EXIT_USAGE


def test_demo_builds_exports_and_proves(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rantai", "demo", "--in-process", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "verified" in result.stdout
    assert "proof verifies against the checkpoint" in result.stdout
    assert "consistency proof verifies" in result.stdout
    verify = CliRunner().invoke(
        cli,
        [
            "verify",
            str(tmp_path / "export.ndjson"),
            "--genesis",
            str(tmp_path / "genesis.json"),
            "-q",
        ],
    )
    assert verify.exit_code == 0, verify.output


def test_state_check_catches_a_tampered_state_and_rebuild_repairs_it(tmp_path: Path) -> None:
    demo = subprocess.run(
        [sys.executable, "-m", "rantai", "demo", "--in-process", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr
    url = f"sqlite:///{tmp_path / 'node-1.db'}"
    runner = CliRunner()
    assert runner.invoke(cli, ["state", "check", "--db", url]).exit_code == 0
    with sqlite3.connect(tmp_path / "node-1.db") as connection:
        connection.execute("UPDATE lots SET owner = 'koperasi-kopi' WHERE lot_id = 'LIN-FINAL'")
    tampered = runner.invoke(cli, ["state", "check", "--db", url])
    assert tampered.exit_code == EXIT_FAULT
    assert "not what the log implies" in tampered.output
    assert runner.invoke(cli, ["state", "rebuild", "--db", url]).exit_code == 0
    assert runner.invoke(cli, ["state", "check", "--db", url]).exit_code == 0


def test_state_check_on_a_missing_ledger(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = CliRunner().invoke(cli, ["state", "check", "--db", url])
    assert result.exit_code == EXIT_USAGE
    assert "no genesis" in result.output


def test_the_console_script_imports_the_command_line_only_when_it_runs() -> None:
    # multiprocessing imports the console script again in each process it spawns from it.
    (script,) = importlib.metadata.entry_points(group="console_scripts", name="rantai")
    assert script.value == "rantai:main"
    code = "import sys, rantai; print('rantai.cli' in sys.modules, callable(rantai.main))"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.split() == ["False", "True"]
