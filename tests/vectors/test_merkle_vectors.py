"""transparency-dev/merkle's public inclusion and consistency vectors against ``ledger.merkle``.

Every file under ``testdata/merkle/{inclusion,consistency}/`` is one case (``leafIdx`` is 0-based,
hashes are base64, ``proof`` may be null); verification must raise ``ProofError`` exactly when
``wantErr`` is true. The happy-path vectors are built from the eight leaves of the Certificate
Transparency test tree, so the producing functions must also reproduce their roots and proofs.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import ProofError
from ledger.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from tests._paths import TESTDATA

MERKLE = TESTDATA / "merkle"
KINDS = ("inclusion", "consistency")

# The leaves of the tree the vectors were made from (transparency-dev/merkle testonly data).
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
CT_LEAF_HASHES = [leaf_hash(d) for d in CT_LEAVES]


def _vector_files() -> list[Path]:
    return sorted(p for kind in KINDS for p in (MERKLE / kind).rglob("*.json") if p.is_file())


def _params(stem: str | None = None) -> list[Any]:
    files = [p for p in _vector_files() if stem is None or p.stem == stem]
    if not files:
        # An empty parameter set would be reported as a skip; a missing data set must fail.
        return [pytest.param(None, id="no-vectors-found")]
    return [pytest.param(p, id=p.relative_to(MERKLE).as_posix()) for p in files]


def _b64(value: str) -> bytes:
    return base64.b64decode(value, validate=True)


def _proof(vector: dict[str, Any]) -> list[bytes] | None:
    proof = vector["proof"]
    return None if proof is None else [_b64(h) for h in proof]


def _load(path: Path | None) -> dict[str, Any]:
    if path is None:
        pytest.fail(f"no Merkle vectors under {MERKLE} (set RANTAI_SHARED to the shared directory)")
    vector: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return vector


def _verify(kind: str, vector: dict[str, Any]) -> None:
    if kind == "inclusion":
        verify_inclusion(
            _b64(vector["leafHash"]),
            vector["leafIdx"],
            vector["treeSize"],
            _proof(vector),
            _b64(vector["root"]),
        )
    else:
        verify_consistency(
            vector["size1"],
            vector["size2"],
            _proof(vector),
            _b64(vector["root1"]),
            _b64(vector["root2"]),
        )


def test_vector_directories_exist_and_are_not_empty() -> None:
    assert MERKLE.is_dir(), f"{MERKLE} is missing (set RANTAI_SHARED to the shared directory)"
    counts = {kind: sum(1 for _ in (MERKLE / kind).rglob("*.json")) for kind in KINDS}
    assert all(n > 0 for n in counts.values()), counts
    assert len(_vector_files()) == sum(counts.values())


@pytest.mark.parametrize("path", _params())
def test_vector(path: Path | None) -> None:
    vector = _load(path)
    assert path is not None
    kind = path.relative_to(MERKLE).parts[0]
    assert kind in KINDS
    if vector["wantErr"]:
        with pytest.raises(ProofError):
            _verify(kind, vector)
    else:
        _verify(kind, vector)


@pytest.mark.parametrize("path", _params(stem="happy-path"))
def test_happy_path_vector_is_reproduced(path: Path | None) -> None:
    vector = _load(path)
    assert path is not None
    assert not vector["wantErr"]
    want_proof = _proof(vector) or []
    if path.relative_to(MERKLE).parts[0] == "inclusion":
        size = vector["treeSize"]
        assert root(CT_LEAF_HASHES[:size]) == _b64(vector["root"])
        assert CT_LEAF_HASHES[vector["leafIdx"]] == _b64(vector["leafHash"])
        assert inclusion_proof(CT_LEAF_HASHES, vector["leafIdx"], size) == want_proof
    else:
        size1, size2 = vector["size1"], vector["size2"]
        assert root(CT_LEAF_HASHES[:size1]) == _b64(vector["root1"])
        assert root(CT_LEAF_HASHES[:size2]) == _b64(vector["root2"])
        assert consistency_proof(CT_LEAF_HASHES, size1, size2) == want_proof


def test_every_kind_has_a_happy_path() -> None:
    happy = [p for p in _vector_files() if p.stem == "happy-path"]
    assert {p.relative_to(MERKLE).parts[0] for p in happy} == set(KINDS)
