"""Tendermint-style BFT consensus as a sans-I/O state machine (DESIGN.md §5).

:class:`Consensus` follows Algorithm 1 of Buchman, Kwon and Milosevic, *The latest gossip on BFT
consensus* (2018): rounds of propose → prevote → precommit with quorums of more than two
thirds, locking on a block once it is precommitted, timeouts that grow with the round, and a
proposer that rotates with height and round. Comments cite the paper's line numbers (L22 …).

It does no I/O and reads no clock. Inputs are :meth:`Consensus.start`, :meth:`Consensus.handle`
(a message from a peer), :meth:`Consensus.tick` (time passed) and :meth:`Consensus.notify`
(the mempool changed); each returns :class:`Action` objects for the caller to carry out **in
order**: :class:`Persist` before the :class:`Broadcast` that follows it (so a validator that
crashes never signs two different votes for one height, round and step), :class:`Commit`
before feeding the next input. The block contents and their validity come from an injected
:class:`BlockSource`; the asyncio runtime and the deterministic simulator drive the same code.

What it does not do: gossip events, fetch missing blocks (it asks with :class:`CatchUp`),
cosign checkpoints, or store anything itself.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.blocks import (
    Block,
    CommitCertificate,
    GenesisDocument,
    VoteSignature,
    parse_certificate,
    parse_header,
    proposal_bytes,
    vote_bytes,
)
from ledger.encoding import parse_hex, require_fields
from ledger.errors import ChainError, ConsensusError, EncodingError, LedgerError, SignatureError
from ledger.events import Envelope, parse_envelope
from ledger.keys import (
    PROPOSAL_PREFIX,
    VOTE_PREFIX,
    key_id,
    public_key_bytes,
    sign,
    verify_signature,
)

__all__ = [
    "Action",
    "BlockSource",
    "Broadcast",
    "CatchUp",
    "Commit",
    "Consensus",
    "Evidence",
    "Persist",
    "Proposal",
    "SignedState",
    "Timeouts",
    "Vote",
    "block_wire",
    "parse_message",
]

PREVOTE, PRECOMMIT = "prevote", "precommit"
PROPOSE_STEP, PREVOTE_STEP, PRECOMMIT_STEP = 0, 1, 2
_MAX_CHECKED_SIGNATURES = 100_000
_FUTURE_HEIGHT_BUFFER = 4096
"""Messages kept for later heights (a validator a little behind its peers), shared equally
among the validators so that one Byzantine validator cannot fill it for the others."""


# --- messages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Vote:
    """A signed prevote or precommit; ``block_hash`` ``""`` is a vote for no block (nil)."""

    type: str
    height: int
    round: int
    block_hash: str
    node: str
    sig: bytes

    prefix = VOTE_PREFIX

    def message_bytes(self, network: str) -> bytes:
        """What the signature covers, after :attr:`prefix`."""
        return vote_bytes(network, self.height, self.round, self.type, self.block_hash)

    def to_json(self) -> dict[str, Any]:
        """The wire form."""
        return {
            "kind": "vote",
            "type": self.type,
            "height": self.height,
            "round": self.round,
            "block_hash": self.block_hash,
            "node": self.node,
            "sig": self.sig.hex(),
        }


@dataclass(frozen=True, slots=True)
class Proposal:
    """A signed block proposal for (height, round); ``pol_round`` as in the paper (-1: none)."""

    height: int
    round: int
    pol_round: int
    block: Block
    node: str
    sig: bytes
    last_commit: CommitCertificate | None = None
    """The proposer's certificate of the previous block (not signed: it proves itself). The
    certificate decided with a block becomes every validator's certificate of its parent, so
    all nodes end up storing — and exporting — the same one."""

    @property
    def block_hash(self) -> str:
        """The proposed block's hash."""
        return self.block.header.block_hash

    prefix = PROPOSAL_PREFIX

    def message_bytes(self, network: str) -> bytes:
        """What the signature covers, after :attr:`prefix`."""
        return proposal_bytes(network, self.height, self.round, self.pol_round, self.block_hash)

    def to_json(self, *, with_block: bool = True) -> dict[str, Any]:
        """The wire form (the block travels with its events, without a certificate).

        Args:
            with_block: False to give only the block's hash in ``block`` (for storing a
                proposal apart from its block; not a valid message).
        """
        return {
            "kind": "proposal",
            "height": self.height,
            "round": self.round,
            "pol_round": self.pol_round,
            "block": block_wire(self.block) if with_block else self.block_hash,
            "node": self.node,
            "sig": self.sig.hex(),
            "last_commit": None if self.last_commit is None else self.last_commit.to_json(),
        }


Message = Vote | Proposal


def block_wire(block: Block) -> dict[str, Any]:
    """A proposed block on the wire: its header and events (no certificate)."""
    return {"header": block.header.to_json(), "events": [e.to_json() for e in block.events]}


_VOTE_FIELDS = frozenset({"kind", "type", "height", "round", "block_hash", "node", "sig"})
_PROPOSAL_FIELDS = frozenset(
    {"kind", "height", "round", "pol_round", "block", "node", "sig", "last_commit"}
)
_BLOCK_FIELDS = frozenset({"header", "events"})


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if type(value) is not int or value < minimum or value >= 2**53:
        raise EncodingError(f"{what} must be an integer >= {minimum}")
    return value


def parse_message(value: Any, held: Callable[[Any], Envelope | None] | None = None) -> Message:
    """Parse a consensus message from its wire form (signature not yet checked).

    Args:
        value: the wire form.
        held: for a proposal, the parsed event this validator holds for an event's wire form,
            if any (taken instead of parsing it again; see ``LedgerApplication.held``).

    Raises:
        EncodingError: malformed.
    """
    if type(value) is not dict:
        raise EncodingError("a consensus message must be a JSON object")
    kind = value.get("kind")
    if kind == "vote":
        raw = require_fields(value, _VOTE_FIELDS, "vote")
        if raw["type"] not in (PREVOTE, PRECOMMIT):
            raise EncodingError("vote.type must be prevote or precommit")
        if raw["block_hash"] != "":
            parse_hex(raw["block_hash"], 32, "vote.block_hash")
        parse_hex(raw["node"], 32, "vote.node")
        return Vote(
            raw["type"],
            _int(raw["height"], "vote.height", 1),
            _int(raw["round"], "vote.round"),
            raw["block_hash"],
            raw["node"],
            parse_hex(raw["sig"], 64, "vote.sig"),
        )
    if kind == "proposal":
        raw = require_fields(value, _PROPOSAL_FIELDS, "proposal")
        block = require_fields(raw["block"], _BLOCK_FIELDS, "proposal.block")
        if type(block["events"]) is not list:
            raise EncodingError("proposal.block.events must be a list")
        try:
            events = tuple((held and held(e)) or parse_envelope(e) for e in block["events"])
        except SignatureError as e:
            raise EncodingError(f"proposal.block.events: {e}") from e
        parse_hex(raw["node"], 32, "proposal.node")
        return Proposal(
            _int(raw["height"], "proposal.height", 1),
            _int(raw["round"], "proposal.round"),
            _int(raw["pol_round"], "proposal.pol_round", -1),
            Block(parse_header(block["header"]), events, None),
            raw["node"],
            parse_hex(raw["sig"], 64, "proposal.sig"),
            None if raw["last_commit"] is None else parse_certificate(raw["last_commit"]),
        )
    raise EncodingError(f"unknown consensus message kind {kind!r}")


# --- actions -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send ``message`` to every other validator."""

    message: Message


@dataclass(frozen=True, slots=True)
class Persist:
    """Durably record what this validator signed or locked on, before anything that follows."""

    state: SignedState


@dataclass(frozen=True, slots=True)
class Commit:
    """``block`` is decided with ``certificate``: store it atomically, then continue."""

    block: Block
    certificate: CommitCertificate
    parent_certificate: CommitCertificate | None = None
    """The decided proposal's certificate of the previous block (see ``Proposal.last_commit``);
    the caller checks it and keeps it as that block's certificate."""


@dataclass(frozen=True, slots=True)
class Evidence:
    """Validator ``node`` signed two different votes for one height, round and type."""

    node: str
    first: Vote
    second: Vote

    def to_json(self) -> dict[str, Any]:
        """The form ``/v1/status`` shows."""
        return {
            "node": self.node,
            "height": self.first.height,
            "round": self.first.round,
            "type": self.first.type,
            "votes": [self.first.to_json(), self.second.to_json()],
        }


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Peers are at ``height`` or beyond: fetch certified blocks up to there."""

    height: int


Action = Broadcast | Persist | Commit | Evidence | CatchUp


# --- what a validator must remember across crashes -----------------------------------------


@dataclass
class SignedState:
    """Everything this validator signed or locked on at ``height`` (persisted before sending).

    Attributes:
        votes: ``(round, type)`` → the vote signed; never a second, different one.
        proposals: round → the proposal signed.
        locked_round, locked_block: the paper's *lockedRound*/*lockedValue*.
        valid_round, valid_block: the paper's *validRound*/*validValue*.
    """

    height: int
    votes: dict[tuple[int, str], Vote] = field(default_factory=dict)
    proposals: dict[int, Proposal] = field(default_factory=dict)
    locked_round: int = -1
    locked_block: Block | None = None
    valid_round: int = -1
    valid_block: Block | None = None
    valid_votes: tuple[Vote, ...] = ()
    """The quorum of prevotes that made ``valid_block`` valid: after a restart they still
    prove the lock to peers that missed them."""

    def snapshot(self) -> SignedState:
        """A copy to persist (later changes to this one do not affect it)."""
        return SignedState(
            self.height,
            dict(self.votes),
            dict(self.proposals),
            self.locked_round,
            self.locked_block,
            self.valid_round,
            self.valid_block,
            self.valid_votes,
        )


class BlockSource(Protocol):
    """The application side: pending events, building and validating blocks."""

    def has_pending(self) -> bool:
        """Are there events waiting to be proposed?"""
        ...

    def build_block(self, height: int, round_: int) -> Block:
        """A new block (no certificate) at ``height`` on top of the committed head."""
        ...

    def validate_block(self, block: Block) -> None:
        """Raise a ``LedgerError`` unless ``block`` may follow the committed head."""
        ...

    def last_commit(self) -> CommitCertificate | None:
        """The certificate this validator holds for the committed head."""
        ...


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Round timeouts in seconds: ``base + round * increase`` for each step."""

    propose: float = 1.0
    prevote: float = 0.5
    precommit: float = 0.5
    increase: float = 0.5
    batch_delay: float = 0.01
    """How long a proposer with pending events waits for more before proposing."""
    rebroadcast: float = 1.0
    """How long without progress before this validator sends its messages of the height again
    (lost messages are retransmitted, so the protocol is live once the network is)."""

    def of(self, step: int, round_: int) -> float:
        """The timeout of ``step`` in ``round_``."""
        base = (self.propose, self.prevote, self.precommit)[step]
        return base + round_ * self.increase


# --- the state machine ---------------------------------------------------------------------


@dataclass
class _Round:
    """Messages received for one round of the current height."""

    proposal: Proposal | None = None
    votes: dict[str, dict[str, Vote]] = field(default_factory=lambda: {PREVOTE: {}, PRECOMMIT: {}})

    def count(self, vote_type: str, block_hash: str | None) -> int:
        """Votes of ``vote_type`` for ``block_hash`` (``None``: for anything)."""
        votes = self.votes[vote_type].values()
        if block_hash is None:
            return len(votes)
        return sum(1 for v in votes if v.block_hash == block_hash)


class Consensus:
    """One validator's view of consensus at the height after the committed head.

    Attributes:
        height, round, step: where this validator is (steps 0 propose, 1 prevote, 2 precommit).
        signed: what it signed or locked on at this height (see :class:`SignedState`).
        evidence: conflicting votes seen, oldest first.

    Args:
        genesis: the validator set and network.
        private_key: this validator's key (must be a genesis validator's).
        source: pending events and block validity.
        height: the height to decide (committed head + 1).
        signed: what this validator already signed at ``height`` (after a restart).
        timeouts: round timeouts.
    """

    def __init__(
        self,
        genesis: GenesisDocument,
        private_key: Ed25519PrivateKey,
        source: BlockSource,
        height: int,
        signed: SignedState | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        self._genesis = genesis
        self._network = genesis.network
        self._validators: Mapping[str, bytes] = genesis.validator_keys
        self._order = [v.key_id for v in genesis.validators]
        self._quorum = genesis.quorum
        self._honest_one = len(self._order) // 3 + 1  # f + 1: at least one honest sender
        self._key = private_key
        self.node_id = key_id(public_key_bytes(private_key))
        if self.node_id not in self._validators:
            raise ConsensusError("this key is not a genesis validator")
        self._source = source
        self._timeouts = timeouts or Timeouts()
        self.evidence: list[Evidence] = []
        self._future: list[Message] = []
        self._future_from: Counter[str] = Counter()
        self._future_share = max(1, _FUTURE_HEIGHT_BUFFER // len(self._order))
        self.height = height
        self.round = 0
        self.step = PROPOSE_STEP
        self.signed = SignedState(height)
        self._rounds: dict[int, _Round] = {}
        self._timers: list[tuple[float, int, int]] = []
        self._valid: dict[str, bool] = {}
        self._fired: set[tuple[str, int]] = set()  # the paper's "for the first time"
        self._decided = False
        self._propose_timer_set = False
        self._proposal_wait_started: float | None = None
        self._now = 0.0
        self._quiet_since = 0.0
        # Signatures already verified, by height: an Ed25519 signature binds its exact
        # message, so a repeat (a duplicate or a relay) needs no second check; those of past
        # heights are forgotten.
        self._authentic_sigs: dict[int, set[bytes]] = {}
        self._enter_height(height, signed)

    # --- public inputs -------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """Begin round 0 of the current height."""
        self._now = now
        actions: list[Action] = []
        self._start_round(0, now, actions)
        return actions

    def handle(self, message: Message, now: float) -> list[Action]:
        """Take a message from a peer (checked here: signature, validator, network)."""
        self._now = now
        actions: list[Action] = []
        if message.height > self.height:
            if self._future_from[message.node] < self._future_share and self._authentic(message):
                self._future.append(message)
                self._future_from[message.node] += 1
                if message.height > self.height + 1 or self._behind_signals():
                    actions.append(CatchUp(message.height - 1))
            return actions
        if message.height < self.height or not self._authentic(message):
            return actions
        self._receive(message, now, actions)
        return actions

    def tick(self, now: float) -> list[Action]:
        """Let time pass: fire due timeouts, and propose if a batch is ready."""
        self._now = now
        actions: list[Action] = []
        due = [t for t in self._timers if t[0] <= now]
        self._timers = [t for t in self._timers if t[0] > now]
        for _, step, round_ in sorted(due):
            self._on_timeout(step, round_, now, actions)
        self._await_proposal(now)
        self._maybe_propose(now, actions)
        self._evaluate(now, actions)
        if now >= self._quiet_since + self._timeouts.rebroadcast:
            self._quiet_since = now
            actions.extend(Broadcast(p) for p in self.signed.proposals.values())
            actions.extend(Broadcast(v) for v in self.signed.votes.values())
            actions.extend(self._proof_of_lock())
        return actions

    def _proof_of_lock(self) -> list[Action]:
        """Relay the prevotes that made our valid block valid (any validator's, as signed).

        A validator locked on a block prevotes only for it or for a block with a newer proof;
        one that missed those prevotes (lost, or it crashed) can only be convinced by seeing
        them, whoever signed them — so they are gossiped on, as Tendermint's vote gossip does.
        """
        return [Broadcast(vote) for vote in self.signed.valid_votes]

    def notify(self, now: float) -> list[Action]:
        """The mempool gained events: a waiting proposer may propose; others start the clock."""
        self._now = now
        actions: list[Action] = []
        self._await_proposal(now)
        self._maybe_propose(now, actions)
        self._evaluate(now, actions)
        return actions

    def committed_elsewhere(self, block: Block, now: float) -> list[Action]:
        """A certified block for the current height arrived by catch-up; move past it."""
        self._now = now
        if block.header.height != self.height:
            return []
        actions: list[Action] = []
        self._next_height(now, actions)
        return actions

    def _awaits_proposal(self) -> bool:
        """Should this validator start waiting for another's proposal (the propose timeout)?

        Only while it has events waiting for a block, so an idle network stays quiet. This is
        asked at the next input or tick, never in the step that decided a block: the decided
        block's events are still in the mempool until the block is committed.
        """
        return (
            self.step == PROPOSE_STEP
            and not self._propose_timer_set
            and self.proposer(self.height, self.round) != self.node_id
            and self._source.has_pending()
        )

    def _await_proposal(self, now: float) -> None:
        if self._awaits_proposal():
            self._schedule(PROPOSE_STEP, self.round, now)

    @property
    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (``None``: only on input)."""
        if self._awaits_proposal():
            return self._now
        deadlines = [t[0] for t in self._timers]
        if self.signed.votes or self.signed.proposals:
            deadlines.append(self._quiet_since + self._timeouts.rebroadcast)
        if self._proposal_wait_started is not None and self.step == PROPOSE_STEP:
            deadlines.append(self._proposal_wait_started + self._timeouts.batch_delay)
        return min(deadlines) if deadlines else None

    def proposer(self, height: int, round_: int) -> str:
        """The validator that proposes in ``round_`` of ``height`` (round robin)."""
        return self._order[(height + round_) % len(self._order)]

    # --- heights and rounds --------------------------------------------------------------

    def _enter_height(self, height: int, signed: SignedState | None) -> None:
        self.height = height
        self._authentic_sigs = {h: s for h, s in self._authentic_sigs.items() if h >= height}
        self.round = 0
        self.step = PROPOSE_STEP
        self.signed = (
            signed if signed is not None and signed.height == height else SignedState(height)
        )
        self._rounds = {}
        # A restarted validator still knows what it signed and the proof of its lock.
        for vote in (*self.signed.valid_votes, *self.signed.votes.values()):
            self._round(vote.round).votes[vote.type][vote.node] = vote
        self._timers = []
        self._valid = {}
        self._fired = set()
        self._decided = False
        self._propose_timer_set = False
        self._proposal_wait_started = None

    def _next_height(self, now: float, actions: list[Action]) -> None:
        future, self._future = self._future, []
        self._enter_height(self.height + 1, None)
        self._start_round(0, now, actions)
        for message in future:
            if message.height == self.height:
                self._receive(message, now, actions)
            elif message.height > self.height:
                self._future.append(message)
        self._future_from = Counter(m.node for m in self._future)

    def _round(self, round_: int) -> _Round:
        found = self._rounds.get(round_)
        if found is None:
            found = self._rounds[round_] = _Round()
        return found

    def _start_round(self, round_: int, now: float, actions: list[Action]) -> None:
        """StartRound (L10-L21)."""
        self.round = round_
        self.step = PROPOSE_STEP
        self._propose_timer_set = False
        self._proposal_wait_started = None
        if self.proposer(self.height, round_) == self.node_id:
            earlier = self.signed.proposals.get(round_)
            if earlier is not None:  # restarted after proposing: the same proposal again
                actions.append(Broadcast(earlier))
                self._record(earlier, actions)
            elif self.signed.valid_block is not None:
                self._propose(self.signed.valid_block, self.signed.valid_round, now, actions)
                actions.extend(self._proof_of_lock())
            else:
                self._proposal_wait_started = now
                self._maybe_propose(now, actions)
        elif round_ > 0:
            self._schedule(PROPOSE_STEP, round_, now)
        # Messages of this round that arrived early may already satisfy some rules.
        self._evaluate(now, actions)

    def _maybe_propose(self, now: float, actions: list[Action]) -> None:
        if self.step != PROPOSE_STEP:
            self._proposal_wait_started = None
        if self._proposal_wait_started is None:
            return
        if not self._source.has_pending() and self.round == 0:
            self._proposal_wait_started = now  # nothing to propose: keep waiting
            return
        # The same sum as next_deadline, so the tick it schedules always finds the batch due.
        if self.round == 0 and now < self._proposal_wait_started + self._timeouts.batch_delay:
            return
        self._proposal_wait_started = None
        block = self._source.build_block(self.height, self.round)
        self._propose(block, -1, now, actions)

    def _propose(self, block: Block, pol_round: int, now: float, actions: list[Action]) -> None:
        message = proposal_bytes(
            self._network, self.height, self.round, pol_round, block.header.block_hash
        )
        signature = sign(self._key, PROPOSAL_PREFIX, message)
        proposal = Proposal(
            self.height,
            self.round,
            pol_round,
            block,
            self.node_id,
            signature,
            self._source.last_commit(),
        )
        self.signed.proposals[self.round] = proposal
        actions.append(Persist(self.signed.snapshot()))
        actions.append(Broadcast(proposal))
        self._record(proposal, actions)

    def _schedule(self, step: int, round_: int, now: float) -> None:
        if step == PROPOSE_STEP:
            self._propose_timer_set = True
        self._timers.append((now + self._timeouts.of(step, round_), step, round_))

    def _on_timeout(self, step: int, round_: int, now: float, actions: list[Action]) -> None:
        if round_ != self.round:
            return
        if step == PROPOSE_STEP and self.step == PROPOSE_STEP:  # OnTimeoutPropose (L57)
            self._vote(PREVOTE, "", actions)
            self.step = PREVOTE_STEP
        elif step == PREVOTE_STEP and self.step == PREVOTE_STEP:  # OnTimeoutPrevote (L61)
            self._vote(PRECOMMIT, "", actions)
            self.step = PRECOMMIT_STEP
        elif step == PRECOMMIT_STEP:  # OnTimeoutPrecommit (L65)
            self._start_round(round_ + 1, now, actions)
            return
        self._evaluate(now, actions)

    # --- receiving -----------------------------------------------------------------------

    def _authentic(self, message: Message) -> bool:
        """Signed by the validator it names, for this network (each signature checked once)."""
        checked = self._authentic_sigs.get(message.height, ())
        if message.sig in checked:
            return True
        public_key = self._validators.get(message.node)
        if public_key is None:
            return False
        try:
            verify_signature(
                public_key, message.prefix, message.message_bytes(self._network), message.sig
            )
        except SignatureError:
            return False
        at_height = self._authentic_sigs.setdefault(message.height, set())
        if len(at_height) > _MAX_CHECKED_SIGNATURES:
            at_height.clear()  # a Byzantine validator signing vote after vote at one height
        at_height.add(message.sig)
        return True

    def _behind_signals(self) -> bool:
        """f+1 validators already talk about a later height: we are behind."""
        senders = {m.node for m in self._future if m.height > self.height}
        return len(senders) >= self._honest_one

    def _receive(self, message: Message, now: float, actions: list[Action]) -> None:
        """Record a message of the current height, then apply whatever rules now hold."""
        if self._record(message, actions):
            self._evaluate(now, actions)

    def _record(self, message: Message, actions: list[Action]) -> bool:
        """Add ``message`` to its round; False when it adds nothing (or is refused)."""
        state = self._round(message.round)
        if isinstance(message, Proposal):
            if message.node != self.proposer(message.height, message.round):
                return False
            if message.block.header.height != self.height or message.pol_round >= message.round:
                return False
            if state.proposal is not None:
                return False
            state.proposal = message
            self._quiet_since = self._now
            return True
        known = state.votes[message.type].get(message.node)
        if known is None:
            state.votes[message.type][message.node] = message
            self._quiet_since = self._now  # progress: no need to repeat ourselves yet
            return True
        conflicting = known.block_hash != message.block_hash
        if conflicting and all(e.first != known or e.second != message for e in self.evidence):
            evidence = Evidence(message.node, known, message)
            self.evidence.append(evidence)
            actions.append(evidence)
        return False

    def _is_valid(self, block: Block) -> bool:
        """Does the source accept ``block`` on its committed head? Verdicts are kept, except
        a :class:`ChainError` (the block does not fit the head): messages of the next height
        are replayed in the step that decides this one, before the runtime has stored the
        decided block, so such a verdict may only mean "not yet" and is asked again later."""
        block_hash = block.header.block_hash
        verdict = self._valid.get(block_hash)
        if verdict is None:
            try:
                self._source.validate_block(block)
                verdict = True
            except ChainError:
                return False
            except LedgerError:
                verdict = False
            self._valid[block_hash] = verdict
        return verdict

    def _vote(self, vote_type: str, block_hash: str, actions: list[Action]) -> None:
        """Sign, persist and send a vote; a vote already signed is resent, never changed."""
        key = (self.round, vote_type)
        earlier = self.signed.votes.get(key)
        if earlier is not None:
            # Never sign a second, different vote (even after a restart): what was signed
            # stands, and is said again.
            actions.append(Broadcast(earlier))
            self._record(earlier, actions)
            return
        message = vote_bytes(self._network, self.height, self.round, vote_type, block_hash)
        vote = Vote(
            vote_type,
            self.height,
            self.round,
            block_hash,
            self.node_id,
            sign(self._key, VOTE_PREFIX, message),
        )
        self.signed.votes[key] = vote
        actions.append(Persist(self.signed.snapshot()))
        actions.append(Broadcast(vote))
        self._record(vote, actions)

    def _evaluate(self, now: float, actions: list[Action]) -> None:
        """Apply the paper's rules until none fires (or the height is decided)."""
        height = self.height
        while self.height == height and not self._decided:
            if not self._apply_one_rule(now, actions):
                return

    def _apply_one_rule(self, now: float, actions: list[Action]) -> bool:
        """Apply the first rule whose condition holds; False when none does."""
        if self._try_decide(now, actions) or self._skip_to_later_round(now, actions):
            return True
        r = self.round
        current = self._round(r)
        proposal = current.proposal
        signed = self.signed
        if proposal is not None and self.step == PROPOSE_STEP:
            block_hash = proposal.block_hash
            if proposal.pol_round == -1:  # L22
                ok = self._is_valid(proposal.block) and (
                    signed.locked_round == -1 or _hash(signed.locked_block) == block_hash
                )
                self._vote(PREVOTE, block_hash if ok else "", actions)
                self.step = PREVOTE_STEP
                return True
            if self._round(proposal.pol_round).count(PREVOTE, block_hash) >= self._quorum:  # L28
                ok = self._is_valid(proposal.block) and (
                    signed.locked_round <= proposal.pol_round
                    or _hash(signed.locked_block) == block_hash
                )
                self._vote(PREVOTE, block_hash if ok else "", actions)
                self.step = PREVOTE_STEP
                return True
        if (
            self.step == PREVOTE_STEP
            and ("prevote-timeout", r) not in self._fired
            and current.count(PREVOTE, None) >= self._quorum
        ):  # L34
            self._fired.add(("prevote-timeout", r))
            self._schedule(PREVOTE_STEP, r, now)
            return True
        if (
            proposal is not None
            and self.step >= PREVOTE_STEP
            and ("polka", r) not in self._fired
            and current.count(PREVOTE, proposal.block_hash) >= self._quorum
            and self._is_valid(proposal.block)
        ):  # L36
            self._fired.add(("polka", r))
            signed.valid_round, signed.valid_block = r, proposal.block
            signed.valid_votes = tuple(
                v for v in current.votes[PREVOTE].values() if v.block_hash == proposal.block_hash
            )
            if self.step == PREVOTE_STEP:
                signed.locked_round, signed.locked_block = r, proposal.block
                self._vote(PRECOMMIT, proposal.block_hash, actions)
                self.step = PRECOMMIT_STEP
            else:
                actions.append(Persist(signed.snapshot()))
            return True
        if self.step == PREVOTE_STEP and current.count(PREVOTE, "") >= self._quorum:  # L44
            self._vote(PRECOMMIT, "", actions)
            self.step = PRECOMMIT_STEP
            return True
        if ("precommit-timeout", r) not in self._fired and current.count(
            PRECOMMIT, None
        ) >= self._quorum:  # L47
            self._fired.add(("precommit-timeout", r))
            self._schedule(PRECOMMIT_STEP, r, now)
            return True
        return False

    def _skip_to_later_round(self, now: float, actions: list[Action]) -> bool:
        """L55: f+1 validators are in a later round: go there."""
        for round_ in sorted((r for r in self._rounds if r > self.round), reverse=True):
            state = self._rounds[round_]
            senders = set(state.votes[PREVOTE]) | set(state.votes[PRECOMMIT])
            if state.proposal is not None:
                senders.add(state.proposal.node)
            if len(senders) >= self._honest_one:
                self._start_round(round_, now, actions)
                return True
        return False

    def _try_decide(self, now: float, actions: list[Action]) -> bool:
        """L49: a proposal with a quorum of precommits in any round decides the height."""
        for round_, state in sorted(self._rounds.items()):
            proposal = state.proposal
            if proposal is None:
                continue
            block_hash = proposal.block_hash
            if state.count(PRECOMMIT, block_hash) < self._quorum:
                continue
            if not self._is_valid(proposal.block):
                continue
            votes = [v for v in state.votes[PRECOMMIT].values() if v.block_hash == block_hash]
            votes.sort(key=lambda v: self._order.index(v.node))
            certificate = CommitCertificate(
                round_, tuple(VoteSignature(v.node, v.sig) for v in votes)
            )
            self._decided = True
            actions.append(Commit(proposal.block, certificate, proposal.last_commit))
            self._next_height(now, actions)
            return True
        return False


def _hash(block: Block | None) -> str | None:
    return None if block is None else block.header.block_hash
