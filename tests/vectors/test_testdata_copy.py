"""The vendored test data is an exact copy of the shared original, when that is present."""

from __future__ import annotations

import pytest

from tests._paths import SHARED, TESTDATA


def _files(root):  # type: ignore[no-untyped-def]
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_vendored_testdata_is_not_empty() -> None:
    assert len(_files(TESTDATA)) > 100


def test_vendored_testdata_matches_shared() -> None:
    original = SHARED / "testdata"
    if not original.is_dir():
        pytest.skip(f"no shared directory at {SHARED} to compare with")
    assert _files(TESTDATA) == _files(original)
