"""A querier's copy of a holder's index cut off half way resumes right after the last record
it took, says "N of M records" meanwhile, and during a key rotation's overlap keeps its
complete copy of the old generation fresh while it copies the new one
(node/services/match_querier.py, match_holder.py `index`; protocol-matching.md 4.3).
In process: two SimNodes, NG holding, GB asking."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from sim_peer import GB, NG, MakeNetwork, SimNode

from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange.errors import MlaxError
from exchange.matching.tokens import TOKEN_DOMAIN
from node.services import match_holder
from node.services.match_replica import BUILDING, COMPLETE
from node.services.messages import Officer

CHUNK = 4
OFFICER = Officer("ng-officer", "officer")
GB_OFFICER = Officer("gb-officer", "officer")


def _person(i: int) -> mpb.MatchPerson:
    """A person no other i shares a name part or a birth-year window with."""
    a, b = "bcdfghjklmnprstvz"[i % 17], "bcdfghjklmnprstvz"[i // 17]
    return mpb.MatchPerson(
        given_name=f"{a.upper()}a{b}ina",
        family_name=f"{b.upper()}o{a}enko",
        sex="F",
        date_of_birth=f"{1930 + 2 * i}-04-12",
    )


def _load(node: SimNode, first: int, count: int, remove: tuple[str, ...] = ()) -> None:
    rows = [
        mpb.MatchRecordRow(ref=f"NG-{i}", person=_person(i), line=i + 2)
        for i in range(first, first + count)
    ]
    node.matching.load(OFFICER, iter([mpb.LoadRecordsRequest(rows=rows, remove=list(remove))]))


class _Tap:
    """NG's index as GB receives it: the requests, the entries sent, and a cut after
    `cut` chunks of the streams `when` picks."""

    def __init__(self, ng: SimNode, monkeypatch: pytest.MonkeyPatch) -> None:
        self.requests: list[mpb.MatchIndexRequest] = []
        self.sent = 0
        self.records: list[int] = []
        self.cut: int | None = None
        self.when = lambda req: True
        serve = ng.matching.index

        def index(peer: str, req: mpb.MatchIndexRequest) -> Iterator[mpb.MatchIndexChunk]:
            self.requests.append(req)
            cut = self.cut if self.when(req) else None
            for i, chunk in enumerate(serve(peer, req)):
                if cut is not None and i >= cut:
                    raise MlaxError("The stream broke.")
                if i == 0:
                    self.records.append(chunk.records)
                self.sent += len(chunk.entries)
                yield chunk

        monkeypatch.setattr(ng.matching, "index", index)


@pytest.fixture
def net(sim_network: MakeNetwork, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, SimNode]]:
    monkeypatch.setattr(match_holder, "_INDEX_CHUNK", CHUNK)
    network = sim_network()
    yield network
    network[GB].matching.stop_syncs()
    network[NG].matching.close()


def test_a_cut_off_first_copy_resumes_after_its_last_record_and_says_n_of_m(
    net: dict[str, SimNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    gb, ng = net[GB], net[NG]
    _load(ng, 0, 30)  # one version, as a large first load
    tap = _Tap(ng, monkeypatch)
    tap.cut = 3
    with pytest.raises(grpc.RpcError):
        gb.matching.sync(NG, 30)
    done, making = gb.matching.replicas.copies(NG)
    assert done is None
    assert making is not None
    assert (making.records, making.progress()) == (12, "12 of 30 records")

    # Meanwhile NG changes records on both sides of the cut: one taken is removed, one
    # taken is updated, one not yet sent is removed, and one is added.
    _load(ng, 30, 1, remove=("NG-1", "NG-20"))
    moved = mpb.MatchRecordRow(ref="NG-2", person=_person(40), line=2)
    ng.matching.load(OFFICER, iter([mpb.LoadRecordsRequest(rows=[moved])]))

    tap.cut, tap.sent = None, 0
    copy = gb.matching.sync(NG, 30)
    resumed = tap.requests[-1]
    assert resumed.after_handle
    assert resumed.key_id == making.key_id
    # Only what follows the cut is sent: the 17 records not yet sent and unchanged, the
    # tombstones of NG-1 and NG-20, the added NG-30 and the updated NG-2.
    assert tap.sent == 17 + 4
    assert tap.records[-1] == 29  # the resumed stream's "of M records"
    assert (copy.state, copy.records) == (COMPLETE, 29)

    def answer(i: int) -> str:
        q = mpb.MatchQueryRequest(queries=[_person(i)], peers=[NG], timeout_ms=5000)
        (a,) = gb.matching.query(GB_OFFICER, q)
        return a.result

    assert [answer(i) for i in (0, 1, 2, 20, 25, 30, 40)] == [
        "hit",
        "no-hit",
        "no-hit",
        "no-hit",
        "hit",
        "hit",
        "hit",
    ]


def test_a_position_the_holder_cannot_place_is_ignored_and_a_malformed_one_refused(
    net: dict[str, SimNode],
) -> None:
    gb, ng = net[GB], net[NG]
    _load(ng, 0, 6)  # version 1
    _load(ng, 6, 1)  # version 2
    key_id = ng.matching.key()[0]

    def sent(**fields: object) -> int:
        request = mpb.MatchIndexRequest(key_id=key_id, token_domain=TOKEN_DOMAIN, **fields)
        return sum(len(c.entries) for c in gb.peers.get_match_index(NG, request, 10))

    assert sent() == 7
    first = gb.peers.get_match_index(NG, mpb.MatchIndexRequest(token_domain=TOKEN_DOMAIN), 10)
    handle = next(iter(first)).entries[1].handle
    assert sent(after_version=1, after_handle=handle) == 5  # placed: after the second
    # A handle NG never gave out, a version its record never had, a version ahead of NG's:
    # from since_version, as without a position.
    assert sent(after_version=1, after_handle=bytes(16)) == 7
    assert sent(after_version=2, after_handle=handle) == 7
    assert sent(after_version=3, after_handle=handle) == 7
    with pytest.raises(grpc.RpcError) as bad:
        sent(after_version=1, after_handle=b"\x01" * 15)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad.value.details() == "Field after_handle: 16 bytes, or empty."


def test_during_an_overlap_the_old_copy_stays_fresh_while_the_new_generation_is_copied(
    net: dict[str, SimNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    gb, ng = net[GB], net[NG]
    _load(ng, 0, 10)
    old = gb.matching.sync(NG, 30)
    rotation = ng.matching.rotate(None, overlap_hours=1)
    assert rotation.finished.wait(60)
    assert rotation.error is None
    tap = _Tap(ng, monkeypatch)
    tap.cut = 1
    tap.when = lambda req: req.key_id != old.key_id  # the new generation's streams break
    _load(ng, 10, 1)  # published in both generations

    # The new generation's stream breaks: the sync still brought the old copy up to date.
    done = gb.matching.sync(NG, 30)
    _, making = gb.matching.replicas.copies(NG)
    assert making is not None
    assert (done.key_id, done.records) == (old.key_id, 11)
    assert (making.key_id, making.state, making.records) == (rotation.new_key_id, BUILDING, 4)

    # Another record during the overlap: the old copy gets it although the new one is
    # still being made, and a query finds it there.
    _load(ng, 11, 1)
    ask = mpb.MatchQueryRequest(queries=[_person(11)], peers=[NG], timeout_ms=5000)
    (found,) = gb.matching.query(GB_OFFICER, ask)
    assert (found.result, found.band) == ("hit", "strong")
    done, making = gb.matching.replicas.copies(NG)
    assert done is not None
    assert making is not None
    assert (done.key_id, done.records) == (old.key_id, 12)

    # Once the new generation's stream goes through, its copy replaces the old one.
    tap.cut = None
    copy = gb.matching.sync(NG, 30)
    assert (copy.key_id, copy.records) == (rotation.new_key_id, 12)
    assert gb.matching.replicas.copies(NG)[1] is None
    (again,) = gb.matching.query(GB_OFFICER, ask)
    assert (again.result, again.reference) == ("hit", found.reference)
