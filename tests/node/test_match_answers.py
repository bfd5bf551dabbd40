"""Which record a hit names: the best band, and among records of that band the one that
shares the most with the query (node/services/match_querier.py). A near-namesake of the
same band (one letter off in the family name) must not take the reference from the person
sought, whatever the random handles' order. In process: NG holds, GB asks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sim_peer import GB, NG, MakeNetwork, SimNode
from sqlalchemy import select

from exchange._proto.mlax.v1 import matching_pb2 as mpb
from node.services.match_disclosure import parse_reference
from node.services.messages import Officer
from node.storage.models import MatchRecordRow

NG_OFFICER = Officer("ng-officer", "officer")
GB_OFFICER = Officer("gb-officer", "officer")
# (given, family, date of birth, the family name one letter off): each near-namesake gets
# the same band (strong) for the exact query as the person, on less shared evidence.
PEOPLE = [
    ("Olena", "Shevchenko", "2001-11-03", "Shevchenao"),
    ("Amina", "Bello", "1999-02-14", "Belao"),
    ("Nguyen", "Thi Lan", "1995-06-21", "Thi Len"),
    ("Maria", "Ionescu", "1999-07-30", "Ionesau"),
    ("Fatima", "Haddad", "1988-12-05", "Hadded"),
    ("Oksana", "Kovalenko", "1992-03-17", "Kovalenao"),
    ("Grace", "Okafor", "1990-09-09", "Okafar"),
    ("Svetlana", "Petrova", "1985-01-25", "Petroaa"),
]


def _person(given: str, family: str, dob: str) -> mpb.MatchPerson:
    return mpb.MatchPerson(given_name=given, family_name=family, date_of_birth=dob, sex="F")


@pytest.fixture
def net(sim_network: MakeNetwork) -> Iterator[dict[str, SimNode]]:
    network = sim_network()
    yield network
    network[GB].matching.stop_syncs()
    network[NG].matching.close()


def test_a_hit_names_the_record_that_shares_most_not_a_near_namesake_of_the_same_band(
    net: dict[str, SimNode],
) -> None:
    gb, ng = net[GB], net[NG]
    rows = []
    for i, (given, family, dob, near) in enumerate(PEOPLE):
        rows.append(mpb.MatchRecordRow(ref=f"P-{i}", person=_person(given, family, dob), line=0))
        rows.append(mpb.MatchRecordRow(ref=f"V-{i}", person=_person(given, near, dob), line=0))
    ng.matching.load(NG_OFFICER, iter([mpb.LoadRecordsRequest(rows=rows)]))
    with ng.db.read() as s:
        ref_of = {bytes(r.handle): r.ref for r in s.scalars(select(MatchRecordRow))}

    ask = mpb.MatchQueryRequest(
        queries=[_person(g, f, d) for g, f, d, _ in PEOPLE], peers=[NG], timeout_ms=20_000
    )
    answers = sorted(gb.matching.query(GB_OFFICER, ask), key=lambda a: a.query)
    assert [(a.result, a.band) for a in answers] == [("hit", "strong")] * len(PEOPLE)
    named = [ref_of[parse_reference(a.reference)[1]] for a in answers]
    # With 8 pairs, picking by handle order alone would name every person with chance 1/256.
    assert named == [f"P-{i}" for i in range(len(PEOPLE))]
