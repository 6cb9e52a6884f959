"""HTTP request signatures: RFC 9421 with Ed25519 over an RFC 9530 content digest.

The profile every Rantai client and node uses (DESIGN.md §6, ``docs/decisions.md`` D26)::

    Content-Digest: sha-256=:<base64 of sha256(body)>:
    Signature-Input: sig1=("@method" "@path" "@query" "content-digest");created=<unix time>\\
        ;keyid="<key id>";alg="ed25519";nonce="<16 to 64 characters>"
    Signature: sig1=:<base64 of the 64-byte Ed25519 signature>:

The signature is over the RFC 9421 §2.5 signature base of those components. A verifier takes
exactly one signature, covering exactly those four components (in any order), with exactly those
four parameters; ``created`` within :data:`MAX_SKEW_SECONDS` of its clock, either way. The
Ed25519 verification is :func:`ledger.keys.verify_signature` with an empty prefix: the ledger's
one Ed25519 policy. A signature base starts with ``"@`` or ``"content-digest"`` and its first
line holds a space, so it is never the ``PREFIX + JCS`` of an event or vote signature, nor a
checkpoint note (whose first line, the origin, has no space).

Pure functions: the time is passed in (``created``, ``now``) and nothing here reads a clock,
opens a socket or knows a route. :class:`ReplayGuard` is the one piece of state: the nonces
a node has accepted, for as long as their signatures could still be accepted.

What it does not do: decide who may read what (``api.access``), find keys (the caller's
``lookup_public_key``), or parse RFC 8941 beyond what the three fields use (decimals and dates
are refused as malformed).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.errors import AuthenticationError, SignatureError
from ledger.keys import verify_signature

__all__ = [
    "ACCEPT_SIGNATURE",
    "ALGORITHM",
    "COVERED_COMPONENTS",
    "LABEL",
    "MAX_SKEW_SECONDS",
    "REPLAY_SLICE_SECONDS",
    "BareItem",
    "InnerList",
    "Item",
    "ReplayGuard",
    "Token",
    "VerifiedRequest",
    "content_digest",
    "parse_dictionary",
    "sign_request",
    "signature_base",
    "signature_params",
    "verify_request",
]

ALGORITHM = "ed25519"
"""The one ``alg`` accepted (RFC 9421 §3.3.6)."""
COVERED_COMPONENTS = ("@method", "@path", "@query", "content-digest")
"""What a signature must cover, each exactly once."""
ACCEPT_SIGNATURE = 'sig1=("@method" "@path" "@query" "content-digest");created;nonce;alg="ed25519"'
"""The ``Accept-Signature`` field (RFC 9421 §5.1) that asks a client for this profile."""
LABEL = "sig1"
"""The label :func:`sign_request` gives its signature (a verifier takes any one label)."""
MAX_SKEW_SECONDS = 300
"""How far ``created`` may be from the verifier's clock, in the past or the future."""
REPLAY_SLICE_SECONDS = 10
"""How finely :class:`ReplayGuard` groups nonces by expiry: each group is dropped whole."""
_PARAMETERS = ("created", "keyid", "alg", "nonce")
_NONCE = re.compile(r"[\x21-\x7e]{16,64}")
_KEY_ID = re.compile(r"[0-9a-f]{64}")
_SF_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_SF_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_SF_INTEGER = re.compile(r"-?[0-9]{1,15}")


# --- RFC 8941 structured fields: the subset the three fields use -----------------------------


class Token(str):
    """An RFC 8941 token (a bare item that is not a quoted string)."""

    __slots__ = ()


BareItem = int | str | bytes | bool
"""An RFC 8941 bare item: integer, string (or :class:`Token`), byte sequence or boolean."""
Parameters = tuple[tuple[str, BareItem], ...]


@dataclass(frozen=True, slots=True)
class Item:
    """An RFC 8941 item: a bare item with parameters."""

    value: BareItem
    parameters: Parameters = ()


@dataclass(frozen=True, slots=True)
class InnerList:
    """An RFC 8941 inner list of items, with parameters."""

    items: tuple[Item, ...]
    parameters: Parameters = ()


def _malformed(detail: str) -> AuthenticationError:
    return AuthenticationError("signature-malformed", detail)


class _Parser:
    """RFC 8941 §4.2, strictly: any deviation raises ``signature-malformed``."""

    def __init__(self, field: str, text: str) -> None:
        if not text.isascii():
            raise _malformed(f"{field} is not ASCII")
        self.field = field
        self.text = text
        self.at = 0

    def _error(self, what: str) -> AuthenticationError:
        return _malformed(f"{self.field}: {what} at character {self.at}")

    def _peek(self) -> str:
        return self.text[self.at] if self.at < len(self.text) else ""

    def _skip(self, characters: str) -> None:
        while self._peek() and self._peek() in characters:
            self.at += 1

    def _expect(self, character: str) -> None:
        if self._peek() != character:
            raise self._error(f"expected {character!r}")
        self.at += 1

    def dictionary(self) -> dict[str, Item | InnerList]:
        members: dict[str, Item | InnerList] = {}
        self._skip(" ")
        while True:
            key = self._key()
            if key in members:
                raise self._error(f"member {key!r} twice")
            if self._peek() == "=":
                self.at += 1
                members[key] = self._member()
            else:
                members[key] = Item(True, self._parameters())
            self._skip(" \t")
            if not self._peek():
                return members
            self._expect(",")
            self._skip(" \t")
            if not self._peek():
                raise self._error("a trailing comma")

    def _member(self) -> Item | InnerList:
        if self._peek() != "(":
            return Item(self._bare_item(), self._parameters())
        self.at += 1
        items: list[Item] = []
        while True:
            self._skip(" ")
            if self._peek() == ")":
                self.at += 1
                return InnerList(tuple(items), self._parameters())
            items.append(Item(self._bare_item(), self._parameters()))
            if self._peek() not in (" ", ")"):
                raise self._error("expected a space or ')' in an inner list")

    def _parameters(self) -> Parameters:
        found: dict[str, BareItem] = {}
        while self._peek() == ";":
            self.at += 1
            self._skip(" ")
            key = self._key()
            if key in found:
                raise self._error(f"parameter {key!r} twice")
            if self._peek() == "=":
                self.at += 1
                found[key] = self._bare_item()
            else:
                found[key] = True
        return tuple(found.items())

    def _key(self) -> str:
        match = _SF_KEY.match(self.text, self.at)
        if match is None:
            raise self._error("expected a key")
        self.at = match.end()
        return match.group()

    def _bare_item(self) -> BareItem:
        first = self._peek()
        if first == "-" or first.isdigit():
            return self._integer()
        if first == '"':
            return self._string()
        if first == ":":
            return self._bytes()
        if first == "?":
            return self._boolean()
        if first.isalpha() or first == "*":
            match = _SF_TOKEN.match(self.text, self.at)
            assert match is not None
            self.at = match.end()
            return Token(match.group())
        raise self._error("expected an item")

    def _integer(self) -> int:
        match = _SF_INTEGER.match(self.text, self.at)
        if match is None:
            raise self._error("expected an integer")
        self.at = match.end()
        if self._peek() == "." or self._peek().isdigit():
            raise self._error("a decimal or an integer over 15 digits")
        return int(match.group())

    def _string(self) -> str:
        self.at += 1
        out: list[str] = []
        while True:
            character = self._peek()
            if not character:
                raise self._error("an unterminated string")
            self.at += 1
            if character == '"':
                return "".join(out)
            if character == "\\":
                escaped = self._peek()
                if escaped not in ('"', "\\"):
                    raise self._error("a bad escape in a string")
                self.at += 1
                out.append(escaped)
            elif not " " <= character <= "~":
                raise self._error("a control character in a string")
            else:
                out.append(character)

    def _bytes(self) -> bytes:
        end = self.text.find(":", self.at + 1)
        if end < 0:
            raise self._error("an unterminated byte sequence")
        encoded = self.text[self.at + 1 : end]
        try:
            value = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as e:
            raise self._error("a byte sequence that is not base64") from e
        self.at = end + 1
        return value

    def _boolean(self) -> bool:
        value = self.text[self.at + 1 : self.at + 2]
        if value not in ("0", "1"):
            raise self._error("expected ?0 or ?1")
        self.at += 2
        return value == "1"


def parse_dictionary(field: str, text: str) -> dict[str, Item | InnerList]:
    """Parse an RFC 8941 dictionary field value (integers, strings, tokens, byte sequences
    and booleans; no decimals or dates).

    Args:
        field: the field's name, for error messages.
        text: the field value (several field lines joined with ``", "``).

    Raises:
        AuthenticationError: ``signature-malformed``, naming the field and where it breaks.
    """
    return _Parser(field, text.strip(" \t")).dictionary()


def _serialize_bare(value: BareItem) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode() + ":"
    if isinstance(value, Token):
        return str(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _serialize_parameters(parameters: Sequence[tuple[str, BareItem]]) -> str:
    return "".join(
        f";{key}" if value is True else f";{key}={_serialize_bare(value)}"
        for key, value in parameters
    )


def signature_params(components: Sequence[str], parameters: Sequence[tuple[str, BareItem]]) -> str:
    """The serialised ``@signature-params`` value: the covered components as an inner list of
    strings, with the signature's parameters (RFC 9421 §2.3)."""
    covered = " ".join(_serialize_bare(name) for name in components)
    return f"({covered}){_serialize_parameters(parameters)}"


def signature_base(
    values: Sequence[tuple[str, str]], parameters: Sequence[tuple[str, BareItem]]
) -> bytes:
    """The RFC 9421 §2.5 signature base.

    One line ``"<component>": <value>`` per covered component, in order, then
    ``"@signature-params": <inner list and parameters>`` with no newline after it.

    Args:
        values: each covered component's name and value (a field value already trimmed and
            its lines joined with ``", "``).
        parameters: the signature's parameters, in order.

    Raises:
        AuthenticationError: ``signature-malformed`` when a value is not printable ASCII (a
            newline in a value would forge a line of the base).
    """
    lines = []
    for name, value in values:
        if not all(" " <= character <= "~" for character in value):
            raise _malformed(f"the value of {name} is not printable ASCII")
        lines.append(f"{_serialize_bare(name)}: {value}")
    names = [name for name, _ in values]
    lines.append(f'"@signature-params": {signature_params(names, parameters)}')
    return "\n".join(lines).encode("ascii")


def content_digest(body: bytes) -> str:
    """The RFC 9530 ``Content-Digest`` of ``body``: ``sha-256=:<base64>:``."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"


def _component_values(method: str, path: str, query: str, digest: str) -> dict[str, str]:
    return {
        "@method": method,
        "@path": path or "/",
        "@query": "?" + query,
        "content-digest": digest,
    }


# --- signing -----------------------------------------------------------------------------------


def sign_request(
    method: str,
    path_with_query: str,
    body: bytes,
    private_key: Ed25519PrivateKey,
    key_id: str,
    created: int,
    *,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers that sign a request: ``Content-Digest``, ``Signature-Input``, ``Signature``.

    Args:
        method: the request method as sent, e.g. ``"GET"`` (methods are case-sensitive).
        path_with_query: the request target as sent (percent-encoded path, ``?`` and query).
        body: the request body (``b""`` for none).
        private_key: the signer's key.
        key_id: its key id (``sha256`` of the raw public key, hex).
        created: the signing time (Unix seconds).
        nonce: 16 to 64 printable characters, never used twice by this key within the
            window; a random one when ``None``.
    """
    path, _, query = path_with_query.partition("?")
    digest = content_digest(body)
    values = _component_values(method, path, query, digest)
    parameters: Parameters = (
        ("created", created),
        ("keyid", key_id),
        ("alg", ALGORITHM),
        ("nonce", secrets.token_urlsafe(24) if nonce is None else nonce),
    )
    base = signature_base([(name, values[name]) for name in COVERED_COMPONENTS], parameters)
    signature = base64.b64encode(private_key.sign(base)).decode()
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{LABEL}={signature_params(COVERED_COMPONENTS, parameters)}",
        "Signature": f"{LABEL}=:{signature}:",
    }


# --- verifying ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedRequest:
    """A request whose signature verified: who signed it, when, and its nonce."""

    key_id: str
    created: int
    nonce: str


def _only_member(field: str, text: str) -> tuple[str, Item | InnerList]:
    members = parse_dictionary(field, text)
    if len(members) != 1:
        raise _malformed(f"{field} must hold exactly one signature, it holds {len(members)}")
    ((label, member),) = members.items()
    return label, member


def _signature_input(text: str) -> tuple[str, tuple[str, ...], dict[str, BareItem]]:
    label, member = _only_member("Signature-Input", text)
    if not isinstance(member, InnerList):
        raise _malformed("Signature-Input must be an inner list of components")
    names = []
    for item in member.items:
        if type(item.value) is not str or item.parameters:
            raise _malformed("covered components must be strings without parameters")
        names.append(item.value)
    return label, tuple(names), dict(member.parameters)


def _check_components(names: tuple[str, ...]) -> None:
    if sorted(names) != sorted(COVERED_COMPONENTS):
        raise AuthenticationError(
            "signature-components",
            f"the signature covers {', '.join(names) or 'nothing'}; it must cover exactly "
            f"{', '.join(COVERED_COMPONENTS)}",
        )


def _check_parameters(parameters: dict[str, BareItem], now: int) -> tuple[int, str, str]:
    """``created``, ``keyid`` and ``nonce`` of a signature's parameters, checked."""
    unknown = sorted(set(parameters) - set(_PARAMETERS))
    if unknown:
        raise _malformed(f"unsupported signature parameters: {', '.join(unknown)}")
    alg = parameters.get("alg")
    if alg != ALGORITHM or type(alg) is not str:
        raise AuthenticationError("signature-algorithm", f'alg must be "{ALGORITHM}", got {alg!r}')
    created, key, nonce = (parameters.get(name) for name in ("created", "keyid", "nonce"))
    if type(created) is not int:
        raise _malformed("created must be an integer (Unix seconds)")
    if type(key) is not str or not _KEY_ID.fullmatch(key):
        raise _malformed("keyid must be a key id (64 lowercase hex digits)")
    if type(nonce) is not str or not _NONCE.fullmatch(nonce):
        raise _malformed("nonce must be 16 to 64 printable characters without spaces")
    if created < now - MAX_SKEW_SECONDS:
        raise AuthenticationError(
            "signature-expired",
            f"the signature was created {now - created} s ago (at most {MAX_SKEW_SECONDS})",
        )
    if created > now + MAX_SKEW_SECONDS:
        raise AuthenticationError(
            "signature-future",
            f"the signature was created {created - now} s in the future "
            f"(at most {MAX_SKEW_SECONDS}; check the signer's clock)",
        )
    return created, key, nonce


def _check_digest(text: str, body: bytes) -> None:
    members = parse_dictionary("Content-Digest", text)
    digests = {}
    for algorithm, member in members.items():
        if not isinstance(member, Item) or type(member.value) is not bytes or member.parameters:
            raise _malformed(f"Content-Digest {algorithm} must be a byte sequence")
        if algorithm not in ("sha-256", "sha-512"):
            raise _malformed(f"unsupported Content-Digest algorithm {algorithm}")
        digests[algorithm] = member.value
    if "sha-256" not in digests:
        raise _malformed("Content-Digest must hold a sha-256 digest")
    for algorithm, digest in digests.items():
        if hashlib.new(algorithm.replace("-", ""), body).digest() != digest:
            raise AuthenticationError(
                "digest-mismatch", f"the body does not match its Content-Digest ({algorithm})"
            )


def _field(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        raise AuthenticationError(
            "signature-missing" if name != "content-digest" else "signature-malformed",
            f"the request has no {name} header (sign it with RFC 9421; see DESIGN.md §6)",
        )
    return value.strip(" \t")


def verify_request(
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    now: int,
    lookup_public_key: Callable[[str], bytes | None],
) -> VerifiedRequest:
    """Check a request's signature under the profile of this module.

    Args:
        method: the request method.
        path: the request path as received (percent-encoded, without the query).
        query: the query string as received (without the ``?``; empty for none).
        headers: the request's fields by lowercase name, several lines of a field joined
            with ``", "`` (RFC 9110 §5.3); only ``signature-input``, ``signature`` and
            ``content-digest`` are read.
        body: the request body as received.
        now: the verifier's clock (Unix seconds).
        lookup_public_key: a key id's raw public key, or ``None`` if the key is unknown.

    Returns:
        Who signed, when, and the nonce (for :class:`ReplayGuard`).

    Raises:
        AuthenticationError: with ``reason`` ``signature-missing``, ``signature-malformed``,
            ``signature-components``, ``signature-algorithm``, ``signature-expired``,
            ``signature-future``, ``digest-mismatch``, ``key-unknown`` or
            ``signature-mismatch``.
    """
    signature_input = _field(headers, "signature-input")
    signature_field = _field(headers, "signature")
    label, names, parameters = _signature_input(signature_input)
    signature_label, signature_member = _only_member("Signature", signature_field)
    if signature_label != label:
        raise _malformed(f"Signature is labelled {signature_label}, Signature-Input {label}")
    if (
        not isinstance(signature_member, Item)
        or type(signature_member.value) is not bytes
        or signature_member.parameters
    ):
        raise _malformed("Signature must be a byte sequence")
    signature = signature_member.value
    _check_components(names)
    created, key_id, nonce = _check_parameters(parameters, now)
    digest = _field(headers, "content-digest")
    _check_digest(digest, body)
    public_key = lookup_public_key(key_id)
    if public_key is None:
        raise AuthenticationError("key-unknown", f"no registered key {key_id}")
    values = _component_values(method, path, query, digest)
    base = signature_base([(name, values[name]) for name in names], tuple(parameters.items()))
    try:
        verify_signature(public_key, b"", base, signature)
    except SignatureError as e:
        raise AuthenticationError(
            "signature-mismatch", f"the signature by key {key_id} does not verify: {e}"
        ) from e
    return VerifiedRequest(key_id, created, nonce)


class ReplayGuard:
    """The ``(key id, nonce)`` of every request a node accepted, while it could be replayed.

    A signature is accepted until ``created + MAX_SKEW_SECONDS``; its nonce is kept at least that
    long and less than :data:`REPLAY_SLICE_SECONDS` longer, so memory is bounded by the signed
    requests of one window. A validator receives tens of signed peer requests a second, so each
    pair is kept as a 16-byte BLAKE2b digest (about a third of the memory of the two strings).

    The digests are grouped by when they expire, one small set per slice of
    :data:`REPLAY_SLICE_SECONDS`, and a slice is dropped whole once all of it expired. One table
    for the whole window (some 20,000 entries at a validator's rate) was reallocated as a single
    block of 1.25 MiB every few minutes, which glibc moves from ``mmap`` into the heap: the
    resident memory of a long-running node stepped up (``docs/decisions.md`` D37). Safe to share
    between threads.
    """

    def __init__(self, window: int = MAX_SKEW_SECONDS) -> None:
        self._window = window
        self._slices: dict[int, set[bytes]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return sum(len(seen) for seen in self._slices.values())

    def remember(self, request: VerifiedRequest, now: int) -> None:
        """Record an accepted request's nonce, refusing one seen before.

        Raises:
            AuthenticationError: ``replayed``.
        """
        key = hashlib.blake2b(
            f"{request.key_id}\n{request.nonce}".encode(), digest_size=16
        ).digest()
        with self._lock:
            for expired in [i for i in self._slices if (i + 1) * REPLAY_SLICE_SECONDS <= now]:
                del self._slices[expired]
            if any(key in seen for seen in self._slices.values()):
                raise AuthenticationError(
                    "replayed",
                    f"key {request.key_id} already used nonce {request.nonce!r}; sign every "
                    "request anew",
                )
            expires = request.created + self._window
            self._slices.setdefault(expires // REPLAY_SLICE_SECONDS, set()).add(key)
