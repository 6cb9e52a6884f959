"""Rate limits per client address and per key (``api.limits``, D31).

The buckets on a simulated clock, a property bounding what any sequence of requests can take,
and the limits in the app: a flood of invalid events from one address is refused with ``429``
while another address goes on; a key is charged for what it signed and was admitted, never for
signatures forged in its name; validators' peer traffic is never limited. The node is built but
not started: admitted events wait in its mempool.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st

from api import limits as limits_module
from api.app import create_app
from api.limits import RateLimitedError, RateLimiter, RateLimits, TokenBuckets
from ledger.errors import EncodingError
from ledger.events import Envelope, sign_event
from ledger.keys import key_id, public_key_bytes
from node.httpsig import sign_request
from node.runtime import LedgerNode
from node.store import Store
from rantai import client as client_module
from rantai.client import RATE_LIMIT_RETRIES, Client
from rantai.network import init_network, load_config
from rantai.samplechain import SampleNetwork, sample_network


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the buckets ---------------------------------------------------------------------------------


def test_a_bucket_takes_its_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=10, burst=5, clock=clock)
    for _ in range(5):
        buckets.take("a", 1, "a")
    with pytest.raises(RateLimitedError) as refused:
        buckets.take("a", 1, "address a")
    assert refused.value.retry_after == 1
    assert "address a is over its rate limit" in str(refused.value)
    buckets.take("b", 5, "b")  # another name has its own bucket
    clock.now += 0.1
    buckets.take("a", 1, "a")
    assert buckets.wait("a", 1) == pytest.approx(0.1)
    clock.now += 100
    assert buckets.wait("a", 5) == 0  # full again, never more than the burst
    assert buckets.wait("a", 6) == 0  # a cost over the burst waits for a full bucket only


def test_a_charge_goes_into_debt_and_a_bucket_in_debt_is_refused() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=2, burst=4, clock=clock)
    buckets.charge("k", 10)
    assert buckets.wait("k") == pytest.approx(3)  # 6 tokens short at 2 a second
    clock.now += 3
    assert buckets.wait("k") == 0


def test_rate_zero_never_limits() -> None:
    buckets = TokenBuckets(rate=0, burst=0, clock=Clock())
    for _ in range(100):
        buckets.take("a", 1000, "a")
    assert buckets.wait("a", 10**9) == 0


def test_buckets_are_forgotten_least_recently_used_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits_module, "MAX_BUCKETS", 3)
    buckets = TokenBuckets(rate=1, burst=1, clock=Clock())
    for name in "abcd":
        buckets.charge(name, 1)
    assert buckets.wait("a", 1) == 0  # forgotten: full again
    assert buckets.wait("d", 1) > 0


@given(
    rate=st.floats(0.5, 1000),
    burst=st.floats(1, 10_000),
    steps=st.lists(st.tuples(st.floats(0, 5), st.floats(0.01, 2000)), max_size=60),
)
def test_what_is_taken_never_exceeds_burst_plus_rate_times_time(
    rate: float, burst: float, steps: list[tuple[float, float]]
) -> None:
    """Over any requests, at most the burst plus the rate times the time passed is taken, and
    one cost over the burst (taken once the bucket is full, into debt) overshoots it once."""
    clock = Clock()
    start = clock.now
    buckets = TokenBuckets(rate, burst, clock)
    taken = 0.0
    overshoot = max((cost for _, cost in steps), default=0.0) - burst
    for advance, cost in steps:
        clock.now += advance
        wait = buckets.wait("x", cost)
        if not wait:
            buckets.take("x", cost, "x")
            taken += cost
        elapsed = clock.now - start
        assert taken <= burst + rate * elapsed + max(0.0, overshoot) + 1e-6 * (1 + taken)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"address_rate": -1.0}, "address_rate must be a finite number >= 0"),
        ({"key_burst": float("inf")}, "key_burst must be a finite number >= 0"),
        ({"key_rate": 5.0, "key_burst": 0.5}, "a burst of at least 1 token"),
    ],
)
def test_limits_are_checked(settings: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateLimits(**settings)


# --- node.toml ------------------------------------------------------------------------------------


def test_limits_come_from_node_toml(tmp_path: Path) -> None:
    init_network(tmp_path, nodes=1, base_port=18_000)
    node_dir = tmp_path / "node-1"
    assert load_config(node_dir).limits == RateLimits()
    toml = node_dir / "node.toml"
    original = toml.read_text()
    toml.write_text(original + "\n[limits]\naddress_per_second = 0\nkey_burst = 20\n")
    assert load_config(node_dir).limits == RateLimits(address_rate=0, key_burst=20)
    for bad, message in [
        ("address_per_second = 'fast'", "must be a number"),
        ("address_per_second = -5", "must be a finite number >= 0"),
        ("per_minute = 5", "unknown settings per_minute"),
    ]:
        toml.write_text(original + f"\n[limits]\n{bad}\n")
        with pytest.raises(EncodingError, match=message):
            load_config(node_dir)


# --- the app ------------------------------------------------------------------------------------

NET: SampleNetwork = sample_network(1)
LIMITS = RateLimits(address_rate=5, address_burst=40, key_rate=5, key_burst=30)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    store = Store.open(f"sqlite:///{tmp_path / 'node.db'}")
    store.initialize(NET.genesis)
    node = LedgerNode(NET.genesis, store, NET.validator_keys[0], NET.genesis.validators[0].name, [])
    app = create_app(node, limits=LIMITS)
    app.state.limiter = RateLimiter(LIMITS, clock=Clock())  # no refill while the test runs
    yield app
    store.close()


def _org(serial: int, signer: Ed25519PrivateKey | None = None) -> Envelope:
    return NET.event(
        "org.register",
        {
            "org_id": f"koperasi-{serial}",
            "name": f"Koperasi {serial}",
            "kind": "cooperative",
            "admins": [public_key_bytes(NET.key(f"admin-{serial}")).hex()],
        },
        [signer or NET.governance_key],
        f"org-{serial}",
        "2026-11-29T03:00:00Z",
    )


def _forged(envelope: Envelope) -> dict[str, Any]:
    """The envelope with its signature made by another key, still naming the signer's key."""
    value = envelope.to_json()
    forger = sign_event(value["body"], [NET.key("forger")]).to_json()
    value["sigs"][0]["sig"] = forger["sigs"][0]["sig"]
    return value


async def _post(
    app: FastAPI,
    address: str,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(address, 40_000))
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        return await client.post(path, json=body)


def test_invalid_events_from_one_address_do_not_stop_valid_ones_from_another(app: FastAPI) -> None:
    async def run() -> tuple[list[int], list[int]]:
        flood, honest = [], []
        for serial in range(10):
            forged = {"events": [_forged(_org(1000 + serial * 10 + i)) for i in range(10)]}
            flood.append((await _post(app, "192.0.2.66", "/v1/events", forged)).status_code)
            valid = _org(serial).to_json()
            honest.append((await _post(app, "192.0.2.7", "/v1/events", valid)).status_code)
        return flood, honest

    flood, honest = asyncio.run(run())
    assert honest == [202] * 10
    assert flood[:3] == [422] * 3  # 11 tokens each: the burst of 40 takes three
    assert set(flood[3:]) == {429}


def test_a_429_says_when_to_come_back(app: FastAPI) -> None:
    async def run() -> httpx.Response:
        batch = {"events": [_forged(_org(i)) for i in range(39)]}
        await _post(app, "192.0.2.66", "/v1/events", batch)
        return await _post(app, "192.0.2.66", "/v1/events", batch)

    response = asyncio.run(run())
    assert response.status_code == 429
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/rate-limited")
    assert problem["detail"].startswith("address 192.0.2.66 is over its rate limit")
    assert int(response.headers["retry-after"]) >= 1


def test_a_key_pays_for_what_it_signed_not_for_forgeries_in_its_name(app: FastAPI) -> None:
    governance = NET.governance_key

    async def run() -> list[int]:
        statuses = []
        # forged signatures naming the governance key, from many addresses: refused, uncharged
        for serial in range(40):
            forged = {"events": [_forged(_org(500 + serial))]}
            statuses.append(
                (await _post(app, f"198.51.100.{serial}", "/v1/events", forged)).status_code
            )
        assert set(statuses) == {422}
        statuses = []
        # the key's own events, each batch from a new address: the key's burst of 30, then 429
        for batch in range(4):
            events = {"events": [_org(batch * 10 + i, governance).to_json() for i in range(10)]}
            response = await _post(app, f"203.0.113.{batch}", "/v1/events", events)
            statuses.append(response.status_code)
        return statuses

    statuses = asyncio.run(run())
    assert statuses == [202, 202, 202, 429]


async def _signed(
    app: FastAPI, address: str, method: str, path: str, key: Ed25519PrivateKey, body: bytes = b""
) -> int:
    headers = sign_request(method, path, body, key, key_id(public_key_bytes(key)), int(time.time()))
    transport = httpx.ASGITransport(app=app, client=(address, 40_000))
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        response = await client.request(method, path, content=body, headers=headers)
        return response.status_code


def test_signed_reads_are_charged_to_their_key_but_a_validator_s_are_not(app: FastAPI) -> None:
    async def run(key: Ed25519PrivateKey) -> list[int]:
        return [await _signed(app, f"192.0.2.{i}", "GET", "/v1/status", key) for i in range(32)]

    assert asyncio.run(run(NET.governance_key)) == [200] * 30 + [429] * 2
    assert asyncio.run(run(NET.validator_keys[0])) == [200] * 32


def test_peer_traffic_is_not_limited_but_bad_peer_signatures_are(app: FastAPI) -> None:
    body = b'{"items": []}'
    stranger = NET.key("stranger")

    async def run() -> tuple[list[int], list[int]]:
        peers = [
            await _signed(app, "127.0.0.1", "POST", "/v1/peer/inbox", NET.validator_keys[0], body)
            for _ in range(60)
        ]
        bad = [
            await _signed(app, "127.0.0.1", "POST", "/v1/peer/inbox", stranger, body)
            for _ in range(42)
        ]
        return peers, bad

    peers, bad = asyncio.run(run())
    assert peers == [204] * 60
    assert bad == [401] * 40 + [429] * 2


def test_the_client_waits_and_signs_again_after_a_429(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([429, 429, 200])
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["signature-input"])
        status = next(answers)
        headers = {"retry-after": "2"} if status == 429 else {}
        return httpx.Response(status, json={"height": 1}, headers=headers)

    slept: list[float] = []
    monkeypatch.setattr("rantai.client.time.sleep", slept.append)
    client = Client("http://node", NET.governance_key)
    client._http = httpx.Client(transport=httpx.MockTransport(handler))
    assert client.status() == {"height": 1}
    assert slept == [2, 2]
    assert len(set(seen)) == 3  # each try signed anew (a fresh nonce)


def test_the_client_gives_up_after_its_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(429, json={"title": "rate limited"}, headers={"retry-after": "999"})

    slept: list[float] = []
    monkeypatch.setattr("rantai.client.time.sleep", slept.append)
    client = Client("http://node")
    client._http = httpx.Client(transport=httpx.MockTransport(handler))
    with pytest.raises(client_module.RefusedError) as refused:
        client.status()
    assert refused.value.status == 429
    assert len(calls) == RATE_LIMIT_RETRIES + 1
    assert slept == [client_module.MAX_RETRY_AFTER] * RATE_LIMIT_RETRIES


def test_a_full_mempool_answers_503_with_retry_after(app: FastAPI) -> None:
    app.state.node._max_pending = 1
    asyncio.run(_post(app, "192.0.2.7", "/v1/events", _org(1).to_json()))
    response = asyncio.run(_post(app, "192.0.2.7", "/v1/events", _org(2).to_json()))
    assert response.status_code == 503
    assert response.json()["type"].endswith("/mempool-full")
    assert response.headers["retry-after"] == "1"
