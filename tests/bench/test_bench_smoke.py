"""bench/bench_envelope.py runs and speaks its JSON-lines format; timings are not judged here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_KEYS = {
    "benchmark",
    "suite",
    "body_bytes",
    "unit",
    "measured",
    "baseline",
    "ratio",
    "measured_us_per_op",
    "baseline_us_per_op",
}


def test_envelope_benchmark_quick_run_prints_json_lines() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_envelope.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert {(r["suite"], r["body_bytes"]) for r in lines} == {
        ("x25519", 1024),
        ("x25519", 64 * 1024),
        ("x25519", 1024 * 1024),
        ("mlkem768-x25519", 1024),
    }
    for record in lines:
        assert record.keys() >= EXPECTED_KEYS
        assert record["benchmark"] == "envelope_seal_open"
        assert record["measured"] > 0
        assert record["baseline"] > 0
        assert record["ratio"] > 0
    assert "ratio" in result.stderr  # the human-readable table
