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
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from ledger.blocks import (
    Block,
    BlockHeader,
    CommitCertificate,
    GenesisDocument,
    export_lines,
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
from ledger.encoding import canonical
from ledger.errors import EncodingError, LedgerError, StorageError
from ledger.events import Envelope, parse_envelope
from ledger.keys import key_id, public_key_bytes
from ledger.merkle import CompactRange
from ledger.rules import StateMachine, verify_event_signatures
from ledger.state import Effects, Overlay, StateView
from node.application import Admission, LedgerApplication
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
from node.ledger_state import CachedState, DatabaseState
from node.models import CheckpointRow, MetaRow
from node.store import Store

__all__ = ["LedgerNode", "Peer", "StoreLedger", "SubmitResult"]

log = logging.getLogger("rantai.node")

_SIGNED_STATE_KEY = "consensus-signed"
_EVIDENCE_KEY = "consensus-evidence"
_CATCH_UP_BATCH = 64
_PEER_BATCH = 256


# --- the committed ledger in the database ---------------------------------------------------


class StoreLedger:
    """The :class:`~node.application.CommittedLedger` of a node: its :class:`Store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._head = store.block(store.head().height).header
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

    def certificate(self, height: int) -> CommitCertificate | None:
        return self.store.certificate(height)

    def replace_certificate(self, height: int, certificate: CommitCertificate) -> None:
        self.store.replace_certificate(height, certificate)


# --- persisted signing state ---------------------------------------------------------------


def _signed_to_json(state: SignedState) -> dict[str, Any]:
    def block_json(block: Block | None) -> dict[str, Any] | None:
        return None if block is None else block.to_json()

    return {
        "height": state.height,
        "votes": [v.to_json() for v in state.votes.values()],
        "proposals": [p.to_json() for p in state.proposals.values()],
        "locked_round": state.locked_round,
        "locked_block": block_json(state.locked_block),
        "valid_round": state.valid_round,
        "valid_block": block_json(state.valid_block),
        "valid_votes": [v.to_json() for v in state.valid_votes],
    }


def _signed_from_json(value: dict[str, Any]) -> SignedState:
    votes = [parse_message(v) for v in value["votes"]]
    proposals = [parse_message(p) for p in value["proposals"]]
    valid_votes = [parse_message(v) for v in value["valid_votes"]]

    def block_of(raw: Any) -> Block | None:
        return None if raw is None else parse_block(raw)

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
    peer: Peer
    outbox: asyncio.Queue[tuple[str, dict[str, Any]]] = field(default_factory=asyncio.Queue)
    connected: bool = False
    height: int = 0


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
    ) -> None:
        self.genesis = genesis
        self.store = store
        self.name = name
        self._key = private_key
        self.node_id = key_id(public_key_bytes(private_key))
        self.ledger = StoreLedger(store)
        self.app = LedgerApplication(
            genesis, self.ledger, self.node_id, self._wall_clock, max_block_events
        )
        signed = self._load_signed()
        self.consensus = Consensus(
            genesis, private_key, self.app, self.ledger.head.height + 1, signed, timeouts
        )
        self.evidence: list[dict[str, Any]] = self._load_evidence()
        self._links = {p.key_id: _PeerLink(p) for p in peers}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._cosignatures: dict[int, dict[str, NoteSignature]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._catching_up = False
        self._stopped = False
        self._client: httpx.AsyncClient | None = None

    # --- lifecycle -----------------------------------------------------------------------

    @staticmethod
    def _wall_clock() -> _dt.datetime:
        return _dt.datetime.now(_dt.UTC)

    @staticmethod
    def _monotonic() -> float:
        return time.monotonic()

    async def start(self) -> None:
        """Start consensus, the timer loop and one sender per peer."""
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=2.0))
        self._act(self.consensus.start(self._monotonic()))
        self._tasks.append(asyncio.create_task(self._timer_loop(), name="consensus-timers"))
        for link in self._links.values():
            sender = self._sender(link)
            self._tasks.append(asyncio.create_task(sender, name=f"peer-{link.peer.name}"))
        self._tasks.append(asyncio.create_task(self._status_loop(), name="peer-status"))

    async def stop(self) -> None:
        """Stop every task and close connections (the database stays consistent throughout)."""
        self._stopped = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None:
            await self._client.aclose()

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
        for action in actions:
            if isinstance(action, Persist):
                self._save_meta(_SIGNED_STATE_KEY, _signed_to_json(action.state))
            elif isinstance(action, Broadcast):
                self._broadcast("message", action.message.to_json())
            elif isinstance(action, Commit):
                self._commit(action.block, action.certificate, action.parent_certificate)
            elif isinstance(action, CatchUp):
                self._start_catch_up()
            elif isinstance(action, Evidence):
                self.evidence.append(action.to_json())
                self._save_meta(_EVIDENCE_KEY, self.evidence)
        self._wake.set()

    def _commit(
        self,
        block: Block,
        certificate: CommitCertificate,
        parent_certificate: CommitCertificate | None = None,
    ) -> None:
        self.app.commit(block, certificate, parent_certificate)
        header = block.header
        log.info("committed height %d (%d events)", header.height, header.event_count)
        for envelope in block.events:
            for waiter in self._waiters.pop(envelope.event_id, []):
                if not waiter.done():
                    waiter.set_result(None)
        self._cosign(header)

    def _broadcast(self, kind: str, payload: dict[str, Any]) -> None:
        for link in self._links.values():
            link.outbox.put_nowait((kind, payload))

    # --- peers ---------------------------------------------------------------------------

    async def _sender(self, link: _PeerLink) -> None:
        backoff = 0.1
        while not self._stopped:
            first = await link.outbox.get()
            batch = [first]
            while not link.outbox.empty() and len(batch) < _PEER_BATCH:
                batch.append(link.outbox.get_nowait())
            body = {"from": self.node_id, "items": [{"kind": k, "body": b} for k, b in batch]}
            while not self._stopped:
                try:
                    assert self._client is not None
                    url = f"{link.peer.url}/v1/peer/inbox"
                    response = await self._client.post(url, json=body)
                    response.raise_for_status()
                    link.connected = True
                    backoff = 0.1
                    break
                except (httpx.HTTPError, OSError):
                    link.connected = False
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    if link.outbox.qsize() > 10_000:  # a peer down for long: it will catch up
                        break

    async def _status_loop(self) -> None:
        """Ask peers their height now and then; fall behind by a block and we catch up."""
        while not self._stopped:
            await asyncio.sleep(1.0)
            for link in self._links.values():
                try:
                    assert self._client is not None
                    response = await self._client.get(f"{link.peer.url}/v1/status", timeout=2.0)
                    link.height = int(response.json()["height"])
                    link.connected = True
                except (httpx.HTTPError, OSError, ValueError, KeyError, TypeError):
                    link.connected = False
            highest = max((link.height for link in self._links.values()), default=0)
            if highest > self.ledger.head.height:
                self._start_catch_up()

    def receive(self, items: list[dict[str, Any]]) -> None:
        """Take a batch from a peer: consensus messages, events, checkpoint cosignatures.

        Malformed or unauthentic items are dropped one by one (a peer cannot make us fail).
        """
        now = self._monotonic()
        notify = False
        for item in items:
            kind, body = item.get("kind"), item.get("body")
            try:
                if kind == "message":
                    self._act(self.consensus.handle(parse_message(body), now))
                elif kind == "event":
                    envelope = parse_envelope(body)
                    notify |= self.app.submit(envelope).status == "pending"
                elif kind == "cosignature":
                    self._receive_cosignature(body)
            except LedgerError as e:
                log.debug("dropped a %s from a peer: %s", kind, e)
        if notify:
            self._act(self.consensus.notify(now))

    def _start_catch_up(self) -> None:
        if not self._catching_up and not self._stopped:
            self._catching_up = True
            self._tasks.append(asyncio.create_task(self._catch_up(), name="catch-up"))

    async def _catch_up(self) -> None:
        """Fetch certified blocks from peers, checking every certificate and event."""
        try:
            for link in sorted(self._links.values(), key=lambda peer: -peer.height):
                while link.height > self.ledger.head.height:
                    head = self.ledger.head.height
                    try:
                        assert self._client is not None
                        response = await self._client.get(
                            f"{link.peer.url}/v1/export",
                            params={"from": max(head, 1), "to": head + _CATCH_UP_BATCH},
                        )
                        response.raise_for_status()
                    except (httpx.HTTPError, OSError):
                        break
                    adopted = 0
                    for line in response.content.splitlines()[1:]:
                        if self._settle(line):
                            continue
                        if not self._adopt(line):
                            break
                        adopted += 1
                    if not adopted:
                        break
        finally:
            self._catching_up = False

    def _settle(self, line: bytes) -> bool:
        """Our head as a peer ahead of us holds it: take its certificate (settled by the next
        block's decision, see ``node.consensus.Proposal.last_commit``). True if it was our head.
        """
        try:
            block = parse_block(line)
        except LedgerError:
            return False
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

    def _adopt(self, line: bytes) -> bool:
        """Commit a block fetched from a peer if its certificate and events check out."""
        try:
            block = parse_block(line)
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
            self._commit(block, block.commit)
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
        size, root = body.get("size"), body.get("root")
        if type(size) is not int or type(root) is not str:
            raise EncodingError("a cosignature names a size and a root")
        verifier = {v.name: v for v in self.genesis.note_verifiers}.get(body.get("name", ""))
        if verifier is None:
            raise EncodingError("a cosignature by an unknown validator")
        signature = NoteSignature(verifier.name, verifier.key_id, bytes.fromhex(body["signature"]))
        self._add_cosignature(size, root, signature)

    def _add_cosignature(self, size: int, root: str, signature: NoteSignature) -> None:
        if size > self.store.head().tree_size or size in self._stored_checkpoints:
            return
        expected = self.store.root(size).hex() if size else None
        if expected is not None and expected != root:
            return
        text = format_checkpoint(Checkpoint(self.genesis.origin, size, bytes.fromhex(root)))
        note = format_note(text, [signature])
        try:
            verify_note(note, self.genesis.note_verifiers, 1)
        except LedgerError:
            return
        signatures = self._cosignatures.setdefault(size, {})
        signatures[signature.name] = signature
        if len(signatures) >= self.genesis.quorum:
            cosigned = format_note(text, sorted(signatures.values(), key=lambda s: s.name))
            self._store_checkpoint(size, cosigned)
            for old in [s for s in self._cosignatures if s <= size]:
                del self._cosignatures[old]

    @property
    def _stored_checkpoints(self) -> set[int]:
        with Session(self.store.engine) as session:
            return set(session.scalars(select(CheckpointRow.size)))

    def _store_checkpoint(self, size: int, note: bytes) -> None:
        with Session(self.store.engine) as session, session.begin():
            if session.get(CheckpointRow, size) is None:
                session.add(CheckpointRow(size=size, note=note.decode()))

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

    async def submit(
        self, envelopes: list[Envelope], *, wait: bool, timeout: float
    ) -> SubmitResult:
        """Admit a batch (all-or-nothing is the caller's check) and optionally wait for commit.

        Raises:
            LedgerError: an event is refused (see :meth:`check_batch`).
        """
        admissions: list[Admission] = [self.app.submit(e) for e in envelopes]
        for envelope, admission in zip(envelopes, admissions, strict=True):
            if admission.status == "pending":
                self._broadcast("event", envelope.to_json())
        self._act(self.consensus.notify(self._monotonic()))
        if wait:
            loop = asyncio.get_running_loop()
            futures = []
            for admission in admissions:
                if self.store.event(admission.event_id) is None:
                    future: asyncio.Future[None] = loop.create_future()
                    self._waiters.setdefault(admission.event_id, []).append(future)
                    futures.append(future)
            if futures:
                done, _ = await asyncio.wait(futures, timeout=timeout)
                del done
        results = [self._event_status(a.event_id) for a in admissions]
        return SubmitResult(results, all(r["status"] == "committed" for r in results))

    def _event_status(self, event_id: str) -> dict[str, Any]:
        stored = self.store.event(event_id)
        if stored is None:
            return {"event_id": event_id, "status": "pending"}
        return {
            "event_id": event_id,
            "status": "committed",
            "height": stored.height,
            "index": stored.index,
        }

    def check_batch(self, envelopes: list[Envelope]) -> list[tuple[int, Envelope, LedgerError]]:
        """Check a batch against the state and the batch's earlier events, changing nothing."""
        overlay = Overlay(self.app.pending_view)
        machine = StateMachine(self.genesis, overlay)
        errors = []
        index = self.store.head().tree_size + self.app.pending_count
        moment = self._wall_clock()
        for position, envelope in enumerate(envelopes):
            known = overlay.event_index(envelope.event_id) is not None
            if known or self.app.is_pending(envelope.event_id):
                continue
            try:
                verify_event_signatures(overlay, envelope)
                machine.apply(envelope, index, moment)
                index += 1
            except LedgerError as e:
                errors.append((position, envelope, e))
        return errors

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
        return export_lines(self.genesis, self.store.blocks(start, last))

    # --- persistence ---------------------------------------------------------------------

    def _save_meta(self, key: str, value: Any) -> None:
        try:
            with Session(self.store.engine) as session, session.begin():
                row = session.get(MetaRow, key)
                text = canonical(value).decode()
                if row is None:
                    session.add(MetaRow(key=key, value=text))
                else:
                    row.value = text
        except SQLAlchemyError as e:
            raise StorageError(f"cannot persist {key}: {e}") from e

    def _load_meta(self, key: str) -> Any:
        with Session(self.store.engine) as session:
            row = session.get(MetaRow, key)
            return None if row is None else json.loads(row.value)

    def _load_signed(self) -> SignedState | None:
        raw = self._load_meta(_SIGNED_STATE_KEY)
        try:
            return None if raw is None else _signed_from_json(raw)
        except (LedgerError, KeyError, TypeError) as e:
            raise StorageError(f"the persisted consensus state is unreadable: {e}") from e

    def _load_evidence(self) -> list[dict[str, Any]]:
        raw = self._load_meta(_EVIDENCE_KEY)
        return list(raw) if isinstance(raw, list) else []
