"""Rate limits per client address and per signing key, answered with ``429`` (``docs/decisions.md``
D31).

Two kinds of token bucket (a bucket of ``burst`` tokens refilled at ``rate`` tokens a second):

* **per address** (the TCP peer's address; a proxy in front must be given its own limits):
  every request costs one token and every event it submits one more, charged before any work
  is done, so a flood of invalid events from one address is refused cheaply, with ``429``,
  while other addresses go on. Requests to the peer route cost a token only when their
  signature fails: validators are the network itself and are never limited.
* **per key**: every event a key signed and every read it signed costs one token. A request is
  refused unless each key it names holds its cost, but events are charged only once admitted
  (their signatures verified), so nobody can spend another member's tokens by naming its key in
  forged signatures.

A rate of ``0`` turns a limit off (``[limits]`` in ``node.toml``). Buckets are forgotten least
recently used first beyond :data:`MAX_BUCKETS` of a kind (a forgotten bucket is full again).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fastapi import Request

from ledger.errors import LedgerError

__all__ = ["MAX_BUCKETS", "RateLimitedError", "RateLimiter", "RateLimits", "TokenBuckets"]

MAX_BUCKETS = 65_536
"""The most buckets one limiter keeps (addresses or keys)."""


class RateLimitedError(LedgerError):
    """A client address or key over its rate (``429`` with ``Retry-After``).

    Attributes:
        retry_after: whole seconds until the request would be taken.
    """

    def __init__(self, what: str, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(f"{what} is over its rate limit; retry after {self.retry_after} s")


@dataclass(frozen=True, slots=True)
class RateLimits:
    """A node's limits: tokens a second and the most tokens saved up, per address and per key.

    A rate of ``0`` means no limit of that kind.
    """

    address_rate: float = 1000.0
    address_burst: float = 10_000.0
    key_rate: float = 500.0
    key_burst: float = 10_000.0

    def __post_init__(self) -> None:
        for name in ("address_rate", "address_burst", "key_rate", "key_burst"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        pairs = ((self.address_rate, self.address_burst), (self.key_rate, self.key_burst))
        for rate, burst in pairs:
            if rate and burst < 1:
                raise ValueError("a limited bucket needs a burst of at least 1 token")


class TokenBuckets:
    """Token buckets by name, all with one rate and burst; a bucket may go into debt.

    Args:
        rate: tokens added a second (``0``: no limit; every bucket is always full).
        burst: the most tokens a bucket holds (and the tokens of a new bucket).
        clock: seconds, monotonic (a test passes its own).
    """

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _tokens(self, name: str) -> float:
        now = self._clock()
        tokens, then = self._buckets.get(name, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        self._buckets[name] = (tokens, now)
        self._buckets.move_to_end(name)
        if len(self._buckets) > MAX_BUCKETS:
            self._buckets.popitem(last=False)
        return tokens

    def wait(self, name: str, cost: float = 0.0) -> float:
        """Seconds until bucket ``name`` holds ``cost`` tokens (``0``: it holds them now).

        A cost over the burst waits only for a full bucket (it could never be taken whole).
        """
        if not self._rate:
            return 0.0
        short = min(cost, self._burst) - self._tokens(name)
        return max(0.0, short / self._rate)

    def charge(self, name: str, cost: float) -> None:
        """Take ``cost`` tokens from bucket ``name``, into debt if it holds fewer."""
        if self._rate:
            tokens = self._tokens(name)
            self._buckets[name] = (tokens - cost, self._clock())

    def take(self, name: str, cost: float, what: str) -> None:
        """Take ``cost`` tokens now, or take nothing.

        Raises:
            RateLimitedError: the bucket holds fewer.
        """
        wait = self.wait(name, cost)
        if wait:
            raise RateLimitedError(what, wait)
        self.charge(name, cost)


class RateLimiter:
    """A node's per-address and per-key buckets (one per app).

    Args:
        limits: the rates and bursts.
        clock: seconds, monotonic.
    """

    def __init__(self, limits: RateLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._addresses = TokenBuckets(limits.address_rate, limits.address_burst, clock)
        self._keys = TokenBuckets(limits.key_rate, limits.key_burst, clock)

    @staticmethod
    def address(request: Request) -> str:
        """The client address of a request (``unknown`` when the server does not say)."""
        return request.client.host if request.client is not None else "unknown"

    def take_address(self, request: Request, cost: float) -> None:
        """Charge the request's address ``cost`` tokens, or refuse it.

        Raises:
            RateLimitedError: the address holds fewer tokens.
        """
        address = self.address(request)
        self._addresses.take(address, cost, f"address {address}")

    def refuse_address_in_debt(self, request: Request) -> None:
        """Refuse a request from an address without a token left, charging nothing.

        Raises:
            RateLimitedError: the address holds no token.
        """
        address = self.address(request)
        wait = self._addresses.wait(address, 1.0)
        if wait:
            raise RateLimitedError(f"address {address}", wait)

    def charge_address(self, request: Request, cost: float) -> None:
        """Charge the request's address ``cost`` tokens, into debt if need be."""
        self._addresses.charge(self.address(request), cost)

    def check_keys(self, costs: Mapping[str, float]) -> None:
        """Refuse a request unless each key holds its cost in tokens, charging nothing.

        Raises:
            RateLimitedError: a key holds fewer tokens.
        """
        for key_id in sorted(costs):
            wait = self._keys.wait(key_id, costs[key_id])
            if wait:
                raise RateLimitedError(f"key {key_id}", wait)

    def charge_keys(self, costs: Mapping[str, float]) -> None:
        """Charge each key its cost (what it signed that was taken), into debt if need be."""
        for key_id, cost in costs.items():
            self._keys.charge(key_id, cost)
