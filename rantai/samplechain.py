"""Deterministic sample networks and chains for the demo, the tests and the benchmarks.

Keys are derived from a seed (never use these networks for real data): the same arguments
always give the same genesis document, the same blocks and the same export bytes.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.blocks import (
    Block,
    BlockHeader,
    CommitCertificate,
    GenesisDocument,
    genesis_header,
    parse_genesis,
    quorum,
    sign_vote,
)
from ledger.encoding import format_time
from ledger.events import Envelope, sign_event
from ledger.keys import key_id, public_key_bytes
from ledger.merkle import CompactRange, leaf_hash

__all__ = ["LINEAGE_FINAL_LOT", "SampleNetwork", "derive_key", "sample_network"]

LINEAGE_FINAL_LOT = "LIN-FINAL"
"""The last lot of :meth:`SampleNetwork.lineage`."""


def derive_key(seed: bytes, label: str) -> Ed25519PrivateKey:
    """A deterministic Ed25519 key for ``label`` (test and demo data only)."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed + label.encode()).digest())


@dataclass
class SampleNetwork:
    """A genesis document with the private keys behind it."""

    genesis: GenesisDocument
    validator_keys: list[Ed25519PrivateKey]
    governance_key: Ed25519PrivateKey
    seed: bytes

    @property
    def network(self) -> str:
        """The network id."""
        return self.genesis.network

    def key(self, label: str) -> Ed25519PrivateKey:
        """A deterministic member key of this network."""
        return derive_key(self.seed, label)

    def event(
        self,
        kind: str,
        payload: dict[str, Any],
        signers: list[Ed25519PrivateKey],
        nonce: str,
        created_at: str,
    ) -> Envelope:
        """A signed event of this network."""
        body = {
            "v": 1,
            "network": self.network,
            "type": kind,
            "nonce": nonce,
            "created_at": created_at,
            "payload": payload,
        }
        return sign_event(body, signers)

    def commit(
        self,
        previous: BlockHeader,
        log: CompactRange,
        events: list[Envelope],
        time: str,
        round_: int = 0,
    ) -> Block:
        """The next block after ``previous`` with ``events``, certified by a quorum.

        ``log`` is advanced by the block's events.
        """
        for envelope in events:
            log.append(leaf_hash(envelope.leaf))
        proposer = self.validator_keys[(previous.height + 1) % len(self.validator_keys)]
        header = BlockHeader(
            network=self.network,
            height=previous.height + 1,
            prev=previous.block_hash,
            time=time,
            proposer=key_id(public_key_bytes(proposer)),
            event_count=len(events),
            tree_size=log.size,
            tree_root=log.root().hex(),
        )
        voters = self.validator_keys[: quorum(len(self.validator_keys))]
        sigs = tuple(
            sign_vote(k, self.network, header.height, round_, "precommit", header.block_hash)
            for k in voters
        )
        return Block(header, tuple(events), CommitCertificate(round_, sigs))

    def chain(
        self,
        blocks: int,
        events_per_block: int,
        *,
        start: _dt.datetime | None = None,
        lineage_depth: int = 0,
    ) -> Iterator[Block]:
        """The genesis block, then ``blocks`` certified blocks of signed events.

        Block 1 registers an organisation and a producer; later blocks are harvests
        (``lot.create``) signed by the producer. With ``lineage_depth`` d, the last block also
        holds a lineage d generations deep (see :meth:`lineage`) whose final lot is
        :data:`LINEAGE_FINAL_LOT`.
        """
        moment = start or _dt.datetime(2026, 11, 29, 3, 0, tzinfo=_dt.UTC)
        header = genesis_header(self.genesis)
        yield Block(header, (), None)
        log = CompactRange()
        admin, producer = self.key("admin"), self.key("producer")
        serial = 0
        for _ in range(blocks):
            moment += _dt.timedelta(seconds=1)
            time = format_time(moment)
            events: list[Envelope] = []
            if header.height == 0:
                events.append(
                    self.event(
                        "org.register",
                        {
                            "org_id": "koperasi-kopi",
                            "name": "Koperasi Kopi Sambas",
                            "kind": "cooperative",
                            "admins": [public_key_bytes(admin).hex()],
                        },
                        [self.governance_key],
                        "org-1",
                        time,
                    )
                )
                events.append(
                    self.event(
                        "member.register",
                        {
                            "member_id": "koperasi-kopi/siti",
                            "role": "producer",
                            "public_keys": [public_key_bytes(producer).hex()],
                            "profile_hash": hashlib.sha256(b"siti").hexdigest(),
                        },
                        [admin],
                        "member-1",
                        time,
                    )
                )
            while len(events) < events_per_block:
                serial += 1
                events.append(
                    self.event(
                        "lot.create",
                        {
                            "lot_id": f"LOT-{serial:08d}",
                            "commodity": "coffee",
                            "quantity": f"{10 + serial % 90}.5",
                            "uom": "kg",
                            "producer": "koperasi-kopi/siti",
                            "harvested_on": "2026-11-20",
                        },
                        [producer],
                        f"lot-{serial}",
                        time,
                    )
                )
            if lineage_depth and len(events) and header.height + 1 == blocks:
                harvested = [f"LOT-{n:08d}" for n in range(serial - lineage_depth, serial + 1)]
                events.extend(self.lineage(harvested, lineage_depth, time))
            block = self.commit(header, log, events, time)
            header = block.header
            yield block

    def lineage(self, harvested: list[str], depth: int, time: str) -> list[Envelope]:
        """Events that make a lot ``depth`` generations from the harvest lots ``harvested``.

        Generations cycle through merge (with one more harvest lot), split and transform, so a
        backward trace of :data:`LINEAGE_FINAL_LOT` walks ``depth`` hops and reaches
        ``depth // 3 + 2`` origins. Needs ``depth + 1`` unused harvest lots of the producer.
        """
        producer = [self.key("producer")]
        current, fresh = harvested[0], iter(harvested[1:])
        events = []
        for generation in range(1, depth + 1):
            made = LINEAGE_FINAL_LOT if generation == depth else f"LIN-{generation:02d}"
            kind = ("lot.merge", "lot.split", "lot.transform")[(generation - 1) % 3]
            if kind == "lot.merge":
                payload: dict[str, Any] = {"inputs": [current, next(fresh)], "lot_id": made}
            elif kind == "lot.split":
                payload = {"lot_id": current, "outputs": [{"lot_id": made, "quantity": "5"}]}
            else:
                payload = {
                    "inputs": [{"lot_id": current, "quantity": "5"}],
                    "outputs": [
                        {"lot_id": made, "commodity": "coffee", "quantity": "4", "uom": "kg"}
                    ],
                    "process": "hulling",
                }
            events.append(self.event(kind, payload, producer, f"lineage-{generation}", time))
            current = made
        return events


def sample_network(
    validators: int = 4, *, network: str = "kalbar-coop", seed: bytes = b"rantai-sample"
) -> SampleNetwork:
    """A network of ``validators`` nodes with one governance admin (threshold 1)."""
    validator_keys = [derive_key(seed, f"validator-{i}") for i in range(1, validators + 1)]
    governance = derive_key(seed, "governance")
    document = {
        "v": 1,
        "network": network,
        "origin": f"ledger.example/{network}",
        "created_at": "2026-11-29T03:00:00Z",
        "validators": [
            {"name": f"node-{i}.{network}", "public_key": public_key_bytes(k).hex()}
            for i, k in enumerate(validator_keys, start=1)
        ],
        "governance": {"admins": [public_key_bytes(governance).hex()], "threshold": 1},
    }
    return SampleNetwork(parse_genesis(document), validator_keys, governance, seed)
