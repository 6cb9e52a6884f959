"""Event envelopes: structure, event ids, Merkle leaves and signing (DESIGN.md §3).

An envelope is ``{"body": {...}, "sigs": [{"key", "sig"}...]}``. The event id is
``sha256(JCS(body))``; the signed bytes are ``rantai-event-v1\\n + JCS(body)``; the Merkle leaf is
``JCS(envelope)`` with ``sigs`` sorted by ``key``. The body's canonical bytes are computed once,
when the envelope is parsed or built, and reused for the id, the signatures and the leaf.

This module checks the *shape* of an envelope. Whether the signers are registered and
authorised, and whether the payload makes sense, is the business of the ledger's rules.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.encoding import (
    MAX_SAFE_INTEGER,
    canonical,
    parse_hex,
    parse_json_checking_floats,
    parse_time,
    require_fields,
)
from ledger.errors import EncodingError, SignatureError
from ledger.keys import EVENT_PREFIX, SignatureJob, key_id, public_key_bytes, sign

__all__ = [
    "BODY_FIELDS",
    "MAX_EVENT_CLOCK_SKEW",
    "MAX_PAYLOAD_DEPTH",
    "MAX_SIGNATURES",
    "Envelope",
    "EventSignature",
    "parse_envelope",
    "sign_event",
]

MAX_EVENT_CLOCK_SKEW = _dt.timedelta(minutes=5)
"""How far an event's ``created_at`` may lie in the future of its block's time."""
BODY_FIELDS = frozenset({"v", "network", "type", "nonce", "created_at", "payload"})
MAX_SIGNATURES = 16
_MAX_NONCE = 64
_LOWER_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True, slots=True)
class EventSignature:
    """One signature of an event: the signer's key id and the 64-byte Ed25519 signature."""

    key: str
    sig: bytes

    def to_json(self) -> dict[str, str]:
        """The wire form ``{"key": hex, "sig": hex}``."""
        return {"key": self.key, "sig": self.sig.hex()}


@dataclass(frozen=True, slots=True)
class Envelope:
    """A signed event.

    Attributes:
        body: the parsed body (``v, network, type, nonce, created_at, payload``).
        sigs: the signatures, sorted by key id.
        body_bytes: ``JCS(body)``, computed once.
        event_id: ``sha256(body_bytes)`` in hex.
        created_at: ``body.created_at`` parsed (the signer's clock).
    """

    body: dict[str, Any]
    sigs: tuple[EventSignature, ...]
    body_bytes: bytes
    event_id: str
    created_at: _dt.datetime

    @property
    def type(self) -> str:
        """The event type, e.g. ``lot.create``."""
        return str(self.body["type"])

    @property
    def payload(self) -> dict[str, Any]:
        """The type-specific payload."""
        payload: dict[str, Any] = self.body["payload"]
        return payload

    @property
    def signed_bytes(self) -> bytes:
        """What every signature covers: ``rantai-event-v1\\n + JCS(body)``."""
        return EVENT_PREFIX + self.body_bytes

    @property
    def leaf(self) -> bytes:
        """The Merkle leaf: ``JCS(envelope)`` with ``sigs`` sorted by key.

        Built from the cached body bytes: JCS puts ``body`` before ``sigs`` and serialises a
        nested object exactly as it would on its own, so no re-canonicalisation is needed; a
        signature's members are lowercase hex, which JCS writes as is, ``key`` before ``sig``.
        """
        sigs = ",".join(f'{{"key":"{s.key}","sig":"{s.sig.hex()}"}}' for s in self.sigs)
        return b'{"body":' + self.body_bytes + b',"sigs":[' + sigs.encode() + b"]}"

    def to_json(self) -> dict[str, Any]:
        """The wire form of the envelope (signatures sorted by key)."""
        return {"body": self.body, "sigs": [s.to_json() for s in self.sigs]}

    def signature_jobs(self, public_keys: Sequence[bytes]) -> list[SignatureJob]:
        """Verification jobs for the signatures, given each signer's public key in order."""
        signed = self.signed_bytes
        return [(pk, signed, s.sig) for pk, s in zip(public_keys, self.sigs, strict=True)]


_ENVELOPE_FIELDS = frozenset({"body", "sigs"})
_SIG_FIELDS = frozenset({"key", "sig"})


def _check_body(body: dict[str, Any]) -> _dt.datetime:
    if type(body["v"]) is not int or body["v"] != 1:
        raise EncodingError(f"body.v must be 1, got {body['v']!r}")
    for name in ("network", "type"):
        if type(body[name]) is not str or not body[name]:
            raise EncodingError(f"body.{name} must be a non-empty string")
    nonce = body["nonce"]
    if type(nonce) is not str or not 1 <= len(nonce) <= _MAX_NONCE:
        raise EncodingError("body.nonce must be a string of 1 to 64 characters")
    if type(body["payload"]) is not dict:
        raise EncodingError("body.payload must be a JSON object")
    return parse_time(body["created_at"], "body.created_at")


MAX_PAYLOAD_DEPTH = 16
"""How deeply objects and lists may nest inside a payload."""


def _check_payload(value: Any, path: str, depth: int = 0) -> None:
    """Refuse deep nesting, and floats outside GeoJSON coordinates (DESIGN.md §2)."""
    if depth > MAX_PAYLOAD_DEPTH:
        raise EncodingError(f"{path}: nested more than {MAX_PAYLOAD_DEPTH} levels deep")
    if isinstance(value, float):
        raise EncodingError(
            f"{path}: a number with a fraction is not allowed in signed data; quantities and "
            "areas are decimal strings like '12.5'"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "coordinates" and path.endswith(".geometry"):
                _check_coordinates(item, f"{path}.{key}", depth + 1)
            else:
                _check_payload(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list | tuple):
        for position, item in enumerate(value):
            _check_payload(item, f"{path}[{position}]", depth + 1)


def _check_coordinates(value: Any, path: str, depth: int) -> None:
    """GeoJSON coordinates: nested lists of numbers whose canonical form parses back."""
    if depth > MAX_PAYLOAD_DEPTH:
        raise EncodingError(f"{path}: nested more than {MAX_PAYLOAD_DEPTH} levels deep")
    if isinstance(value, list | tuple):
        for position, item in enumerate(value):
            _check_coordinates(item, f"{path}[{position}]", depth + 1)
    elif isinstance(value, float) and not abs(value) <= MAX_SAFE_INTEGER:
        raise EncodingError(f"{path}: coordinate {value!r} is out of range")


def _parse_signature(raw: Any, position: int) -> EventSignature:
    """One ``{"key", "sig"}`` entry (error messages are built only when there is an error)."""
    if type(raw) is not dict or raw.keys() != _SIG_FIELDS:
        require_fields(raw, _SIG_FIELDS, f"envelope.sigs[{position}]")
    key, sig = raw["key"], raw["sig"]
    if type(key) is not str or len(key) != 64 or _LOWER_HEX.fullmatch(key) is None:
        parse_hex(key, 32, f"envelope.sigs[{position}].key")
    if type(sig) is not str or len(sig) != 128 or _LOWER_HEX.fullmatch(sig) is None:
        parse_hex(sig, 64, f"envelope.sigs[{position}].sig")
    return EventSignature(key, bytes.fromhex(sig))


def parse_envelope(value: Any, *, parsed_without_floats: bool = False) -> Envelope:
    """Check the shape of an envelope and compute its id.

    Args:
        value: a parsed JSON value, or the envelope's JSON bytes/text.
        parsed_without_floats: see :func:`ledger.encoding.canonical`.

    Raises:
        EncodingError: malformed JSON, missing or unknown fields, wrong types, bad hex.
        SignatureError: no signature, too many, or two by one key.
    """
    if isinstance(value, bytes | bytearray | str):
        value, has_floats = parse_json_checking_floats(value)
        parsed_without_floats = not has_floats
    envelope = require_fields(value, _ENVELOPE_FIELDS, "envelope")
    body = require_fields(envelope["body"], BODY_FIELDS, "envelope.body")
    created_at = _check_body(body)
    raw_sigs = envelope["sigs"]
    if type(raw_sigs) is not list:
        raise EncodingError("envelope.sigs must be a list")
    if not raw_sigs:
        raise SignatureError("an event needs at least one signature")
    if len(raw_sigs) > MAX_SIGNATURES:
        raise SignatureError(f"an event carries at most {MAX_SIGNATURES} signatures")
    sigs = [_parse_signature(raw, position) for position, raw in enumerate(raw_sigs)]
    if len(sigs) > 1:
        sigs.sort(key=lambda s: s.key)
        for first, second in itertools.pairwise(sigs):
            if first.key == second.key:
                raise SignatureError(f"key {first.key} signed the event twice")
    payload = body["payload"]
    flat = parsed_without_floats and all(type(v) is str for v in payload.values())
    if not flat:  # a flat payload of strings has nothing nested and no float to look at
        _check_payload(payload, "body.payload")
    body_bytes = canonical(body, parsed_without_floats=parsed_without_floats)
    return Envelope(
        body, tuple(sigs), body_bytes, hashlib.sha256(body_bytes).hexdigest(), created_at
    )


def sign_event(body: dict[str, Any], private_keys: Sequence[Ed25519PrivateKey]) -> Envelope:
    """Build and sign an envelope with one or more keys.

    Raises:
        EncodingError: the body is malformed.
        SignatureError: no keys, or the same key twice.
    """
    body_bytes = canonical(body)
    sigs = [
        {"key": key_id(public_key_bytes(k)), "sig": sign(k, EVENT_PREFIX, body_bytes).hex()}
        for k in private_keys
    ]
    return parse_envelope({"body": body, "sigs": sigs})
