"""What ``POST /v1/events`` and ``POST /epcis/capture`` share: bounded request bodies and the
all-or-nothing admission of a batch of envelopes (DESIGN.md §6).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from api.limits import RateLimiter
from api.problems import BodyTooLargeError, problem, rule_of, status_of
from api.schemas import problem_example, problem_response
from ledger.errors import EncodingError, LedgerError, RuleViolation
from ledger.events import Envelope, parse_envelope
from node.runtime import BatchRefusedError, LedgerNode

__all__ = ["BUSY_RESPONSE", "MAX_BATCH", "admit", "parse_batch", "read_body"]

MAX_BATCH = 1000
"""The most envelopes one ``POST /v1/events`` takes."""
BUSY_RESPONSE = problem_response(
    "The node cannot take events now: as many are waiting for a block as it holds "
    "(`Retry-After` says when to try again), or its database refuses writes.",
    problem_example(
        503,
        "mempool-full",
        "10000 events are waiting for a block (at most 10000); try again in a second",
    ),
    problem_example(
        503,
        "storage-unavailable",
        "this node cannot store blocks now: database or disk is full",
    ),
)
"""The ``503`` of the routes that admit events (OpenAPI)."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused unread when its declared length is over ``limit`` bytes.

    Raises:
        BodyTooLargeError: over ``limit`` bytes (``413``).
        EncodingError: a ``Content-Length`` that is not a decimal number.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isascii() or not declared.isdigit():
            raise EncodingError("Content-Length must be a decimal number of bytes")
        if int(declared) > limit:
            raise BodyTooLargeError(f"request body larger than {limit} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise BodyTooLargeError(f"request body larger than {limit} bytes")
    return bytes(raw)


def parse_batch(value: Any) -> list[Envelope] | Response:
    """The envelopes of one envelope or ``{"events": [...]}``, or the problem that refuses them
    (``400`` naming each malformed envelope, ``413`` over :data:`MAX_BATCH`).

    Raises:
        EncodingError: not an envelope or a non-empty list of them.
    """
    raw_events = value["events"] if isinstance(value, dict) and "events" in value else [value]
    if not isinstance(raw_events, list) or not raw_events:
        raise EncodingError("events must be a non-empty list")
    if len(raw_events) > MAX_BATCH:
        return problem(413, "batch-too-large", f"at most {MAX_BATCH} events per batch")
    envelopes: list[Envelope] = []
    errors = []
    for position, raw in enumerate(raw_events):
        try:
            envelopes.append(parse_envelope(raw))
        except LedgerError as e:
            errors.append(
                {"position": position, "event_id": None, "rule": rule_of(e), "detail": str(e)}
            )
    if errors:
        return problem(400, "malformed-events", "the batch has malformed events", errors=errors)
    return envelopes


async def admit(
    request: Request, node: LedgerNode, envelopes: list[Envelope], *, wait: bool, timeout: float
) -> Response:
    """Admit a batch after checking it against the state, all or nothing; optionally wait.

    Known events count as accepted. Answers ``202`` (or ``200`` once all are committed when
    ``wait``), or a problem listing every refused event with its position, id and rule. Each
    event costs its request's address a token first, and each signature its key a token once
    admitted (:mod:`api.limits`).

    Raises:
        RateLimitedError: the address, or a key that signs an event, is over its rate.
    """
    limiter: RateLimiter = request.app.state.limiter
    limiter.take_address(request, len(envelopes))
    signers = Counter(signature.key for envelope in envelopes for signature in envelope.sigs)
    limiter.check_keys(signers)
    try:
        result = await node.submit(envelopes, wait=wait, timeout=timeout)
    except BatchRefusedError as refusal:
        return problem(
            max(status_of(e) for _, _, e in refusal.refused),
            "events-refused",
            "nothing was admitted: the batch breaks the rules",
            errors=[
                {
                    "position": position,
                    "event_id": envelope.event_id,
                    "rule": rule_of(error),
                    "detail": error.detail if isinstance(error, RuleViolation) else str(error),
                }
                for position, envelope, error in refusal.refused
            ],
        )
    limiter.charge_keys(signers)
    status = 200 if wait and result.committed else 202
    return JSONResponse({"events": result.events}, status_code=status)
