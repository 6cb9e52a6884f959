"""Who may read what: request signatures, roles and organisations (``docs/decisions.md`` D27).

Writes need no request signature: every event carries its members' signatures and the rules
decide who may sign what (DESIGN.md §3; ``POST /epcis/capture`` checks its own bearer token,
D28). Reads are decided here, in one place: the app runs
:func:`authorise` before every route, and :data:`ROUTE_ACCESS` says what each route needs:

* the buyer-facing routes (checkpoint, proofs, lot traces), ``/healthz``, ``/metrics`` and the
  OpenAPI documents are public;
* every other route needs an RFC 9421 signature (:mod:`node.httpsig`) by a registered,
  unrevoked member key (or a genesis validator or governance admin key), used once within
  five minutes; any of them may read the organisations and the node's status;
* auditors (the ``auditor`` role, or any member of an organisation of kind ``auditor``) and
  validators read everything; other members read what their organisation is party to: a lot
  it owned or was sent, or one from which such a lot was made (its forward trace reaches the
  organisation), an event one of its members signed or that names it, one of its members or
  such a lot;
* ``POST /v1/peer/inbox`` answers validators only.

A route missing from the table needs an auditor or a validator. ``401`` answers a request
without a valid signature, ``403`` a signed request by someone who may not read that.
Rate limits are applied here too, before any other work (:mod:`api.limits`). What it does not
do: hide that a lot, event or member exists (their ids are
on public traces and proofs; an unknown one answers ``404`` to anyone who could read it).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool

from api.dependencies import MAX_BODY_BYTES, NodeDep
from api.limits import RateLimiter
from api.schemas import problem_example, problem_response
from api.submission import read_body
from ledger.errors import AuthenticationError, ForbiddenError, RuleViolation
from ledger.events import Envelope
from ledger.rules import named_ids
from ledger.state import KeyRecord, Member, Org
from ledger.trace import parties_reached
from node.httpsig import ReplayGuard, verify_request
from node.ledger_state import DatabaseState
from node.runtime import LedgerNode

__all__ = [
    "ANONYMOUS",
    "DEFAULT_ACCESS",
    "ROUTE_ACCESS",
    "SECURITY_SCHEME",
    "Access",
    "Caller",
    "CallerDep",
    "EventFilterDep",
    "Visibility",
    "authorise",
    "document_access",
    "event_filter",
]


class Access(Enum):
    """What a route needs; the value says it in words (403 answers and the OpenAPI document)."""

    PUBLIC = "anyone; no signature needed"
    MEMBER = "any registered member, governance admin or validator"
    LOT_PARTY = (
        "auditors, validators and members of an organisation party to the lot or to a lot "
        "made from it"
    )
    EVENT_PARTY = (
        "auditors, validators and members of an organisation that signed the event, is named "
        "in it, or is party to a lot it names"
    )
    SAME_ORG = "auditors, validators and members of the member's organisation"
    AUDITOR = "auditors and validators"
    VALIDATOR = "validators"


ROUTE_ACCESS: Mapping[tuple[str, str], Access] = {
    ("POST", "/v1/events"): Access.PUBLIC,  # every event is signed by its members (DESIGN §3)
    ("GET", "/v1/events/{event_id}"): Access.EVENT_PARTY,
    ("GET", "/v1/events/{event_id}/proof"): Access.PUBLIC,
    ("GET", "/v1/proofs/consistency"): Access.PUBLIC,
    ("GET", "/v1/checkpoint"): Access.PUBLIC,
    ("GET", "/v1/blocks/{height}"): Access.AUDITOR,
    ("GET", "/v1/export"): Access.AUDITOR,
    ("GET", "/v1/lots/{lot_id}"): Access.LOT_PARTY,
    ("GET", "/v1/lots/{lot_id}/trace"): Access.PUBLIC,
    ("GET", "/v1/orgs"): Access.MEMBER,
    ("GET", "/v1/members/{member_id}"): Access.SAME_ORG,
    ("GET", "/v1/status"): Access.MEMBER,
    ("GET", "/healthz"): Access.PUBLIC,
    ("GET", "/metrics"): Access.PUBLIC,  # aggregates only; Prometheus cannot sign (D28)
    ("POST", "/v1/peer/inbox"): Access.VALIDATOR,
    ("POST", "/epcis/capture"): Access.PUBLIC,  # the route checks its bearer token (D28)
    ("GET", "/epcis/events"): Access.MEMBER,  # answers filtered by :func:`event_filter`
}
"""Each route's access, by method and path template (as in the OpenAPI document)."""
DEFAULT_ACCESS = Access.AUDITOR
"""The access of a route missing from :data:`ROUTE_ACCESS`."""
SECURITY_SCHEME = "requestSignature"
"""The name of the request signature's security scheme in the OpenAPI document."""
_SIGNATURE_FIELDS = ("signature-input", "signature", "content-digest")
_EVENT_ID = re.compile(r"[0-9a-f]{64}")
_NAMED_PARTIES = ("org_id", "member_id", "producer", "to")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request.

    Attributes:
        key_id: the key that signed it (``None``: not signed, on a public route).
        validator: the genesis validator's name, when a validator key signed it.
        member: the member whose key signed it (``None`` for a validator or a governance key).
        org: the member's organisation.
        body: the request body the signature's content digest covers (``b""`` on a public
            route, whose body the route reads itself).
    """

    key_id: str | None
    validator: str | None = None
    member: Member | None = None
    org: Org | None = None
    body: bytes = b""

    @property
    def reads_everything(self) -> bool:
        """Validators and auditors (by role, or by their organisation's kind) read it all."""
        return self.validator is not None or (
            self.member is not None
            and (
                self.member.role == "auditor"
                or (self.org is not None and self.org.kind == "auditor")
            )
        )

    def __str__(self) -> str:
        if self.validator is not None:
            return f"validator {self.validator}"
        if self.member is not None:
            return f"{self.member.member_id} ({self.member.role})"
        return "anonymous" if self.key_id is None else f"governance key {self.key_id}"


ANONYMOUS = Caller(None)
"""The caller of a public route."""


class Visibility:
    """What one organisation is party to, in a node's committed state; memoised for one
    request.

    Args:
        state: the node's state.
        org_id: the organisation.
    """

    def __init__(self, state: DatabaseState, org_id: str) -> None:
        self._state = state
        self._org = org_id
        self._lots: dict[str, bool | None] = {}

    def _ours(self, party: Any) -> bool:
        return type(party) is str and party.split("/", 1)[0] == self._org

    def lot(self, lot_id: str) -> bool | None:
        """Is the organisation party to the lot or to a lot made from it? ``None``: no such lot."""
        if lot_id not in self._lots:
            try:
                parties = parties_reached(self._state, lot_id)
            except RuleViolation:
                self._lots[lot_id] = None
            else:
                self._lots[lot_id] = any(self._ours(party) for party in parties)
        return self._lots[lot_id]

    def event(self, envelope: Envelope) -> bool:
        """Did one of the organisation's members sign the event, does it name the organisation
        or one of its members, or a lot the organisation is party to?"""
        for signature in envelope.sigs:
            key = self._state.key(signature.key)
            if key is not None and self._ours(key.member_id):
                return True
        payload = envelope.payload
        if any(self._ours(payload.get(name)) for name in _NAMED_PARTIES):
            return True
        return any(self.lot(lot_id) for lot_id in sorted(named_ids(envelope)["lot"]))


def _may_read(caller: Caller, access: Access, node: LedgerNode, params: Mapping[str, str]) -> bool:
    """The rule of :class:`Access` (reads the state: run it off the event loop)."""
    if access is Access.VALIDATOR:
        return caller.validator is not None
    if caller.reads_everything or access is Access.MEMBER:
        return True
    if caller.org is None or access is Access.AUDITOR:
        return False
    if access is Access.SAME_ORG:
        return params.get("member_id", "").split("/", 1)[0] == caller.org.org_id
    visible = Visibility(DatabaseState(node.store.engine), caller.org.org_id)
    if access is Access.LOT_PARTY:
        return visible.lot(params.get("lot_id", "")) is not False  # no such lot: 404
    event_id = params.get("event_id", "")  # Access.EVENT_PARTY
    if not _EVENT_ID.fullmatch(event_id):
        return True  # the route refuses a malformed id (422)
    stored = node.store.event(event_id)
    envelope = stored.envelope if stored is not None else node.app.pending_event(event_id)
    return envelope is None or visible.event(envelope)  # no such event: 404


def _member_caller(state: DatabaseState, record: KeyRecord) -> Caller:
    """The member (or governance admin) whose key verified a request.

    Raises:
        AuthenticationError: ``key-revoked``.
    """
    if record.revoked:
        raise AuthenticationError(
            "key-revoked", f"key {record.key_id} was revoked at log index {record.revoked_index}"
        )
    if record.member_id is None:
        return Caller(record.key_id)  # a governance admin's key: no organisation
    member = state.member(record.member_id)
    org = None if member is None else state.org(member.org_id)
    return Caller(record.key_id, member=member, org=org)


@dataclass(frozen=True, slots=True)
class _SignedRequest:
    """What the check needs of a request, read on the event loop (the check runs off it)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    params: dict[str, str]
    route: str


class _DatabaseNeededError(Exception):
    """A check that was to run without the database met a key only the database knows."""


def _check(
    node: LedgerNode,
    guard: ReplayGuard,
    access: Access,
    request: _SignedRequest,
    now: int,
    *,
    database: bool = True,
) -> Caller:
    """Verify the signature, remember its nonce, find the signer and apply the route's rule.

    Raises:
        _DatabaseNeededError: with ``database=False``, the signer is not a validator.
    """
    validators = {v.key_id: v for v in node.genesis.validators}
    state = DatabaseState(node.store.engine)
    records: dict[str, KeyRecord] = {}

    def lookup(key_id: str) -> bytes | None:
        if key_id in validators:
            return validators[key_id].public_key
        if not database:
            raise _DatabaseNeededError
        record = state.key(key_id)
        if record is not None:
            records[key_id] = record
        return None if record is None else record.public_key

    verified = verify_request(
        request.method, request.path, request.query, request.headers, request.body, now, lookup
    )
    guard.remember(verified, now)
    validator = validators.get(verified.key_id)
    caller = (
        Caller(verified.key_id, validator=validator.name)
        if validator is not None
        else _member_caller(state, records[verified.key_id])
    )
    if not _may_read(caller, access, node, request.params):
        raise ForbiddenError(f"{caller} may not {request.route}: {access.value} may")
    return Caller(caller.key_id, caller.validator, caller.member, caller.org, request.body)


def _route_access(request: Request) -> tuple[Access, str]:
    path = getattr(request.scope.get("route"), "path_format", request.url.path)
    return ROUTE_ACCESS.get((request.method, path), DEFAULT_ACCESS), f"{request.method} {path}"


async def authorise(request: Request, node: NodeDep) -> Caller:
    """The dependency every route runs first: the caller, if it may use the route.

    Raises:
        AuthenticationError: no valid, fresh, unreplayed signature by a known, unrevoked key
            (``401``).
        ForbiddenError: a signed request by someone the route's :class:`Access` excludes
            (``403``).
        RateLimitedError: the client address or the signing key is over its rate (``429``,
            :mod:`api.limits`).
    """
    limiter: RateLimiter = request.app.state.limiter
    access, route = _route_access(request)
    if access is Access.VALIDATOR:
        limiter.refuse_address_in_debt(request)
    else:
        limiter.take_address(request, 1)
    if access is Access.PUBLIC:
        return ANONYMOUS
    raw_path = request.scope.get("raw_path")
    signed = _SignedRequest(
        method=request.method,
        path=raw_path.decode("latin-1") if raw_path else request.url.path,
        query=request.scope.get("query_string", b"").decode("latin-1"),
        headers={
            name: ", ".join(request.headers.getlist(name))
            for name in _SIGNATURE_FIELDS
            if name in request.headers
        },
        body=await read_body(request, MAX_BODY_BYTES),
        params=dict(request.path_params),
        route=route,
    )
    guard: ReplayGuard = request.app.state.replay_guard
    now = int(time.time())
    try:
        caller = None
        if access is Access.VALIDATOR:
            # A peer's request: its key is in the genesis, so the check needs no database
            # and runs here, without the hand-off to a worker thread (tens of these a second).
            with contextlib.suppress(_DatabaseNeededError):
                caller = _check(node, guard, access, signed, now, database=False)
        if caller is None:
            caller = await run_in_threadpool(_check, node, guard, access, signed, now)
    except (AuthenticationError, ForbiddenError):
        if access is Access.VALIDATOR:
            limiter.charge_address(request, 1)
        raise
    if caller.validator is None and caller.key_id is not None:
        limiter.check_keys({caller.key_id: 1})
        limiter.charge_keys({caller.key_id: 1})
    return caller


CallerDep = Annotated[Caller, Depends(authorise)]
"""The caller of a route (computed once per request, with the app-wide check)."""


def event_filter(caller: CallerDep, node: NodeDep) -> Callable[[Envelope], bool] | None:
    """Which events a caller may see in a list (``None``: all of them)."""
    if caller.reads_everything:
        return None
    if caller.org is None:
        return lambda _: False
    return Visibility(DatabaseState(node.store.engine), caller.org.org_id).event


EventFilterDep = Annotated[Callable[[Envelope], bool] | None, Depends(event_filter)]
"""The events a route may list for its caller."""


_UNSIGNED = problem_response(
    "No valid request signature (RFC 9421; `Accept-Signature` says what to sign).",
    problem_example(
        401,
        "signature-missing",
        "the request has no signature-input header (sign it with RFC 9421; see DESIGN.md §6)",
    ),
    problem_example(401, "signature-expired", "the signature was created 360 s ago (at most 300)"),
    problem_example(
        401, "replayed", "key 9b1f… already used nonce 'Zq3…'; sign every request anew"
    ),
    problem_example(401, "key-revoked", "key 9b1f… was revoked at log index 41"),
)


def _forbidden(access: Access) -> dict[str, Any]:
    return problem_response(
        "The signer may not read this.",
        problem_example(
            403, "forbidden", f"eu-buyer/anna (buyer) may not read this: {access.value} may"
        ),
    )


_RATE_LIMITED = {
    **problem_response(
        "Over the rate limit of the client address or of a signing key (`Retry-After` says "
        "when to try again).",
        problem_example(
            429, "rate-limited", "address 192.0.2.7 is over its rate limit; retry after 2 s"
        ),
    ),
    "headers": {
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}


def document_access(document: dict[str, Any]) -> None:
    """Add each route's access to an OpenAPI document: the request signature's security
    scheme, who may call it, its ``401`` and ``403`` answers, and the ``429`` of the rate
    limits (every route)."""
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[SECURITY_SCHEME] = {
        "type": "apiKey",
        "in": "header",
        "name": "Signature",
        "description": "An RFC 9421 HTTP message signature by a registered member key or a "
        'validator key: Ed25519 (`alg="ed25519"`) over `@method`, `@path`, `@query` and an '
        "RFC 9530 `Content-Digest` (sha-256), with `created` within 5 minutes and a `nonce` "
        "(16 to 64 characters) never used twice; sent as `Signature-Input`, `Signature` and "
        "`Content-Digest`.",
    }
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            access = ROUTE_ACCESS.get((method.upper(), path), DEFAULT_ACCESS)
            operation["responses"].setdefault("429", _RATE_LIMITED)
            if access is Access.PUBLIC:
                continue
            operation["security"] = [{SECURITY_SCHEME: []}]
            operation["description"] = (
                f"{operation.get('description', '')} Signed requests only: {access.value}."
            ).strip()
            operation["responses"].setdefault("401", _UNSIGNED)
            if access is not Access.MEMBER:
                operation["responses"].setdefault("403", _forbidden(access))
