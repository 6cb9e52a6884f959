"""The one error hierarchy of Rantai (DESIGN.md §8).

Every error the ledger raises derives from :class:`LedgerError`::

    LedgerError
    ├── EncodingError        bytes or JSON that break a format (JCS, hex, decimals, times, notes)
    ├── SignatureError       a signature that does not verify, or a quorum that is not met
    ├── RuleViolation        an event the supply-chain rules refuse (names the rule and the event)
    ├── ProofError           a Merkle inclusion or consistency proof that does not verify
    ├── ChainError           where a chain breaks (height, log index, event id, reason)
    ├── StorageError         the node's database refused or lost something
    ├── ConsensusError       a consensus message or certificate that cannot be accepted
    ├── AuthenticationError  an HTTP request without a valid signature by a known key (names why)
    └── ForbiddenError       an authenticated caller who may not read what it asked for

``verify_*`` functions raise one of these; ``check_*`` functions return a result object.
Foreign exceptions are wrapped where they are met (``raise ... from e``).
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ChainError",
    "ConsensusError",
    "EncodingError",
    "ForbiddenError",
    "LedgerError",
    "ProofError",
    "RuleViolation",
    "SignatureError",
    "StorageError",
]


class LedgerError(Exception):
    """Base of every error Rantai raises on purpose."""


class EncodingError(LedgerError):
    """Input that does not follow a byte or JSON format of DESIGN.md §2."""


class SignatureError(LedgerError):
    """A signature that does not verify, an unknown signer, or a missed threshold."""


class RuleViolation(LedgerError):  # noqa: N818 - the name DESIGN.md §8 fixes
    """An event that the ledger's rules refuse.

    Attributes:
        rule: a stable, machine-readable rule name, e.g. ``"lot.no-double-spend"``.
        event_id: the id of the offending event, when it is known.
        detail: a human-readable explanation.
    """

    def __init__(self, rule: str, detail: str, event_id: str | None = None) -> None:
        super().__init__(f"{rule}: {detail}" + (f" (event {event_id})" if event_id else ""))
        self.rule = rule
        self.detail = detail
        self.event_id = event_id


class ProofError(LedgerError):
    """A Merkle proof that does not verify, or a request for an impossible proof."""


class ChainError(LedgerError):
    """Where a chain breaks.

    Attributes:
        reason: what is wrong.
        height: the block height at fault, if known.
        index: the global log index of the event at fault, if any.
        event_id: the id of the event at fault, if any.
    """

    def __init__(
        self,
        reason: str,
        *,
        height: int | None = None,
        index: int | None = None,
        event_id: str | None = None,
    ) -> None:
        where = []
        if height is not None:
            where.append(f"height {height}")
        if index is not None:
            where.append(f"index {index}")
        if event_id is not None:
            where.append(f"event {event_id}")
        super().__init__((", ".join(where) + ": " if where else "") + reason)
        self.reason = reason
        self.height = height
        self.index = index
        self.event_id = event_id


class StorageError(LedgerError):
    """The store could not read or write what was asked."""


class ConsensusError(LedgerError):
    """A consensus message, vote or certificate that cannot be accepted."""


class AuthenticationError(LedgerError):
    """An HTTP request that is not signed by a known, unrevoked key (RFC 9421).

    Attributes:
        reason: a stable, machine-readable reason, e.g. ``"signature-expired"`` or
            ``"replayed"`` (the API's problem type).
        detail: a human-readable explanation.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ForbiddenError(LedgerError):
    """An authenticated caller asked for something its role or organisation may not read."""
