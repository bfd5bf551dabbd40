"""Retention purge and legal hold (node/services/retention.py) on in-process nodes
(tests/node/sim_peer.py): what a purge deletes, what it keeps, how the purged item reads,
what a hold exempts, and that a purge cut off before its blobs went is finished."""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sim_peer import GB, NG, MakeNetwork, SimNode, submit_note, wait_for
from sqlalchemy import select

from exchange import forms
from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange._proto.mlax.v1 import officer_pb2 as opb
from exchange.encoding import now_ms
from exchange.errors import MlaxError
from exchange.retention import PurgedError, purged_text
from node.config import RetentionSection
from node.devtools.databases import TEST_PG_ENV, pg_database
from node.services.evidence_files import _blob_id
from node.services.forwarding import forward
from node.services.messages import DELIVERED, Officer
from node.services.retention import (
    HoldStateError,
    RetentionDesk,
    place_hold,
    record_remover,
    release_hold,
)
from node.storage.blobs import LocalBlobStore
from node.storage.db import Database
from node.storage.models import (
    AttachmentRow,
    CaseRow,
    MatchRecordRow,
    MessageContentRow,
    MessageRow,
)

FORM_FILE = Path(__file__).resolve().parents[2] / "deploy" / "forms" / "mla-request.toml"
SECOND = 1000
LATER = 10 * SECOND  # "now" for a purge: well past a 1-second period
SUPERVISOR = Officer(name="gb-supervisor", role="supervisor")


def _desk(node: SimNode, **periods: float) -> RetentionDesk:
    return RetentionDesk(node.db, node.attachments.blobs, RetentionSection(**periods))


def _purges(node: SimNode) -> list[dict[str, Any]]:
    out = []
    for row in node.store.entries(0, node.store.size()):
        doc = json.loads(row.entry or b"{}")
        if doc.get("kind") == "retention.purged":
            out.append(doc)
    return out


def _delivered(net: dict[str, SimNode]) -> str:
    gb = net[GB]
    message_id = submit_note(gb, NG, "Shipment 4471")
    gb.start()
    wait_for(
        lambda: (
            gb.core.get(gb.officer, opb.GetMessageRequest(message_id=message_id)).summary.state
            == opb.DELIVERY_STATE_DELIVERED
        )
    )
    return message_id


def test_delivered_message_content_is_purged_on_both_nodes_and_reads_as_purged(
    sim_network: MakeNetwork,
) -> None:
    net = sim_network()
    gb, ng = net[GB], net[NG]
    message_id = _delivered(net)
    ask = opb.GetMessageRequest(message_id=message_id, include_content=True)

    # Within the period nothing goes, and a dry run changes nothing.
    assert _desk(gb, message_content_seconds=3600).purge()[0].count == 0
    dry = _desk(gb, message_content_seconds=1).purge(now_ms() + LATER, dry_run=True)
    assert dry[0].count == 1
    assert gb.core.get(gb.officer, ask).content.subject == "Shipment 4471"

    for node in (gb, ng):
        [done, *_] = _desk(node, message_content_seconds=1).purge(now_ms() + LATER)
        assert (done.data, done.count, done.rule) == ("message_content", 1, "message_content:1s")
        view = node.core.get(node.officer, ask)
        assert not view.HasField("content")
        assert view.purge_rule == "message_content:1s"
        assert purged_text(view.purged_at, view.purge_rule).startswith("purged on ")
        # What the audit needs stays: the envelope digest, the receipt, the ledger.
        assert view.evidence.envelope_digest
        assert view.evidence.receipt
        [entry] = _purges(node)
        assert (entry["data"], entry["count"], entry["rule"]) == (
            "message_content",
            1,
            "message_content:1s",
        )
        with node.db.read() as s:
            assert s.scalars(select(MessageContentRow)).all() == []
    # A second run finds nothing more, and ledgers nothing.
    assert _desk(gb, message_content_seconds=1).purge(now_ms() + LATER)[0].count == 0
    assert len(_purges(gb)) == 1
    # A purged message cannot be forwarded, and says why.
    with pytest.raises(PurgedError, match=r"purged on .* under retention rule message_content:1s"):
        forward(ng.core, ng.officer, message_id, GB, "fyi")


def _closed_case_with_file(node: SimNode) -> tuple[str, AttachmentRow]:
    """A case of `node` closed (set directly: the purge reads only the closed state and
    its time), with a file of 3 bytes in the blob store."""
    form = forms.form_from_mapping(
        forms.CaseType.MLA, tomllib.loads(FORM_FILE.read_text(encoding="utf-8")), now_ms=now_ms()
    )
    ref = node.cases.create(node.officer, cpb.CreateCaseRequest(form=form))
    with node.db.write() as s:
        case = s.scalars(select(CaseRow).where(CaseRow.case_ref == ref)).one()
        case.state, case.updated_at = "closed", now_ms()
        row = AttachmentRow(
            attachment_id=b"\x01" * 16,
            direction="in",
            peer=NG,
            case_ref=ref,
            state="available",
            size=3,
            chunk_size=65536,
            total_chunks=1,
            confirmed_chunks=1,
            key_sealed=node.core.seal_to_self(b"key"),
            created_at=now_ms(),
        )
        s.add(row)
        s.flush()
        s.expunge(row)
    writer = node.attachments.blobs.open_append(_blob_id(row), 0)
    writer.write(b"abc")
    writer.sync()
    writer.close()
    return ref, row


def test_a_held_case_is_kept_and_purged_once_released(sim_network: MakeNetwork) -> None:
    gb = sim_network()[GB]
    ref, file = _closed_case_with_file(gb)
    desk = _desk(gb, case_content_seconds=1, evidence_seconds=1)

    place_hold(gb.db, SUPERVISOR, ref, "Court order 2026/17")
    with pytest.raises(HoldStateError):
        place_hold(gb.db, SUPERVISOR, ref, "again")
    assert [p.count for p in desk.purge(now_ms() + LATER)][:2] == [0, 0]
    assert gb.cases.view(gb.officer, ref, True).HasField("form")
    # The reason may name people: shown to whoever may read the case, not to an auditor,
    # who sees that the case is held, when and by whom.
    listed = gb.cases.list_cases(gb.officer, cpb.ListCasesRequest()).cases
    assert [c.hold_reason for c in listed if c.case_ref == ref] == ["Court order 2026/17"]
    auditor = Officer(name="gb-auditor", role="auditor")
    (seen,) = [
        c for c in gb.cases.list_cases(auditor, cpb.ListCasesRequest()).cases if c.case_ref == ref
    ]
    assert (seen.held_by, seen.hold_reason) == ("gb-supervisor", "")
    assert gb.cases.view(auditor, ref).summary.hold_reason == ""

    release_hold(gb.db, SUPERVISOR, ref)
    with pytest.raises(HoldStateError):
        release_hold(gb.db, SUPERVISOR, ref)
    done = {p.data.value: p.count for p in desk.purge(now_ms() + LATER)}
    assert done["case_content"] == 1
    assert done["evidence"] == 1
    view = gb.cases.view(gb.officer, ref, True, gb.attachments.list_for_case)
    assert not view.HasField("form")
    assert view.summary.purge_rule == "case_content:1s"
    [info] = view.attachments
    assert info.purge_rule == "evidence:1s"
    assert gb.attachments.blobs.size(_blob_id(file)) == 0
    kinds = [json.loads(r.entry or b"{}")["kind"] for r in gb.store.entries(0, gb.store.size())]
    assert kinds.count("case.hold_placed") == 1
    assert kinds.count("case.hold_released") == 1
    with pytest.raises(MlaxError, match=r"purged on .* under retention rule evidence:1s"):
        gb.attachments.download(gb.officer, apb.DownloadRequest(attachment_id=info.attachment_id))


def test_a_purge_cut_off_before_its_blobs_went_is_finished_by_the_next(
    sim_network: MakeNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    gb = sim_network()[GB]
    _, file = _closed_case_with_file(gb)
    desk = _desk(gb, evidence_seconds=1)

    def crash(blob_id: str) -> None:
        raise KeyboardInterrupt  # the process dies between the commit and the deletion

    monkeypatch.setattr(gb.attachments.blobs, "delete", crash)
    with pytest.raises(KeyboardInterrupt):
        desk.purge(now_ms() + LATER)
    monkeypatch.undo()
    # Marked and ledgered together: the file already reads as purged, its blob waits.
    with gb.db.read() as s:
        row = s.get(AttachmentRow, file.id)
        assert row is not None
        assert row.purged_at
        assert not row.blob_purged
    assert gb.attachments.blobs.size(_blob_id(file)) == 3
    assert [p["count"] for p in _purges(gb)] == [1]
    done = desk.purge(now_ms() + LATER)
    assert done[0].count == 0  # nothing new: only finished
    assert gb.attachments.blobs.size(_blob_id(file)) == 0
    with gb.db.read() as s:
        row = s.get(AttachmentRow, file.id)
        assert row is not None
        assert row.blob_purged


def test_abandoned_uploads_are_cleaned_and_fresh_ones_kept(sim_network: MakeNetwork) -> None:
    gb = sim_network()[GB]
    ref, _ = _closed_case_with_file(gb)
    now = now_ms()
    with gb.db.write() as s:
        for i, touched in enumerate((now - 8 * 86_400_000, now)):
            s.add(
                AttachmentRow(
                    attachment_id=bytes([2 + i]) * 16,
                    direction="out",
                    peer=NG,
                    case_ref=ref + "-open",
                    state="uploading",
                    size=3,
                    chunk_size=65536,
                    total_chunks=1,
                    key_sealed=b"k",
                    created_at=touched,
                    touched_at=touched,
                    upload_id=f"upload-{i:04d}",
                    uploaded_by="gb-officer",
                )
            )
    [done] = _desk(gb).purge(now)  # the default: 7 days
    assert (done.data, done.count) == ("abandoned_uploads", 1)
    with gb.db.read() as s:
        states = sorted(
            (r.upload_id or "", r.state)
            for r in s.scalars(select(AttachmentRow).where(AttachmentRow.direction == "out"))
        )
    assert states == [("upload-0000", "failed"), ("upload-0001", "uploading")]


def test_an_unset_period_purges_nothing(sim_network: MakeNetwork) -> None:
    net = sim_network()
    _delivered(net)
    assert [p.data.value for p in _desk(net[GB]).purge(now_ms() + LATER)] == ["abandoned_uploads"]
    with net[GB].db.read() as s:
        assert s.scalars(select(MessageRow.state)).all() == [DELIVERED]


# -- both stores ---------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'node.db'}"
        return
    base = os.environ.get(TEST_PG_ENV)
    if not base:
        pytest.skip(f"{TEST_PG_ENV} is not set")
    with pg_database(base, "mlax_retention") as url:
        yield url


def test_the_purge_on_each_store(database_url: str, tmp_path: Path) -> None:
    """The purge's statements (closing times, holds, row locks on PostgreSQL) on both
    stores: a received note and a closed case's form and file go; a held case's stay."""
    db = Database(database_url)
    db.migrate()
    blobs = LocalBlobStore(tmp_path / "blobs")
    old = now_ms() - 3600 * SECOND
    try:
        with db.write() as s:
            for ref, held in (("GB-NCA-2026-00001", 0), ("GB-NCA-2026-00002", old)):
                s.add(
                    CaseRow(
                        case_ref=ref,
                        case_type="mla",
                        role="requesting",
                        requesting=GB,
                        requested=NG,
                        peer=NG,
                        urgency="ordinary",
                        state="closed",
                        opened_at=old,
                        updated_at=old,
                        form_sealed=b"sealed form",
                        form_digest=bytes(32),
                        held_at=held,
                        held_by="sup" if held else "",
                    )
                )
                s.add(
                    AttachmentRow(
                        attachment_id=ref[-1].encode() * 16,
                        direction="in",
                        peer=NG,
                        case_ref=ref,
                        state="available",
                        size=1,
                        chunk_size=65536,
                        total_chunks=1,
                        confirmed_chunks=1,
                        key_sealed=b"k",
                        created_at=old,
                    )
                )
            s.add(
                MessageRow(
                    message_id=bytes(16),
                    direction="in",
                    peer=NG,
                    message_type=1,
                    created_at=old,
                    expires_at=old,
                    envelope_digest=bytes(32),
                    state="received",
                    delivered_at=old,
                    content=MessageContentRow(envelope=b"sealed note"),
                )
            )
        desk = RetentionDesk(
            db,
            blobs,
            RetentionSection(message_content_seconds=1, case_content_seconds=1, evidence_seconds=1),
        )
        dry = {p.data.value: p.count for p in desk.purge(dry_run=True)}
        assert dry == {
            "message_content": 1,
            "case_content": 1,
            "evidence": 1,
            "abandoned_uploads": 0,
        }
        assert {p.data.value: p.count for p in desk.purge()} == dry
        with db.read() as s:
            assert s.scalars(select(MessageContentRow)).all() == []
            forms_left = dict(s.execute(select(CaseRow.case_ref, CaseRow.form_sealed)).all())
            keys_left = dict(
                s.execute(select(AttachmentRow.case_ref, AttachmentRow.key_sealed)).all()
            )
        assert forms_left == {"GB-NCA-2026-00001": b"", "GB-NCA-2026-00002": b"sealed form"}
        assert keys_left == {"GB-NCA-2026-00001": b"", "GB-NCA-2026-00002": b"k"}
        assert [p.count for p in desk.purge()] == [0, 0, 0, 0]
    finally:
        db.close()


# -- victim records ----------------------------------------------------------------------


def _person(given: str, family: str, dob: str) -> mpb.MatchPerson:
    return mpb.MatchPerson(given_name=given, family_name=family, date_of_birth=dob, sex="F")


def test_victim_records_past_retention_leave_the_published_index(
    sim_network: MakeNetwork,
) -> None:
    gb = sim_network()[GB]
    rows = [
        mpb.MatchRecordRow(
            ref="old-1", person=_person("Olena", "Shevchenko", "2001-11-03"), line=2
        ),
        mpb.MatchRecordRow(ref="fresh-1", person=_person("Amina", "Bello", "1999-02-14"), line=3),
    ]
    gb.matching.load(SUPERVISOR, iter([mpb.LoadRecordsRequest(rows=rows)]))
    later = now_ms() + LATER
    with gb.db.write() as s:  # "fresh-1" was updated just before the purge runs
        fresh = s.scalars(select(MatchRecordRow).where(MatchRecordRow.ref == "fresh-1")).one()
        fresh.updated_at = later
    desk = RetentionDesk(
        gb.db,
        gb.attachments.blobs,
        RetentionSection(victim_records_seconds=5),
        remove_records=record_remover(gb.matching),
    )
    done = {p.data.value: p.count for p in desk.purge(later)}
    assert done["victim_records"] == 1
    with gb.db.read() as s:
        state = {r.ref: (r.removed, r.record_sealed) for r in s.scalars(select(MatchRecordRow))}
    assert state["old-1"] == (True, b"")  # a tombstone: peers drop the handle
    assert state["fresh-1"][0] is False
    assert state["fresh-1"][1]
    purged = [p for p in _purges(gb) if p.get("data") == "victim_records"]
    assert len(purged) == 1
    assert purged[0]["count"] == 1
    # The removal went through the matching desk's own path, ledgered as the purge's.
    loads = [
        json.loads(r.entry or b"{}")
        for r in gb.store.entries(0, gb.store.size())
        if json.loads(r.entry or b"{}").get("kind") == "match.records_loaded"
    ]
    assert loads[-1]["officer"] == "retention"
    assert loads[-1]["removed"] == 1
    # A second run finds nothing more to do.
    assert {p.data.value: p.count for p in desk.purge(later)}["victim_records"] == 0
