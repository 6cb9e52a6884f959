"""The ``rantai`` command line (DESIGN.md §7).

For operators: ``network init``, ``node run|check|rebuild``, ``demo``, ``state check|rebuild``.
For clerks and members: ``keygen``, ``submit``, ``epcis capture`` (events are signed here, with
the member's own key). For buyers and auditors: ``trace``, ``export``, ``verify``,
``checkpoint``, ``proof`` and ``audit watch``, which check what a node answers against the
genesis document instead of trusting the node. Commands that read more than checkpoints, proofs
and traces sign their requests with a member key (``--key``; ``submit`` and ``epcis capture``
with their first key).

Exit codes: 0 success; 1 the thing checked is not intact or the node refused (a chain fault, a
failed proof, a checkpoint without a quorum, an audit fault, a refused event, an unknown lot);
2 bad usage or unusable input (a missing or malformed file, a node that cannot be reached);
3 an internal error (a bug: please report it with the traceback).

What it does not do: any check itself. Verification lives in ``ledger`` (offline) and in
``rantai.client`` and ``rantai.audit`` (against a node); this module parses options, prints and
maps errors to exit codes.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from ledger.blocks import GenesisDocument, parse_genesis
from ledger.encoding import format_time, parse_json, require_fields
from ledger.errors import (
    ChainError,
    EncodingError,
    LedgerError,
    ProofError,
    SignatureError,
    StorageError,
)
from ledger.keys import key_id, public_key_bytes
from ledger.verifier import check_export
from node.keystore import generate_key, load_key, save_key
from node.ledger_state import check_state, rebuild_state
from node.store import Store
from rantai.audit import (
    AuditRound,
    Fault,
    audit_round,
    evidence_path,
    load_state,
    save_state,
    write_evidence,
)
from rantai.client import (
    Client,
    NodeUnavailableError,
    RefusedError,
    build_event,
    verify_checkpoint_note,
)

if TYPE_CHECKING:
    from rantai.network import NodeConfig  # imported when a node command runs: it is heavy

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
      rantai export export.ndjson --key keys/auditor.pem && rantai verify export.ndjson
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

    from rantai.network import run

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    config = _node_config(directory)
    try:
        run(config)
    except ChainError as e:
        click.echo(
            f"{config.name}: refusing to start: the database is damaged at {e} "
            f"(`rantai node rebuild {directory}` replaces it; the node then catches up)",
            err=True,
        )
        sys.exit(EXIT_FAULT)
    except StorageError as e:
        raise InputProblem(f"{config.name}: {e}") from e


@node.command("check")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def node_check(directory: Path) -> None:
    """Check the database of the node in DIRECTORY block by block, without signatures.

    Headers and their links, every event against its block and the Merkle log, every stored
    Merkle node. Exits 0 when all is intact, 1 naming the first damaged height and log index
    (see `node rebuild`). `rantai verify` checks signatures and certificates of an export.

    \b
    Example:
      rantai node check net/node-1
    """
    from rantai.network import check_database

    config = _node_config(directory)
    try:
        report = check_database(config)
    except LedgerError as e:
        raise InputProblem(str(e)) from e
    if report.fault is not None:
        click.echo(f"FAULT: {report.fault}", err=True)
        sys.exit(EXIT_FAULT)
    if report.blocks == 0:
        click.echo("OK: the database holds no chain yet")
    else:
        click.echo(f"OK: blocks 0..{report.blocks - 1} and {report.events} events intact")


@node.command("rebuild")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def node_rebuild(directory: Path) -> None:
    """Move the stopped node's damaged SQLite database aside and start a fresh one.

    The damaged file becomes `<file>.damaged-<UTC time>`; the new database holds the genesis
    block, and the node, started again, catches up from its peers (checking every
    certificate).

    \b
    Example:
      rantai node rebuild net/node-1 && rantai node run net/node-1
    """
    from rantai.network import rebuild_database

    config = _node_config(directory)
    try:
        aside = rebuild_database(config)
    except LedgerError as e:
        raise InputProblem(str(e)) from e
    click.echo(f"moved the damaged database to {aside}")
    click.echo(f"started a fresh one: `rantai node run {directory}` catches up from the peers")


def _node_config(directory: Path) -> NodeConfig:
    from rantai.network import load_config

    try:
        return load_config(directory)
    except LedgerError as e:
        raise InputProblem(str(e)) from e


# --- talking to a node ------------------------------------------------------------------------

DEFAULT_NODE = "http://127.0.0.1:8101"


def _node_option(command: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--node",
        "node_url",
        default=DEFAULT_NODE,
        show_default=True,
        envvar="RANTAI_NODE",
        show_envvar=True,
        help="The node's API URL.",
    )(command)


def _out(*, soft_wrap: bool = False) -> Console:
    """A console on standard output, made per command so that it sees the terminal's width.

    ``soft_wrap`` keeps each printed line on one line (log lines that are grepped).
    """
    return Console(highlight=False, soft_wrap=soft_wrap)


def _print_refusal(url: str, error: RefusedError) -> None:
    problem = error.problem
    click.echo(
        f"refused by {url}: {error.status} {problem.get('title')}: {problem.get('detail')}",
        err=True,
    )
    errors = problem.get("errors")
    for item in errors if isinstance(errors, list) else []:
        if not isinstance(item, dict):
            continue
        where = f"event {item.get('position')}" if "position" in item else item.get("field", "")
        if item.get("event_id"):
            where += f" ({item['event_id']})"
        rule = f"{item['rule']}: " if item.get("rule") else ""
        click.echo(f"  {where}: {rule}{item.get('detail')}", err=True)
    if error.status in (401, 403):
        click.echo("  (sign with a member key the node knows: --key KEY.pem)", err=True)


def _read_key_option(command: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--key",
        "read_key",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="RANTAI_KEY",
        show_envvar=True,
        help="A registered member's PEM key that signs the requests (the node answers what "
        "the member's organisation may read; an auditor's key reads everything).",
    )(command)


@contextmanager
def _talking_to(url: str, key: Ed25519PrivateKey | None = None) -> Iterator[Client]:
    """A client for ``url``, signing its requests with ``key``: an unreachable node exits 2; a
    refusal prints why and exits 1, and so does an answer that is not what the API promises
    (the node's fault, not ours)."""
    client = Client(url, key)
    try:
        yield client
    except NodeUnavailableError as e:
        raise InputProblem(str(e)) from e
    except RefusedError as e:
        _print_refusal(url, e)
        sys.exit(EXIT_FAULT)
    except EncodingError as e:
        click.echo(f"FAULT: {url} answered something malformed: {e}", err=True)
        sys.exit(EXIT_FAULT)
    finally:
        client.close()


def _read_key(path: Path | None) -> Ed25519PrivateKey | None:
    return None if path is None else _load_keys([path])[0]


def _load_keys(paths: Sequence[Path]) -> list[Ed25519PrivateKey]:
    keys = []
    for path in paths:
        try:
            keys.append(load_key(path))
        except LedgerError as e:
            raise InputProblem(str(e)) from e
    return keys


def _read_input(path: Path) -> bytes:
    try:
        if str(path) == "-":
            return sys.stdin.buffer.read()
        return path.read_bytes()
    except OSError as e:
        raise InputProblem(f"cannot read {path}: {e}") from e


_EVENT_SPEC_FIELDS = frozenset({"type", "payload"})


def _event_specs(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(type, payload)`` of each event in FILE: one ``{type, payload}`` object or a list."""
    try:
        value = parse_json(_read_input(path))
    except EncodingError as e:
        raise InputProblem(f"{path} is not valid JSON: {e}") from e
    items = value if type(value) is list else [value]
    if not items:
        raise InputProblem(f"{path} holds no events")
    specs = []
    for position, item in enumerate(items):
        try:
            spec = require_fields(item, _EVENT_SPEC_FIELDS, f"event {position}")
        except EncodingError as e:
            raise InputProblem(f"{path}: {e} (each event is {{type, payload}})") from e
        if type(spec["type"]) is not str or type(spec["payload"]) is not dict:
            raise InputProblem(f"{path}: event {position} needs a string type and a payload object")
        specs.append((spec["type"], spec["payload"]))
    return specs


def _print_submitted(answers: Sequence[dict[str, Any]], labels: Sequence[str]) -> None:
    pending = 0
    for label, answer in zip(labels, answers, strict=True):
        line = f"{answer.get('event_id')}  {answer.get('status')}"
        if answer.get("status") == "committed":
            line += f"  height {answer.get('height')}  index {answer.get('index')}"
        else:
            pending += 1
        click.echo(f"{line}  {label}")
    if pending:
        click.echo(
            f"{pending} event(s) not committed yet: `rantai proof EVENT_ID` shows when they are",
            err=True,
        )


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "--key",
    "key_paths",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A PEM key that signs every event; repeat it for events that need several signers.",
)
@_node_option
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait until every event is committed (else return once they are admitted).",
)
def submit(file: Path, key_paths: tuple[Path, ...], node_url: str, wait: bool) -> None:
    """Sign events here with your own key(s) and submit them to a node.

    FILE holds one event {"type": ..., "payload": {...}} or a JSON list of them (- reads
    standard input). The network id comes from the node's /v1/status (read with the first
    key); the nonce and created_at are made here. Prints one line per event: its id, status,
    block height and log index.
    The batch is all or nothing: if the node refuses one event, nothing is admitted, its
    reasons are printed and the exit code is 1.

    \b
    Example:
      echo '{"type": "lot.create", "payload": {"lot_id": "KP-0001", "commodity": "coffee",
            "quantity": "12.5", "uom": "kg", "producer": "koperasi-kopi/siti",
            "harvested_on": "2026-11-20"}}' > harvest.json
      rantai submit harvest.json --key keys/siti.pem --node http://127.0.0.1:8101
    """
    specs = _event_specs(file)
    keys = _load_keys(key_paths)
    with _talking_to(node_url, keys[0]) as client:
        network = client.status().get("network")
        if type(network) is not str:
            raise InputProblem(f"{node_url} does not say which network it serves")
        envelopes = []
        for position, (kind, payload) in enumerate(specs):
            try:
                envelopes.append(build_event(network, kind, payload, keys))
            except LedgerError as e:
                raise InputProblem(f"event {position} cannot be signed: {e}") from e
        answers = client.submit(envelopes, wait=wait)
    _print_submitted(answers, [kind for kind, _ in specs])


# --- reading ----------------------------------------------------------------------------------


def _trace_tables(answer: dict[str, Any]) -> list[Table]:
    lots = answer.get("lots") or []
    traced: dict[str, Any] = next(
        (lot for lot in lots if lot.get("lot_id") == answer.get("lot_id")), {}
    )
    unit = traced.get("uom", "")
    tables = []
    if answer.get("direction") == "back":
        origins = Table(title="Origins", title_justify="left")
        for column in ("producer", "plot", "harvested on"):
            origins.add_column(column)
        origins.add_column(f"quantity ({unit})", justify="right")
        origins.add_column("lot")
        origins.add_column("index", justify="right")
        for origin in answer.get("origins") or []:
            origins.add_row(
                origin.get("producer"),
                origin.get("plot_id") or "—",
                origin.get("harvested_on"),
                origin.get("quantity"),
                origin.get("lot_id"),
                str(origin.get("index")),
            )
        tables.append(origins)
    steps = Table(title="Steps (log order)", title_justify="left")
    steps.add_column("index", justify="right")
    for column in ("event", "inputs", "outputs", "event id"):
        steps.add_column(column)
    for step in answer.get("steps") or []:
        steps.add_row(
            str(step.get("index")),
            step.get("type"),
            ", ".join(step.get("inputs") or []) or "—",
            ", ".join(step.get("outputs") or []) or "—",
            str(step.get("event_id", ""))[:16] + "…",
        )
    tables.append(steps)
    table = Table(title="Lots", title_justify="left")
    table.add_column("lot")
    table.add_column("commodity")
    table.add_column("quantity", justify="right")
    table.add_column("owner")
    table.add_column("status")
    for lot in lots:
        table.add_row(
            lot.get("lot_id"),
            lot.get("commodity"),
            f"{lot.get('quantity')} {lot.get('uom')}",
            lot.get("owner"),
            lot.get("status"),
        )
    tables.append(table)
    return tables


@cli.command()
@click.argument("lot_id")
@click.option(
    "--direction",
    type=click.Choice(["back", "forward"]),
    default="back",
    show_default=True,
    help="back: to the harvests it came from; forward: to every lot and party it reached.",
)
@_node_option
@click.option("--json", "as_json", is_flag=True, help="Print the node's answer as JSON.")
def trace(lot_id: str, direction: str, node_url: str, as_json: bool) -> None:
    """Trace a lot back to its producers, plots and harvest dates, or forward (a recall).

    Backward, the origins table shows how much of the lot's current quantity came from each
    harvest; the steps are the events on the way, each with its log index (prove any of them
    with `rantai proof`). An unknown lot exits 1.

    \b
    Examples:
      rantai trace RB-SIR20-0001
      rantai trace RB-ANI-2611 --direction forward --node http://127.0.0.1:8102
      rantai trace RB-SIR20-0001 --json | jq '.origins[].producer'
    """
    with _talking_to(node_url) as client:
        answer = client.trace(lot_id, direction)
    if as_json:
        click.echo(json.dumps(answer, indent=2, ensure_ascii=False))
        return
    out = _out()
    arrow = "back to its origins" if direction == "back" else "forward"
    out.print(f"[bold]{answer.get('lot_id')}[/] traced {arrow} ({node_url})")
    for table in _trace_tables(answer):
        out.print(table)
    parties = answer.get("parties")
    if parties:
        out.print(f"[bold]Parties reached[/]: {', '.join(parties)}")


@cli.command()
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@_node_option
@click.option("--from", "start", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--to", "end", type=click.IntRange(min=0), help="Last block height [default: the head]."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@_read_key_option
def export(
    out: Path, node_url: str, start: int, end: int | None, quiet: bool, read_key: Path | None
) -> None:
    """Download the chain as NDJSON to OUT: the genesis document, then blocks with certificates.

    The download streams into a temporary file that becomes OUT only once complete, so OUT is
    never a partial export. An export from height 0 is what `rantai verify` audits offline;
    --from H exports blocks H.. (for incremental archives; they still start with genesis).
    Nodes export to auditors and validators only: sign with an auditor's key (--key).

    \b
    Example:
      rantai export chain.ndjson --key keys/auditor.pem --node http://127.0.0.1:8101
      rantai verify chain.ndjson --genesis demo-network/genesis.json
    """
    with _talking_to(node_url, _read_key(read_key)) as client:
        head = client.status().get("height")
        if type(head) is not int:
            raise InputProblem(f"{node_url} does not say its height")
        last = head if end is None else min(end, head)
        lines = max(last - start + 1, 0) + 1
        progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("lines"),
            TextColumn("{task.fields[size]}"),
            console=console,
            transient=True,
            disable=quiet,
        )
        partial = out.with_name(f".{out.name}.{os.getpid()}.part")
        counted = {"lines": 0, "bytes": 0}
        try:
            with progress, partial.open("wb") as sink:
                task = progress.add_task("exporting", total=lines, size="")

                def advance(chunk: bytes) -> None:
                    counted["lines"] += chunk.count(b"\n")
                    counted["bytes"] += len(chunk)
                    size = f"{counted['bytes'] / 1e6:.1f} MB"
                    progress.update(task, completed=counted["lines"], size=size)

                client.export(sink, start=start, end=last, on_chunk=advance)
            os.replace(partial, out)
        except OSError as e:
            raise InputProblem(f"cannot write {out}: {e}") from e
        finally:
            partial.unlink(missing_ok=True)
    blocks = counted["lines"] - 1
    span = f"heights {start}..{last}" if blocks > 0 else "no blocks in that range"
    click.echo(f"wrote {blocks} blocks ({span}), {counted['bytes']} bytes to {out}")
    if start == 0:
        click.echo(f"audit it offline: rantai verify {out} --genesis genesis.json")


def _required_genesis(path: Path) -> GenesisDocument:
    genesis = _load_genesis(path)
    assert genesis is not None
    return genesis


_GENESIS_OPTION = click.Path(exists=True, dir_okay=False, path_type=Path)


@cli.command()
@_node_option
@click.option(
    "--genesis",
    "genesis_path",
    type=_GENESIS_OPTION,
    help="Check the signatures against this genesis.json's validators.",
)
def checkpoint(node_url: str, genesis_path: Path | None) -> None:
    """Print the node's newest cosigned checkpoint (a C2SP signed note).

    With --genesis, check here that more than two thirds of the genesis validators (2f+1 of n)
    signed it for the genesis origin: exit 0 if so, 1 if not.

    \b
    Examples:
      rantai checkpoint
      rantai checkpoint --node http://127.0.0.1:8102 --genesis demo-network/genesis.json
    """
    genesis = None if genesis_path is None else _required_genesis(genesis_path)
    with _talking_to(node_url) as client:
        note = client.checkpoint()
    click.echo(note.decode("utf-8", errors="replace"), nl=False)
    if genesis is None:
        return
    try:
        trusted = verify_checkpoint_note(note, genesis)
    except (EncodingError, SignatureError) as e:
        click.echo(f"FAULT: the checkpoint does not verify: {e}", err=True)
        sys.exit(EXIT_FAULT)
    click.echo(
        f"OK: tree size {trusted.size}, root {trusted.root_hash.hex()}, cosigned by "
        f"{len(trusted.signed_by)} of {len(genesis.validators)} validators "
        f"({genesis.quorum} needed): {', '.join(trusted.signed_by)}",
        err=True,
    )


@cli.command()
@click.argument("event_id")
@_node_option
@click.option(
    "--genesis",
    "genesis_path",
    type=_GENESIS_OPTION,
    required=True,
    help="The genesis.json you trust (its validators sign checkpoints).",
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds to wait for a cosigned checkpoint that covers a just-committed event.",
)
@_read_key_option
def proof(
    event_id: str, node_url: str, genesis_path: Path, wait: float, read_key: Path | None
) -> None:
    """Prove here, without trusting the node, that an event is in the ledger.

    Fetches the newest checkpoint and checks that a quorum of the genesis validators signed
    it; fetches the event and its inclusion proof; recomputes the event's id and Merkle leaf
    hash from its envelope and checks the proof against the checkpoint's root. Exit 0 if it
    verifies, 1 if not (or if the node does not know the event). The checkpoint and the
    proof are public; the event is read with a member key (--key) whose organisation signed
    it, is named in it, or holds a lot it names or a lot made from one (a buyer proves the
    steps of the lots it bought).

    \b
    Example:
      rantai proof 3f0c…e1 --genesis demo-network/genesis.json --key keys/eu-buyer__anna.pem
    """
    genesis = _required_genesis(genesis_path)
    with _talking_to(node_url, _read_key(read_key)) as client:
        try:
            proven = client.prove_event(event_id, genesis, wait=wait)
        except (EncodingError, SignatureError, ProofError) as e:
            click.echo(f"FAULT: {e}", err=True)
            sys.exit(EXIT_FAULT)
    envelope, trusted = proven.envelope, proven.checkpoint
    click.echo(
        f"OK: event {envelope.event_id} ({envelope.type}, created {envelope.body['created_at']}) "
        f"is at index {proven.index} of the log"
    )
    click.echo(f"  proof      {len(proven.proof.proof)} hashes, verified against the root below")
    click.echo(f"  checkpoint tree size {trusted.size}, root {trusted.root_hash.hex()}")
    click.echo(
        f"  cosigned   {', '.join(trusted.signed_by)} "
        f"({len(trusted.signed_by)} of {len(genesis.validators)}, {genesis.quorum} needed)"
    )
    if proven.height is not None:
        click.echo(f"  height     {proven.height} (as the node reports it)")


# --- the auditor ------------------------------------------------------------------------------


@cli.group()
def audit() -> None:
    """Watch nodes' checkpoints for rewritten history, rollbacks and split views."""


def _now() -> str:
    return format_time(_dt.datetime.now(_dt.UTC).replace(microsecond=0))


def _report_fault(fault: Fault, evidence: Path | None) -> None:
    parts: list[Text] = [Text(fault.summary, style="bold")]
    if fault.detail:
        parts.append(Text(f"why: {fault.detail}"))
    for role, url, note in fault.checkpoints:
        parts.append(Text(f"\n{role} checkpoint, served by {url}:", style="bold"))
        parts.append(Text(note.rstrip("\n"), overflow="fold"))
    if fault.proof is not None:
        proof = fault.proof
        parts.append(
            Text(
                f"\nconsistency proof from {proof.first} to {proof.second}, "
                f"served by {fault.proof_url}:",
                style="bold",
            )
        )
        parts.append(Text("\n".join(h.hex() for h in proof.proof) or "(empty)"))
    if evidence is not None:
        parts.append(Text(f"\nevidence written to {evidence}", style="bold"))
    console.print(
        Panel(
            Group(*parts),
            title=f"AUDIT FAULT: {fault.kind.upper()}",
            border_style="bold red",
            style="red",
        )
    )


def _report_round(out: Console, result: AuditRound, when: str) -> None:
    state = result.state
    if state is not None and result.first_contact:
        trusted = state.trusted
        out.print(
            f"{when} [yellow]first contact[/]: trusting the checkpoint of tree size "
            f"{trusted.size}, root {trusted.root_hash.hex()}, from {trusted.url}, cosigned by "
            f"{', '.join(trusted.trusted.signed_by)} (trust on first use: compare this root "
            "with another source you trust)"
        )
    for url, old, new in result.grew:
        out.print(
            f"{when} [green]consistent[/]: {url} grew from {old} to {new} events; "
            "the consistency proof verifies"
        )
    if state is not None:
        out.print(
            f"{when} [green]OK[/]: trusted tree size {state.trusted.size}, "
            f"root {state.trusted.root_hash.hex()}"
        )
    for url, reason in result.unavailable:
        out.print(f"{when} [yellow]not checked[/]: {url}: {reason}")


@audit.command("watch")
@click.argument("urls", nargs=-1, required=True)
@click.option("--genesis", "genesis_path", type=_GENESIS_OPTION, required=True)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The file that keeps the last trusted checkpoint between rounds and runs.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds between rounds.",
)
@click.option("--once", is_flag=True, help="One round, then exit (for cron and tests).")
def audit_watch(
    urls: tuple[str, ...], genesis_path: Path, state_path: Path, interval: float, once: bool
) -> None:
    """Audit nodes continuously: their checkpoints may only grow, consistently.

    Each round fetches every node's checkpoint and checks its quorum of genesis validator
    signatures. When the log grew, the node must prove with an RFC 9162 consistency proof that
    the new checkpoint extends the trusted one; then the new one is trusted and written to
    --state (atomically). A checkpoint without a quorum, a smaller checkpoint than a node
    served before (rollback), a failed consistency proof (rewritten history) or two roots
    for one tree size (split view, also across the nodes given) stops the audit with a red
    report and the evidence in a file beside --state: exit 1.

    The first run (no --state file yet) trusts the largest valid checkpoint: trust on first
    use. --once exits 0 if everything is consistent and 2 if a node could not be checked.

    \b
    Examples:
      rantai audit watch http://127.0.0.1:8101 --genesis genesis.json --state audit.json
      rantai audit watch http://127.0.0.1:8101 http://127.0.0.1:8102 \\
          --genesis genesis.json --state audit.json --once
    """
    genesis = _required_genesis(genesis_path)
    try:
        state = load_state(state_path, genesis)
    except LedgerError as e:
        raise InputProblem(f"cannot use the audit state {state_path}: {e}") from e
    out = _out(soft_wrap=True)
    clients = [Client(url) for url in dict.fromkeys(url.rstrip("/") for url in urls)]
    try:
        while True:
            result = audit_round(genesis, state, clients)
            when = _now()
            if result.fault is not None:
                evidence = evidence_path(state_path, when)
                try:
                    write_evidence(evidence, result.fault, genesis, when)
                except StorageError as e:
                    console.print(f"[red]cannot write the evidence[/]: {e}")
                    _report_fault(result.fault, None)
                else:
                    _report_fault(result.fault, evidence)
                sys.exit(EXIT_FAULT)
            _report_round(out, result, when)
            if result.state is not None and result.state != state:
                try:
                    save_state(state_path, result.state)
                except StorageError as e:
                    raise InputProblem(str(e)) from e
                state = result.state
            if once:
                sys.exit(EXIT_USAGE if result.unavailable or state is None else 0)
            time.sleep(interval)
    except KeyboardInterrupt:
        out.print("stopped")
    finally:
        for client in clients:
            client.close()


# --- EPCIS ------------------------------------------------------------------------------------


@cli.group()
def epcis() -> None:
    """EPCIS 2.0 documents on the ledger."""


@epcis.command("capture")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "--key",
    "key_paths",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The PEM key of the member who signs every event (a clerk, or the producer).",
)
@_node_option
@click.option("--wait/--no-wait", default=True, show_default=True)
def epcis_capture(file: Path, key_paths: tuple[Path, ...], node_url: str, wait: bool) -> None:
    """Turn an EPCIS 2.0 document into ledger events, signed here, and submit them.

    ObjectEvent ADD + commissioning becomes lot.create; TransformationEvent lot.transform;
    ObjectEvent OBSERVE + shipping with a destinationList lot.ship; ObjectEvent OBSERVE +
    receiving lot.receive (the mapping of docs/epcis.md; each event records its CBV 2.0 event
    hash id). All or nothing: an event that cannot be mapped, or whose GTIN or unit does not
    fit the lot, exits 2 naming the event and field; a batch the ledger refuses exits 1; in
    both cases nothing is admitted.

    \b
    Example:
      rantai epcis capture delivery.jsonld --key keys/koperasi-kopi__clerk-1.pem
    """
    document = _read_input(file)
    keys = _load_keys(key_paths)
    with _talking_to(node_url, keys[0]) as client:
        try:
            results = client.capture_epcis(document, keys, wait=wait)
        except EncodingError as e:  # EpcisError included: it names the event and field
            raise InputProblem(f"{file}: {e}") from e
    _print_submitted(
        [answer for _, answer in results],
        [f"{event.type} (EPCIS event {event.position}: {event.epcis})" for event, _ in results],
    )
