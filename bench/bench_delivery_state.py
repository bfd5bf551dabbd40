"""Bytes a node writes to keep a message's delivery state, against the message's size.

A message's sealed bytes (the envelope to the peer and the node's self-copy) are written
once, in `message_contents`; its delivery state (lease, attempts, next attempt, state,
receipt) lives in the small `messages` row. Before that split a claim or a retry of a
257 KiB message rewrote the whole record: about 1.06 MB of WAL per claim and 1.07 MB per
retry (issue 12).

What is measured, on a real node process (`mlax node serve`, SQLite with
`synchronous=FULL`): an officer sends a note of BODY bytes to a peer whose node is not
running; the sending node retries with backoff. The bytes the sending process wrote (the
`wchar` of /proc/PID/io: every write(2), WAL and log included) are read before and after
RETRIES further attempts, then the peer starts and the bytes until the message is
delivered are read. Baseline: the sealed size, the bytes the message itself occupies
(envelope plus self-copy, read from the database afterwards). Ratio = bytes written /
sealed size: 1.0 per retry would mean each retry rewrites the message once.

Prints one JSON object per body size on stdout and a table on stderr.
Run: .venv/bin/python bench/bench_delivery_state.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from node.client import OfficerClient
from node.config import load_config
from node.devtools.federation import DEMO_AGENCIES, NodeProcess, build_federation

PASSPHRASE, OFFICER_PASSPHRASE = b"bench-node-pass", b"bench-officer-pass"
SENDER, RECEIVER = DEMO_AGENCIES[0][0], DEMO_AGENCIES[1][0]


def wchar(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/PID/io")


def attempts(client: OfficerClient, message_id: str) -> tuple[int, str]:
    m = client.show(message_id, content=False).info
    return m.attempts, m.state


def measure(root: Path, body: int, retries: int) -> dict[str, object]:
    fed = build_federation(
        root,
        PASSPHRASE,
        OFFICER_PASSPHRASE,
        agencies=DEMO_AGENCIES[:2],
        delivery={"initial_backoff_seconds": 0.2, "max_backoff_seconds": 0.4},
    )
    env = dict(os.environ, MLAX_KEY_PASSPHRASE=PASSPHRASE.decode(), MLAX_KDF_PROFILE="test")
    sender, receiver = (NodeProcess(fed.nodes[a], env) for a in (SENDER, RECEIVER))
    sender.start()
    try:
        assert sender.proc is not None
        pid = sender.proc.pid
        with OfficerClient.from_bundle(
            fed.nodes[SENDER].credentials["officer"], OFFICER_PASSPHRASE
        ) as client:
            sent = client.send(RECEIVER, subject="evidence summary", text="x" * body)
            mid = sent.message_id

            def wait_attempts(n: int) -> None:
                deadline = time.monotonic() + 60
                while attempts(client, mid)[0] < n:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"no attempt {n}")
                    time.sleep(0.02)

            wait_attempts(2)
            first, _ = attempts(client, mid)
            before = wchar(pid)
            wait_attempts(first + retries)
            done_retries = attempts(client, mid)[0] - first
            per_retry = (wchar(pid) - before) / done_retries
            before = wchar(pid)
            receiver.start()
            deadline = time.monotonic() + 60
            while attempts(client, mid)[1] != "delivered":
                if time.monotonic() > deadline:
                    raise TimeoutError("not delivered")
                time.sleep(0.02)
            delivered = wchar(pid) - before
    finally:
        sender.stop()
        receiver.stop()
    db = Path(load_config(fed.nodes[SENDER].config).database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(db) as conn:
        sealed = conn.execute(
            "SELECT sum(length(envelope) + coalesce(length(self_copy), 0)) FROM message_contents"
        ).fetchone()[0]
    return {
        "bench": "delivery_state",
        "body_bytes": body,
        "sealed_bytes": sealed,
        "retries_measured": done_retries,
        "bytes_written_per_retry": round(per_retry),
        "ratio_per_retry": round(per_retry / sealed, 4),
        "bytes_written_to_deliver": delivered,
        "ratio_to_deliver": round(delivered / sealed, 4),
        "baseline": "sealed size (envelope + self-copy)",
        "storage": "sqlite synchronous=FULL",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one size, few retries")
    args = parser.parse_args(argv)
    sizes = [256 * 1024] if args.quick else [256 * 1024, 2 * 1024 * 1024]
    retries = 3 if args.quick else 10
    print(
        f"{'body':>9} {'sealed':>9} {'per retry':>10} {'ratio':>7} {'to deliver':>11} {'ratio':>7}",
        file=sys.stderr,
    )
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="mlax-bench-state-") as tmp:
            r = measure(Path(tmp), size, retries)
        print(json.dumps(r), flush=True)
        print(
            f"{size:>9,} {r['sealed_bytes']:>9,} {r['bytes_written_per_retry']:>10,} "
            f"{r['ratio_per_retry']:>7.3f} {r['bytes_written_to_deliver']:>11,} "
            f"{r['ratio_to_deliver']:>7.3f}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
