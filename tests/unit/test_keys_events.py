"""Unit tests of ledger.keys (key ids, PEM, signatures, thresholds) and ledger.events (envelopes).

Known answers: RFC 8032 §7.1 TEST 1 and TEST 2 (Ed25519 key pairs and signatures); key ids were
computed independently with coreutils (``xxd -r -p | sha256sum``) and are checked again here with
hashlib. Leaves and event ids are recomputed with the ``rfc8785`` reference, not with the code
under test.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.encoding import canonical, canonical_reference
from ledger.errors import EncodingError, SignatureError
from ledger.events import BODY_FIELDS, MAX_SIGNATURES, Envelope, parse_envelope, sign_event
from ledger.keys import (
    EVENT_PREFIX,
    VOTE_PREFIX,
    SignatureCheck,
    check_signatures,
    key_id,
    private_key_from_pem,
    private_key_to_pem,
    public_key_bytes,
    sign,
    verify_job,
    verify_jobs,
    verify_signature,
    verify_signatures,
)

# RFC 8032 §7.1, TEST 1 (empty message) and TEST 2 (message 0x72).
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        b"",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        "21fe31dfa154a261626bf854046fd2271b7bed4b6abe45aa58877ef47f9721b9",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        b"\x72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
        "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        "39f713d0a644253f04529421b9f51b9b08979d08295959c4f3990ee617f5139f",
    ),
]


def make_key(n: int) -> Ed25519PrivateKey:
    """A deterministic test key (seed = n repeated)."""
    return Ed25519PrivateKey.from_private_bytes(bytes([n]) * 32)


KEYS = [make_key(n) for n in range(1, 6)]
PUBS = [public_key_bytes(k) for k in KEYS]
IDS = [key_id(p) for p in PUBS]

# --------------------------------------------------------------------------------------------
# Keys


@pytest.mark.parametrize(
    ("secret", "public", "message", "signature", "kid"),
    [pytest.param(*row, id=f"rfc8032-test-{i}") for i, row in enumerate(RFC8032, 1)],
)
def test_rfc8032_known_answers(
    secret: str, public: str, message: bytes, signature: str, kid: str
) -> None:
    private_key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(secret))
    assert public_key_bytes(private_key) == bytes.fromhex(public)
    assert key_id(bytes.fromhex(public)) == kid
    assert kid == hashlib.sha256(bytes.fromhex(public)).hexdigest()
    # An empty prefix makes sign/verify plain Ed25519, so the RFC's signatures apply.
    assert sign(private_key, b"", message) == bytes.fromhex(signature)
    verify_signature(bytes.fromhex(public), b"", message, bytes.fromhex(signature))


def test_signatures_cover_prefix_then_message() -> None:
    message = b'{"a":1}'
    signature = sign(KEYS[0], EVENT_PREFIX, message)
    assert signature == KEYS[0].sign(b"rantai-event-v1\n" + message)
    assert verify_job((PUBS[0], EVENT_PREFIX + message, signature))
    assert not verify_job((PUBS[0], message, signature))
    assert verify_jobs(
        [(PUBS[0], EVENT_PREFIX + message, signature), (PUBS[1], b"", bytes(64))]
    ) == [
        True,
        False,
    ]


def test_prefixes_are_distinct_ascii_lines() -> None:
    assert EVENT_PREFIX == b"rantai-event-v1\n"
    assert VOTE_PREFIX == b"rantai-vote-v1\n"
    # Neither is a prefix of the other, so no message can be read under both purposes.
    assert not EVENT_PREFIX.startswith(VOTE_PREFIX)
    assert not VOTE_PREFIX.startswith(EVENT_PREFIX)


@pytest.mark.parametrize("size", [0, 31, 33, 64], ids=lambda n: f"{n}-bytes")
def test_key_id_rejects_wrong_length(size: int) -> None:
    with pytest.raises(EncodingError):
        key_id(bytes(size))


def test_pem_pkcs8_round_trip() -> None:
    pem = private_key_to_pem(KEYS[0])
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")  # PKCS#8, unencrypted
    assert pem.rstrip().endswith(b"-----END PRIVATE KEY-----")
    loaded = private_key_from_pem(pem)
    assert public_key_bytes(loaded) == PUBS[0]
    assert loaded.private_bytes_raw() == KEYS[0].private_bytes_raw()
    assert private_key_to_pem(loaded) == pem


def _pem(key: Any, fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8) -> bytes:
    pem: bytes = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    return pem


def _rsa_pem() -> bytes:
    return _pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))


def _ec_pem() -> bytes:
    return _pem(ec.generate_private_key(ec.SECP256R1()))


def _ec_traditional_pem() -> bytes:
    return _pem(
        ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.TraditionalOpenSSL
    )


def _encrypted_pem() -> bytes:
    return KEYS[0].private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"correct horse"),
    )


def _openssh_pem() -> bytes:
    return _pem(KEYS[0], serialization.PrivateFormat.OpenSSH)


def _public_key_pem() -> bytes:
    return (
        KEYS[0]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _corrupted_pem() -> bytes:
    lines = private_key_to_pem(KEYS[0]).splitlines(keepends=True)
    body = lines[1]
    lines[1] = body[:5] + (b"A" if body[5:6] != b"A" else b"B") + body[6:]
    return b"".join(lines)


# A throwaway PKCS#8 key on secp112r1, a curve cryptography does not support
# (`openssl ecparam -name secp112r1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt`): loading it
# raises cryptography's UnsupportedAlgorithm, which must surface as an EncodingError.
UNSUPPORTED_CURVE_PEM = b"""-----BEGIN PRIVATE KEY-----
ME4CAQAwEAYHKoZIzj0CAQYFK4EEAAYENzA1AgEBBA6KIdbldqQisBB4E1wO0aEg
Ax4ABMGsdYiAS+g84wxrZF0q2WB/vYuuEWfntsZsqSQ=
-----END PRIVATE KEY-----
"""


def _truncated_pem() -> bytes:
    return private_key_to_pem(KEYS[0])[:60]


@pytest.mark.parametrize(
    "make_pem",
    [
        pytest.param(lambda: b"", id="empty"),
        pytest.param(lambda: b"not a pem at all", id="garbage"),
        pytest.param(lambda: b"\x00\xff" * 40, id="binary-garbage"),
        pytest.param(lambda: KEYS[0].private_bytes_raw(), id="raw-seed"),
        pytest.param(_truncated_pem, id="truncated"),
        pytest.param(_corrupted_pem, id="corrupted-base64"),
        pytest.param(_public_key_pem, id="public-key-pem"),
        pytest.param(_encrypted_pem, id="encrypted-pkcs8"),
        pytest.param(_openssh_pem, id="openssh-format"),
        pytest.param(_rsa_pem, id="rsa-key"),
        pytest.param(_ec_pem, id="ec-p256-key"),
        pytest.param(_ec_traditional_pem, id="ec-traditional-format"),
        pytest.param(lambda: _pem(ed448.Ed448PrivateKey.generate()), id="ed448-key"),
        pytest.param(lambda: _pem(x25519.X25519PrivateKey.generate()), id="x25519-key"),
        pytest.param(lambda: UNSUPPORTED_CURVE_PEM, id="ec-unsupported-curve"),
        pytest.param(lambda: private_key_to_pem(KEYS[0]).decode(), id="text-not-bytes"),
    ],
)
def test_private_key_from_pem_rejects(make_pem: Callable[[], Any]) -> None:
    with pytest.raises(EncodingError):
        private_key_from_pem(make_pem())


# --------------------------------------------------------------------------------------------
# Thresholds: check_signatures / verify_signatures

MESSAGE = b'{"height":7,"type":"precommit"}'
KNOWN = {IDS[i]: PUBS[i] for i in range(4)}  # four known signers: A, B, C, D
A, B, C, D, X = IDS  # X is not known


def good(i: int) -> tuple[str, bytes]:
    return IDS[i], sign(KEYS[i], EVENT_PREFIX, MESSAGE)


def over_other_message(i: int) -> tuple[str, bytes]:
    return IDS[i], sign(KEYS[i], EVENT_PREFIX, MESSAGE + b" ")


THRESHOLD_CASES = [
    # id, signatures, threshold, ok, signed_by, missing, invalid, unknown, duplicates
    ("exactly-enough", [good(0), good(1)], 2, True, (A, B), (C, D), (), (), ()),
    ("all-of-four", [good(3), good(1), good(0), good(2)], 3, True, (D, B, A, C), (), (), (), ()),
    ("one-of-one-needed", [good(2)], 1, True, (C,), (A, B, D), (), (), ()),
    ("too-few", [good(0)], 2, False, (A,), (B, C, D), (), (), ()),
    ("none", [], 1, False, (), (A, B, C, D), (), (), ()),
    (
        "invalid-from-known-key-threshold-met",
        [good(0), good(1), over_other_message(2)],
        2,
        False,
        (A, B),
        (C, D),
        (C,),
        (),
        (),
    ),
    (
        "signature-of-other-signer",
        [good(0), (B, sign(KEYS[2], EVENT_PREFIX, MESSAGE))],
        1,
        False,
        (A,),
        (B, C, D),
        (B,),
        (),
        (),
    ),
    (
        "truncated-signature",
        [good(0), (B, good(1)[1][:63])],
        1,
        False,
        (A,),
        (B, C, D),
        (B,),
        (),
        (),
    ),
    (
        "vote-prefix-signature",
        [good(0), (B, sign(KEYS[1], VOTE_PREFIX, MESSAGE))],
        1,
        False,
        (A,),
        (B, C, D),
        (B,),
        (),
        (),
    ),
    ("unknown-signer", [good(0), good(4)], 1, False, (A,), (B, C, D), (), (X,), ()),
    ("duplicate-signer", [good(0), good(0)], 1, False, (A,), (B, C, D), (), (), (A,)),
    (
        "duplicate-counted-once",
        [good(0), good(0), good(0)],
        2,
        False,
        (A,),
        (B, C, D),
        (),
        (),
        (A, A),
    ),
    (
        "duplicate-with-bad-second",
        [good(1), over_other_message(1)],
        1,
        False,
        (B,),
        (A, C, D),
        (),
        (),
        (B,),
    ),
]


@pytest.mark.parametrize(
    ("signatures", "threshold", "ok", "signed_by", "missing", "invalid", "unknown", "duplicates"),
    [pytest.param(*case[1:], id=case[0]) for case in THRESHOLD_CASES],
)
def test_check_signatures(
    signatures: list[tuple[str, bytes]],
    threshold: int,
    ok: bool,
    signed_by: tuple[str, ...],
    missing: tuple[str, ...],
    invalid: tuple[str, ...],
    unknown: tuple[str, ...],
    duplicates: tuple[str, ...],
) -> None:
    result = check_signatures(EVENT_PREFIX, MESSAGE, signatures, KNOWN, threshold)
    assert result == SignatureCheck(signed_by, missing, invalid, unknown, duplicates, threshold)
    assert result.ok is ok

    explanation = result.explain()
    assert f"{len(signed_by)} of {threshold} required signatures" in explanation
    for name in (*invalid, *unknown, *duplicates):
        assert name in explanation
    if invalid:
        assert "invalid signature by" in explanation
    if unknown:
        assert "unknown signer" in explanation
    if duplicates:
        assert "signed twice by" in explanation
    if len(signed_by) < threshold:
        assert "missing" in explanation
        for name in missing:
            assert name in explanation
    else:
        assert "missing" not in explanation

    if ok:
        assert verify_signatures(EVENT_PREFIX, MESSAGE, signatures, KNOWN, threshold) == result
    else:
        with pytest.raises(SignatureError) as raised:
            verify_signatures(EVENT_PREFIX, MESSAGE, signatures, KNOWN, threshold)
        assert str(raised.value) == explanation


def test_check_signatures_accepts_names_as_signer_ids() -> None:
    known = {"node-1.kalbar-coop": PUBS[0], "node-2.kalbar-coop": PUBS[1]}
    signatures = [("node-2.kalbar-coop", sign(KEYS[1], VOTE_PREFIX, MESSAGE))]
    result = check_signatures(VOTE_PREFIX, MESSAGE, signatures, known, 1)
    assert result.ok
    assert result.signed_by == ("node-2.kalbar-coop",)
    assert result.missing == ("node-1.kalbar-coop",)


# --------------------------------------------------------------------------------------------
# Domain separation


@pytest.mark.parametrize(
    ("signed_with", "verified_with"),
    [
        pytest.param(EVENT_PREFIX, VOTE_PREFIX, id="event-sig-as-vote"),
        pytest.param(VOTE_PREFIX, EVENT_PREFIX, id="vote-sig-as-event"),
        pytest.param(EVENT_PREFIX, b"", id="event-sig-without-prefix"),
        pytest.param(b"", VOTE_PREFIX, id="bare-sig-as-vote"),
    ],
)
def test_domain_separation(signed_with: bytes, verified_with: bytes) -> None:
    signature = sign(KEYS[0], signed_with, MESSAGE)
    verify_signature(PUBS[0], signed_with, MESSAGE, signature)
    with pytest.raises(SignatureError):
        verify_signature(PUBS[0], verified_with, MESSAGE, signature)
    result = check_signatures(verified_with, MESSAGE, [(IDS[0], signature)], {IDS[0]: PUBS[0]}, 1)
    assert not result.ok
    assert result.invalid == (IDS[0],)


@pytest.mark.parametrize(
    ("public_key", "signature"),
    [
        pytest.param(PUBS[0][:31], sign(KEYS[0], EVENT_PREFIX, MESSAGE), id="short-key"),
        pytest.param(PUBS[0] + b"\x00", sign(KEYS[0], EVENT_PREFIX, MESSAGE), id="long-key"),
        pytest.param(PUBS[0], sign(KEYS[0], EVENT_PREFIX, MESSAGE)[:63], id="short-signature"),
        pytest.param(PUBS[0], sign(KEYS[0], EVENT_PREFIX, MESSAGE) + b"\x00", id="long-signature"),
        pytest.param(PUBS[0], bytes(64), id="zero-signature"),
        pytest.param(PUBS[1], sign(KEYS[0], EVENT_PREFIX, MESSAGE), id="other-key"),
        pytest.param(bytes(32), sign(KEYS[0], EVENT_PREFIX, MESSAGE), id="zero-key"),
        pytest.param(b"\xff" * 32, sign(KEYS[0], EVENT_PREFIX, MESSAGE), id="non-canonical-key"),
    ],
)
def test_verify_signature_rejects(public_key: bytes, signature: bytes) -> None:
    with pytest.raises(SignatureError):
        verify_signature(public_key, EVENT_PREFIX, MESSAGE, signature)
    assert not verify_job((public_key, EVENT_PREFIX + MESSAGE, signature))


# --------------------------------------------------------------------------------------------
# Envelopes

BODY: dict[str, Any] = {
    "v": 1,
    "network": "kalbar-coop",
    "type": "lot.create",
    "nonce": "6f1c2a52",
    "created_at": "2026-11-29T03:00:00Z",
    "payload": {
        "lot_id": "LOT-2026-0001",
        "commodity": "ffb",
        "quantity": "1250.5",
        "uom": "kg",
        "producer": "koperasi-sawit/m-017",
        "harvested_on": "2026-11-28",
    },
}
ENVELOPE = sign_event(BODY, [KEYS[0]]).to_json()


def _sig(i: int, body: dict[str, Any] = BODY) -> dict[str, str]:
    return {"key": IDS[i], "sig": sign(KEYS[i], EVENT_PREFIX, canonical_reference(body)).hex()}


def _mutated(change: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    envelope = copy.deepcopy(ENVELOPE)
    change(envelope)
    return envelope


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(envelope: dict[str, Any]) -> None:
        target = envelope
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return change


def _delete(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def change(envelope: dict[str, Any]) -> None:
        target = envelope
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return change


SIG = ENVELOPE["sigs"][0]
SEVENTEEN_SIGS = [{"key": f"{i:064x}", "sig": "ab" * 64} for i in range(MAX_SIGNATURES + 1)]

REJECTED_ENVELOPES: list[Any] = [
    # (id, input, error class)
    ("list", [], EncodingError),
    ("int", 1, EncodingError),
    ("none", None, EncodingError),
    ("missing-body", _mutated(_delete(("body",))), EncodingError),
    ("missing-sigs", _mutated(_delete(("sigs",))), EncodingError),
    ("extra-top-level-field", _mutated(_set(("id",), "x")), EncodingError),
    ("body-not-object", _mutated(_set(("body",), [BODY])), EncodingError),
    *[
        (f"missing-body-{f}", _mutated(_delete(("body", f))), EncodingError)
        for f in sorted(BODY_FIELDS)
    ],
    ("extra-body-field", _mutated(_set(("body", "extra"), 1)), EncodingError),
    ("v-2", _mutated(_set(("body", "v"), 2)), EncodingError),
    ("v-0", _mutated(_set(("body", "v"), 0)), EncodingError),
    ("v-true", _mutated(_set(("body", "v"), True)), EncodingError),
    ("v-string", _mutated(_set(("body", "v"), "1")), EncodingError),
    ("v-float", _mutated(_set(("body", "v"), 1.0)), EncodingError),
    ("network-empty", _mutated(_set(("body", "network"), "")), EncodingError),
    ("network-not-string", _mutated(_set(("body", "network"), 7)), EncodingError),
    ("type-empty", _mutated(_set(("body", "type"), "")), EncodingError),
    ("type-null", _mutated(_set(("body", "type"), None)), EncodingError),
    ("nonce-empty", _mutated(_set(("body", "nonce"), "")), EncodingError),
    ("nonce-65-chars", _mutated(_set(("body", "nonce"), "n" * 65)), EncodingError),
    ("nonce-int", _mutated(_set(("body", "nonce"), 5)), EncodingError),
    (
        "created-at-space",
        _mutated(_set(("body", "created_at"), "2026-11-29 03:00:00Z")),
        EncodingError,
    ),
    (
        "created-at-offset",
        _mutated(_set(("body", "created_at"), "2026-11-29T03:00:00+00:00")),
        EncodingError,
    ),
    (
        "created-at-impossible",
        _mutated(_set(("body", "created_at"), "2026-02-30T00:00:00Z")),
        EncodingError,
    ),
    ("created-at-int", _mutated(_set(("body", "created_at"), 1764385200)), EncodingError),
    ("payload-list", _mutated(_set(("body", "payload"), [])), EncodingError),
    ("payload-string", _mutated(_set(("body", "payload"), "{}")), EncodingError),
    ("payload-null", _mutated(_set(("body", "payload"), None)), EncodingError),
    ("payload-unsafe-int", _mutated(_set(("body", "payload", "n"), 2**53)), EncodingError),
    ("payload-nan", _mutated(_set(("body", "payload", "n"), float("nan"))), EncodingError),
    ("sigs-object", _mutated(_set(("sigs",), SIG)), EncodingError),
    ("sigs-string", _mutated(_set(("sigs",), "sig")), EncodingError),
    ("sigs-null", _mutated(_set(("sigs",), None)), EncodingError),
    ("sigs-empty", _mutated(_set(("sigs",), [])), SignatureError),
    ("sigs-17", _mutated(_set(("sigs",), SEVENTEEN_SIGS)), SignatureError),
    ("sig-entry-string", _mutated(_set(("sigs",), ["ab" * 64])), EncodingError),
    ("sig-entry-extra-field", _mutated(_set(("sigs", 0, "alg"), "ed25519")), EncodingError),
    ("sig-entry-missing-sig", _mutated(_delete(("sigs", 0, "sig"))), EncodingError),
    ("sig-entry-missing-key", _mutated(_delete(("sigs", 0, "key"))), EncodingError),
    ("key-uppercase", _mutated(_set(("sigs", 0, "key"), SIG["key"].upper())), EncodingError),
    ("key-63-chars", _mutated(_set(("sigs", 0, "key"), SIG["key"][:63])), EncodingError),
    ("key-not-string", _mutated(_set(("sigs", 0, "key"), 1)), EncodingError),
    ("sig-126-chars", _mutated(_set(("sigs", 0, "sig"), SIG["sig"][:126])), EncodingError),
    ("sig-130-chars", _mutated(_set(("sigs", 0, "sig"), SIG["sig"] + "00")), EncodingError),
    ("sig-odd-length", _mutated(_set(("sigs", 0, "sig"), SIG["sig"][:127])), EncodingError),
    ("sig-uppercase", _mutated(_set(("sigs", 0, "sig"), SIG["sig"].upper())), EncodingError),
    ("sig-not-hex", _mutated(_set(("sigs", 0, "sig"), "zz" * 64)), EncodingError),
    ("same-key-twice", _mutated(_set(("sigs",), [SIG, SIG])), SignatureError),
    (
        "same-key-twice-different-sigs",
        _mutated(_set(("sigs",), [SIG, {"key": SIG["key"], "sig": "00" * 64}])),
        SignatureError,
    ),
    ("json-malformed", b'{"body":', EncodingError),
    ("json-invalid-utf8", b'{"body":\xff}', EncodingError),
    ("json-text-malformed", "{'body': {}}", EncodingError),
    ("json-trailing-garbage", canonical(ENVELOPE) + b"x", EncodingError),
    (
        "json-duplicate-body",
        b'{"body":' + canonical(BODY) + b',"body":' + canonical(BODY) + b',"sigs":[]}',
        EncodingError,
    ),
    (
        "json-duplicate-payload-field",
        canonical(ENVELOPE).replace(b'"commodity":"ffb"', b'"commodity":"ffb","commodity":"cpo"'),
        EncodingError,
    ),
    (
        "json-lone-surrogate-in-payload",
        canonical(ENVELOPE).replace(b'"uom":"kg"', b'"uom":"\\ud800"'),
        EncodingError,
    ),
    ("float-quantity", _mutated(_set(("body", "payload", "quantity"), 12.5)), EncodingError),
    (
        "float-nested-in-payload",
        _mutated(_set(("body", "payload", "extra"), {"list": [1, 2.5]})),
        EncodingError,
    ),
    (
        "float-coordinates-outside-geometry",
        _mutated(_set(("body", "payload", "coordinates"), [109.1, -0.1])),
        EncodingError,
    ),
    (
        "json-float-in-payload",
        canonical(ENVELOPE).replace(b'"uom":"kg"', b'"uom":1.5'),
        EncodingError,
    ),
    (
        "json-unsafe-int-in-payload",
        canonical(ENVELOPE).replace(b'"uom":"kg"', b'"uom":9007199254740992'),
        EncodingError,
    ),
]


@pytest.mark.parametrize(
    ("value", "error"), [pytest.param(v, e, id=name) for name, v, e in REJECTED_ENVELOPES]
)
def test_parse_envelope_rejects(value: Any, error: type[Exception]) -> None:
    # pytest.raises(EncodingError) would also accept a SignatureError subclass if there were one;
    # the exact class is pinned so the API maps each to the right problem type.
    with pytest.raises((EncodingError, SignatureError)) as raised:
        parse_envelope(value)
    assert type(raised.value) is error


def test_base_of_the_rejection_table_is_valid() -> None:
    # Each rejected case is one change away from this envelope, which parses and verifies.
    envelope = parse_envelope(ENVELOPE)
    (signature,) = envelope.sigs
    assert signature.key == IDS[0]
    verify_signature(PUBS[0], EVENT_PREFIX, envelope.body_bytes, signature.sig)


def test_geojson_coordinates_are_the_only_floats_in_signed_data() -> None:
    geometry = {"type": "Point", "coordinates": [109.3425121, -0.0261234]}
    body = {**BODY, "type": "plot.register", "payload": {"geometry": geometry}}
    envelope = parse_envelope({"body": body, "sigs": ENVELOPE["sigs"]})
    assert envelope.body_bytes == canonical_reference(body)
    assert b"[109.3425121,-0.0261234]" in envelope.body_bytes
    polygon = {"type": "Polygon", "coordinates": [[[109.1, -0.1], [109.2, -0.1], [109.1, -0.1]]]}
    body = {**BODY, "payload": {"geometry": polygon}}
    assert parse_envelope(canonical({"body": body, "sigs": ENVELOPE["sigs"]})).body == body


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(ENVELOPE, id="object"),
        pytest.param(canonical(ENVELOPE), id="jcs-bytes"),
        pytest.param(bytearray(canonical(ENVELOPE)), id="bytearray"),
        pytest.param(canonical(ENVELOPE).decode(), id="text"),
        pytest.param(
            b' {\n "sigs" : '
            + canonical(ENVELOPE["sigs"])
            + b', "body":'
            + canonical(BODY)
            + b"}\n",
            id="bytes-unordered-with-whitespace",
        ),
    ],
)
def test_parse_envelope_accepts_every_form(value: Any) -> None:
    envelope = parse_envelope(value)
    assert envelope.event_id == hashlib.sha256(canonical_reference(BODY)).hexdigest()
    assert envelope.body == BODY
    assert envelope.type == "lot.create"
    assert envelope.payload == BODY["payload"]
    assert envelope.created_at.isoformat() == "2026-11-29T03:00:00+00:00"


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_set(("body", "nonce"), "n" * 64), id="nonce-64-chars"),
        pytest.param(_set(("body", "nonce"), "x"), id="nonce-1-char"),
        pytest.param(_set(("body", "created_at"), "2026-11-29T03:00:00.123Z"), id="milliseconds"),
        pytest.param(_set(("body", "payload"), {}), id="empty-payload"),
        pytest.param(
            _set(
                ("sigs",), [{"key": f"{i:064x}", "sig": "ab" * 64} for i in range(MAX_SIGNATURES)]
            ),
            id="16-sigs",
        ),
    ],
)
def test_parse_envelope_accepts_boundaries(change: Callable[[dict[str, Any]], None]) -> None:
    envelope = _mutated(change)
    parsed = parse_envelope(envelope)
    assert parsed.event_id == hashlib.sha256(canonical_reference(envelope["body"])).hexdigest()
    assert len(parsed.sigs) == len(envelope["sigs"])


def _reference_leaf(body: dict[str, Any], sigs: list[dict[str, str]]) -> bytes:
    return canonical_reference({"body": body, "sigs": sorted(sigs, key=lambda s: s["key"])})


BODIES = [
    pytest.param(BODY, id="ascii-body"),
    pytest.param(
        {
            **BODY,
            "type": "plot.register",
            "payload": {
                "plot_id": "PLOT-\u00e9-\U0001f334",
                "member_id": "koperasi-sawit/m-017",
                "commodity": "ffb",
                "area_ha": "2.5",
                "geometry": {"type": "Point", "coordinates": [109.3425411, -0.0263303]},
                "\ue000note": "private-use key sorts after astral keys: \U00010000",
                "\U00010000": '\x1f\u2028"\\',
            },
        },
        id="floats-astral-and-controls",
    ),
]


@pytest.mark.parametrize("body", BODIES)
def test_leaf_and_event_id_against_reference(body: dict[str, Any]) -> None:
    sigs = [_sig(2, body), _sig(0, body), _sig(1, body)]
    envelope = parse_envelope({"body": body, "sigs": sigs})
    assert envelope.body_bytes == canonical_reference(body)
    assert envelope.event_id == hashlib.sha256(canonical_reference(body)).hexdigest()
    assert envelope.leaf == _reference_leaf(body, sigs)
    assert envelope.leaf == canonical_reference(envelope.to_json())
    assert [s.key for s in envelope.sigs] == sorted(s["key"] for s in sigs)
    # The order of the signatures in the input changes neither the leaf nor the id.
    for order in ([0, 1, 2], [2, 0, 1], [1, 2, 0]):
        again = parse_envelope({"body": body, "sigs": [sigs[i] for i in order]})
        assert again.leaf == envelope.leaf
        assert again.event_id == envelope.event_id
        assert again.sigs == envelope.sigs
    # Parsing the JCS bytes of the wire form gives the same envelope.
    from_bytes = parse_envelope(canonical_reference({"body": body, "sigs": sigs}))
    assert from_bytes.leaf == envelope.leaf
    assert from_bytes.event_id == envelope.event_id


@pytest.mark.parametrize("body", BODIES)
def test_sign_event_with_two_keys(body: dict[str, Any]) -> None:
    envelope = sign_event(body, [KEYS[3], KEYS[1]])
    assert isinstance(envelope, Envelope)
    assert envelope.signed_bytes == EVENT_PREFIX + canonical_reference(body)
    assert {s.key for s in envelope.sigs} == {IDS[1], IDS[3]}
    public = {IDS[1]: PUBS[1], IDS[3]: PUBS[3]}
    for signature in envelope.sigs:
        verify_signature(public[signature.key], EVENT_PREFIX, envelope.body_bytes, signature.sig)
        with pytest.raises(SignatureError):
            verify_signature(public[signature.key], VOTE_PREFIX, envelope.body_bytes, signature.sig)
    jobs = envelope.signature_jobs([public[s.key] for s in envelope.sigs])
    assert verify_jobs(jobs) == [True, True]
    result = verify_signatures(
        EVENT_PREFIX, envelope.body_bytes, [(s.key, s.sig) for s in envelope.sigs], public, 2
    )
    assert result.signed_by == tuple(sorted(public))
    assert parse_envelope(envelope.to_json()).leaf == envelope.leaf


@pytest.mark.parametrize(
    ("body", "keys", "error"),
    [
        pytest.param(BODY, [], SignatureError, id="no-keys"),
        pytest.param(BODY, [KEYS[0], KEYS[0]], SignatureError, id="same-key-twice"),
        pytest.param({**BODY, "v": 2}, [KEYS[0]], EncodingError, id="bad-version"),
        pytest.param(
            {**BODY, "payload": {"x": {1, 2}}}, [KEYS[0]], EncodingError, id="set-in-payload"
        ),
    ],
)
def test_sign_event_rejects(
    body: dict[str, Any], keys: list[Ed25519PrivateKey], error: type[Exception]
) -> None:
    with pytest.raises((EncodingError, SignatureError)) as raised:
        sign_event(body, keys)
    assert type(raised.value) is error
