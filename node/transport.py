"""gRPC settings shared by the node, its peers' channels and the officer SDK (grpc only)."""

from __future__ import annotations

import ctypes

# Flow control for evidence streams: a fixed 4 MiB receive window per stream instead of
# gRPC's default window growth (BDP probing), which let a receiver that lags behind its
# sender buffer 50-300 MiB of a 1 GiB file (bench/bench_attachments.py). 4 MiB keeps several
# 1 MiB chunks in flight, so throughput holds over long links.
STREAM_WINDOW_BYTES = 4 * 1024 * 1024
_M_ARENA_MAX = -8  # mallopt parameter number in glibc's malloc.h


def bound_buffer_memory() -> None:
    """Stop 1 MiB evidence buffers from spreading over many glibc heap arenas.

    glibc gives each thread that allocates under contention an arena of its own (up to 8
    per core), and 1 MiB chunks freed into them fragment and are never returned: a node's
    RSS grew with the file size (55-60 MiB at 1 GiB). Two arenas hold it to about 21 MiB
    at 1 GiB at full speed; a fixed mmap threshold did as well on memory but cost a page
    fault per chunk (half the throughput). Measured with bench/bench_attachments.py; no-op off
    glibc. Call it before threads start.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        pass


def flow_control_options() -> list[tuple[str, int | str]]:
    return [
        ("grpc.http2.bdp_probe", 0),
        ("grpc.http2.lookahead_bytes", STREAM_WINDOW_BYTES),
    ]


def channel_options(max_message_bytes: int) -> list[tuple[str, int | str]]:
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        *flow_control_options(),
    ]
