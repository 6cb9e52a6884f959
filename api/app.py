"""The HTTP API of a node (DESIGN.md §6): thin FastAPI routes over a :class:`LedgerNode`.

Errors are RFC 9457 problem details (:mod:`api.problems` maps every ledger error to one status).
Who may call each route is decided before it runs, in one place: :mod:`api.access`.
Nothing is built at import time: :func:`create_app` makes an app for one node. The EPCIS routes
are in :mod:`api.epcis_routes`; the shapes and examples of the OpenAPI document in
:mod:`api.schemas`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from api import epcis_routes
from api.access import CallerDep, authorise, document_access
from api.dependencies import (
    DEFAULT_WAIT_SECONDS,
    MAX_BODY_BYTES,
    MAX_COUNT,
    NodeDep,
    TimeoutQuery,
    WaitQuery,
)
from api.epcis_routes import CAPTURE_SECURITY, CaptureSettings
from api.limits import RateLimiter, RateLimits
from api.metrics import node_registry
from api.problems import STATUS_BY_ERROR, install_problem_handlers, problem
from api.schemas import (
    BATCH_EXAMPLE,
    ENVELOPE_EXAMPLE,
    EXAMPLES,
    BlockDocument,
    ConsistencyProof,
    Envelope,
    EnvelopeBatch,
    EventRecord,
    EventsAnswer,
    Health,
    InclusionProof,
    LotState,
    MemberState,
    NodeStatus,
    OrgPage,
    TraceDocument,
    component_schemas,
    ok,
    problem_example,
    problem_response,
    ref,
)
from api.submission import BUSY_RESPONSE, MAX_BATCH, admit, parse_batch, read_body
from ledger.encoding import parse_json
from ledger.errors import EncodingError, ProofError
from ledger.trace import trace_back, trace_forward
from node.httpsig import ReplayGuard
from node.ledger_state import DatabaseState
from node.runtime import LedgerNode

__all__ = [
    "MAX_BATCH",
    "MAX_BODY_BYTES",
    "STATUS_BY_ERROR",
    "CaptureSettings",
    "RateLimits",
    "create_app",
]

DEFAULT_PAGE = 100
MAX_PAGE = 1000

_LOT_ID = r"^[A-Za-z0-9._:-]{1,128}$"
_MEMBER_ID = r"^[a-z0-9][a-z0-9-]{1,62}/[A-Za-z0-9._-]{1,64}$"
_EVENT_ID = r"^[0-9a-f]{64}$"

EventIdPath = Annotated[
    str,
    Path(
        pattern=_EVENT_ID,
        description="the event id (64 lowercase hex digits)",
        examples=[EXAMPLES["event"]["event_id"]],
    ),
]
LotIdPath = Annotated[str, Path(pattern=_LOT_ID, description="the lot id", examples=["KP-1"])]

_T = TypeVar("_T")


_TOO_LARGE = "Input should be less than or equal to 9007199254740991"
_INVALID = problem_response(
    "A parameter is malformed.",
    problem_example(
        422,
        "invalid-request",
        f"query.size: {_TOO_LARGE}",
        errors=[{"field": "query.size", "detail": _TOO_LARGE}],
    ),
)


def _page(
    items: Sequence[_T], key: Callable[[_T], str], after: str | None, limit: int
) -> tuple[list[_T], str | None]:
    """Up to ``limit`` items (sorted by ``key``) after the cursor ``after``, and the cursor
    of the next page (``None`` after the last)."""
    rest = [item for item in items if after is None or key(item) > after]
    page = rest[:limit]
    return page, key(page[-1]) if len(rest) > limit else None


def create_app(
    node: LedgerNode, capture: CaptureSettings | None = None, limits: RateLimits | None = None
) -> FastAPI:
    """The FastAPI application serving ``node``.

    Args:
        node: the node.
        capture: its capture key and token; without them ``POST /epcis/capture`` answers
            ``404``.
        limits: the rate limits per client address and per key (default: :class:`RateLimits`).
    """
    app = FastAPI(
        title="Rantai ledger node",
        version="0.1.0",
        description="A permissioned, verifiable supply-chain ledger (DESIGN.md §6). Errors are "
        "RFC 9457 problem details (`application/problem+json`).",
        generate_unique_id_function=lambda route: route.name,
        dependencies=[Depends(authorise)],
    )
    app.state.node = node
    app.state.capture = capture
    app.state.replay_guard = ReplayGuard()
    app.state.limiter = RateLimiter(limits or RateLimits())
    install_problem_handlers(app)

    @app.post(
        "/v1/events",
        status_code=202,
        summary="Submit one envelope or a batch of up to 1000",
        description="Each event is checked against the current state and the batch's earlier "
        "events; one invalid event refuses the whole batch and nothing is admitted. Known "
        "events count as accepted (idempotent). With `?wait=commit` the answer waits until "
        "every event is committed (`200`, with heights and log indexes) or the timeout passes "
        "(`202`).",
        response_class=JSONResponse,
        responses={
            200: ok("Every event is committed.", EventsAnswer, EXAMPLES["committed"]),
            202: ok(
                "Every event is admitted (or already known).", EventsAnswer, EXAMPLES["pending"]
            ),
            400: problem_response(
                "Malformed JSON or envelopes.",
                problem_example(
                    400,
                    "malformed-events",
                    "the batch has malformed events",
                    errors=[
                        {
                            "position": 0,
                            "event_id": None,
                            "rule": "envelope.malformed",
                            "detail": "envelope: missing sigs",
                        }
                    ],
                ),
            ),
            503: BUSY_RESPONSE,
            413: problem_response(
                "More than 1000 events or 16 MiB.",
                problem_example(413, "batch-too-large", "at most 1000 events per batch"),
            ),
            422: problem_response(
                "The rules refuse an event: nothing was admitted.",
                problem_example(
                    422,
                    "events-refused",
                    "nothing was admitted: the batch breaks the rules",
                    errors=[
                        {
                            "position": 1,
                            "event_id": EXAMPLES["event"]["event_id"],
                            "rule": "member.unknown",
                            "detail": "member koperasi-kopi/x does not exist",
                        }
                    ],
                ),
            ),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": 'One envelope, or `{"events": [envelope…]}` (at most 1000).',
                "content": {
                    "application/json": {
                        "schema": {"oneOf": [ref(Envelope), ref(EnvelopeBatch)]},
                        "examples": {
                            "envelope": {"summary": "one event", "value": ENVELOPE_EXAMPLE},
                            "batch": {"summary": "a batch", "value": BATCH_EXAMPLE},
                        },
                    }
                },
            }
        },
    )
    async def submit_events(
        request: Request,
        node: NodeDep,
        wait: WaitQuery = None,
        timeout: TimeoutQuery = DEFAULT_WAIT_SECONDS,
    ) -> Response:
        batch = parse_batch(parse_json(await read_body(request, MAX_BODY_BYTES)))
        if isinstance(batch, Response):
            return batch
        return await admit(request, node, batch, wait=wait == "commit", timeout=timeout)

    @app.get(
        "/v1/events/{event_id}",
        summary="An event and where it is",
        description="A committed or pending event with its envelope; `404` if unknown.",
        response_class=JSONResponse,
        responses={
            200: ok("The event.", EventRecord, EXAMPLES["event"]),
            404: problem_response(
                "No such event.", problem_example(404, "event-unknown", "no event 5f0c…")
            ),
            422: _INVALID,
        },
    )
    def get_event(event_id: EventIdPath, node: NodeDep) -> Response:
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

    @app.get(
        "/v1/events/{event_id}/proof",
        summary="Inclusion proof of an event",
        description="An RFC 9162 inclusion proof against tree size `size` (default: the "
        "latest cosigned checkpoint). `Accept: text/x.tlog-proof` or `?format=tlog-proof` "
        "answer a C2SP tlog-proof bundle (index, proof, cosigned checkpoint) that anyone can "
        "verify offline; its `size` must be a committed block's tree size.",
        response_class=JSONResponse,
        responses={
            200: {
                "description": "The proof.",
                "content": {
                    "application/json": {
                        "schema": ref(InclusionProof),
                        "example": EXAMPLES["inclusion"],
                    },
                    "text/x.tlog-proof": {
                        "schema": {"type": "string"},
                        "example": EXAMPLES["tlog-proof"],
                    },
                },
            },
            400: problem_response(
                "No proof for that size.",
                problem_example(
                    400, "proof-impossible", "event index 41 is not in a tree of size 7"
                ),
            ),
            404: problem_response(
                "No such committed event, or no checkpoint yet.",
                problem_example(404, "event-unknown", "no committed event 5f0c…"),
                problem_example(404, "no-checkpoint", "no cosigned checkpoint yet"),
            ),
            422: _INVALID,
        },
    )
    def event_proof(
        event_id: EventIdPath,
        node: NodeDep,
        request: Request,
        size: Annotated[
            int | None, Query(ge=1, le=MAX_COUNT, description="the tree size", examples=[42])
        ] = None,
        format: Annotated[
            str | None,
            Query(
                pattern="^tlog-proof$",
                description="`tlog-proof`: a C2SP bundle",
                examples=["tlog-proof"],
            ),
        ] = None,
    ) -> Response:
        located = node.store.locations([event_id]).get(event_id)
        if located is None:
            return problem(404, "event-unknown", f"no committed event {event_id}")
        index = located[1]
        wants_bundle = format == "tlog-proof" or "text/x.tlog-proof" in request.headers.get(
            "accept", ""
        )
        checkpoint = node.checkpoint(size) if wants_bundle or size is None else None
        if size is None:
            if checkpoint is None:
                return problem(404, "no-checkpoint", "no cosigned checkpoint yet")
            size = int(checkpoint.split(b"\n")[1])
        if index >= size:
            raise ProofError(f"event index {index} is not in a tree of size {size}")
        proof, leaf, root = node.store.inclusion(index, size)
        if wants_bundle:
            if checkpoint is None:
                raise ProofError(f"no cosigned checkpoint for tree size {size}")
            lines = [
                "c2sp.org/tlog-proof@v1",
                f"index {index}",
                *(base64.b64encode(h).decode() for h in proof),
            ]
            text = "\n".join(lines) + "\n\n" + checkpoint.decode()  # a blank line, then the note
            return PlainTextResponse(text, media_type="text/x.tlog-proof")
        return JSONResponse(
            {
                "index": index,
                "size": size,
                "leaf_hash": leaf.hex(),
                "proof": [h.hex() for h in proof],
                "root": root.hex(),
            }
        )

    @app.get(
        "/v1/proofs/consistency",
        summary="RFC 9162 consistency proof",
        description="A consistency proof from tree size `from` to `to` (both ≥ 1, `from` ≤ "
        "`to` ≤ the log's size), with both roots.",
        response_class=JSONResponse,
        responses={
            200: ok("The proof.", ConsistencyProof, EXAMPLES["consistency"]),
            400: problem_response(
                "Impossible sizes.",
                problem_example(400, "proof-impossible", "tree size 99 is beyond the log's 42"),
            ),
            422: _INVALID,
        },
    )
    def consistency(
        node: NodeDep,
        from_: Annotated[
            int,
            Query(alias="from", ge=1, le=MAX_COUNT, description="the old tree size", examples=[1]),
        ],
        to: Annotated[
            int, Query(ge=1, le=MAX_COUNT, description="the new tree size", examples=[42])
        ],
    ) -> Response:
        proof, root_from, root_to = node.store.consistency(from_, to)
        return JSONResponse(
            {
                "from": from_,
                "to": to,
                "proof": [h.hex() for h in proof],
                "root_from": root_from.hex(),
                "root_to": root_to.hex(),
            }
        )

    @app.get(
        "/v1/checkpoint",
        summary="The newest checkpoint cosigned by a quorum",
        description="A C2SP tlog-checkpoint as a signed note, cosigned by more than 2/3 of "
        "the validators (it may lag the head by a block).",
        response_class=PlainTextResponse,
        responses={
            200: ok("The signed note.", None, EXAMPLES["checkpoint"], media_type="text/plain"),
            404: problem_response(
                "No checkpoint yet.",
                problem_example(404, "no-checkpoint", "no cosigned checkpoint yet"),
            ),
        },
    )
    def checkpoint(node: NodeDep) -> Response:
        note = node.checkpoint()
        if note is None:
            return problem(404, "no-checkpoint", "no cosigned checkpoint yet")
        return PlainTextResponse(note.decode())

    @app.get(
        "/v1/blocks/{height}",
        summary="A block with its certificate",
        description="The header, events and commit certificate of the block at `height`.",
        response_class=JSONResponse,
        responses={
            200: ok("The block.", BlockDocument, EXAMPLES["block"]),
            404: problem_response(
                "No block there.", problem_example(404, "block-unknown", "no block at height 99")
            ),
            422: _INVALID,
        },
    )
    def block(
        height: Annotated[int, Path(description="the block height", examples=[7])], node: NodeDep
    ) -> Response:
        line = next(node.store.block_lines(height, height), None) if height >= 0 else None
        if line is None:
            return problem(404, "block-unknown", f"no block at height {height}")
        return Response(line, media_type="application/json")

    @app.get(
        "/v1/export",
        summary="NDJSON: genesis, then blocks with certificates",
        description="The genesis document, then blocks `from`..`to` (inclusive; `to` past the "
        "head stops at the head) with their certificates, streamed, for `rantai verify`.",
        response_class=StreamingResponse,
        responses={
            200: ok("The export.", None, EXAMPLES["export"], media_type="application/x-ndjson"),
            400: problem_response(
                "`to` before `from`.",
                problem_example(400, "export-range", "to 3 is before from 5"),
            ),
            404: problem_response(
                "`from` is past the head.",
                problem_example(404, "block-unknown", "no block at height 99 (the head is 7)"),
            ),
            422: _INVALID,
        },
    )
    def export(
        node: NodeDep,
        from_: Annotated[
            int,
            Query(alias="from", ge=0, le=MAX_COUNT, description="the first height", examples=[1]),
        ] = 0,
        to: Annotated[
            int | None,
            Query(ge=0, le=MAX_COUNT, description="the last height (default: head)", examples=[64]),
        ] = None,
    ) -> Response:
        head = node.store.head().height
        if from_ > head:
            return problem(404, "block-unknown", f"no block at height {from_} (the head is {head})")
        if to is not None and to < from_:
            return problem(400, "export-range", f"to {to} is before from {from_}")
        return StreamingResponse(node.export(from_, to), media_type="application/x-ndjson")

    @app.get(
        "/v1/lots/{lot_id}",
        summary="A lot's current state",
        description="Quantity, owner, status, origin and certifications of a lot.",
        response_class=JSONResponse,
        responses={
            200: ok("The lot.", LotState, EXAMPLES["lot"]),
            404: problem_response("No such lot.", problem_example(404, "lot-unknown", "no lot X")),
            422: _INVALID,
        },
    )
    def lot(lot_id: LotIdPath, node: NodeDep) -> Response:
        found = DatabaseState(node.store.engine).lot(lot_id)
        if found is None:
            return problem(404, "lot-unknown", f"no lot {lot_id}")
        return JSONResponse(found.to_json())

    @app.get(
        "/v1/lots/{lot_id}/trace",
        summary="Trace a lot back to its origins or forward",
        description="The lots, steps and origins of a lot's lineage (DESIGN.md §6); `back` "
        "ends at the harvests and shares the lot's quantity among them.",
        response_class=JSONResponse,
        responses={
            200: ok("The trace.", TraceDocument, EXAMPLES["trace"]),
            404: problem_response("No such lot.", problem_example(404, "lot-unknown", "no lot X")),
            422: _INVALID,
        },
    )
    def trace(
        lot_id: LotIdPath,
        node: NodeDep,
        direction: Annotated[
            str,
            Query(pattern="^(back|forward)$", description="`back` or `forward`", examples=["back"]),
        ] = "back",
    ) -> Response:
        state = DatabaseState(node.store.engine)
        if state.lot(lot_id) is None:
            return problem(404, "lot-unknown", f"no lot {lot_id}")
        result = trace_back(state, lot_id) if direction == "back" else trace_forward(state, lot_id)
        return JSONResponse(result.to_json())

    @app.get(
        "/v1/orgs",
        summary="The organisations, a page at a time",
        description="Organisations by id. Pass the answer's `next` as `after` for the next "
        "page; `next` is `null` on the last one.",
        response_class=JSONResponse,
        responses={200: ok("A page of organisations.", OrgPage, EXAMPLES["orgs"]), 422: _INVALID},
    )
    def orgs(
        node: NodeDep,
        limit: Annotated[
            int,
            Query(
                ge=1,
                le=MAX_PAGE,
                description="the most organisations in the page",
                examples=[100],
            ),
        ] = DEFAULT_PAGE,
        after: Annotated[
            str | None,
            Query(
                max_length=128,
                description="start after this org id (a page's `next`)",
                examples=["koperasi-kopi"],
            ),
        ] = None,
    ) -> Response:
        found, following = _page(
            DatabaseState(node.store.engine).orgs(), lambda org: org.org_id, after, limit
        )
        return JSONResponse({"orgs": [org.to_json() for org in found], "next": following})

    @app.get(
        "/v1/members/{member_id:path}",
        summary="A member",
        description="A member's organisation, role and profile hash (member ids contain `/`).",
        response_class=JSONResponse,
        responses={
            200: ok("The member.", MemberState, EXAMPLES["member"]),
            404: problem_response(
                "No such member.", problem_example(404, "member-unknown", "no member x/y")
            ),
            422: _INVALID,
        },
    )
    def member(
        member_id: Annotated[
            str,
            Path(
                pattern=_MEMBER_ID,
                description="`<org_id>/<local>`",
                examples=["koperasi-kopi/siti"],
            ),
        ],
        node: NodeDep,
    ) -> Response:
        found = DatabaseState(node.store.engine).member(member_id)
        if found is None:
            return problem(404, "member-unknown", f"no member {member_id}")
        return JSONResponse(found.to_json())

    @app.get(
        "/v1/status",
        summary="Where this node is",
        description="Head, validators, peers, evidence of double signing, consensus state.",
        response_class=JSONResponse,
        responses={200: ok("The status.", NodeStatus, EXAMPLES["status"])},
    )
    def status(node: NodeDep) -> Response:
        return JSONResponse(node.status())

    registry = node_registry(node)

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        description="Height, committed and pending events, round, peers, evidence.",
        response_class=PlainTextResponse,
        responses={200: ok("The metrics.", None, EXAMPLES["metrics"], media_type="text/plain")},
    )
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get(
        "/healthz",
        summary="Liveness",
        description="`200` while the node serves requests and can store blocks; `503` while "
        "its database refuses writes (it serves reads, takes no part in consensus and retries).",
        response_class=JSONResponse,
        responses={
            200: ok("Alive.", Health, EXAMPLES["health"]),
            503: ok("Alive, but the database refuses writes.", Health, EXAMPLES["health_fault"]),
        },
    )
    def healthz(node: NodeDep) -> Response:
        if node.fault is not None:
            return JSONResponse({"status": "fault", "detail": node.fault}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.post("/v1/peer/inbox", include_in_schema=False)
    async def peer_inbox(caller: CallerDep, node: NodeDep) -> Response:
        value = parse_json(caller.body)
        items = value.get("items") if isinstance(value, dict) else None
        if not isinstance(items, list):
            raise EncodingError("a peer batch has items")
        node.receive([i for i in items if isinstance(i, dict)])
        return Response(status_code=204)

    app.include_router(epcis_routes.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            components = document.setdefault("components", {})
            components.setdefault("schemas", {}).update(component_schemas())
            components["securitySchemes"] = {
                CAPTURE_SECURITY: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The capture token of the node's [capture] configuration.",
                }
            }
            document_access(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
