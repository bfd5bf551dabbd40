"""Tables. All state lives here, not in process memory, so replicas can share one database."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class DirectoryRow(Base):
    """Every directory version this node trusted, newest is current."""

    __tablename__ = "directories"

    version: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    signed: Mapped[bytes] = mapped_column(LargeBinary)
    installed_at: Mapped[int] = mapped_column(BigInteger)
    # "operator" or the agency id of the peer it was learned from.
    source: Mapped[str] = mapped_column(String(64))


class MessageRow(Base):
    """One envelope, outbound (our outbox and sent items) or inbound (our inbox)."""

    __tablename__ = "messages"
    __table_args__ = (
        # The replay set: one row per (direction, peer, message id).
        UniqueConstraint("direction", "peer", "message_id", name="uq_messages_peer_id"),
        UniqueConstraint("submitted_by", "idempotency_key", name="uq_messages_idempotency"),
        Index("ix_messages_due", "direction", "state", "next_attempt_at"),
        Index("ix_messages_peer_state", "peer", "state"),
        # Inbox and outbox listings: newest first within one direction.
        Index("ix_messages_direction_id", "direction", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[bytes] = mapped_column(LargeBinary(16))
    direction: Mapped[str] = mapped_column(String(3))  # "out" | "in"
    peer: Mapped[str] = mapped_column(String(64))
    message_type: Mapped[int] = mapped_column(Integer)
    case_ref: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    # The wire envelope, encrypted to the recipient, exactly as sent or received.
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    envelope_digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    # Outbound only: the same content sealed to this node's own key, so officers can
    # reread what they sent while nothing is stored in the clear.
    self_copy: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[int] = mapped_column(BigInteger, default=0)
    lease_until: Mapped[int] = mapped_column(BigInteger, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    receipt: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    delivered_at: Mapped[int] = mapped_column(BigInteger, default=0)
    read_at: Mapped[int] = mapped_column(BigInteger, default=0)
    submitted_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    in_reply_to: Mapped[bytes] = mapped_column(LargeBinary(16), default=b"")
    handling_codes: Mapped[str] = mapped_column(String(64), default="")


class OfficerRow(Base):
    """An officer credential issued by this node; the role is checked on every call."""

    __tablename__ = "officers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    # SHA-256 of the credential certificate's SubjectPublicKeyInfo.
    cert_spki_sha256: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class LedgerEntryRow(Base):
    """The audit ledger's entries, in order. Leaf = RFC 9162 leaf hash of `commitment`."""

    __tablename__ = "ledger_entries"

    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(64))
    at: Mapped[int] = mapped_column(BigInteger)
    # Canonical entry bytes and salt; both may be withheld (redacted) without
    # breaking any proof, since the tree commits only to `commitment`.
    entry: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    salt: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    commitment: Mapped[bytes] = mapped_column(LargeBinary(32))


class LedgerHeadRow(Base):
    """One row: the tree's size and right frontier. Appenders lock it (FOR UPDATE on
    PostgreSQL, the write lock on SQLite), so indexes stay dense across replicas."""

    __tablename__ = "ledger_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    # Concatenated 32-byte hashes of the complete subtrees on the right edge, largest first.
    frontier: Mapped[bytes] = mapped_column(LargeBinary)


class LedgerNodeRow(Base):
    """Hash of the complete subtree at (level, index): proofs cost O(log n) reads."""

    __tablename__ = "ledger_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class CheckpointRow(Base):
    """A checkpoint this node signed (C2SP signed note)."""

    __tablename__ = "ledger_checkpoints"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root: Mapped[bytes] = mapped_column(LargeBinary(32))
    note: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[int] = mapped_column(BigInteger)


class CosignatureRow(Base):
    """A peer's tlog-cosignature/v1 line on one of our checkpoints."""

    __tablename__ = "ledger_cosignatures"

    size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    witness: Mapped[str] = mapped_column(String(64), primary_key=True)
    line: Mapped[str] = mapped_column(Text)
    received_at: Mapped[int] = mapped_column(BigInteger)


class WitnessStateRow(Base):
    """As a witness: the last checkpoint we cosigned for each peer's log."""

    __tablename__ = "witness_state"

    origin: Mapped[str] = mapped_column(String(200), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class SplitViewRow(Base):
    """Evidence that a peer showed two inconsistent, validly signed histories."""

    __tablename__ = "split_view_evidence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    origin: Mapped[str] = mapped_column(String(200))
    known_note: Mapped[bytes] = mapped_column(LargeBinary)
    new_note: Mapped[bytes] = mapped_column(LargeBinary)
    proof: Mapped[bytes] = mapped_column(LargeBinary)
    conclusive: Mapped[bool] = mapped_column(Boolean)
    detected_at: Mapped[int] = mapped_column(BigInteger)
