"""bench/bench_attachments.py sends a file through two nodes and a bare gRPC copy; JSON lines.

Timings and memory are not judged here: only that the quick run (16 MiB, SQLite with the
filesystem blob backend, both modes) exits 0 and reports every stage of each mode, the
baseline and the memory of every process with sane values.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SIZE = 16 * 1024 * 1024
STAGES = ("upload", "available", "download", "end_to_end")
MODES = ("pipelined", "sequential")
STAGE_KEYS = {"bench", "stage", "size_bytes", "seconds", "mb_per_s", "baseline_mb_per_s", "ratio"}
PROCESSES = {"node-NG-NAPTIP", "node-GB-NCA", "upload-client", "download-client"}


@pytest.mark.integration
def test_attachments_benchmark_quick_run_prints_json_lines() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_attachments.py"),
            "--quick",
            "--storage",
            "sqlite",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    records = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    for record in records:
        assert record["bench"] == "attachments"
        assert record["size_bytes"] == SIZE
    baseline = records[0]
    assert baseline["stage"] == "baseline"
    assert baseline["mb_per_s"] > 0
    assert len(baseline["runs_mb_per_s"]) == 4
    assert {(r.get("storage"), r.get("mode")) for r in records[1:]} == {
        ("sqlite+filesystem", m) for m in MODES
    }
    for mode in MODES:
        by_stage = {r["stage"]: r for r in records[1:] if r["mode"] == mode}
        assert list(by_stage) == [*STAGES, "memory"], mode
        for stage in STAGES:
            record = by_stage[stage]
            assert record.keys() >= STAGE_KEYS
            assert record["seconds"] > 0
            assert record["mb_per_s"] > 0
            assert record["baseline_mb_per_s"] == baseline["mb_per_s"]
            assert record["ratio"] > 0
        # The whole run is at least as long as each of its stages.
        assert by_stage["end_to_end"]["seconds"] >= max(by_stage[s]["seconds"] for s in STAGES[:3])
        memory = by_stage["memory"]
        assert set(memory["processes"]) == PROCESSES
        for name, proc in memory["processes"].items():
            assert proc["idle_rss_mib"] > 0, name
            assert proc["peak_rss_mib"] >= proc["idle_rss_mib"], name
            assert proc["rss_growth_mib"] >= 0, name
        assert memory["max_rss_growth_mib"] >= 0
    assert "ratio" in result.stderr  # the human-readable table
