"""Tracing on hand-built lineages with answers worked out by hand.

The graph (all rubber, kg; budi's and ani's lots delivered to their cooperative first)::

    RB-BUDI-1 500 ── ship, receive 490 (10 lost) ─┐
                                                  ├─ merge → M 740 ─ split → S1 200 ─┐
    RB-ANI-1  250 ── ship, receive 250 ───────────┘            (M keeps 240) S2 300  │
                                                                                     ├─ transform
    RB-BUDI-2 300.5 ── ship, receive 300.5 ── 100 taken ─────────────────────────────┘
                                                           → P1 150 and P2 50 crumb rubber

P1's composition: 200/300 of S1 (= M: 490/740 budi-1, 250/740 ani-1) and 100/300 of RB-BUDI-2.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from ledger.errors import RuleViolation
from ledger.trace import parties_reached, trace_back, trace_forward
from tests.builders import World, fixture_world

KARET = "koperasi-karet"
CLERK = "koperasi-karet/clerk"


@pytest.fixture(scope="module")
def world() -> World:
    w = fixture_world()
    for lot, shipment, producer, received in (
        ("RB-BUDI-1", "SH-1", "koperasi-karet/budi", "490"),
        ("RB-ANI-1", "SH-2", "koperasi-karet/ani", "250"),
        ("RB-BUDI-2", "SH-3", "koperasi-karet/budi", "300.5"),
    ):
        w.ship(lot, shipment, KARET, signer=producer)
        w.receive(lot, shipment, received, signer=CLERK)
    w.submit("lot.merge", {"inputs": ["RB-BUDI-1", "RB-ANI-1"], "lot_id": "M"}, [CLERK])
    w.submit(
        "lot.split",
        {
            "lot_id": "M",
            "outputs": [{"lot_id": "S1", "quantity": "200"}, {"lot_id": "S2", "quantity": "300"}],
        },
        [CLERK],
    )
    w.submit(
        "lot.transform",
        {
            "inputs": [
                {"lot_id": "S1", "quantity": "200"},
                {"lot_id": "RB-BUDI-2", "quantity": "100"},
            ],
            "outputs": [
                {"lot_id": "P1", "commodity": "crumb_rubber", "quantity": "150", "uom": "kg"},
                {"lot_id": "P2", "commodity": "crumb_rubber", "quantity": "50", "uom": "kg"},
            ],
            "process": "crumb rubber milling",
        },
        [CLERK],
    )
    w.ship("P1", "SH-EU-1", "eu-buyer", signer=CLERK)
    w.receive("P1", "SH-EU-1", "150", signer="eu-buyer/anna")
    return w


def _steps(trace_json: dict) -> list[tuple[str, list[str], list[str]]]:  # type: ignore[type-arg]
    return [(s["type"], s["inputs"], s["outputs"]) for s in trace_json["steps"]]


def test_backward_trace_reaches_every_producer_with_mass_balance(world: World) -> None:
    trace = trace_back(world.memory, "P1").to_json()
    assert trace["lot_id"] == "P1"
    assert trace["direction"] == "back"
    assert {lot["lot_id"] for lot in trace["lots"]} == {
        "P1",
        "S1",
        "M",
        "RB-BUDI-1",
        "RB-ANI-1",
        "RB-BUDI-2",
    }
    origins = {o["lot_id"]: o for o in trace["origins"]}
    assert set(origins) == {"RB-BUDI-1", "RB-ANI-1", "RB-BUDI-2"}
    # 150 * 200/300 * 490/740 = 66.216216..., 150 * 200/300 * 250/740 = 33.783783..., 150 * 1/3
    assert origins["RB-BUDI-1"]["quantity"] == "66.216216"
    assert origins["RB-ANI-1"]["quantity"] == "33.783784"
    assert origins["RB-BUDI-2"]["quantity"] == "50"
    assert origins["RB-ANI-1"]["producer"] == "koperasi-karet/ani"
    assert origins["RB-ANI-1"]["plot_id"] == "PLOT-ANI-1"
    assert origins["RB-ANI-1"]["harvested_on"] == "2026-11-22"
    total = sum(Decimal(o["quantity"]) for o in trace["origins"])
    assert abs(total - Decimal(150)) <= Decimal("0.000002")


def test_backward_trace_lists_the_lineage_steps_in_log_order(world: World) -> None:
    trace = trace_back(world.memory, "P1").to_json()
    indexes = [s["index"] for s in trace["steps"]]
    assert indexes == sorted(indexes)
    assert _steps(trace) == [
        ("lot.create", [], ["RB-BUDI-1"]),
        ("lot.create", [], ["RB-BUDI-2"]),
        ("lot.create", [], ["RB-ANI-1"]),
        ("lot.ship", ["RB-BUDI-1"], ["RB-BUDI-1"]),
        ("lot.receive", ["RB-BUDI-1"], ["RB-BUDI-1"]),
        ("lot.ship", ["RB-ANI-1"], ["RB-ANI-1"]),
        ("lot.receive", ["RB-ANI-1"], ["RB-ANI-1"]),
        ("lot.ship", ["RB-BUDI-2"], ["RB-BUDI-2"]),
        ("lot.receive", ["RB-BUDI-2"], ["RB-BUDI-2"]),
        ("lot.merge", ["RB-BUDI-1", "RB-ANI-1"], ["M"]),
        ("lot.split", ["M"], ["S1", "S2"]),
        ("lot.transform", ["S1", "RB-BUDI-2"], ["P1", "P2"]),
        ("lot.ship", ["P1"], ["P1"]),
        ("lot.receive", ["P1"], ["P1"]),
    ]
    created = {o["lot_id"]: (o["event_id"], o["index"]) for o in trace["origins"]}
    creates = {s["outputs"][0]: (s["event_id"], s["index"]) for s in trace["steps"][:3]}
    assert created == creates


def test_every_step_names_a_logged_event(world: World) -> None:
    by_id = {e.event_id: i for i, e in enumerate(world.applied)}
    for step in trace_back(world.memory, "P1").steps:
        assert by_id[step.event_id] == step.index


def test_loss_at_receipt_scales_the_shares_down(world: World) -> None:
    trace = trace_back(world.memory, "RB-BUDI-1").to_json()
    # Merged away: the lot itself holds nothing now, so nothing of it comes from anywhere.
    assert trace["origins"][0]["quantity"] == "0"
    m = {o["lot_id"]: o["quantity"] for o in trace_back(world.memory, "M").to_json()["origins"]}
    # M kept 240 of 740 after the split: 240 * 490/740 and 240 * 250/740.
    assert m == {"RB-BUDI-1": "158.918919", "RB-ANI-1": "81.081081"}


def test_a_lot_straight_from_a_producer_is_its_own_origin(world: World) -> None:
    trace = trace_back(world.memory, "KP-SITI-1").to_json()
    assert [o["lot_id"] for o in trace["origins"]] == ["KP-SITI-1"]
    assert trace["origins"][0]["quantity"] == "1200"
    assert _steps(trace) == [("lot.create", [], ["KP-SITI-1"])]


def test_forward_trace_reaches_every_lot_and_party(world: World) -> None:
    trace = trace_forward(world.memory, "RB-ANI-1").to_json()
    assert {lot["lot_id"] for lot in trace["lots"]} == {"RB-ANI-1", "M", "S1", "S2", "P1", "P2"}
    assert trace["parties"] == ["eu-buyer", "koperasi-karet", "koperasi-karet/ani"]
    assert trace["origins"] == []
    types = [s["type"] for s in trace["steps"]]
    assert types == [
        "lot.create",
        "lot.ship",
        "lot.receive",
        "lot.merge",
        "lot.split",
        "lot.transform",
        "lot.ship",
        "lot.receive",
    ]


def test_forward_from_a_side_branch_does_not_reach_the_other_branch(world: World) -> None:
    trace = trace_forward(world.memory, "RB-BUDI-2").to_json()
    assert {lot["lot_id"] for lot in trace["lots"]} == {"RB-BUDI-2", "P1", "P2"}
    assert "M" not in {lot["lot_id"] for lot in trace["lots"]}


@pytest.mark.parametrize("lot_id", ["P1", "P2", "S2", "M", "RB-BUDI-2", "KP-SITI-1"])
def test_backward_and_forward_are_symmetric(world: World, lot_id: str) -> None:
    for ancestor in trace_back(world.memory, lot_id).lots:
        forward = {lot.lot_id for lot in trace_forward(world.memory, ancestor.lot_id).lots}
        assert lot_id in forward
    for descendant in trace_forward(world.memory, lot_id).lots:
        back = {lot.lot_id for lot in trace_back(world.memory, descendant.lot_id).lots}
        assert lot_id in back


@pytest.mark.parametrize("lot_id", ["RB-ANI-1", "RB-BUDI-2", "M", "P2", "KP-SITI-1"])
def test_parties_reached_are_the_forward_traces_parties(world: World, lot_id: str) -> None:
    assert parties_reached(world.memory, lot_id) == trace_forward(world.memory, lot_id).parties


def test_unknown_lot() -> None:
    with pytest.raises(RuleViolation) as raised:
        trace_back(fixture_world().memory, "NOPE")
    assert raised.value.rule == "lot.unknown"
    with pytest.raises(RuleViolation):
        parties_reached(fixture_world().memory, "NOPE")
