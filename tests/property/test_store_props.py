"""Property tests of the store's Merkle proofs against a naive RFC 9162 reference (SQLite).

Hypothesis picks how many events each block holds; the chain is built with the sample network,
appended to a fresh SQLite store, and the proofs the store assembles from its stored subtree
hashes are compared with a reference written straight from RFC 9162 §2.1.1 (MTH), §2.1.3.1
(PATH) and §2.1.4.1 (PROOF, SUBPROOF), by recursion on the list of leaf hashes. Every proof must
verify, and flipping any single bit of a proof element, a leaf hash or a root must make it fail.

Each example opens its own database in a temporary directory inside the test body (hypothesis runs
the body many times; a function-scoped fixture would be shared between examples). PostgreSQL gets
the exhaustive version of the equality check in ``tests/unit/test_store.py``.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import sqlite3
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.blocks import Block, genesis_header
from ledger.encoding import format_time
from ledger.errors import ProofError
from ledger.events import Envelope
from ledger.merkle import CompactRange, leaf_hash, verify_consistency, verify_inclusion
from node.models import BLOCK_LEVELS, UPPER_KEYS, node_key, node_of_key
from node.store import Store
from rantai.samplechain import SampleNetwork, sample_network
from tests.merkle_reference import ref_mth, ref_path, ref_proof

MAX_BLOCKS = 15
MAX_EVENTS_PER_BLOCK = 9
START = dt.datetime(2026, 11, 29, 3, 0, tzinfo=dt.UTC)

# --------------------------------------------------------------------------------------------
# Chains


@functools.cache
def network_and_events() -> tuple[SampleNetwork, tuple[Envelope, ...]]:
    """The sample network and enough distinct signed events for the largest chain (built once)."""
    net = sample_network()
    producer = net.key("producer")
    events = tuple(
        net.event(
            "lot.create",
            {
                "lot_id": f"LOT-{serial:06d}",
                "commodity": "cocoa",
                "quantity": f"{1 + serial}.25",
                "uom": "kg",
                "producer": "koperasi-kopi/siti",
                "harvested_on": "2026-11-20",
            },
            [producer],
            f"prop-{serial}",
            format_time(START),
        )
        for serial in range(MAX_BLOCKS * MAX_EVENTS_PER_BLOCK)
    )
    return net, events


def build_chain(sizes: Sequence[int]) -> list[Block]:
    """The genesis block, then one certified block per entry of ``sizes`` (its event count)."""
    net, pool = network_and_events()
    blocks = [Block(genesis_header(net.genesis), (), None)]
    log = CompactRange()
    used = 0
    for count in sizes:
        previous = blocks[-1].header
        time = format_time(START + dt.timedelta(seconds=previous.height + 1))
        blocks.append(net.commit(previous, log, list(pool[used : used + count]), time))
        used += count
    return blocks


def flip(h: bytes, bit: int) -> bytes:
    out = bytearray(h)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def fails_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    try:
        verify_inclusion(leaf, index, size, proof, root)
    except ProofError:
        return True
    return False


def fails_consistency(m: int, n: int, proof: list[bytes], root1: bytes, root2: bytes) -> bool:
    try:
        verify_consistency(m, n, proof, root1, root2)
    except ProofError:
        return True
    return False


block_sizes = st.lists(
    st.integers(min_value=0, max_value=MAX_EVENTS_PER_BLOCK), min_size=1, max_size=MAX_BLOCKS
)
bits = st.integers(min_value=0, max_value=255)


@settings(max_examples=25, deadline=None)
@given(sizes=block_sizes, data=st.data())
def test_store_proofs_equal_the_rfc9162_reference(sizes: list[int], data: st.DataObject) -> None:
    blocks = build_chain(sizes)
    hashes = [leaf_hash(e.leaf) for b in blocks for e in b.events]
    n = len(hashes)
    with tempfile.TemporaryDirectory() as directory:
        store = Store.open(f"sqlite:///{Path(directory) / 'node.db'}")
        try:
            store.initialize(network_and_events()[0].genesis)
            for block in blocks[1:]:
                store.append_block(block)
            assert store.head().tree_size == n
            for block in blocks:
                assert store.root(block.header.tree_size).hex() == block.header.tree_root
                assert block.header.tree_root == ref_mth(hashes[: block.header.tree_size]).hex()
            with pytest.raises(ProofError):
                store.root(n + 1)
            if n == 0:
                with pytest.raises(ProofError):
                    store.inclusion_proof(0, 0)
                return

            for _ in range(8):
                size = data.draw(st.integers(min_value=1, max_value=n), label="size")
                index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
                check_inclusion(store, hashes, index, size, data)

                size2 = data.draw(st.integers(min_value=1, max_value=n), label="size2")
                size1 = data.draw(st.integers(min_value=1, max_value=size2), label="size1")
                check_consistency(store, hashes, size1, size2, data)
        finally:
            store.close()


def check_inclusion(
    store: Store, hashes: list[bytes], index: int, size: int, data: st.DataObject
) -> None:
    proof = store.inclusion_proof(index, size)
    root = store.root(size)
    assert proof == ref_path(index, hashes[:size])
    assert root == ref_mth(hashes[:size])
    assert store.leaf_hash(index) == hashes[index]
    verify_inclusion(hashes[index], index, size, proof, root)

    bit = data.draw(bits, label="bit")
    assert fails_inclusion(hashes[index], index, size, proof, flip(root, bit))
    assert fails_inclusion(flip(hashes[index], bit), index, size, proof, root)
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1), label="position")
        broken = [*proof[:position], flip(proof[position], bit), *proof[position + 1 :]]
        assert fails_inclusion(hashes[index], index, size, broken, root)


def check_consistency(
    store: Store, hashes: list[bytes], size1: int, size2: int, data: st.DataObject
) -> None:
    proof = store.consistency_proof(size1, size2)
    root1, root2 = store.root(size1), store.root(size2)
    assert proof == ref_proof(size1, hashes[:size2])
    verify_consistency(size1, size2, proof, root1, root2)

    bit = data.draw(bits, label="bit")
    assert fails_consistency(size1, size2, proof, flip(root1, bit), root2)
    assert fails_consistency(size1, size2, proof, root1, flip(root2, bit))
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1), label="position")
        broken = [*proof[:position], flip(proof[position], bit), *proof[position + 1 :]]
        assert fails_consistency(size1, size2, broken, root1, root2)


# --------------------------------------------------------------------------------------------
# Where the nodes are stored

_NODES = st.one_of(
    st.integers(0, BLOCK_LEVELS - 1).flatmap(
        lambda level: st.tuples(st.just(level), st.integers(0, (1 << (56 - level)) - 1))
    ),
    st.tuples(st.integers(BLOCK_LEVELS, 63), st.integers(0, (1 << 50) - 1)),
)


def test_node_keys_are_the_documented_integers() -> None:
    """The stored layout (migration 0006) pinned: a leaf, a node inside a block, the upper tree."""
    assert node_key(0, 1000) == 1000 << 6
    assert node_key(3, 5) == 40 << 6 | 3
    assert node_key(4, 3) == 48 << 6 | 4
    assert node_key(5, 0) == 1 << 62 | 5 << 50
    assert node_key(6, 0) == 1 << 62 | 6 << 50
    assert node_key(20, 7) == 1 << 62 | 20 << 50 | 7


@given(st.lists(_NODES, min_size=1, max_size=50, unique=True))
@settings(max_examples=100)
def test_migration_0006_moves_each_old_key_to_node_key_and_back(
    nodes: list[tuple[int, int]],
) -> None:
    """The migration's SQL, run by SQLite on keys as large as the layout allows (the 200-leaf
    round trip on both backends is in ``tests/unit/test_migrations.py``)."""
    old = {(index << 6) | level: (level, index) for level, index in nodes}
    connection = sqlite3.connect(":memory:")
    connection.execute('CREATE TABLE merkle_nodes ("key" INTEGER PRIMARY KEY, hash BLOB)')
    connection.executemany("INSERT INTO merkle_nodes VALUES (?, ?)", [(k, b"") for k in old])
    migration = importlib.import_module("node.migrations.versions.0006_merkle_blocks")
    for passes, expected in (
        (migration._NEW_FROM_OLD, {node_key(*node) for node in nodes}),
        (migration._OLD_FROM_NEW, set(old)),
    ):
        connection.execute('UPDATE merkle_nodes SET "key" = -1 - "key"')
        connection.execute(f'UPDATE merkle_nodes SET "key" = {passes}')
        assert {key for (key,) in connection.execute('SELECT "key" FROM merkle_nodes')} == expected


@given(_NODES, _NODES)
@settings(max_examples=500)
def test_node_keys_keep_a_block_together_and_the_upper_tree_in_order(
    a: tuple[int, int], b: tuple[int, int]
) -> None:
    key_a, key_b = node_key(*a), node_key(*b)
    assert node_of_key(key_a) == a
    assert (key_a == key_b) == (a == b)
    assert 0 <= key_a < 1 << 63  # a signed 64-bit integer on every backend
    level, index = a
    if level < BLOCK_LEVELS:
        block = (index << level) >> BLOCK_LEVELS  # the block of 32 leaves it lies in
        width = BLOCK_LEVELS + 6
        assert block << width <= key_a < (block + 1) << width <= UPPER_KEYS
    elif b[0] >= BLOCK_LEVELS:
        assert (key_a < key_b) == (a < b)  # level by level, then by index
