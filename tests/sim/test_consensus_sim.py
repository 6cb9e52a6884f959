"""Seeded simulations of the consensus protocol (see ``tests/sim/simulator.py``).

Each seed picks a scenario — a clean network, loss/duplication/delay, a partition that heals,
crashes with restarts, one Byzantine validator, or everything at once — and a validator count
(4 mostly; also 1 and 7). A failure names its seed; replay it with::

    RANTAI_SIM_SEED=<seed> .venv/bin/pytest tests/sim -q

``RANTAI_SIM_SEEDS=<n>`` runs n seeds instead of the default 320.
"""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.blocks import Block, CommitCertificate, sign_vote
from node.consensus import PREVOTE, Action, CatchUp, Consensus, Persist, Vote
from rantai.samplechain import sample_network
from tests.sim.simulator import Faults, Simulation, SimulationError

SCENARIOS: dict[str, Faults] = {
    "clean": Faults(),
    "lossy": Faults(loss=0.2, duplicate=0.1, max_delay=0.5),
    "partition": Faults(partition=True, loss=0.05, max_delay=0.2),
    "crashes": Faults(crashes=3, loss=0.05),
    "byzantine": Faults(byzantine=True, loss=0.05, duplicate=0.05),
    "everything": Faults(
        byzantine=True, crashes=2, partition=True, loss=0.1, duplicate=0.1, max_delay=0.3
    ),
}


def _seeds() -> list[int]:
    if os.environ.get("RANTAI_SIM_SEED"):
        return [int(os.environ["RANTAI_SIM_SEED"])]
    return list(range(int(os.environ.get("RANTAI_SIM_SEEDS", "320"))))


def _setup(seed: int) -> tuple[str, int, Faults]:
    """The scenario and validator count a seed stands for."""
    names = sorted(SCENARIOS)
    name = names[seed % len(names)]
    validators = {0: 1, 1: 7}.get(seed % 20, 4)
    faults = SCENARIOS[name]
    if validators == 1:
        faults = Faults()  # one validator: nothing to partition, nobody else to be Byzantine
    return name, validators, Faults(**faults.__dict__)


@pytest.mark.sim
@pytest.mark.parametrize("seed", _seeds(), ids=lambda s: f"seed-{s}")
def test_simulated_network_is_safe_and_live(seed: int) -> None:
    _, validators, faults = _setup(seed)
    Simulation(seed, validators=validators, faults=faults).run(duration=60.0, events=30)


@pytest.mark.sim
def test_a_vote_sent_before_it_is_persisted_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulator's checks can fail: a validator that skips persisting its votes is caught."""
    original = Consensus._vote

    def careless(self: Consensus, vote_type: str, block_hash: str, actions: list[Action]) -> None:
        original(self, vote_type, block_hash, actions)
        actions[:] = [a for a in actions if not isinstance(a, Persist)]

    monkeypatch.setattr(Consensus, "_vote", careless)
    with pytest.raises(SimulationError, match=r"^seed 7: validator \d sent a vote it had not"):
        Simulation(7).run(duration=10.0, events=3)


@pytest.mark.sim
def test_two_blocks_at_one_height_are_caught() -> None:
    simulation = Simulation(3)
    simulation.run(duration=10.0, events=3)
    node = simulation.nodes[1]
    other = simulation.net.chain(2, 1)
    forged = list(other)[2]
    node.highest = forged.header.height - 1
    with pytest.raises(SimulationError, match="two different blocks decided at height 2"):
        simulation._record_commit(node, forged)


class _Idle:
    """A block source with nothing to propose (the test only buffers later heights)."""

    def has_pending(self) -> bool:
        return False

    def build_block(self, height: int, round_: int) -> Block:
        raise AssertionError("not the proposer")

    def validate_block(self, block: Block) -> None:
        raise AssertionError("no proposal expected")

    def last_commit(self) -> CommitCertificate | None:
        return None


def test_a_byzantine_flood_of_later_heights_leaves_room_for_honest_validators() -> None:
    """Signed messages for later heights are buffered per validator: a Byzantine validator that
    sends thousands cannot crowd out the honest ones that tell a node it is behind."""
    net = sample_network(4)
    node = Consensus(net.genesis, net.validator_keys[0], _Idle(), height=1)
    node.start(0.0)
    byzantine, honest = net.validator_keys[3], net.validator_keys[1]

    def prevote(key: Ed25519PrivateKey, height: int, round_: int) -> Vote:
        signature = sign_vote(key, net.network, height, round_, PREVOTE, "")
        return Vote(PREVOTE, height, round_, "", signature.node, signature.sig)

    for round_ in range(5000):
        node.handle(prevote(byzantine, 3, round_), 0.0)
    actions = node.handle(prevote(honest, 2, 0), 0.0)
    assert any(isinstance(action, CatchUp) for action in actions)
