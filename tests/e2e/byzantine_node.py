"""Test-only entry point: a validator that equivocates and sends its peers garbage.

``python -m tests.e2e.byzantine_node DIR`` runs the node in ``DIR`` as ``rantai node run`` does
(:func:`rantai.network.run`), but built as a :class:`ByzantineNode`:

* for every vote it signs it also signs a conflicting one (same height, round and type; nil
  instead of a block, or a made-up block instead of nil) and sends one version first to half of
  its peers and the other version first to the other half. Every peer gets both, so every peer
  can record the double vote as evidence;
* for every proposal it signs it also signs one for another valid block (the same events, one
  second later), sent first to the other half of the peers (a validator keeps the first
  proposal it gets for a round), so the honest validators disagree about what was proposed;
* twice a second it posts garbage to every peer's ``/v1/peer/inbox``: bodies that are not JSON
  or not a batch, malformed and forged messages, its own votes for far-away heights, an event
  with a broken signature, a cosignature that is not hex, and replays of messages it received
  from the other validators.

It keeps an account of what it did in ``DIR/byzantine.json`` (see :data:`REPORT`), for the test
to check that it really equivocated and how the peers answered its garbage.

Its own consensus state machine stays honest (it decides, commits and catches up like any
node); only what it sends is Byzantine. Production code is untouched: it is patched here. The
conflicting messages are deterministic (Ed25519 signatures are), so a repeat adds no new
evidence.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from ledger.blocks import Block, proposal_bytes, sign_vote
from ledger.encoding import format_time, parse_time
from ledger.keys import PROPOSAL_PREFIX, sign
from node.consensus import Action, Broadcast, Proposal, Vote
from node.runtime import LedgerNode
from rantai import network

__all__ = ["REPORT", "ByzantineNode"]

REPORT = "byzantine.json"
"""The account in the node directory: ``{"votes": n, "proposals": n, "answers": {status: n}}``
— conflicting votes and proposals signed, and the peers' HTTP statuses for the garbage."""

GARBAGE_EVERY = 0.5
"""Seconds between two rounds of garbage to every peer."""
GARBAGE_TIMEOUT = aiohttp.ClientTimeout(total=2)
FAR_AHEAD = 10_000
"""How many heights ahead the votes for far-away heights are."""


class ByzantineNode(LedgerNode):
    """A :class:`~node.runtime.LedgerNode` whose messages to peers are Byzantine."""

    report = Path(REPORT)
    """Where the account is kept (:func:`main` puts it in the node directory)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._received: collections.deque[dict[str, Any]] = collections.deque(maxlen=256)
        self._garbage_round = 0
        self._twins: collections.Counter[str] = collections.Counter()
        self._answers: collections.Counter[int] = collections.Counter()

    async def start(self) -> None:
        await super().start()
        self._tasks.append(asyncio.create_task(self._send_garbage(), name="byzantine-garbage"))

    def receive(self, items: list[dict[str, Any]]) -> None:
        self._received.extend(item for item in items if item.get("kind") == "message")
        super().receive(items)

    def _act(self, actions: list[Action]) -> None:
        twins = [
            self._twin(action.message)
            for action in actions
            if isinstance(action, Broadcast) and action.message.node == self.node_id
        ]
        self._twins.update("votes" if isinstance(t, Vote) else "proposals" for t in twins)
        links = list(self._links.values())
        self._send(links[::2], twins)  # these peers get the twin first …
        super()._act(actions)
        self._send(links[1::2], twins)  # … these the real message first

    def _twin(self, message: Vote | Proposal) -> Vote | Proposal:
        """A conflicting message for the same height, round (and type)."""
        network_id = self.genesis.network
        if isinstance(message, Vote):
            other = (
                ""
                if message.block_hash
                else hashlib.sha256(
                    f"byzantine {message.height} {message.round} {message.type}".encode()
                ).hexdigest()
            )
            signature = sign_vote(
                self._key, network_id, message.height, message.round, message.type, other
            )
            return dataclasses.replace(message, block_hash=other, sig=signature.sig)
        header = message.block.header
        later = format_time(parse_time(header.time) + dt.timedelta(seconds=1))
        block = Block(dataclasses.replace(header, time=later), message.block.events, None)
        signed = proposal_bytes(
            network_id, message.height, message.round, message.pol_round, block.header.block_hash
        )
        return dataclasses.replace(
            message, block=block, sig=sign(self._key, PROPOSAL_PREFIX, signed)
        )

    def _send(self, links: list[Any], messages: list[Vote | Proposal]) -> None:
        for message in messages:
            item = json.dumps({"kind": "message", "body": message.to_json()}).encode()
            for link in links:
                link.outbox.put_nowait(item)

    async def _send_garbage(self) -> None:
        while not self._stopped:
            await asyncio.sleep(GARBAGE_EVERY)
            self._garbage_round += 1
            for link in self._links.values():
                url = URL(f"{link.peer.url}/v1/peer/inbox")
                for body in self._garbage():
                    headers = self._signed_headers("POST", url, body)
                    assert self._client is not None
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                        async with self._client.post(
                            url, data=body, headers=headers, timeout=GARBAGE_TIMEOUT
                        ) as response:
                            self._answers[response.status] += 1
            account = {**self._twins, "answers": self._answers}
            self.report.with_suffix(".tmp").write_text(json.dumps(account))
            self.report.with_suffix(".tmp").replace(self.report)

    def _garbage(self) -> list[bytes]:
        height = self.consensus.height
        far = sign_vote(
            self._key, self.genesis.network, height + FAR_AHEAD, self._garbage_round, "prevote", ""
        )
        forged_node = next(v.key_id for v in self.genesis.validators if v.key_id != self.node_id)
        items: list[Any] = [
            "not an object",
            {"kind": "nonsense"},
            {"kind": "message", "body": {"kind": "vote"}},
            {
                "kind": "message",
                "body": Vote("precommit", height, 0, "ab" * 32, forged_node, bytes(64)).to_json(),
            },
            {
                "kind": "message",
                "body": Vote(
                    "prevote", height + FAR_AHEAD, self._garbage_round, "", self.node_id, far.sig
                ).to_json(),
            },
            {
                "kind": "event",
                "body": {
                    "body": {"v": 1, "network": self.genesis.network, "type": "lot.create"},
                    "sigs": [{"key": "00" * 32, "sig": "00" * 64}],
                },
            },
            {
                "kind": "cosignature",
                "body": {"size": 1, "root": "00" * 32, "name": self.name, "signature": "zz"},
            },
            *list(self._received)[-8:],
        ]
        batch = json.dumps({"from": self.node_id, "items": items}).encode()
        return [b"\xff not json", b"[1, 2, 3]", b'{"from": "x"}', batch]


def main() -> None:
    """Run the node in ``sys.argv[1]`` as a :class:`ByzantineNode`."""
    directory = Path(sys.argv[1])
    ByzantineNode.report = directory / REPORT
    network.LedgerNode = ByzantineNode  # type: ignore[attr-defined]  # what run_node builds
    network.run(network.load_config(directory))


if __name__ == "__main__":
    main()
