"""Refused deliveries reach the ledger at a bounded rate, and every one is accounted for."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from node.config import LedgerSection
from node.services.rejections import REJECTED, REJECTED_AGGREGATE, RejectionLedger
from node.storage.db import Database
from node.storage.models import LedgerEntryRow

GB, NG = "GB-NCA", "NG-NAPTIP"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'node.db'}")
    database.migrate()
    yield database
    database.close()


def entries(db: Database) -> list[dict[str, Any]]:
    with db.read() as s:
        rows = s.scalars(select(LedgerEntryRow).order_by(LedgerEntryRow.idx)).all()
    return [json.loads(r.entry or b"{}") for r in rows]


def accounted(db: Database, peer: str, reason: str) -> int:
    """Refusals the ledger records for (peer, reason): one per entry, or an aggregate's count."""
    return sum(
        e["count"] if e["kind"] == REJECTED_AGGREGATE else 1
        for e in entries(db)
        if e["kind"] in (REJECTED, REJECTED_AGGREGATE)
        and e["peer"] == peer
        and e["reason"] == reason
    )


def test_a_flood_grows_the_ledger_per_window_and_every_refusal_is_counted(db: Database) -> None:
    clock = Clock()
    rl = RejectionLedger(db, per_window=5, window_seconds=10, clock=clock)
    individual = [rl.record(GB, "MalformedError", "INVALID_ARGUMENT") for _ in range(300)]
    assert individual == [True] * 5 + [False] * 295
    assert len(entries(db)) == 5, "only the first refusals of a window get entries"
    assert rl.flush() == 0, "the window has not ended"

    clock.now += 10
    assert rl.flush() == 1
    agg = entries(db)[-1]
    assert agg["kind"] == REJECTED_AGGREGATE
    assert (agg["peer"], agg["reason"], agg["status"], agg["count"]) == (
        GB,
        "MalformedError",
        "INVALID_ARGUMENT",
        295,
    )
    assert agg["first_at"] <= agg["last_at"]
    assert accounted(db, GB, "MalformedError") == 300
    # A new window allows individual entries again.
    assert rl.record(GB, "MalformedError", "INVALID_ARGUMENT") is True
    assert len(entries(db)) == 7


def test_keys_are_separate_and_a_later_refusal_closes_an_ended_window(db: Database) -> None:
    clock = Clock()
    rl = RejectionLedger(db, per_window=2, window_seconds=10, clock=clock)
    for _ in range(4):
        rl.record(GB, "MalformedError", "INVALID_ARGUMENT")
        rl.record(NG, "MalformedError", "INVALID_ARGUMENT")
        rl.record(GB, "ReplayError", "ALREADY_EXISTS")
    assert len(entries(db)) == 6
    clock.now += 11
    # Without waiting for the thread: the next refusal of the key writes the aggregate first.
    rl.record(GB, "ReplayError", "ALREADY_EXISTS")
    kinds = [(e["kind"], e.get("count")) for e in entries(db)[6:]]
    assert kinds == [(REJECTED_AGGREGATE, 2), (REJECTED, None)]
    assert rl.flush() == 2  # the two other keys' ended windows
    for peer, reason in ((GB, "MalformedError"), (NG, "MalformedError")):
        assert accounted(db, peer, reason) == 4
    assert accounted(db, GB, "ReplayError") == 5


def test_stop_ledgers_the_counts_of_open_windows(db: Database) -> None:
    rl = RejectionLedger(db, per_window=1, window_seconds=3600)
    rl.start()
    for _ in range(7):
        rl.record(GB, "OuterSignatureError", "UNAUTHENTICATED")
    rl.stop()
    assert accounted(db, GB, "OuterSignatureError") == 7
    assert [e["kind"] for e in entries(db)] == [REJECTED, REJECTED_AGGREGATE]


def test_defaults_come_from_the_configuration(db: Database) -> None:
    rl = RejectionLedger(db)
    assert rl.per_window == LedgerSection().rejections_per_window == 30
    assert rl.window_seconds == LedgerSection().rejection_window_seconds == 60.0


def test_the_budget_is_configured_in_the_ledger_section(tmp_path: Path) -> None:
    from node.config import ConfigError, load_config

    base = (
        '[node]\nagency = "GB-NCA"\nidentity_dir = "keys"\ndata_dir = "data"\n'
        '[federation]\nlisten = "127.0.0.1:7401"\n[officer]\nlisten = "127.0.0.1:7402"\n'
    )
    path = tmp_path / "node.toml"
    path.write_text(base + "[ledger]\nrejections_per_window = 3\nrejection_window_seconds = 0.5\n")
    cfg = load_config(path).ledger
    assert (cfg.rejections_per_window, cfg.rejection_window_seconds) == (3, 0.5)
    path.write_text(base + "[ledger]\nrejections_per_window = 0\n")
    with pytest.raises(ConfigError, match=r"ledger.rejections_per_window must be a positive"):
        load_config(path)


def test_refused_evidence_chunks_keep_their_own_entries_within_the_budget(db: Database) -> None:
    """A peer pushing junk chunks (or blind evaluations over quota) gets its specific
    entries up to the budget, then one aggregate per window: the ledger stays bounded."""
    from exchange.encoding import now_ms
    from exchange.ledger_entry import LedgerEntry

    clock = Clock()
    rl = RejectionLedger(db, per_window=3, window_seconds=10, clock=clock)

    def chunk(i: int) -> LedgerEntry:
        return LedgerEntry.of(
            "attachment.chunk_refused", now_ms(), attachment_id="ab" * 16, peer=GB, index=i
        )

    for i in range(200):
        rl.record(GB, "TamperedChunkError", "INVALID_ARGUMENT", chunk(i))
    clock.now += 10
    rl.flush()
    kinds = [e["kind"] for e in entries(db)]
    assert kinds == ["attachment.chunk_refused"] * 3 + [REJECTED_AGGREGATE]
    aggregate = entries(db)[-1]
    assert (aggregate["reason"], aggregate["count"]) == ("TamperedChunkError", 197)
