"""The application under consensus: the mempool, building blocks, validating them, committing.

:class:`LedgerApplication` is the :class:`node.consensus.BlockSource` of a validator. It keeps
the events waiting for a block (admitted only if their signatures verify and the rules accept
them after the committed state and the events admitted before them), builds a block from them
when this validator proposes, checks every block proposed to it exactly as the chain verifier
would (header fields, log root, signatures, rules), and commits decided blocks through a
:class:`CommittedLedger`: in memory for the simulator, or the node's database.

It reads no clock of its own: the wall clock is injected (block times come from it).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from ledger.blocks import (
    Block,
    BlockHeader,
    CommitCertificate,
    GenesisDocument,
    genesis_header,
    verify_certificate,
)
from ledger.encoding import format_time, parse_time
from ledger.errors import ChainError, ConsensusError, LedgerError, RuleViolation
from ledger.events import Envelope, EventSignature
from ledger.keyring import announced_keys
from ledger.keys import SignatureJob, verify_jobs
from ledger.merkle import CompactRange, leaf_hash
from ledger.rules import (
    StateMachine,
    check_event_time,
    genesis_effects,
    verify_event_signatures,
)
from ledger.state import Effects, MemoryState, Overlay, StateView

__all__ = [
    "MAX_BLOCK_TIME_AHEAD",
    "Admission",
    "CommittedLedger",
    "LedgerApplication",
    "MemoryLedger",
]

_MAX_VERIFIED_CACHE = 200_000
_MAX_OVERLAY_SLACK = 20_000
"""Committed events whose effects the mempool's overlay may keep before it is rebuilt."""
_MAX_PAYLOAD_CACHE = 20_000
"""Checked payloads kept (about a kilobyte each): twice a full mempool of client events."""

_V = TypeVar("_V")


class _Recent(OrderedDict[str, _V]):
    """A map that forgets its oldest entries beyond ``limit`` (insertion order)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._limit = limit

    def __setitem__(self, key: str, value: _V) -> None:
        super().__setitem__(key, value)
        if len(self) > self._limit:
            self.popitem(last=False)


_SignedEvent = tuple[str, tuple[EventSignature, ...]]
"""An event id with the signatures it carried: what a verified signature check is keyed by
(the id covers the body only, so another copy of an event may carry other signatures)."""
SignedEventJobs = tuple[_SignedEvent, list[SignatureJob]]
"""An event's signature checks, named as a verified check is kept."""


def _public_key(state: StateView, announced: dict[str, bytes], identifier: str) -> bytes | None:
    """The public key of key id ``identifier`` in ``state`` (revoked or not), or else among
    the ``announced`` keys; None if neither knows it."""
    record = state.key(identifier)
    return record.public_key if record is not None else announced.get(identifier)


def verified(jobs: Sequence[SignedEventJobs]) -> list[_SignedEvent]:
    """The events all of whose signatures verify (pure: runs on any thread)."""
    return [signed for signed, checks in jobs if all(verify_jobs(checks))]


MAX_BLOCK_TIME_AHEAD = _dt.timedelta(minutes=5)
"""How far a proposed block's time may be ahead of a validator's own clock."""


class CommittedLedger(Protocol):
    """Where decided blocks go, and the committed state they leave behind."""

    @property
    def head(self) -> BlockHeader:
        """The newest committed block's header."""
        ...

    @property
    def log(self) -> CompactRange:
        """The Merkle log up to the head (do not mutate)."""
        ...

    @property
    def state(self) -> StateView:
        """The committed supply-chain state."""
        ...

    def commit(self, block: Block, effects: Effects) -> None:
        """Store ``block`` (with its certificate) and ``effects`` atomically."""
        ...

    def prefetch(self, envelopes: Sequence[Envelope]) -> None:
        """Load what the rules will read for ``envelopes`` in bulk (a hint; may do nothing)."""
        ...

    def certificate(self, height: int) -> CommitCertificate | None:
        """The certificate kept for the block at ``height`` (None for genesis)."""
        ...

    def replace_certificate(self, height: int, certificate: CommitCertificate) -> None:
        """Keep another (valid) certificate for the block at ``height``."""
        ...


class MemoryLedger:
    """A :class:`CommittedLedger` in memory: the blocks, the log and a :class:`MemoryState`."""

    def __init__(self, genesis: GenesisDocument) -> None:
        self.blocks: list[Block] = [Block(genesis_header(genesis), (), None)]
        self._log = CompactRange()
        self._state = MemoryState()
        self._state.apply(genesis_effects(genesis))

    @property
    def head(self) -> BlockHeader:
        return self.blocks[-1].header

    @property
    def log(self) -> CompactRange:
        return self._log

    @property
    def state(self) -> MemoryState:
        return self._state

    def commit(self, block: Block, effects: Effects) -> None:
        for envelope in block.events:
            self._log.append(leaf_hash(envelope.leaf))
        self._state.apply(effects)
        self.blocks.append(block)

    def prefetch(self, envelopes: Sequence[Envelope]) -> None:
        del envelopes  # everything is in memory already

    def certificate(self, height: int) -> CommitCertificate | None:
        return self.blocks[height].commit

    def replace_certificate(self, height: int, certificate: CommitCertificate) -> None:
        block = self.blocks[height]
        self.blocks[height] = Block(block.header, block.events, certificate)


@dataclass(frozen=True, slots=True)
class Admission:
    """What became of a submitted event."""

    event_id: str
    status: str
    """``pending`` (admitted now or before) or ``committed`` (already in the log)."""


class LedgerApplication:
    """Mempool, block building and validation for one validator.

    Args:
        genesis: the network.
        ledger: the committed blocks and state.
        proposer_id: this validator's key id (the ``proposer`` of blocks it builds).
        wall_clock: the current UTC time (injected; the simulator passes its own).
        max_block_events: the most events one block takes.
    """

    def __init__(
        self,
        genesis: GenesisDocument,
        ledger: CommittedLedger,
        proposer_id: str,
        wall_clock: Callable[[], _dt.datetime],
        max_block_events: int = 2000,
    ) -> None:
        self._genesis = genesis
        self.ledger = ledger
        self._proposer_id = proposer_id
        self._clock = wall_clock
        self._max_events = max_block_events
        self._pending: OrderedDict[str, Envelope] = OrderedDict()
        self._pending_effects: dict[str, Effects] = {}
        """What each pending event changes, after the committed state and the events before
        it (kept while the mempool is not rebuilt; see :meth:`_mempool_effects`)."""
        self._by_signature: dict[str, Envelope] = {}
        """Pending events by their first signature (hex): see :meth:`held`."""
        self._overlay = Overlay(ledger.state)
        self._verified: set[_SignedEvent] = set()
        self._payloads: _Recent[dict[str, Any]] = _Recent(_MAX_PAYLOAD_CACHE)
        """Payloads that passed their schema, by event id (see ``ledger.rules.apply_event``),
        dropped when their events commit; an event refused by a later rule leaves its payload
        until the oldest are forgotten."""
        self._validated: tuple[str, str, Effects] | None = None

    # --- the mempool ---------------------------------------------------------------------

    @property
    def pending_count(self) -> int:
        """Events admitted and not yet committed."""
        return len(self._pending)

    @property
    def pending_view(self) -> StateView:
        """The committed state with the pending events applied in order."""
        return self._overlay

    def has_pending(self) -> bool:
        """Are there events waiting for a block?"""
        return bool(self._pending)

    def is_pending(self, event_id: str) -> bool:
        """Is this event admitted and waiting?"""
        return event_id in self._pending

    def pending_event(self, event_id: str) -> Envelope | None:
        """A pending event by id."""
        return self._pending.get(event_id)

    def held(self, raw: Any) -> Envelope | None:
        """The pending event whose wire form is ``raw``, if there is one.

        A proposal carries events a validator mostly holds already, parsed and checked; taking
        those spares parsing each again (its id is the hash of its canonical body). Found by
        its first signature, and taken only if its wire form equals ``raw``. Python's ``==``
        takes ``1`` for ``true``, so this alone does not pin the event's bytes: the block's
        tree root, recomputed from the leaves of the events taken, does
        (:meth:`effects_of`), and a block whose events differ from those is refused.
        """
        try:
            envelope = self._by_signature.get(raw["sigs"][0]["sig"])
        except (TypeError, KeyError, IndexError):
            return None
        return envelope if envelope is not None and envelope.to_json() == raw else None

    def submit(self, envelope: Envelope) -> Admission:
        """Admit an event to the mempool after checking signatures and rules.

        An event already pending or committed is accepted again without a second copy.

        Raises:
            RuleViolation: the rules refuse it after the committed state and pending events.
            SignatureError: a signature does not verify.
        """
        admission = self._known(envelope.event_id)
        if admission is not None:
            return admission
        self._check_signatures(envelope, self._overlay)
        machine = StateMachine(self._genesis, self._overlay, self._payloads)
        effects = machine.apply(envelope, self.ledger.log.size + len(self._pending), self._now())
        self._hold(envelope, effects)
        return Admission(envelope.event_id, "pending")

    def submit_batch(
        self, envelopes: Sequence[Envelope], *, admit: bool = True
    ) -> tuple[list[Admission], list[tuple[int, Envelope, LedgerError]]]:
        """Admit a whole batch or nothing: each event checked after the earlier ones.

        Args:
            envelopes: the batch.
            admit: False to only check it (the mempool is left as it was).

        Returns:
            Each event's admission and, if any event is refused, every refusal with its
            position (and then nothing was admitted).
        """
        self.ledger.prefetch(envelopes)
        trial = Overlay(self._overlay)
        machine = StateMachine(self._genesis, trial, self._payloads)
        index = self.ledger.log.size + len(self._pending)
        moment = self._now()
        admissions: list[Admission] = []
        refused: list[tuple[int, Envelope, LedgerError]] = []
        admitted: dict[str, Envelope] = {}
        effects: dict[str, Effects] = {}
        for position, envelope in enumerate(envelopes):
            event_id = envelope.event_id
            known = self._known(event_id)
            if known is not None or event_id in admitted:
                admissions.append(known or Admission(event_id, "pending"))
                continue
            try:
                self._check_signatures(envelope, trial)
                effects[event_id] = machine.apply(envelope, index, moment)
            except LedgerError as e:
                refused.append((position, envelope, e))
                continue
            index += 1
            admitted[event_id] = envelope
            admissions.append(Admission(event_id, "pending"))
        if admit and not refused:
            self._overlay.apply(trial.pending)
            for event_id, envelope in admitted.items():
                self._hold(envelope, effects[event_id])
        return admissions, refused

    def _hold(self, envelope: Envelope, effects: Effects) -> None:
        """Add an admitted event to the mempool."""
        self._pending[envelope.event_id] = envelope
        self._pending_effects[envelope.event_id] = effects
        self._by_signature[envelope.sigs[0].sig.hex()] = envelope

    def _known(self, event_id: str) -> Admission | None:
        if event_id in self._pending:
            return Admission(event_id, "pending")
        if self.ledger.state.event_index(event_id) is not None:
            return Admission(event_id, "committed")
        return None

    def _check_signatures(self, envelope: Envelope, view: StateView) -> None:
        """Verify each signed copy of an event once (the rules recheck who signed every time).

        A key id is the hash of its public key, so a signature that verified once verifies
        again; whether its key is registered and unrevoked depends on ``view`` and is what
        the rules check on every application.
        """
        signed = (envelope.event_id, envelope.sigs)
        if signed not in self._verified:
            verify_event_signatures(view, envelope)
            self._verified.add(signed)

    def signature_jobs(self, blocks: Sequence[Block]) -> list[list[SignedEventJobs]]:
        """For each of ``blocks``, the signature checks of its events not verified yet, to run
        ahead in another process (:func:`verified`) while this one applies the blocks before
        them; their answers go to :meth:`take_verified`.

        A signer's key is the committed state's, or else the one an event earlier in
        ``blocks`` registers (a new member's first events often follow in the same batch).
        A key id is the hash of its public key, so a signature that verifies with a key of
        that id verifies whatever state the event is applied in; the rules still check, when
        it is applied, that its key is registered and unrevoked then. An event with a signer
        known neither way is checked in-line then.
        """
        state = self.ledger.state
        announced: dict[str, bytes] = {}
        found: list[list[SignedEventJobs]] = []
        for block in blocks:
            jobs: list[SignedEventJobs] = []
            for envelope in block.events:
                signed = (envelope.event_id, envelope.sigs)
                if signed not in self._verified:
                    keys = [_public_key(state, announced, s.key) for s in envelope.sigs]
                    if None not in keys:
                        jobs.append((signed, envelope.signature_jobs(cast(list[bytes], keys))))
                announced.update(announced_keys(envelope))
            found.append(jobs)
        return found

    def take_verified(self, signed: Sequence[_SignedEvent]) -> None:
        """Record signatures checked ahead (see :meth:`signature_jobs`)."""
        self._verified.update(signed)

    def _now(self) -> _dt.datetime:
        moment = self._clock().astimezone(_dt.UTC)
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    # --- blocks --------------------------------------------------------------------------

    def build_block(self, height: int, round_: int) -> Block:
        """A block of up to ``max_block_events`` pending events that are still valid.

        The first pending events, in order, were each checked after the committed state and
        the ones before them, so their effects are taken as the mempool computed them (as a
        validator does, :meth:`_mempool_effects`); only if one of them is dated after the
        block are they all checked again, one by one, leaving that one out.
        """
        head = self.ledger.head
        block_time = max(self._now(), parse_time(head.time))
        chosen = list(itertools.islice(self._pending.values(), self._max_events))
        try:
            effects = self._mempool_effects(chosen, block_time)
        except RuleViolation:  # an event dated after the block: check them one by one
            effects = None
        if effects is None:
            chosen, effects = self._check_pending(block_time)
        log = self.ledger.log.copy()
        for envelope in chosen:
            log.append(leaf_hash(envelope.leaf))
        header = BlockHeader(
            network=self._genesis.network,
            height=height,
            prev=head.block_hash,
            time=format_time(block_time),
            proposer=self._proposer_id,
            event_count=len(chosen),
            tree_size=log.size,
            tree_root=log.root().hex(),
        )
        self._validated = (head.block_hash, header.block_hash, effects)
        return Block(header, tuple(chosen), None)

    def _check_pending(self, block_time: _dt.datetime) -> tuple[list[Envelope], Effects]:
        """Up to ``max_block_events`` pending events that are valid in a block of this time,
        checked anew in order after the committed state, and their effects."""
        overlay = Overlay(self.ledger.state)
        machine = StateMachine(self._genesis, overlay, self._payloads)
        index = self.ledger.log.size
        chosen: list[Envelope] = []
        for envelope in list(self._pending.values()):
            if len(chosen) >= self._max_events:
                break
            try:
                machine.apply(envelope, index, block_time)
            except LedgerError:
                continue
            index += 1
            chosen.append(envelope)
        return chosen, overlay.pending

    def validate_block(self, block: Block) -> None:
        """Raise unless ``block`` may follow the committed head (everything but its votes).

        Raises:
            ChainError: a header field is wrong.
            RuleViolation, SignatureError: an event is invalid.
        """
        self.effects_of(block)

    def effects_of(self, block: Block) -> Effects:
        """Check ``block`` like :meth:`validate_block` and return what it changes.

        The answer for the last block checked on the current head is kept: a block is checked
        when it is proposed and again when it is committed, and its hash pins its header, whose
        ``tree_root`` pins every event with its signatures.
        """
        head = self.ledger.head
        if self._validated is not None and self._validated[:2] == (
            head.block_hash,
            block.header.block_hash,
        ):
            return self._validated[2]
        header = block.header
        height = head.height + 1
        if header.height != height or header.prev != head.block_hash:
            raise ChainError("the block does not extend the committed head", height=height)
        if header.network != self._genesis.network or header.v != 1:
            raise ChainError("the block is for another network or version", height=height)
        if header.proposer not in self._genesis.validator_keys:
            raise ChainError("the block's proposer is not a validator", height=height)
        block_time = parse_time(header.time)
        if block_time < parse_time(head.time):
            raise ChainError("the block's time is before its parent's", height=height)
        if block_time > self._now() + MAX_BLOCK_TIME_AHEAD:
            raise ChainError("the block's time is too far in the future", height=height)
        if header.event_count != len(block.events):
            raise ChainError("event_count does not match the events", height=height)
        log = self.ledger.log.copy()
        for envelope in block.events:
            log.append(leaf_hash(envelope.leaf))
        if header.tree_size != log.size or header.tree_root != log.root().hex():
            raise ChainError("tree_size/tree_root do not match the events", height=height)
        effects = self._mempool_effects(block.events, block_time)
        if effects is None:
            self.ledger.prefetch(block.events)
            overlay = Overlay(self.ledger.state)
            machine = StateMachine(self._genesis, overlay, self._payloads)
            for index, envelope in enumerate(block.events, start=head.tree_size):
                self._check_signatures(envelope, overlay)
                machine.apply(envelope, index, block_time)
            effects = overlay.pending
        self._validated = (head.block_hash, header.block_hash, effects)
        return effects

    def _mempool_effects(
        self, events: Sequence[Envelope], block_time: _dt.datetime
    ) -> Effects | None:
        """The effects of ``events`` as the mempool already computed them, if it can tell.

        It can when they are the first pending events, in order, with the same signatures:
        each was checked (signatures and rules) after the committed state and the ones before
        it, at the log index the block gives it, and only ``event.future`` depends on the
        block's time, which is checked here.

        Raises:
            RuleViolation: ``event.future`` for this block's time.
        """
        leading = itertools.islice(self._pending.values(), len(events))
        if [(e.event_id, e.sigs) for e in leading] != [(e.event_id, e.sigs) for e in events]:
            return None
        if any(e.event_id not in self._pending_effects for e in events):
            return None
        effects = Effects()
        for envelope in events:
            check_event_time(envelope, block_time)
            effects.merge(self._pending_effects[envelope.event_id])
        return effects

    def last_commit(self) -> CommitCertificate | None:
        """The certificate held for the committed head (proposals carry it)."""
        return self.ledger.certificate(self.ledger.head.height)

    def commit(
        self,
        block: Block,
        certificate: CommitCertificate,
        parent_certificate: CommitCertificate | None = None,
    ) -> Effects:
        """Store a decided block with its certificate, then drop its events from the mempool.

        ``parent_certificate`` (the decided proposal's certificate of the previous block), if
        valid, replaces the one kept for that block, so every node keeps the same one.
        Pending events that the new state makes invalid (a lot spent by the block, say) are
        dropped too.
        """
        head = self.ledger.head
        if parent_certificate is not None and head.height > 0:
            with contextlib.suppress(ConsensusError):
                verify_certificate(
                    parent_certificate,
                    self._genesis.network,
                    head.height,
                    head.block_hash,
                    self._genesis.validator_keys,
                )
                if parent_certificate != self.ledger.certificate(head.height):
                    self.ledger.replace_certificate(head.height, parent_certificate)
        effects = self.effects_of(block)
        self.ledger.commit(Block(block.header, block.events, certificate), effects)
        self._validated = None
        leading = [
            (e.event_id, e.sigs)
            for e in itertools.islice(self._pending.values(), len(block.events))
        ]
        for envelope in block.events:
            held = self._pending.pop(envelope.event_id, None)
            if held is not None:
                self._pending_effects.pop(envelope.event_id, None)
                self._by_signature.pop(held.sigs[0].sig.hex(), None)
            self._verified.discard((envelope.event_id, envelope.sigs))
            self._payloads.pop(envelope.event_id, None)
        if len(self._verified) > _MAX_VERIFIED_CACHE:  # proposals that never committed
            self._verified.clear()
        if leading != [(e.event_id, e.sigs) for e in block.events] or self._overlay_outgrown():
            self._readmit()
        return effects

    def _overlay_outgrown(self) -> bool:
        """Has the mempool's overlay kept too many committed events' effects?

        When a block holds exactly the first pending events, in order, the overlay needs no
        rebuilding: each remaining event was checked on top of those same events at the same
        log indexes (effects do not depend on the block time), so the overlay already shows
        the new committed state with the remaining events applied. The committed events'
        effects stay in it, shadowing equal committed values, until it is rebuilt.
        """
        return len(self._overlay.pending.events) > 2 * len(self._pending) + _MAX_OVERLAY_SLACK

    def _readmit(self) -> None:
        """Rebuild the pending overlay on the new committed state, dropping what no longer fits."""
        waiting = list(self._pending.values())
        self._pending.clear()
        self._pending_effects.clear()
        self._by_signature.clear()
        self._overlay = Overlay(self.ledger.state)
        for envelope in waiting:
            try:
                self.submit(envelope)
            except RuleViolation:
                continue
