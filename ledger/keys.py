"""Ed25519 keys, key ids, domain-separated signatures and threshold checks (DESIGN.md §2).

Every Rantai signature is over ``PREFIX + message`` where the prefix names the purpose
(``rantai-event-v1\\n``, ``rantai-vote-v1\\n``), so a signature made for one purpose never verifies
for another. Key ids are ``sha256(raw public key)`` in lowercase hex.

Ed25519 implementations disagree on edge cases (small-order and non-canonical points, the
cofactored or the cofactorless equation), and nodes that disagree on a signature fork. The
policy every node applies is pinned in this module: :func:`check_public_key` says which public
keys may be registered, :func:`_refused_signature` what is refused before OpenSSL verifies, and
OpenSSL does the rest (``docs/ed25519-policy.md``; ``tests/vectors/test_ed25519_vectors.py``
holds both to the C2SP CCTV edge-case vectors).

This module deliberately does not generate keys or touch files: key generation needs the
operating system's randomness and saving needs the file system, so both live in
``node.keystore``. Here keys are loaded from and serialised to PEM bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import EncodingError, SignatureError

__all__ = [
    "EVENT_PREFIX",
    "PROPOSAL_PREFIX",
    "SMALL_ORDER_ENCODINGS",
    "VOTE_PREFIX",
    "SignatureCheck",
    "SignatureJob",
    "check_public_key",
    "check_signatures",
    "key_id",
    "private_key_from_pem",
    "private_key_to_pem",
    "public_key_bytes",
    "sign",
    "verify_job",
    "verify_jobs",
    "verify_public_key",
    "verify_signature",
    "verify_signatures",
]

EVENT_PREFIX = b"rantai-event-v1\n"
VOTE_PREFIX = b"rantai-vote-v1\n"
PROPOSAL_PREFIX = b"rantai-proposal-v1\n"


def key_id(public_key: bytes) -> str:
    """The key id of a raw 32-byte Ed25519 public key: ``sha256(key).hexdigest()``."""
    if len(public_key) != 32:
        raise EncodingError(f"an Ed25519 public key is 32 bytes, got {len(public_key)}")
    return hashlib.sha256(public_key).hexdigest()


# --- the Ed25519 policy (docs/ed25519-policy.md) --------------------------------------------
# Pure integer arithmetic on edwards25519 (RFC 8032 §5.1): keys are registered rarely, so a
# decompression and two scalar multiplications in Python (about a millisecond) cost nothing
# that matters, and what is refused does not depend on what a library happens to accept.

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
"""The order of the prime-order subgroup; every honest key ``a·B`` lies in it."""
_D = -121665 * pow(121666, -1, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_Point = tuple[int, int, int, int]
"""Extended coordinates ``(X, Y, Z, T)``: ``x = X/Z``, ``y = Y/Z``, ``x·y = T/Z``."""
_IDENTITY: _Point = (0, 1, 1, 0)

SMALL_ORDER_ENCODINGS = frozenset(
    bytes.fromhex(h)
    for h in (
        # The 8 torsion points, canonically encoded: the identity, the point of order 2, the
        # two of order 4 and the four of order 8 ...
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
        # ... and the 6 non-canonical encodings a lenient decoder maps onto them: x = 0 with
        # the sign bit set, and y + p for y = 0 and y = 1.
        "0100000000000000000000000000000000000000000000000000000000000080",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    )
)
"""Every 32-byte string that a lenient decoder reads as a point of small order."""


def _add(p: _Point, q: _Point) -> _Point:
    # add-2008-hwcd-3: complete on edwards25519 (a = -1, d not a square), doubling included.
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = 2 * _D * t1 * t2 % _P
    d = 2 * z1 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _multiply(scalar: int, point: _Point) -> _Point:
    result = _IDENTITY
    for bit in bin(scalar)[2:]:
        result = _add(result, result)
        if bit == "1":
            result = _add(result, point)
    return result


def _is_identity(point: _Point) -> bool:
    x, y, z, _ = point
    return x % _P == 0 and (y - z) % _P == 0


def _decode_point(encoding: bytes) -> _Point | str:
    """RFC 8032 §5.1.3 decoding, strict: the point, or why the encoding is refused."""
    y = int.from_bytes(encoding, "little") & ((1 << 255) - 1)
    sign = encoding[31] >> 7
    if y >= _P:
        return "non-canonical encoding (y is not reduced modulo 2^255 - 19)"
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if v * x * x % _P == (-u) % _P:
        x = x * _SQRT_M1 % _P
    elif v * x * x % _P != u:
        return "not a point on the curve (x^2 has no square root)"
    if x == 0 and sign:
        return "non-canonical encoding (x = 0 with the sign bit set)"
    if x & 1 != sign:
        x = _P - x
    return (x, y, 1, x * y % _P)


@lru_cache(maxsize=1024)
def check_public_key(public_key: bytes) -> str | None:
    """Why ``public_key`` may not be registered as an Ed25519 key, or ``None`` when it may.

    The one place that says which keys the ledger takes in (genesis validators and governance
    admins; ``org.register`` admins, ``member.register`` and ``key.add`` keys). Refused: any
    length but 32 bytes; a non-canonical encoding (``y >= p``, or ``x = 0`` with the sign bit
    set); bytes that decode to no curve point; a point of small order (one of the 8 torsion
    points); a point with a small-order component (outside the prime-order subgroup). A key
    derived from a private key (``a·B``) is never refused.
    """
    if len(public_key) != 32:
        return f"an Ed25519 public key is 32 bytes, got {len(public_key)}"
    point = _decode_point(public_key)
    if isinstance(point, str):
        return point
    if _is_identity(_multiply(8, point)):
        return "a point of small order (one of the 8 torsion points)"
    if not _is_identity(_multiply(_L, point)):
        return "a point with a small-order component (outside the prime-order subgroup)"
    return None


def verify_public_key(public_key: bytes, what: str = "public key") -> bytes:
    """``public_key``, if :func:`check_public_key` accepts it.

    Raises:
        EncodingError: naming ``what`` and why the key is refused.
    """
    problem = check_public_key(public_key)
    if problem is not None:
        raise EncodingError(f"{what} is not an acceptable Ed25519 public key: {problem}")
    return public_key


def _refused_signature(signature: bytes) -> str | None:
    """Why a 64-byte signature is refused before OpenSSL looks at it, or ``None``.

    ``S >= L`` OpenSSL refuses too; it is checked here so that the policy does not rest on it.
    An ``R`` of small order OpenSSL accepts when the equation holds (only ``R`` = the identity
    can, with a registered key); libsodium and dalek's ``verify_strict`` refuse it, and so
    does the ledger, so that every signature it accepts is accepted by all of them.
    """
    if int.from_bytes(signature[32:], "little") >= _L:
        return "S is not reduced modulo the group order"
    if signature[:32] in SMALL_ORDER_ENCODINGS:
        return "R is a point of small order"
    return None


def public_key_bytes(private_key: Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key of a private key."""
    return private_key.public_key().public_bytes_raw()


def private_key_to_pem(private_key: Ed25519PrivateKey) -> bytes:
    """PEM PKCS#8 bytes of a private key (unencrypted; protect the file with mode 0600)."""
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_from_pem(data: bytes) -> Ed25519PrivateKey:
    """Load an unencrypted PEM PKCS#8 Ed25519 private key.

    Raises:
        EncodingError: not PEM, encrypted, or not an Ed25519 key.
    """
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise EncodingError(f"not an unencrypted PEM PKCS#8 private key: {e}") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise EncodingError(f"expected an Ed25519 private key, got {type(key).__name__}")
    return key


def sign(private_key: Ed25519PrivateKey, prefix: bytes, message: bytes) -> bytes:
    """Sign ``prefix + message``; ``message`` is canonical (JCS) bytes."""
    return private_key.sign(prefix + message)


@lru_cache(maxsize=4096)
def _load_public_key(public_key: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(public_key)


def verify_signature(public_key: bytes, prefix: bytes, message: bytes, signature: bytes) -> None:
    """Verify one Ed25519 signature over ``prefix + message`` under the ledger's policy.

    The signature is refused outright when :func:`_refused_signature` says so; OpenSSL checks the
    rest with the cofactorless equation (``docs/ed25519-policy.md``). The key is not checked
    here: :func:`check_public_key` vetted it when it was registered.

    Raises:
        SignatureError: the key or signature is malformed or the signature does not verify.
    """
    if len(public_key) != 32 or len(signature) != 64:
        raise SignatureError("malformed Ed25519 key or signature length")
    refused = _refused_signature(signature)
    if refused is not None:
        raise SignatureError(f"signature refused: {refused}")
    try:
        _load_public_key(public_key).verify(signature, prefix + message)
    except (InvalidSignature, ValueError) as e:
        raise SignatureError("signature does not verify") from e


SignatureJob = tuple[bytes, bytes, bytes]
"""``(public_key, signed_bytes, signature)``: one verification, picklable for a process pool."""


def verify_job(job: SignatureJob) -> bool:
    """True when one :data:`SignatureJob` verifies (``signed_bytes`` includes its prefix).

    The same policy as :func:`verify_signature`.
    """
    public_key, signed, signature = job
    if len(signature) != 64 or _refused_signature(signature) is not None:
        return False
    try:
        _load_public_key(public_key).verify(signature, signed)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_jobs(jobs: Sequence[SignatureJob]) -> list[bool]:
    """Verify a batch of jobs; a module-level function so a process pool can run it."""
    return [verify_job(job) for job in jobs]


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """Who signed, who did not, and whether the threshold is met.

    Attributes:
        signed_by: ids of known signers whose signature verifies, in the order given.
        missing: ids of known signers who did not sign (or whose signature failed).
        invalid: ids of known signers whose signature does not verify.
        unknown: signer ids that are not in the known set.
        duplicates: signer ids that appear more than once.
        threshold: how many valid signatures were needed.
    """

    signed_by: tuple[str, ...]
    missing: tuple[str, ...]
    invalid: tuple[str, ...]
    unknown: tuple[str, ...]
    duplicates: tuple[str, ...]
    threshold: int

    @property
    def ok(self) -> bool:
        """Threshold met, and no invalid, unknown or duplicated signature."""
        return (
            len(self.signed_by) >= self.threshold
            and not self.invalid
            and not self.unknown
            and not self.duplicates
        )

    def explain(self) -> str:
        """A one-line human explanation of why the check failed (or that it passed)."""
        parts = [f"{len(self.signed_by)} of {self.threshold} required signatures"]
        if self.invalid:
            parts.append("invalid signature by " + ", ".join(self.invalid))
        if self.unknown:
            parts.append("unknown signer " + ", ".join(self.unknown))
        if self.duplicates:
            parts.append("signed twice by " + ", ".join(self.duplicates))
        if len(self.signed_by) < self.threshold and self.missing:
            parts.append("missing " + ", ".join(self.missing))
        return "; ".join(parts)


def check_signatures(
    prefix: bytes,
    message: bytes,
    signatures: Iterable[tuple[str, bytes]],
    known: Mapping[str, bytes],
    threshold: int,
) -> SignatureCheck:
    """Check ``(signer_id, signature)`` pairs over ``prefix + message`` against known keys.

    Args:
        prefix: the domain-separation prefix of the purpose.
        message: the canonical bytes that were signed.
        signatures: ``(signer id, signature)`` pairs; the id is a key id or another name that
            ``known`` maps to a raw public key.
        known: signer id → raw 32-byte public key.
        threshold: how many distinct valid signatures are needed.
    """
    signed: list[str] = []
    invalid: list[str] = []
    unknown: list[str] = []
    duplicates: list[str] = []
    seen: set[str] = set()
    for signer, signature in signatures:
        if signer in seen:
            duplicates.append(signer)
            continue
        seen.add(signer)
        public_key = known.get(signer)
        if public_key is None:
            unknown.append(signer)
            continue
        try:
            verify_signature(public_key, prefix, message, signature)
        except SignatureError:
            invalid.append(signer)
        else:
            signed.append(signer)
    valid = set(signed)
    return SignatureCheck(
        signed_by=tuple(signed),
        missing=tuple(k for k in known if k not in valid),
        invalid=tuple(invalid),
        unknown=tuple(unknown),
        duplicates=tuple(duplicates),
        threshold=threshold,
    )


def verify_signatures(
    prefix: bytes,
    message: bytes,
    signatures: Iterable[tuple[str, bytes]],
    known: Mapping[str, bytes],
    threshold: int,
) -> SignatureCheck:
    """Like :func:`check_signatures`, but raise unless the check passes.

    Raises:
        SignatureError: threshold not met, or an invalid, unknown or duplicated signature.
    """
    result = check_signatures(prefix, message, signatures, known, threshold)
    if not result.ok:
        raise SignatureError(result.explain())
    return result
