"""The EPCIS 2.0 REST binding subset (DESIGN.md §6): ``POST /epcis/capture``, ``GET /epcis/events``.

Thin routes: capture maps and signs through :mod:`node.epcis_capture` and is then admitted like
any ``POST /v1/events`` batch; the query runs in :mod:`node.epcis_query`. Capture needs the
node's capture key (``[capture]`` in ``node.toml``) and the bearer token that goes with it.
"""

from __future__ import annotations

import datetime as _dt
import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from api.access import EventFilterDep
from api.dependencies import DEFAULT_WAIT_SECONDS, NodeDep, TimeoutQuery, WaitQuery
from api.problems import RequestRefusedError
from api.schemas import (
    CAPTURE_EXAMPLE,
    EXAMPLES,
    EpcisDocument,
    EpcisQueryDocument,
    EventsAnswer,
    ok,
    problem_example,
    problem_response,
    ref,
)
from api.submission import BUSY_RESPONSE, admit, read_body
from ledger.encoding import format_time
from node.epcis import MAX_DOCUMENT_BYTES, MAX_EVENTS
from node.epcis_capture import capture_envelopes, map_document
from node.epcis_query import (
    DEFAULT_PER_PAGE,
    EVENT_TYPES,
    MAX_PER_PAGE,
    parse_event_query,
    run_event_query,
)

__all__ = ["CAPTURE_SECURITY", "CaptureSettings", "capture_settings", "router"]

CAPTURE_SECURITY = "captureToken"
"""The name of the capture token's security scheme in the OpenAPI document."""
_EPCIS_JSON = "application/ld+json"


class EpcisJSONResponse(JSONResponse):
    """A JSON-LD EPCIS document."""

    media_type = _EPCIS_JSON


@dataclass(frozen=True, slots=True)
class CaptureSettings:
    """A node's capture key and the bearer token that authenticates its organisation."""

    key: Ed25519PrivateKey
    token: str

    def authorises(self, authorization: str | None) -> bool:
        """Does an ``Authorization`` header carry this token (``Bearer <token>``)?"""
        scheme, _, credentials = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), self.token.encode()
        )


router = APIRouter(prefix="/epcis", tags=["EPCIS"])

_NOT_CONFIGURED = problem_example(
    404, "capture-not-configured", "this node has no capture key ([capture] in node.toml)"
)
_UNAUTHORISED = problem_example(
    401, "unauthorized", "a valid Authorization: Bearer token is needed"
)


async def capture_settings(request: Request) -> CaptureSettings:
    """The node's capture key, for a caller with its token.

    A dependency, so it runs before the route's parameters are validated: a request without
    the token answers ``401`` whatever its parameters (a malformed ``wait`` included), as the
    signed routes do, and tells an unauthenticated caller nothing about its input. ``async``
    so that it runs on the event loop, not on a worker thread (it does no I/O).

    Raises:
        RequestRefusedError: ``404`` on a node without a capture key, ``401`` without the
            token or with a wrong one.
    """
    settings: CaptureSettings | None = request.app.state.capture
    if settings is None:
        raise RequestRefusedError(404, "capture-not-configured", _NOT_CONFIGURED["detail"])
    if not settings.authorises(request.headers.get("authorization")):
        raise RequestRefusedError(
            401,
            "unauthorized",
            _UNAUTHORISED["detail"],
            headers={"WWW-Authenticate": 'Bearer realm="epcis-capture"'},
        )
    return settings


CaptureSettingsDep = Annotated[CaptureSettings, Depends(capture_settings)]
"""The capture settings of ``POST /epcis/capture``, once the caller's token is checked."""

_CAPTURE_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": f"An EPCIS 2.0 EPCISDocument of at most {MAX_EVENTS} lot-level events "
    f"and {MAX_DOCUMENT_BYTES} bytes.",
    "content": {
        media: {"schema": ref(EpcisDocument), "examples": {"harvest": {"value": CAPTURE_EXAMPLE}}}
        for media in ("application/json", _EPCIS_JSON)
    },
}


@router.post(
    "/capture",
    status_code=202,
    summary="Capture EPCIS 2.0 events as ledger events",
    description=(
        "Each lot-level event of the document becomes a ledger event signed with this node's "
        "capture key, with `epcis` set to its CBV 2.0 event hash id: ObjectEvent ADD + "
        "commissioning → `lot.create`, TransformationEvent → `lot.transform`, ObjectEvent "
        "OBSERVE + shipping → `lot.ship`, ObjectEvent OBSERVE + receiving → `lot.receive`. "
        "Answers as `POST /v1/events` (all or nothing, `?wait=commit`). An EPCIS event that is "
        "already on the ledger answers with the ledger event that holds it."
    ),
    response_class=JSONResponse,
    responses={
        200: ok(
            "Every event is committed (with `wait=commit`).", EventsAnswer, EXAMPLES["committed"]
        ),
        202: ok("Every event is admitted (or already known).", EventsAnswer, EXAMPLES["pending"]),
        400: problem_response(
            "The body is not strict JSON.",
            problem_example(400, "malformed-input", "malformed JSON: Expecting value"),
        ),
        401: problem_response("No or a wrong bearer token.", _UNAUTHORISED),
        404: problem_response("This node has no capture key.", _NOT_CONFIGURED),
        503: BUSY_RESPONSE,
        413: problem_response(
            "Too many events or bytes.",
            problem_example(413, "capture-too-large", "at most 1000 events per capture"),
            problem_example(413, "body-too-large", "request body larger than 4194304 bytes"),
        ),
        422: problem_response(
            "An event cannot be captured, or the rules refuse one: nothing was admitted.",
            problem_example(
                422,
                "epcis-unsupported",
                "event 0 (epcisBody.eventList[0].bizStep): an ObjectEvent with action OBSERVE "
                "and bizStep inspecting has no ledger event",
                errors=[
                    {
                        "position": 0,
                        "event_id": None,
                        "rule": "epcis.unsupported",
                        "field": "epcisBody.eventList[0].bizStep",
                        "detail": "an ObjectEvent with action OBSERVE and bizStep inspecting "
                        "has no ledger event",
                    }
                ],
            ),
            problem_example(
                422,
                "events-refused",
                "nothing was admitted: the batch breaks the rules",
                errors=[
                    {
                        "position": 0,
                        "event_id": EXAMPLES["event"]["event_id"],
                        "rule": "lot.exists",
                        "detail": "lot KP-SITI-2611 exists",
                    }
                ],
            ),
        ),
    },
    openapi_extra={"requestBody": _CAPTURE_REQUEST_BODY, "security": [{CAPTURE_SECURITY: []}]},
)
async def capture(
    request: Request,
    node: NodeDep,
    settings: CaptureSettingsDep,
    wait: WaitQuery = None,
    timeout: TimeoutQuery = DEFAULT_WAIT_SECONDS,
) -> Response:
    raw = await read_body(request, MAX_DOCUMENT_BYTES)
    now = _dt.datetime.now(_dt.UTC)
    mapped = await run_in_threadpool(map_document, raw, network=node.genesis.network, now=now)
    envelopes = capture_envelopes(node, mapped, settings.key)
    return await admit(request, node, envelopes, wait=wait == "commit", timeout=timeout)


def _parameter(name: str, description: str, example: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "string", **schema},
        "example": example,
    }


_LIST = "Several values: separate them with `|` or repeat the parameter."
_QUERY_PARAMETERS = [
    _parameter(
        "eventType",
        f"Only events of these EPCIS types ({', '.join(sorted(EVENT_TYPES))}). {_LIST}",
        "ObjectEvent|TransformationEvent",
    ),
    _parameter(
        "GE_eventTime",
        "Only events with eventTime at or after this RFC 3339 time.",
        "2026-11-29T00:00:00Z",
        format="date-time",
    ),
    _parameter(
        "LT_eventTime",
        "Only events with eventTime before this RFC 3339 time.",
        "2026-11-30T00:00:00+07:00",
        format="date-time",
    ),
    _parameter(
        "EQ_bizStep",
        f"Only events with one of these business steps (CBV bare words or URIs). {_LIST}",
        "shipping|receiving",
    ),
    _parameter(
        "MATCH_epcClass",
        "Only ObjectEvents naming one of these lots in quantityList (urn:rantai lot classes, "
        f"GS1 Digital Links with a lot, or urn:epc:class:lgtin; no patterns). {_LIST}",
        "urn:rantai:kalbar-coop:lot:KP-SITI-2611",
    ),
    _parameter(
        "MATCH_anyEPCClass",
        f"Only events naming one of these lots in any quantity, input or output list. {_LIST}",
        "https://id.gs1.org/01/09521234543213/10/KP-1",
    ),
    {
        **_parameter(
            "perPage", f"The most events in a page (1-{MAX_PER_PAGE}).", str(DEFAULT_PER_PAGE)
        ),
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE},
        "example": DEFAULT_PER_PAGE,
    },
    _parameter(
        "nextPageToken",
        'Where the page starts: the token of the previous page\'s `Link: rel="next"`.',
        "NDI",
    ),
]


@router.get(
    "/events",
    summary="Query committed events as EPCIS 2.0 events",
    description=(
        "A SimpleEventQuery over the committed `lot.*` events, in log order, as an "
        "EPCISQueryDocument. When more events may match, the `Link` header names the next "
        'page (`rel="next"`, with its `nextPageToken`); a page may hold fewer than `perPage` '
        "events. Any other query parameter is refused with `400`. Auditors and validators "
        "see every event; other members the events they could read one by one "
        "(`GET /v1/events/{event_id}`)."
    ),
    response_class=EpcisJSONResponse,
    responses={
        200: ok(
            "One page of matching events.",
            EpcisQueryDocument,
            EXAMPLES["query"],
            media_type=_EPCIS_JSON,
            headers={
                "Link": {
                    "description": 'The next page: `<URL>; rel="next"` (absent on the last page)',
                    "schema": {"type": "string"},
                    "example": "<http://127.0.0.1:8101/epcis/events?perPage=30&nextPageToken=NDI>"
                    '; rel="next"',
                }
            },
        ),
        400: problem_response(
            "A query parameter is malformed or not supported.",
            problem_example(
                400,
                "query-parameter",
                "perPage: must be a whole number from 1 to 1000, got '0'",
                parameter="perPage",
            ),
        ),
    },
    openapi_extra={"parameters": _QUERY_PARAMETERS},
)
def events(request: Request, node: NodeDep, visible: EventFilterDep) -> Response:
    query = parse_event_query(
        request.query_params.multi_items(),
        network=node.genesis.network,
        log_size=node.store.head().tree_size,
    )
    created = format_time(_dt.datetime.now(_dt.UTC).replace(microsecond=0))
    page = run_event_query(node.store, query, created=created, visible=visible)
    headers = {}
    if page.next_page_token is not None:
        following = request.url.include_query_params(nextPageToken=page.next_page_token)
        headers["Link"] = f'<{following}>; rel="next"'
    return EpcisJSONResponse(page.document, headers=headers)
