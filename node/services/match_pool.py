"""The holder's encoding work (tokens, OPRF Evaluate, truncation, padding, packing) spread
over worker processes, so that a large load or a key rotation uses every core.

The workers are started lazily, from a "forkserver" (or "spawn") context: a node runs gRPC
threads, and a plain fork of such a process may hang. They import only this module and
exchange/matching; the OPRF keys reach them in memory, with each chunk of work (never
through a file or the environment), and they hold nothing between chunks. With one
process (`matching.encode_processes = 1`) the work runs in the caller, with no pool.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

from exchange.matching import oprf
from exchange.matching.records import VictimRecord
from exchange.matching.tokens import MAX_TOKENS, record_tokens

VALUE_BYTES = 8
T = TypeVar("T")


def truncate(output: bytes) -> int:
    """The published form of an OPRF output: its first 8 bytes, as a signed 64-bit int."""
    return int.from_bytes(output[:VALUE_BYTES], "big", signed=True)


def pack(values: Iterable[int]) -> bytes:
    return b"".join(v.to_bytes(VALUE_BYTES, "big", signed=True) for v in sorted(set(values)))


def pad_values(values: Iterable[int]) -> list[int]:
    """A record's published values plus random ones, MAX_TOKENS distinct in all: peers
    cannot tell from the index how much a record says (a birth date or not, one name or
    two). Random 8-byte values look exactly like truncated OPRF outputs."""
    out = set(values)
    while len(out) < MAX_TOKENS:
        out.add(int.from_bytes(os.urandom(VALUE_BYTES), "big", signed=True))
    return sorted(out)


def encode(keys: Sequence[bytes], record: VictimRecord) -> list[bytes]:
    """The record's published values under each key: packed, padded, one bytes per key."""
    inputs = [t.value for t in record_tokens(record)]
    return [pack(pad_values(truncate(oprf.evaluate(k, x)) for x in inputs)) for k in keys]


def encode_chunk(keys: Sequence[bytes], records: Sequence[VictimRecord]) -> list[list[bytes]]:
    """`encode` for each record of a chunk (the unit of work a worker process gets)."""
    return [encode(keys, r) for r in records]


def _ready() -> None:
    time.sleep(0.05)  # long enough for each of a new pool's workers to take one


def _context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if isinstance(ctx, multiprocessing.context.ForkServerContext):
        ctx.set_forkserver_preload([__name__])
    return ctx


class EncodePool:
    """Worker processes for `encode_chunk`, created on first use, shut down by `close`.

    `processes` 0 means one per CPU; 1 runs the work in the calling thread. Until the
    workers are started, the first `inline_chunks` chunks of a call run in the calling
    thread: a small load (most of them, and every test's) costs no process start.
    """

    def __init__(self, processes: int = 0, inline_chunks: int = 4) -> None:
        self.processes = processes or os.cpu_count() or 1
        self.inline_chunks = inline_chunks
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(self.processes, mp_context=_context())
            return self._executor

    def start(self) -> None:
        """Start every worker process now (otherwise they start with the first chunk, a
        second or two on a busy machine); nothing for a pool of one."""
        if self.processes > 1:
            pool = self._pool()
            for future in [pool.submit(_ready) for _ in range(self.processes)]:
                future.result()

    def pids(self) -> list[int]:
        """The worker processes' ids (for measuring them)."""
        executor = self._executor
        return list(executor._processes or {}) if executor is not None else []

    def map(
        self, keys: Sequence[bytes], chunks: Iterable[tuple[T, Sequence[VictimRecord]]]
    ) -> Iterator[tuple[T, list[list[bytes]]]]:
        """Each chunk's tag and its records' values, in the order of `chunks`, with at most
        two chunks per process in flight: what is held stays bounded however long the
        input (the caller writes each result before the next is made)."""
        keys = list(keys)
        if self.processes == 1 or not keys:
            for tag, records in chunks:
                yield tag, encode_chunk(keys, records)
            return
        source = iter(chunks)
        if self._executor is None:
            for tag, records in itertools.islice(source, self.inline_chunks):
                yield tag, encode_chunk(keys, records)
        pool: ProcessPoolExecutor | None = None
        pending: deque[tuple[T, Future[list[list[bytes]]]]] = deque()
        try:
            for tag, records in source:
                pool = pool or self._pool()
                pending.append((tag, pool.submit(encode_chunk, keys, list(records))))
                if len(pending) >= 2 * self.processes:
                    done_tag, future = pending.popleft()
                    yield done_tag, future.result()
            while pending:
                done_tag, future = pending.popleft()
                yield done_tag, future.result()
        finally:
            for _, future in pending:
                future.cancel()

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)


__all__ = ["VALUE_BYTES", "EncodePool", "encode", "encode_chunk", "pack", "pad_values", "truncate"]
