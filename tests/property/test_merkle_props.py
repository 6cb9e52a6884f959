"""Property tests of ``ledger.merkle`` against a naive reference written from RFC 9162.

The reference below follows the definitions of RFC 9162 §2.1.1 (MTH), §2.1.3.1 (PATH) and
§2.1.4.1 (PROOF, SUBPROOF) literally, by recursion on lists of leaf hashes, and verifies a proof
by rebuilding the root(s) along the same recursion. It is slow and obviously right; the module
under test is fast and must agree with it.

Note on mutations: changing a tree size by one can leave a proof valid. The inclusion proof of
leaf 0 in a tree of 5 leaves is ``[h1, MTH(2..4), h4]``; the same three hashes, read as a proof for
a tree of 6 leaves, combine the same way, so they verify against the same root. Size mutations are
therefore checked against the reference verifier, not assumed to fail.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import ProofError
from ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactRange,
    consistency_proof,
    consistency_ranges,
    fold_range,
    inclusion_proof,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    range_nodes,
    root,
    verify_consistency,
    verify_inclusion,
)
from tests.merkle_reference import (
    ref_mth,
    ref_path,
    ref_proof,
    ref_verify_consistency,
    ref_verify_inclusion,
)

MAX_SIZE = 300

# --------------------------------------------------------------------------------------------
# Helpers and strategies


def leaves(n: int, salt: bytes = b"") -> list[bytes]:
    """n distinct leaf hashes (the fixed-width suffix keeps them distinct for any salt)."""
    return [leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)]


def passes_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes] | None, expected: bytes
) -> bool:
    try:
        verify_inclusion(leaf, index, size, proof, expected)
    except ProofError:
        return False
    return True


def passes_consistency(
    size1: int, size2: int, proof: Sequence[bytes] | None, root1: bytes, root2: bytes
) -> bool:
    try:
        verify_consistency(size1, size2, proof, root1, root2)
    except ProofError:
        return False
    return True


def flip(h: bytes, bit: int) -> bytes:
    bit %= len(h) * 8
    out = bytearray(h)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def precondition_holds(start: int, end: int) -> bool:
    """fold_range's precondition: start is a multiple of the smallest power of two >= end-start."""
    width = end - start
    return width > 0 and start % (1 << (width - 1).bit_length()) == 0


salts = st.binary(max_size=4)
bits = st.integers(min_value=0, max_value=HASH_SIZE * 8 - 1)


@st.composite
def tree_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(min_value=1, max_value=MAX_SIZE))
    index = draw(st.integers(min_value=0, max_value=size - 1))
    return index, size


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    size2 = draw(st.integers(min_value=1, max_value=MAX_SIZE))
    size1 = draw(st.integers(min_value=1, max_value=size2))
    return size1, size2


# --------------------------------------------------------------------------------------------
# Producing proofs agrees with the reference, and every proof verifies


def test_empty_tree_root() -> None:
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert CompactRange().root() == EMPTY_ROOT
    assert fold_range([]) == EMPTY_ROOT


def test_hash_prefixes() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert node_hash(b"l", b"r") == hashlib.sha256(b"\x01lr").digest()


@given(size=st.integers(min_value=0, max_value=MAX_SIZE), salt=salts)
def test_root_matches_reference(size: int, salt: bytes) -> None:
    hs = leaves(size, salt)
    assert root(hs) == ref_mth(hs)


@given(case=tree_and_index(), extra=st.integers(min_value=0, max_value=3), salt=salts)
def test_inclusion_proof_matches_reference_and_verifies(
    case: tuple[int, int], extra: int, salt: bytes
) -> None:
    index, size = case
    hs = leaves(size + extra, salt)  # longer than size: size picks the prefix
    proof = inclusion_proof(hs, index, size)
    assert proof == ref_path(index, hs[:size])
    assert len(inclusion_ranges(index, size)) == len(proof)
    verify_inclusion(hs[index], index, size, proof, ref_mth(hs[:size]))
    if not proof:
        verify_inclusion(hs[index], index, size, None, ref_mth(hs[:size]))


@given(sizes=two_sizes(), extra=st.integers(min_value=0, max_value=3), salt=salts)
def test_consistency_proof_matches_reference_and_verifies(
    sizes: tuple[int, int], extra: int, salt: bytes
) -> None:
    size1, size2 = sizes
    hs = leaves(size2 + extra, salt)
    proof = consistency_proof(hs, size1, size2)
    assert proof == ref_proof(size1, hs[:size2])
    assert len(consistency_ranges(size1, size2)) == len(proof)
    root1, root2 = ref_mth(hs[:size1]), ref_mth(hs[:size2])
    verify_consistency(size1, size2, proof, root1, root2)
    if not proof:
        verify_consistency(size1, size2, None, root1, root2)


# --------------------------------------------------------------------------------------------
# Plans and the compact range


@given(start=st.integers(min_value=0, max_value=1 << 20), width=st.integers(0, 1 << 20))
def test_range_nodes_cover_the_range_with_aligned_subtrees(start: int, width: int) -> None:
    end = start + width
    position = start
    for level, index in range_nodes(start, end):
        assert index << level == position  # contiguous, left to right, and aligned
        position += 1 << level
    assert position == end
    if precondition_holds(start, end):
        levels = [level for level, _ in range_nodes(start, end)]
        assert levels == sorted(levels, reverse=True)
        assert sum(1 << lv for lv in levels) == width
        assert len(levels) == width.bit_count()


@given(
    width=st.integers(min_value=1, max_value=512),
    block=st.integers(min_value=0, max_value=3),
    salt=salts,
)
def test_fold_range_is_mth_under_its_precondition(width: int, block: int, salt: bytes) -> None:
    start = block << (width - 1).bit_length()  # the least alignment the precondition allows
    end = start + width
    assert precondition_holds(start, end)
    hs = leaves(end, salt)
    node_hashes = [ref_mth(hs[ix << lv : (ix + 1) << lv]) for lv, ix in range_nodes(start, end)]
    assert fold_range(node_hashes) == ref_mth(hs[start:end])


@settings(deadline=None)
@given(size=st.integers(min_value=0, max_value=200), salt=salts)
def test_compact_range_tracks_root_and_round_trips(size: int, salt: bytes) -> None:
    hs = leaves(size, salt)
    compact = CompactRange()
    for i, h in enumerate(hs):
        completed = compact.append(h)
        assert completed[0] == (0, i, h)
        assert len(completed) == 1 + (i ^ (i + 1)).bit_length() - 1  # one per carried bit
        assert compact.size == i + 1
        assert compact.root() == root(hs[: i + 1])
    assert len(compact.peaks) == size.bit_count()
    assert compact.peaks == tuple(
        ref_mth(hs[ix << lv : (ix + 1) << lv]) for lv, ix in range_nodes(0, size)
    )
    again = CompactRange.from_peaks(compact.size, compact.peaks)
    assert (again.size, again.peaks, again.root()) == (compact.size, compact.peaks, compact.root())
    twin = compact.copy()
    twin.append(leaf_hash(b"only in the twin"))
    assert compact.size == size
    assert compact.root() == ref_mth(hs)
    assert twin.root() == ref_mth([*hs, leaf_hash(b"only in the twin")])


@settings(deadline=None)
@given(data=st.data(), salt=salts)
def test_store_of_appended_nodes_rebuilds_every_proof(data: st.DataObject, salt: bytes) -> None:
    n = data.draw(st.integers(min_value=1, max_value=MAX_SIZE), label="n")
    hs = leaves(n, salt)
    store: dict[tuple[int, int], bytes] = {}
    compact = CompactRange()
    for h in hs:
        for level, index, node in compact.append(h):
            assert (level, index) not in store  # each node is completed exactly once
            store[(level, index)] = node
    # The store holds exactly the perfect subtrees inside [0, n), with their MTHs.
    perfect = {(lv, ix) for lv in range(n.bit_length()) for ix in range(n >> lv)}
    assert set(store) == perfect
    for (lv, ix), node in store.items():
        assert node == ref_mth(hs[ix << lv : (ix + 1) << lv])

    def from_store(ranges: list[tuple[int, int]]) -> list[bytes]:
        out = []
        for start, end in ranges:
            assert precondition_holds(start, end)
            out.append(fold_range([store[node] for node in range_nodes(start, end)]))
        return out

    size = data.draw(st.integers(min_value=1, max_value=n), label="size")
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    assert from_store(inclusion_ranges(index, size)) == ref_path(index, hs[:size])
    assert fold_range([store[node] for node in range_nodes(0, size)]) == ref_mth(hs[:size])
    size1 = data.draw(st.integers(min_value=1, max_value=size), label="size1")
    assert from_store(consistency_ranges(size1, size)) == ref_proof(size1, hs[:size])


# --------------------------------------------------------------------------------------------
# Any change makes verification fail (or, for sizes, agree with the reference)


@given(case=tree_and_index(), salt=salts, data=st.data())
def test_inclusion_mutations(case: tuple[int, int], salt: bytes, data: st.DataObject) -> None:
    index, size = case
    hs = leaves(size, salt)
    leaf, proof, good_root = hs[index], inclusion_proof(hs, index, size), ref_mth(hs)
    assert passes_inclusion(leaf, index, size, proof, good_root)

    with pytest.raises(ProofError):
        verify_inclusion(flip(leaf, data.draw(bits)), index, size, proof, good_root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, proof, flip(good_root, data.draw(bits)))
    for i in range(len(proof)):
        bad = [*proof[:i], flip(proof[i], data.draw(bits)), *proof[i + 1 :]]
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, bad, good_root)
    # In a tree of a fixed size, another index takes another path: it can never verify.
    for other in (index - 1, index + 1):
        with pytest.raises(ProofError):
            verify_inclusion(leaf, other, size, proof, good_root)
    # Another size may take the same path (see the module docstring): ask the reference.
    for other in (size - 1, size + 1):
        want = ref_verify_inclusion(leaf, index, other, proof, good_root)
        assert passes_inclusion(leaf, index, other, proof, good_root) == want
    # Dropping or adding an element is a wrong length.
    if proof:
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, proof[:-1], good_root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, [*proof, good_root], good_root)


@given(sizes=two_sizes(), salt=salts, data=st.data())
def test_consistency_mutations(sizes: tuple[int, int], salt: bytes, data: st.DataObject) -> None:
    size1, size2 = sizes
    hs = leaves(size2, salt)
    proof = consistency_proof(hs, size1, size2)
    root1, root2 = ref_mth(hs[:size1]), ref_mth(hs)
    assert passes_consistency(size1, size2, proof, root1, root2)

    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof, flip(root1, data.draw(bits)), root2)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, proof, root1, flip(root2, data.draw(bits)))
    for i in range(len(proof)):
        bad = [*proof[:i], flip(proof[i], data.draw(bits)), *proof[i + 1 :]]
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, bad, root1, root2)
    for s1, s2 in ((size1 - 1, size2), (size1 + 1, size2), (size1, size2 - 1), (size1, size2 + 1)):
        want = ref_verify_consistency(s1, s2, proof, root1, root2)
        assert passes_consistency(s1, s2, proof, root1, root2) == want
    if proof:
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, proof[:-1], root1, root2)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, [*proof, root2], root1, root2)


def test_a_neighbouring_size_can_legitimately_verify() -> None:
    """The reason size mutations are checked against the reference rather than assumed to fail."""
    hs = leaves(6)
    proof5 = inclusion_proof(hs, 0, 5)
    verify_inclusion(hs[0], 0, 6, proof5, root(hs[:5]))  # same bytes, claimed size 6
    assert ref_verify_inclusion(hs[0], 0, 6, proof5, root(hs[:5]))
    proof_4_5 = consistency_proof(hs, 4, 5)
    verify_consistency(4, 6, proof_4_5, root(hs[:4]), root(hs[:5]))
    assert ref_verify_consistency(4, 6, proof_4_5, root(hs[:4]), root(hs[:5]))


# --------------------------------------------------------------------------------------------
# Arbitrary input: only ProofError, and the same answer as the reference

sizes_any = st.one_of(
    st.integers(min_value=-3, max_value=70),
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
)
hash_like = st.one_of(st.binary(min_size=HASH_SIZE, max_size=HASH_SIZE), st.binary(max_size=40))
proofs_any = st.one_of(st.none(), st.lists(hash_like, max_size=10))


@given(leaf=hash_like, index=sizes_any, size=sizes_any, proof=proofs_any, expected=hash_like)
def test_verify_inclusion_on_arbitrary_input(
    leaf: bytes, index: int, size: int, proof: list[bytes] | None, expected: bytes
) -> None:
    ok = passes_inclusion(leaf, index, size, proof, expected)  # anything but ProofError escapes
    assert ok == ref_verify_inclusion(leaf, index, size, proof, expected)


@given(size1=sizes_any, size2=sizes_any, proof=proofs_any, root1=hash_like, root2=hash_like)
def test_verify_consistency_on_arbitrary_input(
    size1: int, size2: int, proof: list[bytes] | None, root1: bytes, root2: bytes
) -> None:
    ok = passes_consistency(size1, size2, proof, root1, root2)
    assert ok == ref_verify_consistency(size1, size2, proof, root1, root2)


@given(
    case=tree_and_index(),
    salt=salts,
    index=sizes_any,
    size=sizes_any,
    size1=sizes_any,
)
def test_real_proofs_with_arbitrary_sizes_agree_with_the_reference(
    case: tuple[int, int], salt: bytes, index: int, size: int, size1: int
) -> None:
    true_index, true_size = case
    hs = leaves(true_size, salt)
    proof = inclusion_proof(hs, true_index, true_size)
    good_root = ref_mth(hs)
    assert passes_inclusion(hs[true_index], index, size, proof, good_root) == (
        ref_verify_inclusion(hs[true_index], index, size, proof, good_root)
    )
    cproof = consistency_proof(hs, 1 + true_index, true_size)
    root1 = ref_mth(hs[: 1 + true_index])
    assert passes_consistency(size1, size, cproof, root1, good_root) == (
        ref_verify_consistency(size1, size, cproof, root1, good_root)
    )


# --------------------------------------------------------------------------------------------
# Impossible requests

POOL = leaves(8)


@pytest.mark.parametrize(
    ("call", "args"),
    [
        pytest.param(inclusion_proof, (POOL, 3, 3), id="inclusion-index-equals-size"),
        pytest.param(inclusion_proof, (POOL, 4, 3), id="inclusion-index-beyond-size"),
        pytest.param(inclusion_proof, (POOL, -1, 3), id="inclusion-negative-index"),
        pytest.param(inclusion_proof, (POOL, 0, -1), id="inclusion-negative-size"),
        pytest.param(inclusion_proof, (POOL, 0, 0), id="inclusion-empty-tree"),
        pytest.param(inclusion_proof, (POOL, 0, 9), id="inclusion-size-beyond-leaves"),
        pytest.param(consistency_proof, (POOL, 0, 3), id="consistency-from-empty"),
        pytest.param(consistency_proof, (POOL, 0, 0), id="consistency-empty-to-empty"),
        pytest.param(consistency_proof, (POOL, 4, 3), id="consistency-shrinking"),
        pytest.param(consistency_proof, (POOL, -1, 3), id="consistency-negative-size1"),
        pytest.param(consistency_proof, (POOL, 1, -1), id="consistency-negative-size2"),
        pytest.param(consistency_proof, (POOL, 1, 9), id="consistency-size2-beyond-leaves"),
        pytest.param(inclusion_ranges, (5, 5), id="ranges-index-equals-size"),
        pytest.param(consistency_ranges, (0, 5), id="ranges-from-empty"),
        pytest.param(consistency_ranges, (6, 5), id="ranges-shrinking"),
        pytest.param(range_nodes, (3, 2), id="nodes-end-before-start"),
        pytest.param(range_nodes, (-1, 2), id="nodes-negative-start"),
        pytest.param(CompactRange.from_peaks, (3, POOL[:1]), id="peaks-too-few"),
        pytest.param(CompactRange.from_peaks, (2, POOL[:2]), id="peaks-too-many"),
        pytest.param(CompactRange.from_peaks, (1, [b"short"]), id="peaks-wrong-length"),
        pytest.param(CompactRange.from_peaks, (-1, []), id="peaks-negative-size"),
        pytest.param(CompactRange().append, (b"\x00" * 31,), id="append-short-leaf"),
        pytest.param(CompactRange().append, (b"\x00" * 33,), id="append-long-leaf"),
    ],
)
def test_impossible_requests_raise_proof_error(call: object, args: tuple[object, ...]) -> None:
    assert callable(call)
    with pytest.raises(ProofError):
        call(*args)


def test_consistency_ranges_for_equal_sizes_is_empty() -> None:
    assert consistency_ranges(5, 5) == []
    assert consistency_proof(POOL, 5, 5) == []
    assert range_nodes(4, 4) == []


def test_a_rejected_append_leaves_the_range_unchanged() -> None:
    compact = CompactRange()
    compact.append(POOL[0])
    with pytest.raises(ProofError):
        compact.append(b"")
    assert (compact.size, compact.peaks) == (1, (POOL[0],))


_H = bytes(32)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((_H.hex(), 0, 1, [], _H), "leaf hash must be bytes, got str"),
        ((_H, "0", 1, [], _H), "index must be an integer, got str"),
        ((_H, 0, 1.0, [], _H), "size must be an integer, got float"),
        ((_H, 0, 2, [_H.hex()], _H), "proof element 0 must be bytes, got str"),
        ((_H, 0, 2, _H, _H), "a proof is a sequence of hashes, got bytes"),
        ((_H, 0, 1, [], None), "root must be bytes, got NoneType"),
    ],
)
def test_inclusion_arguments_of_the_wrong_type_are_a_proof_error(
    arguments: tuple[object, ...], message: str
) -> None:
    with pytest.raises(ProofError, match=message):
        verify_inclusion(*arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((True, 2, [_H], _H, _H), "size1 must be an integer, got bool"),
        ((1, 2, [_H], _H, bytearray(_H)), "root2 must be bytes, got bytearray"),
        ((1, 2, {"a": _H}, _H, _H), "a proof is a sequence of hashes, got dict"),
    ],
)
def test_consistency_arguments_of_the_wrong_type_are_a_proof_error(
    arguments: tuple[object, ...], message: str
) -> None:
    with pytest.raises(ProofError, match=message):
        verify_consistency(*arguments)  # type: ignore[arg-type]
