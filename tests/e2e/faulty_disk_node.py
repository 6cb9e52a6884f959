"""Test-only entry point: a node whose SQLite database can be made full or read-only at will.

``python -m tests.e2e.faulty_disk_node DIR`` runs the node in ``DIR`` as ``rantai node run`` does
(:func:`rantai.network.run`). Whenever the node takes a database connection from its pool, the
file ``DIR/disk-fault`` (see :data:`CONTROL`) says what the disk does:

* absent or empty: nothing unusual;
* ``full``: the database may not grow by a page (``PRAGMA max_page_count`` at its current size:
  a write that needs a new page fails with SQLite's "database or disk is full");
* ``read-only``: no write at all (``PRAGMA query_only``: "attempt to write a readonly
  database").

This works the same for any user, root included (root ignores file modes, and mounting a full
or read-only file system needs privileges CI does not have). Production code is untouched: the
store's engine factory is patched here.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

import node.store
from rantai import network

__all__ = ["CONTROL", "main"]

CONTROL = "disk-fault"
"""The control file's name in the node directory."""
_UNLIMITED_PAGES = 1073741823  # SQLite's default max_page_count


def main() -> None:
    """Run the node in ``sys.argv[1]`` on a database whose faults ``CONTROL`` switches."""
    directory = Path(sys.argv[1])
    control = directory / CONTROL
    create_engine = node.store.create_store_engine

    def faulty_engine(url: str) -> Engine:
        engine = create_engine(url)

        @event.listens_for(engine, "checkout")
        def _apply_fault(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
            fault = control.read_text().strip() if control.exists() else ""
            cursor = dbapi_connection.cursor()
            pages = 1 if fault == "full" else _UNLIMITED_PAGES  # never below the current size
            cursor.execute(f"PRAGMA max_page_count = {pages}")
            cursor.execute(f"PRAGMA query_only = {int(fault == 'read-only')}")
            cursor.close()

        return engine

    node.store.create_store_engine = faulty_engine
    network.run(network.load_config(directory))


if __name__ == "__main__":
    main()
