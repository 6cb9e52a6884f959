"""What routes take from the request besides their own parameters: the node, the
``?wait=commit&timeout=S`` of the routes that admit events, and the request body limit."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from node.runtime import LedgerNode

__all__ = [
    "DEFAULT_WAIT_SECONDS",
    "MAX_BODY_BYTES",
    "MAX_COUNT",
    "MAX_WAIT_SECONDS",
    "NodeDep",
    "TimeoutQuery",
    "WaitQuery",
    "get_node",
]

MAX_BODY_BYTES = 16 * 1024 * 1024
"""The largest request body of ``POST /v1/events``, of peer messages and of a signed request."""
DEFAULT_WAIT_SECONDS = 10.0
MAX_WAIT_SECONDS = 60.0
MAX_COUNT = 2**53 - 1
"""The largest height, tree size or index a request may name (DESIGN.md §2: counts < 2^53)."""


async def get_node(request: Request) -> LedgerNode:
    """The node an app serves (``app.dependency_overrides`` can replace it in tests).

    ``async`` though it awaits nothing: FastAPI runs a plain function dependency on a worker
    thread, a hand-off that cost every request more than the function does."""
    node: LedgerNode = request.app.state.node
    return node


NodeDep = Annotated[LedgerNode, Depends(get_node)]
WaitQuery = Annotated[
    str | None,
    Query(
        pattern="^commit$",
        description="`commit`: answer `200` once every event is committed (`202` on timeout)",
        examples=["commit"],
    ),
]
TimeoutQuery = Annotated[
    float,
    Query(
        gt=0,
        le=MAX_WAIT_SECONDS,
        description="seconds to wait for the commit (with `wait=commit`)",
        examples=[10],
    ),
]
