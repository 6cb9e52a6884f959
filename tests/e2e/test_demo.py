"""The network demo starts, loads its data, and its buyer's trace reaches the producers; the keys
it prints commands with read what they should."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

from node.keystore import load_key
from rantai.client import Client, RefusedError
from rantai.demo_network import (
    AUDITOR,
    BUYER,
    BUYER_LOT,
    member_key_path,
    start_network_demo,
    stop_network_demo,
)
from rantai.network import free_base_port

pytestmark = pytest.mark.slow


def test_demo_network_traces_the_buyers_lot_to_the_producers(tmp_path: Path) -> None:
    base = free_base_port(4)
    processes = start_network_demo(
        tmp_path / "demo", nodes=4, base_port=base, console=Console(quiet=True)
    )
    try:
        client = Client(f"http://127.0.0.1:{base + 2}")
        trace = client.trace(BUYER_LOT)
        producers = {o["producer"] for o in trace["origins"]}
        assert producers == {
            "koperasi-karet/budi",
            "koperasi-karet/ani",
            "koperasi-karet/yohanes",
        }
        assert sum(Decimal(o["quantity"]) for o in trace["origins"]) == pytest.approx(
            Decimal(620), abs=Decimal("0.000003")
        )
        assert {o["plot_id"] for o in trace["origins"]} == {
            "PLT-BUDI-01",
            "PLT-ANI-01",
            "PLT-YOH-01",
        }
        owners = {lot["lot_id"]: lot["owner"] for lot in trace["lots"]}
        assert owners[BUYER_LOT] == "eu-buyer"
        forward = client.trace("RB-ANI-2611", "forward")
        assert "eu-buyer" in forward["parties"]
        client.close()
        keys = tmp_path / "demo" / "keys"
        url = f"http://127.0.0.1:{base}"
        auditor = Client(url, load_key(member_key_path(keys, AUDITOR)))
        assert auditor.export(io.BytesIO()) > 0
        buyer = Client(url, load_key(member_key_path(keys, BUYER)))
        harvest = trace["steps"][0]
        assert buyer.event(harvest["event_id"])["envelope"]["body"]["type"] == "lot.create"
        with pytest.raises(RefusedError) as refused:
            buyer.export(io.BytesIO())
        assert refused.value.status == 403
        auditor.close()
        buyer.close()
    finally:
        stop_network_demo(processes)
    assert all(p.returncode is not None for p in processes)
