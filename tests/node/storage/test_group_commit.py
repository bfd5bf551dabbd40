"""GroupCommit: jobs arriving together share one commit; a job that fails takes nothing
else with it, and leaves nothing of its own behind."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from node.storage.db import Database, GroupCommit


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'g.db'}")
    with database.engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"))
    return database


def _rows(db: Database) -> dict[int, str]:
    with db.engine.connect() as conn:
        return {k: v for k, v in conn.execute(text("SELECT k, v FROM t"))}


def _insert(k: int, v: str, fail: bool = False):  # type: ignore[no-untyped-def]
    def job(s: Session) -> int:
        s.execute(text("INSERT INTO t (k, v) VALUES (:k, :v)"), {"k": k, "v": v})
        if fail:
            raise ValueError(f"job {k} refuses")
        return k

    return job


def test_a_lone_failing_job_leaves_nothing_and_its_caller_sees_why(db: Database) -> None:
    commits = GroupCommit(db)
    with pytest.raises(ValueError, match="job 1 refuses"):
        commits.run(_insert(1, "a", fail=True))
    assert _rows(db) == {}
    assert commits.run(_insert(2, "b")) == 2
    assert _rows(db) == {2: "b"}


def test_one_failing_job_among_many_rolls_back_alone(db: Database) -> None:
    commits = GroupCommit(db)
    errors: dict[int, BaseException] = {}
    results: dict[int, int] = {}
    gate = threading.Barrier(12)

    def call(k: int) -> None:
        gate.wait()
        try:
            results[k] = commits.run(_insert(k, f"v{k}", fail=k % 4 == 0))
        except ValueError as e:
            errors[k] = e

    threads = [threading.Thread(target=call, args=(k,)) for k in range(1, 13)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(errors) == [4, 8, 12]
    assert sorted(results) == [k for k in range(1, 13) if k % 4]
    # What each caller was told is what the database holds: the failed jobs' rows are
    # gone, every other job's row was committed once.
    assert _rows(db) == {k: f"v{k}" for k in range(1, 13) if k % 4}


def test_a_job_rerun_after_a_failure_writes_once(db: Database) -> None:
    """Two jobs share a batch; the second fails; the first runs again in a savepoint
    and its row is stored once (no duplicate key, no lost row)."""
    commits = GroupCommit(db)
    started = threading.Event()
    release = threading.Event()

    def slow_first(s: Session) -> int:
        started.set()
        release.wait(10)
        s.execute(text("INSERT INTO t (k, v) VALUES (100, 'lead')"))
        return 100

    # The first job leads and holds the commit until the others have queued behind it.
    lead = threading.Thread(target=commits.run, args=(slow_first,))
    lead.start()
    started.wait(10)
    out: dict[str, object] = {}

    def ok() -> None:
        out["ok"] = commits.run(_insert(1, "a"))

    def bad() -> None:
        try:
            commits.run(_insert(2, "b", fail=True))
        except ValueError as e:
            out["bad"] = e

    followers = [threading.Thread(target=ok), threading.Thread(target=bad)]
    for t in followers:
        t.start()
    while len(commits._queue) < 2:  # both queued behind the lead's commit
        threading.Event().wait(0.01)
    release.set()
    for t in (lead, *followers):
        t.join(30)
    assert out["ok"] == 1
    assert isinstance(out["bad"], ValueError)
    assert _rows(db) == {100: "lead", 1: "a"}
