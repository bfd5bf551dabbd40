"""A peer repeating split views cannot grow its witness's storage or ledger without bound
(node/services/witnessing.py, exchange/ledger/checkpoint.py): a checkpoint note is capped
in size, and the split-view evidence kept per origin is capped, the rest counted at the
refusal ledger's bounded rate. In process: NG witnesses GB's log through NG's real
FederationService, GB's calls signed with GB's real log key, as a hostile GB could."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sim_peer import GB, NG, SimNode, _CallerContext, federation_template
from sqlalchemy import func, select
from structlog.testing import capture_logs

from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange.ledger import Checkpoint, SplitViewError, sign_checkpoint
from exchange.ledger.checkpoint import (
    MAX_CHECKPOINT_BYTES,
    MAX_CHECKPOINT_NOTE_BYTES,
    MAX_EXTENSION_LINE_BYTES,
    MAX_EXTENSION_LINES,
)
from exchange.ledger.errors import MalformedCheckpointError
from exchange.ledger.names import log_origin
from exchange.ledger.note import sign_note
from node.logs import LogBudget
from node.rpc import federation
from node.services.rejections import REJECTED, REJECTED_AGGREGATE
from node.services.witnessing import MAX_SPLIT_VIEWS_PER_ORIGIN
from node.storage.models import LedgerEntryRow, SplitViewRow, WitnessStateRow

SIZE = 5
HONEST_ROOT = b"\x01" * 32


class Hostile:
    """GB as a peer of NG that signs whatever checkpoints of its own log it likes."""

    def __init__(self, witness: SimNode) -> None:
        self.witness = witness
        self.origin = log_origin(witness.core.directory.current().federation_id, GB)
        self.gb = federation_template().identities[GB]
        self.key = self.gb.sender().signing_key
        self.context = _CallerContext(self.gb)

    def note(self, size: int, root: bytes) -> bytes:
        return sign_checkpoint(Checkpoint(self.origin, size, root), self.origin, self.key)

    def send(
        self, note: bytes, old_size: int, proof: tuple[bytes, ...] = ()
    ) -> lpb.AddCheckpointResponse:
        req = lpb.AddCheckpointRequest(old_size=old_size, note=note, consistency_proof=proof)
        return self.witness.federation.add_checkpoint(req, self.context)  # type: ignore[arg-type]

    def split(self, i: int) -> bytes:
        """A conclusive split view: the cosigned size, root number `i`."""
        return self.note(SIZE, (1000 + i).to_bytes(32, "big"))


@pytest.fixture
def ng(tmp_path: Path) -> Iterator[SimNode]:
    node = SimNode(federation_template(), NG, tmp_path)
    yield node
    node.close()


@pytest.fixture
def gb(ng: SimNode) -> Hostile:
    peer = Hostile(ng)
    assert peer.send(peer.note(SIZE, HONEST_ROOT), 0).cosignature  # cosigned: size 5 known
    return peer


def _entries(node: SimNode) -> list[dict[str, Any]]:
    with node.db.read() as s:
        rows = s.scalars(select(LedgerEntryRow).order_by(LedgerEntryRow.idx)).all()
    return [json.loads(r.entry or b"{}") for r in rows]


def _kinds(node: SimNode, kind: str) -> list[dict[str, Any]]:
    return [e for e in _entries(node) if e["kind"] == kind]


def _evidence(node: SimNode) -> list[SplitViewRow]:
    with node.db.read() as s:
        return list(s.scalars(select(SplitViewRow).order_by(SplitViewRow.id)).all())


def _refused_split_views(node: SimNode) -> int:
    """Split views the refusal ledger accounts for: one per entry, or an aggregate's count."""
    return sum(
        e["count"] if e["kind"] == REJECTED_AGGREGATE else 1
        for e in _entries(node)
        if e["kind"] in (REJECTED, REJECTED_AGGREGATE) and e["reason"] == "SplitViewError"
    )


def _db_bytes(node: SimNode) -> int:
    with node.db.read() as s:
        size = s.execute(
            select(func.coalesce(func.sum(func.length(SplitViewRow.new_note)), 0))
        ).scalar_one()
    return int(size)


def test_the_first_split_view_is_kept_and_ledgered_as_before(ng: SimNode, gb: Hostile) -> None:
    honest = gb.note(SIZE, HONEST_ROOT)
    other = gb.split(0)
    before = len(_entries(ng))
    with capture_logs() as logs, pytest.raises(SplitViewError):
        gb.send(other, SIZE)
    [row] = _evidence(ng)
    assert (row.origin, row.known_note, row.new_note, row.conclusive) == (
        gb.origin,
        honest,
        other,
        True,
    )
    new = _entries(ng)[before:]
    assert [(e["kind"], e["peer"], e["origin"], e["conclusive"]) for e in new] == [
        ("witness.split_view", GB, gb.origin, True)
    ]
    assert [e["event"] for e in logs if e["event"] == "split_view_detected"] == [
        "split_view_detected"
    ]
    with ng.db.read() as s:
        state = s.get(WitnessStateRow, gb.origin)
        assert state is not None
        assert state.note == honest  # the state did not advance


def test_300_split_views_keep_at_most_the_cap_and_count_the_rest(
    ng: SimNode, gb: Hostile, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(federation, "_refusal_budget", LogBudget())  # this test's own minute
    n = 300
    with capture_logs() as logs:
        for i in range(n):
            with pytest.raises(SplitViewError):
                gb.send(gb.split(i), SIZE)
    rows = _evidence(ng)
    assert len(rows) == MAX_SPLIT_VIEWS_PER_ORIGIN
    assert [r.new_note for r in rows] == [gb.split(i) for i in range(len(rows))]  # the first
    assert len(_kinds(ng, "witness.split_view")) == MAX_SPLIT_VIEWS_PER_ORIGIN
    alerts = [e for e in logs if e["event"] == "split_view_detected"]
    assert len(alerts) == MAX_SPLIT_VIEWS_PER_ORIGIN
    assert len([e for e in logs if e["event"] == "rejections_aggregated"]) <= 1
    # Nor does the log take a line per refused call (node.logs.LogBudget: 10 a minute).
    refused = [e for e in logs if e["event"] == "cosign_refused"]
    assert 1 <= len(refused) <= 10
    # The rest: individual refusals up to the window's budget, then one aggregate.
    per_window = ng.core.rejections.per_window
    assert len(_kinds(ng, REJECTED)) == per_window
    ng.core.rejections.flush(everything=True)
    [aggregate] = _kinds(ng, REJECTED_AGGREGATE)
    assert (aggregate["peer"], aggregate["reason"]) == (GB, "SplitViewError")
    assert _refused_split_views(ng) == n - MAX_SPLIT_VIEWS_PER_ORIGIN  # every one accounted
    assert len(_entries(ng)) <= 4 + MAX_SPLIT_VIEWS_PER_ORIGIN + per_window + 1


def test_a_replayed_split_view_is_not_stored_twice(ng: SimNode, gb: Hostile) -> None:
    other = gb.split(0)
    for _ in range(3):
        with pytest.raises(SplitViewError):
            gb.send(other, SIZE)
    assert len(_evidence(ng)) == 1
    assert len(_kinds(ng, "witness.split_view")) == 1
    assert _refused_split_views(ng) == 2


def test_inconclusive_split_views_do_not_crowd_out_a_conclusive_one(
    ng: SimNode, gb: Hostile
) -> None:
    for i in range(MAX_SPLIT_VIEWS_PER_ORIGIN + 3):
        # Growth to 6 with a proof of the right length that does not link the roots.
        proof = tuple(bytes([i, j]) * 16 for j in range(3))
        with pytest.raises(SplitViewError) as err:
            gb.send(gb.note(SIZE + 1, (2000 + i).to_bytes(32, "big")), SIZE, proof)
        assert not err.value.conclusive
    assert len(_evidence(ng)) == MAX_SPLIT_VIEWS_PER_ORIGIN
    for i in range(3):
        with pytest.raises(SplitViewError):
            gb.send(gb.split(i), SIZE)
    rows = _evidence(ng)
    assert [r.conclusive for r in rows].count(True) == 1
    assert rows[-1].new_note == gb.split(0)
    assert len(rows) == MAX_SPLIT_VIEWS_PER_ORIGIN + 1
    assert len(_kinds(ng, "witness.split_view")) == MAX_SPLIT_VIEWS_PER_ORIGIN + 1


def _body(origin: str, root: bytes, extensions: list[str]) -> str:
    root_line = base64.b64encode(root).decode()
    return "\n".join([origin, str(SIZE), root_line, *extensions]) + "\n"


@pytest.mark.parametrize(
    "extensions",
    [
        ["x" * (MAX_EXTENSION_LINE_BYTES + 1)],  # one line too long
        ["x"] * (MAX_EXTENSION_LINES + 1),  # too many lines
        ["x" * 1_000_000] * 3,  # 3 MB: the note itself is over its cap
    ],
    ids=["long-line", "many-lines", "megabytes"],
)
def test_an_oversized_note_is_refused_and_nothing_is_stored(
    ng: SimNode, gb: Hostile, extensions: list[str]
) -> None:
    note = sign_note(_body(gb.origin, b"\x07" * 32, extensions), gb.origin, gb.key)
    before = _entries(ng)
    with pytest.raises(MalformedCheckpointError):
        gb.send(note, SIZE)
    assert _evidence(ng) == []
    assert _db_bytes(ng) == 0
    ng.core.rejections.flush(everything=True)
    assert _entries(ng) == before


def test_the_parser_caps_a_checkpoint_body() -> None:
    origin = "mlax.f/GB-NCA"
    root = b"\x07" * 32
    near = ["y" * MAX_EXTENSION_LINE_BYTES] * 15  # within every cap
    assert Checkpoint.parse(_body(origin, root, near)).extensions == tuple(near)
    refused = [
        _body(origin, root, ["y" * (MAX_EXTENSION_LINE_BYTES + 1)]),
        _body(origin, root, ["y"] * (MAX_EXTENSION_LINES + 1)),
        _body(origin, root, ["é" * (MAX_EXTENSION_LINE_BYTES // 2 + 1)]),  # bytes, not chars
        _body("o" * MAX_CHECKPOINT_BYTES, root, []),
    ]
    for text in refused:
        with pytest.raises(MalformedCheckpointError):
            Checkpoint.parse(text)
    with pytest.raises(MalformedCheckpointError):
        Checkpoint(origin, SIZE, root, ("z" * (MAX_EXTENSION_LINE_BYTES + 1),))


def test_honest_notes_are_far_below_the_caps(ng: SimNode) -> None:
    # What a node's ledger signs (node/storage/ledger.py): no extension line.
    assert ng.store.issue_checkpoint(ng.identity.sender().signing_key) is not None
    row = ng.store.latest_checkpoint()
    assert row is not None
    assert len(row.note) * 20 < MAX_CHECKPOINT_BYTES < MAX_CHECKPOINT_NOTE_BYTES
