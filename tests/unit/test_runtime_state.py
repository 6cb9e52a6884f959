"""What a node keeps: what a validator persists before it sends anything survives the round
trip through JSON, a submitter that stops waiting leaves nothing behind, and the mempool has
a bound."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ledger.blocks import Block, export_lines, proposal_bytes, sign_vote
from ledger.encoding import canonical
from ledger.events import Envelope, EventSignature
from ledger.keys import PROPOSAL_PREFIX, public_key_bytes, sign
from ledger.merkle import CompactRange, leaf_hash
from node.consensus import Proposal, SignedState, Vote, block_wire
from node.runtime import (
    _CATCH_UP_BATCH,
    DEFAULT_MAX_PENDING,
    LedgerNode,
    MempoolFullError,
    Peer,
    _signed_blocks_json,
    _signed_from_json,
    _signed_to_json,
)
from node.store import Store
from rantai.client import build_event
from rantai.samplechain import sample_network


def test_signed_state_round_trips() -> None:
    net = sample_network(4)
    blocks = list(net.chain(2, 3))
    block = Block(blocks[2].header, blocks[2].events, None)  # proposed: not yet certified
    key = net.validator_keys[1]
    votes = {}
    for round_, vote_type, block_hash in (
        (0, "prevote", block.header.block_hash),
        (1, "precommit", ""),
    ):
        signature = sign_vote(key, net.network, 2, round_, vote_type, block_hash)
        votes[(round_, vote_type)] = Vote(
            vote_type, 2, round_, block_hash, signature.node, signature.sig
        )
    message = proposal_bytes(net.network, 2, 1, 0, block.header.block_hash)
    proposal = Proposal(
        2,
        1,
        0,
        block,
        votes[(0, "prevote")].node,
        sign(key, PROPOSAL_PREFIX, message),
        blocks[1].commit,
    )
    state = SignedState(
        height=2,
        votes=votes,
        proposals={1: proposal},
        locked_round=0,
        locked_block=block,
        valid_round=0,
        valid_block=block,
        valid_votes=(votes[(0, "prevote")],),
    )
    value, blocks_by_hash = _signed_to_json(state)
    assert list(blocks_by_hash) == [block.header.block_hash]  # stored once, named by hash
    stored = json.loads(_signed_blocks_json(blocks_by_hash))
    assert stored == {h: {**block_wire(b), "commit": None} for h, b in blocks_by_hash.items()}
    restored = _signed_from_json(json.loads(canonical(value)), stored)
    assert restored == state
    # Blocks stored in their wire form, without "commit" (as nodes did before), load too.
    before = {h: block_wire(b) for h, b in blocks_by_hash.items()}
    assert _signed_from_json(json.loads(canonical(value)), before) == state
    assert restored.proposals[1].last_commit == blocks[1].commit
    assert restored.locked_block is not None
    assert restored.locked_block.header.block_hash == block.header.block_hash


NET = sample_network(1)


def _node(tmp_path: Path, max_pending_events: int = DEFAULT_MAX_PENDING) -> LedgerNode:
    store = Store.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    store.initialize(NET.genesis)
    return LedgerNode(
        NET.genesis,
        store,
        NET.validator_keys[0],
        "node-1",
        [],
        max_pending_events=max_pending_events,
    )


def _org(serial: int) -> Envelope:
    payload = {
        "org_id": f"koperasi-{serial}",
        "name": f"Koperasi {serial}",
        "kind": "cooperative",
        "admins": [public_key_bytes(NET.key(f"admin-{serial}")).hex()],
    }
    return build_event(NET.network, "org.register", payload, [NET.governance_key])


def test_a_submitter_that_times_out_is_forgotten(tmp_path: Path) -> None:
    node = _node(tmp_path)  # never started: nothing commits
    event = _org(1)
    result = asyncio.run(node.submit([event], wait=True, timeout=0.05))
    assert result.events == [{"event_id": event.event_id, "status": "pending"}]
    assert node._waiters == {}
    node.store.close()


def test_a_full_mempool_refuses_a_batch_whole(tmp_path: Path) -> None:
    node = _node(tmp_path, max_pending_events=3)
    asyncio.run(node.submit([_org(1), _org(2)], wait=False, timeout=1))
    with pytest.raises(MempoolFullError, match="2 events are waiting for a block"):
        asyncio.run(node.submit([_org(3), _org(4)], wait=False, timeout=1))
    assert node.app.pending_count == 2
    asyncio.run(node.submit([_org(3)], wait=False, timeout=1))
    assert node.app.pending_count == 3
    node.store.close()


def test_finished_catch_ups_are_not_kept(tmp_path: Path) -> None:
    """A node catches up again and again in a long run: it keeps one task, not one a time."""
    node = _node(tmp_path)

    async def scenario() -> None:
        for _ in range(3):
            node._start_catch_up()
            task = node._catch_up_task
            assert task is not None
            await task
        assert node._tasks == []
        await node.stop()

    asyncio.run(scenario())
    node.store.close()


FOUR = sample_network(4)
CHAIN = list(FOUR.chain(150, 2))


def _catching_up(tmp_path: Path) -> LedgerNode:
    """Validator 1 with an empty database, and a peer 150 blocks ahead."""
    store = Store.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    store.initialize(FOUR.genesis)
    first, second = FOUR.genesis.validators[:2]
    peer = Peer(second.name, "http://127.0.0.1:9", second.key_id)
    node = LedgerNode(FOUR.genesis, store, FOUR.validator_keys[0], first.name, [peer])
    node._links[peer.key_id].height = len(CHAIN) - 1
    return node


def _serve(node: LedgerNode, log: list[tuple[str, int]], chain: list[Block]) -> None:
    """Answer the node's export requests from ``chain``, logging each request with the node's
    head at that moment."""

    async def export(_link: object, start: int) -> bytes:
        log.append(("asked", start))
        await asyncio.sleep(0.01)
        blocks = chain[start : start + 1 + _CATCH_UP_BATCH]
        return b"".join(export_lines(FOUR.genesis, blocks))

    node._export = export  # type: ignore[method-assign]
    original = node._adopt

    def adopt(block: Block) -> bool:
        log.append(("adopted", block.header.height))
        return original(block)

    node._adopt = adopt  # type: ignore[method-assign]


def test_catch_up_asks_for_the_next_batch_while_it_checks_this_one(tmp_path: Path) -> None:
    node = _catching_up(tmp_path)
    log: list[tuple[str, int]] = []
    _serve(node, log, CHAIN)
    asyncio.run(node._catch_up())
    assert node.ledger.head.block_hash == CHAIN[-1].header.block_hash
    asks = [start for what, start in log if what == "asked"]
    assert asks == [1, 65, 129]
    # The second batch was asked for while the first one's blocks were being adopted.
    assert log.index(("asked", 65)) < log.index(("adopted", 2))
    assert [h for what, h in log if what == "adopted"] == list(range(1, len(CHAIN)))
    node.store.close()


def test_catch_up_cosigns_the_last_block_of_each_batch(tmp_path: Path) -> None:
    # Peers hold a quorum's checkpoints of the blocks behind; a node catching up need not
    # send them one cosignature per block (each costs a peer a database read), only one for
    # the newest block it holds after each batch.
    node = _catching_up(tmp_path)
    _serve(node, [], CHAIN)
    asyncio.run(node._catch_up())
    sizes = _cosigned(node)
    assert sizes == [CHAIN[h].header.tree_size for h in (65, 129, len(CHAIN) - 1)]
    assert sorted(node._cosignatures) == sizes
    node.store.close()


def test_catch_up_cosigns_its_head_when_a_batch_ends_early(tmp_path: Path) -> None:
    # The last block adopted is cosigned whatever ends the batch: here a line that is not a
    # block, and a block with another block's certificate.
    node = _catching_up(tmp_path)
    lines = list(export_lines(FOUR.genesis, CHAIN[:11]))[1:]
    assert not asyncio.run(node._adopt_lines([*lines, b'{"header": null}']))
    assert _cosigned(node) == [CHAIN[10].header.tree_size]

    bad = Block(CHAIN[15].header, CHAIN[15].events, CHAIN[14].commit)
    lines = list(export_lines(FOUR.genesis, [*CHAIN[10:15], bad, *CHAIN[16:20]]))[1:]
    assert not asyncio.run(node._adopt_lines(lines))
    assert node.ledger.head.height == 14
    assert _cosigned(node) == [CHAIN[14].header.tree_size]
    node.store.close()


def _cosigned(node: LedgerNode) -> list[int]:
    """The tree sizes of the checkpoint cosignatures the node has sent since last asked."""
    outbox = next(iter(node._links.values())).outbox
    sent = [json.loads(outbox.get_nowait()) for _ in range(outbox.qsize())]
    return [item["body"]["size"] for item in sent if item["kind"] == "cosignature"]


def test_catch_up_stops_at_a_bad_block_and_asks_again_where_it_stopped(tmp_path: Path) -> None:
    node = _catching_up(tmp_path)
    log: list[tuple[str, int]] = []
    bad = list(CHAIN)
    bad[30] = Block(CHAIN[30].header, CHAIN[30].events, CHAIN[29].commit)  # wrong certificate
    _serve(node, log, bad)
    asyncio.run(node._catch_up())
    assert node.ledger.head.height == 29
    assert [start for what, start in log if what == "asked"] == [1, 65]  # not asked again
    _serve(node, log, CHAIN)  # the peer mends its ways
    log.clear()
    asyncio.run(node._catch_up())
    assert [start for what, start in log if what == "asked"] == [29, 93]
    assert node.ledger.head.block_hash == CHAIN[-1].header.block_hash
    node.store.close()


@pytest.mark.parametrize("height", [10, 100], ids=["first-batch", "later-batch"])
def test_a_certified_block_with_a_forged_event_signature_is_refused(
    tmp_path: Path, height: int
) -> None:
    # A quorum certified it (validators that did not check), and the node checks event
    # signatures ahead in a worker process, in the first batch with the producer's key that
    # block 1 of the batch registers: the forged one is caught all the same.
    log = CompactRange()
    for block in CHAIN[:height]:
        for envelope in block.events:
            log.append(leaf_hash(envelope.leaf))
    honest = CHAIN[height]
    first = honest.events[0]
    signature = first.sigs[0]
    flipped = EventSignature(signature.key, signature.sig[:-1] + bytes([signature.sig[-1] ^ 1]))
    forged_events = [dataclasses.replace(first, sigs=(flipped,)), *honest.events[1:]]
    forged = FOUR.commit(CHAIN[height - 1].header, log, forged_events, honest.header.time)
    node = _catching_up(tmp_path)
    _serve(node, [], [*CHAIN[:height], forged, *CHAIN[height + 1 :]])
    asyncio.run(node._catch_up())
    assert node.ledger.head.height == height - 1
    node.store.close()


class _FailingVerifier(Executor):
    """A worker pool whose every job fails (a worker process that died)."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_exception(BrokenProcessPool("the worker died"))
        return future


@pytest.mark.parametrize("verifier", ["failing", "shut down"])
def test_catch_up_checks_in_line_when_the_verifier_fails(tmp_path: Path, verifier: str) -> None:
    node = _catching_up(tmp_path)
    pool: Executor = _FailingVerifier()
    if verifier == "shut down":
        pool = ThreadPoolExecutor(1)
        pool.shutdown()
    lines = list(export_lines(FOUR.genesis, CHAIN[: 1 + _CATCH_UP_BATCH]))[1:]
    assert asyncio.run(node._adopt_lines(lines, pool))
    assert node.ledger.head.block_hash == CHAIN[_CATCH_UP_BATCH].header.block_hash
    node.store.close()


def test_a_batch_asked_for_ahead_that_failed_is_asked_for_again(tmp_path: Path) -> None:
    node = _catching_up(tmp_path)
    log: list[tuple[str, int]] = []
    _serve(node, log, CHAIN)
    serve = node._export
    failed: list[int] = []

    async def flaky(link: object, start: int) -> bytes:
        if start == 1 + _CATCH_UP_BATCH and not failed:
            failed.append(start)
            raise aiohttp.ClientConnectionError("the peer went away for a moment")
        return await serve(link, start)  # type: ignore[misc]

    node._export = flaky  # type: ignore[method-assign]
    asyncio.run(node._catch_up())
    assert failed == [65]
    assert [start for what, start in log if what == "asked"] == [1, 65, 129]
    assert node.ledger.head.block_hash == CHAIN[-1].header.block_hash
    node.store.close()


def test_a_node_asks_its_peers_heights_as_soon_as_it_starts(tmp_path: Path) -> None:
    # A new node starts catching up at once, not a status period later.
    node = _catching_up(tmp_path)
    asked: list[str] = []

    async def status(method: str, url: str, *_: Any, **__: Any) -> bytes:
        asked.append(url)
        return b'{"height": 0}'

    node._peer_request = status  # type: ignore[method-assign]
    with contextlib.suppress(TimeoutError):
        asyncio.run(asyncio.wait_for(node._status_loop(), 0.5))
    assert asked == ["http://127.0.0.1:9/v1/status"]
    node.store.close()
