"""Where the tests find the public test data.

The data is published in the team's shared directory (``<repo>/../shared/testdata``); a copy
is vendored in ``tests/testdata`` so that a clone anywhere (CI's included) runs the same tests.
``tests/vectors/test_testdata_copy.py`` fails when the copy and the shared original drift
apart. Set ``RANTAI_SHARED`` to use another shared directory.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["REPO", "SHARED", "TESTDATA"]

REPO: Path = Path(__file__).resolve().parents[1]
"""The repository root (the directory that holds ``tests/``)."""

SHARED: Path = (
    Path(os.environ["RANTAI_SHARED"]).resolve()
    if os.environ.get("RANTAI_SHARED")
    else REPO.parent / "shared"
)
"""The shared directory: ``$RANTAI_SHARED`` if set, else ``<repo>/../shared`` (may be absent)."""

TESTDATA: Path = REPO / "tests" / "testdata"
"""Public test vectors (see its ``README.md`` for sources and licences)."""
