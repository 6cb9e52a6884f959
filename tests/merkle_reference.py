"""A naive RFC 9162 Merkle reference, straight from the definitions (§2.1.1, §2.1.3, §2.1.4).

Tests compare ``ledger.merkle`` and the node's store against it: MTH, PATH, PROOF/SUBPROOF, and
verifiers that rebuild roots along the same recursion. Slow on purpose: nothing clever to trust.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32


def ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def ref_k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(hs: Sequence[bytes]) -> bytes:
    if not hs:
        return hashlib.sha256(b"").digest()
    if len(hs) == 1:
        return hs[0]
    k = ref_k(len(hs))
    return ref_node(ref_mth(hs[:k]), ref_mth(hs[k:]))


def ref_path(m: int, hs: Sequence[bytes]) -> list[bytes]:
    n = len(hs)
    if n == 1:
        return []
    k = ref_k(n)
    if m < k:
        return [*ref_path(m, hs[:k]), ref_mth(hs[k:])]
    return [*ref_path(m - k, hs[k:]), ref_mth(hs[:k])]


def ref_subproof(m: int, hs: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(hs)
    if m == n:
        return [] if b else [ref_mth(hs)]
    k = ref_k(n)
    if m <= k:
        return [*ref_subproof(m, hs[:k], b), ref_mth(hs[k:])]
    return [*ref_subproof(m - k, hs[k:], False), ref_mth(hs[:k])]


def ref_proof(m: int, hs: Sequence[bytes]) -> list[bytes]:
    return ref_subproof(m, hs, True)


def ref_root_from_path(m: int, n: int, leaf: bytes, proof: list[bytes]) -> bytes | None:
    """The root that ``proof``, read as PATH(m, D[n]), implies; None if it has the wrong shape."""
    if n == 1:
        return None if proof else leaf
    if not proof:
        return None
    k = ref_k(n)
    *rest, last = proof
    if m < k:
        sub = ref_root_from_path(m, k, leaf, rest)
        return None if sub is None else ref_node(sub, last)
    sub = ref_root_from_path(m - k, n - k, leaf, rest)
    return None if sub is None else ref_node(last, sub)


def ref_roots_from_subproof(
    m: int, n: int, b: bool, proof: list[bytes], root1: bytes
) -> tuple[bytes, bytes] | None:
    """The (old, new) subtree roots ``proof``, read as SUBPROOF(m, D[n], b), implies."""
    if m == n:
        if b:
            return None if proof else (root1, root1)
        return (proof[0], proof[0]) if len(proof) == 1 else None
    if not proof:
        return None
    k = ref_k(n)
    *rest, last = proof
    if m <= k:
        sub = ref_roots_from_subproof(m, k, b, rest, root1)
        return None if sub is None else (sub[0], ref_node(sub[1], last))
    sub = ref_roots_from_subproof(m - k, n - k, False, rest, root1)
    return None if sub is None else (ref_node(last, sub[0]), ref_node(last, sub[1]))


def ref_verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes] | None, expected: bytes
) -> bool:
    hashes = list(proof or [])
    if not 0 <= index < size or len(leaf) != HASH_SIZE:
        return False
    if any(len(h) != HASH_SIZE for h in hashes):
        return False
    return ref_root_from_path(index, size, leaf, hashes) == expected


def ref_verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes] | None, root1: bytes, root2: bytes
) -> bool:
    hashes = list(proof or [])
    if size1 <= 0 or size2 < size1:  # DESIGN.md §4: a proof from the empty tree means nothing
        return False
    if size1 == size2:
        return not hashes and root1 == root2
    if any(len(h) != HASH_SIZE for h in hashes):
        return False
    return ref_roots_from_subproof(size1, size2, True, hashes, root1) == (root1, root2)
