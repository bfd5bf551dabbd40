"""Offline audit of a ledger export: recompute every leaf and root, locate any tampering.

`verify_export` reads the records of one export (see `export`) once, with no I/O:

1. The header's directory is verified as of its issue time (an old export's directory
   has expired since, which is no fault), against the auditor's trusted directory when
   one is given. It names the log's keys and the witnesses' keys.
2. Each entry's commitment is recomputed from its salt and content (a redacted entry,
   without either, keeps its stated commitment) and its leaf hash compared with
   `tree_leaf`, the node's stored tree: an independent copy of every leaf.
3. Each checkpoint must be signed by the log, its root must be the root of the entries
   at its size, and its cosignatures must verify with other members' keys.

Where the entries and the stored tree part, the stored tree, once a signed checkpoint
vouches for it, tells what happened at the first bad index: an entry missing, inserted,
reordered or modified. Everything after the first bad index is suspect and not listed.
Leaf hashes are kept in flat buffers (32 MB per million entries) and the tree is built
from them once, so any checkpoint's root costs O(log n) and each hash is computed once.
From a file, runs of entries are read column by column (`_Scan.add_run`); each entry is
read on its own (`_Scan.add`) wherever a run holds anything out of the ordinary, so both
ways report the same.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from exchange._proto.mlax.v1.ledger_pb2 import (
    LedgerEntry,
    LedgerExportHeader,
    LedgerExportRecord,
)
from exchange.directory import Directory, SignedDirectory, verify_directory
from exchange.encoding import CTX_LEDGER_ENTRY
from exchange.errors import MlaxError
from exchange.ledger.audit_errors import MalformedExportError
from exchange.ledger.checkpoint import Checkpoint, CosignatureVerifier, open_checkpoint
from exchange.ledger.export import EXPORT_FORMAT, EntryRun, RecordReader
from exchange.ledger.merkle import HASH_SIZE, CompactRange
from exchange.ledger.names import log_origin, log_verifiers, witness_verifiers
from exchange.ledger.note import Ed25519Verifier, parse_note, parse_signature_line

# Problem kinds: what an auditor is told is wrong.
MISSING = "missing"
INSERTED = "inserted"
REORDERED = "reordered"
MODIFIED = "modified"
TRUNCATED = "truncated"
UNSIGNED = "unsigned"
CHECKPOINT_SIGNATURE = "checkpoint_signature"
CHECKPOINT_ORDER = "checkpoint_order"
CHECKPOINT_ROOT = "checkpoint_root"
COSIGNATURE = "cosignature"
DIRECTORY = "directory"
HEADER = "header"

# How far past the first bad index to look for the entry it was swapped with.
REORDER_WINDOW = 1000
PROGRESS_EVERY = 1 << 14
# Entry records taken at once from a file (`RecordReader.take_entries`).
RUN = 4096
# Warnings list at most this many checkpoint sizes, then a count.
LISTED_SIZES = 10

_LE64 = struct.Struct("<Q").pack
# PAE("mlax/v1/ledger/entry", salt, entry) up to the salt's length, as in `ledger_entry`,
# and up to the salt itself for the 32-byte salts every node writes.
_COMMITMENT_PREFIX = _LE64(3) + _LE64(len(CTX_LEDGER_ENTRY)) + CTX_LEDGER_ENTRY
_SALT_SIZE = 32
_COMMITMENT_PREFIX_SALTED = _COMMITMENT_PREFIX + _LE64(_SALT_SIZE)
_LEAF = b"\x00"
_NODE = b"\x01"
# Stands in for a stored leaf that is absent or not a hash, keeping positions aligned.
_NO_LEAF = bytes(HASH_SIZE)


@dataclass(frozen=True)
class Problem:
    """One finding that makes the audit fail; `index` is the entry it concerns, if one."""

    index: int | None
    kind: str
    detail: str
    checkpoint_size: int | None = None


@dataclass(frozen=True)
class AuditReport:
    """What an auditor learns from one export; `ok` only when there is no problem."""

    origin: str
    entries: int
    redacted: int
    checkpoints: int
    latest_checkpoint_size: int
    cosigned_by: dict[str, int]
    problems: list[Problem]
    warnings: list[str]
    directory_admins: list[str]

    @property
    def ok(self) -> bool:
        """True when every entry, checkpoint and cosignature verified."""
        return not self.problems


def verify_export(
    records: Iterable[LedgerExportRecord],
    *,
    trusted_directory: Directory | None,
    progress: Callable[[int, int], None] | None = None,
) -> AuditReport:
    """Verify one ledger export; raise MalformedExportError if it is not an export at all.

    `progress(done, total)` is called every few thousand entries.
    """
    it = iter(records)
    first = next(it, None)
    if first is None or first.WhichOneof("record") != "header":
        raise MalformedExportError("The ledger export does not start with its header.")
    header = first.header
    problems: list[Problem] = []
    warnings: list[str] = []
    log = _open_header(header, trusted_directory, problems, warnings)

    leaves, pending = _scan_entries(it, header.entries, progress)
    if progress is not None:
        progress(leaves.count, header.entries)
    rest = it if pending is None else itertools.chain((pending,), it)
    signed = _check_checkpoints(rest, log, leaves, problems, warnings)

    entry_problem = _entry_problem(leaves, signed, header.entries)
    explained_from = entry_problem.index if entry_problem is not None else None
    root_problems = _root_problems(signed.checks, explained_from)
    _tree_warnings(signed, leaves, warnings)
    if entry_problem is not None:
        problems.insert(signed.problems_before, entry_problem)
    elif header.entries < leaves.count:
        problems.append(
            Problem(
                None,
                HEADER,
                f"the header announces {header.entries} entries but the export holds "
                f"{leaves.count}",
            )
        )
    if leaves.count and not signed.records:
        problems.append(
            Problem(None, UNSIGNED, f"no checkpoint signs any of the {leaves.count} entries")
        )
    problems.extend(root_problems)
    return AuditReport(
        origin=header.origin,
        entries=leaves.count,
        redacted=leaves.redacted,
        checkpoints=signed.records,
        latest_checkpoint_size=signed.latest,
        cosigned_by=dict(sorted(signed.cosigned_by.items())),
        problems=problems,
        warnings=warnings,
        directory_admins=log.admins,
    )


# --- header and directory ------------------------------------------------------------------


@dataclass(frozen=True)
class _Log:
    """Whose log the export is and the keys that vouch for it (None: nobody can tell)."""

    origin: str
    verifiers: list[Ed25519Verifier] | None
    witnesses: dict[tuple[str, bytes], tuple[str, CosignatureVerifier]]
    admins: list[str]


def _clause(message: str) -> str:
    """An error's sentence as a clause: lower-case start, no final full stop."""
    text = message.rstrip(".")
    return text[:1].lower() + text[1:]


def _open_header(
    header: LedgerExportHeader,
    trusted: Directory | None,
    problems: list[Problem],
    warnings: list[str],
) -> _Log:
    if header.format != EXPORT_FORMAT:
        raise MalformedExportError(
            f"The export is in format {header.format!r}; this auditor reads {EXPORT_FORMAT!r}."
        )
    directory = _export_directory(header.signed_directory, trusted, problems, warnings)
    if directory is None:
        return _Log(header.origin, None, {}, [])
    admins = [admin.key_id for admin in directory.admins]
    origin = log_origin(directory.federation_id, header.agency)
    if header.origin != origin:
        problems.append(
            Problem(
                None,
                HEADER,
                f"the header names the log {header.origin!r}, but the ledger of "
                f"{header.agency!r} is {origin!r}",
            )
        )
    try:
        verifiers: list[Ed25519Verifier] | None = log_verifiers(directory, header.agency)
        witnesses = {
            (verifier.name, verifier.key_id): (agency, verifier)
            for agency, keys in witness_verifiers(directory, header.agency).items()
            for verifier in keys
        }
    except MlaxError as err:
        # A federation id that cannot be part of a note key name, say.
        problems.append(
            Problem(None, DIRECTORY, f"the export's directory is unusable: {_clause(err.message)}")
        )
        return _Log(header.origin, None, {}, admins)
    if not verifiers:
        problems.append(
            Problem(
                None,
                DIRECTORY,
                f"the export's directory lists no signing key of {header.agency!r}, so nothing "
                "can vouch for its checkpoints",
            )
        )
        verifiers = None
    return _Log(origin, verifiers, witnesses, admins)


def _export_directory(
    data: bytes, trusted: Directory | None, problems: list[Problem], warnings: list[str]
) -> Directory | None:
    """The export's directory, verified as of its issue time; None if it cannot be read."""
    try:
        directory = Directory.from_bytes(SignedDirectory.from_bytes(data).directory)
    except MlaxError as err:
        problems.append(
            Problem(
                None, DIRECTORY, f"the export's directory cannot be read: {_clause(err.message)}"
            )
        )
        return None
    try:
        # Judged at its issue time: an export outlives its directory, and that is no fault.
        if trusted is None or directory == trusted:
            verify_directory(data, None, directory.issued_at)
        else:
            verify_directory(data, trusted, directory.issued_at)
    except MlaxError as err:
        problems.append(
            Problem(
                None, DIRECTORY, f"the export's directory does not verify: {_clause(err.message)}"
            )
        )
    if trusted is None:
        warnings.append(
            "the export's directory was checked against itself only: compare its "
            "administrator key ids with ones you trust"
        )
    return directory


# --- entries -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Leaves:
    """Leaf hashes by position: from the entries, and from the node's stored tree."""

    count: int
    redacted: int
    entry_leaves: bytes
    # None while identical to `entry_leaves` (the stored tree agrees everywhere).
    tree_leaves: bytes | None
    # (position, index it holds, index at the next position if also out of place) of the
    # first entry whose index is not its position.
    gap: tuple[int, int, int | None] | None
    bad_commitment: int | None


class _Scan:
    """The leaf hashes of the entries read so far, and the first oddities met."""

    __slots__ = ("bad_commitment", "entry_buf", "gap", "gap_next", "pos", "redacted", "tree_buf")

    def __init__(self) -> None:
        self.entry_buf = bytearray()
        self.tree_buf: bytearray | None = None
        self.pos = 0
        self.redacted = 0
        self.gap: tuple[int, int] | None = None
        self.gap_next: int | None = None
        self.bad_commitment: int | None = None

    def add(self, entries: Iterable[LedgerEntry]) -> None:
        """Hash each entry and compare it with the stored leaf beside it: the reference path,
        for every entry the quicker `add_run` does not take."""
        # Two SHA-256 per entry, locals only.
        sha = hashlib.sha256
        pack = _LE64
        prefix = _COMMITMENT_PREFIX
        prefix_salted = _COMMITMENT_PREFIX_SALTED
        salt_size = _SALT_SIZE
        leaf_prefix = _LEAF
        no_leaf = _NO_LEAF
        entry_buf = self.entry_buf
        tree_buf = self.tree_buf
        pos = self.pos
        for entry in entries:
            index = entry.index
            if index != pos:
                if self.gap is None:
                    self.gap = (pos, index)
                elif self.gap_next is None and pos == self.gap[0] + 1:
                    self.gap_next = index
            salt = entry.salt
            content = entry.entry
            stated = entry.commitment
            if len(salt) == salt_size:
                digest = sha(prefix_salted + salt + pack(len(content)) + content).digest()
                if digest != stated and self.bad_commitment is None:
                    self.bad_commitment = pos
            elif salt or content:
                digest = sha(
                    prefix + pack(len(salt)) + salt + pack(len(content)) + content
                ).digest()
                if digest != stated and self.bad_commitment is None:
                    self.bad_commitment = pos
            else:
                digest = stated
                self.redacted += 1
            leaf = sha(leaf_prefix + digest).digest()
            stored = entry.tree_leaf
            if leaf != stored:
                if tree_buf is None:
                    tree_buf = self.tree_buf = bytearray(entry_buf)
                if len(stored) != HASH_SIZE:
                    stored = no_leaf
            entry_buf += leaf
            if tree_buf is not None:
                tree_buf += stored
            pos += 1
        self.pos = pos

    def add_run(self, run: EntryRun) -> bool:
        """Take a run of entry records at once if nothing in it needs `add`'s attention:
        every record whole with all five fields (so the columns line up with the records),
        indexes in place, commitments and stored leaves matching. False, having taken
        nothing, otherwise: `add` then goes through them.

        The same hashes as `add`, from one protobuf parse of the run read column by
        column, instead of one message per entry: that parsing, and the Python objects
        for each field, cost an audit more than its hashing."""
        pos = self.pos
        count = len(run.entries)
        # Entry 0 has no index field on the wire; where the stored tree parted, `add`.
        if not pos or self.tree_buf is not None or not run.whole():
            return False
        columns = run.columns()
        contents = columns.entry
        if (
            len(columns.index) != count
            or len(columns.commitment) != count
            or len(columns.salt) != count
            or len(contents) != count
            or len(columns.tree_leaf) != count
            or columns.index != list(range(pos, pos + count))
        ):
            return False
        # The 32-byte fields without a Python object each: the columns' protobuf encoding
        # holds each field's items side by side, `tag, 0x20, 32 bytes` when all are hashes
        # (required below), after the indexes' packed list; the stored leaves come last.
        encoded = columns.SerializeToString(deterministic=True)
        if encoded[:1] != _INDEX_LIST_TAG:
            return False
        width = _FIELD_32 * count
        first = _after_packed_list(encoded)
        commitments = encoded[first : first + width]
        salts = encoded[first + width : first + 2 * width]
        stored = encoded[-width:]
        if salts[0::_FIELD_32] != _SALT_TAG * count or salts[1::_FIELD_32] != _LEN_32 * count:
            return False
        sha = hashlib.sha256
        lengths = _le64_lengths()
        prefix = _COMMITMENT_PREFIX_SALTED
        leaf_prefix = _LEAF
        digests = [
            sha(prefix + salt + lengths[len(content)] + content).digest()
            for salt, content in zip(_salts(count).unpack(salts), contents, strict=True)
        ]
        if commitments != _COMMITMENT_TAG + _COMMITMENT_TAG.join(digests):
            return False
        leaves = [sha(leaf_prefix + digest).digest() for digest in digests]
        if stored != _TREE_LEAF_TAG + _TREE_LEAF_TAG.join(leaves):
            return False
        self.entry_buf += b"".join(leaves)
        self.pos = pos + count
        return True

    def leaves(self) -> _Leaves:
        return _Leaves(
            count=self.pos,
            redacted=self.redacted,
            entry_leaves=bytes(self.entry_buf),
            tree_leaves=None if self.tree_buf is None else bytes(self.tree_buf),
            gap=None if self.gap is None else (*self.gap, self.gap_next),
            bad_commitment=self.bad_commitment,
        )


# A 32-byte bytes field of `LedgerEntry` as protobuf encodes it: tag, length, hash.
_FIELD_32 = 2 + HASH_SIZE
_LEN_32 = bytes((HASH_SIZE,))
_INDEX_LIST_TAG = b"\x0a"  # field 1, packed
_COMMITMENT_TAG = b"\x12" + _LEN_32  # field 2
_SALT_TAG = b"\x1a"  # field 3
_TREE_LEAF_TAG = b"\x2a" + _LEN_32  # field 5


@functools.cache
def _le64_lengths() -> list[bytes]:
    """Every 8-byte little-endian length an entry of a run can have (its record is under
    16 KiB), made on first use: a list index is quicker than a call to pack, and a million
    entries make it count."""
    return [_LE64(n) for n in range(1 << 14)]


@functools.lru_cache(maxsize=8)
def _salts(count: int) -> struct.Struct:
    """Splits `count` encoded 32-byte fields into their values."""
    return struct.Struct(f"2x{HASH_SIZE}s" * count)


def _after_packed_list(encoded: bytes) -> int:
    """Where the field after a leading packed field 1 (tag, varint length, items) starts."""
    length = shift = 0
    at = 1
    while True:
        byte = encoded[at]
        at += 1
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            return at + length
        shift += 7


def _leading_entries(
    it: Iterator[LedgerExportRecord], limit: int
) -> tuple[list[LedgerEntry], LedgerExportRecord | None, bool]:
    """Up to `limit` entries from the next records: (entries, the first record that is not
    an entry if met, whether the records ran out)."""
    entries: list[LedgerEntry] = []
    add = entries.append
    for rec in itertools.islice(it, limit):
        if rec.WhichOneof("record") != "entry":
            return entries, rec, False
        add(rec.entry)
    return entries, None, len(entries) < limit


def _scan_entries(
    it: Iterator[LedgerExportRecord],
    total: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[_Leaves, LedgerExportRecord | None]:
    """Hash every entry record; returns the leaves and the first record after the entries."""
    scan = _Scan()
    # A file read by `iter_records` hands over runs of entry records; any other source of
    # records (a node's stream, a list) is read one record at a time.
    reader = it if isinstance(it, RecordReader) else None
    one_by_one = 1 if reader is not None else min(RUN, PROGRESS_EVERY)
    reported = 0
    while True:
        run = reader.take_entries(RUN) if reader is not None else None
        if run is not None:
            if not scan.add_run(run):
                scan.add(run.entries)
        else:
            entries, pending, ended = _leading_entries(it, one_by_one)
            scan.add(entries)
            if pending is not None or ended:
                return scan.leaves(), pending
        if progress is not None and scan.pos - reported >= PROGRESS_EVERY:
            reported = scan.pos
            progress(scan.pos, total)


class _Tree:
    """Every complete subtree of a flat buffer of leaf hashes, built once on first use."""

    def __init__(self, leaves: bytes) -> None:
        self._levels = [leaves]
        self._built = False

    def _build(self) -> None:
        sha = hashlib.sha256
        node = _NODE
        level = self._levels[0]
        # Siblings are adjacent in the buffer, so each parent hashes one 64-byte slice.
        while len(level) >= 2 * HASH_SIZE:
            level = b"".join(
                [sha(node + level[i : i + 64]).digest() for i in range(0, len(level) - 63, 64)]
            )
            self._levels.append(level)
        self._built = True

    def _node(self, level: int, index: int) -> bytes:
        return self._levels[level][index * HASH_SIZE : (index + 1) * HASH_SIZE]

    def root(self, size: int) -> bytes:
        """The root of the first `size` leaves (at most as many as the buffer holds)."""
        if not self._built:
            self._build()
        return CompactRange.from_nodes(size, self._node).root()


# --- checkpoints ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _RootCheck:
    """A signed checkpoint within the export, and which leaf sequence its root matches."""

    size: int
    entries_match: bool
    tree_match: bool


@dataclass
class _Signed:
    """What the checkpoint records established."""

    records: int = 0
    latest: int = 0
    # Signed sizes the export has too few entries for.
    beyond: list[int] = field(default_factory=list)
    checks: list[_RootCheck] = field(default_factory=list)
    cosigned_by: Counter[str] = field(default_factory=Counter)
    # Where in `problems` the checkpoint findings start: entry findings go before them.
    problems_before: int = 0


def _claimed_size(note: bytes) -> int | None:
    """The size a note says, signed or not: only to name a checkpoint that fails."""
    try:
        return Checkpoint.parse(parse_note(note).text).size
    except MlaxError:
        return None


def _check_checkpoints(
    rest: Iterable[LedgerExportRecord],
    log: _Log,
    leaves: _Leaves,
    problems: list[Problem],
    warnings: list[str],
) -> _Signed:
    signed = _Signed(problems_before=len(problems))
    entry_tree = _Tree(leaves.entry_leaves)
    stored_tree = entry_tree if leaves.tree_leaves is None else _Tree(leaves.tree_leaves)
    uncosigned: list[int] = []
    strangers: Counter[str] = Counter()
    last: int | None = None
    for rec in rest:
        kind = rec.WhichOneof("record")
        if kind != "checkpoint":
            what = {"entry": "an entry", "header": "a second header"}.get(kind or "", "an empty")
            raise MalformedExportError(
                f"The export has {what} record where only checkpoints may follow: the header "
                "comes first, then the entries, then the checkpoints."
            )
        signed.records += 1
        note = rec.checkpoint.note
        try:
            if log.verifiers is None:
                # The directory problem is reported; still locate tampering against the note.
                checkpoint = Checkpoint.parse(parse_note(note).text)
            else:
                checkpoint = open_checkpoint(note, log.origin, log.verifiers)
        except MlaxError as err:
            size = _claimed_size(note)
            which = "a checkpoint" if size is None else f"checkpoint {size}"
            problems.append(
                Problem(
                    None,
                    CHECKPOINT_SIGNATURE,
                    f"{which} is not validly signed by the log: {_clause(err.message)}",
                    size,
                )
            )
            continue
        size = checkpoint.size
        if last is not None and size <= last:
            problems.append(
                Problem(
                    None,
                    CHECKPOINT_ORDER,
                    f"checkpoint {size} comes after checkpoint {last}: sizes must increase",
                    size,
                )
            )
        last = size
        signed.latest = max(signed.latest, size)
        if size > leaves.count:
            signed.beyond.append(size)
        else:
            root = checkpoint.root_hash
            entries_match = entry_tree.root(size) == root
            tree_match = (
                entries_match if stored_tree is entry_tree else stored_tree.root(size) == root
            )
            signed.checks.append(_RootCheck(size, entries_match, tree_match))
        cosigners = _check_cosignatures(
            checkpoint, rec.checkpoint.cosignatures, log, problems, strangers
        )
        signed.cosigned_by.update(cosigners)
        if not cosigners:
            uncosigned.append(size)
    signed.checks.sort(key=lambda check: check.size)
    # Witnesses cosign after the fact: the latest checkpoint may not be cosigned yet.
    uncosigned = [size for size in uncosigned if size != signed.latest]
    if uncosigned:
        verb = "has" if len(uncosigned) == 1 else "have"
        warnings.append(f"uncosigned: {_sizes(uncosigned)} {verb} no valid cosignature")
    for name, count in sorted(strangers.items()):
        warnings.append(
            f"{count} cosignature(s) by {name}, a key the export's directory does not list "
            "for another agency, were not counted"
        )
    return signed


def _check_cosignatures(
    checkpoint: Checkpoint,
    lines: Sequence[str],
    log: _Log,
    problems: list[Problem],
    strangers: Counter[str],
) -> set[str]:
    """The agencies whose cosignature on `checkpoint` verifies; failures become problems."""
    body = checkpoint.format().encode()
    size = checkpoint.size
    cosigners: set[str] = set()
    for line in lines:
        try:
            signature = parse_signature_line(line)
        except MlaxError as err:
            problems.append(
                Problem(
                    None,
                    COSIGNATURE,
                    f"a cosignature of checkpoint {size} does not parse: {_clause(err.message)}",
                    size,
                )
            )
            continue
        known = log.witnesses.get((signature.name, signature.key_id))
        if known is None:
            strangers[f"{signature.name} ({signature.key_id.hex()})"] += 1
            continue
        agency, verifier = known
        if verifier.verify(body, signature.signature):
            cosigners.add(agency)
        else:
            problems.append(
                Problem(
                    None,
                    COSIGNATURE,
                    f"the cosignature of {agency} on checkpoint {size} does not verify",
                    size,
                )
            )
    return cosigners


def _sizes(sizes: Sequence[int]) -> str:
    shown = ", ".join(str(size) for size in sizes[:LISTED_SIZES])
    more = len(sizes) - LISTED_SIZES
    noun = "checkpoint" if len(sizes) == 1 else "checkpoints"
    return f"{noun} {shown}" + (f" and {more} more" if more > 0 else "")


# --- locating the first bad index ----------------------------------------------------------


def _leaf(buf: bytes, index: int) -> bytes:
    return buf[index * HASH_SIZE : (index + 1) * HASH_SIZE]


def _first_difference(a: bytes, b: bytes, start: int) -> int | None:
    """The first leaf position from `start` where two equal-length buffers differ."""
    count = len(a) // HASH_SIZE
    block = 4096
    for lo in range(start, count, block):
        hi = min(count, lo + block)
        if a[lo * HASH_SIZE : hi * HASH_SIZE] != b[lo * HASH_SIZE : hi * HASH_SIZE]:
            for index in range(lo, hi):
                if _leaf(a, index) != _leaf(b, index):
                    return index
    return None


def _classify(entries: bytes, tree: bytes, at: int) -> Problem:
    """What happened at `at`, the first position where the entries part from the tree."""
    here, reference = _leaf(entries, at), _leaf(tree, at)
    following, reference_next = _leaf(entries, at + 1), _leaf(tree, at + 1)
    if reference == _NO_LEAF:
        return Problem(
            at, INSERTED, f"entry {at} was inserted: the node's tree holds no leaf at its index"
        )
    if here == reference_next and following == reference:
        return Problem(at, REORDERED, f"entries {at} and {at + 1} were swapped")
    if here == reference_next:
        return Problem(
            at, MISSING, f"entry {at} is missing: the entries after it were moved down by one"
        )
    if following == reference:
        return Problem(
            at,
            INSERTED,
            f"an entry was inserted at index {at}: the entries after it were moved up by one",
        )
    count = min(len(entries), len(tree)) // HASH_SIZE
    for other in range(at + 2, min(count, at + 1 + REORDER_WINDOW)):
        if _leaf(tree, other) == here and _leaf(entries, other) == reference:
            return Problem(at, REORDERED, f"entries {at} and {other} were swapped")
    return Problem(
        at,
        MODIFIED,
        f"entry {at} was modified: its commitment is not the leaf the node's tree holds",
    )


def _tree_problem(leaves: _Leaves, checks: Sequence[_RootCheck]) -> Problem | None:
    """The first divergence of entries and stored tree where the stored tree is trustworthy.

    The stored tree is the reference up to a signed checkpoint it matches, and beyond the
    latest checkpoint (nothing better vouches for that tail). Where the first checkpoint
    covering a divergence matches neither, `_root_problems` reports that checkpoint.
    """
    tree = leaves.tree_leaves
    if tree is None:
        return None
    entries = leaves.entry_leaves
    start = 0
    while (at := _first_difference(entries, tree, start)) is not None:
        cover = next((check for check in checks if check.size > at), None)
        if cover is None or cover.tree_match:
            return _classify(entries, tree, at)
        start = cover.size
    return None


def _gap_problem(position: int, index: int, next_index: int | None, signed: int) -> Problem:
    if position < signed <= index:
        # The signed tree's tail is gone and what follows was appended after it (a node
        # ledgers each export, so the export of a cut ledger holds one such entry).
        return Problem(
            position,
            TRUNCATED,
            f"the export is cut at entry {position}: it jumps from index {position - 1} to "
            f"{index}, past the {signed} entries the log signed",
        )
    if index > position and next_index != position:
        where = f"goes from index {position - 1} to {index}" if position else f"starts at {index}"
        return Problem(position, MISSING, f"entry {position} is missing: the export {where}")
    if position and index == position - 1:
        return Problem(
            position,
            INSERTED,
            f"an entry was inserted at index {position}: it repeats index {index}",
        )
    return Problem(
        position, REORDERED, f"entry {index} stands at position {position}, out of order"
    )


def _entry_problem(leaves: _Leaves, signed: _Signed, announced: int) -> Problem | None:
    """The first bad index and what is wrong there; later findings would only follow from it."""
    found: list[Problem] = []
    if leaves.gap is not None:
        found.append(_gap_problem(*leaves.gap, signed.latest))
    if leaves.bad_commitment is not None:
        at = leaves.bad_commitment
        found.append(
            Problem(
                at, MODIFIED, f"entry {at} was modified: its content does not match its commitment"
            )
        )
    tree_problem = _tree_problem(leaves, signed.checks)
    if tree_problem is not None:
        found.append(tree_problem)
    covered = max(signed.beyond, default=0)
    if covered > leaves.count:
        found.append(
            Problem(
                leaves.count,
                TRUNCATED,
                f"the export stops at entry {leaves.count} but the log signed a tree of "
                f"{covered} entries",
            )
        )
    elif announced > leaves.count:
        found.append(
            Problem(
                leaves.count,
                TRUNCATED,
                f"the export stops at entry {leaves.count} but its header announces "
                f"{announced} entries",
            )
        )
    # min keeps the first of equal indexes: a gap, then a commitment, then the tree.
    return min(found, key=lambda problem: problem.index or 0, default=None)


def _root_problems(checks: Sequence[_RootCheck], explained_from: int | None) -> list[Problem]:
    """Checkpoints whose root the entries do not reach, unless the first bad index explains it.

    A run of consecutive failing checkpoints is one finding, at its first checkpoint.
    """
    runs: list[tuple[int, list[_RootCheck]]] = []  # (size before the run, its checkpoints)
    current: list[_RootCheck] | None = None
    previous = 0
    for check in checks:
        explained = explained_from is not None and check.size > explained_from
        if check.entries_match or explained:
            current = None
        else:
            if current is None:
                current = []
                runs.append((previous, current))
            current.append(check)
        previous = check.size
    return [_root_problem(start, run) for start, run in runs]


def _root_problem(start: int, run: Sequence[_RootCheck]) -> Problem:
    check = run[0]
    reason = (
        "the entries do not match it though the node's tree does"
        if check.tree_match
        else "its root matches neither the entries nor the node's tree"
    )
    later = f"; the {len(run) - 1} checkpoint(s) after it fail too" if len(run) > 1 else ""
    return Problem(
        None,
        CHECKPOINT_ROOT,
        f"checkpoint {check.size} is signed by the log but {reason}: entries {start} to "
        f"{check.size - 1} or the checkpoint were altered{later}",
        check.size,
    )


def _tree_warnings(signed: _Signed, leaves: _Leaves, warnings: list[str]) -> None:
    damaged = [c.size for c in signed.checks if c.entries_match and not c.tree_match]
    if damaged:
        warnings.append(
            f"the node's stored tree does not match {_sizes(damaged)} though the entries do: "
            "its tree is damaged and its inclusion proofs will fail"
        )
    if signed.latest < leaves.count:
        warnings.append(
            f"entries {signed.latest} to {leaves.count - 1} are not covered by a signed "
            "checkpoint yet"
        )
