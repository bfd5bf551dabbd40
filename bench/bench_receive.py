"""The receiving side of the exchange: CPU per received message, against bare opening.

Two agencies are built with `node.devtools.federation.build_federation` (GB-NCA sends
to FR-OCRTEH); GB seals `n` notes with 1 KiB bodies to FR beforehand. Each mode then
hands the same envelopes to FR's real federation servicer (`FederationService`, the
code a gRPC call reaches after admission, with its metrics, logs and ledgering) over a
fresh copy of FR's SQLite database (WAL, `synchronous=FULL`), with the node's JSON
logging configured (lines go to /dev/null):

- `deliver`: one `Deliver` after the other (one transaction and commit each);
- `deliver_c16`: 16 threads each making `Deliver` calls (concurrent deliveries share
  a commit through `GroupCommit`);
- `batch16`, `batch64`: `DeliverBatch` calls of 16 and 64 envelopes, one after the other.

Baseline, same envelopes, same run: the bare open of each (`authenticate` then
`open_authenticated`: parse, directory lookup, two Ed25519 verifications, HPKE), which
any receiver must do. Figures: process CPU per message (all threads) and messages per
second (wall); ratio = CPU per message / baseline CPU per message (1.0 would mean storing,
ledgering and receipting cost nothing beyond opening).

With `--modes deliver,deliver_c16` the script also runs against a tree without
`DeliverBatch` (`PYTHONPATH=<exported tree>`), to measure a before/after on one machine.

Prints one JSON object per line on stdout and a table on stderr.
Run: .venv/bin/python bench/bench_receive.py [--quick] [--messages N] [--modes a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from exchange._proto.mlax.v1 import federation_pb2 as fpb
from exchange.encoding import now_ms
from exchange.envelope import (
    Limits,
    MemorySeenIds,
    MessageType,
    authenticate,
    open_authenticated,
    seal,
)
from exchange.ledger.names import log_origin
from keys.identity import load_identity
from node import logs
from node.config import load_config
from node.devtools.federation import build_federation
from node.rpc.federation import FederationService
from node.services.messages import NodeCore
from node.services.trust import TrustedDirectory
from node.storage.db import Database
from node.storage.ledger import LedgerStore
from node.storage.models import MessageRow

SENDER, RECEIVER = "GB-NCA", "FR-OCRTEH"
PASSPHRASE = b"bench-receive-passphrase"
BODY = b"x" * 1024
MODES = ("deliver", "deliver_c16", "batch16", "batch64")


class _Context:
    """What the federation servicer reads of a call: the caller's TLS certificate."""

    def __init__(self, cert: bytes) -> None:
        self._cert = cert

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_pem_cert": [self._cert]}

    def peer(self) -> str:
        return "bench"

    def is_active(self) -> bool:
        return True


class Setup:
    def __init__(self, root: Path, messages: int) -> None:
        fed = build_federation(
            root, PASSPHRASE, PASSPHRASE, agencies=((SENDER, "NCA"), (RECEIVER, "OCRTEH"))
        )
        cfgs = {a: load_config(s.config) for a, s in fed.nodes.items()}
        self.sender = load_identity(cfgs[SENDER].node.identity_dir, PASSPHRASE)
        self.receiver = load_identity(cfgs[RECEIVER].node.identity_dir, PASSPHRASE)
        self.template = Path(cfgs[RECEIVER].database_url.removeprefix("sqlite:///"))
        self.root = root
        db = Database(cfgs[RECEIVER].database_url)
        db.migrate()
        self.directory = TrustedDirectory(db).current()
        db.close()
        card = self.directory.agency(RECEIVER)
        assert card is not None
        sender = self.sender.sender(published=self.directory.agency(SENDER))
        self.envelopes = [
            seal(sender, card, BODY, MessageType.NOTE, now_ms=now_ms()).to_bytes()
            for _ in range(messages)
        ]
        self.context = _Context(self.sender.tls_certificate_pem())
        self._runs = 0

    def service(self) -> tuple[FederationService, Database]:
        """FR's servicer over a fresh copy of its database."""
        self._runs += 1
        path = self.root / f"run-{self._runs}.db"
        shutil.copy(self.template, path)
        db = Database(f"sqlite:///{path}")
        core = NodeCore(self.receiver, db, TrustedDirectory(db), Limits(), 30 * 86_400_000)
        store = LedgerStore(db, log_origin(self.directory.federation_id, RECEIVER))
        # The evidence and matching desks are not reached by Deliver.
        return FederationService(core, store, None, None), db  # type: ignore[arg-type]


def _timed(work: Callable[[], None]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return time.perf_counter() - wall, time.process_time() - cpu


def bare_open(setup: Setup) -> tuple[float, float]:
    recipient = setup.receiver.recipient()

    def work() -> None:
        now = now_ms()
        for data in setup.envelopes:
            envelope, header, card = authenticate(data, setup.directory)
            open_authenticated(
                envelope, header, card, setup.directory, recipient, MemorySeenIds(), now_ms=now
            )

    return _timed(work)


def run_mode(setup: Setup, mode: str) -> tuple[float, float]:
    service, db = setup.service()
    ctx: Any = setup.context
    envelopes = setup.envelopes
    try:
        if mode == "deliver":

            def work() -> None:
                for data in envelopes:
                    service.deliver(data, ctx)

        elif mode == "deliver_c16":

            def work() -> None:
                def lane(part: Sequence[bytes]) -> None:
                    for data in part:
                        service.deliver(data, ctx)

                threads = [
                    threading.Thread(target=lane, args=(envelopes[i::16],)) for i in range(16)
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()

        else:
            size = int(mode.removeprefix("batch"))
            requests = [
                fpb.DeliverBatchRequest(envelopes=envelopes[i : i + size]).SerializeToString()
                for i in range(0, len(envelopes), size)
            ]

            def work() -> None:
                for request in requests:
                    response = service.deliver_batch(request, ctx)
                    assert all(r.HasField("receipt") for r in response.results)

        result = _timed(work)
        with db.read() as s:
            stored = s.scalar(select(func.count()).select_from(MessageRow))
        assert stored == len(envelopes), f"{mode}: {stored} of {len(envelopes)} stored"
        return result
    finally:
        db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="128 messages, one repetition")
    ap.add_argument("--messages", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3, help="runs per mode; the median is kept")
    ap.add_argument("--modes", default=",".join(MODES))
    args = ap.parse_args()
    messages, repeat = (128, 1) if args.quick else (args.messages, args.repeat)
    modes = [m for m in args.modes.split(",") if m]
    out = sys.stderr
    with open(os.devnull, "w") as devnull:
        sys.stderr = devnull  # the node's log handler writes here: measured, not shown
        logs.configure("info")
        sys.stderr = out
        root = Path(tempfile.mkdtemp(prefix="mlax-bench-receive-"))
        try:
            setup = Setup(root, messages)
            base = [bare_open(setup) for _ in range(repeat)]
            base_cpu = statistics.median(c for _, c in base) / messages
            rows = []
            for mode in modes:
                runs = [run_mode(setup, mode) for _ in range(repeat)]
                wall = statistics.median(w for w, _ in runs)
                cpu = statistics.median(c for _, c in runs) / messages
                row = {
                    "bench": "receive",
                    "mode": mode,
                    "messages": messages,
                    "cpu_ms_per_msg": round(cpu * 1000, 3),
                    "msgs_per_s": round(messages / wall, 1),
                    "baseline": "bare open (authenticate + open_authenticated)",
                    "baseline_cpu_ms_per_msg": round(base_cpu * 1000, 3),
                    "ratio": round(cpu / base_cpu, 2),
                    "load_avg_1m": round(os.getloadavg()[0], 2),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    print(
        f"{'mode':<12} {'CPU ms/msg':>10} {'msgs/s':>9} {'ratio':>6}  (bare open "
        f"{base_cpu * 1000:.3f} ms/msg)",
        file=out,
    )
    for row in rows:
        print(
            f"{row['mode']:<12} {row['cpu_ms_per_msg']:>10.3f} {row['msgs_per_s']:>9.1f} "
            f"{row['ratio']:>6.2f}",
            file=out,
        )


if __name__ == "__main__":
    main()
