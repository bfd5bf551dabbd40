"""Every kind of audit ledger entry a node writes, with the names of its fields.

`LedgerEntry.of` refuses a kind missing here and fields other than its kind's, so an
auditor's table (docs/auditors.md, kept equal to this one by a test) names every entry a
ledger can hold. Besides its fields every entry has `kind` and `at` (unix milliseconds).
Field values are strings, integers or booleans: identifiers and digests, never content.

Adding a kind: a member here, a row in docs/auditors.md; protocol.md 12.1 and
protocol-matching.md 9 describe the kinds of their parts. A peer may read an entry only
of the kinds node.storage.ledger.PEER_READABLE lists (the redaction rule).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

RESERVED_FIELDS = frozenset({"kind", "at"})


class LedgerSchemaError(TypeError):
    """A ledger entry of an unregistered kind or with the wrong fields: a bug in the
    caller, not a refusal of anyone's input (hence not an MlaxError)."""


class Kind(StrEnum):
    """A kind of ledger entry: its value is the entry's `kind`; `required` and `optional`
    are its field names (besides `kind` and `at`), in the order the docs list them."""

    required: tuple[str, ...]
    optional: tuple[str, ...]

    def __new__(cls, value: str, required: str, optional: str = "") -> Kind:
        member = str.__new__(cls, value)
        member._value_ = value
        member.required = tuple(required.split())
        member.optional = tuple(optional.split())
        return member

    @property
    def fields(self) -> frozenset[str]:
        """Every field name an entry of this kind may have."""
        return frozenset(self.required) | frozenset(self.optional)

    # -- the node ----------------------------------------------------------------------------
    NODE_STARTED = "node.started", "agency signing_keys encryption_keys tls_spki_sha256"
    NODE_STOPPED = "node.stopped", "agency"
    # Written by `mlax node restore` into the restored ledger (root: hex).
    NODE_RESTORED = "node.restored", "backup_size backup_root backup_created_at"
    DIRECTORY_INSTALLED = "directory.installed", "version federation source agencies"
    # `by`: the admin who made the change over the officer API (absent: the node's host).
    OFFICER_ADDED = "officer.added", "officer role", "by"
    OFFICER_CHANGED = "officer.changed", "officer role active", "by"
    OFFICER_LISTED = "officer.listed", "by count"
    LEDGER_EXPORTED = "ledger.exported", "officer start end"
    WITNESS_SPLIT_VIEW = "witness.split_view", "peer origin conclusive"
    # `known_note`: the peer's signed checkpoint note this witness had cosigned (kept).
    WITNESS_RESTORE_ACKNOWLEDGED = (
        "witness.restore_acknowledged",
        "peer origin restored_from known_size known_note",
    )

    # -- messages and delivery ---------------------------------------------------------------
    MESSAGE_SUBMITTED = (
        "message.submitted",
        "message_id recipient officer envelope_digest message_type",
    )
    RECEIPT_STORED = (
        "receipt.stored",
        "message_id receiver sender receiver_ledger_index envelope_digest",
    )
    DELIVERY_FAILED = "delivery.failed", "message_id peer reason"
    DELIVERY_GIVEN_UP = "delivery.given_up", "message_id peer attempts"
    MESSAGE_RECEIVED = "message.received", "message_id sender envelope_digest message_type"
    MESSAGE_REJECTED = "message.rejected", "peer reason status"
    MESSAGE_REJECTED_AGGREGATE = (
        "message.rejected_aggregate",
        "peer reason status count first_at last_at",
    )
    CONTENT_READ = "content.read", "message_id officer role"
    CONTENT_READ_REFUSED = "content.read_refused", "message_id officer reason"
    MESSAGE_FORWARDED = "message.forwarded", "message_id forwarded_as recipient officer"
    MESSAGE_FORWARD_REFUSED = "message.forward_refused", "message_id recipient officer reason"

    # -- cases -------------------------------------------------------------------------------
    CASE_CREATED = "case.created", "case_ref case_type requested officer form_digest"
    CASE_APPROVAL_REQUESTED = "case.approval_requested", "case_ref officer form_digest"
    CASE_APPROVED = "case.approved", "case_ref supervisor form_digest signature"
    # Written as "case.draft_" + the action (withdraw, or close after withdrawing).
    CASE_DRAFT_WITHDRAW = "case.draft_withdraw", "case_ref officer"
    CASE_DRAFT_CLOSE = "case.draft_close", "case_ref officer"
    CASE_TRANSITION_SENT = (
        "case.transition_sent",
        "case_ref seq action officer digest message_id",
    )
    CASE_TRANSITION = (
        "case.transition",
        "case_ref peer seq action by state digest message_id",
    )
    CASE_TRANSITION_FAILED = (
        "case.transition_failed",
        "case_ref action seq reason message_id",
    )
    CASE_RECEIPT_FOR_DROPPED_STEP = (
        "case.receipt_for_dropped_step",
        "case_ref peer message_id",
    )
    CASE_READ = "case.read", "case_ref officer role"
    CASE_READ_REFUSED = "case.read_refused", "case_ref officer reason"
    CASE_ACTION_REFUSED = "case.action_refused", "case_ref officer action reason"
    CASE_OVERDUE = "case.overdue", "case_ref clock peer"
    CASE_HOLD_PLACED = "case.hold_placed", "case_ref officer reason_sha256"
    CASE_HOLD_RELEASED = "case.hold_released", "case_ref officer"
    # -- retention ---------------------------------------------------------------------------
    RETENTION_PURGED = "retention.purged", "data count rule cutoff"

    # -- evidence ----------------------------------------------------------------------------
    ATTACHMENT_UPLOADED = (
        "attachment.uploaded",
        "attachment_id case_ref officer sha256 size message_id",
    )
    ATTACHMENT_DELIVERED = "attachment.delivered", "attachment_id case_ref peer sha256 size"
    ATTACHMENT_RECEIVED = "attachment.received", "attachment_id case_ref peer sha256 size"
    ATTACHMENT_REJECTED = "attachment.rejected", "attachment_id case_ref peer sha256 size"
    ATTACHMENT_CHUNK_REFUSED = "attachment.chunk_refused", "attachment_id peer index"
    ATTACHMENT_DOWNLOADED = (
        "attachment.downloaded",
        "attachment_id case_ref officer from_chunk",
    )
    ATTACHMENT_DOWNLOAD_REFUSED = (
        "attachment.download_refused",
        "attachment_id case_ref officer reason",
    )

    # -- victim matching ---------------------------------------------------------------------
    MATCH_KEY_CREATED = "match.key_created", "key_id"
    MATCH_KEY_ROTATED = (
        "match.key_rotated",
        "old_key_id key_id token_domain records retire_at",
        "officer",
    )
    MATCH_KEY_RETIRED = "match.key_retired", "key_id"
    MATCH_RECORDS_LOADED = "match.records_loaded", "officer added updated removed version"
    MATCH_INDEX_SERVED = "match.index_served", "peer since version"
    MATCH_EVALUATED = "match.evaluated", "peer query_id elements"
    MATCH_QUOTA_EXCEEDED = "match.quota_exceeded", "peer query_id elements used"
    # `reason_*`: only for a disclosure on the supervisor's override of a mismatch.
    MATCH_DISCLOSED = (
        "match.disclosed",
        "case_ref handle supervisor agreement overridden",
        "reason_chars reason_sha256",
    )
    MATCH_QUERY = "match.query", "query_id officer queries unmatchable peers"
    MATCH_ANSWER = "match.answer", "query_id peer query result band"

    # -- statistics releases (epsilon as decimal text; never a cell's value) -----------------
    STATS_RELEASE_DRAFTED = (
        "stats.release_drafted",
        "release_id officer period_start period_end epsilon digest",
    )
    STATS_RELEASE_APPROVED = "stats.release_approved", "release_id supervisor digest signature"


def _check_schemas() -> None:
    for kind in Kind:
        fields = [*kind.required, *kind.optional]
        if len(set(fields)) != len(fields) or RESERVED_FIELDS & set(fields):
            raise LedgerSchemaError(f"ledger kind {kind}: repeated or reserved field names")


_check_schemas()
_BY_VALUE: dict[str, Kind] = {kind.value: kind for kind in Kind}


def check(kind: str, fields: Iterable[str]) -> Kind:
    """The registered `kind`, if `fields` are exactly its required ones plus any of its
    optional ones; raises LedgerSchemaError otherwise."""
    registered = _BY_VALUE.get(kind)
    if registered is None:
        raise LedgerSchemaError(f"ledger kind {kind!r} is not registered")
    names = frozenset(fields)
    missing = frozenset(registered.required) - names
    unknown = names - registered.fields
    if missing or unknown:
        raise LedgerSchemaError(
            f"ledger entry {kind}: missing {sorted(missing)}, not of its kind {sorted(unknown)}"
        )
    return registered
