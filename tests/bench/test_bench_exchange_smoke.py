"""bench/bench_exchange.py starts two nodes and an echo server, and speaks its JSON-lines format.

Timings are not judged here: only that the quick run exits 0 and reports every field.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_KEYS = {
    "bench",
    "concurrency",
    "messages",
    "msgs_per_s",
    "p50_ms",
    "p99_ms",
    "baseline_echo_rps",
    "ratio_to_echo",
}


@pytest.mark.integration
def test_exchange_benchmark_quick_run_prints_json_lines() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_exchange.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert sorted(r["concurrency"] for r in lines) == [1, 16]
    for record in lines:
        assert record.keys() >= EXPECTED_KEYS
        assert record["bench"] == "exchange"
        assert record["messages"] > 0
        assert record["msgs_per_s"] > 0
        assert record["baseline_echo_rps"] > 0
        assert record["ratio_to_echo"] > 0
    assert "ratio" in result.stderr  # the human-readable table


@pytest.mark.integration
def test_delivery_state_benchmark_quick_run_prints_its_ratio() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_delivery_state.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    [record] = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert record["bench"] == "delivery_state"
    assert record["sealed_bytes"] > record["body_bytes"]
    assert record["retries_measured"] >= 3
    assert record["bytes_written_per_retry"] > 0
    assert record["ratio_per_retry"] == round(
        record["bytes_written_per_retry"] / record["sealed_bytes"], 4
    )
