"""Unit tests of ledger.checkpoint: C2SP signed notes, verifier keys, checkpoints, quorums."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.checkpoint import (
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    MAX_TREE_SIZE,
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

# --- Published vectors: golang.org/x/mod/sumdb/note (note.go doc comment and note_test.go) ---

PETER_SKEY_B64 = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"  # 0x01 || Ed25519 seed
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG_B64 = (
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="
)
ENOCH_SIG_B64 = (
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ="
)
PETER_SIG = f"— PeterNeumann {PETER_SIG_B64}\n"
ENOCH_SIG = f"— EnochRoot {ENOCH_SIG_B64}\n"
GO_NOTE = GO_TEXT + "\n" + PETER_SIG

# --- Published examples from the C2SP specifications (no verifier key is published) ---

C2SP_NOTE_EXAMPLE = (
    "Ognuno sta solo sul cuor della terra\n"
    "trafitto da un raggio di sole:\n"
    "\n"
    "ed è subito sera.\n"
    "\n"
    "— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU"
    "0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)
C2SP_CHECKPOINT_EXAMPLE = (
    "example.com/behind-the-sofa\n"
    "20852163\n"
    "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    "\n"
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q"
    "1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)

# --- Rantai fixtures ---

ORIGIN = "ledger.example/kalbar-coop"
EMPTY_ROOT = hashlib.sha256(b"").digest()
NAMES = ("node-1.kalbar-coop", "node-2.kalbar-coop", "node-3.kalbar-coop", "node-4.kalbar-coop")
KEYS = {
    name: Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i, name in enumerate(NAMES)
}
VERIFIERS = [NoteVerifier(name, KEYS[name].public_key().public_bytes_raw()) for name in NAMES]
OUTSIDER = Ed25519PrivateKey.from_private_bytes(bytes([0xEE]) * 32)
CHECKPOINT = Checkpoint(ORIGIN, 7, hashlib.sha256(b"seven").digest())
CHECKPOINT_TEXT = format_checkpoint(CHECKPOINT)


def signed(text: str, *names: str) -> bytes:
    return format_note(text, [sign_note(text, name, KEYS[name]) for name in names])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ============================================================================ known answers


def test_known_answer_fixed_key() -> None:
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public = key.public_key().public_bytes_raw()
    name = "node-1.kalbar-coop"
    text = f"{ORIGIN}\n0\n{b64(EMPTY_ROOT)}\n"

    # Computed here by hand from the spec, independently of ledger.checkpoint.
    key_id = hashlib.sha256(name.encode() + b"\n" + b"\x01" + public).digest()[:4]
    expected = (
        text.encode()
        + b"\n"
        + "\u2014 ".encode()
        + name.encode()
        + b" "
        + base64.b64encode(key_id + key.sign(text.encode()))
        + b"\n"
    )
    # Golden values, so that an accidental change of either side shows up.
    assert public.hex() == "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    assert key_id.hex() == "e24e7225"
    assert (
        expected
        == (
            "ledger.example/kalbar-coop\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n"
            "— node-1.kalbar-coop 4k5yJelpmBiLRARSjtZT9Yp7lyLqZ/UZQJRduBobKYQjaGJXqeegdQr2cFNE"
            "MdK7r1tW/LnyZYgxpb1NuZPZa5/AUws=\n"
        ).encode()
    )

    verifier = NoteVerifier(name, public)
    assert verifier.key_id == key_id
    assert verifier.vkey == name + "+e24e7225+" + b64(b"\x01" + public)
    signature = sign_note(text, name, key)
    assert signature.key_id == key_id
    assert format_note(text, [signature]) == expected
    checkpoint = Checkpoint(ORIGIN, 0, EMPTY_ROOT)
    assert format_checkpoint(checkpoint) == text
    assert sign_checkpoint(checkpoint, name, key) == signature
    assert verify_checkpoint(expected, ORIGIN, [verifier], 1) == checkpoint


def test_go_example_sign_reproduces_published_note() -> None:
    seed = base64.b64decode(PETER_SKEY_B64)
    assert seed[0] == 1
    key = Ed25519PrivateKey.from_private_bytes(seed[1:])
    signature = sign_note(GO_TEXT, "PeterNeumann", key)
    assert signature.key_id == bytes.fromhex("c74f20a3")
    assert format_note(GO_TEXT, [signature]) == GO_NOTE.encode()
    assert format_verifier_key("PeterNeumann", key.public_key().public_bytes_raw()) == PETER_VKEY


def test_go_example_verifies_with_published_vkey() -> None:
    peter = parse_verifier_key(PETER_VKEY)
    assert peter.name == "PeterNeumann"
    assert peter.key_id == bytes.fromhex("c74f20a3")
    note = verify_note(GO_NOTE.encode(), [peter], 1)
    assert note.text == GO_TEXT
    assert note.signatures == (
        NoteSignature(
            "PeterNeumann", bytes.fromhex("c74f20a3"), base64.b64decode(PETER_SIG_B64)[4:]
        ),
    )


def test_go_example_two_signers() -> None:
    peter, enoch = parse_verifier_key(PETER_VKEY), parse_verifier_key(ENOCH_VKEY)
    data = (GO_TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode()
    assert check_note(parse_note(data), [peter, enoch], 2).signed_by == (
        "PeterNeumann",
        "EnochRoot",
    )
    only_peter = check_note(parse_note(data), [peter], 1)
    assert only_peter.ok
    assert only_peter.signed_by == ("PeterNeumann",)
    assert [s.name for s in only_peter.unknown] == ["EnochRoot"]
    with pytest.raises(SignatureError, match="nobody"):
        verify_note(data, [NoteVerifier("Somebody", bytes(32))], 1)


def test_go_example_duplicates_and_mangled_unknown() -> None:
    # note_test.go: duplicated verified and unverified signatures are accepted.
    raw = PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + ENOCH_SIG[:58] + "ABCD" + ENOCH_SIG[58:]
    result = check_note(
        parse_note((GO_TEXT + "\n" + raw).encode()), [parse_verifier_key(PETER_VKEY)], 1
    )
    assert result.ok
    assert result.signed_by == ("PeterNeumann",)
    assert len(result.unknown) == 2  # identical unknown lines are listed once


def test_go_example_invalid_signature_from_known_key() -> None:
    mangled = PETER_SIG.encode()[:60] + b"ABCD" + PETER_SIG.encode()[60:]
    data = (GO_TEXT + "\n").encode() + mangled
    with pytest.raises(SignatureError, match="invalid signature from PeterNeumann"):
        verify_note(data, [parse_verifier_key(PETER_VKEY)], 1)


def test_c2sp_note_example_parses_with_blank_line_in_text() -> None:
    note = parse_note(C2SP_NOTE_EXAMPLE.encode())
    assert note.text == (
        "Ognuno sta solo sul cuor della terra\n"
        "trafitto da un raggio di sole:\n"
        "\n"
        "ed è subito sera.\n"
    )
    assert [(s.name, len(s.signature)) for s in note.signatures] == [
        ("quasimodo.example/salvatore", 64)
    ]
    assert format_note(note.text, note.signatures) == C2SP_NOTE_EXAMPLE.encode()


def test_c2sp_checkpoint_example_parses() -> None:
    note = parse_note(C2SP_CHECKPOINT_EXAMPLE.encode())
    checkpoint = parse_checkpoint(note.text)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert checkpoint.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint.extensions == ()
    assert format_checkpoint(checkpoint) == note.text


# ============================================================================ verifier keys


def test_vkey_round_trip() -> None:
    peter = parse_verifier_key(PETER_VKEY)
    assert peter.vkey == PETER_VKEY
    assert parse_verifier_key(format_verifier_key(peter.name, peter.public_key)) == peter


def _mangled_vkeys() -> list[str]:
    # As note_test.go: every proper substring and every single-character increment fails.
    data = PETER_VKEY.encode()
    out = {data[i:j] for i in range(len(data) + 1) for j in range(i + 1, len(data) + 1)}
    out.discard(data)
    for i in range(len(data)):
        out.add(data[:i] + bytes([data[i] + 1]) + data[i + 1 :])
    return sorted(s.decode("utf-8", "surrogateescape") for s in out)


def test_vkey_manglings_rejected() -> None:
    mangled = _mangled_vkeys()
    assert len(mangled) > 2000
    for vkey in mangled:
        with pytest.raises(EncodingError):
            parse_verifier_key(vkey)


def _vkey_with_adjusted_id(name: str, key: bytes) -> str:
    key_id = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
    return f"{name}+{key_id.hex()}+{b64(key)}"


PETER_PUBLIC = base64.b64decode(PETER_VKEY.split("+", 2)[2])[1:]

MISMATCH = "does not match the name and key"
NOT_HEX = "not 8 lowercase hexadecimal digits"
# (id, verifier key, fragment of the EncodingError message)
BAD_VKEYS = [
    ("uppercase-id", PETER_VKEY.replace("c74f20a3", "C74F20A3"), NOT_HEX),
    ("wrong-id", PETER_VKEY.replace("c74f20a3", "c74f20a4"), MISMATCH),
    ("short-id", PETER_VKEY.replace("c74f20a3", "c74f20a"), NOT_HEX),
    ("renamed", PETER_VKEY.replace("PeterNeumann", "PeterNeuman"), MISMATCH),
    ("other-key", PETER_VKEY.split("+")[0] + "+c74f20a3+" + ENOCH_VKEY.split("+")[2], MISMATCH),
    ("no-key", "PeterNeumann+c74f20a3+", "verifier key is empty"),
    ("two-parts", "PeterNeumann+c74f20a3", "does not have the form"),
    ("empty-name", PETER_VKEY.replace("PeterNeumann", ""), "name is empty"),
    ("space-name", PETER_VKEY.replace("PeterNeumann", "Peter Neumann"), "Unicode space U+0020"),
    (
        "go-wrong-length",
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "not canonical base64",
    ),
    (
        "go-unknown-alg",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "signature type 0x65",
    ),
    (
        "short-key-adjusted-id",
        _vkey_with_adjusted_id("PeterNeumann", b"\x01" + PETER_PUBLIC[:31]),
        "31 bytes, not 32",
    ),
    (
        "long-key-adjusted-id",
        _vkey_with_adjusted_id("PeterNeumann", b"\x01" + PETER_PUBLIC + b"\0"),
        "33 bytes, not 32",
    ),
    (
        "alg-2-adjusted-id",
        _vkey_with_adjusted_id("PeterNeumann", b"\x02" + PETER_PUBLIC),
        "signature type 0x02",
    ),
    ("unpadded", PETER_VKEY[:-1], "not standard base64"),
    ("trailing-newline", PETER_VKEY + "\n", "not standard base64"),
]


@pytest.mark.parametrize(
    ("vkey", "fragment"), [(v, m) for _, v, m in BAD_VKEYS], ids=[i for i, _, _ in BAD_VKEYS]
)
def test_bad_vkeys_rejected(vkey: str, fragment: str) -> None:
    with pytest.raises(EncodingError, match=re.escape(fragment)):
        parse_verifier_key(vkey)


# ============================================================================ key names

BAD_NAMES = [
    ("empty", ""),
    ("plus", "a+b"),
    ("space", "a b"),
    ("tab", "a\tb"),
    ("nbsp", "a\u00a0b"),
    ("nel", "a\u0085b"),
    ("em-space", "a\u2003b"),
    ("line-separator", "a\u2028b"),
    ("ideographic-space", "a\u3000b"),
    ("newline", "a\nb"),
    ("control", "a\x01b"),
    ("lone-surrogate", "a\ud800b"),
]


@pytest.mark.parametrize("name", [n for _, n in BAD_NAMES], ids=[i for i, _ in BAD_NAMES])
def test_bad_key_names_rejected(name: str) -> None:
    with pytest.raises(EncodingError):
        NoteVerifier(name, bytes(32))
    with pytest.raises(EncodingError):
        sign_note("x\n", name, KEYS[NAMES[0]])
    with pytest.raises(EncodingError):
        NoteSignature(name, bytes(4), bytes(64))


@pytest.mark.parametrize(
    "name",
    ["a", "node-1.kalbar-coop", "ledger.example/kalbar-coop", "ü—☃", "a\u200bb"],
    ids=["one-char", "validator", "url", "non-ascii", "zero-width-space-is-not-a-space"],
)
def test_good_key_names_accepted(name: str) -> None:
    verifier = NoteVerifier(name, bytes(32))
    assert parse_verifier_key(verifier.vkey) == verifier


@pytest.mark.parametrize("size", [0, 31, 33], ids=["empty", "short", "long"])
def test_verifier_public_key_size(size: int) -> None:
    with pytest.raises(EncodingError):
        NoteVerifier("a", bytes(size))


# ============================================================================ malformed notes

SIG_LINE = PETER_SIG
NO_BLANK = "no blank line"
NOT_B64 = "not standard base64"
CONTROL = "control character"
NOT_UTF8 = "not valid UTF-8"
NO_DASH = "does not start with an em dash"
NO_FINAL_NEWLINE = "does not end with a newline"
SHORT = "at least one byte of signature"
# (id, note bytes, fragment of the EncodingError message)
MALFORMED_NOTES: list[tuple[str, bytes, str]] = [
    ("text-only", GO_TEXT.encode(), NO_BLANK),
    ("text-and-blank-line-only", (GO_TEXT + "\n").encode(), "no signature lines"),
    ("no-blank-line", (GO_TEXT + SIG_LINE).encode(), NO_BLANK),
    ("empty-text", ("\n" + SIG_LINE).encode(), NO_BLANK),
    ("empty", b"", NO_BLANK),
    ("missing-final-newline", (GO_TEXT + "\n" + SIG_LINE[:-1]).encode(), NO_FINAL_NEWLINE),
    ("leading-control-char", ("\x01" + GO_NOTE).encode(), CONTROL),
    ("tab-in-text", ("If\tyou\n\n" + SIG_LINE).encode(), CONTROL),
    ("nul-in-signature-line", (GO_TEXT + "\n" + SIG_LINE[:-1] + "\x00\n").encode(), CONTROL),
    ("crlf-line-endings", GO_NOTE.replace("\n", "\r\n").encode(), CONTROL),
    ("bad-utf8-ff", b"\xff" + GO_NOTE.encode(), NOT_UTF8),
    ("bad-utf8-overlong", b"\xc0\xaf\n\n" + SIG_LINE.encode(), NOT_UTF8),
    ("bad-utf8-surrogate", b"\xed\xa0\x80\n\n" + SIG_LINE.encode(), NOT_UTF8),
    ("bad-utf8-truncated", b"\xe2\x80\n\n" + SIG_LINE.encode(), NOT_UTF8),
    ("bad-name-space-go", (GO_TEXT + "\n— Bad Name " + PETER_SIG_B64 + "\n").encode(), NOT_B64),
    ("bad-name-plus", (GO_TEXT + "\n— Peter+Neumann " + PETER_SIG_B64 + "\n").encode(), "'+'"),
    (
        "bad-name-nbsp",
        (GO_TEXT + "\n— Peter\u00a0Neumann " + PETER_SIG_B64 + "\n").encode(),
        "Unicode space U+00A0",
    ),
    (
        "bad-name-em-space",
        (GO_TEXT + "\n— Peter\u2003Neumann " + PETER_SIG_B64 + "\n").encode(),
        "Unicode space U+2003",
    ),
    ("empty-name", (GO_TEXT + "\n—  " + PETER_SIG_B64 + "\n").encode(), "key name on signature"),
    ("no-signature-after-name", (GO_TEXT + "\n— PeterNeumann\n").encode(), "no signature after"),
    ("empty-signature", (GO_TEXT + "\n— PeterNeumann \n").encode(), "no signature after"),
    ("double-space", (GO_TEXT + "\n— PeterNeumann  " + PETER_SIG_B64 + "\n").encode(), NOT_B64),
    ("trailing-space", (GO_TEXT + "\n— PeterNeumann " + PETER_SIG_B64 + " \n").encode(), NOT_B64),
    (
        "hyphen-not-em-dash",
        (GO_TEXT + "\n- PeterNeumann " + PETER_SIG_B64 + "\n").encode(),
        NO_DASH,
    ),
    ("en-dash", (GO_TEXT + "\n– PeterNeumann " + PETER_SIG_B64 + "\n").encode(), NO_DASH),
    ("em-dash-no-space", (GO_TEXT + "\n—PeterNeumann " + PETER_SIG_B64 + "\n").encode(), NO_DASH),
    (
        "bad-base64-char",
        (GO_TEXT + "\n— PeterNeumann *" + PETER_SIG_B64[1:] + "\n").encode(),
        NOT_B64,
    ),
    (
        "base64-no-padding",
        (GO_TEXT + "\n— PeterNeumann " + PETER_SIG_B64[:-1] + "\n").encode(),
        NOT_B64,
    ),
    (
        "base64-nonzero-padding-bits",
        (GO_TEXT + "\n— PeterNeumann " + PETER_SIG_B64[:-2] + "N=\n").encode(),
        "not canonical base64",
    ),
    (
        "base64url",
        (GO_TEXT + "\n— EnochRoot " + ENOCH_SIG_B64.replace("+", "-") + "\n").encode(),
        NOT_B64,
    ),
    ("short-signature-key-id-only", (GO_TEXT + "\n— PeterNeumann xw8gow==\n").encode(), SHORT),
    ("short-signature-3-bytes", (GO_TEXT + "\n— PeterNeumann xw8g\n").encode(), SHORT),
    ("trailing-line-go", (GO_NOTE + "Unexpected line.\n").encode(), "signature line 2 does not"),
    ("trailing-garbage-no-newline", (GO_NOTE + "garbage").encode(), NO_FINAL_NEWLINE),
    ("trailing-signature-no-newline", (GO_NOTE + SIG_LINE[:-1]).encode(), NO_FINAL_NEWLINE),
    (
        "too-many-signatures",
        (GO_TEXT + "\n" + SIG_LINE * (MAX_SIGNATURES + 1)).encode(),
        "101 signature lines",
    ),
    (
        "too-large",
        b"a" * (MAX_NOTE_SIZE - len(SIG_LINE.encode()) - 1) + b"\n\n" + SIG_LINE.encode(),
        "more than 1048576",
    ),
]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [(d, m) for _, d, m in MALFORMED_NOTES],
    ids=[i for i, _, _ in MALFORMED_NOTES],
)
def test_malformed_notes_rejected(data: bytes, fragment: str) -> None:
    with pytest.raises(EncodingError, match=re.escape(fragment)):
        parse_note(data)
    with pytest.raises(EncodingError, match=re.escape(fragment)):
        verify_note(data, [parse_verifier_key(PETER_VKEY)], 1)


def test_size_limit_is_exact() -> None:
    data = next(d for i, d, _ in MALFORMED_NOTES if i == "too-large")
    assert len(data) == MAX_NOTE_SIZE + 1
    note = parse_note(data[1:])
    assert len(note.text.encode()) == MAX_NOTE_SIZE - len(SIG_LINE.encode()) - 1


def test_exactly_max_signatures_accepted() -> None:
    note = parse_note((GO_TEXT + "\n" + SIG_LINE * MAX_SIGNATURES).encode())
    assert len(note.signatures) == MAX_SIGNATURES
    result = check_note(note, [parse_verifier_key(PETER_VKEY)], 1)
    assert result.ok
    assert result.signed_by == ("PeterNeumann",)


def test_blank_line_between_signatures_makes_earlier_lines_text() -> None:
    # The text ends at the *last* blank line, so the first signature line becomes text.
    data = (GO_TEXT + "\n" + PETER_SIG + "\n" + ENOCH_SIG).encode()
    note = parse_note(data)
    assert note.text == GO_TEXT + "\n" + PETER_SIG
    assert [s.name for s in note.signatures] == ["EnochRoot"]
    with pytest.raises(SignatureError):
        verify_note(data, [parse_verifier_key(PETER_VKEY), parse_verifier_key(ENOCH_VKEY)], 1)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("\n", "a single empty line is a text ending in newline"),
        ("a\n\n\nb\n", "blank lines inside the text"),
        ("del\x7f and c1 \x85 controls\n", "only controls below U+0020 are banned"),
        ("\ufeffbom\n", "a byte order mark is not a control character"),
    ],
    ids=["single-newline", "inner-blank-lines", "del-and-c1", "bom"],
)
def test_unusual_but_valid_texts(text: str, why: str) -> None:
    data = signed(text, NAMES[0])
    assert verify_note(data, VERIFIERS, 1).text == text, why


@pytest.mark.parametrize(
    "text",
    ["", "no final newline", "tab\there\n", "cr\r\n", "nul\x00\n", "rantai-event-v1\n{}\n"],
    ids=["empty", "no-final-newline", "tab", "cr", "nul", "rantai-domain"],
)
def test_sign_note_rejects_bad_text(text: str) -> None:
    with pytest.raises(EncodingError):
        sign_note(text, NAMES[0], KEYS[NAMES[0]])


def test_format_note_needs_one_to_max_signatures() -> None:
    sig = sign_note("x\n", NAMES[0], KEYS[NAMES[0]])
    with pytest.raises(EncodingError):
        format_note("x\n", [])
    with pytest.raises(EncodingError):
        format_note("x\n", [sig] * (MAX_SIGNATURES + 1))
    assert len(parse_note(format_note("x\n", [sig] * MAX_SIGNATURES)).signatures) == MAX_SIGNATURES
    with pytest.raises(EncodingError):
        Note("x\n", ())


# ============================================================================ quorum


def test_quorum_two_of_four_fails_listing_missing() -> None:
    data = signed(CHECKPOINT_TEXT, NAMES[0], NAMES[1])
    result = check_note(parse_note(data), VERIFIERS, 3)
    assert not result.ok
    assert result.signed_by == NAMES[:2]
    assert result.missing == NAMES[2:]
    assert result.invalid == ()
    with pytest.raises(SignatureError) as excinfo:
        verify_note(data, VERIFIERS, 3)
    message = str(excinfo.value)
    assert "missing node-3.kalbar-coop, node-4.kalbar-coop" in message
    assert "signed by node-1.kalbar-coop, node-2.kalbar-coop (2 of 3 needed)" in message


def test_quorum_three_of_four_ok() -> None:
    data = signed(CHECKPOINT_TEXT, NAMES[3], NAMES[0], NAMES[2])
    result = check_note(parse_note(data), VERIFIERS, 3)
    assert result.ok
    assert result.signed_by == (NAMES[0], NAMES[2], NAMES[3])  # verifier order
    assert result.missing == (NAMES[1],)
    assert verify_note(data, VERIFIERS, 3).text == CHECKPOINT_TEXT
    assert verify_checkpoint(data, ORIGIN, VERIFIERS, 3) == CHECKPOINT


def test_invalid_signature_from_known_key_fails_despite_quorum() -> None:
    good = [sign_note(CHECKPOINT_TEXT, name, KEYS[name]) for name in NAMES[:3]]
    # node-4's key signed other text; the line carries node-4's name and key id.
    bad = sign_note("something else\n", NAMES[3], KEYS[NAMES[3]])
    data = format_note(CHECKPOINT_TEXT, [*good, bad])
    result = check_note(parse_note(data), VERIFIERS, 3)
    assert not result.ok
    assert result.signed_by == NAMES[:3]
    assert result.invalid == (NAMES[3],)
    with pytest.raises(SignatureError, match=r"invalid signature from node-4\.kalbar-coop"):
        verify_note(data, VERIFIERS, 3)


def test_second_bad_signature_from_signer_who_also_signed_well_fails() -> None:
    good = [sign_note(CHECKPOINT_TEXT, name, KEYS[name]) for name in NAMES]
    bad = sign_note("something else\n", NAMES[0], KEYS[NAMES[0]])
    result = check_note(parse_note(format_note(CHECKPOINT_TEXT, [*good, bad])), VERIFIERS, 3)
    assert result.signed_by == NAMES
    assert result.invalid == (NAMES[0],)
    assert not result.ok


def test_wrong_length_signature_from_known_key_is_invalid() -> None:
    key_id = VERIFIERS[0].key_id
    data = format_note(CHECKPOINT_TEXT, [NoteSignature(NAMES[0], key_id, bytes(63))])
    assert check_note(parse_note(data), VERIFIERS, 1).invalid == (NAMES[0],)


def test_unknown_signers_ignored() -> None:
    good = [sign_note(CHECKPOINT_TEXT, name, KEYS[name]) for name in NAMES[:3]]
    stranger = sign_note(CHECKPOINT_TEXT, "witness.example/w1", OUTSIDER)
    # Same name as a validator, other key: the key id differs, so the pair is unknown.
    same_name = sign_note(CHECKPOINT_TEXT, NAMES[3], OUTSIDER)
    # Same key id as a validator, other name: the pair is unknown too.
    same_id = NoteSignature("node-9.kalbar-coop", VERIFIERS[3].key_id, bytes(64))
    # An unknown key with a signature that is not even Ed25519-sized.
    odd = NoteSignature("pq.example/mldsa", b"\x00\x01\x02\x03", bytes(2420))
    data = format_note(CHECKPOINT_TEXT, [stranger, *good, same_name, same_id, odd])
    result = check_note(parse_note(data), VERIFIERS, 3)
    assert result.ok
    assert result.signed_by == NAMES[:3]
    assert result.missing == (NAMES[3],)
    assert result.unknown == (stranger, same_name, same_id, odd)
    assert verify_checkpoint(data, ORIGIN, VERIFIERS, 3) == CHECKPOINT
    with pytest.raises(SignatureError):
        verify_note(data, VERIFIERS, 4)


def test_duplicate_signer_counted_once() -> None:
    first = sign_note(CHECKPOINT_TEXT, NAMES[0], KEYS[NAMES[0]])
    second = sign_note(CHECKPOINT_TEXT, NAMES[1], KEYS[NAMES[1]])
    data = format_note(CHECKPOINT_TEXT, [first, first, second, first])
    result = check_note(parse_note(data), VERIFIERS, 3)
    assert result.signed_by == NAMES[:2]
    assert not result.ok
    with pytest.raises(SignatureError, match=r"\(2 of 3 needed\)"):
        verify_note(data, VERIFIERS, 3)
    assert check_note(parse_note(data), VERIFIERS, 2).ok


def test_name_with_two_keys_counts_once() -> None:
    rotated = NoteVerifier(NAMES[0], OUTSIDER.public_key().public_bytes_raw())
    signatures = [
        sign_note(CHECKPOINT_TEXT, NAMES[0], KEYS[NAMES[0]]),
        sign_note(CHECKPOINT_TEXT, NAMES[0], OUTSIDER),
    ]
    result = check_note(
        parse_note(format_note(CHECKPOINT_TEXT, signatures)), [*VERIFIERS, rotated], 1
    )
    assert result.signed_by == (NAMES[0],)
    assert result.missing == NAMES[1:]


@pytest.mark.parametrize("quorum", [0, -1, 5], ids=["zero", "negative", "more-than-verifiers"])
def test_quorum_out_of_range(quorum: int) -> None:
    note = parse_note(signed(CHECKPOINT_TEXT, *NAMES))
    with pytest.raises(ValueError, match="quorum"):
        check_note(note, VERIFIERS, quorum)


def test_ambiguous_verifiers_rejected_identical_ones_merged() -> None:
    note = parse_note(signed(CHECKPOINT_TEXT, NAMES[0]))
    assert check_note(note, [VERIFIERS[0], VERIFIERS[0]], 1).ok
    # Two different keys can only share a key id by a 2^-32 accident; simulate it.
    with pytest.raises(ValueError, match="ambiguous"):
        check_note(note, [VERIFIERS[0], _same_key_id_other_key(VERIFIERS[0])], 1)


def _same_key_id_other_key(verifier: NoteVerifier) -> NoteVerifier:
    class Colliding(NoteVerifier):
        __slots__ = ()

        @property
        def key_id(self) -> bytes:
            return verifier.key_id

    return Colliding(verifier.name, bytes(32))


def test_no_verifiers_means_no_quorum_possible() -> None:
    with pytest.raises(ValueError, match="quorum"):
        verify_note(signed(CHECKPOINT_TEXT, NAMES[0]), [], 1)


# ============================================================================ checkpoints


def test_checkpoint_format_and_round_trip() -> None:
    checkpoint = Checkpoint(ORIGIN, 1234, bytes(range(32)), ("ext one", "ext-two"))
    text = format_checkpoint(checkpoint)
    assert text == f"{ORIGIN}\n1234\n{b64(bytes(range(32)))}\next one\next-two\n"
    assert parse_checkpoint(text) == checkpoint


@pytest.mark.parametrize(
    ("size_text", "size"),
    [("0", 0), ("1", 1), ("10", 10), (str(MAX_TREE_SIZE), MAX_TREE_SIZE)],
    ids=["zero", "one", "ten", "max"],
)
def test_checkpoint_sizes_accepted(size_text: str, size: int) -> None:
    assert parse_checkpoint(f"{ORIGIN}\n{size_text}\n{b64(EMPTY_ROOT)}\n").size == size


ROOT = b64(EMPTY_ROOT)
BAD_SIZE = "not ASCII decimal digits without sign or leading zeros"
TOO_BIG = "2^63 or more"
ROOT_B64 = "root hash (line 3) is not standard base64"
# (id, checkpoint text, fragment of the EncodingError message)
BAD_CHECKPOINTS = [
    ("leading-zero", f"{ORIGIN}\n007\n{ROOT}\n", BAD_SIZE),
    ("double-zero", f"{ORIGIN}\n00\n{ROOT}\n", BAD_SIZE),
    ("negative", f"{ORIGIN}\n-1\n{ROOT}\n", BAD_SIZE),
    ("plus-sign", f"{ORIGIN}\n+1\n{ROOT}\n", BAD_SIZE),
    ("hex-size", f"{ORIGIN}\n0x10\n{ROOT}\n", BAD_SIZE),
    ("exponent", f"{ORIGIN}\n1e3\n{ROOT}\n", BAD_SIZE),
    ("underscore", f"{ORIGIN}\n1_000\n{ROOT}\n", BAD_SIZE),
    ("space-in-size", f"{ORIGIN}\n 1\n{ROOT}\n", BAD_SIZE),
    ("arabic-indic-digits", f"{ORIGIN}\n١٢\n{ROOT}\n", BAD_SIZE),
    ("fullwidth-digits", f"{ORIGIN}\n１２\n{ROOT}\n", BAD_SIZE),
    ("empty-size", f"{ORIGIN}\n\n{ROOT}\n", "tree size (line 2) is empty"),
    ("size-2-63", f"{ORIGIN}\n{2**63}\n{ROOT}\n", TOO_BIG),
    ("size-huge", f"{ORIGIN}\n{'9' * 5000}\n{ROOT}\n", TOO_BIG),
    ("root-31-bytes", f"{ORIGIN}\n1\n{b64(bytes(31))}\n", "31 bytes, not 32"),
    ("root-33-bytes", f"{ORIGIN}\n1\n{b64(bytes(33))}\n", "33 bytes, not 32"),
    ("root-unpadded", f"{ORIGIN}\n1\n{ROOT.rstrip('=')}\n", ROOT_B64),
    ("root-nonzero-padding-bits", f"{ORIGIN}\n1\n{ROOT[:-2]}V=\n", "not canonical base64"),
    ("root-base64url", f"{ORIGIN}\n1\n{b64(bytes([0xFB]) * 32).replace('+', '-')}\n", ROOT_B64),
    ("root-hex", f"{ORIGIN}\n1\n{EMPTY_ROOT.hex()}\n", "48 bytes, not 32"),
    ("root-empty", f"{ORIGIN}\n1\n\n", "root hash (line 3) is empty"),
    ("empty-origin", f"\n1\n{ROOT}\n", "origin (line 1) is empty"),
    ("rantai-origin", f"rantai-event-v1\n1\n{ROOT}\n", "reserved"),
    ("rantai-origin-bare", f"rantai-\n1\n{ROOT}\n", "reserved"),
    ("no-final-newline", f"{ORIGIN}\n1\n{ROOT}", "does not end with a newline"),
    ("two-lines", f"{ORIGIN}\n1\n", "has 2 line(s)"),
    ("one-line", f"{ORIGIN}\n", "has 1 line(s)"),
    ("empty", "", "text is empty"),
    ("empty-extension", f"{ORIGIN}\n1\n{ROOT}\n\n", "extension line 4 is empty"),
    ("empty-extension-middle", f"{ORIGIN}\n1\n{ROOT}\next\n\next\n", "extension line 5 is empty"),
    ("crlf", f"{ORIGIN}\r\n1\r\n{ROOT}\r\n", "control character U+000D"),
    ("control-in-origin", f"ledger\x00example\n1\n{ROOT}\n", "control character U+0000"),
    ("lone-surrogate-origin", f"ledger\ud800\n1\n{ROOT}\n", "lone surrogate"),
]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [(t, m) for _, t, m in BAD_CHECKPOINTS],
    ids=[i for i, _, _ in BAD_CHECKPOINTS],
)
def test_bad_checkpoints_rejected(text: str, fragment: str) -> None:
    with pytest.raises(EncodingError, match=re.escape(fragment)):
        parse_checkpoint(text)


def test_checkpoint_origin_per_spec_need_not_be_a_key_name() -> None:
    # tlog-checkpoint: clients MUST NOT assume the origin follows the recommended format.
    text = f"My Log + friends\n1\n{ROOT}\n"
    assert parse_checkpoint(text).origin == "My Log + friends"
    assert parse_checkpoint(f"Rantai-Log\n1\n{ROOT}\n").origin == "Rantai-Log"


BAD_CHECKPOINT_FIELDS: list[tuple[str, Callable[[], Checkpoint]]] = [
    ("rantai-origin", lambda: Checkpoint("rantai-vote-v1", 1, EMPTY_ROOT)),
    ("empty-origin", lambda: Checkpoint("", 1, EMPTY_ROOT)),
    ("newline-origin", lambda: Checkpoint("a\nb", 1, EMPTY_ROOT)),
    ("negative-size", lambda: Checkpoint(ORIGIN, -1, EMPTY_ROOT)),
    ("size-2-63", lambda: Checkpoint(ORIGIN, 2**63, EMPTY_ROOT)),
    ("short-root", lambda: Checkpoint(ORIGIN, 1, bytes(31))),
    ("empty-extension", lambda: Checkpoint(ORIGIN, 1, EMPTY_ROOT, ("",))),
    ("newline-extension", lambda: Checkpoint(ORIGIN, 1, EMPTY_ROOT, ("a\nb",))),
]


@pytest.mark.parametrize(
    "build", [b for _, b in BAD_CHECKPOINT_FIELDS], ids=[i for i, _ in BAD_CHECKPOINT_FIELDS]
)
def test_bad_checkpoint_fields_rejected(build: Callable[[], Checkpoint]) -> None:
    with pytest.raises(EncodingError):
        build()


def test_checkpoint_field_types() -> None:
    with pytest.raises(TypeError):
        Checkpoint(ORIGIN, True, EMPTY_ROOT)
    with pytest.raises(TypeError):
        Checkpoint(ORIGIN, 1, EMPTY_ROOT.hex())  # type: ignore[arg-type]


def test_verify_checkpoint_origin_mismatch_is_signature_error() -> None:
    other = Checkpoint("ledger.example/other-coop", 7, CHECKPOINT.root_hash)
    text = format_checkpoint(other)
    data = format_note(text, [sign_checkpoint(other, name, KEYS[name]) for name in NAMES])
    with pytest.raises(SignatureError, match="origin"):
        verify_checkpoint(data, ORIGIN, VERIFIERS, 3)


def test_verify_checkpoint_signed_garbage_is_encoding_error() -> None:
    data = signed("not a checkpoint\n", *NAMES)
    with pytest.raises(EncodingError):
        verify_checkpoint(data, ORIGIN, VERIFIERS, 3)


def test_verify_checkpoint_checks_signatures_before_body() -> None:
    # An unsigned malformed body reports the missing quorum, not the body's format.
    data = format_note("not a checkpoint\n", [sign_note("not a checkpoint\n", "x", OUTSIDER)])
    with pytest.raises(SignatureError):
        verify_checkpoint(data, ORIGIN, VERIFIERS, 3)


def test_checkpoint_with_extensions_signed_and_verified() -> None:
    checkpoint = Checkpoint(ORIGIN, 9, bytes(32), ("— looks like a signature line",))
    text = format_checkpoint(checkpoint)
    data = format_note(text, [sign_checkpoint(checkpoint, name, KEYS[name]) for name in NAMES[:3]])
    assert verify_checkpoint(data, ORIGIN, VERIFIERS, 3) == checkpoint
