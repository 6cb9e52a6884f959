"""The layering of DESIGN.md §1: ``ledger`` imports no ``node``/``api``; ``node`` no ``api``.

Also keeps the pure core pure: ``ledger`` imports only the standard library, ``cryptography``
and ``rfc8785``, and none of the standard modules that do I/O or read clocks or randomness.
"""

from __future__ import annotations

import ast
import sys

import pytest

from tests._paths import REPO

ALLOWED_THIRD_PARTY = {"ledger": {"cryptography", "rfc8785"}}
FORBIDDEN = {"ledger": {"node", "api", "rantai"}, "node": {"api", "rantai"}}
IMPURE_STDLIB = {
    "asyncio",
    "socket",
    "subprocess",
    "os",
    "random",
    "secrets",
    "time",
    "sqlite3",
    "urllib",
    "http",
    "threading",
    "multiprocessing",
    "shutil",
    "tempfile",
    "pathlib",
    "io",
}


def _imports(package: str) -> list[tuple[str, str]]:
    found = []
    for path in sorted((REPO / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.extend((str(path), alias.name.split(".")[0]) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((str(path), node.module.split(".")[0]))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_upward_imports(package: str) -> None:
    bad = [(p, m) for p, m in _imports(package) if m in FORBIDDEN[package]]
    assert not bad


def test_ledger_imports_only_pure_modules() -> None:
    allowed = ALLOWED_THIRD_PARTY["ledger"] | {"ledger", "__future__"}
    for path, module in _imports("ledger"):
        if module in sys.stdlib_module_names:
            assert module not in IMPURE_STDLIB, f"{path} imports {module}"
        else:
            assert module in allowed, f"{path} imports {module}"
