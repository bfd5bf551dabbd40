"""The officer SDK: what the CLI (and later a web console) uses to talk to its own node.

client = OfficerClient.from_bundle(Path("alice.json"), b"passphrase")
sent = client.send("FR-OCRTEH", subject="Request", text="...", message_type="mla")
for message in client.inbox(): ...
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives import serialization

from exchange._proto.mlax.v1 import envelope_pb2 as epb
from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange._proto.mlax.v1 import officer_pb2 as opb
from exchange._proto.mlax.v1 import officer_pb2_grpc as ogrpc
from exchange.encoding import parse_uuid
from exchange.errors import (
    InvalidFieldError,
    KeystoreError,
    MlaxError,
    Status,
)
from exchange.receipt import Receipt
from exchange.retention import purged_text
from keys.officer_bundle import (
    MAX_BUNDLE_BYTES,
    MAX_SERVER_CERTIFICATE_BYTES,
    MAX_SERVER_CERTIFICATES,
    add_server_certificates,
    open_bundle,
)
from node.client.results import WhoAmI
from node.transport import flow_control_options

# Unlocks an officer's credential bundle (else the CLI prompts).
OFFICER_PASSPHRASE_ENV = "MLAX_OFFICER_PASSPHRASE"  # noqa: S105 - a variable name

MESSAGE_TYPES = {
    "note": epb.MESSAGE_TYPE_NOTE,
    "mla": epb.MESSAGE_TYPE_MLA_REQUEST,
    "extradition": epb.MESSAGE_TYPE_EXTRADITION_REQUEST,
    "victim-id": epb.MESSAGE_TYPE_VICTIM_ID_REQUEST,
    "reply": epb.MESSAGE_TYPE_REPLY,
}
# How often a client asks its node (WhoAmI) which certificates its officer listener
# presents now or after a TLS renewal, and adds the ones its credential lacks.
TRUST_CHECK_SECONDS = 3600.0
TRUST_RETRY_SECONDS = 60.0  # after a failed check (the node down)

HANDLING_CODES = {
    "no-onward-transmission": epb.HANDLING_CODE_NO_ONWARD_TRANSMISSION,
    "no-evidential-use": epb.HANDLING_CODE_NO_EVIDENTIAL_USE_WITHOUT_CONSENT,
    "named-officers-only": epb.HANDLING_CODE_RESTRICTED_TO_NAMED_OFFICERS,
}
_TYPE_NAMES: dict[int, str] = {int(v): k for k, v in MESSAGE_TYPES.items()}
_TYPE_NAMES[epb.MESSAGE_TYPE_CASE_TRANSITION] = "case-transition"
_TYPE_NAMES[epb.MESSAGE_TYPE_EVIDENCE] = "evidence"
_CODE_NAMES: dict[int, str] = {int(v): k for k, v in HANDLING_CODES.items()}
_STATE_NAMES = {
    opb.DELIVERY_STATE_QUEUED: "queued",
    opb.DELIVERY_STATE_RETRYING: "retrying",
    opb.DELIVERY_STATE_DELIVERED: "delivered",
    opb.DELIVERY_STATE_FAILED: "failed",
    opb.DELIVERY_STATE_RECEIVED: "received",
    opb.DELIVERY_STATE_HELD: "held",
}


class NodeCallError(MlaxError):
    """The node refused a call or could not be reached; `code` is the gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = Status(code.name)


@dataclass(frozen=True)
class MessageInfo:
    """Metadata of one message as an officer sees it in a list."""

    message_id: str
    direction: str
    peer: str
    message_type: str
    case_ref: str
    created_at: int
    state: str
    attempts: int
    last_error: str
    next_attempt_at: int
    delivered_at: int
    read_at: int
    handling_codes: tuple[str, ...]
    in_reply_to: str
    submitted_by: str

    @classmethod
    def from_proto(cls, m: opb.MessageSummary) -> MessageInfo:
        return cls(
            message_id=m.message_id,
            direction="outbound" if m.direction == opb.DIRECTION_OUTBOUND else "inbound",
            peer=m.peer,
            message_type=_TYPE_NAMES.get(m.message_type, str(m.message_type)),
            case_ref=m.case_ref,
            created_at=m.created_at,
            state=_STATE_NAMES.get(m.state, "unknown"),
            attempts=m.attempts,
            last_error=m.last_error,
            next_attempt_at=m.next_attempt_at,
            delivered_at=m.delivered_at,
            read_at=m.read_at,
            handling_codes=tuple(_CODE_NAMES.get(c, str(c)) for c in m.handling_codes),
            in_reply_to=m.in_reply_to,
            submitted_by=m.submitted_by,
        )

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Evidence:
    """Delivery evidence: the receiver's signed receipt and where it ledgered the delivery."""

    receipt: bytes
    receipt_verified: bool
    received_at: int
    ledger_index: int
    envelope_digest: str
    receiver_key_id: str

    @classmethod
    def from_proto(cls, ev: opb.DeliveryEvidence) -> Evidence:
        return cls(
            receipt=bytes(ev.receipt),
            receipt_verified=ev.receipt_verified,
            received_at=ev.received_at,
            ledger_index=ev.ledger_index,
            envelope_digest=bytes(ev.envelope_digest).hex(),
            receiver_key_id=ev.receiver_key_id,
        )


@dataclass(frozen=True)
class MessageDetail:
    info: MessageInfo
    subject: str | None
    text: str | None
    evidence: Evidence
    sender_key_id: str
    recipient_key_id: str
    restricted_to: tuple[str, ...]
    non_repudiation_bundle: bytes = b""
    # Set once the content was purged under a retention rule (then subject and text are None).
    purged_at: int = 0
    purge_rule: str = ""

    @property
    def purged(self) -> str:
        """ "purged on DATE under retention rule RULE", or "" while the content is kept."""
        return purged_text(self.purged_at, self.purge_rule) if self.purged_at else ""

    @classmethod
    def from_proto(cls, v: opb.MessageView) -> MessageDetail:
        has_content = v.HasField("content")
        return cls(
            info=MessageInfo.from_proto(v.summary),
            subject=v.content.subject if has_content else None,
            text=v.content.text if has_content else None,
            evidence=Evidence.from_proto(v.evidence),
            sender_key_id=v.sender_key_id,
            recipient_key_id=v.recipient_key_id,
            restricted_to=tuple(v.restricted_to),
            non_repudiation_bundle=bytes(v.non_repudiation_bundle),
            purged_at=v.purged_at,
            purge_rule=v.purge_rule,
        )

    def to_json(self) -> dict[str, Any]:
        ev = self.evidence
        return {
            **self.info.to_json(),
            "non_repudiation_bundle": self.non_repudiation_bundle.hex(),
            "subject": self.subject,
            "text": self.text,
            "sender_key_id": self.sender_key_id,
            "recipient_key_id": self.recipient_key_id,
            "restricted_to": list(self.restricted_to),
            "purged": self.purged,
            "evidence": {
                "receipt": ev.receipt.hex(),
                "receipt_verified": ev.receipt_verified,
                "received_at": ev.received_at,
                "ledger_index": ev.ledger_index,
                "envelope_digest": ev.envelope_digest,
                "receiver_key_id": ev.receiver_key_id,
            },
        }


@dataclass(frozen=True)
class DeliveryProofInfo:
    """Whether the receiver's signed ledger includes the delivery of a message."""

    ledger_index: int
    verified: bool
    problem: str
    tree_size: int
    cosignatures: int

    @classmethod
    def from_proto(cls, p: opb.DeliveryProof) -> DeliveryProofInfo:
        return cls(
            ledger_index=p.ledger_index,
            verified=p.verified,
            problem=p.problem,
            tree_size=p.proof.tree_size,
            cosignatures=len(p.proof.checkpoint.cosignatures),
        )

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Credential:
    officer: str
    role: str
    agency: str
    endpoint: str
    server_certificate: bytes
    certificate: bytes
    private_key_pem: bytes
    # Further certificates trusted for the node (a TLS renewal's next one).
    more_server_certificates: tuple[bytes, ...] = ()

    @property
    def server_certificates(self) -> tuple[bytes, ...]:
        """Every certificate trusted for the node; the first names the TLS server."""
        return (self.server_certificate, *self.more_server_certificates)

    @classmethod
    def load(cls, path: Path, passphrase: bytes) -> Credential:
        """Read a credential bundle (keys.officer_bundle: Argon2id, or the legacy PBKDF2
        format) written by `mlax officer add` or `mlax admin officers issue`."""
        try:
            with path.open("rb") as f:
                data = f.read(MAX_BUNDLE_BYTES + 1)
        except IsADirectoryError:
            raise KeystoreError(f"{path} is not an MLAX officer credential.") from None
        info, key = open_bundle(data, passphrase, str(path))
        plain = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls(
            info.officer,
            info.role,
            info.agency,
            info.endpoint,
            info.server_certificate,
            info.certificate,
            plain,
            info.more_server_certificates,
        )

    def trusting(self, pems: list[bytes]) -> Credential:
        """This credential trusting `pems` too: only certificates that name the same TLS
        server (the rule of `_server_name`), at most MAX_SERVER_CERTIFICATES further ones."""
        name = _server_name(self.server_certificate)
        more = list(self.more_server_certificates)
        for pem in pems:
            if pem not in self.server_certificates and pem not in more and _names(pem, name):
                more.append(pem)
        return dataclasses.replace(
            self, more_server_certificates=tuple(more[-MAX_SERVER_CERTIFICATES:])
        )


def _names(pem: bytes, server_name: str) -> bool:
    """Whether `pem` is a certificate for `server_name` (anything else is not trusted)."""
    if len(pem) > MAX_SERVER_CERTIFICATE_BYTES:
        return False
    try:
        return _server_name(pem) == server_name
    except ValueError:
        return False


def _server_name(cert_pem: bytes) -> str:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "localhost"
    names = san.get_values_for_type(x509.DNSName)
    if names:
        return names[0]
    ips = san.get_values_for_type(x509.IPAddress)
    return str(ips[0]) if ips else "localhost"


class OfficerClient:
    """A typed client for the Officer service of one's own node."""

    def __init__(
        self, credential: Credential, timeout: float = 15.0, bundle: Path | None = None
    ) -> None:
        self.credential = credential
        self.timeout = timeout
        # The credential file, rewritten when the node names a certificate it lacks.
        self.bundle = bundle
        self._trust_lock = threading.Lock()
        self._trust_due = 0.0  # monotonic time of the next WhoAmI trust check
        self._replaced: list[grpc.Channel] = []  # closed with the client
        self._connect()

    def _connect(self) -> None:
        # The node's own certificates are the only trust anchors: no system CA roots.
        cred = self.credential
        creds = grpc.ssl_channel_credentials(
            root_certificates=b"".join(cred.server_certificates),
            private_key=cred.private_key_pem,
            certificate_chain=cred.certificate,
        )
        options = [
            ("grpc.ssl_target_name_override", _server_name(cred.server_certificate)),
            # Downloads are streams this side receives: bounded buffering, as on the node.
            *flow_control_options(),
        ]
        self._channel = grpc.secure_channel(cred.endpoint, creds, options=options)
        self._stub = ogrpc.OfficerStub(self._channel)

    def retarget(self, endpoint: str) -> None:
        """Talk to another address of the same node (e.g. an auditor's own route to it)."""
        if not endpoint or endpoint == self.credential.endpoint:
            return
        self._channel.close()
        self.credential = dataclasses.replace(self.credential, endpoint=endpoint)
        self._connect()

    @classmethod
    def from_bundle(cls, path: Path, passphrase: bytes, timeout: float = 15.0) -> OfficerClient:
        return cls(Credential.load(path, passphrase), timeout, bundle=path)

    def close(self) -> None:
        self._channel.close()
        for channel in self._replaced:
            channel.close()

    def _check_trust(self) -> None:
        """At most once per TRUST_CHECK_SECONDS: ask the node which certificates its officer
        listener presents now or after a TLS renewal, and trust the ones we lack."""
        if time.monotonic() < self._trust_due:
            return
        with self._trust_lock:
            if time.monotonic() < self._trust_due:
                return
            try:
                resp = self._stub.WhoAmI(opb.WhoAmIRequest(), timeout=self.timeout)
            except grpc.RpcError:
                self._trust_due = time.monotonic() + TRUST_RETRY_SECONDS
                return
            self._trust_due = time.monotonic() + TRUST_CHECK_SECONDS
            self._learn(list(resp.server_certificates))

    def _learn(self, pems: list[str]) -> None:
        """Trust the certificates of `pems` (from our node, over the pinned channel) that
        the credential lacks: in memory (a new channel), and in the credential file."""
        offered = [p.encode() for p in pems[:MAX_SERVER_CERTIFICATES] if p.isascii()]
        wider = self.credential.trusting(offered)
        if wider == self.credential:
            return
        added = [
            p
            for p in wider.more_server_certificates
            if p not in self.credential.server_certificates
        ]
        # Calls in progress finish on the old channel; the next ones use the new one.
        self._replaced.append(self._channel)
        self.credential = wider
        self._connect()
        if self.bundle is not None:
            # A read-only credential file: this process still trusts them.
            with contextlib.suppress(OSError, MlaxError):
                add_server_certificates(self.bundle, added)

    def __enter__(self) -> OfficerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def call_error(self, e: grpc.RpcError) -> NodeCallError:
        """A failed call as the one sentence an officer reads."""
        code = e.code()
        detail = e.details() or code.name
        if code == grpc.StatusCode.UNAVAILABLE:
            detail = f"The node at {self.credential.endpoint} cannot be reached ({detail})."
        return NodeCallError(code, detail)

    def _call(self, method: Any, request: Any) -> Any:
        self._check_trust()
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise self.call_error(e) from None

    def send(
        self,
        recipient: str,
        *,
        subject: str,
        text: str,
        message_type: str = "note",
        case_ref: str = "",
        handling: tuple[str, ...] = (),
        restricted_to: tuple[str, ...] = (),
        in_reply_to: str = "",
        idempotency_key: str | None = None,
        ttl_seconds: int = 0,
    ) -> MessageInfo:
        """Submit a message to `recipient`; it is queued for delivery when this returns."""
        if message_type not in MESSAGE_TYPES:
            raise InvalidFieldError(
                f"Message type {message_type!r} is not one of {', '.join(MESSAGE_TYPES)}."
            )
        unknown = [h for h in handling if h not in HANDLING_CODES]
        if unknown:
            raise InvalidFieldError(
                f"Handling code {unknown[0]!r} is not one of {', '.join(HANDLING_CODES)}."
            )
        try:
            reply_to = parse_uuid(in_reply_to) if in_reply_to else b""
        except ValueError:
            raise InvalidFieldError(f"{in_reply_to!r} is not a message id.") from None
        req = opb.SubmitRequest(
            recipient=recipient,
            message_type=MESSAGE_TYPES[message_type],
            case_ref=case_ref,
            content=opb.Content(subject=subject, text=text, media_type="text/plain"),
            handling_codes=[HANDLING_CODES[h] for h in handling],
            restricted_to=list(restricted_to),
            in_reply_to=reply_to,
            idempotency_key=idempotency_key or str(uuid.uuid4()),
            ttl_seconds=ttl_seconds,
        )
        return MessageInfo.from_proto(self._call(self._stub.Submit, req))

    def reply(
        self,
        message_id: str,
        *,
        text: str,
        subject: str | None = None,
        restricted_to: Sequence[str] = (),
    ) -> MessageInfo:
        """Answer an inbound message: same peer and case, marked as a reply to it, with at
        least its handling codes (the node enforces that too). A reply to a message
        restricted to named officers must name the peer's officers who may read it."""
        original = self.show(message_id, content=subject is None)
        if original.info.direction != "inbound":
            raise InvalidFieldError("Only inbound messages can be replied to.")
        return self.send(
            original.info.peer,
            subject=subject or f"Re: {original.subject or ''}".strip(),
            text=text,
            message_type="reply",
            case_ref=original.info.case_ref,
            handling=tuple(h for h in original.info.handling_codes if h in HANDLING_CODES),
            restricted_to=tuple(restricted_to),
            in_reply_to=message_id,
        )

    def messages(
        self, direction: str = "", limit: int = 50, peer: str = "", case_ref: str = ""
    ) -> list[MessageInfo]:
        wire_dir = {"": 0, "outbound": 1, "inbound": 2}[direction]
        resp = self._call(
            self._stub.ListMessages,
            opb.ListMessagesRequest(direction=wire_dir, limit=limit, peer=peer, case_ref=case_ref),  # type: ignore[arg-type]
        )
        return [MessageInfo.from_proto(m) for m in resp.messages]

    def inbox(self, limit: int = 50) -> list[MessageInfo]:
        return self.messages("inbound", limit)

    def outbox(self, limit: int = 50) -> list[MessageInfo]:
        return self.messages("outbound", limit)

    def show(self, message_id: str, content: bool = True) -> MessageDetail:
        """One message with its delivery evidence; with `content`, the decrypted text (ledgered)."""
        v = self._call(
            self._stub.GetMessage,
            opb.GetMessageRequest(message_id=message_id, include_content=content),
        )
        return MessageDetail.from_proto(v)

    def watch(self, after: str = "") -> Iterator[MessageInfo]:
        """New inbound messages as they arrive, until the caller stops iterating."""
        stream = self._stub.Watch(opb.WatchRequest(after_message_id=after))
        try:
            for m in stream:
                yield MessageInfo.from_proto(m)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                raise self.call_error(e) from None
        finally:
            stream.cancel()

    def delivery_proof(self, message_id: str) -> DeliveryProofInfo:
        """Ask our node to fetch and verify the receiver's inclusion proof for a delivery."""
        p = self._call(self._stub.GetDeliveryProof, opb.DeliveryProofRequest(message_id=message_id))
        return DeliveryProofInfo.from_proto(p)

    def export_ledger(self, start: int = 0, end: int = 0) -> Iterator[lpb.LedgerExportRecord]:
        """Auditor: the node's ledger as export records (header, entries, checkpoints)."""
        try:
            yield from self._stub.ExportLedger(opb.ExportLedgerRequest(start=start, end=end))
        except grpc.RpcError as e:
            raise self.call_error(e) from None

    def whoami(self) -> WhoAmI:
        # The answer is also the trust check: no second WhoAmI for it.
        try:
            resp: opb.WhoAmIResponse = self._stub.WhoAmI(opb.WhoAmIRequest(), timeout=self.timeout)
        except grpc.RpcError as e:
            raise self.call_error(e) from None
        with self._trust_lock:
            self._trust_due = time.monotonic() + TRUST_CHECK_SECONDS
            self._learn(list(resp.server_certificates))
        return WhoAmI.from_proto(resp)


def parse_receipt(data: bytes) -> Receipt:
    return Receipt.from_bytes(data)
