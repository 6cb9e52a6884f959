"""Property tests of signatures and envelopes: round trips, and that no single flipped bit passes.

The envelope property is the one a ledger lives by: flip any bit of an envelope's JCS bytes and
the result either fails to parse, or names a different event that no known key signed, or still
carries the same event id with signatures over the very same body (JSON escapes such as
``\\u001f`` / ``\\u001F`` let different bytes spell one body; the id and the leaf, both computed
from canonical bytes, do not change). It never yields the same event id with a valid signature
over a different body.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.encoding import MAX_SAFE_INTEGER, canonical, canonical_reference
from ledger.errors import EncodingError, SignatureError
from ledger.events import Envelope, parse_envelope, sign_event
from ledger.keys import (
    EVENT_PREFIX,
    VOTE_PREFIX,
    check_signatures,
    key_id,
    public_key_bytes,
    sign,
    verify_signature,
)

seeds = st.binary(min_size=32, max_size=32)
prefixes = st.sampled_from([EVENT_PREFIX, VOTE_PREFIX])
messages = st.binary(min_size=1, max_size=300)


def _flip(data: bytes, bit: int) -> bytes:
    flipped = bytearray(data)
    flipped[bit // 8] ^= 1 << (bit % 8)
    return bytes(flipped)


@given(seeds, prefixes, st.binary(max_size=300))
def test_sign_verify_round_trip(seed: bytes, prefix: bytes, message: bytes) -> None:
    private_key = Ed25519PrivateKey.from_private_bytes(seed)
    public_key = public_key_bytes(private_key)
    signature = sign(private_key, prefix, message)
    assert len(signature) == 64
    verify_signature(public_key, prefix, message, signature)
    other = VOTE_PREFIX if prefix == EVENT_PREFIX else EVENT_PREFIX
    with pytest.raises(SignatureError):
        verify_signature(public_key, other, message, signature)
    kid = key_id(public_key)
    result = check_signatures(prefix, message, [(kid, signature)], {kid: public_key}, 1)
    assert result.ok
    assert result.signed_by == (kid,)


@settings(max_examples=200)
@given(
    seeds, prefixes, messages, st.sampled_from(["message", "signature", "public_key"]), st.data()
)
def test_any_flipped_bit_fails_verification(
    seed: bytes, prefix: bytes, message: bytes, target: str, data: st.DataObject
) -> None:
    private_key = Ed25519PrivateKey.from_private_bytes(seed)
    parts = {
        "message": message,
        "signature": sign(private_key, prefix, message),
        "public_key": public_key_bytes(private_key),
    }
    bit = data.draw(st.integers(0, 8 * len(parts[target]) - 1), label="bit")
    parts[target] = _flip(parts[target], bit)
    # pytest.raises lets any other exception through: SignatureError and nothing else.
    with pytest.raises(SignatureError):
        verify_signature(parts["public_key"], prefix, parts["message"], parts["signature"])


# --------------------------------------------------------------------------------------------
# Envelopes

SIGNERS = [Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32) for n in (11, 12, 13)]
KNOWN = {key_id(public_key_bytes(k)): public_key_bytes(k) for k in SIGNERS}

payload_text = st.text(
    st.one_of(
        st.characters(codec="utf-8", max_codepoint=0x7F),
        st.characters(max_codepoint=0x1F),  # escaped as \\u00XX or \\n etc. in JCS
        st.characters(codec="utf-8"),
    ),
    max_size=10,
)
coordinates = st.floats(min_value=-180, max_value=180).map(lambda x: round(x, 7))
points = st.lists(coordinates, min_size=2, max_size=2)
payload_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
        payload_text,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(payload_text, children, max_size=3)
    ),
    max_leaves=8,
)
bodies = st.fixed_dictionaries(
    {
        "v": st.just(1),
        "network": st.sampled_from(["kalbar-coop", "aceh-kopi"]),
        "type": st.sampled_from(["lot.create", "lot.ship", "member.register"]),
        "nonce": st.text(st.characters(codec="ascii", min_codepoint=0x21), min_size=1, max_size=64),
        "created_at": st.sampled_from(["2026-11-29T03:00:00Z", "2026-11-29T03:00:00.123Z"]),
        "payload": st.fixed_dictionaries(
            {},
            optional={
                # Floats appear in signed data only as GeoJSON coordinates (DESIGN.md §2).
                "geometry": st.fixed_dictionaries({"type": st.just("Point"), "coordinates": points})
            },
        ).flatmap(
            lambda fixed: st.dictionaries(payload_text, payload_values, max_size=4).map(
                lambda extra: {**extra, **fixed}
            )
        ),
    }
)
signer_sets = st.lists(st.sampled_from(SIGNERS), min_size=1, max_size=3, unique_by=id)


def _check_flipped(original: Envelope, mutated: bytes) -> str:
    """Assert the envelope property for one mutated byte string; say which way it went."""
    try:
        flipped = parse_envelope(mutated)
    except (EncodingError, SignatureError):
        return "refused"
    check = check_signatures(
        EVENT_PREFIX,
        flipped.body_bytes,
        [(s.key, s.sig) for s in flipped.sigs],
        KNOWN,
        threshold=len(original.sigs),
    )
    assert flipped.event_id == hashlib.sha256(flipped.body_bytes).hexdigest()
    if flipped.event_id != original.event_id:
        # A different event: no known key signed its body.
        assert check.signed_by == ()
        assert not check.ok
        return "other-event-unsigned"
    # The same id means the same canonical body (short of a SHA-256 collision) ...
    assert flipped.body_bytes == original.body_bytes
    assert canonical_reference(flipped.body) == original.body_bytes
    if check.ok:
        # ... and if the signatures still verify, it is the same event, leaf and all.
        assert flipped.sigs == original.sigs
        assert flipped.leaf == original.leaf
        return "same-event"
    return "same-body-bad-signature"


@settings(max_examples=150)
@given(bodies, signer_sets, st.data())
def test_flipped_envelope_bit_never_passes_as_another_body(
    body: dict[str, Any], signers: list[Ed25519PrivateKey], data: st.DataObject
) -> None:
    original = sign_event(body, signers)
    encoded = canonical(original.to_json())
    assert encoded == original.leaf
    bit = data.draw(st.integers(0, 8 * len(encoded) - 1), label="bit")
    _check_flipped(original, _flip(encoded, bit))


def test_every_flipped_bit_of_one_envelope() -> None:
    # Exhaustive over one envelope whose body holds control characters (escape malleability),
    # GeoJSON coordinates (floats), non-ASCII and astral text, signed by two keys.
    body = {
        "v": 1,
        "network": "kalbar-coop",
        "type": "lot.create",
        "nonce": "n-1",
        "created_at": "2026-11-29T03:00:00.123Z",
        "payload": {
            "note": "a\x1fb\x0b",
            "q": "12.5",
            "geometry": {"type": "Point", "coordinates": [109.3425411, -0.0261]},
            "\U0001f334": "\u00e9",
        },
    }
    original = sign_event(body, SIGNERS[:2])
    encoded = original.leaf
    outcomes: dict[str, int] = {}
    for bit in range(8 * len(encoded)):
        outcome = _check_flipped(original, _flip(encoded, bit))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    # Every branch of the property was exercised, so none of its assertions is vacuous.
    assert outcomes.keys() == {
        "refused",
        "other-event-unsigned",
        "same-event",
        "same-body-bad-signature",
    }, outcomes
    # "same-event" flips are exactly the case changes of hex digits in \\u001f / \\u000b escapes.
    assert outcomes["same-event"] == 2
