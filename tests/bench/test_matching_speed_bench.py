"""bench/bench_matching_speed.py measures the OPRF, encoding, lookups at three index sizes and
queries between real nodes, in JSON lines.

Timings are not judged here: only that the quick run exits 0, reports every figure with
its fields, and that what it measured really matched (held people found, the same
answers at every index size, every answer from every peer).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from exchange.matching.tokens import MAX_TOKENS

ROOT = Path(__file__).resolve().parents[2]
FIGURES = [
    "oprf",
    "encoding",
    "index",
    "index",
    "index",
    "index_growth",
    "full_sync",
    "federation_load",
    "federation_query",
    "federation_batch",
]
INDEX_KEYS = {
    "lookup_single_ms_median",
    "lookup_single_ms_p95",
    "lookup_batch_ms",
    "sync_noop_ms_median",
    "sync_noop_node_select_ms",
    "sync_noop_by_version_select_ms",
    "query_single_ms_median",
    "query_batch_seconds",
}


@pytest.mark.integration
def test_matching_speed_quick_run_prints_json_lines() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_matching_speed.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert [r["figure"] for r in records] == FIGURES
    assert all(r["bench"] == "matching_speed" for r in records)
    fig: dict[str, Any] = {r["figure"]: r for r in records}

    oprf = fig["oprf"]
    for key in ("blind_us", "blind_evaluate_us", "finalize_us", "evaluate_us"):
        assert oprf[key] > 0, key
    parts = oprf["blind_us"] + oprf["blind_evaluate_us"] + oprf["finalize_us"]
    assert oprf["round_trip_us"] == pytest.approx(parts, abs=0.2)

    enc = fig["encoding"]
    assert enc["records"] == 60
    assert enc["records_per_s"] > 0
    assert 0 < enc["tokens_per_record"] <= MAX_TOKENS
    assert enc["published_bytes_per_record"] == 8 * MAX_TOKENS  # padded, 8 bytes a value
    assert enc["projected_1m_seconds"] == pytest.approx(1e6 / enc["records_per_s"], rel=0.01)

    index = [r for r in records if r["figure"] == "index"]
    assert [r["index_records"] for r in index] == [100, 1000, 10_000]
    for r in index:
        assert r["copy_records"] == r["index_records"]
        assert all(r[k] > 0 for k in INDEX_KEYS), r
        assert r["lookup_single_ms_p95"] >= r["lookup_single_ms_median"]
        # The querier's own path finds the held people it was asked about.
        assert r["held_found"] >= 0.8 * r["held_queries"] > 0
        assert "match_copy_blocks" in r["plans"]["lookup"]
    # The querier's copy: at most 1 KB a record, indexes included (issue 14).
    assert 0 < index[-1]["copy_bytes_per_record"] <= 1024
    growth = fig["index_growth"]
    assert growth["sizes"] == [100, 1000, 10_000]
    assert growth["records_ratio"] == 100
    assert growth["same_answers_at_every_size"] is True
    assert set(growth["ratio"]) == INDEX_KEYS - {"lookup_single_ms_p95"}

    sync = fig["full_sync"]
    assert sync["copy_records"] == sync["records"]
    # A copy cut off half way is kept and completed by the next sync.
    assert 0 < sync["resume_records_before"] < sync["records"]
    assert sync["resume_copy_records"] == sync["records"]
    # It resumed right after its last record: nothing it held was sent again.
    assert sync["resume_from_position"] is True
    assert sync["resume_entries_resent"] == 0
    assert sync["resume_entries_sent_again"] == sync["records"] - sync["resume_records_before"]
    assert sync["resume_announced_records"] == sync["records"]
    assert sync["records_per_s"] > 0

    load = fig["federation_load"]
    assert load["nodes"] == 3
    assert load["holders"] == 2
    assert load["records_per_s_median"] > 0
    query = fig["federation_query"]
    assert query["peers"] == 2
    assert query["queries"] == 5
    assert query["expected_hits"] == 5  # each person found at the holder that holds them
    assert query["failed_answers"] == 0
    assert 0 < query["median_ms"] <= query["p95_ms"] <= query["max_ms"]
    batch = fig["federation_batch"]
    assert batch["queries"] == 40
    assert sum(batch["results"].values()) == 40 * 2
    assert set(batch["results"]) <= {"hit", "no-hit"}
    assert batch["results"].get("hit", 0) > 0
    assert "total" in result.stderr  # the human-readable table
