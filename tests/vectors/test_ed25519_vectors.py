"""The C2SP CCTV Ed25519 edge-case vectors against OpenSSL and the ledger's policy.

``testdata/ed25519/ed25519vectors.json`` holds 914 signatures over small messages, each flagged
with the edge cases it exercises (small-order and non-canonical ``A`` and ``R``, small-order
components, signatures that verify only with the cofactored equation, hashes over re-encoded
points). Libraries disagree on them, and ledger nodes that disagree on a signature fork, so:

* every vector's outcome under ``cryptography``'s OpenSSL verifier is pinned
  (:data:`OPENSSL_ACCEPTS`), and a pure-Python model of the RFC 8032 cofactorless equation
  says why: if an upgrade changes what OpenSSL accepts, these tests fail;
* every vector's key is run through :func:`ledger.keys.check_public_key` (what may be
  registered) and every signature through :func:`ledger.keys.verify_signature` and
  :func:`ledger.keys.verify_job`, with the outcome ``docs/ed25519-policy.md`` promises: the
  ledger accepts exactly the one vector that has no edge-case flag;
* a refused key is refused where keys enter the ledger: the genesis document and the
  ``org.register``, ``member.register`` and ``key.add`` events.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.blocks import parse_genesis
from ledger.errors import EncodingError, RuleViolation, SignatureError
from ledger.keys import (
    SMALL_ORDER_ENCODINGS,
    check_public_key,
    public_key_bytes,
    verify_job,
    verify_public_key,
    verify_signature,
)
from rantai.samplechain import derive_key, sample_network
from tests._paths import TESTDATA
from tests.builders import fixture_world, profile_hash, public_key_hex

VECTORS_FILE = TESTDATA / "ed25519" / "ed25519vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))

_ACCEPTED = """
    1 3 5 7 9 11 23 25 27 29 31 33 35 44 46 48 50 52 54 111 113 115 117 119 121 133 135 137 139
    141 143 155 157 159 161 163 165 166 167 176 178 180 182 184 186 188 243 245 247 249 251 253
    255 302 303 304 305 306 307 308 309 310 311 312 313 314 405 407 409 411 419 421 423 425 432
    434 436 438 459 461 463 465 467 469 471 473 475 477 479 481 483 485 487 489 491 493 495 497
    505 507 509 511 519 521 523 525 532 534 536 538 559 561 563 565 567 569 571 573 575 577 579
    581 583 585 587 589 591 593 595 597 605 607 609 611 619 621 623 625 632 634 636 638 659 661
    663 665 667 669 671 673 675 677 679 681 683 685 687 689 691 693 695 697 705 707 709 711 719
    721 723 725 732 734 736 738 759 761 763 765 767 769 771 773 775 777 779 781 783 785 787 789
    791 793 795 797 826 828 830 832 834 836 838 893 895 897 899 901 903 904
    """
OPENSSL_ACCEPTS = frozenset(int(number) for number in _ACCEPTED.split())
"""The vectors whose signature ``Ed25519PublicKey.verify`` accepts (cryptography 50.0.2, its
bundled OpenSSL 4.0.3). If this changes after an upgrade, OpenSSL's edge cases changed: read
``docs/ed25519-policy.md`` before touching the list, because nodes on the old and the new
version would disagree on these signatures."""

_SHORT = {
    "low_order_A": "loA",
    "low_order_R": "loR",
    "non_canonical_A": "ncA",
    "non_canonical_R": "ncR",
    "low_order_component_A": "lcA",
    "low_order_component_R": "lcR",
    "low_order_residue": "residue",
    "reencoded_k": "reencoded",
}


def _id(vector: dict[str, Any]) -> str:
    flags = vector["flags"] or []
    return f"{vector['number']:03d}-" + ("+".join(_SHORT[f] for f in flags) or "plain")


def _parts(vector: dict[str, Any]) -> tuple[bytes, bytes, bytes, frozenset[str]]:
    return (
        bytes.fromhex(vector["key"]),
        bytes.fromhex(vector["sig"]),
        vector["msg"].encode(),
        frozenset(vector["flags"] or ()),
    )


def _openssl_accepts(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def _ledger_verifies(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        verify_signature(public_key, b"", message, signature)
    except SignatureError:
        return False
    return True


def _key_refusal(flags: frozenset[str]) -> str | None:
    """The start of the reason :func:`check_public_key` must give for a vector's key."""
    if "non_canonical_A" in flags:
        return "non-canonical encoding"
    if "low_order_A" in flags:
        return "a point of small order"
    if "low_order_component_A" in flags:
        return "a point with a small-order component"
    return None


# --------------------------------------------------------------------------------------------
# An independent model of RFC 8032 §5.1.7 on edwards25519, in plain integers

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, -1, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
Point = tuple[int, int, int, int]
IDENTITY: Point = (0, 1, 1, 0)
BASE_Y = 4 * pow(5, -1, P) % P


def _add(p: Point, q: Point) -> Point:
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a, b = (y1 - x1) * (y2 - x2) % P, (y1 + x1) * (y2 + x2) % P
    c, d = 2 * D * t1 * t2 % P, 2 * z1 * z2 % P
    return (
        (b - a) * (d - c) % P,
        (d + c) * (b + a) % P,
        (d - c) * (d + c) % P,
        (b - a) * (b + a) % P,
    )


def _times(scalar: int, point: Point) -> Point:
    result = IDENTITY
    for bit in bin(scalar)[2:]:
        result = _add(result, result)
        if bit == "1":
            result = _add(result, point)
    return result


def _lenient_decode(encoding: bytes) -> Point | None:
    """Decoding as OpenSSL does it: y taken modulo p, x = 0 with the sign bit allowed."""
    y = int.from_bytes(encoding, "little") & ((1 << 255) - 1)
    sign = encoding[31] >> 7
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if v * x * x % P == (-u) % P:
        x = x * SQRT_M1 % P
    elif v * x * x % P != u:
        return None
    if x & 1 != sign:
        x = (P - x) % P
    return (x, y % P, 1, x * y % P)


def _encode(point: Point) -> bytes:
    x, y, z, _ = point
    inverse = pow(z, -1, P)
    x, y = x * inverse % P, y * inverse % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _is_identity(point: Point) -> bool:
    return point[0] % P == 0 and (point[1] - point[2]) % P == 0


BASE = _lenient_decode(BASE_Y.to_bytes(32, "little"))


def _cofactorless_accepts(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """``encode([S]B - [k]A) == R`` with ``k = SHA-512(R || A || M)`` over the bytes given."""
    a = _lenient_decode(public_key)
    s = int.from_bytes(signature[32:], "little")
    if a is None or s >= L or BASE is None:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little")
    minus_a = ((-a[0]) % P, a[1], a[2], (-a[3]) % P)
    return _encode(_add(_times(s, BASE), _times(k % L, minus_a))) == signature[:32]


# --------------------------------------------------------------------------------------------
# The vectors


def test_the_vectors_are_all_there() -> None:
    assert [v["number"] for v in VECTORS] == list(range(914))
    assert min(OPENSSL_ACCEPTS) >= 0
    assert max(OPENSSL_ACCEPTS) < 914
    assert [v["number"] for v in VECTORS if not v["flags"]] == [305]


@pytest.mark.parametrize("vector", [pytest.param(v, id=_id(v)) for v in VECTORS])
def test_vector(vector: dict[str, Any]) -> None:
    public_key, signature, message, flags = _parts(vector)
    number = vector["number"]

    # OpenSSL's own answer, pinned.
    openssl = _openssl_accepts(public_key, message, signature)
    assert openssl == (number in OPENSSL_ACCEPTS)

    # Registration: the key policy refuses exactly the keys CCTV flags, for the flagged reason.
    reason = check_public_key(public_key)
    expected_reason = _key_refusal(flags)
    if expected_reason is None:
        assert reason is None
        assert verify_public_key(public_key) == public_key
    else:
        assert reason is not None
        assert reason.startswith(expected_reason)
        with pytest.raises(EncodingError, match=expected_reason):
            verify_public_key(public_key, "payload.public_key")

    # Verification: OpenSSL's answer, less any signature whose R has small order.
    ledger = _ledger_verifies(public_key, message, signature)
    assert ledger == (openssl and "low_order_R" not in flags)
    assert verify_job((public_key, message, signature)) == ledger

    # Together: of all the edge cases, the ledger accepts none.
    assert (reason is None and ledger) == (not flags)


def test_openssl_is_the_cofactorless_equation_over_the_bytes_given() -> None:
    """OpenSSL accepts exactly what the model does: the equation without the cofactor, ``S``
    reduced, ``R`` compared byte for byte (a non-canonical ``R`` never matches), ``A`` decoded
    leniently (non-canonical encodings and small-order points pass) and hashed as given."""
    model = set()
    for vector in VECTORS:
        public_key, signature, message, _ = _parts(vector)
        if _cofactorless_accepts(public_key, message, signature):
            model.add(vector["number"])
    assert model == OPENSSL_ACCEPTS


@pytest.mark.parametrize(
    ("flag", "openssl_accepts_some"),
    [
        pytest.param("low_order_residue", False, id="cofactorless"),
        pytest.param("non_canonical_R", False, id="non-canonical-R-refused"),
        pytest.param("non_canonical_A", True, id="non-canonical-A-accepted"),
        pytest.param("low_order_A", True, id="small-order-A-accepted"),
        pytest.param("low_order_component_A", True, id="mixed-order-A-accepted"),
        pytest.param("low_order_R", True, id="small-order-R-accepted"),
        pytest.param("reencoded_k", True, id="reencoded-k-sometimes"),
    ],
)
def test_what_openssl_alone_would_let_through(flag: str, openssl_accepts_some: bool) -> None:
    """Why the ledger needs its own key and ``R`` checks on top of OpenSSL."""
    flagged = {v["number"] for v in VECTORS if flag in (v["flags"] or ())}
    assert flagged
    assert bool(flagged & OPENSSL_ACCEPTS) == openssl_accepts_some


# --------------------------------------------------------------------------------------------
# The policy's own edges


def test_small_order_encodings_are_every_encoding_of_the_eight_torsion_points() -> None:
    generator = _torsion_generator()
    torsion = [IDENTITY]
    while len(torsion) < 8:
        torsion.append(_add(torsion[-1], generator))
    canonical = {_encode(point) for point in torsion}
    assert len(canonical) == 8
    spellings = set()
    for encoding in canonical:
        y = int.from_bytes(encoding, "little") & ((1 << 255) - 1)
        for value in (y, y + P):
            for sign in (0, 1):
                if value < 2**255:
                    candidate = (value | sign << 255).to_bytes(32, "little")
                    point = _lenient_decode(candidate)
                    if point is not None and _encode(point) in canonical:
                        spellings.add(candidate)
    assert spellings == SMALL_ORDER_ENCODINGS
    assert canonical < SMALL_ORDER_ENCODINGS
    for encoding in SMALL_ORDER_ENCODINGS:
        assert check_public_key(encoding) is not None


def _torsion_generator() -> Point:
    """A point of order exactly 8: ``[L]`` times a point with a full small-order component."""
    for y in range(2, 1000):
        point = _lenient_decode(y.to_bytes(32, "little"))
        if point is None:
            continue
        torsion = _times(L, point)
        if not _is_identity(_times(4, torsion)):
            return torsion
    raise AssertionError("no point with an order-8 component below y = 1000")


def test_keys_made_from_private_keys_are_accepted() -> None:
    for n in range(32):
        public_key = public_key_bytes(derive_key(b"ed25519-policy", str(n)))
        assert check_public_key(public_key) is None


@pytest.mark.parametrize(
    ("public_key", "reason"),
    [
        pytest.param(b"", "32 bytes, got 0", id="empty"),
        pytest.param(bytes(31), "32 bytes, got 31", id="short"),
        pytest.param(bytes(33), "32 bytes, got 33", id="long"),
        pytest.param((2).to_bytes(32, "little"), "not a point on the curve", id="y-2-off-curve"),
        pytest.param((P + 2).to_bytes(32, "little"), "non-canonical", id="y-above-p"),
        pytest.param(b"\xff" * 32, "non-canonical", id="all-ones"),
    ],
)
def test_malformed_keys_are_refused(public_key: bytes, reason: str) -> None:
    problem = check_public_key(public_key)
    assert problem is not None
    assert reason in problem


def test_a_signature_with_s_not_reduced_is_refused() -> None:
    private_key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public_key = public_key_bytes(private_key)
    signature = private_key.sign(b"message")
    s = int.from_bytes(signature[32:], "little")
    malleated = signature[:32] + (s + L).to_bytes(32, "little")
    assert _ledger_verifies(public_key, b"message", signature)
    assert not _openssl_accepts(public_key, b"message", malleated)
    with pytest.raises(SignatureError, match="S is not reduced"):
        verify_signature(public_key, b"", b"message", malleated)
    assert not verify_job((public_key, b"message", malleated))


# --------------------------------------------------------------------------------------------
# Where keys enter the ledger


def _first_key(refusal: str) -> str:
    """The key of the first vector whose key must be refused with ``refusal``."""
    return next(str(v["key"]) for v in VECTORS if _key_refusal(_parts(v)[3]) == refusal)


BAD_KEYS = [
    pytest.param(_first_key("a point of small order"), "small order", id="small-order"),
    pytest.param(_first_key("non-canonical encoding"), "non-canonical", id="non-canonical"),
    pytest.param(
        _first_key("a point with a small-order component"),
        "small-order component",
        id="mixed-order",
    ),
]


@pytest.mark.parametrize(("bad_key", "reason"), BAD_KEYS)
@pytest.mark.parametrize("where", ["validators", "governance"])
def test_genesis_refuses_a_bad_key(bad_key: str, reason: str, where: str) -> None:
    document = copy.deepcopy(sample_network().genesis.document)
    if where == "validators":
        document["validators"][1]["public_key"] = bad_key
        field = r"genesis\.validators\[1\]\.public_key"
    else:
        document["governance"]["admins"].append(bad_key)
        field = r"genesis\.governance\.admins\[1\]"
    with pytest.raises(EncodingError, match=f"{field} is not an acceptable .*{reason}"):
        parse_genesis(document)


@pytest.mark.parametrize(("bad_key", "reason"), BAD_KEYS)
@pytest.mark.parametrize("kind", ["org.register", "member.register", "key.add"])
def test_registration_refuses_a_bad_key(bad_key: str, reason: str, kind: str) -> None:
    world = fixture_world()
    if kind == "org.register":
        payload: dict[str, Any] = {
            "org_id": "koperasi-sawit",
            "name": "Koperasi Sawit Ketapang",
            "kind": "cooperative",
            "admins": [public_key_hex("koperasi-sawit/admin-1"), bad_key],
        }
        signer, field = "governance", "payload.admins[1]"
    elif kind == "member.register":
        payload = {
            "member_id": "koperasi-karet/citra",
            "role": "producer",
            "public_keys": [bad_key],
            "profile_hash": profile_hash("koperasi-karet/citra"),
        }
        signer, field = "koperasi-karet/admin-1", "payload.public_keys[0]"
    else:
        payload = {"member_id": "koperasi-karet/budi", "public_key": bad_key}
        signer, field = "koperasi-karet/admin-1", "payload.public_key"
    envelope = world.envelope(kind, payload, [signer])
    with pytest.raises(RuleViolation) as caught:
        world.apply(envelope)
    assert caught.value.rule == "event.payload"
    assert caught.value.event_id == envelope.event_id
    assert caught.value.detail.startswith(f"{field} is not an acceptable Ed25519 public key")
    assert reason in caught.value.detail
