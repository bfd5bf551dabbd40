"""Prometheus metrics. Labels carry agencies and reasons, never message content."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
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
DELIVERY_GIVEN_UP = Counter(
    "mlax_delivery_given_up_total", "Messages given up after the retry period.", ["peer"]
)
DELIVERY_LATENCY = Histogram(
    "mlax_delivery_latency_seconds",
    "Time from submission to stored receipt.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
CASE_TRANSITIONS = Counter(
    "mlax_case_transitions_total", "Case transitions applied, by action.", ["action"]
)
CASES_OVERDUE = Gauge(
    "mlax_cases_overdue", "Live cases whose legal clock has run out, by clock.", ["clock"]
)
ATTACHMENT_BYTES = Counter(
    "mlax_attachment_bytes_total",
    "Evidence ciphertext bytes: uploaded by officers, received from peers (in), delivered "
    "to peers (out).",
    ["direction"],
)
MATCH_EVALUATIONS = Counter(
    "mlax_match_evaluations_total", "Blind evaluations made for a peer.", ["peer"]
)
MATCH_REFUSED = Counter(
    "mlax_match_quota_refusals_total", "Blind evaluation calls refused over quota.", ["peer"]
)
MATCH_INDEX_SYNCS = Counter(
    "mlax_match_index_syncs_total",
    "Index syncs (GetMatchIndex) served to a peer, ledgered or not: one that serves nothing "
    "new, or repeats a copy within the hour, is not ledgered.",
    ["peer"],
)
SPLIT_VIEWS = Counter(
    "mlax_split_views_total",
    "Inconsistent signed checkpoints a peer presented (evidence kept).",
    ["peer"],
)
DIRECTORY_VERSION = Counter(
    "mlax_directory_installs_total", "Directory versions installed, by source.", ["source"]
)
RPC_ERRORS = Counter(
    "mlax_rpc_errors_total",
    "Calls this node answered with an error, by method and gRPC status.",
    ["method", "code"],
)
TASK_FAILURES = Counter(
    "mlax_task_failures_total",
    "Failed rounds of a background task (delivery, checkpoints, sync, ...), by task.",
    ["task"],
)
RPC_LIMITED = Counter(
    "mlax_rpc_limited_total",
    "Calls refused (RESOURCE_EXHAUSTED) or closed (DEADLINE_EXCEEDED) to keep a listener's "
    "threads for every caller, by listener and reason.",
    ["listener", "reason"],
)
RPC_IN_PROGRESS = Gauge(
    "mlax_rpc_in_progress",
    "Calls being served, by listener and kind (call: unary; stream: holds a thread until it ends).",
    ["listener", "kind"],
)

READY = Gauge(
    "mlax_ready",
    "1 while the node is ready (no readiness cause holds), 0 while it is not.",
)
READINESS_CAUSE = Gauge(
    "mlax_readiness_cause",
    "1 while a cause of not being ready holds (database, disk, directory_expired, "
    "signing_key_expired, encryption_key_expired, tls_certificate_expired), else 0.",
    ["cause"],
)
READINESS_CHECKED = Gauge(
    "mlax_readiness_checked_timestamp_seconds", "When readiness was last evaluated."
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


class _ExpiryCollector(Collector):
    def __init__(self, times: Callable[[], dict[str, int]]) -> None:
        self._times = times

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily(
            "mlax_expiry_timestamp_seconds",
            "When the TLS certificate, newest keys and directory stop being valid.",
            labels=["what"],
        )
        for what, ms in sorted(self._times().items()):
            g.add_metric([what], ms / 1000)
        yield g


def register_expiry(times: Callable[[], dict[str, int]]) -> None:
    REGISTRY.register(_ExpiryCollector(times))


def register_outbox(depth: Callable[[], dict[str, int]]) -> None:
    REGISTRY.register(_OutboxCollector(depth))
