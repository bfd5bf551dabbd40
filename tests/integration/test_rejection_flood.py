"""A peer flooding a node with junk `Deliver` calls cannot grow its ledger without bound.

FR-OCRTEH runs alone with a small rejection budget ([ledger] rejections_per_window = 5
per 3 s window). GB-NCA's real, pinned TLS key sends hundreds of bytes strings that are
not envelopes. Every call must still be refused with INVALID_ARGUMENT and counted in the
metrics, while the ledger gets at most 5 `message.rejected` entries and one
`message.rejected_aggregate` entry per window, whose counts add up to every refusal,
including those of a window still open when the node shuts down.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import os
import sqlite3
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from exchange.directory import Directory
from keys.directory_file import read_signed_directory
from keys.identity import load_identity
from node.devtools.federation import (
    DEMO_AGENCIES,
    Federation,
    NodeProcess,
    build_federation,
    free_port,
)

pytestmark = pytest.mark.integration

GB, FR = "GB-NCA", "FR-OCRTEH"
PASS, OFFICER_PASS = b"node-pass", b"officer-pass"
ENV = dict(os.environ, MLAX_KEY_PASSPHRASE=PASS.decode(), MLAX_KDF_PROFILE="test")
DELIVER = "/mlax.v1.Federation/Deliver"
PER_WINDOW, WINDOW = 5, 3.0
KINDS = ("message.rejected", "message.rejected_aggregate")


@dataclass
class Flooded:
    fed: Federation
    fr: NodeProcess
    channel: grpc.Channel
    metrics_port: int

    def ledger(self) -> list[tuple[str, dict[str, Any]]]:
        db = self.fed.nodes[FR].root / "data" / "node.db"
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            rows = conn.execute("SELECT kind, entry FROM ledger_entries ORDER BY idx").fetchall()
        finally:
            conn.close()
        return [(kind, json.loads(entry)) for kind, entry in rows]

    def rejections(self) -> list[dict[str, Any]]:
        return [f for k, f in self.ledger() if k in KINDS]

    def accounted(self) -> int:
        """Refusals the ledger records: one per entry, or an aggregate entry's count."""
        return sum(f.get("count", 1) for f in self.rejections())

    def rejected_metric(self) -> float:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
        prefix = 'mlax_messages_rejected_total{reason="MalformedError"} '
        lines = [ln for ln in text.splitlines() if ln.startswith(prefix)]
        return float(lines[0].removeprefix(prefix)) if lines else 0.0

    def flood(self, count: int) -> float:
        """Send `count` junk Delivers from 8 threads; each must be refused. Returns seconds."""
        call = self.channel.unary_unary(
            DELIVER, request_serializer=None, response_deserializer=None
        )

        def one(i: int) -> tuple[grpc.StatusCode, str]:
            with pytest.raises(grpc.RpcError) as exc:
                call(b"junk, not an envelope %d" % i, timeout=30)
            err: grpc.RpcError = exc.value
            return err.code(), str(err.details() or "")

        start = time.monotonic()
        with cf.ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(one, range(count)))
        took = time.monotonic() - start
        assert {code for code, _ in outcomes} == {grpc.StatusCode.INVALID_ARGUMENT}
        assert all(details for _, details in outcomes), "every refusal says why"
        return took


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout} s")


def _bound(seconds: float) -> int:
    """Most rejection entries a flood lasting `seconds` may add: per window it touches,
    PER_WINDOW individual entries and one aggregate."""
    return (math.ceil(seconds / WINDOW) + 1) * (PER_WINDOW + 1)


@pytest.fixture(scope="module")
def flooded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flooded]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLAX_KDF_PROFILE", "test")
        fed = build_federation(
            tmp_path_factory.mktemp("flood"),
            PASS,
            OFFICER_PASS,
            agencies=DEMO_AGENCIES[:2],
            extra_config=(
                f"\n[ledger]\nrejections_per_window = {PER_WINDOW}\n"
                f"rejection_window_seconds = {WINDOW}\n"
            ),
        )
    port = free_port()
    with fed.nodes[FR].config.open("a") as f:
        f.write(f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
    fr = NodeProcess(fed.nodes[FR], ENV)
    fr.start()
    gb = load_identity(fed.nodes[GB].root / "keys", PASS)
    card = Directory.from_bytes(read_signed_directory(fed.directory_file).directory).agency(FR)
    assert card is not None
    creds = grpc.ssl_channel_credentials(
        root_certificates=card.tls_certificate_pem,
        private_key=gb.tls_private_key_pem(),
        certificate_chain=gb.tls_certificate_pem(),
    )
    channel = grpc.secure_channel(
        card.endpoint, creds, options=[("grpc.ssl_target_name_override", "127.0.0.1")]
    )
    try:
        yield Flooded(fed, fr, channel, port)
    finally:
        channel.close()
        fr.stop()


def test_a_junk_flood_grows_the_ledger_per_window_not_per_call(flooded: Flooded) -> None:
    before = len(flooded.rejections())
    took = flooded.flood(300)
    grown = len(flooded.rejections()) - before
    assert grown <= _bound(took), (grown, took)
    assert grown < 300

    # Every refusal is counted in the metrics at once, and in the ledger once the window
    # ends: the last aggregate is written by the node's own timer, no further call needed.
    assert flooded.rejected_metric() == 300
    _wait(lambda: flooded.accounted() == 300, 60, "FR did not ledger all 300 refusals")
    entries = flooded.rejections()
    assert len(entries) <= _bound(took) + 1
    aggregates = [f for f in entries if "count" in f]
    assert aggregates, "the refusals past the budget were aggregated"
    for f in entries:
        assert (f["peer"], f["reason"], f["status"]) == (GB, "MalformedError", "INVALID_ARGUMENT")
    for f in aggregates:
        assert f["kind"] == "message.rejected_aggregate"
        assert f["count"] > 0
        assert f["first_at"] <= f["last_at"] <= f["at"]
    events = [
        json.loads(line)
        for line in flooded.fr.log_path.read_text().splitlines()
        if '"rejections_aggregated"' in line
    ]
    assert events, "the operator is told that refusals are being aggregated"
    assert flooded.fr.running


def test_shutdown_ledgers_the_count_of_an_open_window(flooded: Flooded) -> None:
    _wait(lambda: flooded.accounted() == flooded.rejected_metric(), 60, "earlier refusals")
    before = flooded.accounted()
    flooded.flood(60)
    assert flooded.fr.stop() == 0, flooded.fr.log_tail()
    # The flood ended a moment before the stop, inside a window whose count only the
    # shutdown writes; it is ledgered before the node's last entry.
    assert flooded.accounted() == before + 60
    kinds = [k for k, _ in flooded.ledger()]
    assert max(i for i, k in enumerate(kinds) if k in KINDS) < kinds.index("node.stopped")
