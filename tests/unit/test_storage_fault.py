"""A node whose database refuses a write stops voting, says so, and rejoins once writes work."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import StorageError
from ledger.keys import public_key_bytes
from node.consensus import Timeouts
from node.runtime import LedgerNode
from node.store import Store
from rantai.client import build_event
from rantai.samplechain import sample_network


async def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_a_failed_block_write_faults_the_node_until_writes_succeed(tmp_path: Path) -> None:
    net = sample_network(1)
    store = Store.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    store.initialize(net.genesis)
    node = LedgerNode(
        net.genesis,
        store,
        net.validator_keys[0],
        net.genesis.validators[0].name,
        [],
        timeouts=Timeouts(propose=0.2, prevote=0.2, precommit=0.2),
    )

    def org(org_id: str) -> Any:
        payload = {
            "org_id": org_id,
            "name": org_id,
            "kind": "cooperative",
            "admins": [public_key_bytes(net.key(f"{org_id}/admin")).hex()],
        }
        return build_event(net.network, "org.register", payload, [net.governance_key])

    real_append = store.append_block
    disk_full = True

    def append_block(*args: Any, **kwargs: Any) -> Any:
        if disk_full:
            raise StorageError("cannot append block: database or disk is full")
        return real_append(*args, **kwargs)

    async def scenario() -> None:
        nonlocal disk_full
        await node.start()
        try:
            store.append_block = append_block  # type: ignore[method-assign]
            result = await node.submit([org("koperasi-a")], wait=True, timeout=3)
            assert not result.committed
            assert node.fault is not None
            assert "disk is full" in node.fault
            assert node.status()["fault"] == node.fault
            assert store.head().height == 0  # nothing partial: no block, no events
            assert store.count_events() == 0
            with pytest.raises(StorageError, match="cannot store blocks now"):
                await node.submit([org("koperasi-b")], wait=False, timeout=1)
            disk_full = False
            await _until(lambda: node.fault is None, 5, "the node to recover")
            result = await node.submit([org("koperasi-b")], wait=True, timeout=5)
            assert result.committed
            await _until(lambda: store.count_events() == 2, 5, "the pending event to commit")
        finally:
            await node.stop()

    asyncio.run(scenario())
    store.close()
