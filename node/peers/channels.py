"""Client channels to peer nodes: mutual TLS, the peer's own certificates as the only roots.

A peer is trusted by exactly the certificates its directory card lists: the current one,
and during a TLS renewal the next one too (`AgencyCard.tls_certificates`). Which of our
own certificates we present, as client here and as server (node/server.py), is decided by
`OwnCertificate`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
import structlog

from exchange.agency import AgencyCard
from exchange.errors import UnknownSenderError
from keys.identity import AgencyIdentity
from node.transport import channel_options

if TYPE_CHECKING:
    from exchange.directory import Directory
    from node.services.trust import TrustedDirectory

log = structlog.get_logger("mlax.node")

# A channel replaced by a new one is closed this long after, so calls on it can finish
# (closing a channel cancels its calls).
RETIRED_CHANNEL_SECONDS = 120.0
# How many directory-sync periods the next certificate must have been listed before this
# node presents it: by then every peer that reaches it has fetched that directory from it.
SWITCH_SYNC_PERIODS = 3


def presents_next(
    published: AgencyCard | None, next_pin: bytes, listed_for: float | None, delay: float
) -> bool:
    """Whether to present the next TLS certificate (pin `next_pin`) rather than the current.

    Yes once the directory we trust lists it as our current pin (the old one is retired),
    or has listed it as an accepted pin for at least `delay` seconds (`listed_for`, None
    while it is not listed). Never while the directory does not list it: peers would refuse.
    """
    if published is None or not next_pin or next_pin not in published.tls_pins:
        return False
    if published.tls_spki_sha256 == next_pin:
        return True
    return listed_for is not None and listed_for >= delay


class OwnCertificate:
    """The TLS key and certificate this node presents, as client and as server."""

    def __init__(
        self,
        identity: AgencyIdentity,
        directory: Callable[[], Directory],
        delay: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._agency = identity.agency_id
        self._directory = directory
        self._delay = delay
        self._clock = clock
        self._current = (identity.tls_private_key_pem(), identity.tls_certificate_pem())
        self._next = identity.next_tls_pair()
        self._next_pin = identity.card.next_tls_spki_sha256
        self._lock = threading.Lock()
        self._listed_since: float | None = None
        self._presenting_next = False

    def pair(self) -> tuple[bytes, bytes]:
        """(private key PEM, certificate PEM) to present now; cheap, called per handshake."""
        if self._next is None:
            return self._current
        published = self._directory().agency(self._agency)
        now = self._clock()
        with self._lock:
            if published is not None and self._next_pin in published.tls_pins:
                if self._listed_since is None:
                    self._listed_since = now
            else:
                self._listed_since = None
            listed_for = None if self._listed_since is None else now - self._listed_since
            switch = presents_next(published, self._next_pin, listed_for, self._delay)
            if switch != self._presenting_next:
                self._presenting_next = switch
                log.info(
                    "tls_certificate_switched",
                    presenting="next" if switch else "current",
                    tls_spki_sha256=(self._next_pin if switch else b"").hex() or None,
                )
        return self._next if switch else self._current

    def certificate_pem(self) -> bytes:
        return self.pair()[1]


class PeerChannels:
    """One reusable channel per peer, rebuilt when its endpoint, its certificates or the
    certificate we present change."""

    def __init__(
        self,
        identity: AgencyIdentity,
        directory: TrustedDirectory,
        max_message_bytes: int,
        own: OwnCertificate | None = None,
    ) -> None:
        self._own = own or OwnCertificate(identity, directory.current, 0.0)
        self._directory = directory
        self._max = max_message_bytes
        self._lock = threading.Lock()
        self._channels: dict[str, tuple[tuple[str, bytes, bytes], grpc.Channel]] = {}
        self._retired: list[tuple[float, grpc.Channel]] = []

    def channel(self, agency_id: str) -> grpc.Channel:
        card = self._directory.current().agency(agency_id)
        if card is None:
            raise UnknownSenderError(f"Agency {agency_id} is not a member of the federation.")
        roots = b"".join(card.tls_certificates)
        own_key, own_cert = self._own.pair()
        key = (card.endpoint, roots, own_cert)
        with self._lock:
            cached = self._channels.get(agency_id)
            if cached is not None and cached[0] == key:
                return cached[1]
            now = time.monotonic()
            if cached is not None:
                # New calls use the new channel; those in flight on the old one finish.
                self._retired.append((now, cached[1]))
            while self._retired and self._retired[0][0] < now - RETIRED_CHANNEL_SECONDS:
                self._retired.pop(0)[1].close()
            creds = grpc.ssl_channel_credentials(
                root_certificates=roots, private_key=own_key, certificate_chain=own_cert
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
            for _, chan in self._retired:
                chan.close()
            self._channels.clear()
            self._retired.clear()
