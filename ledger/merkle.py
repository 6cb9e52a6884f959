"""The RFC 9162 Merkle tree of the Rantai log: hashes, proofs, proof plans and a compact range.

The tree is the one of RFC 9162 §2.1 with SHA-256: a leaf hash is ``sha256(0x00 || leaf)``, an
interior node ``sha256(0x01 || left || right)`` and the root of the empty tree ``sha256(b"")``.
Every function takes and returns raw ``bytes`` (32-byte hashes); hex and base64 belong to the
callers that put hashes on the wire.

What the module offers:

* ``leaf_hash``, ``node_hash``, ``root``: the Merkle Tree Hash (MTH).
* ``inclusion_proof``, ``consistency_proof``: proofs computed from the leaf hashes in memory
  (O(n) hashing); ``verify_inclusion``, ``verify_consistency``: check them, raising
  :class:`~ledger.errors.ProofError` with a precise reason on any failure. Their edge cases follow
  transparency-dev/merkle ``proof/verify.go`` and its public test vectors (DESIGN.md §4).
* Proof *plans* (``inclusion_ranges``, ``consistency_ranges``, ``range_nodes``, ``fold_range``)
  for a store that keeps the hash of every perfect aligned subtree, node ``(level, index)``
  covering leaves ``[index * 2**level, (index + 1) * 2**level)``: a plan names the O(log n) nodes
  to read, so that a proof never needs the leaves themselves.
* :class:`CompactRange`: the right edge of a growing log in O(log n) memory; each ``append``
  returns exactly the nodes a store must persist.

What it deliberately does not do: no I/O, no storage, no encoding of proofs for the wire, no
signed checkpoints (those live elsewhere), and no hashing of leaf *data* beyond ``leaf_hash``.
Producing functions trust the leaf hashes they are given; verifying functions trust nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ledger.errors import ProofError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "consistency_proof",
    "consistency_ranges",
    "fold_range",
    "inclusion_proof",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "range_nodes",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Length in bytes of every hash in the tree (SHA-256)."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Root of the empty tree, ``sha256(b"")`` (RFC 9162 §2.1.1)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


# --------------------------------------------------------------------------------------------
# Hashes


def leaf_hash(data: bytes) -> bytes:
    """Hash one leaf of the log.

    Args:
        data: the leaf's bytes (for Rantai, the JCS bytes of an envelope).

    Returns:
        ``sha256(0x00 || data)``.
    """
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash an interior node from the hashes of its two children.

    Args:
        left: hash of the left child.
        right: hash of the right child.

    Returns:
        ``sha256(0x01 || left || right)``.
    """
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (RFC 9162's ``k``); needs n > 1."""
    return 1 << ((n - 1).bit_length() - 1)


def _perfect_root(leaf_hashes: Sequence[bytes], level: int, index: int) -> bytes:
    """MTH of the perfect subtree ``(level, index)``, computed from its 2**level leaf hashes."""
    start = index << level
    layer = list(leaf_hashes[start : start + (1 << level)])
    while len(layer) > 1:
        layer = [node_hash(layer[i], layer[i + 1]) for i in range(0, len(layer), 2)]
    return layer[0]


def _range_root(leaf_hashes: Sequence[bytes], start: int, end: int) -> bytes:
    """MTH of ``leaf_hashes[start:end]`` through the plan functions (their precondition holds)."""
    return fold_range([_perfect_root(leaf_hashes, lv, ix) for lv, ix in range_nodes(start, end)])


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """The RFC 9162 Merkle Tree Hash of a list of leaf hashes.

    Args:
        leaf_hashes: the hashes of the leaves, in log order.

    Returns:
        The root hash; ``sha256(b"")`` for an empty list.
    """
    return _range_root(leaf_hashes, 0, len(leaf_hashes))


# --------------------------------------------------------------------------------------------
# Proof plans


def _check_non_negative(**values: int) -> None:
    for name, value in values.items():
        if value < 0:
            raise ProofError(f"{name} must not be negative, got {value}")


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Plan an inclusion proof: the leaf range each proof element is the MTH of.

    This is RFC 9162 §2.1.3.1 ``PATH(m, D[n])`` with ``m = index`` and ``n = size``, returning the
    ``[start, end)`` leaf range of every element instead of its hash.

    Args:
        index: 0-based index of the leaf the proof is for.
        size: size of the tree the proof is against.

    Returns:
        One ``(start, end)`` pair per proof element, in proof order (from the leaf up). Each range
        meets the precondition of :func:`fold_range`.

    Raises:
        ProofError: if ``index`` or ``size`` is negative or ``index >= size``.
    """
    _check_non_negative(index=index, size=size)
    if index >= size:
        raise ProofError(f"leaf index {index} is out of range for tree size {size}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + _largest_power_of_two_below(hi - lo)
        if index < mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo = mid
    ranges.reverse()
    return ranges


def consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """Plan a consistency proof: the leaf range each proof element is the MTH of.

    This is RFC 9162 §2.1.4.1 ``PROOF(m, D[n])`` / ``SUBPROOF(m, D[n], b)`` with ``m = size1``
    and ``n = size2``, returning the ``[start, end)`` leaf range of every element.

    Args:
        size1: size of the older tree (at least 1).
        size2: size of the newer tree (at least ``size1``).

    Returns:
        One ``(start, end)`` pair per proof element, in proof order; empty when
        ``size1 == size2``. Each range meets the precondition of :func:`fold_range`.

    Raises:
        ProofError: if a size is negative, ``size1 == 0`` (a proof from the empty tree means
            nothing) or ``size1 > size2``.
    """
    _check_non_negative(size1=size1, size2=size2)
    if size1 > size2:
        raise ProofError(f"size1 {size1} is greater than size2 {size2}")
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree is meaningless")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size2
    whole_old_tree = True  # SUBPROOF's b: is [lo, hi) still the whole of the old tree's path?
    while size1 < hi:
        mid = lo + _largest_power_of_two_below(hi - lo)
        if size1 <= mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo = mid
            whole_old_tree = False
    if not whole_old_tree:
        # The verifier knows MTH(D[0:size1]) but not the subtree [lo, size1) it needs as a seed.
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def range_nodes(start: int, end: int) -> list[tuple[int, int]]:
    """The perfect aligned subtrees that exactly cover a range of leaves.

    Node ``(level, index)`` covers leaves ``[index * 2**level, (index + 1) * 2**level)``. Each node
    is the largest one that starts where the previous one ended and fits in the range, so the
    list is the shortest such cover. When ``start`` is a multiple of the smallest power of two
    that is at least ``end - start`` (the precondition of :func:`fold_range`), the nodes are the
    set bits of ``end - start``, largest first.

    Args:
        start: first leaf of the range.
        end: one past the last leaf of the range.

    Returns:
        ``(level, index)`` pairs, left to right; empty when ``start == end``.

    Raises:
        ProofError: if ``start`` is negative or ``end < start``.
    """
    if start < 0:  # not _check_non_negative: proofs call this once per element
        raise ProofError(f"start must not be negative, got {start}")
    if end < start:
        raise ProofError(f"range end {end} is before its start {start}")
    nodes: list[tuple[int, int]] = []
    while start < end:
        level = (end - start).bit_length() - 1
        # A node must also be aligned: its size must divide its first leaf index.
        aligned = (start & -start).bit_length() - 1
        if 0 <= aligned < level:
            level = aligned
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def fold_range(hashes: Sequence[bytes]) -> bytes:
    """The MTH of a range of leaves from the hashes of its :func:`range_nodes`.

    Folds right to left: ``node_hash(h0, node_hash(h1, ... node_hash(h[-2], h[-1])))``.

    Precondition: ``fold_range(hashes of range_nodes(a, b))`` equals ``MTH(D[a:b])`` when ``a`` is
    a multiple of the smallest power of two that is at least ``b - a`` (that is, ``[a, b)`` is the
    left part of a perfect aligned subtree). RFC 9162 splits ``[a, b)`` at ``a + k``, ``k`` the
    largest power of two below ``b - a``; the left part is then one perfect aligned node and the
    right part again meets the precondition, so the tree leans right exactly as the fold does. The
    precondition holds for ``[0, n)`` and for every range of :func:`inclusion_ranges` and
    :func:`consistency_ranges`. For other ranges (say ``[1, 3)``) the result is some hash, but not
    the MTH.

    Args:
        hashes: the hashes of ``range_nodes(a, b)``, left to right.

    Returns:
        The folded hash; ``sha256(b"")`` (the MTH of no leaves) when ``hashes`` is empty.
    """
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for h in reversed(hashes[:-1]):
        result = node_hash(h, result)
    return result


# --------------------------------------------------------------------------------------------
# Producing proofs


def _check_prefix(leaf_hashes: Sequence[bytes], size: int) -> None:
    if size > len(leaf_hashes):
        raise ProofError(f"tree size {size} is larger than the {len(leaf_hashes)} leaves given")


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """The RFC 9162 inclusion proof of one leaf in the tree of the first ``size`` leaves.

    Args:
        leaf_hashes: leaf hashes in log order; may be longer than ``size``.
        index: 0-based index of the leaf.
        size: size of the tree the proof is against.

    Returns:
        The proof hashes, from the leaf up (empty for a tree of one leaf).

    Raises:
        ProofError: if ``index`` or ``size`` is negative, ``index >= size``, or ``size`` exceeds
            the number of leaf hashes given.
    """
    ranges = inclusion_ranges(index, size)
    _check_prefix(leaf_hashes, size)
    return [_range_root(leaf_hashes, a, b) for a, b in ranges]


def consistency_proof(leaf_hashes: Sequence[bytes], size1: int, size2: int) -> list[bytes]:
    """The RFC 9162 consistency proof between the trees of the first ``size1`` and ``size2`` leaves.

    Args:
        leaf_hashes: leaf hashes in log order; may be longer than ``size2``.
        size1: size of the older tree (at least 1).
        size2: size of the newer tree (at least ``size1``).

    Returns:
        The proof hashes (empty when ``size1 == size2``).

    Raises:
        ProofError: if a size is negative, ``size1 == 0``, ``size1 > size2``, or ``size2``
            exceeds the number of leaf hashes given.
    """
    ranges = consistency_ranges(size1, size2)
    _check_prefix(leaf_hashes, size2)
    return [_range_root(leaf_hashes, a, b) for a, b in ranges]


# --------------------------------------------------------------------------------------------
# Verifying proofs


def _check_types(counts: dict[str, object], hashes: dict[str, object], proof: object) -> None:
    """Refuse arguments of the wrong type with a :class:`ProofError` (never a ``TypeError``):
    a verifier is fed what a node or a file said."""
    for name, value in counts.items():
        if type(value) is not int:
            raise ProofError(f"{name} must be an integer, got {type(value).__name__}")
    for name, value in hashes.items():
        if type(value) is not bytes:
            raise ProofError(f"{name} must be bytes, got {type(value).__name__}")
    if proof is not None and (isinstance(proof, str | bytes) or not isinstance(proof, Sequence)):
        raise ProofError(f"a proof is a sequence of hashes, got {type(proof).__name__}")
    for position, h in enumerate(proof or ()):
        if type(h) is not bytes:
            raise ProofError(f"proof element {position} must be bytes, got {type(h).__name__}")


def _proof_list(proof: Sequence[bytes] | None) -> list[bytes]:
    """The proof as a list, with every element checked to be one hash long."""
    hashes = [] if proof is None else list(proof)
    for position, h in enumerate(hashes):
        if len(h) != HASH_SIZE:
            raise ProofError(f"proof element {position} has {len(h)} bytes, want {HASH_SIZE}")
    return hashes


def _inclusion_proof_length(index: int, size: int) -> int:
    """Number of hashes in the inclusion proof of ``index`` in a tree of ``size`` (index < size).

    Below the level where the paths to ``index`` and to ``size - 1`` part, the path runs through
    perfect subtrees and takes one sibling per level; above it, the path runs along the right
    border, which takes a (left) sibling only where ``index`` has a set bit.
    """
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _mismatch(what: str, computed: bytes, expected: bytes) -> ProofError:
    return ProofError(
        f"computed {what} {computed.hex()} does not match the expected {expected.hex()}"
    )


def verify_inclusion(
    leaf_hash: bytes,
    index: int,
    size: int,
    proof: Sequence[bytes] | None,
    root: bytes,
) -> None:
    """Check that a leaf is at ``index`` in the tree of ``size`` leaves with this root.

    Follows RFC 9162 §2.1.3.2, with the checks of transparency-dev/merkle in this order: the index
    must be below the size, the leaf hash must be 32 bytes, and the proof must have exactly as
    many hashes as the index and size imply, each 32 bytes.

    Args:
        leaf_hash: the hash of the leaf (``leaf_hash(data)``).
        index: its 0-based index.
        size: the size of the tree.
        proof: the inclusion proof, from the leaf up; ``None`` means an empty proof.
        root: the expected root of the tree of ``size`` leaves.

    Raises:
        ProofError: if the proof does not verify, or an argument has the wrong type; the
            message says why.
    """
    _check_types({"index": index, "size": size}, {"leaf hash": leaf_hash, "root": root}, proof)
    if index < 0:
        raise ProofError(f"leaf index {index} is negative")
    if index >= size:
        raise ProofError(f"leaf index {index} is out of range for tree size {size}")
    if len(leaf_hash) != HASH_SIZE:
        raise ProofError(f"leaf hash has {len(leaf_hash)} bytes, want {HASH_SIZE}")
    want = _inclusion_proof_length(index, size)
    n_given = 0 if proof is None else len(proof)
    if n_given != want:
        raise ProofError(
            f"inclusion proof has {n_given} hashes, want {want} "
            f"for leaf {index} in a tree of size {size}"
        )
    hashes = _proof_list(proof)

    # RFC 9162 §2.1.3.2: walk up from the leaf; fn is its index and sn the last index on the
    # current level. When fn is the last node of its level (fn == sn) and even, it has no
    # sibling there, so climb until it is a right child.
    fn, sn, computed = index, size - 1, leaf_hash
    for h in hashes:
        if fn & 1 or fn == sn:
            computed = node_hash(h, computed)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            computed = node_hash(computed, h)
        fn >>= 1
        sn >>= 1
    if computed != root:
        raise _mismatch(f"root of tree size {size}", computed, root)


def verify_consistency(
    size1: int,
    size2: int,
    proof: Sequence[bytes] | None,
    root1: bytes,
    root2: bytes,
) -> None:
    """Check that the tree of ``size2`` leaves and ``root2`` extends that of ``size1``, ``root1``.

    Follows RFC 9162 §2.1.4.2, with the checks of transparency-dev/merkle in this order:
    ``size2 < size1`` fails; ``size1 == 0`` fails (also when ``size2 == 0``: a proof from the
    empty tree means nothing); equal sizes need an empty proof and ``root1 == root2`` (compared as
    bytes); otherwise an empty proof fails, and the proof must have exactly as many hashes as the
    sizes imply, each 32 bytes.

    Args:
        size1: size of the older tree.
        size2: size of the newer tree.
        proof: the consistency proof; ``None`` means an empty proof.
        root1: the expected root of the older tree.
        root2: the expected root of the newer tree.

    Raises:
        ProofError: if the proof does not verify, or an argument has the wrong type; the
            message says why.
    """
    _check_types({"size1": size1, "size2": size2}, {"root1": root1, "root2": root2}, proof)
    if size1 < 0 or size2 < 0:
        raise ProofError(f"tree sizes must not be negative, got {size1} and {size2}")
    if size2 < size1:
        raise ProofError(f"size2 {size2} is smaller than size1 {size1}")
    if size1 == 0:
        raise ProofError("a consistency proof from the empty tree is meaningless")
    n_given = 0 if proof is None else len(proof)
    if size1 == size2:
        if n_given:
            raise ProofError(f"sizes are equal ({size1}) but the proof has {n_given} hashes")
        if root1 != root2:
            raise ProofError(
                f"sizes are equal ({size1}) but the roots differ: {root1.hex()} != {root2.hex()}"
            )
        return
    if n_given == 0:
        raise ProofError(f"consistency proof from size {size1} to {size2} is empty")

    # The proof is the inclusion proof, in the tree of size2, of the largest perfect subtree that
    # ends at size1 (level `shift`), preceded by that subtree's hash unless it is the whole old
    # tree (size1 a power of two), whose hash the verifier already has as root1.
    shift = (size1 & -size1).bit_length() - 1
    seeded = size1 == 1 << shift
    want = _inclusion_proof_length(size1 - 1, size2) - shift + (0 if seeded else 1)
    if n_given != want:
        raise ProofError(
            f"consistency proof has {n_given} hashes, want {want} from size {size1} to {size2}"
        )
    hashes = _proof_list(proof)
    if seeded:
        hashes.insert(0, root1)

    # RFC 9162 §2.1.4.2: fr rebuilds the old root, sr the new one, from the seed subtree up.
    fn, sn = (size1 - 1) >> shift, (size2 - 1) >> shift
    fr = sr = hashes[0]
    for c in hashes[1:]:
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if fr != root1:
        raise _mismatch(f"root of tree size {size1}", fr, root1)
    if sr != root2:
        raise _mismatch(f"root of tree size {size2}", sr, root2)


# --------------------------------------------------------------------------------------------
# Compact range


class CompactRange:
    """The right edge ("peaks") of a growing log: one perfect subtree hash per set bit of size.

    The peaks are the hashes of ``range_nodes(0, size)``, left to right (largest subtree first),
    so the root is ``fold_range(peaks)``. Memory is O(log size); an append costs amortised O(1)
    hashes and returns the nodes it completed, which is what a store of interior hashes persists.
    """

    __slots__ = ("_peaks", "_size")

    def __init__(self) -> None:
        """Start an empty range (tree size 0)."""
        self._size = 0
        self._peaks: list[bytes] = []

    @classmethod
    def from_peaks(cls, size: int, peaks: Sequence[bytes]) -> CompactRange:
        """Rebuild a range from a stored size and peaks.

        Args:
            size: the tree size.
            peaks: the hashes of ``range_nodes(0, size)``, left to right.

        Returns:
            A range that continues the log from ``size``.

        Raises:
            ProofError: if ``size`` is negative, the number of peaks is not the number of set
                bits of ``size``, or a peak is not 32 bytes.
        """
        _check_non_negative(size=size)
        want = size.bit_count()
        if len(peaks) != want:
            raise ProofError(f"tree size {size} needs {want} peaks, got {len(peaks)}")
        for position, h in enumerate(peaks):
            if len(h) != HASH_SIZE:
                raise ProofError(f"peak {position} has {len(h)} bytes, want {HASH_SIZE}")
        compact = cls()
        compact._size = size
        compact._peaks = list(peaks)
        return compact

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def peaks(self) -> tuple[bytes, ...]:
        """Hashes of ``range_nodes(0, size)``, left to right (largest subtree first)."""
        return tuple(self._peaks)

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Append one leaf hash.

        Args:
            leaf_hash: the hash of the new leaf (``leaf_hash(data)``).

        Returns:
            Every node completed by this append as ``(level, index, hash)``: the leaf itself at
            level 0 first, then each perfect subtree it closes, up to the new smallest peak.

        Raises:
            ProofError: if ``leaf_hash`` is not 32 bytes.
        """
        if len(leaf_hash) != HASH_SIZE:
            raise ProofError(f"leaf hash has {len(leaf_hash)} bytes, want {HASH_SIZE}")
        level, index, h = 0, self._size, leaf_hash
        completed = [(level, index, h)]
        # Each trailing set bit of the old size is a peak of that level that the new node
        # completes; merging carries up exactly like binary addition of 1.
        while index & 1:
            h = node_hash(self._peaks.pop(), h)
            level += 1
            index >>= 1
            completed.append((level, index, h))
        self._peaks.append(h)
        self._size += 1
        return completed

    def root(self) -> bytes:
        """The RFC 9162 root of the current tree (``sha256(b"")`` when empty)."""
        return fold_range(self._peaks)

    def copy(self) -> CompactRange:
        """An independent copy: appends to one do not affect the other."""
        return CompactRange.from_peaks(self._size, self._peaks)

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size})"
