"""The HTTP API of a node (DESIGN.md §6): thin FastAPI routes over a :class:`LedgerNode`.

Errors are RFC 9457 problem details; every ledger error maps to one status in
:data:`STATUS_BY_ERROR`. Nothing is built at import time: :func:`create_app` makes an app for
one node.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.metrics import node_registry
from ledger.encoding import parse_json
from ledger.errors import (
    ChainError,
    ConsensusError,
    EncodingError,
    LedgerError,
    ProofError,
    RuleViolation,
    SignatureError,
    StorageError,
)
from ledger.events import Envelope, parse_envelope
from ledger.trace import trace_back, trace_forward
from node.ledger_state import DatabaseState
from node.runtime import LedgerNode

__all__ = ["MAX_BATCH", "MAX_BODY_BYTES", "STATUS_BY_ERROR", "create_app"]

MAX_BATCH = 1000
MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_WAIT_SECONDS = 10.0
MAX_WAIT_SECONDS = 60.0
PROBLEM = "https://rantai.example/problems/"

STATUS_BY_ERROR: dict[type[LedgerError], int] = {
    EncodingError: 400,
    ProofError: 400,
    SignatureError: 422,
    RuleViolation: 422,
    ChainError: 409,
    ConsensusError: 409,
    StorageError: 503,
}


def problem(status: int, kind: str, detail: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem details response."""
    body = {"type": PROBLEM + kind, "title": kind.replace("-", " "), "status": status}
    body.update(detail=detail, **extra)
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def _status_of(error: LedgerError) -> int:
    for kind in type(error).__mro__:
        if kind in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[kind]
    return 400


def _rule_of(error: LedgerError) -> str:
    if isinstance(error, RuleViolation):
        return error.rule
    return {EncodingError: "envelope.malformed", SignatureError: "auth.signature"}.get(
        type(error), type(error).__name__
    )


def get_node(request: Request) -> LedgerNode:
    """The node an app serves (``app.dependency_overrides`` can replace it in tests)."""
    node: LedgerNode = request.app.state.node
    return node


NodeDep = Annotated[LedgerNode, Depends(get_node)]


def create_app(node: LedgerNode) -> FastAPI:
    """The FastAPI application serving ``node``."""
    app = FastAPI(
        title="Rantai ledger node",
        version="0.1.0",
        description="A permissioned, verifiable supply-chain ledger (DESIGN.md §6).",
    )

    app.state.node = node

    @app.exception_handler(LedgerError)
    async def ledger_error(_: Request, error: LedgerError) -> JSONResponse:
        kind = _rule_of(error).replace(".", "-")
        return problem(_status_of(error), kind, str(error))

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
        return problem(error.status_code, "http-error", str(error.detail))

    async def _body(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and int(declared) > MAX_BODY_BYTES:
            raise EncodingError(f"request body larger than {MAX_BODY_BYTES} bytes")
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise EncodingError(f"request body larger than {MAX_BODY_BYTES} bytes")
        return parse_json(raw)

    @app.post("/v1/events", summary="Submit one envelope or a batch of up to 1000")
    async def submit_events(
        request: Request,
        node: NodeDep,
        wait: Annotated[str | None, Query(pattern="^commit$")] = None,
        timeout: Annotated[float, Query(gt=0, le=MAX_WAIT_SECONDS)] = DEFAULT_WAIT_SECONDS,
    ) -> Response:
        value = await _body(request)
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
                    {"position": position, "event_id": None, "rule": _rule_of(e), "detail": str(e)}
                )
        if errors:
            return problem(400, "malformed-events", "the batch has malformed events", errors=errors)
        refused = node.check_batch(envelopes)
        if refused:
            status = max(_status_of(e) for _, _, e in refused)
            return problem(
                status,
                "events-refused",
                "nothing was admitted: the batch breaks the rules",
                errors=[
                    {
                        "position": position,
                        "event_id": envelope.event_id,
                        "rule": _rule_of(error),
                        "detail": error.detail if isinstance(error, RuleViolation) else str(error),
                    }
                    for position, envelope, error in refused
                ],
            )
        result = await node.submit(envelopes, wait=wait == "commit", timeout=timeout)
        status = 200 if wait == "commit" and result.committed else 202
        return JSONResponse({"events": result.events}, status_code=status)

    @app.get("/v1/events/{event_id}", summary="An event and where it is")
    def get_event(event_id: str, node: NodeDep) -> Response:
        stored = node.store.event(event_id)
        if stored is not None:
            return JSONResponse(
                {
                    "event_id": event_id,
                    "envelope": stored.envelope.to_json(),
                    "status": "committed",
                    "height": stored.height,
                    "index": stored.index,
                }
            )
        pending = node.app.pending_event(event_id)
        if pending is not None:
            return JSONResponse(
                {
                    "event_id": event_id,
                    "envelope": pending.to_json(),
                    "status": "pending",
                    "height": None,
                    "index": None,
                }
            )
        return problem(404, "event-unknown", f"no event {event_id}")

    @app.get("/v1/events/{event_id}/proof", summary="Inclusion proof of an event")
    def event_proof(
        event_id: str,
        node: NodeDep,
        request: Request,
        size: Annotated[int | None, Query(ge=1)] = None,
        format: Annotated[str | None, Query(pattern="^tlog-proof$")] = None,
    ) -> Response:
        stored = node.store.event(event_id)
        if stored is None:
            return problem(404, "event-unknown", f"no committed event {event_id}")
        wants_bundle = format == "tlog-proof" or "text/x.tlog-proof" in request.headers.get(
            "accept", ""
        )
        checkpoint = node.checkpoint(size)
        if size is None:
            if checkpoint is None:
                return problem(404, "no-checkpoint", "no cosigned checkpoint yet")
            size = int(checkpoint.split(b"\n")[1])
        if stored.index >= size:
            raise ProofError(f"event index {stored.index} is not in a tree of size {size}")
        proof = node.store.inclusion_proof(stored.index, size)
        if wants_bundle:
            if checkpoint is None:
                raise ProofError(f"no cosigned checkpoint for tree size {size}")
            lines = [
                "c2sp.org/tlog-proof@v1",
                f"index {stored.index}",
                *(base64.b64encode(h).decode() for h in proof),
            ]
            text = "\n".join(lines) + "\n\n" + checkpoint.decode()  # a blank line, then the note
            return PlainTextResponse(text, media_type="text/x.tlog-proof")
        return JSONResponse(
            {
                "index": stored.index,
                "size": size,
                "leaf_hash": node.store.leaf_hash(stored.index).hex(),
                "proof": [h.hex() for h in proof],
                "root": node.store.root(size).hex(),
            }
        )

    @app.get("/v1/proofs/consistency", summary="RFC 9162 consistency proof")
    def consistency(
        node: NodeDep,
        from_: Annotated[int, Query(alias="from", ge=1)],
        to: Annotated[int, Query(ge=1)],
    ) -> Response:
        proof = node.store.consistency_proof(from_, to)
        return JSONResponse(
            {
                "from": from_,
                "to": to,
                "proof": [h.hex() for h in proof],
                "root_from": node.store.root(from_).hex(),
                "root_to": node.store.root(to).hex(),
            }
        )

    @app.get("/v1/checkpoint", summary="The newest checkpoint cosigned by a quorum")
    def checkpoint(node: NodeDep) -> Response:
        note = node.checkpoint()
        if note is None:
            return problem(404, "no-checkpoint", "no cosigned checkpoint yet")
        return PlainTextResponse(note.decode())

    @app.get("/v1/blocks/{height}", summary="A block with its certificate")
    def block(height: int, node: NodeDep) -> Response:
        if height < 0 or height > node.store.head().height:
            return problem(404, "block-unknown", f"no block at height {height}")
        return JSONResponse(node.store.block(height).to_json())

    @app.get("/v1/export", summary="NDJSON: genesis, then blocks with certificates")
    def export(
        node: NodeDep,
        from_: Annotated[int, Query(alias="from", ge=0)] = 0,
        to: Annotated[int | None, Query(ge=0)] = None,
    ) -> Response:
        return StreamingResponse(node.export(from_, to), media_type="application/x-ndjson")

    @app.get("/v1/lots/{lot_id}", summary="A lot's current state")
    def lot(lot_id: str, node: NodeDep) -> Response:
        found = DatabaseState(node.store.engine).lot(lot_id)
        if found is None:
            return problem(404, "lot-unknown", f"no lot {lot_id}")
        return JSONResponse(found.to_json())

    @app.get("/v1/lots/{lot_id}/trace", summary="Trace a lot back to its origins or forward")
    def trace(
        lot_id: str,
        node: NodeDep,
        direction: Annotated[str, Query(pattern="^(back|forward)$")] = "back",
    ) -> Response:
        state = DatabaseState(node.store.engine)
        if state.lot(lot_id) is None:
            return problem(404, "lot-unknown", f"no lot {lot_id}")
        result = trace_back(state, lot_id) if direction == "back" else trace_forward(state, lot_id)
        return JSONResponse(result.to_json())

    @app.get("/v1/orgs", summary="Every organisation")
    def orgs(node: NodeDep) -> Response:
        found = DatabaseState(node.store.engine).orgs()
        return JSONResponse({"orgs": [org.to_json() for org in found]})

    @app.get("/v1/members/{member_id:path}", summary="A member")
    def member(member_id: str, node: NodeDep) -> Response:
        found = DatabaseState(node.store.engine).member(member_id)
        if found is None:
            return problem(404, "member-unknown", f"no member {member_id}")
        return JSONResponse(found.to_json())

    @app.get("/v1/status", summary="Where this node is")
    def status(node: NodeDep) -> Response:
        return JSONResponse(node.status())

    registry = node_registry(node)

    @app.get("/metrics", summary="Prometheus metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", summary="Liveness")
    def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @app.post("/v1/peer/inbox", include_in_schema=False)
    async def peer_inbox(request: Request, node: NodeDep) -> Response:
        value = await _body(request)
        items = value.get("items") if isinstance(value, dict) else None
        if not isinstance(items, list):
            raise EncodingError("a peer batch has items")
        node.receive([i for i in items if isinstance(i, dict)])
        return Response(status_code=204)

    return app
