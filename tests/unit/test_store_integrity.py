"""``Store.check_integrity``: damage done to a node's database behind the store's back is found.

Each test builds a small certified chain in a fresh database (SQLite, and PostgreSQL when
``RANTAI_TEST_PG_URL`` is set), damages it with plain SQL as someone with the database file
would (a flipped byte, a deleted or moved row, a rewritten block), and checks that the walk names
the first damaged height and log index, and that ``Store.open(verify=True)`` refuses the
database with the same error.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import Connection, create_engine, delete, insert, select, update

from ledger.blocks import Block, BlockHeader, parse_header
from ledger.encoding import parse_json
from ledger.errors import ChainError
from node.models import BlockRow, EventRow, MerkleNodeRow, node_key
from node.store import Store
from rantai.samplechain import SampleNetwork, sample_network

BLOCKS, PER_BLOCK = 8, 4
"""The test chain: blocks 1..8 of 4 events each; block h holds log indexes 4(h-1)..4h-1."""
SIZE = BLOCKS * PER_BLOCK


@functools.cache
def chain() -> tuple[SampleNetwork, tuple[Block, ...]]:
    net = sample_network()
    return net, tuple(net.chain(BLOCKS, PER_BLOCK))


@pytest.fixture
def url(database_url: str) -> str:
    """The test database holding the whole test chain (the store closed again)."""
    net, blocks = chain()
    store = Store.open(database_url)
    store.initialize(net.genesis)
    for block in blocks[1:]:
        store.append_block(block)
    store.close()
    return database_url


def tamper(url: str, change: Callable[[Connection], None]) -> None:
    """Change the database with plain SQL, as someone holding the file would."""
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            change(connection)
    finally:
        engine.dispose()


def flip(value: bytes, at: int) -> bytes:
    """``value`` with one bit of the byte at ``at`` flipped."""
    return value[:at] + bytes([value[at] ^ 0x01]) + value[at + 1 :]


def check(url: str) -> ChainError | None:
    store = Store.open(url)
    try:
        return store.check_integrity().fault
    finally:
        store.close()


# --------------------------------------------------------------------------------------------
# The damage


def flip_leaf(connection: Connection) -> None:
    leaf = connection.scalar(select(EventRow.leaf).where(EventRow.index == 13))
    assert leaf is not None
    connection.execute(update(EventRow).where(EventRow.index == 13).values(leaf=flip(leaf, 40)))


def flip_header(connection: Connection) -> None:
    header = connection.scalar(select(BlockRow.header).where(BlockRow.height == 5))
    assert header is not None
    at = header.index(b'"time":"') + 10  # a digit of the year: still valid JSON
    connection.execute(update(BlockRow).where(BlockRow.height == 5).values(header=flip(header, at)))


def delete_event(connection: Connection) -> None:
    connection.execute(delete(EventRow).where(EventRow.index == 22))


def rewrite_block(connection: Connection) -> None:
    """Block 3 replaced by another one whose stored hash matches its header: block 4 breaks."""
    header = connection.scalar(select(BlockRow.header).where(BlockRow.height == 3))
    assert header is not None
    fields = parse_header(parse_json(header)).to_json()
    fields["time"] = fields["time"].replace("03:00", "04:00")
    forged = BlockHeader(**{k: v for k, v in fields.items() if k != "v"})
    connection.execute(
        update(BlockRow)
        .where(BlockRow.height == 3)
        .values(header=forged.canonical_bytes, block_hash=forged.block_hash)
    )


def move_event(connection: Connection) -> None:
    connection.execute(update(EventRow).where(EventRow.index == 17).values(height=6))


def add_event(connection: Connection) -> None:
    leaf = connection.scalar(select(EventRow.leaf).where(EventRow.index == 0))
    assert leaf is not None
    connection.execute(
        insert(EventRow).values(
            index=SIZE, event_id=hashlib.sha256(b"forged").digest(), height=BLOCKS, leaf=leaf
        )
    )


def change_event_count(connection: Connection) -> None:
    connection.execute(update(BlockRow).where(BlockRow.height == 2).values(event_count=3))


def flip_leaf_hash(connection: Connection) -> None:
    key = node_key(0, 5)
    digest = connection.scalar(select(MerkleNodeRow.hash).where(MerkleNodeRow.key == key))
    assert digest is not None
    connection.execute(
        update(MerkleNodeRow).where(MerkleNodeRow.key == key).values(hash=flip(digest, 0))
    )


def flip_interior_node(connection: Connection) -> None:
    key = node_key(2, 2)  # leaves 8..11, completed by event 11 in block 3
    digest = connection.scalar(select(MerkleNodeRow.hash).where(MerkleNodeRow.key == key))
    assert digest is not None
    connection.execute(
        update(MerkleNodeRow).where(MerkleNodeRow.key == key).values(hash=flip(digest, 31))
    )


def delete_interior_node(connection: Connection) -> None:
    connection.execute(delete(MerkleNodeRow).where(MerkleNodeRow.key == node_key(1, 3)))


def add_merkle_node(connection: Connection) -> None:
    connection.execute(insert(MerkleNodeRow).values(key=node_key(0, SIZE + 8), hash=bytes(32)))


@dataclass(frozen=True)
class Damage:
    change: Callable[[Connection], None]
    height: int
    index: int | None
    reason: str


DAMAGE = {
    "a flipped byte in an event's leaf": Damage(flip_leaf, 4, 13, "leaf does not hash"),
    "a flipped byte in a header": Damage(flip_header, 5, None, "does not hash to the block"),
    "a deleted event row": Damage(delete_event, 6, 22, "the event is missing"),
    "a block rewritten with its hash": Damage(rewrite_block, 4, None, "prev is not the hash"),
    "an event moved to another block": Damage(move_event, 5, 17, "stored at height 6"),
    "an event beyond the head": Damage(add_event, BLOCKS, SIZE, "beyond the head"),
    "a changed event count": Damage(change_event_count, 2, None, "event count 3"),
    "a flipped stored leaf hash": Damage(flip_leaf_hash, 2, 5, "leaf does not hash"),
    "a flipped interior Merkle node": Damage(
        flip_interior_node, 3, 11, "node (level 2, index 2) completed by this event is not"
    ),
    "a deleted interior Merkle node": Damage(
        delete_interior_node, 2, 7, "node (level 1, index 3) completed by this event is missing"
    ),
    "an extra Merkle node": Damage(
        add_merkle_node, BLOCKS, None, f"holds {2 * SIZE} nodes, {2 * SIZE - 1} expected"
    ),
}


# --------------------------------------------------------------------------------------------
# Tests


def test_an_intact_store_passes(url: str) -> None:
    store = Store.open(url, verify=True)
    try:
        report = store.check_integrity()
    finally:
        store.close()
    assert report.ok
    assert (report.blocks, report.events) == (BLOCKS + 1, SIZE)


def test_an_empty_database_passes(database_url: str) -> None:
    store = Store.open(database_url)
    try:
        report = store.check_integrity()
    finally:
        store.close()
    assert report.ok
    assert (report.blocks, report.events) == (0, 0)


@pytest.mark.parametrize("damage", list(DAMAGE.values()), ids=list(DAMAGE))
def test_damage_is_found_where_it_is(url: str, damage: Damage) -> None:
    assert check(url) is None
    tamper(url, damage.change)

    fault = check(url)

    assert fault is not None, "the damage went unnoticed"
    assert (fault.height, fault.index) == (damage.height, damage.index), str(fault)
    assert damage.reason in fault.reason


def test_the_walk_stops_at_the_first_damage(url: str) -> None:
    tamper(url, delete_event)  # height 6
    tamper(url, flip_leaf)  # height 4, earlier in the log

    fault = check(url)

    assert fault is not None
    assert (fault.height, fault.index) == (4, 13)


def test_open_with_verify_refuses_a_damaged_database_naming_where(url: str) -> None:
    tamper(url, flip_leaf)

    with pytest.raises(ChainError, match=r"^height 4, index 13: ") as raised:
        Store.open(url, verify=True)

    assert (raised.value.height, raised.value.index) == (4, 13)
