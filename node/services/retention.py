"""Retention: purging content past its period, and legal holds that exempt a case.

What a purge deletes, per kind of data ([retention] in the config; exchange.retention):

- message content: a note's or reply's sealed bytes (`message_contents`), counted from
  its delivery (the receipt), its receipt here (inbound), or its expiry once failed;
- case content: a closed case's sealed form, and the sealed envelopes of its steps and
  evidence announcements, counted from the case's closing;
- evidence: a closed case's files, their sealed keys and their blobs, from the closing;
- victim records: records held for matching, from their load or last update; removed
  through the matching desk's own removal path, so peers get tombstones;
- abandoned uploads: uploads never completed, from the last chunk that reached the node.

What it keeps: every ledger entry, every message's envelope digest, receipt and
metadata, every case's timeline and form digest, every file's SHA-256. Each item is
marked with when and under which rule it went, so it reads "purged on DATE under RULE"
(`exchange.retention.purged_text`). A case on legal hold loses nothing.

Crash safety: one batch is one transaction: the marks, the deleted rows and the batch's
`retention.purged` ledger entry commit together or not at all. What lives outside the
database transaction comes after, and a later run finishes it: evidence blobs (deleted
once their rows are marked; `blob_purged` records it) and the removal of victim records
from the published index (marked first, removed next).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy import ColumnElement, Select, and_, delete, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange.case import CaseState
from exchange.encoding import now_ms
from exchange.envelope import MessageType
from exchange.errors import ConflictError, InvalidFieldError, Status
from exchange.ledger_entry import LedgerEntry
from exchange.retention import Data, rule_name
from node.config import RetentionSection
from node.services.case_store import row_of
from node.services.evidence_files import SEND_FAILED, UPLOADING, _blob_id
from node.services.matching import MatchDesk
from node.services.messages import DELIVERED, FAILED, IN, OUT, RECEIVED, Officer
from node.storage import ledger
from node.storage.blobs import BlobStore
from node.storage.db import Database
from node.storage.models import (
    AttachmentRow,
    CaseEventRow,
    CaseRow,
    MatchRecordRow,
    MessageContentRow,
    MessageRow,
)

log = structlog.get_logger("mlax.retention")

# Tests only: seconds to sleep after each committed batch, before its blobs are deleted,
# so a test can kill the node in the middle of a purge.
PAUSE_ENV = "MLAX_TEST_PURGE_PAUSE_SECONDS"
MAX_HOLD_REASON = 500
# The account named in the ledger for removals the purge makes through the matching desk.
RETENTION_OFFICER = "retention"
_FREE_TYPES = (MessageType.NOTE.value, MessageType.REPLY.value)


class HoldStateError(ConflictError):
    """A hold placed on a case already held, or lifted from one that is not."""

    status = Status.FAILED_PRECONDITION


@dataclass(frozen=True)
class Purged:
    """What one run purged (or, dry, would purge) of one kind of data."""

    data: Data
    count: int
    rule: str
    cutoff: int


def _held_refs() -> Select[str]:
    c = aliased(CaseRow)
    return select(c.case_ref).where(c.held_at != 0)


def _closed_before(cutoff: int) -> Select[str]:
    """Case references of closed, unheld cases that closed at or before `cutoff`: at their
    closing step, or their last change for a draft closed before it left the node."""
    c = aliased(CaseRow)
    closing = (
        select(func.max(CaseEventRow.at))
        .where(CaseEventRow.case_id == c.id, CaseEventRow.state_after == CaseState.CLOSED.value)
        .correlate(c)
        .scalar_subquery()
    )
    return select(c.case_ref).where(
        c.state == CaseState.CLOSED.value,
        c.held_at == 0,
        func.coalesce(closing, c.updated_at) <= cutoff,
    )


class RetentionDesk:
    """Purges content past retention, and places and lifts legal holds."""

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        cfg: RetentionSection,
        remove_records: Callable[[list[str]], object] | None = None,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.cfg = cfg
        # The matching desk's removal (tombstones in the published index); None where no
        # matching desk runs (then victim records are left to the node's own purge job).
        self.remove_records = remove_records
        self.pause = float(os.environ.get(PAUSE_ENV, "0") or 0)

    # -- purge ----------------------------------------------------------------------------

    def periods(self) -> list[tuple[Data, float]]:
        """The kinds of data with a retention period set, and their periods in seconds."""
        c = self.cfg
        return [
            (data, seconds)
            for data, seconds in (
                (Data.MESSAGE_CONTENT, c.message_content_seconds),
                (Data.CASE_CONTENT, c.case_content_seconds),
                (Data.EVIDENCE, c.evidence_seconds),
                (Data.VICTIM_RECORDS, c.victim_records_seconds),
                (Data.ABANDONED_UPLOADS, c.abandoned_uploads_seconds),
            )
            if seconds > 0 and (data is not Data.VICTIM_RECORDS or self.remove_records)
        ]

    def purge(self, now: int | None = None, dry_run: bool = False) -> list[Purged]:
        """Purge everything past its period (first finishing what a cut-off run left);
        with `dry_run`, only count it. One `Purged` per kind with a period set."""
        now = now_ms() if now is None else now
        if not dry_run:
            self.finish_pending()
        out = []
        for data, seconds in self.periods():
            cutoff = now - int(seconds * 1000)
            rule = rule_name(data, seconds)
            if dry_run:
                with self.db.read() as s:
                    count = s.scalar(
                        select(func.count()).select_from(self._candidates(data, cutoff).subquery())
                    )
                out.append(Purged(data, count or 0, rule, cutoff))
                continue
            total = 0
            while True:
                n = self._batch(data, cutoff, rule, now)
                total += n
                if n < self.cfg.purge_batch:
                    break
            out.append(Purged(data, total, rule, cutoff))
        return out

    def _candidates(self, data: Data, cutoff: int) -> Select[int]:
        """Row ids of `data` past `cutoff`, not held and not purged yet, oldest first."""
        if data is Data.MESSAGE_CONTENT:
            m = MessageRow
            return (
                select(m.id)
                .where(
                    m.purged_at == 0,
                    m.message_type.in_(_FREE_TYPES),
                    or_(
                        and_(m.direction == IN, m.delivered_at <= cutoff),
                        and_(m.direction == OUT, m.state == DELIVERED, m.delivered_at <= cutoff),
                        and_(m.direction == OUT, m.state == FAILED, m.expires_at <= cutoff),
                    ),
                    m.case_ref.not_in(_held_refs()),
                )
                .order_by(m.id)
            )
        if data is Data.CASE_CONTENT:
            return (
                select(CaseRow.id)
                .where(CaseRow.purged_at == 0, CaseRow.case_ref.in_(_closed_before(cutoff)))
                .order_by(CaseRow.id)
            )
        if data is Data.EVIDENCE:
            a = AttachmentRow
            return (
                select(a.id)
                .where(
                    a.purged_at == 0,
                    a.state != UPLOADING,
                    a.case_ref.in_(_closed_before(cutoff)),
                )
                .order_by(a.id)
            )
        if data is Data.ABANDONED_UPLOADS:
            a = AttachmentRow
            return (
                select(a.id)
                .where(
                    a.purged_at == 0,
                    a.state == UPLOADING,
                    a.created_at <= cutoff,
                    a.touched_at <= cutoff,
                    a.case_ref.not_in(_held_refs()),
                )
                .order_by(a.id)
            )
        r = MatchRecordRow
        return (
            select(r.id)
            .where(
                r.removed.is_(False),
                # A record loaded again after a purge counts from that load.
                or_(r.purged_at == 0, r.updated_at > r.purged_at),
                r.updated_at <= cutoff,
            )
            .order_by(r.id)
        )

    def _batch(self, data: Data, cutoff: int, rule: str, now: int) -> int:
        """Purge one batch of `data` in one transaction with its ledger entry."""
        refs: list[str] = []
        with self.db.write() as s:
            q = self._candidates(data, cutoff).limit(self.cfg.purge_batch)
            if s.get_bind().dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)  # replicas purge disjoint rows
            ids = list(s.scalars(q).all())
            if not ids:
                return 0
            refs = self._apply(s, data, ids, rule, now)
            ledger.append(
                s,
                LedgerEntry.of(
                    "retention.purged",
                    now,
                    data=data.value,
                    count=len(ids),
                    rule=rule,
                    cutoff=cutoff,
                ),
            )
        log.info("retention_purged", data=data.value, count=len(ids), rule=rule)
        if self.pause:
            time.sleep(self.pause)
        if data in (Data.EVIDENCE, Data.ABANDONED_UPLOADS):
            self._delete_blobs(ids)
        elif data is Data.VICTIM_RECORDS and self.remove_records is not None:
            self.remove_records(refs)
        return len(ids)

    @staticmethod
    def _purge_messages(s: Session, where: ColumnElement[bool], rule: str, now: int) -> None:
        ids = select(MessageRow.id).where(where, MessageRow.purged_at == 0)
        s.execute(delete(MessageContentRow).where(MessageContentRow.message_pk.in_(ids)))
        s.execute(
            update(MessageRow)
            .where(where, MessageRow.purged_at == 0)
            .values(purged_at=now, purge_rule=rule)
        )

    def _apply(self, s: Session, data: Data, ids: Sequence[int], rule: str, now: int) -> list[str]:
        """The changes of one batch; for victim records, the references to remove."""
        if data is Data.MESSAGE_CONTENT:
            self._purge_messages(s, MessageRow.id.in_(ids), rule, now)
        elif data is Data.CASE_CONTENT:
            refs = list(s.scalars(select(CaseRow.case_ref).where(CaseRow.id.in_(ids))).all())
            s.execute(
                update(CaseRow)
                .where(CaseRow.id.in_(ids))
                .values(form_sealed=b"", purged_at=now, purge_rule=rule)
            )
            # The envelopes of its steps and evidence announcements carry its details.
            self._purge_messages(
                s,
                and_(
                    MessageRow.case_ref.in_(refs),
                    MessageRow.message_type.not_in(_FREE_TYPES),
                    MessageRow.state.in_((DELIVERED, FAILED, RECEIVED)),
                ),
                rule,
                now,
            )
        elif data in (Data.EVIDENCE, Data.ABANDONED_UPLOADS):
            values: dict[str, object] = {"key_sealed": b"", "purged_at": now, "purge_rule": rule}
            if data is Data.ABANDONED_UPLOADS:
                values |= {"state": SEND_FAILED, "last_error": "upload abandoned"}
            s.execute(update(AttachmentRow).where(AttachmentRow.id.in_(ids)).values(**values))
        else:
            rows = s.scalars(select(MatchRecordRow).where(MatchRecordRow.id.in_(ids))).all()
            for row in rows:
                row.purged_at, row.purge_rule = now, rule
            return [r.ref for r in rows]
        return []

    def _delete_blobs(self, ids: Sequence[int]) -> None:
        with self.db.read() as s:
            rows = s.scalars(select(AttachmentRow).where(AttachmentRow.id.in_(ids))).all()
            blobs = [(r.id, _blob_id(r)) for r in rows]
        for _, blob in blobs:
            self.blobs.delete(blob)
        with self.db.write() as s:
            s.execute(
                update(AttachmentRow)
                .where(AttachmentRow.id.in_([i for i, _ in blobs]))
                .values(blob_purged=True)
            )

    def finish_pending(self) -> None:
        """Finish what a purge cut off left undone: blobs of purged files still on disk,
        victim records marked purged still in the published index."""
        while True:
            with self.db.read() as s:
                ids = list(
                    s.scalars(
                        select(AttachmentRow.id)
                        .where(AttachmentRow.purged_at != 0, AttachmentRow.blob_purged.is_(False))
                        .limit(self.cfg.purge_batch)
                    ).all()
                )
            if not ids:
                break
            self._delete_blobs(ids)
        if self.remove_records is None:
            return
        with self.db.read() as s:
            refs = list(
                s.scalars(
                    select(MatchRecordRow.ref).where(
                        MatchRecordRow.purged_at != 0,
                        MatchRecordRow.removed.is_(False),
                        MatchRecordRow.updated_at <= MatchRecordRow.purged_at,
                    )
                ).all()
            )
        if refs:
            self.remove_records(refs)


# -- legal hold ---------------------------------------------------------------------------


def place_hold(db: Database, officer: Officer, case_ref: str, reason: str) -> None:
    """Exempt a case from purge (a supervisor's decision; ledgered, the reason as a digest)."""
    reason = reason.strip()
    if not reason:
        raise InvalidFieldError("Field reason: a legal hold needs its reason.")
    if len(reason) > MAX_HOLD_REASON or any(ord(c) < 32 and c != "\n" for c in reason):
        raise InvalidFieldError(
            f"Field reason: at most {MAX_HOLD_REASON} characters, no control characters."
        )
    now = now_ms()
    with db.write() as s:
        row = row_of(s, case_ref, lock=True)
        if row.held_at:
            raise HoldStateError(
                f"Case {case_ref} is already on legal hold (placed by {row.held_by})."
            )
        if row.purged_at:
            raise HoldStateError(f"Case {case_ref}'s content was purged already.")
        row.held_at, row.held_by, row.hold_reason = now, officer.name, reason
        # The reason may name people: the ledger keeps its digest only.
        ledger.append(
            s,
            LedgerEntry.of(
                "case.hold_placed",
                now,
                case_ref=case_ref,
                officer=officer.name,
                reason_sha256=hashlib.sha256(reason.encode()).hexdigest(),
            ),
        )
    log.info("legal_hold_placed", case_ref=case_ref, officer=officer.name)


def release_hold(db: Database, officer: Officer, case_ref: str) -> None:
    """Lift a legal hold: the case is purged again once its periods run out (ledgered)."""
    now = now_ms()
    with db.write() as s:
        row = row_of(s, case_ref, lock=True)
        if not row.held_at:
            raise HoldStateError(f"Case {case_ref} is not on legal hold.")
        row.held_at, row.held_by, row.hold_reason = 0, "", ""
        ledger.append(
            s,
            LedgerEntry.of("case.hold_released", now, case_ref=case_ref, officer=officer.name),
        )
    log.info("legal_hold_released", case_ref=case_ref, officer=officer.name)


def record_remover(matching: MatchDesk, chunk: int = 1000) -> Callable[[list[str]], object]:
    """Removal of victim records through the matching desk's own load path (tombstones in
    the published index, a `match.records_loaded` entry by officer `retention`)."""
    officer = Officer(name=RETENTION_OFFICER, role="supervisor")

    def remove(refs: list[str]) -> None:
        for i in range(0, len(refs), chunk):
            part = refs[i : i + chunk]
            matching.load(officer, iter([mpb.LoadRecordsRequest(remove=part)]))

    return remove
