"""The one error path of every call a node serves (federation and officer listeners).

`ErrorInterceptor` wraps every method handler, unary and streaming, and is the only
place that turns an exception into a gRPC status:

- the request is parsed here, so bytes that are not the method's message are
  INVALID_ARGUMENT (not gRPC's INTERNAL "Exception deserializing request!"), and no
  integer beyond a signed 64-bit one reaches the database (OUT_OF_RANGE);
- an `MlaxError` answers with its `status` and its one sentence;
- storage exhaustion (SQLite "database or disk is full", ENOSPC, PostgreSQL DiskFull)
  answers RESOURCE_EXHAUSTED "The node's storage is full.";
- a transient failure (a locked or unreachable database, a peer that did not answer a
  call this node made) answers UNAVAILABLE, and anything else INTERNAL, each with a
  sentence naming an error id that the node's log carries with the exception's type and
  traceback. No exception text reaches the caller, an officer or another agency;
- every error is counted in `mlax_rpc_errors_total{method, code}`.

Servicers raise; they never call `context.abort` themselves.
"""

from __future__ import annotations

import errno
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import grpc
import structlog
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from exchange.errors import (
    AuthError,
    InputError,
    MalformedError,
    MlaxError,
    OutOfRangeError,
    RetryLaterError,
    Status,
)
from node import metrics
from node.logs import LogBudget, error_fields, exception_chain

log = structlog.get_logger("mlax.rpc")

INT64_MAX = 2**63 - 1
STORAGE_FULL = "The node's storage is full."


# -- errors servicers raise for statuses the exchange hierarchy has no class for --------


class UnauthenticatedError(AuthError):
    """A caller whose TLS key or credential this node does not know."""

    status = Status.UNAUTHENTICATED


class BusyError(InputError):
    """A node-wide limit on concurrent work is reached; a later call can succeed."""

    status = Status.RESOURCE_EXHAUSTED


class StorageFullError(InputError):
    status = Status.RESOURCE_EXHAUSTED

    def __init__(self) -> None:
        super().__init__(STORAGE_FULL)


class UnavailableError(RetryLaterError):
    status = Status.UNAVAILABLE


class InternalError(MlaxError):
    status = Status.INTERNAL


# -- classification ---------------------------------------------------------------------

# PostgreSQL SQLSTATEs: 53100 disk_full; class 08 (connection), 57P01-03 (the server is
# shutting down or starting), 40001/40P01 (serialization failure, deadlock: retry).
_PG_FULL = "53100"
_PG_TRANSIENT = ("08", "57P01", "57P02", "57P03", "40001", "40P01")


def is_storage_full(exc: BaseException) -> bool:
    """Whether `exc` (or what it was raised from) says the node's disk or database is full."""
    for e in exception_chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(e, sqlite3.Error) and (
            getattr(e, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL
            or "database or disk is full" in str(e)
        ):
            return True
        if getattr(e, "sqlstate", None) == _PG_FULL:
            return True
    return False


def _is_transient(exc: BaseException) -> bool:
    for e in exception_chain(exc):
        if isinstance(e, grpc.RpcError) and isinstance(e, grpc.Call):
            return True  # a call this node made to a peer failed
        if isinstance(e, sqlite3.OperationalError) and getattr(e, "sqlite_errorcode", 0) & 0xFF in (
            sqlite3.SQLITE_BUSY,
            sqlite3.SQLITE_LOCKED,
        ):
            return True
        sqlstate = getattr(e, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_PG_TRANSIENT):
            return True
        if getattr(e, "connection_invalidated", False):
            return True
        # SQLAlchemy's pool timeout; a future or socket that timed out.
        if type(e).__name__ == "TimeoutError":
            return True
    return False


_storage_budget = LogBudget(per_window=1, window=60.0)


def _log_storage_full(method: str, exc: BaseException) -> None:
    """One `storage_full` line a minute at most: every call fails while the disk is full."""
    allowed, suppressed = _storage_budget.allow("storage_full")
    if allowed:
        log.error("storage_full", method=method, calls_since_last=suppressed, **error_fields(exc))


def to_status_error(exc: BaseException, method: str) -> MlaxError:
    """The error a caller sees for `exc`; an unexpected one is logged under a new id."""
    if isinstance(exc, MlaxError):
        return exc
    if is_storage_full(exc):
        _log_storage_full(method, exc)
        return StorageFullError()
    error_id = secrets.token_hex(6)
    if _is_transient(exc):
        log.warning("rpc_unavailable", error_id=error_id, method=method, **error_fields(exc))
        return UnavailableError(
            f"The node could not complete the call for now (error {error_id}); try again later."
        )
    log.error("rpc_internal_error", error_id=error_id, method=method, **error_fields(exc))
    return InternalError(f"Internal error {error_id}; the node's operator can look it up.")


# -- request parsing and range checks ---------------------------------------------------

_UNSIGNED_64 = (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64)


def check_ranges(message: Message) -> None:
    """Refuse any 64-bit unsigned field, at any depth, beyond what a database stores."""
    for field, value in message.ListFields():
        values = value if field.is_repeated else [value]
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            entry = field.message_type
            if entry is not None and entry.GetOptions().map_entry:
                values = [v for v in value.values() if isinstance(v, Message)]
            for v in values:
                check_ranges(v)
        elif field.type in _UNSIGNED_64:
            for v in values:
                if v > INT64_MAX:
                    raise OutOfRangeError(
                        f"{message.DESCRIPTOR.name}.{field.name} must be at most {INT64_MAX} "
                        f"(got {v})."
                    )


def _parser(deserializer: Callable[[bytes], Any] | None, method: str) -> Callable[[bytes], Any]:
    if deserializer is None:
        return lambda raw: raw  # the servicer parses the bytes itself (Deliver)
    call = method.rsplit("/", 1)[-1]

    def parse(raw: bytes) -> Any:
        try:
            request = deserializer(raw)
        except (DecodeError, ValueError, TypeError):
            raise MalformedError(f"The {call} request is not a valid protobuf message.") from None
        if isinstance(request, Message):
            check_ranges(request)
        return request

    return parse


# -- the interceptor --------------------------------------------------------------------


def _fail(context: grpc.ServicerContext, method: str, exc: Exception) -> NoReturn:
    if isinstance(exc, grpc.RpcError) and not isinstance(exc, grpc.Call):
        raise exc  # the caller cancelled or broke its request stream: gRPC's own business
    # ServicerContext.code() exists since grpc 1.38; the stubs do not know it yet.
    code: grpc.StatusCode | None = context.code()  # type: ignore[attr-defined]
    if code is not None and code != grpc.StatusCode.OK:
        # A handler (gRPC's health or reflection service) aborted with a status itself.
        metrics.RPC_ERRORS.labels(method=method, code=code.name).inc()
        raise exc
    error = to_status_error(exc, method)
    status = grpc.StatusCode.__members__.get(error.status)
    if status is None or status == grpc.StatusCode.OK:  # an error class with a bad status
        error = to_status_error(ValueError(f"no gRPC status {error.status!r}"), method)
        status = grpc.StatusCode.INTERNAL
    metrics.RPC_ERRORS.labels(method=method, code=status.name).inc()
    context.abort(status, error.message)
    raise AssertionError("unreachable")  # context.abort raises


def guarded(
    handler: grpc.RpcMethodHandler[Any, Any], method: str
) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` with its request parsed here and every exception mapped by `_fail`."""
    parse = _parser(handler.request_deserializer, method)
    serialize = handler.response_serializer

    def parse_all(raws: Iterator[bytes]) -> Iterator[Any]:
        for raw in raws:
            yield parse(raw)

    if handler.unary_unary is not None:
        uu = handler.unary_unary

        def unary_unary(raw: bytes, context: grpc.ServicerContext) -> Any:
            try:
                return uu(parse(raw), context)
            except Exception as e:
                _fail(context, method, e)

        return grpc.unary_unary_rpc_method_handler(unary_unary, None, serialize)
    if handler.unary_stream is not None:
        us = handler.unary_stream

        def unary_stream(raw: bytes, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from us(parse(raw), context)
            except Exception as e:
                _fail(context, method, e)

        return grpc.unary_stream_rpc_method_handler(unary_stream, None, serialize)
    if handler.stream_unary is not None:
        su = handler.stream_unary

        def stream_unary(raws: Iterator[bytes], context: grpc.ServicerContext) -> Any:
            try:
                return su(parse_all(raws), context)
            except Exception as e:
                _fail(context, method, e)

        return grpc.stream_unary_rpc_method_handler(stream_unary, None, serialize)
    ss = handler.stream_stream
    assert ss is not None

    def stream_stream(raws: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from ss(parse_all(raws), context)
        except Exception as e:
            _fail(context, method, e)

    return grpc.stream_stream_rpc_method_handler(stream_stream, None, serialize)


class ErrorInterceptor(grpc.ServerInterceptor):
    """Applies `guarded` to every method of a server; counts calls to unknown methods."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            # gRPC answers UNIMPLEMENTED; the label is fixed, a caller chooses the name.
            metrics.RPC_ERRORS.labels(method="unknown", code="UNIMPLEMENTED").inc()
            return None
        return guarded(handler, handler_call_details.method)
