"""The OpenAPI document is complete enough to generate a client from.

``openapi-spec-validator`` is not installed, so the document's OpenAPI 3.1 shape is checked
structurally: the top-level fields, every operation's summary, description, parameters,
request body and responses, every media type's schema and examples, every ``$ref``; problem
responses are ``application/problem+json`` with the Problem schema. The examples are checked
against the JSON schemas they illustrate (jsonschema, draft 2020-12, as OpenAPI 3.1 uses).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from api.app import create_app
from node.runtime import LedgerNode
from node.store import Store
from rantai.samplechain import sample_network

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    net = sample_network(1)
    store = Store.open(f"sqlite:///{tmp_path_factory.mktemp('openapi') / 'node.db'}")
    store.initialize(net.genesis)
    node = LedgerNode(net.genesis, store, net.validator_keys[0], net.genesis.validators[0].name, [])
    yield create_app(node).openapi()
    store.close()


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, child in value.items():
            if key == "$ref" and isinstance(child, str):
                yield child
            else:
                yield from _refs(child)
    elif isinstance(value, list):
        for child in value:
            yield from _refs(child)


def _resolve(document: dict[str, Any], pointer: str) -> Any:
    assert pointer.startswith("#/"), pointer
    found: Any = document
    for part in pointer[2:].split("/"):
        found = found[part.replace("~1", "/").replace("~0", "~")]
    return found


def _examples(media: dict[str, Any]) -> list[Any]:
    if "example" in media:
        return [media["example"]]
    return [example["value"] for example in media.get("examples", {}).values()]


def test_the_document_is_openapi_3_1_shaped(document: dict[str, Any]) -> None:
    assert re.fullmatch(r"3\.1\.[0-9]+", document["openapi"])
    assert document["info"]["title"]
    assert document["info"]["version"]
    assert set(document) <= {
        "openapi",
        "info",
        "jsonSchemaDialect",
        "servers",
        "paths",
        "webhooks",
        "components",
        "security",
        "tags",
        "externalDocs",
    }
    for pointer in set(_refs(document)):
        assert _resolve(document, pointer) is not None, pointer
    schemes = document["components"]["securitySchemes"]
    for _, _, operation in _operations(document):
        for requirement in operation.get("security", []):
            assert set(requirement) <= set(schemes)


def test_every_route_is_documented(document: dict[str, Any]) -> None:
    routes = {(path, method.upper()) for path, method, _ in _operations(document)}
    assert {
        ("/v1/events", "POST"),
        ("/v1/events/{event_id}", "GET"),
        ("/v1/events/{event_id}/proof", "GET"),
        ("/v1/proofs/consistency", "GET"),
        ("/v1/checkpoint", "GET"),
        ("/v1/blocks/{height}", "GET"),
        ("/v1/export", "GET"),
        ("/v1/lots/{lot_id}", "GET"),
        ("/v1/lots/{lot_id}/trace", "GET"),
        ("/v1/orgs", "GET"),
        ("/v1/members/{member_id}", "GET"),
        ("/v1/status", "GET"),
        ("/healthz", "GET"),
        ("/metrics", "GET"),
        ("/epcis/capture", "POST"),
        ("/epcis/events", "GET"),
    } == routes
    operation_ids = [operation["operationId"] for _, _, operation in _operations(document)]
    assert len(set(operation_ids)) == len(operation_ids)


def test_every_operation_has_summary_description_parameters_and_examples(
    document: dict[str, Any],
) -> None:
    for path, method, operation in _operations(document):
        where = f"{method.upper()} {path}"
        assert operation.get("summary"), where
        assert operation.get("description"), where
        for parameter in operation.get("parameters", []):
            assert parameter["in"] in {"query", "path", "header", "cookie"}, where
            assert parameter.get("description"), f"{where} {parameter['name']}"
            assert "schema" in parameter, f"{where} {parameter['name']}"
            has_example = "example" in parameter or parameter["schema"].get("examples")
            assert has_example, f"{where} {parameter['name']}"
        if method == "post":
            body = operation["requestBody"]
            assert body["content"], where
            for media_type, media in body["content"].items():
                assert "schema" in media, f"{where} {media_type}"
                assert _examples(media), f"{where} request {media_type}"


def test_every_response_is_described_with_examples(document: dict[str, Any]) -> None:
    problem = {"$ref": "#/components/schemas/Problem"}
    for path, method, operation in _operations(document):
        where = f"{method.upper()} {path}"
        statuses = set(operation["responses"])
        assert any(s.startswith("2") for s in statuses), where
        for status, response in operation["responses"].items():
            assert response.get("description"), f"{where} {status}"
            content = response.get("content", {})
            assert content, f"{where} {status}"
            for media_type, media in content.items():
                assert "schema" in media, f"{where} {status} {media_type}"
                assert _examples(media), f"{where} {status} {media_type}"
            if status.startswith("4"):
                assert set(content) == {"application/problem+json"}, f"{where} {status}"
                assert content["application/problem+json"]["schema"] == problem


def _media(operation: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for response in operation["responses"].values():
        yield from response.get("content", {}).values()
    yield from operation.get("requestBody", {}).get("content", {}).values()


def test_examples_fit_their_schemas(document: dict[str, Any]) -> None:
    components = {"components": document["components"]}
    checked = 0
    for _, _, operation in _operations(document):
        for media in _media(operation):
            validator = jsonschema.Draft202012Validator({**media["schema"], **components})
            for example in _examples(media):
                validator.validate(example)
                checked += 1
    assert checked > 30
