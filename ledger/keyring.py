"""Which keys may sign events, derived from genesis and from the events themselves.

The chain verifier needs, for every event signature, the public key behind its key id and
whether that key was registered and not yet revoked at that point of the log. The keyring
answers exactly that: it follows ``org.register`` (admin keys), ``member.register`` (member keys),
``key.add`` and ``key.revoke`` in log order, starting from the genesis governance admins.

It deliberately knows nothing of roles, organisations or lots; whether a signer is *authorised*
for an event is the supply-chain state machine's business, which implements the same
:class:`EventAuthority` protocol and can take the keyring's place in the verifier.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from typing import Any, Protocol

from ledger.encoding import parse_hex
from ledger.errors import EncodingError, SignatureError
from ledger.events import Envelope
from ledger.keys import key_id, verify_public_key

__all__ = ["EventAuthority", "KeyRing", "announced_keys"]


class EventAuthority(Protocol):
    """What the chain verifier asks of the ledger state for each event, in log order."""

    def signer_keys(self, envelope: Envelope) -> list[bytes]:
        """The public key of each signature of ``envelope`` (in ``envelope.sigs`` order).

        Raises:
            SignatureError: a signer is unknown or revoked.
        """
        ...

    def apply(self, envelope: Envelope, index: int, block_time: _dt.datetime) -> object:
        """Take the event at log ``index`` of a block of ``block_time`` into the state.

        Its signatures are checked concurrently; if one fails, the verifier stops anyway.

        Raises:
            LedgerError: the event is not acceptable in this state.
        """
        ...


def _public_keys(payload: dict[str, Any], field: str, what: str) -> list[bytes]:
    """The keys of a registration, each under the one Ed25519 key policy (``ledger.keys``)."""
    values = payload.get(field)
    if type(values) is not list:
        raise EncodingError(f"{what}.{field} must be a list of public keys")
    return [
        verify_public_key(parse_hex(v, 32, f"{what}.{field}[{i}]"), f"{what}.{field}[{i}]")
        for i, v in enumerate(values)
    ]


_KEY_LISTS = {"org.register": "admins", "member.register": "public_keys"}
"""The payload field listing the keys each registration event registers (and ``key.add``
registers its ``public_key``)."""


def announced_keys(envelope: Envelope) -> dict[str, bytes]:
    """Key id → public key of each key ``envelope`` registers (the events :meth:`KeyRing.apply`
    follows), as written: malformed entries are left out, and no key is checked against the
    key policy, which costs a millisecond a key.

    For checking signatures before the event that registers their key is applied (a catching-up
    node, ``node.application``): a key id is its key's hash, so the key found here for an id is
    the only key with that id, and the rules decide, when the event is applied, whether it was
    registered (and so passed the policy).
    """
    payload = envelope.payload
    kind = envelope.type
    if kind == "key.add":
        values: Any = [payload.get("public_key")]
    else:
        values = payload.get(_KEY_LISTS.get(kind, ""))
    if type(values) is not list:
        return {}
    found = {}
    for value in values:
        if type(value) is str and len(value) == 64:
            with contextlib.suppress(ValueError):
                public_key = bytes.fromhex(value)
                found[key_id(public_key)] = public_key
    return found


class KeyRing:
    """Registered, unrevoked event-signing keys: key id → raw public key."""

    __slots__ = ("_keys", "_revoked")

    def __init__(self, governance_admins: list[bytes] | tuple[bytes, ...]) -> None:
        self._keys: dict[str, bytes] = {key_id(k): k for k in governance_admins}
        self._revoked: set[str] = set()

    def signer_keys(self, envelope: Envelope) -> list[bytes]:
        """The public key of each signer of ``envelope``.

        Raises:
            SignatureError: a signer is unknown or revoked.
        """
        keys = []
        for signature in envelope.sigs:
            public_key = self._keys.get(signature.key)
            if public_key is None:
                state = "revoked" if signature.key in self._revoked else "unknown"
                raise SignatureError(f"signed by {state} key {signature.key}")
            keys.append(public_key)
        return keys

    def apply(self, envelope: Envelope, index: int, block_time: _dt.datetime) -> None:
        """Follow key registrations and revocations in ``envelope``.

        Raises:
            EncodingError: a registered key is malformed or refused by the key policy
                (``ledger.keys.check_public_key``), as the rules refuse it.
        """
        payload = envelope.payload
        kind = envelope.type
        if kind in _KEY_LISTS:
            self._add(_public_keys(payload, _KEY_LISTS[kind], "payload"))
        elif kind == "key.add":
            public_key = parse_hex(payload.get("public_key"), 32, "payload.public_key")
            self._add([verify_public_key(public_key, "payload.public_key")])
        elif kind == "key.revoke":
            revoked = payload.get("key")
            if type(revoked) is str and self._keys.pop(revoked, None) is not None:
                self._revoked.add(revoked)

    def _add(self, public_keys: list[bytes]) -> None:
        for public_key in public_keys:
            identifier = key_id(public_key)
            if identifier not in self._revoked:
                self._keys.setdefault(identifier, public_key)
