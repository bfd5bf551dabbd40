"""The federation side of messages: envelopes a peer delivers, one or a batch per call.

`receive_many` is what `Deliver` (one envelope) and `DeliverBatch` (several) do, with
each envelope handled exactly as docs/protocol.md 11.4 says; only the work is arranged
for speed:

- the crypto (authenticate, decrypt, inner signature) and the receive hooks' checks of
  the plaintext run before the write lock, one envelope after another;
- ONE transaction (a `GroupCommit` job, so concurrent `Deliver` calls still share a
  commit and its fsync) stores every envelope that passed: one SELECT of the replay set
  for all their message ids (only the digest and receipt columns), the `message.received`
  entries with one `ledger.append_many`, and the `messages` and `message_contents` rows
  with one Core statement per table;
- an envelope with a receive hook (case steps, evidence) is stored alone in its own
  savepoint, in batch order, so its hook's refusal rolls back that envelope only and a
  later step of the same case sees an earlier one;
- two replicas storing the same envelope at once (PostgreSQL) meet at the unique index
  of the replay set: the one that loses rolls its job back and runs it again, and its
  replay lookup then answers with what the other stored;
- checks after the peer check (step 3) run before the replay lookup: a re-delivery
  that now fails them (expired, its key revoked since) is recognised afterwards and
  still gets its original receipt, so the answers are those of the specified order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import structlog
from sqlalchemy import Connection, Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from exchange.encoding import now_ms
from exchange.envelope import (
    Envelope,
    Header,
    Sender,
    authenticate,
    codes_text,
    open_authenticated,
)
from exchange.errors import MlaxError, ReplayError
from exchange.ledger_entry import LedgerEntry
from exchange.receipt import Receipt, ReceiptBody, issue_receipt
from node.services.messages import IN, RECEIVED, NodeCore, PeerMismatchError
from node.storage import ledger
from node.storage.models import MessageContentRow, MessageRow

log = structlog.get_logger("mlax.node")

_MESSAGES = cast(Table, MessageRow.__table__)
_CONTENTS = cast(Table, MessageContentRow.__table__)
# The replay set of one peer for some message ids: only what the answer needs.
_PRIOR = select(_MESSAGES.c.message_id, _MESSAGES.c.envelope_digest, _MESSAGES.c.receipt).where(
    _MESSAGES.c.direction == IN,
    _MESSAGES.c.peer == bindparam("peer"),
    _MESSAGES.c.message_id.in_(bindparam("ids", expanding=True)),
)
_MESSAGE_INSERT = insert(_MESSAGES)
# The content row names its message by primary key, found through the replay set's
# unique index: one executemany, no RETURNING (whose row order SQLite does not promise).
_CONTENT_INSERT = insert(_CONTENTS).from_select(
    ["message_pk", "envelope"],  # self_copy stays NULL: inbound messages have none
    select(_MESSAGES.c.id, bindparam("envelope", type_=_CONTENTS.c.envelope.type)).where(
        _MESSAGES.c.direction == IN,
        _MESSAGES.c.peer == bindparam("peer"),
        _MESSAGES.c.message_id == bindparam("mid"),
    ),
)

Result = Receipt | MlaxError
Prior = tuple[bytes, bytes | None]  # envelope digest, receipt


@dataclass(slots=True)
class _Verified:
    """An envelope that passed every check before the write lock."""

    envelope: Envelope
    header: Header
    digest: bytes
    apply: Callable[[Session], None] | None


def receive_many(core: NodeCore, datas: Sequence[bytes], peer: str) -> list[Result]:
    """Verify envelopes from `peer`, store those that pass with their ledger entries in one
    transaction, and answer each: its receipt (the original one for a re-delivery) or the
    error that refused it. Only an unexpected failure (storage) raises, for the call."""
    directory = core.directory.current()
    now = now_ms()
    results: list[Result | None] = [None] * len(datas)
    verified: list[tuple[int, _Verified]] = []
    # Refused after step 3: a re-delivery among them still gets its receipt.
    doubtful: list[tuple[int, Header, bytes, MlaxError]] = []
    recipient = core.identity.recipient()
    for pos, data in enumerate(datas):
        try:
            envelope, header, card = authenticate(data, directory, core.limits)
        except MlaxError as e:
            results[pos] = e
            continue
        if header.sender != peer:
            results[pos] = PeerMismatchError(
                f"Message {header.message_id_text} names sender {header.sender}, but was "
                f"delivered by {peer}."
            )
            continue
        digest = envelope.digest
        try:
            opened = open_authenticated(
                envelope,
                header,
                card,
                directory,
                recipient,
                _NOT_SEEN,  # the replay check that counts is made under the write lock
                now_ms=now,
                limits=core.limits,
            )
            hook = core.receive_hooks.get(header.message_type)
            # Case and evidence envelopes change state with their storage: the hook checks
            # the plaintext now and applies it in the storing transaction (or refuses).
            apply = hook(opened) if hook is not None else None
        except MlaxError as e:
            doubtful.append((pos, header, digest, e))
            continue
        del opened  # verified; the plaintext is not kept in memory or on disk
        verified.append((pos, _Verified(envelope, header, digest, apply)))
    stored: list[tuple[Header, int]] = []
    if verified:
        sender = core._sender(directory)
        items = [v for _, v in verified]

        def store(s: Session) -> list[Result]:
            stored.clear()
            return _Store(s, peer, now, sender, stored).run(items)

        try:
            answers = core.commits.run(store)
        except IntegrityError:
            # Another replica stored one of them after the replay lookup (on PostgreSQL;
            # SQLite's write lock rules it out): nothing of this call was kept, and the
            # lookup now finds what that replica stored, so the second run answers as it.
            answers = core.commits.run(store)
        for (pos, _), result in zip(verified, answers, strict=True):
            results[pos] = result
    if doubtful:
        with core.db.read() as s:
            prior = _priors(s.connection(), peer, [h.message_id for _, h, _, _ in doubtful])
        for pos, header, digest, error in doubtful:
            known = prior.get(header.message_id)
            results[pos] = error if known is None else _answer(known, header, digest)
    if stored:
        with core.inbound:
            core.inbound.notify_all()
        _log_stored(peer, stored)
    answers = [r for r in results if r is not None]
    if len(answers) != len(datas):
        raise RuntimeError("an envelope was left without an answer")
    return answers


class _NotSeen:
    """For `open_authenticated`: replays are decided under the write lock."""

    def seen(self, sender: str, message_id: bytes) -> bool:
        return False


_NOT_SEEN = _NotSeen()


def _priors(conn: Connection, peer: str, ids: list[bytes]) -> dict[bytes, Prior]:
    rows = conn.execute(_PRIOR, {"peer": peer, "ids": ids})
    return {bytes(mid): (bytes(digest), receipt) for mid, digest, receipt in rows}


def _answer(prior: Prior, header: Header, digest: bytes) -> Result:
    """The answer to an envelope whose message id is stored: the original receipt if it is
    the same envelope, else a replay."""
    if prior[0] == digest and prior[1] is not None:
        return Receipt.from_bytes(prior[1])
    return ReplayError(
        f"Message id {header.message_id_text} was already used for another envelope."
    )


def _log_stored(peer: str, stored: list[tuple[Header, int]]) -> None:
    # One line per call, never content: ids and ledger indexes only.
    if len(stored) == 1:
        header, idx = stored[0]
        log.info(
            "envelope_received", peer=peer, message_id=header.message_id_text, ledger_index=idx
        )
        return
    log.info(
        "envelopes_received",
        peer=peer,
        count=len(stored),
        message_ids=[h.message_id_text for h, _ in stored],
        ledger_indexes=[i for _, i in stored],
    )


class _Store:
    """One transaction's work: the envelopes of one call, in order."""

    def __init__(
        self, s: Session, peer: str, now: int, sender: Sender, stored: list[tuple[Header, int]]
    ) -> None:
        self.s = s
        self.conn = s.connection()
        self.peer = peer
        self.now = now
        self.sender = sender
        self.stored = stored

    def run(self, items: list[_Verified]) -> list[Result]:
        # Under the write lock: a concurrent delivery may have just stored one of them.
        self.prior = _priors(self.conn, self.peer, [v.header.message_id for v in items])
        out: list[Result | None] = [None] * len(items)
        run: list[int] = []  # hookless envelopes not stored yet, stored together
        pending: set[bytes] = set()
        for k, item in enumerate(items):
            mid = item.header.message_id
            if mid in pending:  # the same id earlier in this call: answer as it ends
                self._flush(items, run, out)
                run, pending = [], set()
            known = self.prior.get(mid)
            if known is not None:
                out[k] = _answer(known, item.header, item.digest)
            elif item.apply is None:
                run.append(k)
                pending.add(mid)
            else:
                self._flush(items, run, out)
                run, pending = [], set()
                out[k] = self._one(item)
        self._flush(items, run, out)
        answers = [r for r in out if r is not None]
        if len(answers) != len(items):
            raise RuntimeError("an envelope was left without an answer")
        return answers

    def _flush(self, items: list[_Verified], run: list[int], out: list[Result | None]) -> None:
        if not run:
            return
        batch = [items[k] for k in run]
        # No savepoint: nothing here refuses one envelope alone (an IntegrityError, a
        # concurrent replica's insert, fails the whole job and `receive_many` runs it again).
        receipts = self._insert(batch)
        for k, item, receipt in zip(run, batch, receipts, strict=True):
            out[k] = receipt[0]
            self._stored(item, receipt)

    def _one(self, item: _Verified) -> Result:
        """Store one envelope in its own savepoint: its hook may refuse it alone."""
        try:
            with self.s.begin_nested():
                [receipt] = self._insert([item])
        except MlaxError as e:
            return e
        except IntegrityError:
            # Stored by a concurrent delivery on another thread or replica: answer as it did.
            mid = item.header.message_id
            known = _priors(self.conn, self.peer, [mid]).get(mid)
            if known is None:
                raise
            self.prior[mid] = known
            return _answer(known, item.header, item.digest)
        self._stored(item, receipt)
        return receipt[0]

    def _stored(self, item: _Verified, receipt: tuple[Receipt, bytes, int]) -> None:
        self.prior[item.header.message_id] = (item.digest, receipt[1])
        self.stored.append((item.header, receipt[2]))

    def _insert(self, items: list[_Verified]) -> list[tuple[Receipt, bytes, int]]:
        """Ledger, receipt and store `items` (the caller holds a savepoint): each one's
        receipt, its bytes and its ledger index. A hook runs after its envelope's ledger
        entry, so its own entries follow that one."""
        now, sender = self.now, self.sender
        indexes = ledger.append_many(
            self.s,
            [
                LedgerEntry.of(
                    "message.received",
                    now,
                    message_id=v.header.message_id_text,
                    sender=v.header.sender,
                    envelope_digest=v.digest.hex(),
                    message_type=v.header.message_type.name,
                )
                for v in items
            ],
        )
        signed = [
            issue_receipt(
                ReceiptBody(
                    message_id=v.header.message_id,
                    sender=v.header.sender,
                    receiver=sender.agency_id,
                    envelope_digest=v.digest,
                    received_at=now,
                    receiver_key_id=sender.key_id,
                    ledger_index=idx,
                ),
                sender.signing_key,
            )
            for v, idx in zip(items, indexes, strict=True)
        ]
        receipts = [(r, r.to_bytes(), idx) for r, idx in zip(signed, indexes, strict=True)]
        for v in items:
            if v.apply is not None:
                v.apply(self.s)
        self.conn.execute(
            _MESSAGE_INSERT,
            [
                {
                    "message_id": v.header.message_id,
                    "direction": IN,
                    "peer": v.header.sender,
                    "message_type": v.header.message_type.value,
                    "case_ref": v.header.case_ref,
                    "created_at": v.header.created_at,
                    "expires_at": v.header.expires_at,
                    "envelope_digest": v.digest,
                    "state": RECEIVED,
                    "attempts": 0,
                    "next_attempt_at": 0,
                    "lease_until": 0,
                    "last_error": "",
                    "receipt": r[1],
                    "delivered_at": now,
                    "read_at": 0,
                    "submitted_by": None,
                    "idempotency_key": None,
                    "in_reply_to": v.header.in_reply_to,
                    "handling_codes": codes_text(v.header.handling_codes),
                }
                for v, r in zip(items, receipts, strict=True)
            ],
        )
        self.conn.execute(
            _CONTENT_INSERT,
            [
                {
                    "peer": v.header.sender,
                    "mid": v.header.message_id,
                    "envelope": v.envelope.to_bytes(),
                }
                for v in items
            ],
        )
        return receipts
