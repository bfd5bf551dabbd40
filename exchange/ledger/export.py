"""The ledger export file: length-delimited `LedgerExportRecord` messages, with no I/O.

Each record is preceded by its length as a protobuf varint (the "delimited" framing every
protobuf library can write): one header, then every entry in index order, then every
checkpoint in size order. `iter_records` reads through a caller's `read(n)` callable in
large chunks, so a million records decode in about a second and the module never opens
a file. Framing is strict: a record over the size limit, a non-minimal or overlong
varint, bytes that are not a record, or a stream that stops mid-record raise
`MalformedExportError` naming the byte offset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from google.protobuf.message import DecodeError

from exchange._proto.mlax.v1.ledger_pb2 import LedgerExportRecord
from exchange.errors import OversizedError
from exchange.ledger.audit_errors import MalformedExportError

EXPORT_FORMAT = "mlax-ledger-export/v1"
# An entry record is a few hundred bytes and a checkpoint with 37 cosignatures a few KiB.
MAX_RECORD_SIZE = 1 << 20
READ_CHUNK = 1 << 20
# A uint64 needs at most ten 7-bit groups.
_MAX_VARINT_BYTES = 10
# A record starts with the tag of its one field (header 1, entry 2, checkpoint 3; wire
# type 2), so checking one byte refuses bytes that would parse as unknown fields only.
_RECORD_TAGS = frozenset((0x0A, 0x12, 0x1A))


def encode_varint(value: int) -> bytes:
    """`value` as a protobuf base-128 varint, least significant group first."""
    if not 0 <= value < 1 << 64:
        raise ValueError(f"{value} does not fit a protobuf varint.")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_record(rec: LedgerExportRecord, *, max_record_size: int = MAX_RECORD_SIZE) -> bytes:
    """One record as written to the export: its varint length, then its deterministic bytes."""
    if rec.WhichOneof("record") is None:
        raise MalformedExportError("An export record must hold a header, entry or checkpoint.")
    data = rec.SerializeToString(deterministic=True)
    if len(data) > max_record_size:
        raise OversizedError(
            f"An export record of {len(data)} bytes exceeds the limit of {max_record_size}."
        )
    return encode_varint(len(data)) + data


def _decode_varint(buf: bytes, pos: int, end: int, offset: int) -> tuple[int, int]:
    """(value, position after it) of the varint at `pos`, or (-1, -1) if `buf` ends first."""
    value = 0
    shift = 0
    i = pos
    while i < end:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if byte == 0 and i - pos > 1:
                raise MalformedExportError(
                    f"The record length at byte {offset + pos} is not minimally encoded."
                )
            return value, i
        shift += 7
        if i - pos >= _MAX_VARINT_BYTES:
            raise MalformedExportError(
                f"The record length at byte {offset + pos} is longer than any varint."
            )
    return -1, -1


def iter_records(
    read: Callable[[int], bytes],
    *,
    max_record_size: int = MAX_RECORD_SIZE,
    chunk_size: int = READ_CHUNK,
) -> Iterator[LedgerExportRecord]:
    """Decode the records of an export stream; `read(n)` returns up to n bytes, b"" at its end.

    Whether the records come in the order the format requires is the consumer's check
    (`exchange.ledger.audit.verify_export` makes it).
    """
    parse = LedgerExportRecord.FromString
    tags = _RECORD_TAGS
    buf = b""
    pos = 0
    end = 0
    offset = 0  # stream offset of buf[0], for error messages
    want = chunk_size
    while True:
        # The hot loop: lengths under 16 KiB (every entry) are one or two varint bytes.
        while pos < end:
            first = buf[pos]
            if first < 0x80:
                size = first
                start = pos + 1
            elif pos + 1 < end and 0 < (second := buf[pos + 1]) < 0x80:
                size = (first & 0x7F) | second << 7
                start = pos + 2
            else:
                size, start = _decode_varint(buf, pos, end, offset)
                if start < 0:
                    break
            if not 0 < size <= max_record_size:
                raise MalformedExportError(
                    f"The record at byte {offset + pos} is empty."
                    if not size
                    else f"The record at byte {offset + pos} claims {size} bytes; "
                    f"the limit is {max_record_size}."
                )
            stop = start + size
            if stop > end:
                # Read at least what this record still lacks, so a big one costs one read.
                want = max(chunk_size, stop - end)
                break
            if buf[start] not in tags:
                raise MalformedExportError(
                    f"The record at byte {offset + pos} is not a header, entry or checkpoint."
                )
            try:
                record = parse(buf[start:stop])
            except DecodeError:
                raise MalformedExportError(
                    f"The record at byte {offset + pos} is not a ledger export record."
                ) from None
            yield record
            pos = stop
        chunk = read(want)
        want = chunk_size
        if not chunk:
            if pos < end:
                raise MalformedExportError(
                    f"The export ends in the middle of the record at byte {offset + pos}."
                )
            return
        buf = buf[pos:] + chunk if pos < end else chunk
        offset += pos
        pos = 0
        end = len(buf)
