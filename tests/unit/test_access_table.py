"""Every route of the app has a decided access and runs the one access check (``api.access``).

The matrix of roles × routes runs against a real node in ``tests/e2e/test_access.py``; here,
without a network, a route added without a line in ``ROUTE_ACCESS`` fails (it would fall back
to auditors and validators only), and so would a route that escaped the app-wide dependency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from api.access import DEFAULT_ACCESS, ROUTE_ACCESS, Access
from api.app import create_app
from node.runtime import LedgerNode
from node.store import Store
from rantai.samplechain import sample_network


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    net = sample_network(1)
    store = Store.open(f"sqlite:///{tmp_path_factory.mktemp('access') / 'node.db'}")
    store.initialize(net.genesis)
    node = LedgerNode(net.genesis, store, net.validator_keys[0], net.genesis.validators[0].name, [])
    yield create_app(node)
    store.close()


def test_every_route_has_a_decided_access(app: FastAPI) -> None:
    documented = {
        (method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item
    }
    assert documented | {("POST", "/v1/peer/inbox")} == set(ROUTE_ACCESS)


async def _unsigned(app: FastAPI, method: str, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        return await client.request(method, path, content=b"{}")


_SAMPLE = {"{event_id}": "0" * 64, "{lot_id}": "KP-1", "{height}": "0", "{member_id}": "a-b/c"}


@pytest.mark.parametrize(
    ("method", "path"), sorted(ROUTE_ACCESS), ids=[f"{m} {p}" for m, p in sorted(ROUTE_ACCESS)]
)
def test_every_route_runs_the_access_check(app: FastAPI, method: str, path: str) -> None:
    target = path
    for template, value in _SAMPLE.items():
        target = target.replace(template, value)
    response = asyncio.run(_unsigned(app, method, target))
    if ROUTE_ACCESS[(method, path)] is Access.PUBLIC:
        assert response.status_code != 401
    else:
        assert response.status_code == 401, response.text
        assert response.json()["type"].endswith("/signature-missing")


def test_a_route_nobody_classified_is_for_auditors_and_validators() -> None:
    assert DEFAULT_ACCESS is Access.AUDITOR


def test_the_buyer_facing_routes_are_public() -> None:
    public = {key for key, access in ROUTE_ACCESS.items() if access is Access.PUBLIC}
    assert {
        ("GET", "/v1/checkpoint"),
        ("GET", "/v1/events/{event_id}/proof"),
        ("GET", "/v1/proofs/consistency"),
        ("GET", "/v1/lots/{lot_id}/trace"),
        ("GET", "/healthz"),
    } <= public
    assert ("POST", "/v1/peer/inbox") not in public
    assert ROUTE_ACCESS[("POST", "/v1/peer/inbox")] is Access.VALIDATOR
