"""Ed25519 keys, key ids, domain-separated signatures and threshold checks (DESIGN.md §2).

Every Rantai signature is over ``PREFIX + message`` where the prefix names the purpose
(``rantai-event-v1\\n``, ``rantai-vote-v1\\n``), so a signature made for one purpose never verifies
for another. Key ids are ``sha256(raw public key)`` in lowercase hex.

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
    "VOTE_PREFIX",
    "SignatureCheck",
    "SignatureJob",
    "check_signatures",
    "key_id",
    "private_key_from_pem",
    "private_key_to_pem",
    "public_key_bytes",
    "sign",
    "verify_job",
    "verify_jobs",
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
    """Verify one Ed25519 signature over ``prefix + message``.

    Raises:
        SignatureError: the key or signature is malformed or the signature does not verify.
    """
    if len(public_key) != 32 or len(signature) != 64:
        raise SignatureError("malformed Ed25519 key or signature length")
    try:
        _load_public_key(public_key).verify(signature, prefix + message)
    except (InvalidSignature, ValueError) as e:
        raise SignatureError("signature does not verify") from e


SignatureJob = tuple[bytes, bytes, bytes]
"""``(public_key, signed_bytes, signature)``: one verification, picklable for a process pool."""


def verify_job(job: SignatureJob) -> bool:
    """True when one :data:`SignatureJob` verifies (``signed_bytes`` includes its prefix)."""
    public_key, signed, signature = job
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
