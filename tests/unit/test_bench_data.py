"""The benchmark's cached data sets (``rantai.bench``)."""

from __future__ import annotations

from pathlib import Path

from rantai.bench import _DATA_VERSION, _drop_stale


def test_data_sets_of_other_versions_are_removed(tmp_path: Path) -> None:
    current = [f"chain-10-v{_DATA_VERSION}.ndjson", f"store-10-v{_DATA_VERSION}.db"]
    stale = ["chain-10-v1.ndjson", "store-10-v2.db", "store-10-v2.done", "pymerkle-10-v2.partial"]
    other = ["notes.txt", "store-10-v2.db.bak", "store-10-v3.1.db"]
    for name in current + stale + other:
        (tmp_path / name).write_text("")
    _drop_stale(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(current + other)
