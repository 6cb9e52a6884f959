"""Prometheus metrics of a node: its status, read when scraped, and the node's timings
(:class:`node.runtime.Timings`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from node.runtime import LedgerNode

__all__ = ["node_registry"]


class _NodeCollector(Collector):
    def __init__(self, node: LedgerNode) -> None:
        self._node = node

    def collect(self) -> Iterator[Any]:
        status = self._node.status()
        consensus = status["consensus"]
        yield GaugeMetricFamily(
            "rantai_height", "Height of the newest committed block", status["height"]
        )
        yield CounterMetricFamily(
            "rantai_events_committed", "Events in the committed log", status["tree_size"]
        )
        yield GaugeMetricFamily(
            "rantai_pending_events",
            "Events admitted and not yet committed",
            consensus["pending_events"],
        )
        yield GaugeMetricFamily(
            "rantai_consensus_round", "Current consensus round", consensus["round"]
        )
        connected = GaugeMetricFamily(
            "rantai_peer_connected", "Whether a peer answered lately", labels=["peer"]
        )
        for peer in status["peers"]:
            connected.add_metric([peer["name"]], 1.0 if peer["connected"] else 0.0)
        yield connected
        yield CounterMetricFamily(
            "rantai_evidence", "Conflicting votes recorded (evidence)", len(status["evidence"])
        )
        for histogram in self._node.timings.all():
            yield from histogram.collect()


def node_registry(node: LedgerNode) -> CollectorRegistry:
    """A registry with the node's metrics (one per app: nothing global)."""
    registry = CollectorRegistry()
    registry.register(_NodeCollector(node))
    return registry
