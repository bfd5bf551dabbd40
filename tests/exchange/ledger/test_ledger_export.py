"""The export file's framing: varint-delimited records, read strictly through `read(n)`."""

from __future__ import annotations

import contextlib
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from simulator import LedgerSimulator, build_federation

from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange.errors import MlaxError, OversizedError
from exchange.ledger.audit import verify_export
from exchange.ledger.audit_errors import MalformedExportError
from exchange.ledger.export import (
    MAX_RECORD_SIZE,
    encode_record,
    encode_varint,
    iter_records,
)


@pytest.fixture(scope="module")
def ledger() -> LedgerSimulator:
    return LedgerSimulator(build_federation()).grow(20, every=8)


def decode(data: bytes, **limits: int) -> list[lpb.LedgerExportRecord]:
    return list(iter_records(io.BytesIO(data).read, **limits))


def entry_record(content: bytes = b"{}") -> lpb.LedgerExportRecord:
    return lpb.LedgerExportRecord(entry=lpb.LedgerEntry(index=1, entry=content))


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "8001"),
        (300, "ac02"),
        (16383, "ff7f"),
        (16384, "808001"),
        (2**64 - 1, "ffffffffffffffffff01"),
    ],
)
def test_varints_are_protobuf_varints(value: int, encoded: str) -> None:
    assert encode_varint(value).hex() == encoded


@pytest.mark.parametrize("value", [-1, 2**64])
def test_varint_out_of_range_is_refused(value: int) -> None:
    with pytest.raises(ValueError, match="varint"):
        encode_varint(value)


def test_records_round_trip(ledger: LedgerSimulator) -> None:
    records = ledger.export()
    assert decode(ledger.export_bytes()) == records
    assert encode_record(records[1])[:2] == encode_varint(records[1].ByteSize())


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 64, 301])
def test_any_read_size_decodes_the_same(ledger: LedgerSimulator, chunk_size: int) -> None:
    assert decode(ledger.export_bytes(), chunk_size=chunk_size) == ledger.export()


def test_short_reads_are_retried_until_the_end() -> None:
    data = b"".join(encode_record(entry_record(bytes([65 + i]) * 200)) for i in range(5))
    stream = io.BytesIO(data)
    assert len(list(iter_records(lambda n: stream.read(min(n, 13))))) == 5


def test_a_record_bigger_than_a_chunk_is_read_whole() -> None:
    big = entry_record(b"x" * 200_000)
    assert decode(encode_record(big) * 2, chunk_size=4096) == [big, big]


def test_the_encoding_is_the_standard_delimited_framing() -> None:
    record = entry_record(b"x" * 300)
    data = record.SerializeToString(deterministic=True)
    assert encode_record(record) == encode_varint(len(data)) + data


def test_an_empty_stream_has_no_records() -> None:
    assert decode(b"") == []


def test_every_cut_inside_a_record_is_refused(ledger: LedgerSimulator) -> None:
    data = ledger.export_bytes()
    boundaries = {0}
    position = 0
    for record in ledger.export():
        position += len(encode_record(record))
        boundaries.add(position)
    for cut in range(1, len(data)):
        if cut in boundaries:
            assert len(decode(data[:cut])) < len(ledger.export())
            continue
        with pytest.raises(MalformedExportError, match="ends in the middle"):
            decode(data[:cut], chunk_size=97)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\xff\xff\xff\xff\x0f", "claims 4294967295 bytes"),
        (b"\x81\x80\x40", "claims 1048577 bytes"),
        (b"\xff" * 11, "longer than any varint"),
        (b"\x80\x00", "not minimally encoded"),
        (b"\x00", "is empty"),
        (b"\x05hello", "not a header, entry or checkpoint"),
        (b"\x03\x12\x05a", "not a ledger export record"),
        (b"\x02\x12\xff", "not a ledger export record"),
        (b"\x06\x12\x04\x08\x80\x80\x80", "not a ledger export record"),
    ],
)
def test_garbage_is_refused(data: bytes, why: str) -> None:
    with pytest.raises(MalformedExportError, match=why):
        decode(data)


def test_errors_name_the_byte_offset(ledger: LedgerSimulator) -> None:
    data = ledger.export_bytes()
    with pytest.raises(MalformedExportError, match=f"at byte {len(data)}"):
        decode(data + b"\x05hello")


def test_the_record_limit_is_configurable() -> None:
    data = encode_record(entry_record(b"x" * 1000))
    with pytest.raises(MalformedExportError, match="the limit is 512"):
        decode(data, max_record_size=512)


def test_encoding_refuses_what_decoding_would() -> None:
    with pytest.raises(OversizedError, match=f"limit of {MAX_RECORD_SIZE}"):
        encode_record(entry_record(b"x" * MAX_RECORD_SIZE))
    with pytest.raises(MalformedExportError, match="must hold"):
        encode_record(lpb.LedgerExportRecord())


def test_the_error_is_an_mlax_error_for_the_cli() -> None:
    assert issubclass(MalformedExportError, MlaxError)
    assert MalformedExportError("x").status == "INVALID_ARGUMENT"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=64))
def test_random_bytes_decode_or_raise_malformed(data: bytes, chunk_size: int) -> None:
    try:
        records = decode(data, chunk_size=chunk_size)
    except MalformedExportError:
        return
    assert all(r.WhichOneof("record") is not None for r in records)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_streams_never_crash_the_auditor(data: bytes) -> None:
    with contextlib.suppress(MlaxError):
        verify_export(iter_records(io.BytesIO(data).read), trusted_directory=None)


def _read_in_runs(data: bytes, limit: int, chunk_size: int) -> list[lpb.LedgerExportRecord]:
    """Every record, taking runs of entries wherever the reader offers them."""
    reader = iter_records(io.BytesIO(data).read, chunk_size=chunk_size)
    out: list[lpb.LedgerExportRecord] = []
    while True:
        run = reader.take_entries(limit)
        if run is not None:
            assert 0 < len(run.entries) <= limit
            out.extend(lpb.LedgerExportRecord(entry=entry) for entry in run.entries)
            continue
        record = next(reader, None)
        if record is None:
            return out
        out.append(record)


@pytest.mark.parametrize(("limit", "chunk_size"), [(1, 1 << 20), (3, 1 << 20), (1000, 700)])
def test_runs_of_entries_read_as_the_records_do(
    ledger: LedgerSimulator, limit: int, chunk_size: int
) -> None:
    records = ledger.export()
    assert _read_in_runs(ledger.export_bytes(), limit, chunk_size) == records
    reader = iter_records(io.BytesIO(ledger.export_bytes()).read)
    assert reader.take_entries(10) is None  # the header is not an entry
    next(reader)
    # Nor is entry 0 as runs take them: its index is the default, absent on the wire.
    assert reader.take_entries(10) is None
    next(reader)
    run = reader.take_entries(10)
    assert run is not None
    assert list(run.entries) == [r.entry for r in records[2:12]]
    assert run.whole()  # as encode_record writes them


def test_a_run_stops_short_of_a_record_that_does_not_decode(ledger: LedgerSimulator) -> None:
    """The bad record is left for iteration, which names it with its byte offset."""
    records = ledger.export()
    good = b"".join(encode_record(r) for r in records[:6])
    body = b"\x12" + encode_varint(200) + b"\xff" * 200
    data = good + encode_varint(len(body)) + body + encode_record(records[6])
    with pytest.raises(MalformedExportError) as plain:
        decode(data)
    with pytest.raises(MalformedExportError) as in_runs:
        _read_in_runs(data, 100, 1 << 20)
    assert str(in_runs.value) == str(plain.value)
    assert f"at byte {len(good)} " in str(plain.value)
