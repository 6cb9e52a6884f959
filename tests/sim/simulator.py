"""A deterministic simulator for consensus: every validator in one process, one seeded schedule.

The simulated network loses, delays, duplicates and reorders messages and can be partitioned;
validators crash (losing everything but their storage: committed blocks and the votes and locks
they persisted — a crash may strike between two actions of one step) and restart; one validator
may be Byzantine (equivocating proposals, double votes, votes for garbage, replays). Time is
simulated, so a run of minutes of protocol time takes a fraction of a second.

Safety is asserted after every action: no two blocks decided at one height, heights never go
back, only submitted events are committed, no honest validator signs two different votes for
one height, round and type (nor sends one it has not persisted). :meth:`Simulation.run` then
checks liveness after the network heals and that every node's chain is a prefix of one chain
that passes the chain verifier. The same seed always gives the same run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import random
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.blocks import (
    Block,
    GenesisDocument,
    export_lines,
    proposal_bytes,
    sign_vote,
    verify_certificate,
)
from ledger.errors import ConsensusError, LedgerError
from ledger.events import Envelope
from ledger.keys import PROPOSAL_PREFIX, key_id, public_key_bytes, sign
from ledger.verifier import verify_export
from node.application import LedgerApplication, MemoryLedger
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
)
from rantai.samplechain import SampleNetwork, sample_network

START = dt.datetime(2026, 11, 29, 3, 0, tzinfo=dt.UTC)
LIVENESS_BOUND = 120.0
"""Simulated seconds within which a block must commit once the network is healthy again."""
TIMEOUTS = Timeouts(propose=1.0, prevote=0.5, precommit=0.5, increase=0.5, batch_delay=0.01)


class SimulationError(AssertionError):
    """A property broke; the message starts with the seed that replays it."""


@dataclass
class Faults:
    """How hostile a run is."""

    loss: float = 0.0
    """Probability that a message is lost (before ``heal_at``)."""
    duplicate: float = 0.0
    max_delay: float = 0.05
    crashes: int = 0
    """How many crash-and-restart cycles strike random honest validators."""
    partition: bool = False
    byzantine: bool = False
    heal_at: float = 30.0
    """Simulated time after which loss, partitions and crashes stop."""


@dataclass
class SimNode:
    """One validator: storage that survives crashes, and consensus while it is up."""

    index: int
    key: Ed25519PrivateKey
    ledger: MemoryLedger
    signed: SignedState | None = None
    consensus: Consensus | None = None
    app: LedgerApplication | None = None
    highest: int = 0
    tick_at: float | None = None
    sent_votes: dict[tuple[int, int, str], str] = field(default_factory=dict)

    @property
    def node_id(self) -> str:
        return key_id(public_key_bytes(self.key))


class Simulation:
    """One seeded run; validator 0 is Byzantine when ``faults.byzantine``."""

    def __init__(self, seed: int, validators: int = 4, faults: Faults | None = None) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.faults = faults or Faults()
        self.net: SampleNetwork = sample_network(validators)
        self.genesis: GenesisDocument = self.net.genesis
        self.now = 0.0
        self._queue: list[tuple[float, int, str, Any]] = []
        self._sequence = 0
        self.nodes = [
            SimNode(i, key, MemoryLedger(self.genesis))
            for i, key in enumerate(self.net.validator_keys)
        ]
        self.byzantine = {0} if self.faults.byzantine else set()
        self.partition: set[int] | None = None
        self.submitted: dict[str, Envelope] = {}
        self.decided: dict[int, str] = {}
        self.last_commit_at = 0.0
        self._serial = 0
        self._seen_messages: list[tuple[int, Any]] = []
        self._bootstrap()
        for node in self.nodes:
            if node.index not in self.byzantine:
                self._boot(node)

    def fail(self, what: str) -> SimulationError:
        """A failure that names the seed (replay: ``RANTAI_SIM_SEED=<seed> pytest tests/sim``)."""
        return SimulationError(f"seed {self.seed}: {what}")

    # --- setup ---------------------------------------------------------------------------

    def _bootstrap(self) -> None:
        """Block 1 (an organisation and a producer) is committed everywhere before the run."""
        first = list(self.net.chain(1, 2))[1]
        assert first.commit is not None
        for node in self.nodes:
            app = LedgerApplication(self.genesis, node.ledger, node.node_id, self._wall)
            app.commit(first, first.commit)
            node.highest = 1
        self.decided[1] = first.header.block_hash

    def _wall(self) -> dt.datetime:
        return START + dt.timedelta(seconds=60 + self.now)

    def _boot(self, node: SimNode) -> None:
        node.app = LedgerApplication(self.genesis, node.ledger, node.node_id, self._wall, 20)
        for envelope in self.submitted.values():  # clients resubmit what they have not seen
            self._admit(node, envelope)
        height = node.ledger.head.height + 1
        node.consensus = Consensus(self.genesis, node.key, node.app, height, node.signed, TIMEOUTS)
        self._act(node, node.consensus.start(self.now))
        self._schedule_tick(node)

    def _crash(self, node: SimNode) -> None:
        node.consensus = None
        node.app = None
        node.tick_at = None
        restart = self.now + self.rng.uniform(0.5, 10.0)
        self._push(restart, "restart", node.index)

    # --- schedule and network ------------------------------------------------------------

    def _push(self, at: float, kind: str, payload: Any) -> None:
        self._sequence += 1
        heapq.heappush(self._queue, (at, self._sequence, kind, payload))

    def _schedule_tick(self, node: SimNode) -> None:
        """One pending tick per node, at its consensus's next deadline (stale ones are skipped)."""
        if node.consensus is None:
            return
        deadline = node.consensus.next_deadline
        if deadline is not None and deadline != node.tick_at:
            node.tick_at = max(deadline, self.now)
            self._push(node.tick_at, "tick", (node.index, node.tick_at))

    def _hostile(self) -> bool:
        return self.now < self.faults.heal_at

    def _connected(self, sender: int, receiver: int) -> bool:
        if self.partition is None:
            return True
        return (sender in self.partition) == (receiver in self.partition)

    def _send(self, sender: int, message: Any, to: list[int] | None = None) -> None:
        for receiver in to if to is not None else range(len(self.nodes)):
            if receiver == sender or not self._connected(sender, receiver):
                continue
            if self._hostile() and self.rng.random() < self.faults.loss:
                continue
            copies = 2 if self.rng.random() < self.faults.duplicate else 1
            for _ in range(copies):
                delay = self.rng.uniform(0.001, self.faults.max_delay)
                self._push(self.now + delay, "message", (sender, receiver, message))

    # --- clients -------------------------------------------------------------------------

    def _submit_event(self) -> None:
        """A client harvest (``lot.create``) submitted to a random validator, then gossiped."""
        self._serial += 1
        time = self._wall().strftime("%Y-%m-%dT%H:%M:%SZ")
        envelope = self.net.event(
            "lot.create",
            {
                "lot_id": f"SIM-{self._serial}",
                "commodity": "coffee",
                "quantity": f"{self._serial}.5",
                "uom": "kg",
                "producer": "koperasi-kopi/siti",
                "harvested_on": "2026-11-20",
            },
            [self.net.key("producer")],
            f"sim-{self._serial}",
            time,
        )
        self.submitted[envelope.event_id] = envelope
        target = self.rng.randrange(len(self.nodes))
        self._push(self.now, "event", (target, envelope))

    def _admit(self, node: SimNode, envelope: Envelope) -> bool:
        if node.app is None or (node.consensus is None and node.index not in self.byzantine):
            return False
        try:
            admission = node.app.submit(envelope)
        except LedgerError:
            return False
        return admission.status == "pending"

    # --- carrying out actions ------------------------------------------------------------

    def _act(self, node: SimNode, actions: list[Action]) -> None:
        for action in actions:
            if node.consensus is None:
                return  # crashed in the middle of the step: the rest is lost
            if isinstance(action, Persist):
                node.signed = action.state
            elif isinstance(action, Broadcast):
                self._check_sent(node, action.message)
                self._send(node.index, action.message)
            elif isinstance(action, Commit):
                assert node.app is not None
                node.app.commit(action.block, action.certificate, action.parent_certificate)
                self._record_commit(node, action.block)
            elif isinstance(action, CatchUp):
                self._push(self.now + self.rng.uniform(0.01, 0.2), "catch-up", node.index)
            elif isinstance(action, Evidence):
                accused = {self.nodes[i].node_id for i in self.byzantine}
                if action.node not in accused:
                    raise self.fail(f"evidence against honest validator {action.node}")
            if self._crash_due(node):
                self._crash(node)
                return

    def _crash_due(self, node: SimNode) -> bool:
        budget = self.faults.crashes
        if not budget or not self._hostile() or node.index in self.byzantine:
            return False
        if self.rng.random() < 0.002:
            self.faults.crashes -= 1
            return True
        return False

    def _check_sent(self, node: SimNode, message: Vote | Proposal) -> None:
        if not isinstance(message, Vote) or message.node != node.node_id:
            return  # proposals, and other validators' votes relayed as they signed them
        key = (message.height, message.round, message.type)
        earlier = node.sent_votes.setdefault(key, message.block_hash)
        if earlier != message.block_hash:
            raise self.fail(f"honest validator {node.index} double-signed {key}")
        persisted = node.signed.votes.get((message.round, message.type)) if node.signed else None
        if node.signed is None or node.signed.height != message.height or persisted != message:
            raise self.fail(f"validator {node.index} sent a vote it had not persisted")

    def _record_commit(self, node: SimNode, block: Block) -> None:
        height = block.header.height
        known = self.decided.setdefault(height, block.header.block_hash)
        if known != block.header.block_hash:
            raise self.fail(f"two different blocks decided at height {height}")
        if height != node.highest + 1:
            raise self.fail(f"node {node.index} went from height {node.highest} to {height}")
        node.highest = height
        self.last_commit_at = self.now
        for envelope in block.events:
            if envelope.event_id not in self.submitted:
                raise self.fail(f"committed event {envelope.event_id} was never submitted")

    def _catch_up(self, node: SimNode) -> None:
        """Fetch certified blocks from reachable peers; every certificate is checked."""
        peers = [p for p in self.nodes if p is not node and self._connected(p.index, node.index)]
        self.rng.shuffle(peers)
        for peer in peers:
            while node.consensus is not None and node.app is not None:
                height = node.ledger.head.height + 1
                if height >= len(peer.ledger.blocks):
                    break
                block = peer.ledger.blocks[height]
                if block.commit is None:
                    break
                try:
                    verify_certificate(
                        block.commit,
                        self.genesis.network,
                        height,
                        block.header.block_hash,
                        self.genesis.validator_keys,
                    )
                except ConsensusError as e:
                    raise self.fail(f"a committed block has a bad certificate: {e}") from e
                node.app.commit(block, block.commit)
                self._record_commit(node, block)
                self._act(node, node.consensus.committed_elsewhere(block, self.now))

    # --- the Byzantine validator ---------------------------------------------------------

    def _byzantine_step(self) -> None:
        """Validator 0 sends conflicting and garbage messages about the current height."""
        node = self.nodes[0]
        height = max(n.ledger.head.height for n in self.nodes) + 1
        round_ = self.rng.randrange(3)
        honest = [n for n in self.nodes if n.index not in self.byzantine]
        choice = self.rng.random()
        if choice < 0.3:
            self._equivocate_proposal(node, honest, height, round_)
        elif choice < 0.6:
            for block_hash in (self.rng.randbytes(32).hex(), ""):
                self._send(0, self._vote(node, "prevote", height, round_, block_hash))
        elif choice < 0.8:
            garbage = self.rng.randbytes(32).hex()
            self._send(0, self._vote(node, "precommit", height, round_, garbage))
        elif self._seen_messages:
            _, message = self.rng.choice(self._seen_messages)
            self._send(0, message)  # a replay of somebody's old message

    def _vote(
        self, node: SimNode, vote_type: str, height: int, round_: int, block_hash: str
    ) -> Vote:
        signature = sign_vote(node.key, self.genesis.network, height, round_, vote_type, block_hash)
        return Vote(vote_type, height, round_, block_hash, node.node_id, signature.sig)

    def _equivocate_proposal(
        self, node: SimNode, honest: list[SimNode], height: int, round_: int
    ) -> None:
        """Two different valid-looking blocks to two halves of the network."""
        source = max(honest, key=lambda n: n.ledger.head.height)
        if source.ledger.head.height + 1 != height:
            return
        app = LedgerApplication(self.genesis, source.ledger, node.node_id, self._wall, 20)
        for envelope in list(self.submitted.values())[-5:]:
            self._admit_into(app, envelope)
        blocks = [app.build_block(height, round_)]
        later = self._wall() + dt.timedelta(milliseconds=1)
        app_later = LedgerApplication(self.genesis, source.ledger, node.node_id, lambda: later, 20)
        blocks.append(app_later.build_block(height, round_))
        halves = [[n.index for n in honest[::2]], [n.index for n in honest[1::2]]]
        for block, half in zip(blocks, halves, strict=True):
            message = proposal_bytes(
                self.genesis.network, height, round_, -1, block.header.block_hash
            )
            proposal = Proposal(
                height, round_, -1, block, node.node_id, sign(node.key, PROPOSAL_PREFIX, message)
            )
            self._send(0, proposal, half)

    @staticmethod
    def _admit_into(app: LedgerApplication, envelope: Envelope) -> None:
        with contextlib.suppress(LedgerError):  # the Byzantine node proposes what it can
            app.submit(envelope)

    # --- running -------------------------------------------------------------------------

    def run(self, duration: float = 60.0, events: int = 30) -> None:
        """Submit ``events`` client events over ``duration`` simulated seconds, run, check.

        Faults stop at ``faults.heal_at``; from then on every submitted event must be
        committed within :data:`LIVENESS_BOUND` simulated seconds.

        Raises:
            SimulationError: a property broke.
        """
        for _ in range(events):
            self._push(self.rng.uniform(0.0, duration), "submit", None)
        if self.faults.partition:
            self._push(self.rng.uniform(1.0, self.faults.heal_at / 2), "partition", None)
        self._push(self.faults.heal_at, "heal", None)
        if self.byzantine:
            for _ in range(int(duration * 2)):
                self._push(self.rng.uniform(0.0, duration), "byzantine", None)
        deadline = max(duration, self.faults.heal_at) + LIVENESS_BOUND
        while self._queue:
            if self.now >= duration and self._all_committed():
                break
            self.now, _, kind, payload = heapq.heappop(self._queue)
            if self.now > deadline:
                break
            self._step(kind, payload)
        if not self._all_committed():
            missing = len(self.submitted) - self._committed_count()
            raise self.fail(
                f"{missing} submitted events still not committed {LIVENESS_BOUND:.0f} simulated "
                f"seconds after the faults stopped (at {self.faults.heal_at})"
            )
        self.finish()

    def _committed_count(self) -> int:
        honest = [n for n in self.nodes if n.index not in self.byzantine]
        longest = max(honest, key=lambda n: n.ledger.head.height)
        return sum(len(b.events) for b in longest.ledger.blocks[2:])

    def _all_committed(self) -> bool:
        return self._committed_count() == len(self.submitted)

    def _step(self, kind: str, payload: Any) -> None:
        if kind == "message":
            sender, receiver, message = payload
            node = self.nodes[receiver]
            if len(self._seen_messages) < 500:
                self._seen_messages.append((sender, message))
            if node.consensus is not None:
                self._act(node, node.consensus.handle(message, self.now))
                self._schedule_tick(node)
        elif kind == "tick":
            index, at = payload
            node = self.nodes[index]
            if node.consensus is not None and at == node.tick_at:
                node.tick_at = None
                self._act(node, node.consensus.tick(self.now))
                self._schedule_tick(node)
        elif kind == "submit":
            self._submit_event()
        elif kind == "event":
            target, envelope = payload
            node = self.nodes[target]
            if node.consensus is None:  # the client finds the node down and tries another
                self._push(self.now + 0.5, "event", (self.rng.randrange(len(self.nodes)), envelope))
                return
            if self._admit(node, envelope) and node.consensus is not None:
                for peer in self.nodes:
                    if peer is not node:
                        self._push(
                            self.now + self.rng.uniform(0.001, 0.05),
                            "gossip",
                            (peer.index, envelope),
                        )
                self._act(node, node.consensus.notify(self.now))
                self._schedule_tick(node)
        elif kind == "gossip":
            target, envelope = payload
            node = self.nodes[target]
            if self._admit(node, envelope) and node.consensus is not None:
                self._act(node, node.consensus.notify(self.now))
                self._schedule_tick(node)
        elif kind == "catch-up":
            self._catch_up(self.nodes[payload])
            self._schedule_tick(self.nodes[payload])
        elif kind == "restart":
            self._boot(self.nodes[payload])
        elif kind == "partition":
            honest = [n.index for n in self.nodes]
            self.rng.shuffle(honest)
            self.partition = set(honest[: len(honest) // 2])
        elif kind == "heal":
            self.partition = None
            for node in self.nodes:  # peers reconnect and compare heights
                self._push(self.now + 0.1, "catch-up", node.index)
            for envelope in self.submitted.values():  # clients resubmit what is not committed
                target = self.rng.randrange(len(self.nodes))
                self._push(self.now + self.rng.uniform(0.1, 1.0), "event", (target, envelope))
        elif kind == "byzantine":
            self._byzantine_step()

    def finish(self) -> None:
        """Every chain is a prefix of one chain, and the longest passes the chain verifier."""
        honest = [n for n in self.nodes if n.index not in self.byzantine]
        longest = max(honest, key=lambda n: n.ledger.head.height)
        reference = [b.header.block_hash for b in longest.ledger.blocks]
        for node in honest:
            mine = [b.header.block_hash for b in node.ledger.blocks]
            if reference[: len(mine)] != mine:
                raise self.fail(f"node {node.index}'s chain is not a prefix of the longest")
        try:
            verify_export(export_lines(self.genesis, longest.ledger.blocks), genesis=self.genesis)
        except Exception as e:
            raise self.fail(f"the committed chain does not verify: {e}") from e
