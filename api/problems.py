"""Errors as RFC 9457 problem details: the one place that maps errors to HTTP statuses.

Every :class:`~ledger.errors.LedgerError` maps to one status through :data:`STATUS_BY_ERROR`
(the most specific class wins); :func:`install_problem_handlers` makes an app answer every
error -- ledger errors, request validation, HTTP errors -- as ``application/problem+json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.limits import RateLimitedError
from ledger.errors import (
    AuthenticationError,
    ChainError,
    ConsensusError,
    EncodingError,
    ForbiddenError,
    LedgerError,
    ProofError,
    RuleViolation,
    SignatureError,
    StorageError,
)
from node.epcis import EpcisError
from node.epcis_capture import CaptureLimitError
from node.epcis_query import QueryParameterError
from node.httpsig import ACCEPT_SIGNATURE
from node.runtime import MempoolFullError

__all__ = [
    "PROBLEM",
    "STATUS_BY_ERROR",
    "BodyTooLargeError",
    "RequestRefusedError",
    "install_problem_handlers",
    "problem",
    "rule_of",
    "status_of",
]

PROBLEM = "https://rantai.example/problems/"
"""The base of every problem ``type`` URI (followed by the problem's kind)."""


SIGNATURE_CHALLENGE = {
    "Accept-Signature": ACCEPT_SIGNATURE,
    "WWW-Authenticate": 'Signature realm="rantai"',
}
"""The headers of a ``401`` for a missing or bad request signature: RFC 9421's
``Accept-Signature`` says what to sign, and RFC 9110 §11.6.1 wants a challenge."""


class BodyTooLargeError(EncodingError):
    """A request body over the route's limit (``413``)."""


class RequestRefusedError(Exception):
    """A request a route's dependency refuses before the route's parameters are validated
    (a missing credential answers ``401`` whatever the parameters), as problem details.

    Attributes:
        status: the HTTP status.
        kind: the problem's kind (the end of its ``type`` URI).
        detail: a human-readable explanation.
        headers: extra response fields, e.g. ``WWW-Authenticate``.
    """

    def __init__(
        self, status: int, kind: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.status = status
        self.kind = kind
        self.detail = detail
        self.headers = dict(headers or {})


STATUS_BY_ERROR: dict[type[LedgerError], int] = {
    EncodingError: 400,
    ProofError: 400,
    SignatureError: 422,
    RuleViolation: 422,
    EpcisError: 422,
    CaptureLimitError: 413,
    BodyTooLargeError: 413,
    ChainError: 409,
    ConsensusError: 409,
    StorageError: 503,
    AuthenticationError: 401,
    ForbiddenError: 403,
    RateLimitedError: 429,
    MempoolFullError: 503,
}

_KIND_BY_ERROR: dict[type[LedgerError], str] = {
    EncodingError: "malformed-input",
    ProofError: "proof-impossible",
    SignatureError: "signature-invalid",
    EpcisError: "epcis-unsupported",
    CaptureLimitError: "capture-too-large",
    QueryParameterError: "query-parameter",
    BodyTooLargeError: "body-too-large",
    ChainError: "chain-conflict",
    ConsensusError: "consensus-conflict",
    StorageError: "storage-unavailable",
    ForbiddenError: "forbidden",
    RateLimitedError: "rate-limited",
    MempoolFullError: "mempool-full",
}


def problem(
    status: int,
    kind: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """An RFC 9457 problem details response of type ``PROBLEM + kind``; ``extra`` members are
    added to the body."""
    body = {"type": PROBLEM + kind, "title": kind.replace("-", " "), "status": status}
    body.update(detail=detail, **extra)
    return JSONResponse(
        body, status_code=status, headers=headers, media_type="application/problem+json"
    )


_T = TypeVar("_T")


def _most_specific(table: dict[type[LedgerError], _T], error: LedgerError) -> _T | None:
    for kind in type(error).__mro__:
        if kind in table:
            return table[kind]
    return None


def status_of(error: LedgerError) -> int:
    """The HTTP status an error answers with."""
    return _most_specific(STATUS_BY_ERROR, error) or 400


def rule_of(error: LedgerError) -> str:
    """The rule an error names in ``errors[].rule`` (a rule name for a rule violation)."""
    if isinstance(error, RuleViolation):
        return error.rule
    if isinstance(error, EpcisError):
        return "epcis.unsupported"
    return {EncodingError: "envelope.malformed", SignatureError: "auth.signature"}.get(
        type(error), type(error).__name__
    )


def _kind_of(error: LedgerError) -> str:
    if isinstance(error, RuleViolation):
        return error.rule.replace(".", "-")
    if isinstance(error, AuthenticationError):
        return error.reason
    return _most_specific(_KIND_BY_ERROR, error) or "ledger-error"


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` as problem details."""

    @app.exception_handler(LedgerError)
    async def ledger_error(_: Request, error: LedgerError) -> JSONResponse:
        return problem(status_of(error), _kind_of(error), str(error))

    @app.exception_handler(EpcisError)
    async def epcis_error(_: Request, error: EpcisError) -> JSONResponse:
        entry = {
            "position": error.position,
            "event_id": None,
            "rule": rule_of(error),
            "field": error.field,
            "detail": error.detail,
        }
        return problem(status_of(error), _kind_of(error), str(error), errors=[entry])

    @app.exception_handler(AuthenticationError)
    async def unauthenticated(_: Request, error: AuthenticationError) -> JSONResponse:
        return problem(401, error.reason, error.detail, headers=SIGNATURE_CHALLENGE)

    @app.exception_handler(RateLimitedError)
    async def rate_limited(_: Request, error: RateLimitedError) -> JSONResponse:
        return problem(
            429, "rate-limited", str(error), headers={"Retry-After": str(error.retry_after)}
        )

    @app.exception_handler(MempoolFullError)
    async def mempool_full(_: Request, error: MempoolFullError) -> JSONResponse:
        return problem(503, "mempool-full", str(error), headers={"Retry-After": "1"})

    @app.exception_handler(RequestRefusedError)
    async def refused(_: Request, error: RequestRefusedError) -> JSONResponse:
        return problem(error.status, error.kind, error.detail, headers=error.headers)

    @app.exception_handler(QueryParameterError)
    async def query_parameter(_: Request, error: QueryParameterError) -> JSONResponse:
        return problem(400, _kind_of(error), str(error), parameter=error.parameter)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        fields = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "detail": e.get("msg", "")}
            for e in error.errors()
        ]
        detail = "; ".join(f"{f['field']}: {f['detail']}" for f in fields)
        return problem(422, "invalid-request", detail, errors=fields)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return problem(error.status_code, "http-error", str(error.detail), headers=error.headers)
