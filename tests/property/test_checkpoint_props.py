"""Property tests of ledger.checkpoint: round trips, tamper detection, total parsers."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st

from ledger.checkpoint import (
    MAX_SIGNATURES,
    MAX_TREE_SIZE,
    RESERVED_ORIGIN_PREFIX,
    Checkpoint,
    Note,
    NoteSignature,
    NoteVerifier,
    check_note,
    format_checkpoint,
    format_note,
    format_verifier_key,
    parse_checkpoint,
    parse_note,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
    verify_note,
)
from ledger.errors import EncodingError, SignatureError

# Key names: no Unicode space (Go's unicode.IsSpace), no '+', no control character, no surrogate.
key_names = st.text(
    alphabet=st.characters(
        exclude_categories=["Zs", "Zl", "Zp", "Cc", "Cs"], exclude_characters="+"
    ),
    min_size=1,
    max_size=24,
)
# Any character allowed in a note except ASCII controls (DEL and C1 controls are allowed).
note_chars = st.characters(
    exclude_categories=["Cs"], exclude_characters=[chr(c) for c in range(32)]
)
note_lines = st.text(alphabet=note_chars, max_size=40)
note_texts = st.lists(note_lines, min_size=1, max_size=6).map(
    lambda lines: "".join(line + "\n" for line in lines)
)
signable_texts = note_texts.filter(lambda text: not text.startswith(RESERVED_ORIGIN_PREFIX))
private_keys = st.binary(min_size=32, max_size=32).map(Ed25519PrivateKey.from_private_bytes)
raw_signatures = st.builds(
    NoteSignature,
    name=key_names,
    key_id=st.binary(min_size=4, max_size=4),
    signature=st.binary(min_size=1, max_size=100),
)
checkpoint_lines = st.text(alphabet=note_chars, min_size=1, max_size=40)
checkpoints = st.builds(
    Checkpoint,
    origin=checkpoint_lines.filter(lambda o: not o.startswith(RESERVED_ORIGIN_PREFIX)),
    size=st.integers(min_value=0, max_value=MAX_TREE_SIZE),
    root_hash=st.binary(min_size=32, max_size=32),
    extensions=st.lists(checkpoint_lines, max_size=3).map(tuple),
)


@st.composite
def signer_sets(
    draw: st.DrawFn, min_size: int = 1, max_size: int = 4
) -> list[tuple[str, Ed25519PrivateKey]]:
    """Distinct names with distinct keys (seeds derived from one drawn salt)."""
    names = draw(st.lists(key_names, min_size=min_size, max_size=max_size, unique=True))
    salt = draw(st.binary(max_size=8))
    return [
        (name, Ed25519PrivateKey.from_private_bytes(hashlib.sha256(salt + bytes([i])).digest()))
        for i, name in enumerate(names)
    ]


def verifiers_of(signers: list[tuple[str, Ed25519PrivateKey]]) -> list[NoteVerifier]:
    return [NoteVerifier(name, key.public_key().public_bytes_raw()) for name, key in signers]


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# ============================================================================ round trips


@given(text=note_texts, signatures=st.lists(raw_signatures, min_size=1, max_size=MAX_SIGNATURES))
def test_note_format_parse_round_trip(text: str, signatures: list[NoteSignature]) -> None:
    data = format_note(text, signatures)
    note = parse_note(data)
    assert note == Note(text, tuple(signatures))
    assert format_note(note.text, note.signatures) == data


@given(checkpoint=checkpoints)
def test_checkpoint_format_parse_round_trip(checkpoint: Checkpoint) -> None:
    text = format_checkpoint(checkpoint)
    assert parse_checkpoint(text) == checkpoint
    assert format_checkpoint(parse_checkpoint(text)) == text


@given(name=key_names, public_key=st.binary(min_size=32, max_size=32))
def test_vkey_round_trip(name: str, public_key: bytes) -> None:
    vkey = format_verifier_key(name, public_key)
    verifier = parse_verifier_key(vkey)
    assert verifier == NoteVerifier(name, public_key)
    assert verifier.key_id == hashlib.sha256(name.encode() + b"\n\x01" + public_key).digest()[:4]
    assert verifier.vkey == vkey


@settings(deadline=None)
@given(text=signable_texts, signers=signer_sets(), data=st.data())
def test_sign_verify_round_trip(
    text: str, signers: list[tuple[str, Ed25519PrivateKey]], data: st.DataObject
) -> None:
    quorum = data.draw(st.integers(min_value=1, max_value=len(signers)), label="quorum")
    note = format_note(text, [sign_note(text, name, key) for name, key in signers])
    verifiers = verifiers_of(signers)
    assert verify_note(note, verifiers, quorum).text == text
    result = check_note(parse_note(note), verifiers, quorum)
    assert result.signed_by == tuple(name for name, _ in signers)
    assert result.missing == ()
    assert result.ok


@settings(deadline=None)
@given(checkpoint=checkpoints, signers=signer_sets())
def test_checkpoint_sign_verify_round_trip(
    checkpoint: Checkpoint, signers: list[tuple[str, Ed25519PrivateKey]]
) -> None:
    text = format_checkpoint(checkpoint)
    note = format_note(text, [sign_checkpoint(checkpoint, n, k) for n, k in signers])
    verifiers = verifiers_of(signers)
    assert verify_checkpoint(note, checkpoint.origin, verifiers, len(signers)) == checkpoint


# ============================================================================ tamper detection


@settings(deadline=None)
@given(text=signable_texts, signers=signer_sets(), data=st.data())
def test_any_bit_flip_of_a_fully_signed_note_fails(
    text: str, signers: list[tuple[str, Ed25519PrivateKey]], data: st.DataObject
) -> None:
    # Every line is from a known key and every signer is needed (quorum = all). A flip in the
    # text breaks every signature; a flip in a line makes it malformed, invalid, or (name or key
    # id changed) unknown and so ignored, which loses that signer and the quorum.
    note = format_note(text, [sign_note(text, name, key) for name, key in signers])
    bit = data.draw(st.integers(min_value=0, max_value=len(note) * 8 - 1), label="bit")
    with pytest.raises((EncodingError, SignatureError)) as excinfo:
        verify_note(flip(note, bit), verifiers_of(signers), len(signers))
    event(f"rejected: {excinfo.type.__name__}")


@settings(deadline=None)
@given(
    text=signable_texts,
    signers=signer_sets(),
    stranger=raw_signatures,
    data=st.data(),
)
def test_bit_flip_with_unknown_line_never_changes_what_is_accepted(
    text: str,
    signers: list[tuple[str, Ed25519PrivateKey]],
    stranger: NoteSignature,
    data: st.DataObject,
) -> None:
    # With an unknown signer's line in the note, a flip inside that line may leave a valid note
    # (that line is ignored either way), but never one whose text or signers differ.
    verifiers = verifiers_of(signers)
    assume(all((v.name, v.key_id) != (stranger.name, stranger.key_id) for v in verifiers))
    lines = [sign_note(text, name, key) for name, key in signers]
    position = data.draw(st.integers(min_value=0, max_value=len(lines)), label="position")
    lines.insert(position, stranger)
    note = format_note(text, lines)
    bit = data.draw(st.integers(min_value=0, max_value=len(note) * 8 - 1), label="bit")
    try:
        accepted = verify_note(flip(note, bit), verifiers, len(signers))
    except (EncodingError, SignatureError) as e:
        event(f"rejected: {type(e).__name__}")
        return
    event("accepted: flip inside the unknown line")
    assert accepted.text == text
    result = check_note(accepted, verifiers, len(signers))
    assert result.signed_by == tuple(name for name, _ in signers)
    # The flip must have been inside the stranger's line (its final newline excluded).
    start = len(text.encode()) + 1 + sum(len(s.line().encode()) + 1 for s in lines[:position])
    assert start * 8 <= bit < (start + len(stranger.line().encode())) * 8


@settings(deadline=None)
@given(
    text=signable_texts,
    names=st.lists(key_names, min_size=2, max_size=2, unique=True),
    key=private_keys,
)
def test_signature_under_one_name_does_not_verify_under_another(
    text: str, names: list[str], key: Ed25519PrivateKey
) -> None:
    name_a, name_b = names
    note = format_note(text, [sign_note(text, name_a, key)])
    verifier_b = NoteVerifier(name_b, key.public_key().public_bytes_raw())
    with pytest.raises(SignatureError):
        verify_note(note, [verifier_b], 1)
    result = check_note(parse_note(note), [verifier_b], 1)
    assert result.signed_by == ()
    assert len(result.unknown) == 1


# ============================================================================ total parsers


def _parse_or_encoding_error(data: bytes) -> None:
    try:
        note = parse_note(data)
    except EncodingError:
        return
    # Whatever parses has exactly one encoding.
    assert format_note(note.text, note.signatures) == data


@given(data=st.binary(max_size=300))
def test_parse_note_arbitrary_bytes(data: bytes) -> None:
    _parse_or_encoding_error(data)


@given(
    text=note_texts,
    signatures=st.lists(raw_signatures, min_size=1, max_size=4),
    edits=st.lists(
        st.tuples(
            st.integers(min_value=0),
            st.sampled_from(["flip", "delete", "insert"]),
            st.binary(min_size=1, max_size=3),
        ),
        min_size=1,
        max_size=3,
    ),
)
def test_parse_note_mutated_notes(
    text: str, signatures: list[NoteSignature], edits: list[tuple[int, str, bytes]]
) -> None:
    # Arbitrary bytes rarely look like a note; mutations of real notes reach deep paths.
    data = bytearray(format_note(text, signatures))
    for where, kind, payload in edits:
        if not data:
            break
        i = where % len(data)
        if kind == "flip":
            data[i] ^= payload[0] or 1
        elif kind == "delete":
            del data[i : i + len(payload)]
        else:
            data[i:i] = payload + b"\n\n\xe2\x80\x94 "[: payload[0] % 7]
    _parse_or_encoding_error(bytes(data))


@given(text=st.text(max_size=200))
def test_parse_checkpoint_arbitrary_text(text: str) -> None:
    try:
        checkpoint = parse_checkpoint(text)
    except EncodingError:
        return
    assert format_checkpoint(checkpoint) == text


@given(
    lines=st.lists(
        st.one_of(
            st.text(max_size=50),
            st.from_regex(r"[-+0-9]{0,25}", fullmatch=True),
            st.binary(min_size=0, max_size=40).map(lambda b: base64.b64encode(b).decode()),
        ),
        min_size=0,
        max_size=6,
    ),
    final_newline=st.booleans(),
)
def test_parse_checkpoint_line_shaped_text(lines: list[str], final_newline: bool) -> None:
    text = "\n".join(lines) + ("\n" if final_newline else "")
    try:
        checkpoint = parse_checkpoint(text)
    except EncodingError:
        return
    assert format_checkpoint(checkpoint) == text


@given(vkey=st.text(max_size=120))
def test_parse_verifier_key_arbitrary_text(vkey: str) -> None:
    try:
        verifier = parse_verifier_key(vkey)
    except EncodingError:
        return
    assert verifier.vkey == vkey
