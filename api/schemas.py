"""The wire shapes of the API as pydantic models, with examples, for the OpenAPI document.

Routes answer with plain JSON built by the ledger's own ``to_json`` methods (the bytes clients
hash and verify must not pass through a second serialiser); these models describe those answers
so that a client can be generated from ``/openapi.json``. :func:`ok` and :func:`problem_response`
build the ``responses`` entries of a route; :func:`component_schemas` gives the models' schemas
for the document's ``components``.

FastAPI leaves ``null`` values out of the document it generates, examples included, so a field
that may be ``null`` is declared optional here: a client must accept it absent or ``null``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from api.problems import PROBLEM

__all__ = [
    "BATCH_EXAMPLE",
    "CAPTURE_EXAMPLE",
    "ENVELOPE_EXAMPLE",
    "EXAMPLES",
    "MODELS",
    "component_schemas",
    "ok",
    "problem_example",
    "problem_response",
    "ref",
]

# --- examples ---------------------------------------------------------------------------------

_EVENT_ID = "5f0c6b1e0d4a4c5e9a1e7f3b2c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f809"
_KEY_ID = "9b1f4c2ad0e37a65c88e0f4b71d2a3c5e6f708192a3b4c5d6e7f8091a2b3c4d5"
_HASH = "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b"
_SIG = "a4" * 64
ENVELOPE_EXAMPLE: dict[str, Any] = {
    "body": {
        "v": 1,
        "network": "kalbar-coop",
        "type": "lot.create",
        "nonce": "6f1c2d9e",
        "created_at": "2026-11-29T03:00:00Z",
        "payload": {
            "lot_id": "KP-SITI-2611",
            "commodity": "coffee",
            "quantity": "900",
            "uom": "kg",
            "producer": "koperasi-kopi/siti",
            "plot_id": "PLT-SITI-01",
            "harvested_on": "2026-11-22",
        },
    },
    "sigs": [{"key": _KEY_ID, "sig": _SIG}],
}
"""A signed ``lot.create`` envelope (DESIGN.md §3)."""
BATCH_EXAMPLE: dict[str, Any] = {"events": [ENVELOPE_EXAMPLE]}
"""A batch of envelopes."""
_NETWORK_URN = "urn:rantai:kalbar-coop"
CAPTURE_EXAMPLE: dict[str, Any] = {
    "@context": [
        "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
        {"rantai": "https://rantai.example/ns/epcis/"},
    ],
    "type": "EPCISDocument",
    "schemaVersion": "2.0",
    "creationDate": "2026-11-29T03:00:00Z",
    "epcisBody": {
        "eventList": [
            {
                "type": "ObjectEvent",
                "eventTime": "2026-11-29T10:00:00+07:00",
                "eventTimeZoneOffset": "+07:00",
                "action": "ADD",
                "bizStep": "commissioning",
                "disposition": "active",
                "quantityList": [
                    {"epcClass": f"{_NETWORK_URN}:lot:KP-SITI-2611", "quantity": 900, "uom": "KGM"}
                ],
                "sourceList": [
                    {"type": "owning_party", "source": f"{_NETWORK_URN}:party:koperasi-kopi/siti"}
                ],
                "ilmd": {
                    "cbvmda:harvestStartDate": "2026-11-22",
                    "rantai:commodity": "coffee",
                    "rantai:plotID": "PLT-SITI-01",
                },
            }
        ]
    },
}
"""An EPCIS 2.0 capture document with one harvest (captured as ``lot.create``)."""
_HASH_ID = f"ni:///sha-256;{_HASH}?ver=CBV2.0"
_QUERY_EXAMPLE: dict[str, Any] = {
    "@context": CAPTURE_EXAMPLE["@context"],
    "type": "EPCISQueryDocument",
    "schemaVersion": "2.0",
    "creationDate": "2026-11-29T04:00:00Z",
    "epcisBody": {
        "queryResults": {
            "queryName": "SimpleEventQuery",
            "resultsBody": {
                "eventList": [
                    {
                        "eventID": _HASH_ID,
                        **CAPTURE_EXAMPLE["epcisBody"]["eventList"][0],
                        "eventTime": "2026-11-29T03:00:00Z",
                        "eventTimeZoneOffset": "+00:00",
                        "recordTime": "2026-11-29T03:00:01Z",
                        "rantai:eventID": _EVENT_ID,
                        "rantai:logIndex": 41,
                        "rantai:eventType": "lot.create",
                    }
                ]
            },
        }
    },
}
_CHECKPOINT = (
    "rantai.local/kalbar-coop\n42\nOnvT4jYKPSnupDb8+35Exz...=\n\n— node-1.kalbar-coop 8gP0nQ...\n"
)


def problem_example(status: int, kind: str, detail: str, **extra: Any) -> dict[str, Any]:
    """The body :func:`api.problems.problem` answers with."""
    return {
        "type": PROBLEM + kind,
        "title": kind.replace("-", " "),
        "status": status,
        "detail": detail,
        **extra,
    }


# --- models -----------------------------------------------------------------------------------


class ProblemError(BaseModel):
    """One refused event (or EPCIS event) of a batch."""

    position: int | None = Field(
        default=None, description="index in the batch or EPCIS eventList (null: the document)"
    )
    event_id: str | None = Field(
        default=None, description="the ledger event id, when its body parses"
    )
    rule: str = Field(description="the rule refused, e.g. lot.no-double-spend")
    detail: str
    field: str | None = Field(
        default=None, description="EPCIS capture: the path of the field, e.g. epcisBody…uom"
    )


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(description="a URI naming the kind of problem")
    title: str
    status: int
    detail: str
    errors: list[ProblemError] | list[dict[str, str]] | None = Field(
        default=None, description="per event (batches) or per field (request validation)"
    )
    parameter: str | None = Field(default=None, description="the refused query parameter")


class EventStatus(BaseModel):
    """Where one submitted event is."""

    event_id: str
    status: Literal["pending", "committed"]
    height: int | None = Field(default=None, description="its block, once committed")
    index: int | None = Field(default=None, description="its log index, once committed")


class EventsAnswer(BaseModel):
    """The events of a batch, in submission order."""

    events: list[EventStatus]


class EventRecord(BaseModel):
    """An event with where it is."""

    event_id: str
    envelope: dict[str, Any]
    status: Literal["pending", "committed"]
    height: int | None = Field(default=None, description="null while pending")
    index: int | None = Field(default=None, description="null while pending")


class InclusionProof(BaseModel):
    """An RFC 9162 inclusion proof (hex hashes)."""

    index: int
    size: int
    leaf_hash: str
    proof: list[str]
    root: str


class ConsistencyProof(BaseModel):
    """An RFC 9162 consistency proof (hex hashes)."""

    model_config = ConfigDict(populate_by_name=True)
    from_: int = Field(alias="from")
    to: int
    proof: list[str]
    root_from: str
    root_to: str


class BlockDocument(BaseModel):
    """A block: header, events and commit certificate (``null`` at height 0)."""

    header: dict[str, Any]
    events: list[dict[str, Any]]
    commit: dict[str, Any] | None = Field(default=None, description="null at height 0")


class LotState(BaseModel):
    """A lot's current state."""

    lot_id: str
    commodity: str
    quantity: str
    uom: str
    owner: str
    status: Literal["active", "in_transit", "consumed"]
    index: int
    producer: str | None = None
    plot_id: str | None = None
    harvested_on: str | None = None
    gtin: str | None = None
    shipment_id: str | None = None
    loss: str
    certifications: list[dict[str, Any]]


class TraceDocument(BaseModel):
    """A lot's lineage (DESIGN.md §6); ``parties`` only in forward traces."""

    lot_id: str
    direction: Literal["back", "forward"]
    lots: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    origins: list[dict[str, Any]]
    parties: list[str] | None = None


class OrgState(BaseModel):
    """An organisation."""

    org_id: str
    name: str
    kind: str
    index: int


class OrgPage(BaseModel):
    """A page of organisations by id; ``next`` is the ``after`` of the next page."""

    orgs: list[OrgState]
    next: str | None = Field(default=None, description="null on the last page")


class MemberState(BaseModel):
    """A member."""

    member_id: str
    org_id: str
    role: str
    profile_hash: str
    index: int


class NodeStatus(BaseModel):
    """Where this node is (DESIGN.md §6), plus its consensus state."""

    model_config = ConfigDict(extra="allow")
    name: str
    network: str
    origin: str
    height: int
    block_hash: str
    tree_size: int
    tree_root: str
    validators: list[dict[str, str]]
    peers: list[dict[str, Any]]
    evidence: list[dict[str, Any]]


class Health(BaseModel):
    """Liveness: ``fault`` (with ``503``) while the node cannot write to its database."""

    status: Literal["ok", "fault"]
    detail: str | None = None


class EpcisDocument(BaseModel):
    """An EPCIS 2.0 JSON-LD ``EPCISDocument`` (the EPCIS 2.0 JSON Schema applies)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    context: Any = Field(alias="@context")
    type: Literal["EPCISDocument"]
    schemaVersion: str  # noqa: N815 - the EPCIS field name
    creationDate: str  # noqa: N815
    epcisBody: dict[str, Any]  # noqa: N815


class EpcisQueryDocument(BaseModel):
    """An EPCIS 2.0 ``EPCISQueryDocument`` answering a ``SimpleEventQuery``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    context: Any = Field(alias="@context")
    type: Literal["EPCISQueryDocument"]
    schemaVersion: str  # noqa: N815
    creationDate: str  # noqa: N815
    epcisBody: dict[str, Any]  # noqa: N815


class Envelope(BaseModel):
    """A signed event (DESIGN.md §3)."""

    body: dict[str, Any]
    sigs: list[dict[str, str]]


class EnvelopeBatch(BaseModel):
    """Up to 1000 envelopes, admitted all or nothing."""

    events: list[Envelope]


MODELS: tuple[type[BaseModel], ...] = (
    Problem,
    ProblemError,
    EventStatus,
    EventsAnswer,
    EventRecord,
    InclusionProof,
    ConsistencyProof,
    BlockDocument,
    LotState,
    TraceDocument,
    OrgState,
    OrgPage,
    MemberState,
    NodeStatus,
    Health,
    EpcisDocument,
    EpcisQueryDocument,
    Envelope,
    EnvelopeBatch,
)
"""Every model the OpenAPI document names."""


def component_schemas() -> dict[str, Any]:
    """The JSON schemas of :data:`MODELS`, keyed by model name, referring to each other as
    ``#/components/schemas/{name}``."""
    _, top = models_json_schema(
        [(model, "serialization") for model in MODELS],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = top["$defs"]
    return schemas


def ref(model: type[BaseModel]) -> dict[str, str]:
    """A JSON schema reference to a model's component schema."""
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def ok(
    description: str,
    model: type[BaseModel] | None,
    example: Any,
    media_type: str = "application/json",
    **extra: Any,
) -> dict[str, Any]:
    """A documented successful response (``model`` ``None``: a string body)."""
    schema = ref(model) if model is not None else {"type": "string"}
    return {
        "description": description,
        "content": {media_type: {"schema": schema, "example": example}},
        **extra,
    }


def problem_response(description: str, *examples: dict[str, Any]) -> dict[str, Any]:
    """A documented problem details response with one example per kind of problem."""
    return {
        "description": description,
        "content": {
            "application/problem+json": {
                "schema": ref(Problem),
                "examples": {
                    example["type"].rsplit("/", 1)[1]: {
                        "summary": example["title"],
                        "value": example,
                    }
                    for example in examples
                },
            }
        },
    }


# --- example answers, by route ----------------------------------------------------------------

EXAMPLES: dict[str, Any] = {
    "committed": {
        "events": [{"event_id": _EVENT_ID, "status": "committed", "height": 7, "index": 41}]
    },
    "pending": {"events": [{"event_id": _EVENT_ID, "status": "pending"}]},
    "event": {
        "event_id": _EVENT_ID,
        "envelope": ENVELOPE_EXAMPLE,
        "status": "committed",
        "height": 7,
        "index": 41,
    },
    "inclusion": {
        "index": 41,
        "size": 42,
        "leaf_hash": _HASH,
        "proof": [_HASH, _HASH],
        "root": _HASH,
    },
    "tlog-proof": "c2sp.org/tlog-proof@v1\nindex 41\nOnvT4jYKPSnupDb8+35Exz...=\n\n" + _CHECKPOINT,
    "consistency": {
        "from": 1,
        "to": 42,
        "proof": [_HASH, _HASH],
        "root_from": _HASH,
        "root_to": _HASH,
    },
    "checkpoint": _CHECKPOINT,
    "block": {
        "header": {
            "v": 1,
            "network": "kalbar-coop",
            "height": 7,
            "prev": _HASH,
            "time": "2026-11-29T03:00:01Z",
            "proposer": _KEY_ID,
            "event_count": 1,
            "tree_size": 42,
            "tree_root": _HASH,
        },
        "events": [ENVELOPE_EXAMPLE],
        "commit": {"round": 0, "sigs": [{"node": _KEY_ID, "sig": _SIG}]},
    },
    "export": '{"v": 1, "network": "kalbar-coop", "origin": "rantai.local/kalbar-coop", …}\n'
    '{"header": {"height": 0, …}, "events": [], "commit": null}\n',
    "lot": {
        "lot_id": "KP-SITI-2611",
        "commodity": "coffee",
        "quantity": "900",
        "uom": "kg",
        "owner": "koperasi-kopi/siti",
        "status": "active",
        "index": 41,
        "producer": "koperasi-kopi/siti",
        "plot_id": "PLT-SITI-01",
        "harvested_on": "2026-11-22",
        "gtin": None,
        "shipment_id": None,
        "loss": "0",
        "certifications": [],
    },
    "trace": {
        "lot_id": "KP-SITI-2611",
        "direction": "back",
        "lots": [
            {
                "lot_id": "KP-SITI-2611",
                "commodity": "coffee",
                "quantity": "900",
                "uom": "kg",
                "owner": "koperasi-kopi/siti",
                "status": "active",
            }
        ],
        "steps": [
            {
                "type": "lot.create",
                "event_id": _EVENT_ID,
                "index": 41,
                "inputs": [],
                "outputs": ["KP-SITI-2611"],
            }
        ],
        "origins": [
            {
                "lot_id": "KP-SITI-2611",
                "producer": "koperasi-kopi/siti",
                "plot_id": "PLT-SITI-01",
                "harvested_on": "2026-11-22",
                "event_id": _EVENT_ID,
                "index": 41,
                "quantity": "900",
            }
        ],
    },
    "orgs": {
        "orgs": [
            {"org_id": "koperasi-kopi", "name": "Koperasi Kopi", "kind": "cooperative", "index": 0}
        ],
        "next": "koperasi-kopi",
    },
    "member": {
        "member_id": "koperasi-kopi/siti",
        "org_id": "koperasi-kopi",
        "role": "producer",
        "profile_hash": _HASH,
        "index": 3,
    },
    "status": {
        "name": "node-1.kalbar-coop",
        "network": "kalbar-coop",
        "origin": "rantai.local/kalbar-coop",
        "height": 7,
        "block_hash": _HASH,
        "tree_size": 42,
        "tree_root": _HASH,
        "validators": [{"name": "node-1.kalbar-coop", "key_id": _KEY_ID}],
        "peers": [],
        "evidence": [],
        "consensus": {"height": 8, "round": 0, "step": "propose", "pending_events": 0},
    },
    "metrics": "# HELP rantai_height Height of the newest committed block\n"
    "# TYPE rantai_height gauge\nrantai_height 7.0\n",
    "health": {"status": "ok"},
    "health_fault": {
        "status": "fault",
        "detail": "cannot append block 42: database or disk is full",
    },
    "query": _QUERY_EXAMPLE,
}
"""An example answer of each route, by name."""
