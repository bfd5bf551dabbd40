"""Client channels to peer nodes: mutual TLS, the peer's own certificate as the only root."""

from __future__ import annotations

import ctypes
import threading

import grpc

from exchange.errors import UnknownSenderError
from keys.identity import AgencyIdentity
from node.trust import TrustedDirectory

# Flow control for evidence streams: a fixed 4 MiB receive window per stream instead of
# gRPC's default window growth (BDP probing), which let a receiver that lags behind its
# sender buffer 50-300 MiB of a 1 GiB file (bench/attachments.py). 4 MiB keeps several
# 1 MiB chunks in flight, so throughput holds over long links.
STREAM_WINDOW_BYTES = 4 * 1024 * 1024
_M_ARENA_MAX = -8  # mallopt parameter number in glibc's malloc.h


def bound_buffer_memory() -> None:
    """Stop 1 MiB evidence buffers from spreading over many glibc heap arenas.

    glibc gives each thread that allocates under contention an arena of its own (up to 8
    per core), and 1 MiB chunks freed into them fragment and are never returned: a node's
    RSS grew with the file size (55-60 MiB at 1 GiB). Two arenas hold it to about 21 MiB
    at 1 GiB at full speed; a fixed mmap threshold did as well on memory but cost a page
    fault per chunk (half the throughput). Measured with bench/attachments.py; no-op off
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


class PeerChannels:
    """One reusable channel per peer, rebuilt when its endpoint or certificate changes."""

    def __init__(
        self, identity: AgencyIdentity, directory: TrustedDirectory, max_message_bytes: int
    ) -> None:
        self._identity = identity
        self._directory = directory
        self._max = max_message_bytes
        self._lock = threading.Lock()
        self._channels: dict[str, tuple[tuple[str, bytes], grpc.Channel]] = {}

    def channel(self, agency_id: str) -> grpc.Channel:
        card = self._directory.current().agency(agency_id)
        if card is None:
            raise UnknownSenderError(f"Agency {agency_id} is not a member of the federation.")
        key = (card.endpoint, card.tls_certificate_pem)
        with self._lock:
            cached = self._channels.get(agency_id)
            if cached is not None and cached[0] == key:
                return cached[1]
            if cached is not None:
                cached[1].close()
            creds = grpc.ssl_channel_credentials(
                root_certificates=card.tls_certificate_pem,
                private_key=self._identity.tls_private_key_pem(),
                certificate_chain=self._identity.tls_certificate_pem(),
            )
            host = card.endpoint.rpartition(":")[0].strip("[]")
            options = [*channel_options(self._max), ("grpc.ssl_target_name_override", host)]
            chan = grpc.secure_channel(card.endpoint, creds, options=options)
            self._channels[agency_id] = (key, chan)
            return chan

    def close(self) -> None:
        with self._lock:
            for _, chan in self._channels.values():
                chan.close()
            self._channels.clear()
