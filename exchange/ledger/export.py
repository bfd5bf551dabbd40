"""The ledger export file: length-delimited `LedgerExportRecord` messages, with no I/O.

Each record is preceded by its length as a protobuf varint (the "delimited" framing every
protobuf library can write): one header, then every entry in index order, then every
checkpoint in size order. `iter_records` reads through a caller's `read(n)` callable in
large chunks (the module never opens a file), and hands a verifier runs of entry records
at once (`RecordReader.take_entries`), so that a million entries do not cost a million
protobuf messages. Framing is strict: a record over the size limit, a non-minimal or
overlong varint, bytes that are not a record, or a stream that stops mid-record raise
`MalformedExportError` naming the byte offset.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from exchange._proto.mlax.v1.ledger_pb2 import LedgerEntry, LedgerExportRecord
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


# --- runs of entry records --------------------------------------------------------------
#
# An export is almost all entry records, and parsing them one protobuf message at a time
# cost an audit more than its hashing. A reader hands the verifier runs of them instead:
# the records' bytes without their length prefixes, one buffer, parsed by one protobuf
# call into one message whose repeated field 2 holds each record's `LedgerEntry` (field
# 2 of a `LedgerExportRecord` too, so the bytes are the same). These message types are
# views for reading, never sent, so they live here rather than in the wire contract.

_VIEWS = descriptor_pb2.FileDescriptorProto(
    name="mlax/v1/ledger_export_views.proto",
    package="mlax.v1.ledger_export_views",
    dependency=["mlax/v1/ledger.proto"],
    syntax="proto3",
)
_RUN_VIEW = _VIEWS.message_type.add(name="EntryRun")
_RUN_VIEW.field.add(
    name="entry",
    number=2,
    label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
    type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
    type_name=".mlax.v1.LedgerEntry",
)
# The same bytes read column by column: field 2 is one message that every record's
# entry merges into, so each repeated field collects that field of every entry, in order.
_COLUMNS_VIEW = _VIEWS.message_type.add(name="EntryColumns")
for _number, _name, _type in (
    (1, "index", descriptor_pb2.FieldDescriptorProto.TYPE_UINT64),
    (2, "commitment", descriptor_pb2.FieldDescriptorProto.TYPE_BYTES),
    (3, "salt", descriptor_pb2.FieldDescriptorProto.TYPE_BYTES),
    (4, "entry", descriptor_pb2.FieldDescriptorProto.TYPE_BYTES),
    (5, "tree_leaf", descriptor_pb2.FieldDescriptorProto.TYPE_BYTES),
):
    _COLUMNS_VIEW.field.add(
        name=_name,
        number=_number,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
        type=_type,
    )
_MERGED_VIEW = _VIEWS.message_type.add(name="MergedEntries")
_MERGED_VIEW.field.add(
    name="entry",
    number=2,
    label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
    type_name=".mlax.v1.ledger_export_views.EntryColumns",
)
_POOL = descriptor_pool.Default()
_POOL.Add(_VIEWS)
_EntryRunMessage = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("mlax.v1.ledger_export_views.EntryRun")
)
_MergedEntriesMessage = message_factory.GetMessageClass(
    _POOL.FindMessageTypeByName("mlax.v1.ledger_export_views.MergedEntries")
)


@functools.cache
def _entry_heads() -> dict[bytes, int]:
    """The first six bytes of every entry record of 131 to 16,383 bytes (its length
    prefix aside) that starts with its index field, as `iter_records` accepts them: a
    minimal two-byte varint length, field 2 with a minimal two-byte length spanning the
    rest, then the tag of the entry's field 1. Mapped to the number of bytes after the
    first five."""
    heads = {}
    for size in range(131, 1 << 14):
        inner = size - 3
        heads[encode_varint(size) + b"\x12" + encode_varint(inner) + b"\x08"] = inner
    return heads


_HEAD = 5  # bytes before the entry: length, field 2's tag, its length
_KEY = _HEAD + 1
_LARGEST_RUN_RECORD = (1 << 14) - 1


class EntryRun:
    """Consecutive entry records, read at once.

    `data` is the records without their length prefixes: each is `0x12 <length>
    <LedgerEntry>`, exactly one entry field spanning the record, so `entries` (one
    protobuf parse of `data`) holds each record's entry as parsing the records one by
    one would.
    """

    __slots__ = ("_run", "data")

    def __init__(self, data: bytes, run: Any) -> None:
        self.data = data
        self._run = run

    @property
    def entries(self) -> Sequence[LedgerEntry]:
        return cast(Sequence[LedgerEntry], self._run.entry)

    def whole(self) -> bool:
        """Whether each record holds every field it has once, in its shortest encoding
        (unknown fields aside): then its entry is all its bytes, so the protobuf size of
        `entries` is the size of `data`. A repeated field, which the entry keeps once, or
        a default value written out, which it drops, makes it smaller."""
        return bool(self._run.ByteSize() == len(self.data))

    def columns(self) -> Any:
        """`data` read column by column: `.index`, `.commitment`, `.salt`, `.entry` and
        `.tree_leaf`, each that field of every record, in order. Where the run is `whole`
        and each column holds one item per record, item k of each is a field of entry k:
        every record starts with its index (`take_entries` takes no other), holds each
        known field once, and bytes of another wire type are unknown to both readings,
        except field 1 written as a packed list, which only adds to `.index`."""
        merged: Any = _MergedEntriesMessage.FromString(self.data)
        return merged.entry


class RecordReader(Iterator[LedgerExportRecord]):
    """The records of an export stream; `read(n)` returns up to n bytes, b"" at its end.

    Iterating decodes one record at a time. `take_entries` hands over the next records at
    once while they are entry records, for a consumer that reads a million of them.
    Whether the records come in the order the format requires is the consumer's check
    (`exchange.ledger.audit.verify_export` makes it).
    """

    def __init__(
        self,
        read: Callable[[int], bytes],
        *,
        max_record_size: int = MAX_RECORD_SIZE,
        chunk_size: int = READ_CHUNK,
    ) -> None:
        self._read = read
        self._max_record_size = max_record_size
        self._chunk_size = chunk_size
        self._buf = b""
        self._pos = 0
        self._end = 0
        self._offset = 0  # stream offset of _buf[0], for error messages
        self._done = False

    def __iter__(self) -> RecordReader:
        return self

    def __next__(self) -> LedgerExportRecord:
        want = self._chunk_size
        while True:
            buf, pos, end, offset = self._buf, self._pos, self._end, self._offset
            # The hot loop: lengths under 16 KiB (every entry) are one or two varint bytes.
            if pos < end:
                first = buf[pos]
                if first < 0x80:
                    size = first
                    start = pos + 1
                elif pos + 1 < end and 0 < (second := buf[pos + 1]) < 0x80:
                    size = (first & 0x7F) | second << 7
                    start = pos + 2
                else:
                    size, start = _decode_varint(buf, pos, end, offset)
                if start >= 0:
                    if not 0 < size <= self._max_record_size:
                        raise MalformedExportError(
                            f"The record at byte {offset + pos} is empty."
                            if not size
                            else f"The record at byte {offset + pos} claims {size} bytes; "
                            f"the limit is {self._max_record_size}."
                        )
                    stop = start + size
                    if stop <= end:
                        if buf[start] not in _RECORD_TAGS:
                            raise MalformedExportError(
                                f"The record at byte {offset + pos} is not a header, entry "
                                "or checkpoint."
                            )
                        try:
                            record = LedgerExportRecord.FromString(buf[start:stop])
                        except DecodeError:
                            raise MalformedExportError(
                                f"The record at byte {offset + pos} is not a ledger export record."
                            ) from None
                        self._pos = stop
                        return record
                    # Read what this record still lacks, and nothing more: the next read
                    # then starts a buffer of its own instead of being copied behind it.
                    want = stop - end
            if self._done or not self._fill(want):
                if pos < end:
                    raise MalformedExportError(
                        f"The export ends in the middle of the record at byte {offset + pos}."
                    )
                raise StopIteration
            want = self._chunk_size

    def _fill(self, want: int) -> bool:
        """Append up to `want` more bytes to the buffer; False at the stream's end."""
        chunk = self._read(want)
        if not chunk:
            self._done = True
            return False
        pos, end = self._pos, self._end
        self._buf = self._buf[pos:] + chunk if pos < end else chunk
        self._offset += pos
        self._pos = 0
        self._end = len(self._buf)
        return True

    def take_entries(self, limit: int) -> EntryRun | None:
        """Up to `limit` of the next records at once, while they are entry records of 131
        to 16,383 bytes starting with their index (every entry but entry 0 as
        `encode_record` writes them) and already read; None, having taken nothing, if the
        next record is not one, or one of them would not decode: iterating reads it, and
        says why."""
        if self._max_record_size < _LARGEST_RUN_RECORD:
            return None
        buf, pos, end = self._buf, self._pos, self._end
        heads = _entry_heads()  # made on first use: a CLI that never reads a file skips it
        parts: list[bytes] = []
        add = parts.append
        try:
            for _ in itertools.repeat(None, limit):
                start = pos
                pos = start + _HEAD + heads[buf[start : start + _KEY]]
                add(buf[start + 2 : pos])
        except KeyError:  # not an entry record of that form (or the buffer ends first)
            pass
        if pos > end:  # the last one is not all read yet: its bytes stop at `end`
            pos = end - len(parts.pop()) - 2
        if not parts:
            return None
        data = b"".join(parts)
        try:
            run = _EntryRunMessage.FromString(data)
        except DecodeError:
            return None
        self._pos = pos
        return EntryRun(data, run)


def iter_records(
    read: Callable[[int], bytes],
    *,
    max_record_size: int = MAX_RECORD_SIZE,
    chunk_size: int = READ_CHUNK,
) -> RecordReader:
    """Decode the records of an export stream; `read(n)` returns up to n bytes, b"" at its end.

    Whether the records come in the order the format requires is the consumer's check
    (`exchange.ledger.audit.verify_export` makes it).
    """
    return RecordReader(read, max_record_size=max_record_size, chunk_size=chunk_size)
