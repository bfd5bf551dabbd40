"""Tables. All state lives here, not in process memory, so replicas can share one database."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


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
    envelope_digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    # The sealed envelope and self-copy, in a row of their own that is written once:
    # delivery state (lease, attempts, state) changes here without rewriting them.
    content: Mapped[MessageContentRow] = relationship(cascade="all, delete-orphan", lazy="select")
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
    # Retention (node/services/retention.py): when the content row was deleted and under
    # which rule; 0 and "" while it is kept.
    purged_at: Mapped[int] = mapped_column(BigInteger, default=0)
    purge_rule: Mapped[str] = mapped_column(String(64), default="")


class MessageContentRow(Base):
    """A message's sealed bytes, written once with the message and never updated, so a
    delivery claim or a retry rewrites only the small `messages` row (ADR 0013)."""

    __tablename__ = "message_contents"

    message_pk: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    # The wire envelope, encrypted to the recipient, exactly as sent or received.
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    # Outbound only: the same content sealed to this node's own key, so officers can
    # reread what they sent while nothing is stored in the clear.
    self_copy: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


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


class CaseRow(Base):
    """A case as this node sees it: one row per case, mirrored on the peer's node.

    Content (the form, the transitions' details) is never stored in the clear: the form
    is kept sealed to this node's own key (`form_sealed`), and every transition's details
    travel and rest inside their envelopes.
    """

    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("created_by", "idempotency_key", name="uq_cases_idempotency"),
        Index("ix_cases_state", "state"),
        Index("ix_cases_peer", "peer"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_ref: Mapped[str] = mapped_column(String(128), unique=True)
    case_type: Mapped[str] = mapped_column(String(16))
    # This node's party: "requesting" or "requested".
    role: Mapped[str] = mapped_column(String(16))
    requesting: Mapped[str] = mapped_column(String(64))
    requested: Mapped[str] = mapped_column(String(64))
    peer: Mapped[str] = mapped_column(String(64))
    urgency: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(32))
    # Sequence number and digest of the last applied transition (0 and empty for a draft).
    seq: Mapped[int] = mapped_column(Integer, default=0)
    head_digest: Mapped[bytes] = mapped_column(LargeBinary(32), default=b"")
    opened_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    requested_deadline: Mapped[int] = mapped_column(BigInteger, default=0)
    handling_codes: Mapped[str] = mapped_column(String(64), default="")
    restricted_to: Mapped[str] = mapped_column(Text, default="")
    # The CaseForm, sealed to this node's own encryption key, and its SHA-256.
    form_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    form_digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    created_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # Four-eyes: asked for by the drafter, given by a different supervisor.
    awaiting_approval: Mapped[bool] = mapped_column(Boolean, default=False)
    approved_by: Mapped[str] = mapped_column(String(128), default="")
    approved_at: Mapped[int] = mapped_column(BigInteger, default=0)
    approval_signature: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    # A transition this node sent and the peer has not yet receipted: applied on receipt,
    # dropped if the peer refuses it (so both nodes keep one history).
    pending_action: Mapped[str] = mapped_column(String(32), default="")
    pending_message_id: Mapped[bytes] = mapped_column(LargeBinary(16), default=b"")
    last_error: Mapped[str] = mapped_column(Text, default="")
    # Clocks already raised as alerts, comma-separated, so each alerts once.
    alerted: Mapped[str] = mapped_column(String(64), default="")
    # Retention: when the form and the steps' details were purged, under which rule.
    purged_at: Mapped[int] = mapped_column(BigInteger, default=0)
    purge_rule: Mapped[str] = mapped_column(String(64), default="")
    # Legal hold: while `held_at` is set, nothing of the case is purged.
    held_at: Mapped[int] = mapped_column(BigInteger, default=0)
    held_by: Mapped[str] = mapped_column(String(128), default="")
    hold_reason: Mapped[str] = mapped_column(Text, default="")


class CaseEventRow(Base):
    """One applied transition of a case, with the envelope that carried it."""

    __tablename__ = "case_events"
    __table_args__ = (UniqueConstraint("case_id", "seq", name="uq_case_events_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(Integer, index=True)
    seq: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(32))
    party: Mapped[str] = mapped_column(String(16))
    agency: Mapped[str] = mapped_column(String(64))
    at: Mapped[int] = mapped_column(BigInteger)
    officer: Mapped[str] = mapped_column(String(128), default="")
    message_id: Mapped[bytes] = mapped_column(LargeBinary(16), default=b"")
    digest: Mapped[bytes] = mapped_column(LargeBinary(32), default=b"")
    state_after: Mapped[str] = mapped_column(String(32))


class CasePendingRow(Base):
    """One of this node's own case steps that the peer has not receipted yet.

    The first (lowest `seq`) is on its way; the others wait behind it, each chained to the
    digest of the one before (docs/protocol-casework.md, "Steps in flight"). A step leaves
    this table when its receipt arrives (it becomes a `CaseEventRow`) or when it is
    dropped: refused by the peer, overtaken by the peer's crossing step, or cancelled
    because the step before it was dropped.
    """

    __tablename__ = "case_pending_steps"
    __table_args__ = (UniqueConstraint("case_id", "seq", name="uq_case_pending_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(Integer, index=True)
    seq: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(32))
    at: Mapped[int] = mapped_column(BigInteger)
    message_id: Mapped[bytes] = mapped_column(LargeBinary(16))
    digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    state_after: Mapped[str] = mapped_column(String(32))


class AttachmentRow(Base):
    """An evidence file: uploaded here and sent ("out"), or received from a peer ("in").

    The bytes live in the blob store as the attachment's ciphertext chunk stream; the
    row says how much of it is durable and whether it may be shown. Only `available`
    (inbound) and `sending`/`delivered` (outbound) files were fully verified.
    """

    __tablename__ = "attachments"
    __table_args__ = (
        UniqueConstraint("direction", "peer", "attachment_id", name="uq_attachments_id"),
        UniqueConstraint("uploaded_by", "upload_id", name="uq_attachments_upload"),
        Index("ix_attachments_case", "case_ref"),
        Index("ix_attachments_due", "direction", "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    attachment_id: Mapped[bytes] = mapped_column(LargeBinary(16))
    direction: Mapped[str] = mapped_column(String(3))
    peer: Mapped[str] = mapped_column(String(64))
    case_ref: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(BigInteger)
    chunk_size: Mapped[int] = mapped_column(Integer)
    total_chunks: Mapped[int] = mapped_column(BigInteger)
    confirmed_chunks: Mapped[int] = mapped_column(BigInteger, default=0)
    # The AttachmentKey (file key, digest, name), sealed to this node's own key.
    key_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    # SHA-256 of the plaintext as the signed header states it (empty while uploading).
    sha256: Mapped[bytes] = mapped_column(LargeBinary(32), default=b"")
    # The EVIDENCE envelope that carries the key to the peer.
    message_id: Mapped[bytes] = mapped_column(LargeBinary(16), default=b"")
    upload_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    uploaded_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    handling_codes: Mapped[str] = mapped_column(String(64), default="")
    restricted_to: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[int] = mapped_column(BigInteger)
    completed_at: Mapped[int] = mapped_column(BigInteger, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[int] = mapped_column(BigInteger, default=0)
    lease_until: Mapped[int] = mapped_column(BigInteger, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    # When chunks last became durable here (an upload's "last touched").
    touched_at: Mapped[int] = mapped_column(BigInteger, default=0)
    # Retention: key and bytes purged (the key at `purged_at`, the blob once
    # `blob_purged`: a purge cut off between the two is finished by the next one).
    purged_at: Mapped[int] = mapped_column(BigInteger, default=0)
    purge_rule: Mapped[str] = mapped_column(String(64), default="")
    blob_purged: Mapped[bool] = mapped_column(Boolean, default=False)


class MatchKeyRow(Base):
    """One generation of the holder's OPRF key for victim matching, sealed to the node's
    own key: the current one (`active`), one being built by a rotation (not `ready`), or
    the previous one, served until `retire_at` (ms) and then deleted with its values."""

    __tablename__ = "match_keys"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[int] = mapped_column(BigInteger)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # The token rule (exchange/matching/tokens.py TOKEN_DOMAIN) its values were made under.
    token_domain: Mapped[int] = mapped_column(Integer, default=1)
    ready: Mapped[bool] = mapped_column(Boolean, default=True)
    retire_at: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class MatchRecordRow(Base):
    """A victim record this agency holds (sealed) and what it publishes of it.

    What peers receive of it are its values (`MatchValuesRow`, one row per key
    generation) and `handle`, the random name they know it by.
    """

    __tablename__ = "match_records"
    __table_args__ = (Index("ix_match_records_version", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ref: Mapped[str] = mapped_column(String(128), unique=True)
    handle: Mapped[bytes] = mapped_column(LargeBinary(16), unique=True)
    record_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    # SHA-256 of the record's canonical fields: a re-load of the same data changes nothing.
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(32))
    version: Mapped[int] = mapped_column(BigInteger)
    removed: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    # Retention: marked when its period ran out, then removed through the load path.
    purged_at: Mapped[int] = mapped_column(BigInteger, default=0)
    purge_rule: Mapped[str] = mapped_column(String(64), default="")


class MatchValuesRow(Base):
    """A live record's published values under one key generation: its truncated OPRF
    outputs, padded to MAX_TOKENS, 8 bytes each, concatenated in order."""

    __tablename__ = "match_values"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    record_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    values: Mapped[bytes] = mapped_column(LargeBinary)


class MatchStateRow(Base):
    """One row: the published index's version (bumped by every load or removal), and the
    lease of the one load or key rotation that may write records at a time (any replica)."""

    __tablename__ = "match_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    version: Mapped[int] = mapped_column(BigInteger)
    # "" when free, else "load" or "rotate"; `lease_at` (ms) is renewed as it works, and a
    # lease not renewed for long is taken over, its leftovers undone (node/services/matching.py).
    lease: Mapped[str] = mapped_column(String(16), default="")
    lease_at: Mapped[int] = mapped_column(BigInteger, default=0)


class MatchQuotaRow(Base):
    """Blind evaluations a peer used in one hour-long window (P3, P5)."""

    __tablename__ = "match_quota"

    peer: Mapped[str] = mapped_column(String(64), primary_key=True)
    window: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    used: Mapped[int] = mapped_column(BigInteger)


class MatchPeerRow(Base):
    """Which process is updating the querier's copies of one peer's index (a lease, so that
    node processes sharing the database do not copy the same index twice)."""

    __tablename__ = "match_peers"

    peer: Mapped[str] = mapped_column(String(64), primary_key=True)
    lease_owner: Mapped[str] = mapped_column(String(32))
    lease_until: Mapped[int] = mapped_column(BigInteger)
    synced_at: Mapped[int] = mapped_column(BigInteger)


class MatchCopyRow(Base):
    """The querier's copy of one peer's published index under one key generation
    (node/services/match_replica.py): `complete` (queries read it), `building` (a first
    copy or a reset, staged until its stream ends) or `dropping` (being deleted)."""

    __tablename__ = "match_copies"
    __table_args__ = (Index("ix_match_copies_peer", "peer", "state"),)

    copy_no: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    peer: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    # Complete: the holder's version the copy is at. Building: every entry up to this
    # version is in, where an interrupted copy resumes.
    version: Mapped[int] = mapped_column(BigInteger)
    target: Mapped[int] = mapped_column(BigInteger)
    records: Mapped[int] = mapped_column(BigInteger)
    expected: Mapped[int] = mapped_column(BigInteger)
    # The next record number, the last delta sequence number, and entries of replaced
    # or removed records still in the blocks.
    next_rec: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int] = mapped_column(BigInteger)
    dead: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    synced_at: Mapped[int] = mapped_column(BigInteger, default=0)


class MatchCopyRecordRow(Base):
    """A record of a copy: its number in the blocks, its handle and the version that
    last changed it."""

    __tablename__ = "match_copy_records"
    __table_args__ = (
        Index("ix_match_copy_records_handle", "copy_no", "handle", unique=True),
        {"sqlite_with_rowid": False},
    )

    copy_no: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    rec_no: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    handle: Mapped[bytes] = mapped_column(LargeBinary(16))
    version: Mapped[int] = mapped_column(BigInteger)


class MatchCopyPartRow(Base):
    """One of the 256 parts of a copy's value space (by the value's first byte): how its
    base blocks are cut and how much waits in delta blobs."""

    __tablename__ = "match_copy_parts"

    copy_no: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    part: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    bits: Mapped[int] = mapped_column(Integer)
    base_entries: Mapped[int] = mapped_column(BigInteger)
    delta_entries: Mapped[int] = mapped_column(BigInteger)
    delta_blobs: Mapped[int] = mapped_column(Integer)


class MatchCopyBlockRow(Base):
    """Sorted packed entries (8-byte value, 4-byte record number) of a copy: one base
    block, numbered part * 65536 + its number within the part."""

    __tablename__ = "match_copy_blocks"

    copy_no: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    block: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class MatchCopyDeltaRow(Base):
    """The sorted packed entries one applied chunk brought to one part of a copy, until
    the part is compacted into base blocks."""

    __tablename__ = "match_copy_deltas"

    copy_no: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    part: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class BlobChunkRow(Base):
    """A run of a blob's bytes, for the PostgreSQL blob backend (node/storage/blobs.py).

    Written by appending, one row per write (at most 4 MiB): `pos` is the offset of its
    first byte in the blob. Rows beyond what the attachment's row confirms are cut off
    when the transfer resumes.
    """

    __tablename__ = "blob_chunks"

    blob_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    pos: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    length: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class StatsReleaseRow(Base):
    """A statistics release (ADR 0015): drafted with its noise drawn, final once a
    supervisor other than the drafter signed its digest. `document` is the canonical JSON
    that is published; the true values are never stored."""

    __tablename__ = "stats_releases"
    __table_args__ = (Index("ix_stats_releases_drafted_at", "drafted_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    release_id: Mapped[str] = mapped_column(String(36), unique=True)
    period_start: Mapped[str] = mapped_column(String(10))
    period_end: Mapped[str] = mapped_column(String(10))
    epsilon: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(16))  # "draft" | "final"
    document: Mapped[bytes] = mapped_column(LargeBinary)
    digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    cells_released: Mapped[int] = mapped_column(Integer)
    cells_suppressed: Mapped[int] = mapped_column(Integer)
    drafted_by: Mapped[str] = mapped_column(String(128))
    drafted_at: Mapped[int] = mapped_column(BigInteger)
    approved_by: Mapped[str] = mapped_column(String(128), default="")
    approved_at: Mapped[int] = mapped_column(BigInteger, default=0)
    approval_signature: Mapped[bytes] = mapped_column(LargeBinary, default=b"")


class StatsBudgetRow(Base):
    """The epsilon statistics releases have spent on one calendar year's units."""

    __tablename__ = "stats_budget"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    spent: Mapped[float] = mapped_column(Float)


class StatsReceivedRow(Base):
    """A peer's approved statistics release, received as a STATISTICS_RELEASE envelope
    and checked on arrival (`exchange.stats.release.validate`); the federation table
    combines these with this node's own final releases."""

    __tablename__ = "stats_received"
    __table_args__ = (
        UniqueConstraint("agency", "release_id", name="uq_stats_received_release"),
        Index("ix_stats_received_period", "period_start", "period_end"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agency: Mapped[str] = mapped_column(String(64))
    release_id: Mapped[str] = mapped_column(String(36))
    period_start: Mapped[str] = mapped_column(String(10))
    period_end: Mapped[str] = mapped_column(String(10))
    document: Mapped[bytes] = mapped_column(LargeBinary)
    message_id: Mapped[bytes] = mapped_column(LargeBinary(16))
    received_at: Mapped[int] = mapped_column(BigInteger)
