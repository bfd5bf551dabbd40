"""The holder's key generations and loads (node/services/match_holder.py), in process: a load
is all or nothing, a rotation serves both generations during its overlap and then retires
the old one, a new token domain rotates at start, and a cut-off load or rotation is undone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from sim_peer import GB, NG, MakeNetwork
from sqlalchemy import select, text, update

from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange.errors import InvalidFieldError, Status
from exchange.matching import oprf
from exchange.matching.records import parse_csv_row
from exchange.matching.tokens import TOKEN_DOMAIN, record_tokens
from node.config import MatchingSection
from node.peers.client import PeerClient
from node.services import match_holder
from node.services.cases import CaseDesk
from node.services.matching import (
    DomainMismatchError,
    HolderBusyError,
    KeyRetiredError,
    MatchDesk,
    truncate,
)
from node.services.messages import NodeCore, Officer
from node.storage.db import Database
from node.storage.models import MatchKeyRow, MatchRecordRow, MatchStateRow, MatchValuesRow

OFFICER = Officer("ng-officer", "officer")
PEOPLE = [
    ("Blessing", "Okonkwo", "F", "1999-04-12"),
    ("Olena", "Shevchenko", "F", "2001-11-03"),
    ("Mohammed", "Al-Rashid", "M", "1995-07-30"),
]


class _Core:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.agency = "NG-NAPTIP"

    def seal_to_self(self, body: bytes) -> bytes:
        return body

    def open_from_self(self, data: bytes) -> bytes:
        return data


@pytest.fixture
def desk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MatchDesk]:
    monkeypatch.setattr(match_holder, "_LOAD_CHUNK", 2)  # several chunks from a few records
    db = Database(f"sqlite:///{tmp_path / 'holder.db'}")
    db.migrate()
    cfg = MatchingSection(encode_processes=1)
    d = MatchDesk(cast(NodeCore, _Core(db)), cfg, cast(PeerClient, None), cast(CaseDesk, None))
    try:
        yield d
    finally:
        d.close()
        db.close()


def _row(i: int, ref: str | None = None, given: str | None = None) -> mpb.MatchRecordRow:
    g, family, sex, dob = PEOPLE[i % len(PEOPLE)]
    person = mpb.MatchPerson(given_name=given or g, family_name=family, sex=sex, date_of_birth=dob)
    return mpb.MatchRecordRow(ref=ref or f"NG-{i}", person=person, line=i + 2)


def _load(desk: MatchDesk, *parts: list[mpb.MatchRecordRow]) -> mpb.LoadRecordsResponse:
    return desk.load(OFFICER, iter([mpb.LoadRecordsRequest(rows=p) for p in parts]))


def _index(desk: MatchDesk, key_id: str = "", since: int = 0, domain: int = TOKEN_DOMAIN):
    chunks = list(
        desk.index(
            "GB-NCA",
            mpb.MatchIndexRequest(key_id=key_id, since_version=since, token_domain=domain),
        )
    )
    return chunks[0], {e.handle: e.values for c in chunks for e in c.entries if not e.removed}


def _found(desk: MatchDesk, values: dict[bytes, bytes], i: int, key_id: str, domain: int):
    """The handles whose published values hold person i's first token, evaluated blindly
    under the generation (key_id, domain) as a querier would have it evaluated."""
    g, family, sex, dob = PEOPLE[i]
    fields = {"given_name": g, "family_name": family, "sex": sex, "date_of_birth": dob,
              "nationality": "", "place_of_birth": "", "ref": "q"}  # fmt: skip
    token = record_tokens(parse_csv_row(fields, 2))[0].value
    blind, element = oprf.blind(token)
    resp = desk.evaluate(
        "GB-NCA",
        mpb.MatchEvaluateRequest(
            query_id=os.urandom(16),
            blinded_elements=[element],
            key_id=key_id,
            token_domain=domain,
        ),
    )
    value = truncate(oprf.finalize(token, blind, resp.evaluated_elements[0]))
    packed = value.to_bytes(8, "big", signed=True)
    hits = {
        h for h, v in values.items() if any(v[j : j + 8] == packed for j in range(0, len(v), 8))
    }
    return resp, hits


def _kinds(desk: MatchDesk) -> list[str]:
    with desk.core.db.read() as s:
        return [k for (k,) in s.execute(text("SELECT kind FROM ledger_entries ORDER BY idx"))]


def test_a_load_is_all_or_nothing_and_one_cut_off_is_undone(desk: MatchDesk) -> None:
    first = _load(desk, [_row(0), _row(1)])
    assert (first.added, first.index_version) == (2, 1)
    # A bad row in the third part: the first parts were already encoded and written
    # (chunks of 2), yet nothing of this load is kept and the version does not move.
    bad = _row(2, ref="NG-bad")
    bad.person.date_of_birth = "not a date"
    with pytest.raises(InvalidFieldError):
        _load(desk, [_row(2, "NG-2"), _row(0, "NG-3")], [_row(1, "NG-4"), _row(2, "NG-5")], [bad])
    head, published = _index(desk)
    assert (head.version, len(published)) == (1, 2)
    with desk.core.db.read() as s:
        assert s.scalar(select(MatchRecordRow.id).where(MatchRecordRow.ref == "NG-2")) is None
        assert s.get(MatchStateRow, 1).lease == ""  # type: ignore[union-attr]
    # A load whose process died: its rows of the unpublished version stay hidden from
    # peers, the lease blocks others for a while, then the next load undoes them.
    with desk.core.db.write() as s:
        ghost = MatchRecordRow(ref="NG-ghost", handle=os.urandom(16), record_sealed=b"x",
                               fingerprint=bytes(32), version=2, removed=False,
                               updated_at=0)  # fmt: skip
        s.add(ghost)
        s.execute(update(MatchStateRow).values(lease="load:dead", lease_at=match_holder.now_ms()))
    assert len(_index(desk)[1]) == 2
    with pytest.raises(HolderBusyError) as busy:
        _load(desk, [_row(2)])
    assert busy.value.status == Status.FAILED_PRECONDITION
    with desk.core.db.write() as s:
        s.execute(update(MatchStateRow).values(lease_at=0))  # not renewed for long
    again = _load(desk, [_row(2)])
    assert (again.added, again.records, again.index_version) == (1, 3, 2)
    with desk.core.db.read() as s:
        assert s.scalar(select(MatchRecordRow.id).where(MatchRecordRow.ref == "NG-ghost")) is None


def test_a_rotation_serves_both_generations_for_the_overlap_then_retires_the_old(
    desk: MatchDesk,
) -> None:
    _load(desk, [_row(0), _row(1)])
    old_id, _ = desk.key()
    head, old_values = _index(desk)
    rotation = desk.rotate(Officer("ng-sup", "supervisor"), overlap_hours=1)
    assert rotation.finished.wait(60)
    assert rotation.error is None, rotation.error
    assert (rotation.encoded, rotation.done) == (2, True)
    new_id, _ = desk.key()
    assert new_id == rotation.new_key_id != old_id
    # A querier whose copy is of the old generation keeps it: changes only, no reset, and
    # its evaluations under the old key still find the record.
    old_head, _ = _index(desk, old_id, head.version)
    assert (old_head.key_id, old_head.reset, len(old_head.entries)) == (old_id, False, 0)
    resp, hits = _found(desk, old_values, 0, old_id, TOKEN_DOMAIN)
    assert (resp.key_id, len(hits)) == (old_id, 1)
    # A first copy gets the new generation, whose values differ and also find it.
    new_head, new_values = _index(desk)
    assert (new_head.key_id, new_head.reset) == (new_id, True)
    assert set(new_values) == set(old_values)  # the same handles
    assert not set(new_values.values()) & set(old_values.values())
    resp, new_hits = _found(desk, new_values, 0, "", TOKEN_DOMAIN)
    assert (resp.key_id, new_hits) == (new_id, hits)
    # A record loaded during the overlap is published in both generations.
    _load(desk, [_row(2)])
    _, old_now = _index(desk, old_id)
    assert (len(old_now), len(_index(desk)[1])) == (3, 3)
    # The overlap ends: the old key is refused by name, a sync of it resets to the new.
    with desk.core.db.write() as s:
        s.execute(update(MatchKeyRow).where(MatchKeyRow.key_id == old_id).values(retire_at=1))
    with pytest.raises(KeyRetiredError) as retired:
        _found(desk, old_now, 0, old_id, TOKEN_DOMAIN)
    assert retired.value.status == Status.FAILED_PRECONDITION
    assert f"its current key is {new_id}" in retired.value.message
    assert _index(desk, old_id, new_head.version)[0].reset
    desk.retire_due()  # (a background retirement may have done it already)
    with desk.core.db.read() as s:
        assert s.get(MatchKeyRow, old_id) is None
        left = s.scalars(select(MatchValuesRow.key_id).distinct()).all()
        assert left == [new_id]
    kinds = _kinds(desk)
    assert kinds.index("match.key_rotated") < kinds.index("match.key_retired")


def test_a_new_token_domain_rotates_at_start_and_a_foreign_domain_is_refused(
    desk: MatchDesk,
) -> None:
    _load(desk, [_row(0), _row(1)])
    old_id, _ = desk.key()
    # As if the values were made by a node of the previous token rule.
    with desk.core.db.write() as s:
        s.execute(update(MatchKeyRow).values(token_domain=TOKEN_DOMAIN - 1))
    desk.start()
    deadline = match_holder.now_ms() + 60_000
    while desk.key()[0] == old_id and match_holder.now_ms() < deadline:
        desk._closing.wait(0.05)
    new_id, _ = desk.key()
    assert new_id != old_id
    # Each querier is served the generation of its own domain during the overlap.
    old_head, _ = _index(desk, domain=TOKEN_DOMAIN - 1)
    assert (old_head.key_id, old_head.token_domain) == (old_id, TOKEN_DOMAIN - 1)
    new_head, new_values = _index(desk, old_id, domain=TOKEN_DOMAIN)
    assert (new_head.key_id, new_head.token_domain, new_head.reset) == (new_id, TOKEN_DOMAIN, True)
    resp, hits = _found(desk, new_values, 1, "", TOKEN_DOMAIN)
    assert (resp.key_id, resp.token_domain, len(hits)) == (new_id, TOKEN_DOMAIN, 1)
    # A domain nobody publishes: refused before any quota is spent, in one sentence.
    with pytest.raises(DomainMismatchError) as refused:
        _found(desk, new_values, 1, "", TOKEN_DOMAIN + 1)
    assert refused.value.message.startswith(
        f"NG-NAPTIP publishes token domain {TOKEN_DOMAIN}; this query uses domain "
        f"{TOKEN_DOMAIN + 1}:"
    )
    with pytest.raises(DomainMismatchError):
        _index(desk, domain=TOKEN_DOMAIN + 1)
    # The old generation's domain cannot be computed any more: a record loaded now is
    # not in it (and is dropped, not stale, for a querier of that domain).
    _load(desk, [_row(2)])
    assert len(_index(desk, domain=TOKEN_DOMAIN - 1)[1]) == 2
    assert len(_index(desk)[1]) == 3


def test_a_rotation_cut_off_halfway_leaves_the_old_key_current(desk: MatchDesk) -> None:
    _load(desk, [_row(0), _row(1), _row(2)])
    old_id, _ = desk.key()
    # What a node killed during a rotation leaves: a generation not ready, part of its
    # values, and the rotation's lease, no longer renewed.
    with desk.core.db.write() as s:
        s.add(MatchKeyRow(key_id="half", key_sealed=oprf.generate_key(), created_at=0,
                          active=False, token_domain=TOKEN_DOMAIN, ready=False))  # fmt: skip
        s.add(MatchValuesRow(key_id="half", record_id=1, values=b"\x00" * 8))
        s.execute(update(MatchStateRow).values(lease="rotate:dead", lease_at=1))
    head, _ = _index(desk, domain=TOKEN_DOMAIN)
    assert head.key_id == old_id  # peers never see it
    rotation = desk.rotate(None, overlap_hours=1)  # takes the stale lease over
    assert rotation.finished.wait(60)
    assert rotation.error is None, rotation.error
    with desk.core.db.read() as s:
        assert s.get(MatchKeyRow, "half") is None
        assert s.scalar(select(MatchValuesRow).where(MatchValuesRow.key_id == "half")) is None
    assert desk.key()[0] == rotation.new_key_id


def test_a_holder_of_another_token_domain_is_an_error_at_the_querier_never_a_no_hit(
    sim_network: MakeNetwork,
) -> None:
    net = sim_network()
    gb, ng = net[GB], net[NG]
    ng.matching.load(OFFICER, iter([mpb.LoadRecordsRequest(rows=[_row(0), _row(1)])]))
    g, family, sex, dob = PEOPLE[0]
    ask = mpb.MatchQueryRequest(
        queries=[mpb.MatchPerson(given_name=g, family_name=family, sex=sex, date_of_birth=dob)],
        peers=[NG],
    )
    officer = Officer("gb-officer", "officer")
    (before,) = gb.matching.query(officer, ask)
    assert (before.peer, before.result) == (NG, "hit")
    # NG now publishes under a newer token rule (as a node upgraded before GB would).
    with ng.db.write() as s:
        s.execute(update(MatchKeyRow).values(token_domain=TOKEN_DOMAIN + 1))
    (after,) = gb.matching.query(officer, ask)
    assert after.result == "error"
    assert after.detail.startswith(
        f"{NG} publishes token domain {TOKEN_DOMAIN + 1}; this query uses domain {TOKEN_DOMAIN}:"
    )
