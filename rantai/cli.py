"""The ``rantai`` command line (DESIGN.md §7).

Exit codes: 0 success; 1 the thing checked is not intact (a chain fault, a failed proof);
2 bad usage or unreadable input (a missing file, a malformed genesis document); 3 an internal
error (a bug: please report it with the traceback).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TimeRemainingColumn

from ledger.blocks import GenesisDocument, parse_genesis
from ledger.errors import ChainError, LedgerError
from ledger.keys import key_id, public_key_bytes
from ledger.verifier import check_export
from node.keystore import generate_key, save_key
from node.ledger_state import check_state, rebuild_state
from node.store import Store

__all__ = ["main"]

EXIT_FAULT = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
MAX_EXPORT_LINE = 256 * 1024 * 1024
"""The longest export line (one block) ``rantai verify`` reads."""

console = Console(stderr=True)


class InputProblem(click.ClickException):
    """Unusable input (a missing or malformed file): exit code 2."""

    exit_code = EXIT_USAGE


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rantai")
def cli() -> None:
    """Rantai: a permissioned, verifiable supply-chain ledger for cooperatives."""


def main() -> None:
    """The console script: run the command line, turning a crash into exit code 3."""
    try:
        cli(standalone_mode=True)
    except Exception:
        console.print_exception()
        console.print("[red]internal error[/]: this is a bug in rantai; please report it")
        sys.exit(EXIT_INTERNAL)


@cli.command()
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
def keygen(out: Path, force: bool) -> None:
    """Write a new Ed25519 member key to OUT (PEM PKCS#8, mode 0600).

    Prints the public key and key id, which an organisation admin registers.

    \b
    Example:
      rantai keygen keys/siti.pem
    """
    key = generate_key()
    try:
        save_key(key, out, overwrite=force)
    except LedgerError as e:
        raise InputProblem(str(e)) from e
    public = public_key_bytes(key)
    click.echo(f"public_key {public.hex()}")
    click.echo(f"key_id     {key_id(public)}")


@contextmanager
def _signature_pool(workers: int) -> Iterator[Executor | None]:
    if workers <= 1:
        yield None
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield pool


def _read_lines(
    handle: BinaryIO, progress: Progress | None, task: TaskID | None
) -> Iterator[bytes]:
    """The export's lines; one longer than :data:`MAX_EXPORT_LINE` is refused unread."""
    number = 0
    while line := handle.readline(MAX_EXPORT_LINE + 1):
        number += 1
        if len(line) > MAX_EXPORT_LINE:
            raise ChainError(f"line {number} of the export is longer than {MAX_EXPORT_LINE} bytes")
        if progress is not None and task is not None:
            progress.advance(task, len(line))
        yield line


def _load_genesis(path: Path | None) -> GenesisDocument | None:
    if path is None:
        return None
    try:
        return parse_genesis(path.read_bytes())
    except OSError as e:
        raise InputProblem(f"cannot read {path}: {e}") from e
    except LedgerError as e:
        raise InputProblem(f"{path} is not a valid genesis document: {e}") from e


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--genesis",
    "genesis_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The genesis.json you trust; the export's first line must be identical.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=lambda: os.cpu_count() or 1,
    show_default="all cores",
    help="Processes that check signatures.",
)
@click.option(
    "--rules/--no-rules",
    default=True,
    show_default=True,
    help="Replay the supply-chain rules too (who may sign what, quantities, double spends). "
    "--no-rules checks structure and signatures only, in constant memory.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def verify(file: Path, genesis_path: Path | None, workers: int, rules: bool, quiet: bool) -> None:
    """Audit an NDJSON export offline: links, roots, certificates, signatures and rules.

    Checks every block hash and link, recomputes every Merkle root and tree size, checks every
    commit certificate against the genesis validators and every event signature against the
    keys registered at that point, and (unless --no-rules) replays every event through the
    supply-chain rules. Exits 0 and prints a summary if the chain is intact; otherwise exits 1
    and names the first height, log index and event that is wrong, and why.

    \b
    Examples:
      rantai verify export.ndjson --genesis genesis.json
      curl -s http://127.0.0.1:8101/v1/export > export.ndjson && rantai verify export.ndjson
    """
    genesis = _load_genesis(genesis_path)
    progress = (
        None
        if quiet
        else Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
    )
    with file.open("rb") as handle, _signature_pool(workers) as pool:
        if progress is None:
            report = check_export(
                _read_lines(handle, None, None), genesis=genesis, executor=pool, rules=rules
            )
        else:
            with progress:
                task = progress.add_task("verifying", total=file.stat().st_size)
                report = check_export(
                    _read_lines(handle, progress, task),
                    genesis=genesis,
                    executor=pool,
                    rules=rules,
                )
    summary = report.summary
    if report.error is not None:
        error = report.error
        click.echo(f"FAULT: {error}", err=True)
        for label, value in (
            ("height", error.height),
            ("index", error.index),
            ("event", error.event_id),
        ):
            if value is not None:
                click.echo(f"  {label:<7}{value}", err=True)
        if str(error) != error.reason:
            click.echo(f"  reason {error.reason}", err=True)
        if summary is not None:
            click.echo(
                f"  blocks before the fault verified up to height {summary.height}", err=True
            )
        sys.exit(EXIT_FAULT)
    assert summary is not None
    click.echo(f"OK: chain intact — network {summary.network}, origin {summary.origin}")
    click.echo(f"  height     {summary.height} ({summary.blocks} blocks)")
    click.echo(f"  events     {summary.tree_size}")
    click.echo(f"  tree_root  {summary.tree_root}")
    click.echo(f"  block_hash {summary.block_hash}")
    click.echo(f"  genesis    {summary.genesis}")
    checked = "structure, certificates, signatures" + (" and rules" if rules else "")
    click.echo(f"  checked    {checked}")
    if not rules:
        click.echo("  (authorisation and supply-chain rules not checked: --no-rules)")


@cli.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-network"),
    show_default=True,
    help="Where the demo network lives (a previous demo there is replaced).",
)
@click.option("--nodes", type=click.IntRange(min=1, max=31), default=4, show_default=True)
@click.option(
    "--base-port", type=click.IntRange(min=1024, max=65000), default=8101, show_default=True
)
@click.option(
    "--in-process",
    is_flag=True,
    help="Instead: build a certified sample chain in one SQLite file and audit it, no network.",
)
def demo(directory: Path, nodes: int, base_port: int, in_process: bool) -> None:
    """Start a local network of validators with a West Kalimantan data set (Ctrl-C stops it).

    Prints the nodes' URLs, a trace of the EU buyer's lot and an audit command.

    \b
    Examples:
      rantai demo
      rantai demo --nodes 7 --base-port 9101
      rantai demo --in-process --dir demo-offline
    """
    try:
        if in_process:
            from rantai.demo import run_demo

            run_demo(directory, nodes=nodes, blocks=60, events_per_block=25)
        else:
            from rantai.demo_network import run_network_demo

            run_network_demo(directory, nodes=nodes, base_port=base_port)
    except LedgerError as e:
        raise InputProblem(str(e)) from e


@cli.group()
def state() -> None:
    """Check or rebuild a node's supply-chain state against its own log."""


def _open_store(url: str) -> Store:
    try:
        store = Store.open(url)
        store.head()
    except LedgerError as e:
        raise InputProblem(f"cannot open the ledger at {url}: {e}") from e
    return store


@state.command("check")
@click.option("--db", "url", required=True, help="The node's database URL.")
def state_check(url: str) -> None:
    """Replay the log and compare the result with the stored state.

    Exits 0 when they are identical, 1 when the stored state differs (see `state rebuild`).

    \b
    Example:
      rantai state check --db sqlite:///demo-network/node-1.db
    """
    store = _open_store(url)
    try:
        result = check_state(store)
    finally:
        store.close()
    click.echo(f"stored   {result.stored}")
    click.echo(f"replayed {result.replayed}")
    if not result.ok:
        click.echo("FAULT: the stored state is not what the log implies", err=True)
        sys.exit(EXIT_FAULT)
    click.echo("OK: the stored state is exactly what the log implies")


@state.command("rebuild")
@click.option("--db", "url", required=True, help="The node's database URL.")
def state_rebuild(url: str) -> None:
    """Replace the stored state with a replay of the log (one transaction).

    \b
    Example:
      rantai state rebuild --db sqlite:///demo-network/node-1.db
    """
    store = _open_store(url)
    try:
        result = rebuild_state(store)
    finally:
        store.close()
    click.echo(f"rebuilt: state digest {result.stored}")


@cli.group()
def network() -> None:
    """Create local networks."""


@network.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--nodes", type=click.IntRange(min=1, max=31), default=4, show_default=True)
@click.option(
    "--base-port", type=click.IntRange(min=1024, max=65000), default=8101, show_default=True
)
@click.option("--network", "network_id", default="kalbar-coop", show_default=True)
@click.option("--db", "database", help="Database URL template with {node}, e.g. for PostgreSQL.")
def network_init(
    directory: Path, nodes: int, base_port: int, network_id: str, database: str | None
) -> None:
    """Write genesis.json, keys and node-K/ directories for a local network.

    \b
    Example:
      rantai network init net --nodes 4 --base-port 8101
      rantai node run net/node-1 &   # … one per node
    """
    from rantai.network import init_network

    try:
        genesis = init_network(
            directory, nodes=nodes, base_port=base_port, network=network_id, database=database
        )
    except LedgerError as e:
        raise InputProblem(str(e)) from e
    click.echo(f"network {genesis.network}: {nodes} validators, genesis {genesis.digest}")
    for k in range(1, nodes + 1):
        click.echo(f"  node-{k}: http://127.0.0.1:{base_port + k - 1}  ({directory / f'node-{k}'})")


@cli.group()
def node() -> None:
    """Run a node."""


@node.command("run")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--verbose", "-v", is_flag=True, help="Log every commit.")
def node_run(directory: Path, verbose: bool) -> None:
    """Run the node in DIRECTORY in the foreground (SIGTERM or Ctrl-C stops it cleanly).

    \b
    Example:
      rantai node run net/node-1
    """
    import logging

    from rantai.network import load_config, run

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        config = load_config(directory)
    except LedgerError as e:
        raise InputProblem(str(e)) from e
    run(config)
