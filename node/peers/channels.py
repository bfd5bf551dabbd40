"""Client channels to peer nodes: mutual TLS, the peer's own certificate as the only root."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import grpc

from exchange.errors import UnknownSenderError
from keys.identity import AgencyIdentity
from node.transport import channel_options

if TYPE_CHECKING:
    from node.services.trust import TrustedDirectory


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
