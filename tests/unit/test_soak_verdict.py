"""The soak's memory verdict (``rantai.netbench``): warm-up growth is not a leak, steady growth
in the second half is."""

from __future__ import annotations

from typing import Any

import pytest

from rantai.netbench import FLAT_MIB_PER_MINUTE, _second_half_slopes


def _rows(rss: list[list[float]]) -> list[dict[str, Any]]:
    return [{"elapsed_s": 60 * (k + 1), "node_rss_mib": mib} for k, mib in enumerate(rss)]


def test_warm_up_then_a_plateau_is_flat() -> None:
    warming = [[100 + 5 * k, 110 + 4 * k] for k in range(6)]
    plateau = [[130 + (k % 2) * 0.5, 134 - (k % 2) * 0.5] for k in range(8)]
    slopes = _second_half_slopes(_rows(warming + plateau))
    assert max(slopes) <= FLAT_MIB_PER_MINUTE


def test_a_node_that_keeps_growing_is_found() -> None:
    rows = _rows([[120.0, 100 + 0.5 * k] for k in range(20)])
    slopes = _second_half_slopes(rows)
    assert slopes[0] == pytest.approx(0.0)
    assert slopes[1] == pytest.approx(0.5)


def test_one_row_has_no_slope() -> None:
    assert _second_half_slopes(_rows([[120.0, 130.0]])) == [0.0, 0.0]
