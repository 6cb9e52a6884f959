"""Test-only entry point: a node whose wall clock is off by a number of seconds.

``python -m tests.e2e.skewed_node SECONDS DIR`` runs the node in ``DIR`` as ``rantai node run``
does (:func:`rantai.network.run`), with ``LedgerNode._wall_clock`` — where the node reads the
time for block times, event checks and its signed requests — shifted by ``SECONDS`` (negative:
behind). Timers and timeouts use the monotonic clock and are not shifted, as on a real machine
whose clock is set wrong. Production code is untouched: the clock is patched here.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from node.runtime import LedgerNode
from rantai import network

__all__ = ["main"]


def main() -> None:
    """Run the node in ``sys.argv[2]`` with its wall clock ``sys.argv[1]`` seconds off."""
    skew = dt.timedelta(seconds=float(sys.argv[1]))

    def skewed_clock() -> dt.datetime:
        return dt.datetime.now(dt.UTC) + skew

    LedgerNode._wall_clock = staticmethod(skewed_clock)  # type: ignore[method-assign]
    network.run(network.load_config(Path(sys.argv[2])))


if __name__ == "__main__":
    main()
