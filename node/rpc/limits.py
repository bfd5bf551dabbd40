"""Bounded resources on a listener: no caller can hold the threads every other caller needs.

The node serves gRPC synchronously: a call runs on a thread of its listener's pool from
the moment its headers arrive, waiting there for its request messages, and a stream
keeps that thread until it ends. `CallLimiter`, a server interceptor on each listener,
admits a call only while

- its caller (a peer agency, or one officer credential) has fewer than
  `calls_per_caller` unary calls, or fewer than `streams_per_caller` streams, in
  progress on the listener, and
- for a stream, the listener has fewer than `max_streams` open. The pool has that many
  threads on top of `max_workers`, so unary calls and health checks always find one;

and refuses any other at once with RESOURCE_EXHAUSTED. A watchdog closes, with
DEADLINE_EXCEEDED, a call whose client has sent nothing for `idle_seconds` while the
node waits for its next message (including a unary call's only message: a client can
send headers and no body), and a stream whose reader has not taken the node's next
message within `send_seconds` (flow control blocks the sending thread until it does).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
import structlog

from exchange.directory import Directory
from exchange.errors import MlaxError
from node import metrics
from node.config import LimitsSection
from node.services.officers import active_officer, pin_of
from node.storage.db import Database
from node.workers.periodic import Periodic

log = structlog.get_logger("mlax.node")

CALL, STREAM = "call", "stream"
# Callers whose certificate no directory card pins share one budget: a key that is not
# pinned cannot multiply its share by presenting new certificates.
UNPINNED = "unpinned"


@dataclass(frozen=True)
class ListenerLimits:
    """What one listener allows each caller, all callers together, and a stalled call."""

    calls_per_caller: int
    streams_per_caller: int
    max_streams: int
    idle_seconds: float
    send_seconds: float

    @classmethod
    def for_peers(cls, cfg: LimitsSection) -> ListenerLimits:
        return cls(
            cfg.max_calls_per_peer,
            cfg.max_streams_per_peer,
            cfg.max_streams,
            cfg.stream_idle_seconds,
            cfg.stream_send_timeout_seconds,
        )

    @classmethod
    def for_officers(cls, cfg: LimitsSection) -> ListenerLimits:
        return cls(
            cfg.max_calls_per_officer,
            cfg.max_streams_per_officer,
            cfg.max_streams,
            cfg.stream_idle_seconds,
            cfg.stream_send_timeout_seconds,
        )


@dataclass(frozen=True)
class Callers:
    """How a listener tells callers apart by their TLS client certificate: `key` on
    every call (cheap), `name` for the log line of a refusal."""

    key: Callable[[bytes | None], str]
    name: Callable[[bytes | None], str]


def peer_callers(directory: Callable[[], Directory]) -> Callers:
    """Federation callers: the agency whose pinned TLS key the certificate carries."""

    def key(cert: bytes | None) -> str:
        try:
            card = directory().agency_by_tls_pin(pin_of(cert)) if cert else None
        except (MlaxError, ValueError):
            card = None
        return card.agency_id if card is not None else UNPINNED

    return Callers(key, key)


def officer_callers(db: Database) -> Callers:
    """Officer callers: one per credential (the node's officer CA issues every one)."""

    def key(cert: bytes | None) -> str:
        return pin_of(cert).hex() if cert else UNPINNED

    def name(cert: bytes | None) -> str:
        row = active_officer(db, cert) if cert else None
        return row.name if row is not None else "unknown-officer"

    return Callers(key, name)


def client_certificate(context: grpc.ServicerContext) -> bytes | None:
    """The PEM certificate the client presented in the TLS handshake, if any."""
    certs = context.auth_context().get("x509_pem_cert")
    return bytes(certs[0]) if certs else None


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> NoReturn:
    context.abort(code, details)
    raise AssertionError("unreachable")  # context.abort raises


def close_call(context: grpc.ServicerContext, code: grpc.StatusCode, details: str) -> None:
    """End a call from another thread with `code` and `details`: its handler's wait for
    the client (the next request, or room for the next response) returns at once.

    grpc's public `context.cancel()` tells the client only CANCELLED; the core call
    beneath it cancels with a status, which tells the client why.
    """
    call = getattr(getattr(context, "_rpc_event", None), "call", None)
    if call is not None:
        try:
            call.cancel(code.value[0], details)
            return
        except (AttributeError, TypeError):
            pass
    context.cancel()


class _Slot:
    """One admitted call: whom it counts against, and since when it waits on its client."""

    def __init__(
        self,
        caller: str,
        kind: str,
        method: str,
        cert: bytes | None,
        context: grpc.ServicerContext,
    ) -> None:
        self.caller, self.kind, self.method, self.cert = caller, kind, method, cert
        self.context = context
        self.reading_since: float | None = None
        self.sending_since: float | None = None
        self.closed = False

    def requests(self, requests: Iterator[Any]) -> Iterator[Any]:
        """The client's messages, timing each wait for the next one."""
        while True:
            self.reading_since = time.monotonic()
            try:
                request = next(requests)
            except StopIteration:
                return
            finally:
                self.reading_since = None
            yield request

    def only_request(self, requests: Iterator[Any]) -> Any:
        for request in self.requests(requests):
            return request
        _abort(
            self.context,
            grpc.StatusCode.UNIMPLEMENTED,
            f"{self.method} requires exactly one request message.",
        )

    def responses(self, responses: Iterator[Any]) -> Iterator[Any]:
        """The handler's messages, timing how long the client takes to accept each."""
        for response in responses:
            # gRPC resumes this generator once the message is on its way.
            self.sending_since = time.monotonic()
            try:
                yield response
            finally:
                self.sending_since = None


class CallLimiter(grpc.ServerInterceptor):
    """Admits, counts and watches every call on one listener (see the module docstring)."""

    def __init__(self, listener: str, limits: ListenerLimits, callers: Callers) -> None:
        self.listener = listener
        self.limits = limits
        self._callers = callers
        self._lock = threading.Lock()
        self._in_progress: Counter[tuple[str, str]] = Counter()
        self._streams = 0
        self._slots: set[_Slot] = set()
        every = min(limits.idle_seconds, limits.send_seconds) / 4
        self._watchdog = _Watchdog(self, min(max(every, 0.05), 1.0))

    def start(self) -> None:
        self._watchdog.start()

    def stop(self) -> None:
        self._watchdog.stop()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return self._guarded(handler, handler_call_details.method)

    def _guarded(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        # Every call is served as a client stream, so that admission comes first and even
        # a unary call's one request is read under the idle watchdog (a native unary
        # handler waits for it before any interceptor code runs).
        des, ser = handler.request_deserializer, handler.response_serializer
        admitted = self._admitted
        if handler.unary_unary is not None:
            unary_unary = handler.unary_unary

            def call(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                with admitted(context, CALL, method) as slot:
                    return unary_unary(slot.only_request(requests), context)

            return grpc.stream_unary_rpc_method_handler(call, des, ser)
        if handler.unary_stream is not None:
            unary_stream = handler.unary_stream

            def server_stream(
                requests: Iterator[Any], context: grpc.ServicerContext
            ) -> Iterator[Any]:
                with admitted(context, STREAM, method) as slot:
                    request = slot.only_request(requests)
                    yield from slot.responses(unary_stream(request, context))

            return grpc.stream_stream_rpc_method_handler(server_stream, des, ser)
        if handler.stream_unary is not None:
            stream_unary = handler.stream_unary

            def client_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                with admitted(context, STREAM, method) as slot:
                    return stream_unary(slot.requests(requests), context)

            return grpc.stream_unary_rpc_method_handler(client_stream, des, ser)
        stream_stream = handler.stream_stream
        assert stream_stream is not None

        def bidi_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            with admitted(context, STREAM, method) as slot:
                yield from slot.responses(stream_stream(slot.requests(requests), context))

        return grpc.stream_stream_rpc_method_handler(bidi_stream, des, ser)

    @contextmanager
    def _admitted(self, context: grpc.ServicerContext, kind: str, method: str) -> Iterator[_Slot]:
        cert = client_certificate(context)
        caller = self._callers.key(cert)
        limits = self.limits
        limit = limits.streams_per_caller if kind == STREAM else limits.calls_per_caller
        with self._lock:
            if self._in_progress[caller, kind] >= limit:
                refusal = f"caller_{kind}s"
            elif kind == STREAM and self._streams >= limits.max_streams:
                refusal, limit = "listener_streams", limits.max_streams
            else:
                refusal = ""
                slot = _Slot(caller, kind, method, cert, context)
                self._in_progress[caller, kind] += 1
                self._streams += kind == STREAM
                self._slots.add(slot)
        if refusal:
            self._refuse(context, cert, method, refusal, limit)
        metrics.RPC_IN_PROGRESS.labels(listener=self.listener, kind=kind).inc()
        try:
            yield slot
        finally:
            with self._lock:
                self._in_progress[caller, kind] -= 1
                if not self._in_progress[caller, kind]:
                    del self._in_progress[caller, kind]
                self._streams -= kind == STREAM
                self._slots.discard(slot)
            metrics.RPC_IN_PROGRESS.labels(listener=self.listener, kind=kind).dec()

    def _refuse(
        self,
        context: grpc.ServicerContext,
        cert: bytes | None,
        method: str,
        reason: str,
        limit: int,
    ) -> NoReturn:
        metrics.RPC_LIMITED.labels(listener=self.listener, reason=reason).inc()
        log.warning(
            "call_refused",
            listener=self.listener,
            reason=reason,
            method=method,
            caller=self._callers.name(cert),
        )
        _abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, _REFUSALS[reason].format(n=limit))

    def sweep(self) -> None:
        """Close the calls stalled on their client past the listener's deadlines."""
        now = time.monotonic()
        with self._lock:
            slots = list(self._slots)
        for slot in slots:
            reading, sending = slot.reading_since, slot.sending_since
            if slot.closed:
                continue
            if reading is not None and now - reading >= self.limits.idle_seconds:
                self._close(slot, "stream_idle", self.limits.idle_seconds)
            elif sending is not None and now - sending >= self.limits.send_seconds:
                self._close(slot, "slow_reader", self.limits.send_seconds)

    def _close(self, slot: _Slot, reason: str, seconds: float) -> None:
        slot.closed = True
        metrics.RPC_LIMITED.labels(listener=self.listener, reason=reason).inc()
        log.warning(
            "call_closed",
            listener=self.listener,
            reason=reason,
            method=slot.method,
            caller=self._callers.name(slot.cert),
        )
        close_call(
            slot.context, grpc.StatusCode.DEADLINE_EXCEEDED, _CLOSES[reason].format(s=seconds)
        )


_REFUSALS = {
    "caller_calls": "You already have {n} calls in progress on this node, the most it allows "
    "one caller; retry when one has finished.",
    "caller_streams": "You already have {n} streams open on this node, the most it allows one "
    "caller; close one first.",
    "listener_streams": "This node already has {n} streams open, the most it serves at once; "
    "retry later.",
}
_CLOSES = {
    "stream_idle": "Nothing arrived on this call for {s:g} s, so the node closed it.",
    "slow_reader": "The next message of this stream was not read within {s:g} s, so the node "
    "closed it.",
}


class _Watchdog(Periodic):
    def __init__(self, limiter: CallLimiter, every: float) -> None:
        super().__init__(f"mlax-rpc-watchdog-{limiter.listener}", every, "rpc_watchdog_failed")
        self._limiter = limiter

    def tick(self) -> None:
        self._limiter.sweep()
