"""EPCIS export of a lot's history and of a time range, from a node's store."""

from __future__ import annotations

import datetime as dt

import pytest

from ledger.errors import RuleViolation
from node.epcis import export_document
from node.history import lot_history, time_range_history
from node.ledger_state import DatabaseState, apply_block
from node.store import Store
from rantai.samplechain import LINEAGE_FINAL_LOT, sample_network
from tests.epcis_schema import epcis_schema_validator


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    net = sample_network()
    opened = Store.open(f"sqlite:///{tmp_path_factory.mktemp('h') / 'node.db'}")
    opened.initialize(net.genesis)
    for block in net.chain(6, 5, lineage_depth=4):
        if block.header.height:
            apply_block(opened, block)
    return opened


def _validate(document: dict) -> None:  # type: ignore[type-arg]
    epcis_schema_validator().validate(document)


def test_lot_history_covers_its_lineage_and_validates(store: Store) -> None:
    events = lot_history(store, LINEAGE_FINAL_LOT)
    types = [e.envelope.type for e in events]
    assert types.count("lot.create") == 3  # three harvests feed the four generations
    assert {"lot.merge", "lot.split", "lot.transform"} <= set(types)
    assert [e.index for e in events] == sorted(e.index for e in events)
    document = export_document(
        events,
        network=store.genesis.network,
        lots=DatabaseState(store.engine),
        created="2026-11-29T04:00:00Z",
    )
    assert len(document["epcisBody"]["eventList"]) == len(events)
    _validate(document)


def test_unknown_lot_history(store: Store) -> None:
    with pytest.raises(RuleViolation):
        lot_history(store, "NO-SUCH-LOT")


def test_time_range_history_picks_blocks_by_time(store: Store) -> None:
    start = dt.datetime(2026, 11, 29, 3, 0, 2, tzinfo=dt.UTC)
    end = dt.datetime(2026, 11, 29, 3, 0, 4, tzinfo=dt.UTC)
    events = time_range_history(store, start, end)
    heights = {store.event_at(e.index).height for e in events}  # type: ignore[union-attr]
    assert heights == {2, 3}
    assert all(start.isoformat()[:19] <= e.block_time[:19] < end.isoformat()[:19] for e in events)
    assert time_range_history(store, end, start) == []
    whole = time_range_history(
        store, dt.datetime(2000, 1, 1, tzinfo=dt.UTC), dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
    )
    assert len(whole) == store.head().tree_size
