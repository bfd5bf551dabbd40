"""node.rpc.errors on a real in-process gRPC server: what a caller sees when a handler
fails, what the log says about it, and that every error is counted.

The handlers raise real errors: SQLite's own "database or disk is full" (a database
capped with PRAGMA max_page_count) and "database is locked", an OSError ENOSPC, an
application error whose text must not leave the node.
"""

from __future__ import annotations

import errno
import json
import re
import sqlite3
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from prometheus_client import REGISTRY
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange.errors import ReplayError
from node.rpc.errors import ErrorInterceptor

SERVICE = "t.Errors"
SECRET = "Maria Ionescu born 1999"
INTERNAL_RE = re.compile(r"Internal error ([0-9a-f]{12}); the node's operator can look it up\.")


def _full_database_error(tmp_path: Path) -> OperationalError:
    """SQLite's real SQLITE_FULL, as SQLAlchemy raises it, from a database capped at 8 pages."""
    engine = create_engine(f"sqlite:///{tmp_path / 'full.db'}", hide_parameters=True)
    try:
        with engine.begin() as conn:
            conn.execute(text("PRAGMA max_page_count = 8"))
            conn.execute(text("CREATE TABLE t (b BLOB)"))
            conn.execute(text("INSERT INTO t VALUES (:b)"), {"b": SECRET.encode() * 10_000})
    except OperationalError as e:
        return e
    finally:
        engine.dispose()
    raise AssertionError("the capped database took the row")


def _locked_database_error(tmp_path: Path) -> sqlite3.OperationalError:
    """SQLite's real SQLITE_BUSY: another connection holds the write lock."""
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0)
    try:
        other.execute("INSERT INTO t VALUES (1)")
    except sqlite3.OperationalError as e:
        return e
    finally:
        other.close()
        holder.close()
    raise AssertionError("the second writer got the lock")


class Handlers(grpc.GenericRpcHandler):
    """Methods of t.Errors: each raises what `self.raises[name]` holds when called."""

    def __init__(self) -> None:
        self.raises: dict[str, BaseException] = {}
        self.seen: list[Any] = []

    def _raise(self, name: str) -> None:
        if name in self.raises:
            raise self.raises[name]

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        name = details.method.rsplit("/", 1)[-1]
        if not details.method.startswith(f"/{SERVICE}/"):
            return None
        entries = lpb.GetEntriesRequest

        def unary(request: lpb.GetEntriesRequest, context: grpc.ServicerContext) -> Any:
            self.seen.append(request)
            self._raise(name)
            return lpb.GetEntriesResponse()

        def server_stream(
            request: lpb.GetEntriesRequest, context: grpc.ServicerContext
        ) -> Iterator[Any]:
            yield lpb.GetEntriesResponse()
            self._raise(name)  # after a first message has gone out
            yield lpb.GetEntriesResponse()

        def client_stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            self.seen.extend(requests)
            self._raise(name)
            return lpb.GetEntriesResponse()

        def aborts(request: lpb.GetEntriesRequest, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.NOT_FOUND, "Nothing here.")

        out = lpb.GetEntriesResponse.SerializeToString
        if name.startswith("Stream"):
            return grpc.unary_stream_rpc_method_handler(server_stream, entries.FromString, out)
        if name.startswith("Upload"):
            return grpc.stream_unary_rpc_method_handler(client_stream, entries.FromString, out)
        if name == "Aborts":
            return grpc.unary_unary_rpc_method_handler(aborts, entries.FromString, out)
        return grpc.unary_unary_rpc_method_handler(unary, entries.FromString, out)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Handlers, grpc.Channel]]:
    handlers = Handlers()
    srv = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        handlers=[handlers],
        interceptors=[ErrorInterceptor()],
    )
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield handlers, channel
    channel.close()
    srv.stop(grace=None)


def _unary(channel: grpc.Channel, method: str, service: str = SERVICE) -> Callable[..., bytes]:
    return channel.unary_unary(
        f"/{service}/{method}", request_serializer=None, response_deserializer=None
    )


def _call(
    server: tuple[Handlers, grpc.Channel], method: str, raises: BaseException | None = None
) -> grpc.RpcError:
    handlers, channel = server
    handlers.raises.clear()
    if raises is not None:
        handlers.raises[method] = raises
    request = lpb.GetEntriesRequest(start=1).SerializeToString()
    name = f"/{SERVICE}/{method}"

    def invoke() -> object:
        if method.startswith("Stream"):
            stream: grpc.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
                name, request_serializer=None, response_deserializer=None
            )
            return list(stream(request, timeout=10))
        if method.startswith("Upload"):
            upload: grpc.StreamUnaryMultiCallable[bytes, bytes] = channel.stream_unary(
                name, request_serializer=None, response_deserializer=None
            )
            return upload(iter([request, request]), timeout=10)
        return _unary(channel, method)(request, timeout=10)

    with pytest.raises(grpc.RpcError) as exc:
        invoke()
    return exc.value


def _errors(method: str, code: str) -> float:
    value = REGISTRY.get_sample_value(
        "mlax_rpc_errors_total", {"method": f"/{SERVICE}/{method}", "code": code}
    )
    return value or 0.0


def test_an_unexpected_exception_is_internal_with_an_id_the_log_carries(
    server: tuple[Handlers, grpc.Channel],
) -> None:
    before = _errors("Boom", "INTERNAL")
    with structlog.testing.capture_logs() as logs:
        err = _call(server, "Boom", RuntimeError(f"lookup failed for {SECRET}"))
    assert err.code() == grpc.StatusCode.INTERNAL
    details = err.details() or ""
    match = INTERNAL_RE.fullmatch(details)
    assert match, details
    assert SECRET not in details
    [event] = [e for e in logs if e["event"] == "rpc_internal_error"]
    assert event["error_id"] == match.group(1)
    assert event["method"] == f"/{SERVICE}/Boom"
    assert event["error_type"] == "builtins.RuntimeError"
    assert "in _raise" in event["traceback"]
    assert SECRET not in json.dumps(event, default=str)
    assert _errors("Boom", "INTERNAL") == before + 1


def test_each_internal_error_has_its_own_id(server: tuple[Handlers, grpc.Channel]) -> None:
    ids = {
        INTERNAL_RE.fullmatch(_call(server, "Boom", KeyError("x")).details() or "").group(1)  # type: ignore[union-attr]
        for _ in range(3)
    }
    assert len(ids) == 3


def test_a_full_database_is_resource_exhausted_in_one_sentence(
    server: tuple[Handlers, grpc.Channel], tmp_path: Path
) -> None:
    full = _full_database_error(tmp_path)
    before = _errors("Submit", "RESOURCE_EXHAUSTED")
    err = _call(server, "Submit", full)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == "The node's storage is full."
    assert _errors("Submit", "RESOURCE_EXHAUSTED") == before + 1


@pytest.mark.parametrize("method", ["StreamFull", "UploadFull"])
def test_a_full_disk_in_a_stream_is_resource_exhausted(
    server: tuple[Handlers, grpc.Channel], method: str
) -> None:
    err = _call(server, method, OSError(errno.ENOSPC, "No space left on device", "/x/secret"))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == "The node's storage is full."


def test_a_locked_database_is_unavailable_with_an_id(
    server: tuple[Handlers, grpc.Channel], tmp_path: Path
) -> None:
    with structlog.testing.capture_logs() as logs:
        err = _call(server, "Locked", _locked_database_error(tmp_path))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    match = re.fullmatch(
        r"The node could not complete the call for now \(error ([0-9a-f]{12})\); "
        r"try again later\.",
        err.details() or "",
    )
    assert match, err.details()
    [event] = [e for e in logs if e["event"] == "rpc_unavailable"]
    assert event["error_id"] == match.group(1)
    assert event["error"] == "sqlite: database is locked"


def test_an_mlax_error_keeps_its_status_and_sentence(
    server: tuple[Handlers, grpc.Channel],
) -> None:
    before = _errors("Refuse", "ALREADY_EXISTS")
    err = _call(server, "Refuse", ReplayError("That message id was already used."))
    assert err.code() == grpc.StatusCode.ALREADY_EXISTS
    assert err.details() == "That message id was already used."
    assert _errors("Refuse", "ALREADY_EXISTS") == before + 1


def test_a_handler_that_aborts_itself_is_counted(server: tuple[Handlers, grpc.Channel]) -> None:
    before = _errors("Aborts", "NOT_FOUND")
    err = _call(server, "Aborts")
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert err.details() == "Nothing here."
    assert _errors("Aborts", "NOT_FOUND") == before + 1


def test_junk_request_bytes_are_invalid_argument(server: tuple[Handlers, grpc.Channel]) -> None:
    handlers, channel = server
    handlers.raises.clear()
    with pytest.raises(grpc.RpcError) as exc:
        _unary(channel, "Echo")(b"\xff\xff\xff junk", timeout=10)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert exc.value.details() == "The Echo request is not a valid protobuf message."


def test_junk_in_a_request_stream_is_invalid_argument(
    server: tuple[Handlers, grpc.Channel],
) -> None:
    _, channel = server
    call: grpc.StreamUnaryMultiCallable[bytes, bytes] = channel.stream_unary(
        f"/{SERVICE}/UploadEcho", request_serializer=None, response_deserializer=None
    )
    good = lpb.GetEntriesRequest(start=1).SerializeToString()
    with pytest.raises(grpc.RpcError) as exc:
        call(iter([good, b"\xff\xff\xff junk"]), timeout=10)
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_number_beyond_int64_is_out_of_range_and_never_reaches_the_handler(
    server: tuple[Handlers, grpc.Channel],
) -> None:
    handlers, channel = server
    handlers.seen.clear()
    request = lpb.GetEntriesRequest(start=2**64 - 1).SerializeToString()
    with pytest.raises(grpc.RpcError) as exc:
        _unary(channel, "Echo")(request, timeout=10)
    assert exc.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert exc.value.details() == (
        "GetEntriesRequest.start must be at most 9223372036854775807 (got 18446744073709551615)."
    )
    assert handlers.seen == []
    # The largest signed 64-bit value is still a valid request.
    ok = lpb.GetEntriesRequest(start=2**63 - 1).SerializeToString()
    assert _unary(channel, "Echo")(ok, timeout=10) == b""
    assert handlers.seen[-1].start == 2**63 - 1


def test_an_unknown_method_is_unimplemented_and_counted(
    server: tuple[Handlers, grpc.Channel],
) -> None:
    _, channel = server
    before = REGISTRY.get_sample_value(
        "mlax_rpc_errors_total", {"method": "unknown", "code": "UNIMPLEMENTED"}
    )
    with pytest.raises(grpc.RpcError) as exc:
        _unary(channel, "Nope", service="other.Service")(b"", timeout=10)
    assert exc.value.code() == grpc.StatusCode.UNIMPLEMENTED
    after = REGISTRY.get_sample_value(
        "mlax_rpc_errors_total", {"method": "unknown", "code": "UNIMPLEMENTED"}
    )
    assert (after or 0) == (before or 0) + 1
