"""Which committed events make up a lot's history, or a stretch of time, for EPCIS export.

:func:`lot_history` gathers every event on a lot's lineage in both directions (where it came
from and where it went, DESIGN.md §6 traces) plus the certifications of those lots;
:func:`time_range_history` gathers the events of the blocks whose time lies in a range, found by
binary search (block times never go back). Both return
:class:`~node.epcis.CommittedLotEvent` lists in log order for
:func:`~node.epcis.export_document`.
"""

from __future__ import annotations

import datetime as _dt

from ledger.encoding import parse_time
from ledger.trace import trace_back, trace_forward
from node.epcis import CommittedLotEvent
from node.ledger_state import DatabaseState
from node.store import Store

__all__ = ["lot_history", "time_range_history"]


def _committed(store: Store, indexes: set[int]) -> list[CommittedLotEvent]:
    events: list[CommittedLotEvent] = []
    block_times: dict[int, str] = {}
    for index in sorted(indexes):
        stored = store.event_at(index)
        if stored is None:
            continue
        if stored.height not in block_times:
            block_times[stored.height] = store.header(stored.height).time
        events.append(CommittedLotEvent(stored.envelope, index, block_times[stored.height]))
    return events


def lot_history(store: Store, lot_id: str) -> list[CommittedLotEvent]:
    """Every committed event on ``lot_id``'s lineage, backward and forward, with certifications.

    Raises:
        RuleViolation: ``lot.unknown``.
    """
    state = DatabaseState(store.engine)
    back = trace_back(state, lot_id)
    forward = trace_forward(state, lot_id)
    indexes = {step.index for step in (*back.steps, *forward.steps)}
    for lot in (*back.lots, *forward.lots):
        indexes.update(claim.index for claim in lot.certifications)
    return _committed(store, indexes)


def time_range_history(
    store: Store, start: _dt.datetime, end: _dt.datetime
) -> list[CommittedLotEvent]:
    """The committed events of blocks with ``start <= time < end``."""
    head = store.head().height

    def first_at_or_after(moment: _dt.datetime) -> int:
        low, high = 1, head + 1
        while low < high:
            middle = (low + high) // 2
            if parse_time(store.header(middle).time) < moment:
                low = middle + 1
            else:
                high = middle
        return low

    first, last = first_at_or_after(start), first_at_or_after(end) - 1
    events: list[CommittedLotEvent] = []
    for block in store.blocks(first, last):
        index = block.header.tree_size - len(block.events)
        events.extend(
            CommittedLotEvent(envelope, index + offset, block.header.time)
            for offset, envelope in enumerate(block.events)
        )
    return events
