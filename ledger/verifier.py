"""The streaming chain verifier: genesis, then blocks in order, checked completely.

For each block it checks the header (version, network, height, link to the previous block's
hash, time that never goes back), the commit certificate against the genesis validators, every
event's shape, network, time bound and signatures against the keys registered so far, and the
log: ``tree_size`` and ``tree_root`` recomputed with a :class:`~ledger.merkle.CompactRange`. It
keeps only the previous header, the compact range and the keyring, so memory stays flat however
long the chain is.

Signature checks are the expensive part. They are batched and, when an
:class:`concurrent.futures.Executor` is injected (a process pool, say), run there while the
next blocks are parsed; the verifier itself starts no processes. Results are consumed in log
order, so the first fault reported is always the earliest one in the chain.

It does not read files or sockets: callers feed it lines or parsed blocks.
"""

from __future__ import annotations

import datetime as _dt
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import NoReturn

from ledger.blocks import (
    Block,
    BlockEventError,
    BlockHeader,
    GenesisDocument,
    certificate_jobs,
    genesis_header,
    parse_block,
    parse_genesis,
)
from ledger.encoding import parse_time
from ledger.errors import ChainError, ConsensusError, EncodingError, LedgerError, RuleViolation
from ledger.events import MAX_EVENT_CLOCK_SKEW
from ledger.keyring import EventAuthority, KeyRing
from ledger.keys import SignatureJob, verify_jobs
from ledger.merkle import CompactRange, leaf_hash
from ledger.rules import StateMachine

__all__ = [
    "ChainReport",
    "ChainSummary",
    "ChainVerifier",
    "check_export",
    "verify_export",
]


@dataclass(frozen=True, slots=True)
class ChainSummary:
    """What a verified chain (or its verified prefix) amounts to."""

    network: str
    origin: str
    genesis: str
    height: int
    block_hash: str
    tree_size: int
    tree_root: str
    blocks: int


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The non-raising result of :func:`check_export`.

    Attributes:
        summary: the chain up to the last block whose structure was checked (``None`` when the
            genesis document itself is at fault).
        error: the first fault, or ``None`` when the whole chain verifies.
    """

    summary: ChainSummary | None
    error: ChainError | None

    @property
    def ok(self) -> bool:
        """True when the chain verified completely."""
        return self.error is None


_Where = tuple[int, int | None, str | None, str]
"""Where a signature sits: ``(height, log index, event id, what)``."""


class _Done:
    """A finished result with the interface of a Future, for verification without an executor."""

    __slots__ = ("_value",)

    def __init__(self, value: list[bool]) -> None:
        self._value = value

    def result(self) -> list[bool]:
        return self._value


class ChainVerifier:
    """Checks blocks one by one against a genesis document.

    Args:
        genesis: the trusted genesis document.
        authority: who may sign events; defaults to a :class:`KeyRing` from the genesis
            governance admins. The supply-chain state machine can be passed instead.
        executor: where to run batches of signature checks; ``None`` checks them in-line.
        batch_size: signatures per batch sent to the executor.
        max_pending: batches in flight before the verifier waits for the oldest.
    """

    def __init__(
        self,
        genesis: GenesisDocument,
        *,
        authority: EventAuthority | None = None,
        executor: Executor | None = None,
        batch_size: int = 512,
        max_pending: int = 8,
    ) -> None:
        self._genesis = genesis
        self._validators = genesis.validator_keys
        self._authority: EventAuthority = (
            authority if authority is not None else KeyRing(genesis.governance_admins)
        )
        self._executor = executor
        self._batch_size = batch_size
        self._max_pending = max_pending
        self._log = CompactRange()
        self._previous: BlockHeader | None = None
        self._previous_time: _dt.datetime | None = None
        self._blocks = 0
        self._jobs: list[SignatureJob] = []
        self._where: list[_Where] = []
        self._pending: deque[tuple[Future[list[bool]] | _Done, list[_Where]]] = deque()

    @property
    def next_height(self) -> int:
        """The height the next block must have."""
        return 0 if self._previous is None else self._previous.height + 1

    def summary(self) -> ChainSummary | None:
        """The chain so far (``None`` before the genesis block)."""
        if self._previous is None:
            return None
        return ChainSummary(
            network=self._genesis.network,
            origin=self._genesis.origin,
            genesis=self._genesis.digest,
            height=self._previous.height,
            block_hash=self._previous.block_hash,
            tree_size=self._log.size,
            tree_root=self._previous.tree_root,
            blocks=self._blocks,
        )

    def add_line(self, line: bytes | str) -> None:
        """Parse one NDJSON block line and check it.

        Raises:
            ChainError: this block, or an earlier block's signature, is at fault.
        """
        height = self.next_height
        try:
            block = parse_block(line)
        except BlockEventError as e:
            # The events before the malformed one may hold an earlier fault: check them first.
            self._check_block(e.prefix, complete=False)
            self._fail(f"malformed event: {e.__cause__}", height, self._log.size)
        except LedgerError as e:
            self._fail(f"malformed block: {e}", height)
        self.add_block(block)

    def add_block(self, block: Block) -> None:
        """Check one block; its signatures may be checked later (see :meth:`finish`).

        Raises:
            ChainError: this block, or an earlier block's signature, is at fault.
        """
        self._check_block(block, complete=True)
        self._previous = block.header
        self._previous_time = parse_time(block.header.time)
        self._blocks += 1

    def _check_block(self, block: Block, *, complete: bool) -> None:
        """Check a block; ``complete`` False for the well-formed prefix of a malformed one."""
        header = block.header
        height = self.next_height
        if header.height != height:
            self._fail(f"expected height {height}, found height {header.height}", height)
        if header.network != self._genesis.network:
            self._fail(f"header network {header.network!r} is not this network's", height)
        if height == 0:
            self._check_genesis_block(block)
            return
        self._check_link(header)
        self._check_certificate(block, header.block_hash)
        if complete and header.event_count != len(block.events):
            self._fail(
                f"header event_count {header.event_count} but the block has "
                f"{len(block.events)} events",
                height,
            )
        self._check_events(block)
        if not complete:
            return
        if header.tree_size != self._log.size:
            self._fail(
                f"header tree_size {header.tree_size} but the log has {self._log.size}", height
            )
        if header.tree_root != self._log.root().hex():
            self._fail("header tree_root does not match the recomputed Merkle root", height)

    def finish(self) -> ChainSummary:
        """Wait for every pending signature check and return the summary.

        Raises:
            ChainError: a signature failed, or no genesis block was given.
        """
        self._drain()
        summary = self.summary()
        if summary is None:
            raise ChainError("the chain has no genesis block", height=0)
        return summary

    # --- checks --------------------------------------------------------------------------

    def _check_genesis_block(self, block: Block) -> None:
        expected = genesis_header(self._genesis)
        if block.header != expected:
            differing = sorted(
                k for k, v in block.header.to_json().items() if expected.to_json().get(k) != v
            )
            self._fail(
                "genesis block header does not match the genesis document "
                f"(field {', '.join(differing) or 'genesis'})",
                0,
            )
        if block.events:
            self._fail("the genesis block has events", 0)
        if block.commit is not None:
            self._fail("the genesis block has a commit certificate", 0)

    def _check_link(self, header: BlockHeader) -> None:
        previous = self._previous
        assert previous is not None
        height = header.height
        if header.prev != previous.block_hash:
            self._fail(
                f"prev {header.prev} is not the hash of block {previous.height} "
                f"({previous.block_hash})",
                height,
            )
        block_time = parse_time(header.time)
        assert self._previous_time is not None
        if block_time < self._previous_time:
            self._fail(f"block time {header.time} is before block {previous.height}'s", height)
        if header.proposer not in self._validators:
            self._fail(f"proposer {header.proposer} is not a genesis validator", height)

    def _check_certificate(self, block: Block, block_hash: str) -> None:
        height = block.header.height
        commit = block.commit
        if commit is None:
            self._fail("block has no commit certificate", height)
        try:
            jobs = certificate_jobs(
                commit, self._genesis.network, height, block_hash, self._validators
            )
        except ConsensusError as e:
            self._fail(str(e), height)
        for node, job in jobs:
            self._queue(job, (height, None, None, f"commit vote by {node}"))

    def _check_events(self, block: Block) -> None:
        header = block.header
        height = header.height
        block_time = parse_time(header.time)
        network = self._genesis.network
        seen: set[str] = set()
        for envelope in block.events:
            index = self._log.size
            event_id = envelope.event_id
            if event_id in seen:
                self._fail("the event appears twice in the block", height, index, event_id)
            seen.add(event_id)
            if envelope.body["network"] != network:
                self._fail(
                    f"event is for network {envelope.body['network']!r}", height, index, event_id
                )
            # A difference, not block_time + skew: that sum overflows for a block time in the
            # last minutes of year 9999, and a header is parsed before its votes are checked.
            if envelope.created_at - block_time > MAX_EVENT_CLOCK_SKEW:
                self._fail(
                    "event created_at is more than 5 minutes after the block time",
                    height,
                    index,
                    event_id,
                )
            try:
                public_keys = self._authority.signer_keys(envelope)
            except LedgerError as e:
                self._fail(_reason(e), height, index, event_id)
            jobs = envelope.signature_jobs(public_keys)
            for job, signature in zip(jobs, envelope.sigs, strict=True):
                self._queue(job, (height, index, event_id, f"signature by key {signature.key}"))
            try:
                self._authority.apply(envelope, index, block_time)
            except LedgerError as e:
                self._fail(_reason(e), height, index, event_id)
            self._log.append(leaf_hash(envelope.leaf))

    # --- signature batches ---------------------------------------------------------------

    def _queue(self, job: SignatureJob, where: _Where) -> None:
        self._jobs.append(job)
        self._where.append(where)
        if len(self._jobs) >= self._batch_size:
            self._submit()
            while len(self._pending) > self._max_pending:
                self._resolve_oldest()

    def _submit(self) -> None:
        if not self._jobs:
            return
        jobs, where = self._jobs, self._where
        self._jobs, self._where = [], []
        if self._executor is None:
            self._pending.append((_Done(verify_jobs(jobs)), where))
        else:
            self._pending.append((self._executor.submit(verify_jobs, jobs), where))

    def _resolve_oldest(self) -> None:
        future, where = self._pending.popleft()
        for ok, (height, index, event_id, what) in zip(future.result(), where, strict=True):
            if not ok:
                self._pending.clear()
                raise ChainError(
                    f"{what} does not verify", height=height, index=index, event_id=event_id
                )

    def _drain(self) -> None:
        self._submit()
        while self._pending:
            self._resolve_oldest()

    def _fail(
        self, reason: str, height: int, index: int | None = None, event_id: str | None = None
    ) -> NoReturn:
        """Raise the earliest fault: a pending signature failure comes before this one.

        Raises:
            ChainError: always.
        """
        self._drain()
        raise ChainError(reason, height=height, index=index, event_id=event_id)


def _reason(error: LedgerError) -> str:
    """A fault's reason without the event id (the report names it separately)."""
    if isinstance(error, RuleViolation):
        return f"{error.rule}: {error.detail}"
    return str(error)


def check_export(
    lines: Iterable[bytes | str],
    *,
    genesis: GenesisDocument | None = None,
    executor: Executor | None = None,
    rules: bool = True,
) -> ChainReport:
    """Verify an NDJSON export: the genesis document, then every block from height 0.

    Args:
        lines: the export's lines, each ending in a newline (the last one too).
        genesis: the genesis document the auditor trusts; when given, the export's must be
            identical. Without it, the export's own genesis document is taken as trusted.
        executor: where to run signature batches (e.g. a process pool).
        rules: also replay the supply-chain rules (who may sign what, quantities, double
            spends, duplicates). Without them only signers' keys are tracked, and memory stays
            flat; with them it grows with the ledger's state.

    Returns:
        The summary of what verified and the first fault, if any.
    """
    iterator = iter(lines)
    first = next(iterator, None)
    if first is None:
        return ChainReport(None, ChainError("the export is empty: it must start with genesis"))
    try:
        document = parse_genesis(first)
    except EncodingError as e:
        return ChainReport(None, ChainError(f"line 1 is not a valid genesis document: {e}"))
    if genesis is not None and document.digest != genesis.digest:
        return ChainReport(
            None,
            ChainError(
                f"the export's genesis document ({document.digest}) is not the trusted one "
                f"({genesis.digest})"
            ),
        )
    trusted = genesis or document
    authority = StateMachine(trusted) if rules else None
    verifier = ChainVerifier(trusted, authority=authority, executor=executor)
    try:
        for line in iterator:
            if not (line.endswith(b"\n") if isinstance(line, bytes) else line.endswith("\n")):
                verifier.finish()  # an earlier fault comes first
                raise ChainError(
                    "the export is truncated: the last line has no newline",
                    height=verifier.next_height,
                )
            verifier.add_line(line)
        verifier.finish()
    except ChainError as e:
        return ChainReport(verifier.summary(), e)
    return ChainReport(verifier.summary(), None)


def verify_export(
    lines: Iterable[bytes | str],
    *,
    genesis: GenesisDocument | None = None,
    executor: Executor | None = None,
    rules: bool = True,
) -> ChainSummary:
    """Like :func:`check_export`, but raise the first fault.

    Raises:
        ChainError: the first fault, with its height, log index and event id.
    """
    report = check_export(lines, genesis=genesis, executor=executor, rules=rules)
    if report.error is not None:
        raise report.error
    assert report.summary is not None
    return report.summary
