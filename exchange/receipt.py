"""Delivery receipts: the receiver's signed statement that it stored an envelope durably."""

from __future__ import annotations

from dataclasses import dataclass

from nacl.signing import SigningKey

from exchange._proto.mlax.v1 import envelope_pb2 as pb
from exchange.directory import Directory
from exchange.encoding import CTX_RECEIPT, format_uuid, key_id, pae
from exchange.errors import MlaxError, ReceiptError
from exchange.signing import verify_ed25519
from exchange.wire import parse

MAX_RECEIPT_BYTES = 4096


@dataclass(frozen=True)
class ReceiptBody:
    message_id: bytes
    sender: str
    receiver: str
    envelope_digest: bytes
    received_at: int
    receiver_key_id: str
    ledger_index: int

    def to_bytes(self) -> bytes:
        return pb.ReceiptBody(
            message_id=self.message_id,
            sender=self.sender,
            receiver=self.receiver,
            envelope_digest=self.envelope_digest,
            received_at=self.received_at,
            receiver_key_id=self.receiver_key_id,
            ledger_index=self.ledger_index,
        ).SerializeToString(deterministic=True)


@dataclass(frozen=True)
class Receipt:
    """Receipt body bytes exactly as signed, and the receiver's signature."""

    body: bytes
    signature: bytes

    def to_bytes(self) -> bytes:
        return pb.Receipt(body=self.body, signature=self.signature).SerializeToString(
            deterministic=True
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Receipt:
        msg = parse(pb.Receipt, data, "receipt", MAX_RECEIPT_BYTES)
        return cls(bytes(msg.body), bytes(msg.signature))

    def parsed(self) -> ReceiptBody:
        msg = parse(pb.ReceiptBody, self.body, "receipt body", MAX_RECEIPT_BYTES, canonical=True)
        return ReceiptBody(
            message_id=bytes(msg.message_id),
            sender=msg.sender,
            receiver=msg.receiver,
            envelope_digest=bytes(msg.envelope_digest),
            received_at=msg.received_at,
            receiver_key_id=msg.receiver_key_id,
            ledger_index=msg.ledger_index,
        )


def issue_receipt(body: ReceiptBody, signing_key: SigningKey) -> Receipt:
    """Sign a receipt body with the receiver's signing key."""
    if body.receiver_key_id != key_id("ed25519", bytes(signing_key.verify_key)):
        raise ValueError("receipt key id does not name the signing key")
    data = body.to_bytes()
    return Receipt(data, signing_key.sign(pae(CTX_RECEIPT, data)).signature)


def verify_receipt(
    receipt: Receipt,
    directory: Directory,
    *,
    message_id: bytes,
    envelope_digest: bytes,
    receiver: str,
    sender: str | None = None,
) -> ReceiptBody:
    """Check that `receipt` is the receiver's valid receipt for exactly this envelope.

    `sender`, when given, must be the sender the receipt names (the caller itself, usually).
    """
    try:
        body = receipt.parsed()
    except MlaxError as e:
        raise ReceiptError(f"The receipt does not parse: {e.message}") from None
    mid = format_uuid(message_id)
    if body.message_id != message_id or body.envelope_digest != envelope_digest:
        raise ReceiptError(f"The receipt for {mid} names another envelope.")
    if sender is not None and body.sender != sender:
        raise ReceiptError(f"The receipt for {mid} names sender {body.sender}, not {sender}.")
    if body.receiver != receiver:
        raise ReceiptError(f"The receipt for {mid} comes from {body.receiver}, not {receiver}.")
    card = directory.agency(receiver)
    if card is None:
        raise ReceiptError(f"Receiver {receiver} is not in the directory.")
    try:
        # A receipt stays proof after the receiver rotates or revokes its key later.
        key = card.signing_key(body.receiver_key_id, body.received_at, historical=True)
    except MlaxError as e:
        raise ReceiptError(f"The receipt for {mid} uses an unusable key: {e.message}") from None
    if not verify_ed25519(key.public_key, pae(CTX_RECEIPT, receipt.body), receipt.signature):
        raise ReceiptError(f"The receipt signature for {mid} does not verify.")
    return body
