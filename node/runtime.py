"""One running ledger node: consensus driven by a real clock, peers over HTTP, catch-up, commits.

:class:`LedgerNode` owns the node's :class:`~node.store.Store`, the
:class:`~node.application.LedgerApplication` (mempool, block building and validation) and the
:class:`~node.consensus.Consensus` state machine, and carries out the machine's actions: what
it signs is persisted (in the database, with a full fsync) before it is sent; decided blocks
are written with their state in one transaction before anyone is told they are committed.

Peers are the other validators. Messages to each go through a queue drained by one task that
keeps a persistent HTTP connection and reconnects with backoff; everything on the wire is
signed (votes and proposals by validators, events by members, checkpoint cosignatures by
validators), so a peer's word is never needed: a node that falls behind fetches certified
blocks from any peer and checks every certificate and event itself.

Everything the HTTP API needs is a method here; the routes in ``api/`` stay thin.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import logging
import multiprocessing
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from concurrent.futures import BrokenExecutor, Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import Histogram
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from yarl import URL

from ledger.blocks import (
    Block,
    BlockHeader,
    CommitCertificate,
    GenesisDocument,
    export_of_lines,
    parse_block,
    verify_certificate,
)
from ledger.checkpoint import (
    Checkpoint,
    NoteSignature,
    format_checkpoint,
    format_note,
    sign_checkpoint,
    verify_note,
)
from ledger.encoding import canonical, format_time, parse_hex
from ledger.errors import EncodingError, LedgerError, StorageError
from ledger.events import Envelope, parse_envelope
from ledger.keys import key_id, public_key_bytes
from ledger.merkle import CompactRange
from ledger.rules import named_ids
from ledger.state import Effects, StateView
from node.application import LedgerApplication, verified
from node.consensus import (
    Action,
    Broadcast,
    CatchUp,
    Commit,
    Consensus,
    Evidence,
    Persist,
    Proposal,
    SignedState,
    Timeouts,
    Vote,
    parse_message,
)
from node.httpsig import sign_request
from node.ledger_state import CachedState, DatabaseState
from node.models import CheckpointRow, MetaRow
from node.store import Store

__all__ = [
    "DEFAULT_MAX_PENDING",
    "BatchRefusedError",
    "LedgerNode",
    "MempoolFullError",
    "Peer",
    "StoreLedger",
    "SubmitResult",
]

log = logging.getLogger("rantai.node")

_SIGNED_STATE_KEY = "consensus-signed"
_SIGNED_BLOCKS_KEY = "consensus-signed-blocks"
_PROBE_KEY = "storage-probe"
_EVIDENCE_KEY = "consensus-evidence"
DEFAULT_MAX_PENDING = 10_000
"""The most pending events a node admits from clients (five full blocks); more answer ``503``
until blocks catch up. Events relayed by peers are bounded by the peers' own limits."""
_CATCH_UP_BATCH = 64
_PEER_BATCH = 256
"""The most consensus messages and cosignatures in one request to a peer."""
_EVENT_BATCH = 256
"""The most events in one request to a peer: a peer handles a request whole, so a consensus
message arriving meanwhile waits for at most this many events' checks. 64 cut that wait but
cost a sixth of the network's throughput in requests (D34)."""
_PEER_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=2.0, sock_read=10.0)
"""Two seconds to connect, then ten for each read: an export of many large blocks may take
longer than that in all, and a batch asked for ahead waits while the node checks another."""
_STATUS_TIMEOUT = aiohttp.ClientTimeout(total=2.0)
_PEER_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)
"""What a request to a peer raises when the peer is unreachable, slow or answers an error."""


# --- the committed ledger in the database ---------------------------------------------------


class StoreLedger:
    """The :class:`~node.application.CommittedLedger` of a node: its :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._head = store.header(store.head().height)
        self._state = CachedState(DatabaseState(store.engine))

    @property
    def head(self) -> BlockHeader:
        return self._head

    @property
    def log(self) -> CompactRange:
        return self.store.log

    @property
    def state(self) -> StateView:
        return self._state

    def commit(self, block: Block, effects: Effects) -> None:
        self.store.append_block(block, effects)
        self._state.apply(effects)
        self._head = block.header

    def prefetch(self, envelopes: Sequence[Envelope]) -> None:
        named: dict[str, set[str]] = {"lot": set(), "shipment": set(), "epcis": set()}
        for envelope in envelopes:
            for kind, ids in named_ids(envelope).items():
                named[kind] |= ids
        self._state.prefetch([e.event_id for e in envelopes], named)

    def certificate(self, height: int) -> CommitCertificate | None:
        return self.store.certificate(height)

    def replace_certificate(self, height: int, certificate: CommitCertificate) -> None:
        self.store.replace_certificate(height, certificate)


# --- persisted signing state ---------------------------------------------------------------


def _signed_to_json(state: SignedState) -> tuple[dict[str, Any], dict[str, Block]]:
    """The persisted form of ``state``, with blocks named by hash, and those blocks.

    Blocks are stored apart because they are large and change rarely within a height, while
    the votes around them change at every step.
    """
    blocks: dict[str, Block] = {}

    def ref(block: Block | None) -> str | None:
        if block is None:
            return None
        blocks[block.header.block_hash] = block
        return block.header.block_hash

    for proposal in state.proposals.values():
        ref(proposal.block)
    value = {
        "height": state.height,
        "votes": [v.to_json() for v in state.votes.values()],
        "proposals": [p.to_json(with_block=False) for p in state.proposals.values()],
        "locked_round": state.locked_round,
        "locked_block": ref(state.locked_block),
        "valid_round": state.valid_round,
        "valid_block": ref(state.valid_block),
        "valid_votes": [v.to_json() for v in state.valid_votes],
    }
    return value, blocks


def _drop(task: asyncio.Future[Any]) -> None:
    """Cancel a task or future no longer wanted, or take its exception if it already failed
    (asyncio logs one never taken)."""
    if task.done():
        if not task.cancelled():
            task.exception()
    else:
        task.cancel()


def _signed_blocks_json(blocks: dict[str, Block]) -> bytes:
    """The blocks of :func:`_signed_to_json` as one JSON object ``{hash: block}`` (JCS), each
    block as in an export with a ``null`` certificate: written from its events' leaves, not
    encoded again (a validator stores the block it locks on at every height)."""
    return b"{%s}" % b",".join(
        b'"%s":%s' % (block_hash.encode(), Block(block.header, block.events, None).canonical_bytes)
        for block_hash, block in sorted(blocks.items())
    )


def _signed_from_json(value: dict[str, Any], blocks: dict[str, Any]) -> SignedState:
    def block_of(raw: Any) -> Block | None:
        return None if raw is None else parse_block({**blocks[raw], "commit": None})

    def proposal_of(raw: dict[str, Any]) -> Any:
        stored = blocks[raw["block"]]  # "commit": null, or none (older nodes)
        block = {"header": stored["header"], "events": stored["events"]}
        return parse_message({**raw, "block": block})

    votes = [parse_message(v) for v in value["votes"]]
    proposals = [proposal_of(p) for p in value["proposals"]]
    valid_votes = [parse_message(v) for v in value["valid_votes"]]
    return SignedState(
        height=value["height"],
        votes={(v.round, v.type): v for v in votes if isinstance(v, Vote)},
        proposals={p.round: p for p in proposals if isinstance(p, Proposal)},
        locked_round=value["locked_round"],
        locked_block=block_of(value["locked_block"]),
        valid_round=value["valid_round"],
        valid_block=block_of(value["valid_block"]),
        valid_votes=tuple(v for v in valid_votes if isinstance(v, Vote)),
    )


# --- the node ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Peer:
    """Another validator and where to reach it."""

    name: str
    url: str
    key_id: str


@dataclass
class _PeerLink:
    """What goes to one peer, in two lanes with a sender each, so that a vote or a proposal
    never waits behind a batch of events (on the wire, or in the peer's handling of it)."""

    peer: Peer
    outbox: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    """Consensus messages and checkpoint cosignatures, ready for the wire: each encoded once,
    whatever the number of peers."""
    events: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    """Events to share, ready for the wire."""
    connected: bool = False
    height: int = 0


class BatchRefusedError(LedgerError):
    """A batch was refused: ``refused`` holds each refused event's position, envelope, error."""

    def __init__(self, refused: list[tuple[int, Envelope, LedgerError]]) -> None:
        first = refused[0][2]
        super().__init__(f"{len(refused)} event(s) refused, the first: {first}")
        self.refused = refused


class MempoolFullError(LedgerError):
    """The node holds as many pending events as it takes; try again shortly (``503``)."""


_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Timings:
    """How long a node's steps take: Prometheus histograms, served by ``/metrics``.

    They say where a block's time goes: the writes that must finish before a vote is sent or
    a commit is acknowledged, the handling of what peers send (proposals are validated there),
    and the time from one commit to the next.
    """

    def __init__(self) -> None:
        def histogram(name: str, documentation: str) -> Histogram:
            return Histogram(name, documentation, buckets=_SECONDS, registry=None)

        self.persist = histogram(
            "rantai_vote_persist_seconds", "Writing what this validator signs before sending it"
        )
        self.commit = histogram(
            "rantai_block_commit_seconds", "Storing a decided block with its state"
        )
        self.receive = histogram(
            "rantai_peer_batch_seconds", "Handling one batch of peer messages and events"
        )
        self.height = histogram("rantai_height_seconds", "From one commit to the next")
        self._last_commit: float | None = None

    def committed(self, now: float) -> None:
        """A block was committed at ``now`` (monotonic seconds)."""
        if self._last_commit is not None:
            self.height.observe(now - self._last_commit)
        self._last_commit = now

    def all(self) -> tuple[Histogram, ...]:
        """Every histogram."""
        return (self.persist, self.commit, self.receive, self.height)


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """What became of a batch: each event's id and status, and where committed events sit."""

    events: list[dict[str, Any]]
    committed: bool


class LedgerNode:
    """A validator node (see the module docstring).

    Args:
        genesis: the network.
        store: the node's opened and initialised store.
        private_key: the validator key.
        name: the validator's name (its genesis key name).
        peers: the other validators.
        timeouts: consensus timeouts.
        max_block_events: the most events one block takes.
        max_pending_events: the most pending events admitted from clients.
    """

    def __init__(
        self,
        genesis: GenesisDocument,
        store: Store,
        private_key: Ed25519PrivateKey,
        name: str,
        peers: Sequence[Peer],
        timeouts: Timeouts | None = None,
        max_block_events: int = 2000,
        max_pending_events: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self.genesis = genesis
        self._max_pending = max_pending_events
        self.timings = Timings()
        self.store = store
        self.name = name
        self._key = private_key
        self.node_id = key_id(public_key_bytes(private_key))
        self.ledger = StoreLedger(store)
        self.app = LedgerApplication(
            genesis, self.ledger, self.node_id, self._wall_clock, max_block_events
        )
        self._timeouts = timeouts
        self.fault: str | None = None
        """Why the last write failed, while the node cannot store (see :meth:`_fault`)."""
        signed = self._load_signed()
        self.consensus = Consensus(
            genesis, private_key, self.app, self.ledger.head.height + 1, signed, timeouts
        )
        self.evidence: list[dict[str, Any]] = self._load_evidence()
        self._persisted_blocks: set[str] | None = None
        self._links = {p.key_id: _PeerLink(p) for p in peers}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._cosignatures: dict[int, dict[str, NoteSignature]] = {}
        self._note_verifiers = {v.name: v for v in genesis.note_verifiers}
        newest = self.checkpoint()
        self._newest_checkpoint = -1 if newest is None else int(newest.split(b"\n")[1])
        self._tasks: list[asyncio.Task[None]] = []
        self._catch_up_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopped = False
        self._client: aiohttp.ClientSession | None = None

    # --- lifecycle -----------------------------------------------------------------------

    @staticmethod
    def _wall_clock() -> _dt.datetime:
        return _dt.datetime.now(_dt.UTC)

    @staticmethod
    def _monotonic() -> float:
        return time.monotonic()

    async def start(self) -> None:
        """Start consensus, the timer loop and two senders per peer (see :class:`_PeerLink`)."""
        self._client = aiohttp.ClientSession(timeout=_PEER_TIMEOUT)
        self._act(self.consensus.start(self._monotonic()))
        self._tasks.append(asyncio.create_task(self._timer_loop(), name="consensus-timers"))
        for link in self._links.values():
            for queue, batch, lane in (
                (link.outbox, _PEER_BATCH, "consensus"),
                (link.events, _EVENT_BATCH, "events"),
            ):
                sender = self._sender(link, queue, batch)
                self._tasks.append(
                    asyncio.create_task(sender, name=f"peer-{link.peer.name}-{lane}")
                )
        self._tasks.append(asyncio.create_task(self._status_loop(), name="peer-status"))

    async def stop(self) -> None:
        """Stop every task and close connections (the database stays consistent throughout)."""
        self._stopped = True
        tasks = [*self._tasks, *([self._catch_up_task] if self._catch_up_task else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None:
            await self._client.close()

    async def _timer_loop(self) -> None:
        while not self._stopped:
            deadline = self.consensus.next_deadline
            delay = 0.5 if deadline is None else max(0.0, deadline - self._monotonic())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=min(delay, 0.5))
            self._act(self.consensus.tick(self._monotonic()))

    # --- carrying out consensus actions --------------------------------------------------

    def _act(self, actions: list[Action]) -> None:
        """Carry out consensus actions in order; a storage fault drops the rest of them.

        What follows a failed write must not happen: a vote whose persisting failed is never
        sent, and nothing after a block that could not be stored runs (see :meth:`_fault`).
        """
        if self.fault is not None:
            return
        try:
            for action in actions:
                if isinstance(action, Persist):
                    with self.timings.persist.time():
                        self._persist_signed(action.state)
                elif isinstance(action, Broadcast):
                    self._broadcast("message", action.message.to_json())
                elif isinstance(action, Commit):
                    with self.timings.commit.time():
                        self._commit(action.block, action.certificate, action.parent_certificate)
                elif isinstance(action, CatchUp):
                    self._start_catch_up()
                elif isinstance(action, Evidence):
                    self.evidence.append(action.to_json())
                    self._save_meta({_EVIDENCE_KEY: self.evidence})
        except StorageError as e:
            self._fault(e)
        self._wake.set()

    # --- storage faults ------------------------------------------------------------------

    def _fault(self, error: StorageError) -> None:
        """A write failed (disk full, read-only database…): stop taking part in consensus.

        Every write is one transaction, so nothing partial was stored. The node keeps
        serving reads and answers writes with ``503`` until :meth:`_recover` succeeds.
        """
        if self.fault is None:
            log.error("storage fault; not voting until writes succeed again: %s", error)
        self.fault = str(error)

    def _recover(self) -> None:
        """Try a write; once one succeeds, rejoin consensus from the stored head.

        The consensus machine is rebuilt from the database exactly as after a restart (the
        votes it had persisted included), so whatever it held in memory beyond the failed
        write — a vote never persisted, a block never stored — is forgotten, never sent.
        """
        try:
            self._save_meta({_PROBE_KEY: format_time(self._wall_clock().replace(microsecond=0))})
            signed = self._load_signed()
        except StorageError as e:
            self.fault = str(e)
            return
        height = self.ledger.head.height + 1
        if signed is not None and signed.height != height:
            signed = None
        self.consensus = Consensus(
            self.genesis, self._key, self.app, height, signed, self._timeouts
        )
        self.fault = None
        log.warning("storage writes succeed again; rejoining consensus at height %d", height)
        self._act(self.consensus.start(self._monotonic()))

    def _commit(
        self,
        block: Block,
        certificate: CommitCertificate,
        parent_certificate: CommitCertificate | None = None,
        *,
        cosign: bool = True,
    ) -> None:
        self.app.commit(block, certificate, parent_certificate)
        self.timings.committed(self._monotonic())
        header = block.header
        log.info("committed height %d (%d events)", header.height, header.event_count)
        for envelope in block.events:
            for waiter in self._waiters.pop(envelope.event_id, []):
                if not waiter.done():
                    waiter.set_result(None)
        if cosign:
            self._cosign(header)

    def _broadcast(self, kind: str, payload: dict[str, Any]) -> None:
        item = json.dumps({"kind": kind, "body": payload}, separators=(",", ":")).encode()
        for link in self._links.values():
            (link.events if kind == "event" else link.outbox).put_nowait(item)

    # --- peers ---------------------------------------------------------------------------

    def _signed_headers(self, method: str, url: URL, body: bytes = b"") -> dict[str, str]:
        """The headers of a request to a peer: its RFC 9421 signature by the validator key
        (over the path and query as aiohttp sends them: ``url.raw_path_qs``), and the body's
        type."""
        created = int(self._wall_clock().timestamp())
        headers = sign_request(method, url.raw_path_qs, body, self._key, self.node_id, created)
        if body:
            headers["content-type"] = "application/json"
        return headers

    async def _peer_request(
        self,
        method: str,
        url: str,
        body: bytes = b"",
        timeout: aiohttp.ClientTimeout = _PEER_TIMEOUT,
    ) -> bytes:
        """A request to a peer, signed with the validator key (RFC 9421: a peer's inbox, status
        and export answer validators only, ``api.access``); the response body.

        The node's one client session keeps a connection to each peer. It is aiohttp's, which
        costs a fifth of the CPU time of httpx's for one of these requests (D38): a validator
        sends about seventy a second under load.

        Raises:
            aiohttp.ClientError, TimeoutError, OSError: unreachable, too slow, or an error
                status (:data:`_PEER_ERRORS`).
        """
        assert self._client is not None
        target = URL(url)
        async with self._client.request(
            method,
            target,
            data=body or None,
            headers=self._signed_headers(method, target, body),
            timeout=timeout,
        ) as response:
            response.raise_for_status()
            return await response.read()

    async def _sender(self, link: _PeerLink, queue: asyncio.Queue[bytes], most: int) -> None:
        """Send what ``queue`` holds to the peer, up to ``most`` items a request, one request
        at a time; retry with backoff while the peer is unreachable."""
        backoff = 0.1
        while not self._stopped:
            batch = [await queue.get()]
            while not queue.empty() and len(batch) < most:
                batch.append(queue.get_nowait())
            body = b'{"from":"%s","items":[%s]}' % (self.node_id.encode(), b",".join(batch))
            while not self._stopped:
                try:
                    await self._peer_request("POST", f"{link.peer.url}/v1/peer/inbox", body)
                    link.connected = True
                    backoff = 0.1
                    break
                except _PEER_ERRORS:
                    link.connected = False
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    if queue.qsize() > 10_000:  # a peer down for long: it will catch up
                        break

    async def _status_loop(self) -> None:
        """Ask peers their height at start and then every second; catch up when a peer is two
        blocks ahead, or one block ahead while our head did not move since the last round (a
        peer one block ahead is normal: it stored the block we are storing)."""
        previous_head = -1
        while not self._stopped:
            if self.fault is not None:
                self._recover()
            for link in self._links.values():
                try:
                    status = await self._peer_request(
                        "GET", f"{link.peer.url}/v1/status", timeout=_STATUS_TIMEOUT
                    )
                    link.height = int(json.loads(status)["height"])
                    link.connected = True
                except (*_PEER_ERRORS, ValueError, KeyError, TypeError):
                    link.connected = False
            highest = max((link.height for link in self._links.values()), default=0)
            head = self.ledger.head.height
            if highest > head + 1 or (highest > head and head == previous_head):
                self._start_catch_up()
            previous_head = head
            await asyncio.sleep(1.0)

    def receive(self, items: list[dict[str, Any]]) -> None:
        """Take a batch from a peer: consensus messages, events, checkpoint cosignatures.

        Malformed or unauthentic items are dropped one by one (a peer cannot make us fail).
        """
        with self.timings.receive.time():
            self._receive_items(items)

    def _receive_items(self, items: list[dict[str, Any]]) -> None:
        now = self._monotonic()
        events: dict[int, Envelope] = {}
        for position, item in enumerate(items):
            if item.get("kind") == "event":
                try:
                    events[position] = parse_envelope(item.get("body"))
                except LedgerError as e:
                    log.debug("dropped an event from a peer: %s", e)
        self.ledger.prefetch(list(events.values()))
        notify = False
        for position, item in enumerate(items):
            kind, body = item.get("kind"), item.get("body")
            try:
                if kind == "message":
                    message = parse_message(body, held=self.app.held)
                    self._act(self.consensus.handle(message, now))
                elif position in events:
                    notify |= self.app.submit(events[position]).status == "pending"
                elif kind == "cosignature":
                    self._receive_cosignature(body)
            except LedgerError as e:
                log.debug("dropped a %s from a peer: %s", kind, e)
        if notify:
            self._act(self.consensus.notify(now))

    def _start_catch_up(self) -> None:
        if (self._catch_up_task is None or self._catch_up_task.done()) and not self._stopped:
            self._catch_up_task = asyncio.create_task(self._catch_up(), name="catch-up")

    async def _catch_up(self) -> None:
        """Fetch certified blocks from peers, checking every certificate and event.

        The next batch is asked for while this one is checked, so that the peer reads and
        sends it meanwhile, and the node yields between blocks, so that it arrives (and
        consensus messages are handled) while the node checks and stores blocks. A node more
        than a batch behind checks event signatures ahead in a worker process (see
        :meth:`_adopt_lines`), started for this catch-up and stopped after it.
        """
        links = sorted(self._links.values(), key=lambda peer: -peer.height)
        behind = max((link.height for link in links), default=0) - self.ledger.head.height
        verifier = (
            ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            if behind > _CATCH_UP_BATCH
            else None
        )
        try:
            for link in links:
                await self._catch_up_from(link, verifier)
        finally:
            if verifier is not None:
                verifier.shutdown(wait=False, cancel_futures=True)

    async def _catch_up_from(self, link: _PeerLink, verifier: Executor | None) -> None:
        """Adopt the blocks one peer holds beyond our head, until it serves a bad one or
        cannot be reached (a batch asked for ahead that failed is asked for again, once)."""
        ahead: tuple[int, asyncio.Task[bytes]] | None = None
        try:
            while link.height > self.ledger.head.height:
                start = max(self.ledger.head.height, 1)
                asked: asyncio.Task[bytes] | None = None
                if ahead is not None:
                    if ahead[0] == start:
                        asked = ahead[1]
                    else:
                        _drop(ahead[1])
                    ahead = None
                try:
                    export = await (asked or self._export(link, start))
                except _PEER_ERRORS:
                    if asked is None:
                        break
                    continue  # asked ahead, maybe too long ago: ask again now
                lines = export.splitlines()[1:]
                following = start + len(lines) - 1  # our head once all of them are in
                if len(lines) > 1 and following < link.height:
                    ahead = following, asyncio.create_task(self._export(link, following))
                if not await self._adopt_lines(lines, verifier):
                    break
        finally:
            if ahead is not None:
                _drop(ahead[1])

    async def _export(self, link: _PeerLink, start: int) -> bytes:
        """Blocks ``start`` to ``start + _CATCH_UP_BATCH`` from a peer's export."""
        query = urllib.parse.urlencode({"from": start, "to": start + _CATCH_UP_BATCH})
        return await self._peer_request("GET", f"{link.peer.url}/v1/export?{query}")

    async def _adopt_lines(self, lines: list[bytes], verifier: Executor | None = None) -> bool:
        """Settle our head and adopt the blocks after it, cosigning the last one adopted.
        False if one was refused (the peer is not asked again this time) or none was new.

        With a ``verifier``, the event signatures of each block are checked there, ahead,
        while this process applies and stores the blocks before it; if the verifier fails,
        they are checked in-line, as without one. A worker thread would not do: between two
        verifications it waits for the GIL, which the node's own work holds (measured: no
        faster than checking in-line).
        """
        blocks: list[Block] = []
        for line in lines:
            try:
                blocks.append(parse_block(line))
            except LedgerError as e:
                log.warning("refused a block from a peer: %s", e)
                break
        checks = self._check_ahead(blocks, verifier)
        ahead = bool(checks)
        last: BlockHeader | None = None
        refused = False
        try:
            for position, block in enumerate(blocks):
                if self._settle(block) or block.header.height <= self.ledger.head.height:
                    continue
                if ahead:
                    try:
                        self.app.take_verified(await checks[position])
                    except Exception as e:  # the worker process failed: check in-line
                        log.warning("signature checks ahead failed, checking in-line: %r", e)
                        ahead = False
                    if block.header.height <= self.ledger.head.height:
                        continue  # consensus committed it meanwhile
                if not self._adopt(block):
                    refused = True
                    break
                last = block.header
                await asyncio.sleep(0)  # the next batch arrives, peers' messages are handled
        finally:
            for check in checks:
                _drop(check)
        if last is not None:
            self._cosign_adopted(last)
        return last is not None and not refused and len(blocks) == len(lines)

    def _cosign_adopted(self, header: BlockHeader) -> None:
        """Cosign the checkpoint of the last block adopted from a peer, if it is still our head.

        The blocks adopted before it are not cosigned: the validators that committed them
        through consensus have, and a cosignature of each would cost every peer a database
        read, most often to find a quorum's checkpoint there already (D43).
        """
        if self.fault is not None or header.block_hash != self.ledger.head.block_hash:
            return
        try:
            self._cosign(header)
        except StorageError as e:
            self._fault(e)

    def _check_ahead(
        self, blocks: list[Block], verifier: Executor | None
    ) -> list[asyncio.Future[list[Any]]]:
        """Each block's event signatures sent to ``verifier`` (none if there is none, or if it
        takes no more work: it failed)."""
        if verifier is None:
            return []
        loop = asyncio.get_running_loop()
        checks: list[asyncio.Future[list[Any]]] = []
        try:
            for jobs in self.app.signature_jobs(blocks):
                checks.append(loop.run_in_executor(verifier, verified, jobs))
        except (BrokenExecutor, RuntimeError) as e:  # a dead or shut-down worker
            log.warning("cannot check signatures ahead, checking in-line: %r", e)
            for check in checks:
                _drop(check)
            return []
        return checks

    def _settle(self, block: Block) -> bool:
        """Our head as a peer ahead of us holds it: take its certificate (settled by the next
        block's decision, see ``node.consensus.Proposal.last_commit``). True if it was our head.
        """
        head = self.ledger.head
        if block.header.height != head.height or block.header.block_hash != head.block_hash:
            return False
        certificate = block.commit
        if certificate is not None and certificate != self.ledger.certificate(head.height):
            with contextlib.suppress(LedgerError):
                verify_certificate(
                    certificate,
                    self.genesis.network,
                    head.height,
                    head.block_hash,
                    self.genesis.validator_keys,
                )
                self.ledger.replace_certificate(head.height, certificate)
        return True

    def _adopt(self, block: Block) -> bool:
        """Commit a block fetched from a peer if its certificate and events check out (its
        checkpoint is not cosigned: see :meth:`_cosign_adopted`)."""
        try:
            header = block.header
            if header.height != self.ledger.head.height + 1 or block.commit is None:
                return False
            verify_certificate(
                block.commit,
                self.genesis.network,
                header.height,
                header.block_hash,
                self.genesis.validator_keys,
            )
            self._commit(block, block.commit, cosign=False)
        except StorageError as e:
            self._fault(e)
            return False
        except LedgerError as e:
            log.warning("refused a block from a peer: %s", e)
            return False
        self._act(self.consensus.committed_elsewhere(block, self._monotonic()))
        return True

    # --- checkpoints ---------------------------------------------------------------------

    def _cosign(self, header: BlockHeader) -> None:
        checkpoint = Checkpoint(
            self.genesis.origin, header.tree_size, bytes.fromhex(header.tree_root)
        )
        signature = sign_checkpoint(checkpoint, self.name, self._key)
        self._add_cosignature(header.tree_size, header.tree_root, signature)
        self._broadcast(
            "cosignature",
            {
                "size": header.tree_size,
                "root": header.tree_root,
                "name": signature.name,
                "signature": signature.signature.hex(),
            },
        )

    def _receive_cosignature(self, body: Any) -> None:
        if type(body) is not dict:
            raise EncodingError("a cosignature must be an object")
        size, root, name = body.get("size"), body.get("root"), body.get("name")
        if type(size) is not int or size < 0 or type(name) is not str:
            raise EncodingError("a cosignature names a size, a root and a validator")
        root = parse_hex(root, 32, "cosignature.root").hex()
        verifier = self._note_verifiers.get(name)
        if verifier is None:
            raise EncodingError("a cosignature by an unknown validator")
        raw = parse_hex(body.get("signature"), 64, "cosignature.signature")
        self._add_cosignature(size, root, NoteSignature(verifier.name, verifier.key_id, raw))

    def _add_cosignature(self, size: int, root: str, signature: NoteSignature) -> None:
        head = self.ledger.head
        if size > head.tree_size or signature.name in self._cosignatures.get(size, {}):
            return
        if size <= self._newest_checkpoint and self._has_checkpoint(size):
            return
        if size == head.tree_size:
            expected: str | None = head.tree_root
        else:
            expected = self.store.root(size).hex() if size else None
        if expected is not None and expected != root:
            return
        text = format_checkpoint(Checkpoint(self.genesis.origin, size, bytes.fromhex(root)))
        note = format_note(text, [signature])
        try:
            verify_note(note, list(self._note_verifiers.values()), 1)
        except LedgerError:
            return
        signatures = self._cosignatures.setdefault(size, {})
        signatures[signature.name] = signature
        if len(signatures) >= self.genesis.quorum:
            cosigned = format_note(text, sorted(signatures.values(), key=lambda s: s.name))
            self._store_checkpoint(size, cosigned)
            self._newest_checkpoint = max(self._newest_checkpoint, size)
            for old in [s for s in self._cosignatures if s <= size]:
                del self._cosignatures[old]

    def _has_checkpoint(self, size: int) -> bool:
        try:
            with Session(self.store.engine) as session:
                return session.get(CheckpointRow, size) is not None
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read checkpoints: {e}") from e

    def _store_checkpoint(self, size: int, note: bytes) -> None:
        try:
            with Session(self.store.engine) as session, session.begin():
                if session.get(CheckpointRow, size) is None:
                    session.add(CheckpointRow(size=size, note=note.decode()))
        except SQLAlchemyError as e:
            raise StorageError(f"cannot store the checkpoint of size {size}: {e}") from e

    def checkpoint(self, size: int | None = None) -> bytes | None:
        """The newest cosigned checkpoint (or the one for ``size``), as a signed note."""
        with Session(self.store.engine) as session:
            query = select(CheckpointRow)
            query = (
                query.where(CheckpointRow.size == size)
                if size is not None
                else query.order_by(CheckpointRow.size.desc()).limit(1)
            )
            row = session.scalars(query).first()
        return None if row is None else row.note.encode()

    # --- clients -------------------------------------------------------------------------

    def _forget_waiters(self, futures: dict[str, asyncio.Future[None]]) -> None:
        """Stop waiting for events that were not committed in time (they may never be)."""
        for event_id, future in futures.items():
            if not future.done():
                waiting = self._waiters.get(event_id, [])
                if future in waiting:
                    waiting.remove(future)
                if not waiting:
                    self._waiters.pop(event_id, None)

    async def submit(
        self, envelopes: list[Envelope], *, wait: bool, timeout: float
    ) -> SubmitResult:
        """Admit a batch, all or nothing, and optionally wait until it is committed.

        Raises:
            BatchRefusedError: an event is refused (nothing was admitted).
            MempoolFullError: the batch would take the node over its pending events.
            StorageError: the node cannot store blocks now (see :meth:`_fault`).
        """
        if self.fault is not None:
            raise StorageError(f"this node cannot store blocks now: {self.fault}")
        if self.app.pending_count + len(envelopes) > self._max_pending:
            raise MempoolFullError(
                f"{self.app.pending_count} events are waiting for a block (at most "
                f"{self._max_pending}); try again in a second"
            )
        admissions, refused = self.app.submit_batch(envelopes)
        if refused:
            raise BatchRefusedError(refused)
        for envelope, admission in zip(envelopes, admissions, strict=True):
            if admission.status == "pending":
                self._broadcast("event", envelope.to_json())
        self._act(self.consensus.notify(self._monotonic()))
        if wait:
            loop = asyncio.get_running_loop()
            futures: dict[str, asyncio.Future[None]] = {}
            for admission in admissions:
                if self.ledger.state.event_index(admission.event_id) is None:
                    future: asyncio.Future[None] = loop.create_future()
                    self._waiters.setdefault(admission.event_id, []).append(future)
                    futures[admission.event_id] = future
            if futures:
                await asyncio.wait(futures.values(), timeout=timeout)
                self._forget_waiters(futures)
        where = self.store.locations([a.event_id for a in admissions])
        results: list[dict[str, Any]] = []
        for admission in admissions:
            event_id = admission.event_id
            if event_id in where:
                height, index = where[event_id]
                results.append(
                    {"event_id": event_id, "status": "committed", "height": height, "index": index}
                )
            else:
                results.append({"event_id": event_id, "status": "pending"})
        return SubmitResult(results, all(r["status"] == "committed" for r in results))

    def check_batch(self, envelopes: list[Envelope]) -> list[tuple[int, Envelope, LedgerError]]:
        """Check a batch against the state and the batch's earlier events, changing nothing."""
        return self.app.submit_batch(envelopes, admit=False)[1]

    def status(self) -> dict[str, Any]:
        """The ``GET /v1/status`` document."""
        head = self.ledger.head
        return {
            "name": self.name,
            "network": self.genesis.network,
            "origin": self.genesis.origin,
            "height": head.height,
            "block_hash": head.block_hash,
            "tree_size": head.tree_size,
            "tree_root": head.tree_root,
            "validators": [{"name": v.name, "key_id": v.key_id} for v in self.genesis.validators],
            "peers": [
                {
                    "name": link.peer.name,
                    "url": link.peer.url,
                    "connected": link.connected,
                    "height": link.height,
                }
                for link in self._links.values()
            ],
            "evidence": self.evidence,
            "fault": self.fault,
            "consensus": {
                "height": self.consensus.height,
                "round": self.consensus.round,
                "step": ("propose", "prevote", "precommit")[self.consensus.step],
                "pending_events": self.app.pending_count,
            },
        }

    def export(self, start: int, end: int | None) -> Iterator[bytes]:
        """NDJSON lines: the genesis document, then blocks ``start..end`` (inclusive)."""
        last = self.store.head().height if end is None else min(end, self.store.head().height)
        return export_of_lines(self.genesis, self.store.block_lines(start, last))

    # --- persistence ---------------------------------------------------------------------

    def _persist_signed(self, state: SignedState) -> None:
        value, blocks = _signed_to_json(state)
        rows: dict[str, Any] = {_SIGNED_STATE_KEY: value}
        if set(blocks) != self._persisted_blocks:
            rows[_SIGNED_BLOCKS_KEY] = _signed_blocks_json(blocks)
        self._save_meta(rows)
        self._persisted_blocks = set(blocks)

    def _save_meta(self, rows: dict[str, Any]) -> None:
        """Write meta rows in one transaction (with the store's full fsync); a value given as
        ``bytes`` is JSON already."""
        try:
            with Session(self.store.engine) as session, session.begin():
                for key, value in rows.items():
                    row = session.get(MetaRow, key)
                    text = (value if isinstance(value, bytes) else canonical(value)).decode()
                    if row is None:
                        session.add(MetaRow(key=key, value=text))
                    else:
                        row.value = text
        except SQLAlchemyError as e:
            raise StorageError(f"cannot persist {', '.join(rows)}: {e}") from e

    def _load_meta(self, key: str) -> Any:
        try:
            with Session(self.store.engine) as session:
                row = session.get(MetaRow, key)
                return None if row is None else json.loads(row.value)
        except SQLAlchemyError as e:
            raise StorageError(f"cannot read {key}: {e}") from e

    def _load_signed(self) -> SignedState | None:
        raw = self._load_meta(_SIGNED_STATE_KEY)
        try:
            blocks = self._load_meta(_SIGNED_BLOCKS_KEY) or {}
            return None if raw is None else _signed_from_json(raw, blocks)
        except (LedgerError, KeyError, TypeError, ValueError) as e:
            raise StorageError(f"the persisted consensus state is unreadable: {e}") from e

    def _load_evidence(self) -> list[dict[str, Any]]:
        raw = self._load_meta(_EVIDENCE_KEY)
        return list(raw) if isinstance(raw, list) else []
