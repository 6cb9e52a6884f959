"""A fault-injecting TCP proxy between the nodes of an end-to-end test network.

One listening port per directed link: node ``i`` reaches node ``j`` at :meth:`FaultProxy.port`
``(i, j)`` (``Network.route_peer`` points its ``[[peers]]`` url there), and the proxy forwards to
node ``j``'s real port. Each link can be cut on command:

* ``drop``: connections are refused as soon as they are accepted (the peer sees a reset);
* ``blackhole``: connections are accepted and whatever is sent is swallowed, never answered
  (the peer sees timeouts);

and :meth:`FaultProxy.heal` restores every link. Changing a link aborts the connections it
carries, so keep-alive connections cannot outlive a cut, nor a blackholed request a heal.

The proxy runs an asyncio loop in a daemon thread; commands from the test's thread wait until
the loop has applied them. What it does not do: delay, reorder or corrupt bytes (consensus
messages are signed: corruption is just loss), or touch the test's own requests, which go to the
nodes directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["FaultProxy"]

Mode = Literal["open", "drop", "blackhole"]
_CHUNK = 65536


@dataclass
class _Link:
    target: int
    """The real port of the node this link leads to."""
    mode: Mode = "open"
    port: int = 0
    transports: set[asyncio.WriteTransport] = field(default_factory=set)


class FaultProxy:
    """Directed links between nodes ``1..n`` (see the module docstring).

    Args:
        ports: each node's real API port, by node number.
    """

    def __init__(self, ports: dict[int, int]) -> None:
        self._links = {(i, j): _Link(ports[j]) for i in ports for j in ports if i != j}
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._call(self._listen())

    def port(self, i: int, j: int) -> int:
        """Where node ``i`` reaches node ``j``."""
        return self._links[i, j].port

    def cut(self, links: Iterable[tuple[int, int]], mode: Mode) -> None:
        """Put each directed link ``(i, j)`` in ``mode``."""
        chosen = list(links)

        async def apply() -> None:
            for key in chosen:
                link = self._links[key]
                link.mode = mode
                _abort(link)

        self._call(apply())

    def partition(self, *groups: set[int], mode: Mode = "drop") -> None:
        """Cut every link between nodes of different groups, both ways."""
        self.cut(
            [(i, j) for a in groups for b in groups if a is not b for i in a for j in b],
            mode,
        )

    def heal(self) -> None:
        """Open every link again."""
        self.cut([key for key, link in self._links.items() if link.mode != "open"], "open")

    def close(self) -> None:
        """Stop listening, drop every connection and stop the thread."""

        async def shut() -> None:
            for server in self._servers:
                server.close()
            for link in self._links.values():
                _abort(link)

        self._call(shut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # --- the loop's side -----------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _listen(self) -> None:
        for link in self._links.values():
            server = await asyncio.start_server(
                functools.partial(self._serve, link), "127.0.0.1", 0
            )
            link.port = server.sockets[0].getsockname()[1]
            self._servers.append(server)

    async def _serve(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if link.mode == "drop":
            writer.transport.abort()
            return
        link.transports.add(writer.transport)
        try:
            if link.mode == "blackhole":
                while await reader.read(_CHUNK):
                    pass
                return
            upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", link.target)
            link.transports.add(upstream.transport)
            try:
                await asyncio.gather(_pipe(reader, upstream), _pipe(upstream_reader, writer))
            finally:
                link.transports.discard(upstream.transport)
                upstream.transport.abort()
        except OSError:
            pass
        finally:
            link.transports.discard(writer.transport)
            writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        writer.write_eof()


def _abort(link: _Link) -> None:
    for transport in list(link.transports):
        transport.abort()
    link.transports.clear()
