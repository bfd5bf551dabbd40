"""Bounded resources on real nodes (issue 11): one peer and one officer each open 100 idle
streams on FR-OCRTEH, and the peer 100 unary calls that never send their request. Each
held a worker thread for as long as it stayed open, so 33 froze a listener. Now the
offenders get RESOURCE_EXHAUSTED past their share, and meanwhile health checks, another
peer's Deliver and another officer's calls succeed at their usual latency."""

from __future__ import annotations

import statistics
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, cast

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from exchange._proto.mlax.v1 import officer_pb2 as opb
from exchange.encoding import now_ms
from exchange.envelope import MessageType, seal
from exchange.receipt import Receipt
from node.client import OfficerClient
from node.config import load_config

if TYPE_CHECKING:
    from conftest import LiveFederation

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]

GB, FR, NG = "GB-NCA", "FR-OCRTEH", "NG-NAPTIP"
DELIVER = "/mlax.v1.Federation/Deliver"
PUSH = "/mlax.v1.Federation/PushAttachment"
UPLOAD = "/mlax.v1.Officer/Upload"
FLOOD = 100


def _sample(live: LiveFederation, agency: str, name: str, labels: dict[str, str]) -> float:
    """One sample of the node's Prometheus endpoint (0 when the series does not exist)."""
    url = f"http://127.0.0.1:{live.metrics_ports[agency]}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def _limited(live: LiveFederation, listener: str, reason: str) -> float:
    labels = {"listener": listener, "reason": reason}
    return _sample(live, FR, "mlax_rpc_limited_total", labels)


def _idle(stop: threading.Event) -> Iterator[bytes]:
    """A request stream that sends nothing until `stop`: the call stays open, idle."""
    stop.wait(120)
    yield from ()


def _flood(
    channel: grpc.Channel, method: str, stop: threading.Event, held: list[grpc.Future[bytes]]
) -> list[grpc.Future[bytes]]:
    """FLOOD calls of `method` that open and then send nothing (headers only); each is
    added to `held` at once, for the caller to cancel whatever happens."""
    call = channel.stream_unary(method, request_serializer=None, response_deserializer=None)
    calls = []
    for _ in range(FLOOD):
        calls.append(call.future(_idle(stop), timeout=120))
        held.append(calls[-1])
    return calls


def _assert_refused_past_share(
    calls: list[grpc.Future[bytes]], share: int, sentence: str, timeout: float = 60
) -> None:
    """All but (at most) the caller's `share` of `calls` are refused at once, saying why."""
    deadline = time.monotonic() + timeout
    while sum(f.done() for f in calls) < FLOOD - share:
        assert time.monotonic() < deadline, (
            f"only {sum(f.done() for f in calls)} of {FLOOD} idle calls were answered "
            f"within {timeout} s"
        )
        time.sleep(0.05)
    errors = [cast(grpc.RpcError, f.exception()) for f in calls if f.done()]
    refused = [e for e in errors if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert len(refused) >= FLOOD - share
    for e in refused:
        assert (e.details() or "").startswith(sentence), e.details()
    # On a machine slow enough, one the node admitted may meet its idle deadline already.
    for e in errors:
        assert e in refused or e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e


def _median_latency(probe: Callable[[], object], rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        start = time.monotonic()
        probe()
        times.append(time.monotonic() - start)
    return statistics.median(times)


def test_idle_streams_from_one_peer_and_one_officer_leave_everyone_else_served(
    live: LiveFederation,
) -> None:
    limits = load_config(live.config(FR)).limits
    # The offenders: GB-NCA as a peer of FR, and a new FR officer.
    gb_to_fr = live.peer_channel(GB, FR)
    officer = f"flood-{uuid.uuid4().hex[:8]}"
    flooder = OfficerClient.from_bundle(live.add_officer(FR, officer), live.officer_passphrase)
    # Everyone else: NG-NAPTIP as a peer, FR's supervisor as an officer.
    ng_to_fr = live.peer_channel(NG, FR)
    deliver = ng_to_fr.unary_unary(DELIVER, request_serializer=None, response_deserializer=None)
    supervisor = live.client(FR, "supervisor")
    fed_health = health_pb2_grpc.HealthStub(ng_to_fr).Check
    off_health = health_pb2_grpc.HealthStub(supervisor._channel).Check
    sender = live.identity(NG).sender(published=live.card(NG))

    def deliver_from_ng() -> None:
        content = opb.Content(subject="still served", text="x", media_type="text/plain")
        env = seal(
            sender,
            live.card(FR),
            content.SerializeToString(deterministic=True),
            MessageType.NOTE,
            now_ms=now_ms(),
        )
        Receipt.from_bytes(bytes(deliver(env.to_bytes(), timeout=10))).parsed()

    def healthy(check: Callable[..., health_pb2.HealthCheckResponse], service: str) -> None:
        reply = check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    probes: dict[str, Callable[[], object]] = {
        "federation health": lambda: healthy(fed_health, "mlax.v1.Federation"),
        "NG's Deliver": deliver_from_ng,
        "officer health": lambda: healthy(off_health, "mlax.v1.Officer"),
        "the supervisor's WhoAmI": supervisor.whoami,
        "the supervisor's inbox": lambda: supervisor.inbox(limit=5),
    }
    usual = {name: _median_latency(probe) for name, probe in probes.items()}
    before = {
        reason: _limited(live, listener, reason)
        for listener, reason in (("federation", "caller_streams"), ("federation", "caller_calls"))
    }
    before["officer"] = _limited(live, "officer", "caller_streams")

    stop = threading.Event()
    flood: list[grpc.Future[bytes]] = []
    try:
        # One kind after another, so the node never has more than FLOOD new calls at once
        # (its max_concurrent_rpcs is 256).
        _assert_refused_past_share(
            _flood(gb_to_fr, PUSH, stop, flood),
            limits.max_streams_per_peer,
            f"You already have {limits.max_streams_per_peer} streams open on this node",
        )
        _assert_refused_past_share(
            _flood(gb_to_fr, DELIVER, stop, flood),  # headers, never the envelope
            limits.max_calls_per_peer,
            f"You already have {limits.max_calls_per_peer} calls in progress on this node",
        )
        _assert_refused_past_share(
            _flood(flooder._channel, UPLOAD, stop, flood),
            limits.max_streams_per_officer,
            f"You already have {limits.max_streams_per_officer} streams open on this node",
        )

        # While the offenders hold their share, everyone else is served as usual.
        for name, probe in probes.items():
            during = _median_latency(probe)
            assert during < max(2.0, 5 * usual[name]), (name, usual[name], during)

        assert _limited(live, "federation", "caller_streams") >= before["caller_streams"] + (
            FLOOD - limits.max_streams_per_peer
        )
        assert _limited(live, "federation", "caller_calls") >= before["caller_calls"] + (
            FLOOD - limits.max_calls_per_peer
        )
        assert _limited(live, "officer", "caller_streams") == before["officer"] + (
            FLOOD - limits.max_streams_per_officer
        )
        callers = {(e["listener"], e["caller"]) for e in live.log_events(FR, "call_refused")}
        assert {("federation", GB), ("officer", officer)} <= callers
    finally:
        stop.set()
        for f in flood:
            f.cancel()

    # Once they let go, the offenders are served again (an empty stream is admitted, then
    # refused by the servicer as INVALID_ARGUMENT).
    def admitted(channel: grpc.Channel, method: str) -> bool:
        call = channel.stream_unary(method, request_serializer=None, response_deserializer=None)
        try:
            call(iter([]), timeout=10)
        except grpc.RpcError as e:
            return e.code() == grpc.StatusCode.INVALID_ARGUMENT
        return False

    try:
        live.wait_for(lambda: admitted(gb_to_fr, PUSH), 30, "GB's streams released")
        live.wait_for(
            lambda: admitted(flooder._channel, UPLOAD), 30, "the officer's uploads released"
        )
    finally:
        flooder.close()
