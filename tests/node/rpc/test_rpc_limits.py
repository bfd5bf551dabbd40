"""node.rpc.limits on a real in-process gRPC server over mutual TLS, built by the node's
own `_server`: one caller's idle streams and calls cannot take the threads other callers
need, and a client that stops sending or reading is cut off and its slot freed."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from node.config import ConfigError, ListenerSection, load_config
from node.rpc.limits import Callers, CallLimiter, ListenerLimits
from node.server import _server
from node.services.officers import spki_sha256

ECHO, HOLD, UPLOAD, DOWNLOAD = (f"/t.Test/{m}" for m in ("Echo", "Hold", "Upload", "Download"))
CHUNK = 256 * 1024
_listeners = iter(range(1_000_000))


def _self_signed(name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem_key, cert.public_bytes(serialization.Encoding.PEM)


_SERVER = _self_signed("node")
_CLIENTS = {who: _self_signed(who) for who in ("offender", "other")}
_NAMES = {spki_sha256(cert).hex(): who for who, (_, cert) in _CLIENTS.items()}


def _caller(cert: bytes | None) -> str:
    return _NAMES[spki_sha256(cert).hex()] if cert else "none"


@dataclass
class Node:
    """A listener with test methods behind the limiter, and channels for two callers."""

    listener: str
    limiter: CallLimiter
    port: int
    release: threading.Event = field(default_factory=threading.Event)
    ended: list[str] = field(default_factory=list)
    channels: list[grpc.Channel] = field(default_factory=list)

    def channel(self, who: str) -> grpc.Channel:
        key, cert = _CLIENTS[who]
        creds = grpc.ssl_channel_credentials(_SERVER[1], key, cert)
        ch = grpc.secure_channel(
            f"127.0.0.1:{self.port}", creds, [("grpc.ssl_target_name_override", "localhost")]
        )
        self.channels.append(ch)
        return ch

    def limited(self, reason: str) -> float:
        labels = {"listener": self.listener, "reason": reason}
        return REGISTRY.get_sample_value("mlax_rpc_limited_total", labels) or 0.0

    def in_progress(self, kind: str) -> float:
        labels = {"listener": self.listener, "kind": kind}
        return REGISTRY.get_sample_value("mlax_rpc_in_progress", labels) or 0.0


def _handlers(node: Node) -> grpc.GenericRpcHandler:
    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        return request

    def hold(request: bytes, context: grpc.ServicerContext) -> bytes:
        node.release.wait(30)  # work that takes a while on the node's side
        return request

    def upload(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        try:
            return str(sum(1 for _ in requests)).encode()
        finally:
            node.ended.append("upload")

    def download(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        try:
            for _ in range(int(request)):
                yield b"d" * CHUNK
        finally:
            node.ended.append("download")

    return grpc.method_handlers_generic_handler(
        "t.Test",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Hold": grpc.unary_unary_rpc_method_handler(hold),
            "Upload": grpc.stream_unary_rpc_method_handler(upload),
            "Download": grpc.unary_stream_rpc_method_handler(download),
        },
    )


@pytest.fixture
def make_node() -> Iterator[Callable[..., Node]]:
    started: list[tuple[grpc.Server, Node]] = []

    def make(**limits: float) -> Node:
        settings: dict[str, float] = {
            "calls_per_caller": 2,
            "streams_per_caller": 2,
            "max_streams": 3,
            "idle_seconds": 30.0,
            "send_seconds": 30.0,
            **limits,
        }
        listener = f"test-{next(_listeners)}"
        limiter = CallLimiter(listener, ListenerLimits(**settings), Callers(_caller, _caller))
        server = _server(ListenerSection(listen="127.0.0.1:0", max_workers=4), [], 4 << 20, limiter)
        creds = grpc.ssl_server_credentials(
            [_SERVER], b"".join(c for _, c in _CLIENTS.values()), require_client_auth=True
        )
        node = Node(listener, limiter, server.add_secure_port("127.0.0.1:0", creds))
        server.add_generic_rpc_handlers((_handlers(node),))
        status = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(status, server)
        limiter.start()
        server.start()
        started.append((server, node))
        return node

    yield make
    for server, node in started:
        node.release.set()
        for ch in node.channels:
            ch.close()
        server.stop(0).wait()
        node.limiter.stop()


def _idle(stop: threading.Event, first: bytes | None = None) -> Iterator[bytes]:
    """A client's request stream that sends `first` (if any), then nothing until `stop`."""
    if first is not None:
        yield first
    stop.wait(60)


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.02)


def _timed(call: Callable[[], object]) -> float:
    start = time.monotonic()
    call()
    return time.monotonic() - start


def test_one_callers_idle_streams_and_calls_leave_the_others_served(
    make_node: Callable[..., Node],
) -> None:
    node = make_node()
    offender, other = node.channel("offender"), node.channel("other")
    stop = threading.Event()
    try:
        # 20 idle uploads, and 20 unary calls that send headers and never their request:
        # without limits 4 of them hold the 4 worker threads and everything else waits.
        streams = [offender.stream_unary(UPLOAD).future(_idle(stop), timeout=60) for _ in range(20)]
        calls = [offender.stream_unary(ECHO).future(_idle(stop), timeout=60) for _ in range(20)]
        _wait_until(lambda: sum(f.done() for f in streams + calls) == 36, 30, "36 refusals")
        for f, held in ((streams, "2 streams open"), (calls, "2 calls in progress")):
            refused = [g.exception() for g in f if g.done()]
            assert len(refused) == 18
            for e in refused:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert e.details().startswith(f"You already have {held} on this node"), e.details()
        assert node.limited("caller_streams") == 18
        assert node.limited("caller_calls") == 18

        # Everyone else is served at once, health checks included.
        echo = other.unary_unary(ECHO)
        check = health_pb2_grpc.HealthStub(other).Check
        for _ in range(5):
            assert _timed(lambda: echo(b"ping", timeout=5)) < 2
            assert _timed(lambda: check(health_pb2.HealthCheckRequest(), timeout=5)) < 2
        # Streams of all callers together stop at max_streams (3), and say so.
        kept = other.stream_unary(UPLOAD).future(_idle(stop), timeout=60)
        _wait_until(lambda: node.in_progress("stream") == 3, 10, "a third stream admitted")
        with pytest.raises(grpc.RpcError) as full:
            other.stream_unary(UPLOAD)(iter([b"x"]), timeout=5)
        assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert full.value.details() == (
            "This node already has 3 streams open, the most it serves at once; retry later."
        )
        assert node.limited("listener_streams") == 1

        # A caller that lets go gets its share back.
        for f in [*streams, *calls, kept]:
            f.cancel()
        _wait_until(
            lambda: node.in_progress("stream") == 0 and node.in_progress("call") == 0,
            10,
            "every slot released",
        )
        assert offender.stream_unary(UPLOAD)(iter([b"x", b"y"]), timeout=5) == b"2"
    finally:
        stop.set()


def test_calls_busy_on_the_node_count_against_their_caller(
    make_node: Callable[..., Node],
) -> None:
    node = make_node()
    busy, other = node.channel("offender"), node.channel("other")
    held = [busy.unary_unary(HOLD).future(b"h", timeout=30) for _ in range(2)]
    _wait_until(lambda: node.in_progress("call") == 2, 10, "two held calls admitted")
    with pytest.raises(grpc.RpcError) as refused:
        busy.unary_unary(HOLD)(b"h", timeout=5)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.details() == (
        "You already have 2 calls in progress on this node, the most it allows one caller; "
        "retry when one has finished."
    )
    assert other.unary_unary(ECHO)(b"ping", timeout=5) == b"ping"
    node.release.set()
    assert [f.result() for f in held] == [b"h", b"h"]
    assert busy.unary_unary(ECHO)(b"ping", timeout=5) == b"ping"


def test_a_client_that_sends_nothing_is_cut_off_and_its_slot_freed(
    make_node: Callable[..., Node],
) -> None:
    node = make_node(idle_seconds=0.5, streams_per_caller=1, calls_per_caller=1)
    offender = node.channel("offender")
    stop = threading.Event()
    try:
        upload = offender.stream_unary(UPLOAD).future(_idle(stop, b"first"), timeout=30)
        _wait_until(lambda: node.in_progress("stream") == 1, 10, "the upload admitted")
        error = upload.exception(timeout=20)
        assert error is not None
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert error.details() == "Nothing arrived on this call for 0.5 s, so the node closed it."
        _wait_until(lambda: "upload" in node.ended, 10, "the handler released")
        # Headers and no request: the unary call is cut off the same way.
        call = offender.stream_unary(ECHO).future(_idle(stop), timeout=30)
        error = call.exception(timeout=20)
        assert error is not None
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert node.limited("stream_idle") == 2
        _wait_until(
            lambda: node.in_progress("stream") == 0 and node.in_progress("call") == 0,
            10,
            "the slots released",
        )
        # Slots come back: a client that sends gets through.
        assert offender.stream_unary(UPLOAD)(iter([b"a", b"b", b"c"]), timeout=5) == b"3"
        assert offender.unary_unary(ECHO)(b"ping", timeout=5) == b"ping"
    finally:
        stop.set()


def test_a_reader_that_stops_reading_is_cut_off_and_one_that_reads_is_not(
    make_node: Callable[..., Node],
) -> None:
    node = make_node(send_seconds=2.0, streams_per_caller=1)
    slow, fast = node.channel("offender"), node.channel("other")
    # 50 MiB: far more than flow control lets the node send ahead of the reader.
    stalled = slow.unary_stream(DOWNLOAD)(b"200", timeout=60)
    assert len(next(stalled)) == CHUNK
    _wait_until(lambda: "download" in node.ended, 20, "the stalled stream closed")
    # The reader learns why once it reads what had reached it.
    with pytest.raises(grpc.RpcError) as closed:
        for _ in stalled:
            pass
    assert closed.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert closed.value.details() == (
        "The next message of this stream was not read within 2 s, so the node closed it."
    )
    assert node.limited("slow_reader") == 1
    _wait_until(lambda: node.in_progress("stream") == 0, 10, "the slot released")
    received = sum(len(m) for m in fast.unary_stream(DOWNLOAD)(b"200", timeout=60))
    assert received == 200 * CHUNK
    assert node.limited("slow_reader") == 1


def test_a_unary_call_without_its_request_is_refused(make_node: Callable[..., Node]) -> None:
    node = make_node()
    with pytest.raises(grpc.RpcError) as e:
        node.channel("other").stream_unary(ECHO)(iter([]), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert e.value.details() == "/t.Test/Echo requires exactly one request message."


# -- configuration ----------------------------------------------------------------------

BASE = """
[node]
agency = "GB-NCA"
identity_dir = "keys"
data_dir = "data"

[federation]
listen = "127.0.0.1:7443"
max_workers = 20

[officer]
listen = "127.0.0.1:7501"
"""


def test_default_limits_load(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(BASE)
    limits = load_config(path).limits
    assert ListenerLimits.for_peers(limits) == ListenerLimits(16, 4, 24, 30, 30)


@pytest.mark.parametrize(
    ("limits", "sentence"),
    [
        (
            "max_calls_per_peer = 20",
            "limits.max_calls_per_peer must be below federation.max_workers (20), or one peer "
            "could hold every thread for calls.",
        ),
        (
            "max_calls_per_officer = 32",
            "limits.max_calls_per_officer must be below officer.max_workers (32), or one "
            "officer could hold every thread for calls.",
        ),
        (
            "max_streams = 3",
            "limits.max_streams_per_peer must not exceed limits.max_streams (3).",
        ),
        (
            "max_streams_per_officer = 25",
            "limits.max_streams_per_officer must not exceed limits.max_streams (24).",
        ),
        (
            "stream_idle_seconds = 0",
            "limits.stream_idle_seconds must be a positive number (got 0).",
        ),
        (
            'stream_send_timeout_seconds = "1m"',
            "limits.stream_send_timeout_seconds must be a positive number (got '1m').",
        ),
        (
            "max_streams_per_peer = 0",
            "limits.max_streams_per_peer must be a positive integer (got 0).",
        ),
    ],
)
def test_bad_limits_are_refused_with_one_sentence(
    tmp_path: Path, limits: str, sentence: str
) -> None:
    path = tmp_path / "node.toml"
    path.write_text(BASE + f"\n[limits]\n{limits}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert e.value.message == sentence
