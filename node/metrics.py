"""Prometheus metrics. Labels carry agencies and reasons, never message content."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

SENT = Counter(
    "mlax_messages_sent_total", "Envelopes delivered to a peer (receipt stored).", ["peer"]
)
RECEIVED = Counter("mlax_messages_received_total", "Envelopes accepted from a peer.", ["peer"])
REJECTED = Counter(
    "mlax_messages_rejected_total", "Envelopes or calls refused, by reason.", ["reason"]
)
DELIVERY_FAILURES = Counter(
    "mlax_delivery_failures_total",
    "Failed delivery attempts, by peer and status.",
    ["peer", "reason"],
)
DELIVERY_LATENCY = Histogram(
    "mlax_delivery_latency_seconds",
    "Time from submission to stored receipt.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
DIRECTORY_VERSION = Counter(
    "mlax_directory_installs_total", "Directory versions installed, by source.", ["source"]
)


class _OutboxCollector(Collector):
    """Outbox depth per peer, read from the database at scrape time."""

    def __init__(self, depth: Callable[[], dict[str, int]]) -> None:
        self._depth = depth

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily(
            "mlax_outbox_depth", "Messages waiting for delivery.", labels=["peer"]
        )
        for peer, n in sorted(self._depth().items()):
            g.add_metric([peer], n)
        yield g


def register_outbox(depth: Callable[[], dict[str, int]]) -> None:
    REGISTRY.register(_OutboxCollector(depth))
