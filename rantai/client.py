"""A small client for a Rantai node: build and sign events, submit them, read results.

Signing happens here, on the client's side, with the member's own key: a node never sees a
private key. What the node answers can be checked without trusting it (see ``rantai verify``
for whole chains, and ``ledger.merkle.verify_inclusion`` for single events).
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Sequence
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger.encoding import format_time
from ledger.errors import LedgerError
from ledger.events import Envelope, sign_event

__all__ = ["Client", "RefusedError", "build_event"]


class RefusedError(LedgerError):
    """The node refused a request; ``problem`` is its RFC 9457 problem document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        errors = problem.get("errors") or []
        detail = "; ".join(f"{e.get('rule')}: {e.get('detail')}" for e in errors)
        super().__init__(f"{status} {problem.get('title')}: {detail or problem.get('detail')}")
        self.status = status
        self.problem = problem


def build_event(
    network: str,
    kind: str,
    payload: dict[str, Any],
    signers: Sequence[Ed25519PrivateKey],
    *,
    created_at: _dt.datetime | None = None,
) -> Envelope:
    """A signed event with a fresh random nonce (the signer's clock unless given)."""
    moment = (created_at or _dt.datetime.now(_dt.UTC)).replace(microsecond=0)
    body = {
        "v": 1,
        "network": network,
        "type": kind,
        "nonce": os.urandom(12).hex(),
        "created_at": format_time(moment),
        "payload": payload,
    }
    return sign_event(body, signers)


class Client:
    """Talks to one node's HTTP API."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        """Close the connection."""
        self._http.close()

    def _check(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"title": response.reason_phrase, "detail": response.text}
            raise RefusedError(response.status_code, problem)
        return response.json()

    def status(self) -> dict[str, Any]:
        """``GET /v1/status``."""
        result: dict[str, Any] = self._check(self._http.get(f"{self.url}/v1/status"))
        return result

    def submit(
        self, envelopes: Sequence[Envelope], *, wait: bool = True, timeout: float = 20.0
    ) -> list[dict[str, Any]]:
        """Submit a batch; with ``wait`` the answer comes once every event is committed.

        Raises:
            RefusedError: the batch was refused (nothing was admitted).
        """
        params: dict[str, Any] = {"wait": "commit", "timeout": timeout} if wait else {}
        response = self._http.post(
            f"{self.url}/v1/events",
            params=params,
            json={"events": [e.to_json() for e in envelopes]},
        )
        events: list[dict[str, Any]] = self._check(response)["events"]
        return events

    def trace(self, lot_id: str, direction: str = "back") -> dict[str, Any]:
        """``GET /v1/lots/{lot_id}/trace``."""
        response = self._http.get(
            f"{self.url}/v1/lots/{lot_id}/trace", params={"direction": direction}
        )
        result: dict[str, Any] = self._check(response)
        return result
