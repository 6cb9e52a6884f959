"""C2SP signed notes (Ed25519, signature type 0x01) and tlog-checkpoint bodies.

A Rantai checkpoint is a C2SP ``tlog-checkpoint`` (origin, decimal tree size, base64 root hash,
optional extension lines) carried as a C2SP ``signed-note`` and cosigned by the validators
(DESIGN.md §4). This module formats and parses both layers strictly, signs a note text with an
Ed25519 key, and checks a note's signatures against a set of known validators and a quorum:
:func:`check_note` reports who signed, who is missing and whose signature is bad without raising;
:func:`verify_note` and :func:`verify_checkpoint` raise when the quorum is not met.

Following c2sp.org/signed-note and golang.org/x/mod/sumdb/note:

* a note is valid UTF-8 without ASCII control characters other than newline; its text ends in a
  newline and is separated from the signature lines by the *last* blank line, so the text itself
  may contain blank lines;
* a signature line is ``U+2014 EM DASH, space, key name, space, base64(key id || signature)``;
  there are between 1 and :data:`MAX_SIGNATURES` of them and nothing after the last one;
* signatures whose (key name, key id) pair is not known are ignored; a signature from a known key
  that fails to verify makes the whole note fail (the spec's SHOULD, taken as a MUST);
* a signer that signs twice is counted once.

Where Go's note.Open accepts more than the specification requires, this module is stricter:
base64 must be canonical (zero padding bits, as RFC 4648 §3.5 permits decoders to require), so
one note has one byte encoding and flipping any bit of a signed note is always noticed; every
signature line of a known key is verified, not only the first; a note is limited to
:data:`MAX_NOTE_SIZE` bytes.

Rantai's own signatures are over ``rantai-<purpose>-v1\\n + JCS(...)``. A checkpoint origin may
never start with ``rantai-`` and :func:`sign_note` refuses any text that does, so a note
signature can never be mistaken for an event or vote signature.

Deliberately not here: other signature types (witness cosignatures 0x04, ECDSA, RFC 6962 tree
head signatures: their lines are simply ignored as unknown keys), key generation and private key
files, and any I/O, clock or randomness. The Merkle tree itself lives in ``ledger/merkle.py``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger.errors import EncodingError, SignatureError

__all__ = [
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "MAX_TREE_SIZE",
    "RESERVED_ORIGIN_PREFIX",
    "SIGNATURE_TYPE_ED25519",
    "Checkpoint",
    "Note",
    "NoteCheck",
    "NoteSignature",
    "NoteVerifier",
    "check_key_name",
    "check_note",
    "format_checkpoint",
    "format_note",
    "format_verifier_key",
    "parse_checkpoint",
    "parse_note",
    "parse_verifier_key",
    "sign_checkpoint",
    "sign_note",
    "verify_checkpoint",
    "verify_note",
]

SIGNATURE_TYPE_ED25519 = 0x01
"""The C2SP signed-note signature type byte of Ed25519, the only type this module verifies."""

MAX_NOTE_SIZE = 1 << 20
"""Largest signed note, in bytes, that :func:`parse_note` accepts or :func:`format_note` makes."""

MAX_SIGNATURES = 100
"""Most signature lines in one note (Go's limit; the spec requires accepting at least 16)."""

MAX_TREE_SIZE = (1 << 63) - 1
"""Largest tree size a checkpoint may carry (sizes are signed 64-bit integers in Go's tlog)."""

RESERVED_ORIGIN_PREFIX = "rantai-"
"""Prefix of Rantai's own signature domains; no checkpoint origin or signed note text uses it."""

_SIGNATURE_PREFIX = "\u2014 "  # EM DASH, SPACE
_ED25519_PUBLIC_KEY_SIZE = 32
_ED25519_SIGNATURE_SIZE = 64
_KEY_ID_SIZE = 4
_ROOT_HASH_SIZE = 32

# Controls below U+0020 other than newline; DEL and C1 controls are allowed by the spec.
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")
_CONTROL_OR_NEWLINE = re.compile("[\x00-\x1f]")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
# Unicode White_Space as Go's unicode.IsSpace sees it: these Latin-1 characters, and above
# U+00FF exactly the characters of categories Zs, Zl and Zp.
_LATIN1_SPACES = frozenset("\t\n\v\f\r \x85\xa0")
_SPACE_CATEGORIES = frozenset({"Zs", "Zl", "Zp"})


def _is_unicode_space(char: str) -> bool:
    if ord(char) <= 0xFF:
        return char in _LATIN1_SPACES
    return unicodedata.category(char) in _SPACE_CATEGORIES


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise EncodingError(
            f"{what} is not valid Unicode: lone surrogate at character {e.start}"
        ) from e


def _check_key_name(name: object, what: str = "key name") -> bytes:
    """Validate a signed-note key name and return its UTF-8 bytes.

    A key name is non-empty and has no Unicode space and no ``+`` (the spec). It also has no
    control character, because it must fit on a signature line of a note.
    """
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    if not name:
        raise EncodingError(f"{what} is empty")
    for i, char in enumerate(name):
        if char == "+":
            raise EncodingError(f"{what} {name!r} contains '+' at character {i}")
        if _is_unicode_space(char):
            raise EncodingError(
                f"{what} {name!r} contains the Unicode space U+{ord(char):04X} at character {i}"
            )
        if ord(char) < 0x20:
            raise EncodingError(
                f"{what} {name!r} contains the control character U+{ord(char):04X} at character {i}"
            )
    return _utf8(name, what)


def check_key_name(name: object, what: str = "key name") -> str:
    """``name`` if it is a valid signed-note key name (for genesis origins and validator names).

    Raises:
        EncodingError: empty, or holding a ``+``, a Unicode space or a control character.
    """
    if not isinstance(name, str):
        raise EncodingError(f"{what} must be a string, got {name!r}")
    _check_key_name(name, what)
    return name


def _check_note_text(text: object, what: str = "note text") -> bytes:
    """Validate a note text (the signed part of a note) and return its UTF-8 bytes."""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, not {type(text).__name__}")
    if not text:
        raise EncodingError(f"{what} is empty; it must be at least one line ending in a newline")
    if not text.endswith("\n"):
        raise EncodingError(f"{what} does not end with a newline")
    control = _CONTROL.search(text)
    if control is not None:
        raise EncodingError(
            f"{what} contains the control character U+{ord(control.group()):04X} "
            f"at character {control.start()}"
        )
    return _utf8(text, what)


def _check_line(line: object, what: str) -> None:
    """Validate one non-empty line of a checkpoint body (no newline, no control character)."""
    if not isinstance(line, str):
        raise TypeError(f"{what} must be a str, not {type(line).__name__}")
    if not line:
        raise EncodingError(f"{what} is empty")
    control = _CONTROL_OR_NEWLINE.search(line)
    if control is not None:
        raise EncodingError(
            f"{what} contains the control character U+{ord(control.group()):04X} "
            f"at character {control.start()}"
        )
    _utf8(line, what)


def _decode_base64(text: str, what: str) -> bytes:
    """Decode canonical standard base64 with padding (RFC 4648 §4), or raise EncodingError."""
    if not text:
        raise EncodingError(f"{what} is empty")
    if len(text) % 4 != 0 or _BASE64.fullmatch(text) is None:
        raise EncodingError(f"{what} is not standard base64 with padding: {text[:100]!r}")
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error as e:  # pragma: no cover - the pattern above already excludes this
        raise EncodingError(f"{what} is not standard base64: {e}") from e
    if base64.b64encode(raw).decode("ascii") != text:
        # Non-zero padding bits: a second spelling of the same bytes, refused so that a note
        # has exactly one encoding.
        raise EncodingError(f"{what} is not canonical base64 (non-zero padding bits)")
    return raw


def _encode_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _ed25519_key_id(name_utf8: bytes, public_key: bytes) -> bytes:
    digest = hashlib.sha256(
        name_utf8 + b"\n" + bytes([SIGNATURE_TYPE_ED25519]) + public_key
    ).digest()
    return digest[:_KEY_ID_SIZE]


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """A known Ed25519 note key: the name it signs under and its raw public key.

    Attributes:
        name: the key name (for Rantai, the validator's ``name`` from the genesis document).
        public_key: the 32 raw bytes of the Ed25519 public key (RFC 8032).

    Raises:
        EncodingError: if the name is not a valid key name or the key is not 32 bytes.
    """

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if not isinstance(self.public_key, bytes):
            raise TypeError(f"public key must be bytes, not {type(self.public_key).__name__}")
        if len(self.public_key) != _ED25519_PUBLIC_KEY_SIZE:
            raise EncodingError(
                f"Ed25519 public key of {self.name!r} is {len(self.public_key)} bytes, "
                f"not {_ED25519_PUBLIC_KEY_SIZE}"
            )

    @property
    def key_id(self) -> bytes:
        """The 4-byte key id: ``sha256(name || 0x0A || 0x01 || public_key)[:4]``."""
        return _ed25519_key_id(self.name.encode("utf-8"), self.public_key)

    @property
    def vkey(self) -> str:
        """The verifier key string ``<name>+<hex key id>+<base64(0x01 || public_key)>``."""
        return format_verifier_key(self.name, self.public_key)


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line of a note, verified or not.

    Attributes:
        name: the key name on the line.
        key_id: the 4-byte key id that starts the decoded signature.
        signature: the remaining bytes (64 for Ed25519; other types may differ).

    Raises:
        EncodingError: if the name is invalid, the key id is not 4 bytes or the signature is
            empty.
    """

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if not isinstance(self.key_id, bytes) or not isinstance(self.signature, bytes):
            raise TypeError("key_id and signature must be bytes")
        if len(self.key_id) != _KEY_ID_SIZE:
            raise EncodingError(f"key id is {len(self.key_id)} bytes, not {_KEY_ID_SIZE}")
        if not self.signature:
            raise EncodingError("signature is empty")

    def line(self) -> str:
        """The signature line, without its final newline: ``— <name> <base64(id||sig)>``."""
        return f"{_SIGNATURE_PREFIX}{self.name} {_encode_base64(self.key_id + self.signature)}"


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed signed note: its text and its signature lines in order.

    Attributes:
        text: the signed text, ending in a newline (the separating blank line is not part of it).
        signatures: every signature line, in note order, duplicates included.

    Raises:
        EncodingError: if the text is not a valid note text or there are not between 1 and
            :data:`MAX_SIGNATURES` signatures.
    """

    text: str
    signatures: tuple[NoteSignature, ...]

    def __post_init__(self) -> None:
        _check_note_text(self.text)
        _check_signature_list(self.signatures)


def _check_signature_list(signatures: object) -> None:
    if not isinstance(signatures, tuple):
        raise TypeError("signatures must be a tuple of NoteSignature")
    if not signatures:
        raise EncodingError("a note needs at least one signature")
    if len(signatures) > MAX_SIGNATURES:
        raise EncodingError(
            f"a note may have at most {MAX_SIGNATURES} signatures, not {len(signatures)}"
        )
    for signature in signatures:
        if not isinstance(signature, NoteSignature):
            raise TypeError("signatures must be a tuple of NoteSignature")


@dataclass(frozen=True, slots=True)
class NoteCheck:
    """The outcome of checking a note against known verifiers and a quorum.

    Names appear in the order of the verifiers given to :func:`check_note`. A name may appear in
    both ``signed_by`` and ``invalid`` when the note carries a good and a bad signature from it.

    Attributes:
        signed_by: names with at least one signature that verifies.
        missing: names without a signature that verifies.
        invalid: names with a signature line (matching name and key id) that does not verify.
        unknown: signature lines from unknown (name, key id) pairs, ignored as the spec requires;
            identical repeated lines are listed once.
        quorum: how many distinct names had to sign.
    """

    signed_by: tuple[str, ...]
    missing: tuple[str, ...]
    invalid: tuple[str, ...]
    unknown: tuple[NoteSignature, ...]
    quorum: int

    @property
    def ok(self) -> bool:
        """True iff no known key's signature is invalid and the quorum is met."""
        return not self.invalid and len(self.signed_by) >= self.quorum

    def explain(self) -> str:
        """A one-line human-readable account of the check."""
        signed = ", ".join(self.signed_by) or "nobody"
        parts = [f"signed by {signed} ({len(self.signed_by)} of {self.quorum} needed)"]
        if self.missing:
            parts.append(f"missing {', '.join(self.missing)}")
        if self.invalid:
            parts.append(f"invalid signature from {', '.join(self.invalid)}")
        if self.unknown:
            parts.append(f"{len(self.unknown)} signature(s) from unknown keys ignored")
        return "; ".join(parts)


def format_verifier_key(name: str, public_key: bytes) -> str:
    """Return the verifier key string of an Ed25519 note key.

    Args:
        name: the key name.
        public_key: the 32 raw bytes of the Ed25519 public key.

    Returns:
        ``<name>+<8 lowercase hex digits of the key id>+<base64(0x01 || public_key)>``.

    Raises:
        EncodingError: if the name or the key is invalid.
    """
    verifier = NoteVerifier(name, public_key)
    key = bytes([SIGNATURE_TYPE_ED25519]) + public_key
    return f"{name}+{verifier.key_id.hex()}+{_encode_base64(key)}"


def parse_verifier_key(vkey: str) -> NoteVerifier:
    """Parse a verifier key string ``<name>+<hex key id>+<base64(0x01 || public_key)>``.

    Strict: the key id is exactly 8 lowercase hex digits and must match the name and key, the
    base64 is canonical, the type byte is 0x01 and the key is 32 bytes.

    Args:
        vkey: the verifier key string.

    Returns:
        The verifier it describes.

    Raises:
        EncodingError: if the string is malformed in any way.
    """
    if not isinstance(vkey, str):
        raise TypeError(f"verifier key must be a str, not {type(vkey).__name__}")
    name, sep1, rest = vkey.partition("+")
    key_id_hex, sep2, key_b64 = rest.partition("+")
    if not sep1 or not sep2:
        raise EncodingError("verifier key does not have the form <name>+<key id>+<key>")
    _check_key_name(name, "verifier key name")
    if _KEY_ID_HEX.fullmatch(key_id_hex) is None:
        raise EncodingError(f"verifier key id {key_id_hex!r} is not 8 lowercase hexadecimal digits")
    key = _decode_base64(key_b64, "verifier key")
    if key[0] != SIGNATURE_TYPE_ED25519:
        raise EncodingError(
            f"verifier key has signature type 0x{key[0]:02x}; only 0x01 (Ed25519) is supported"
        )
    if len(key) != 1 + _ED25519_PUBLIC_KEY_SIZE:
        raise EncodingError(
            f"Ed25519 verifier key is {len(key) - 1} bytes, not {_ED25519_PUBLIC_KEY_SIZE}"
        )
    verifier = NoteVerifier(name, key[1:])
    if verifier.key_id != bytes.fromhex(key_id_hex):
        raise EncodingError(
            f"verifier key id {key_id_hex} does not match the name and key "
            f"(expected {verifier.key_id.hex()})"
        )
    return verifier


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> NoteSignature:
    """Sign a note text with an Ed25519 key under a key name.

    Args:
        text: the note text: non-empty, ending in a newline, without control characters other
            than newline, and not starting with ``rantai-`` (Rantai's signature domains).
        name: the key name to sign under (a validator's name).
        private_key: the Ed25519 private key.

    Returns:
        The signature, to be passed to :func:`format_note`.

    Raises:
        EncodingError: if the text or the name is invalid.
    """
    message = _check_note_text(text)
    if text.startswith(RESERVED_ORIGIN_PREFIX):
        raise EncodingError(
            f"refusing to sign a note text starting with {RESERVED_ORIGIN_PREFIX!r}: "
            "that prefix belongs to Rantai's own signature domains"
        )
    if len(message) >= MAX_NOTE_SIZE:
        raise EncodingError(f"note text is {len(message)} bytes; no note that large is accepted")
    name_utf8 = _check_key_name(name)
    public_key = private_key.public_key().public_bytes_raw()
    return NoteSignature(
        name=name,
        key_id=_ed25519_key_id(name_utf8, public_key),
        signature=private_key.sign(message),
    )


def format_note(text: str, signatures: Sequence[NoteSignature]) -> bytes:
    """Encode a signed note: the text, a blank line, then one line per signature.

    Args:
        text: the note text (see :func:`sign_note`).
        signatures: between 1 and :data:`MAX_SIGNATURES` signatures, written in this order.

    Returns:
        The note bytes, exactly what :func:`parse_note` reads back.

    Raises:
        EncodingError: if the text is invalid, there are no or too many signatures, or the
            note would be larger than :data:`MAX_NOTE_SIZE`.
    """
    message = _check_note_text(text)
    signature_tuple = tuple(signatures)
    _check_signature_list(signature_tuple)
    lines = "".join(signature.line() + "\n" for signature in signature_tuple)
    note = message + b"\n" + lines.encode("utf-8")
    if len(note) > MAX_NOTE_SIZE:
        raise EncodingError(f"note is {len(note)} bytes, more than {MAX_NOTE_SIZE}")
    return note


def _parse_signature_line(line: str, number: int) -> NoteSignature:
    where = f"signature line {number}"
    if not line.startswith(_SIGNATURE_PREFIX):
        raise EncodingError(f"{where} does not start with an em dash (U+2014) and a space")
    name, space, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
    _check_key_name(name, f"key name on {where}")
    if not space or not encoded:
        raise EncodingError(f"{where} has no signature after the key name")
    raw = _decode_base64(encoded, f"signature on {where}")
    if len(raw) <= _KEY_ID_SIZE:
        raise EncodingError(
            f"signature on {where} is {len(raw)} bytes; it needs a 4-byte key id "
            "and at least one byte of signature"
        )
    return NoteSignature(name=name, key_id=raw[:_KEY_ID_SIZE], signature=raw[_KEY_ID_SIZE:])


def parse_note(data: bytes) -> Note:
    """Parse a signed note strictly, without checking any signature.

    Args:
        data: the note bytes.

    Returns:
        The note's text and all its signature lines, in order (duplicates kept).

    Raises:
        EncodingError: if the note is larger than :data:`MAX_NOTE_SIZE`, not valid UTF-8, has a
            control character other than newline, has no blank line before the signatures, has
            no, too many or malformed signature lines, or anything after the last one.
    """
    if not isinstance(data, bytes | bytearray):
        raise TypeError(f"a note must be bytes, not {type(data).__name__}")
    if len(data) > MAX_NOTE_SIZE:
        raise EncodingError(f"note is {len(data)} bytes, more than {MAX_NOTE_SIZE}")
    try:
        note = bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise EncodingError(f"note is not valid UTF-8 at byte {e.start}") from e
    control = _CONTROL.search(note)
    if control is not None:
        raise EncodingError(
            f"note contains the control character U+{ord(control.group()):04X} "
            f"at character {control.start()}"
        )
    split = note.rfind("\n\n")
    if split < 0:
        raise EncodingError("note has no blank line between its text and its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block:
        raise EncodingError("note has no signature lines after its last blank line")
    if not block.endswith("\n"):
        raise EncodingError("note does not end with a newline after its last signature line")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise EncodingError(
            f"note has {len(lines)} signature lines; at most {MAX_SIGNATURES} are accepted"
        )
    signatures = tuple(_parse_signature_line(line, i) for i, line in enumerate(lines, 1))
    return Note(text=text, signatures=signatures)


def _verifier_index(
    verifiers: Sequence[NoteVerifier],
) -> tuple[dict[tuple[str, bytes], NoteVerifier], tuple[str, ...]]:
    index: dict[tuple[str, bytes], NoteVerifier] = {}
    names: dict[str, None] = {}
    for verifier in verifiers:
        if not isinstance(verifier, NoteVerifier):
            raise TypeError("verifiers must be NoteVerifier instances")
        key = (verifier.name, verifier.key_id)
        known = index.setdefault(key, verifier)
        if known != verifier:
            # Two keys under one (name, key id): a signature could not be attributed.
            raise ValueError(f"ambiguous verifiers: two keys for {verifier.name}+{key[1].hex()}")
        names[verifier.name] = None
    return index, tuple(names)


def _ed25519_accepts(public_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(signature) != _ED25519_SIGNATURE_SIZE:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def check_note(note: Note, verifiers: Sequence[NoteVerifier], quorum: int) -> NoteCheck:
    """Check a note's signatures against known verifiers and a quorum, without raising.

    Signatures whose (name, key id) pair matches no verifier are ignored. Every signature that
    does match is verified. The quorum counts distinct verifier names, so a signer that signed
    twice counts once (a name may have several keys, e.g. during a rotation).

    Args:
        note: a parsed note.
        verifiers: the known keys, e.g. the genesis validators.
        quorum: how many distinct verifier names must have signed; at least 1 (a note nobody
            known signed is never valid) and at most the number of distinct names.

    Returns:
        The outcome; its ``ok`` is true iff no known key's signature is invalid and at least
        ``quorum`` names signed.

    Raises:
        ValueError: if the quorum is out of range or two different keys share a name and key id
            (a configuration error, not a property of the note).
    """
    index, names = _verifier_index(verifiers)
    if isinstance(quorum, bool) or not isinstance(quorum, int):
        raise TypeError("quorum must be an int")
    if not 1 <= quorum <= len(names):
        raise ValueError(f"quorum {quorum} is not between 1 and {len(names)} (the verifiers)")
    message = note.text.encode("utf-8")
    good: set[str] = set()
    bad: set[str] = set()
    unknown: dict[NoteSignature, None] = {}
    seen: dict[NoteSignature, bool] = {}
    for signature in note.signatures:
        verifier = index.get((signature.name, signature.key_id))
        if verifier is None:
            unknown[signature] = None
            continue
        if signature not in seen:
            seen[signature] = _ed25519_accepts(verifier.public_key, message, signature.signature)
        (good if seen[signature] else bad).add(verifier.name)
    return NoteCheck(
        signed_by=tuple(name for name in names if name in good),
        missing=tuple(name for name in names if name not in good),
        invalid=tuple(name for name in names if name in bad),
        unknown=tuple(unknown),
        quorum=quorum,
    )


def verify_note(data: bytes, verifiers: Sequence[NoteVerifier], quorum: int) -> Note:
    """Parse a signed note and require a quorum of valid signatures from known keys.

    Args:
        data: the note bytes.
        verifiers: the known keys.
        quorum: how many distinct verifier names must have signed (see :func:`check_note`).

    Returns:
        The note. Only now may its text be trusted.

    Raises:
        EncodingError: if the note is malformed.
        SignatureError: if a known key's signature does not verify or the quorum is not met;
            the message names who signed, who is missing and whose signature is invalid.
        ValueError: if the quorum or the verifiers are misconfigured.
    """
    note = parse_note(data)
    result = check_note(note, verifiers, quorum)
    if not result.ok:
        raise SignatureError(f"note not accepted: {result.explain()}")
    return note


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A C2SP tlog-checkpoint: a log's tree head.

    Attributes:
        origin: the log's identity (first line): non-empty, not starting with ``rantai-``.
        size: the number of leaves, 0 <= size <= :data:`MAX_TREE_SIZE`.
        root_hash: the 32-byte RFC 6962/9162 Merkle tree root at that size.
        extensions: optional further lines, each non-empty (not recommended by the spec).

    Raises:
        EncodingError: if any field breaks the format.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "checkpoint origin")
        if self.origin.startswith(RESERVED_ORIGIN_PREFIX):
            raise EncodingError(
                f"checkpoint origin {self.origin!r} starts with {RESERVED_ORIGIN_PREFIX!r}, "
                "which is reserved for Rantai's own signature domains"
            )
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise TypeError("checkpoint size must be an int")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise EncodingError(f"checkpoint size {self.size} is not between 0 and 2^63 - 1")
        if not isinstance(self.root_hash, bytes):
            raise TypeError("checkpoint root hash must be bytes")
        if len(self.root_hash) != _ROOT_HASH_SIZE:
            raise EncodingError(
                f"checkpoint root hash is {len(self.root_hash)} bytes, not {_ROOT_HASH_SIZE}"
            )
        if not isinstance(self.extensions, tuple):
            raise TypeError("checkpoint extensions must be a tuple of str")
        for number, extension in enumerate(self.extensions, 4):
            _check_line(extension, f"checkpoint extension line {number}")


def format_checkpoint(checkpoint: Checkpoint) -> str:
    """Return the note text of a checkpoint.

    Args:
        checkpoint: the checkpoint (validated when it was built).

    Returns:
        ``origin\\n<decimal size>\\n<base64 root hash>\\n`` followed by each extension line and a
        newline.
    """
    lines = [
        checkpoint.origin,
        str(checkpoint.size),
        _encode_base64(checkpoint.root_hash),
        *checkpoint.extensions,
    ]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint note text strictly.

    Args:
        text: the text of a verified note (never parse an unverified one).

    Returns:
        The checkpoint.

    Raises:
        EncodingError: if the text does not end in a newline, has control characters, fewer
            than three lines or an empty line; if the origin starts with ``rantai-``; if the
            size is not ASCII decimal without sign and leading zeros, or is 2^63 or more; if
            the root hash is not canonical standard base64 of exactly 32 bytes.
    """
    _check_note_text(text, "checkpoint text")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise EncodingError(
            f"checkpoint has {len(lines)} line(s); it needs origin, tree size and root hash"
        )
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise EncodingError("checkpoint origin (line 1) is empty")
    if not size_text:
        raise EncodingError("checkpoint tree size (line 2) is empty")
    if _DECIMAL.fullmatch(size_text) is None:
        raise EncodingError(
            f"checkpoint tree size {size_text[:40]!r} is not ASCII decimal digits "
            "without sign or leading zeros"
        )
    # Compare digit counts before int(): a huge size must not reach int()'s own length limit.
    if len(size_text) > len(str(MAX_TREE_SIZE)) or int(size_text) > MAX_TREE_SIZE:
        raise EncodingError(f"checkpoint tree size {size_text[:40]} is 2^63 or more")
    root_hash = _decode_base64(root_text, "checkpoint root hash (line 3)")
    if len(root_hash) != _ROOT_HASH_SIZE:
        raise EncodingError(
            f"checkpoint root hash (line 3) is {len(root_hash)} bytes, not {_ROOT_HASH_SIZE}"
        )
    for number, extension in enumerate(extensions, 4):
        if not extension:
            raise EncodingError(f"checkpoint extension line {number} is empty")
    return Checkpoint(
        origin=origin, size=int(size_text), root_hash=root_hash, extensions=tuple(extensions)
    )


def sign_checkpoint(
    checkpoint: Checkpoint, name: str, private_key: Ed25519PrivateKey
) -> NoteSignature:
    """Cosign a checkpoint: sign its note text under a key name.

    Args:
        checkpoint: the checkpoint to sign.
        name: the signer's key name (the validator's name).
        private_key: the signer's Ed25519 key.

    Returns:
        The signature; ``format_note(format_checkpoint(checkpoint), signatures)`` makes the note.

    Raises:
        EncodingError: if the name is invalid.
    """
    return sign_note(format_checkpoint(checkpoint), name, private_key)


def verify_checkpoint(
    data: bytes, origin: str, verifiers: Sequence[NoteVerifier], quorum: int
) -> Checkpoint:
    """Verify a cosigned checkpoint note for a given log.

    The note's signatures are checked first (its text is not looked at before), then the text
    is parsed as a checkpoint, then its origin must be ``origin``.

    Args:
        data: the signed note bytes.
        origin: the expected origin (the genesis document's ``origin``).
        verifiers: the known keys (the genesis validators).
        quorum: how many distinct validators must have signed.

    Returns:
        The checkpoint.

    Raises:
        EncodingError: if the note or the checkpoint text is malformed.
        SignatureError: if the quorum is not met, a known key's signature is invalid, or the
            checkpoint is for another origin. The origin acts as the checkpoint's signing
            domain, so a checkpoint signed for another log is treated like a signature made
            for another purpose: it does not verify for this one.
        ValueError: if the quorum or the verifiers are misconfigured.
    """
    note = verify_note(data, verifiers, quorum)
    checkpoint = parse_checkpoint(note.text)
    if checkpoint.origin != origin:
        raise SignatureError(
            f"checkpoint is signed for origin {checkpoint.origin!r}, not {origin!r}"
        )
    return checkpoint
