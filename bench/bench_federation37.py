"""A federation of 37 agencies on one machine, against a 2-agency baseline in the same run.

Each federation (the baseline first) is built with `node.devtools.federation` and its
nodes started as `mlax node serve` (SQLite, the `SMALL_FOOTPRINT` settings of
tests/integration/test_federation_37.py: 8 listener threads, delivery polling every 2 s,
directory sync every 10 s, witnessing every 5 s, 3 witnesses per checkpoint). Measured,
for each size n:

- `startup`: seconds from launching all n processes at once to the last `node_ready`;
- `idle`: CPU of all nodes over 15 s with nothing to do, from 15 s after start-up
  (cores, and ms/s per node);
- `directory`: seconds until a new directory version installed on one node is served by
  all n (each node's GetDirectory, polled), for `--versions` successive versions;
- `one_peer`: one officer submits 36 notes to one peer: seconds until every one is
  receipted, and the sending node's CPU per note (what a message costs, with n members
  around it);
- `fan_out`: the same with one note to each peer (36 at n = 37; at n = 2 the same 36 to
  the one peer);
- `query`: hit/no-hit queries for one person to every peer (36 at n = 37, 1 at n = 2),
  seconds per query, p50 and p99 over `--queries`, after one warm-up query;
- `witnessing`: how many members hold witness state for each log (each cosigned it at
  least once): `witnesses_per_checkpoint`, whatever n (twice that if the run crosses an
  hour, when the sets rotate);
- `memory`: each node's resident set (VmRSS, /proc) after the work, mean and max MiB.

Then one `ratio` line per figure: the value at n = 37 over the value at n = 2, which
shows what grows with the federation (a query's fan-out, by design) and what does not.
Prints one JSON object per line on stdout, progress on stderr; Linux only (/proc).
Run: .venv/bin/python bench/bench_federation37.py [--agencies 37] [--queries 10]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

import grpc

from exchange._proto.mlax.v1 import federation_pb2 as fpb
from exchange._proto.mlax.v1 import federation_pb2_grpc as fgrpc
from exchange.directory import Directory, SignedDirectory
from exchange.encoding import now_ms
from keys.admin import load_admin
from keys.directory_file import read_signed_directory, write_directory_file
from keys.identity import load_identity
from node.client import OfficerClient
from node.client.matching import MatchClient
from node.devtools.federation import (
    LARGE_FEDERATION,
    LARGE_WITNESSES,
    SMALL_DELIVERY,
    SMALL_LISTENER,
    Federation,
    NodeProcess,
    build_federation,
    member_agencies,
    mlax_command,
    start_all,
    stop_all,
)

PASS, OFFICER_PASS = b"bench37-pass", b"bench37-officer"
SENDER, HOLDER = "GB-NCA", "FR-OCRTEH"
K = LARGE_WITNESSES  # witnesses per checkpoint, as the config says
DIRECTORY_SYNC_SECONDS = 10.0
CONFIG = LARGE_FEDERATION
RECORDS = """ref,given_name,family_name,sex,date_of_birth,nationality,place_of_birth
V-0001,Blessing,Okonkwo,F,1999-04-12,NGA,Benin City
V-0002,Mohammed,Al-Rashid,M,1995,SYR,Aleppo
"""
PERSON = {"given_name": "Blessing", "family_name": "Okonkwo", "date_of_birth": "1999-04-12"}
NOTES = 36
IDLE_SECONDS = 15.0
TICK = os.sysconf("SC_CLK_TCK")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pids(nodes: dict[str, NodeProcess]) -> dict[str, int]:
    return {a: n.proc.pid for a, n in nodes.items() if n.proc is not None}


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if predicate():
                return time.monotonic() - started
        except grpc.RpcError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} within {timeout} s")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Run:
    """One running federation of n agencies and the channels to observe it."""

    def __init__(self, root: Path, n: int) -> None:
        self.n = n
        self.env = dict(
            os.environ,
            MLAX_KDF_PROFILE="test",
            MLAX_KEY_PASSPHRASE=PASS.decode(),
            MLAX_OFFICER_PASSPHRASE=OFFICER_PASS.decode(),
        )
        self.env.pop("MLAX_CREDENTIAL", None)
        os.environ["MLAX_KDF_PROFILE"] = "test"
        self.fed: Federation = build_federation(
            root,
            PASS,
            OFFICER_PASS,
            agencies=member_agencies(n),
            threshold=3,
            admins=5,
            delivery={**SMALL_DELIVERY, "directory_sync_seconds": DIRECTORY_SYNC_SECONDS},
            extra_config=CONFIG,
            listener=SMALL_LISTENER,
        )
        self.ids = list(self.fed.nodes)
        self.nodes = {a: NodeProcess(s, self.env) for a, s in self.fed.nodes.items()}
        self.channels: dict[str, grpc.Channel] = {}
        self.clients: dict[str, OfficerClient] = {}
        self.version = 1

    def client(self, agency: str) -> OfficerClient:
        if agency not in self.clients:
            path = self.fed.nodes[agency].credentials["officer"]
            self.clients[agency] = OfficerClient.from_bundle(path, OFFICER_PASS, timeout=60)
        return self.clients[agency]

    def peer(self, target: str) -> fgrpc.FederationStub:
        if target not in self.channels:
            caller = HOLDER if target == SENDER else SENDER
            ident = load_identity(self.fed.nodes[caller].root / "keys", PASS)
            card = Directory.from_bytes(
                read_signed_directory(self.fed.directory_file).directory
            ).agency(target)
            assert card is not None
            creds = grpc.ssl_channel_credentials(
                card.tls_certificate_pem, ident.tls_private_key_pem(), ident.tls_certificate_pem()
            )
            self.channels[target] = grpc.secure_channel(
                card.endpoint, creds, options=[("grpc.ssl_target_name_override", "127.0.0.1")]
            )
        return fgrpc.FederationStub(self.channels[target])

    def close(self) -> dict[str, int]:
        for c in self.clients.values():
            c.close()
        for ch in self.channels.values():
            ch.close()
        return stop_all(list(self.nodes.values()))

    # -- the measurements -----------------------------------------------------------------

    def idle(self) -> dict[str, float]:
        time.sleep(15)  # past the first rounds: channels, checkpoints, witnesses, syncs
        ps = pids(self.nodes)
        before = {a: cpu_seconds(p) for a, p in ps.items()}
        started = time.monotonic()
        time.sleep(IDLE_SECONDS)
        took = time.monotonic() - started
        used = sum(cpu_seconds(p) - before[a] for a, p in ps.items())
        return {
            "cores": round(used / took, 3),
            "ms_per_s_per_node": round(used / took / len(ps) * 1000, 2),
        }

    def directory_propagation(self) -> float:
        """Install the next version on the last node; seconds until every node serves it."""
        self.version += 1
        signed = read_signed_directory(self.fed.directory_file)
        d = Directory.from_bytes(signed.directory)
        at = now_ms()
        new = replace(
            d, version=self.version, issued_at=at, expires_at=at + (d.expires_at - d.issued_at)
        )
        out = SignedDirectory(new.to_bytes())
        for admin in self.fed.admin_dirs[-3:]:
            out = out.signed_by(load_admin(admin, PASS).signing_key)
        write_directory_file(self.fed.directory_file, out)
        target = self.ids[-1]
        started = time.monotonic()
        # The operator's command, as in docs/operators.md.
        subprocess.run(
            [*mlax_command(), "node", "directory", "update", str(self.fed.directory_file),
             "--config", str(self.fed.nodes[target].config)],
            env=self.env, check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        behind = set(self.ids)
        version = self.version

        def everyone() -> bool:
            for agency in sorted(behind):
                request = fpb.GetDirectoryRequest(have_version=version)
                if self.peer(agency).GetDirectory(request, timeout=10).version == version:
                    behind.discard(agency)
            return not behind

        wait_for(everyone, 180, f"directory version {version}")
        return time.monotonic() - started

    def notes(self, targets: list[str]) -> dict[str, float]:
        """One officer of SENDER submits a note to each of `targets`; until all receipted."""
        sender = self.client(SENDER)
        pid = self.nodes[SENDER].proc.pid  # type: ignore[union-attr]
        cpu0 = cpu_seconds(pid)
        started = time.monotonic()
        ids = {
            sender.send(p, subject="roll call", text="Please confirm.").message_id for p in targets
        }

        def delivered() -> bool:
            states = {m.message_id: m.state for m in sender.outbox(limit=len(ids) + 10)}
            return all(states.get(i) == "delivered" for i in ids)

        wait_for(delivered, 180, "every note receipted")
        took = time.monotonic() - started
        cpu = cpu_seconds(pid) - cpu0
        return {
            "notes": len(ids),
            "peers": len(set(targets)),
            "seconds": round(took, 3),
            "sender_cpu_ms_per_note": round(cpu / len(ids) * 1000, 2),
        }

    def queries(self, count: int, tmp: Path) -> dict[str, float]:
        (tmp / "records.csv").write_text(RECORDS, encoding="utf-8")
        MatchClient(self.client(HOLDER)).load(tmp / "records.csv")
        matcher = MatchClient(self.client(SENDER))
        times = []
        for i in range(count + 1):
            started = time.monotonic()
            answers = {a.peer: a.result for a in matcher.query([PERSON], timeout_ms=60_000)}
            if i:  # the first one also copies every peer's index
                times.append(time.monotonic() - started)
            if len(answers) != self.n - 1 or answers[HOLDER] != "hit":
                raise RuntimeError(f"unexpected answers: {answers}")
            if any(r not in ("hit", "no-hit") for r in answers.values()):
                raise RuntimeError(f"unexpected answers: {answers}")
        return {
            "peers": self.n - 1,
            "queries": count,
            "p50_seconds": round(statistics.median(times), 3),
            "p99_seconds": round(percentile(times, 0.99), 3),
        }

    def witnessing(self) -> dict[str, float]:
        """Witnesses per log, from the witnesses' own state (which origins each cosigned)."""
        per_log: dict[str, int] = {}
        for setup in self.fed.nodes.values():
            db = sqlite3.connect(f"file:{setup.root / 'data' / 'node.db'}?mode=ro", uri=True)
            try:
                for (origin,) in db.execute("SELECT origin FROM witness_state"):
                    per_log[origin] = per_log.get(origin, 0) + 1
            finally:
                db.close()
        counts = list(per_log.values()) or [0]
        return {
            "peers": self.n - 1,
            "max_witnesses_per_log": max(counts),
            "mean_witnesses_per_log": round(statistics.mean(counts), 2),
        }

    def memory(self) -> dict[str, float]:
        rss = [rss_mib(p) for p in pids(self.nodes).values()]
        return {
            "mean_mib": round(statistics.mean(rss), 1),
            "max_mib": round(max(rss), 1),
            "total_mib": round(sum(rss), 1),
        }


def measure(n: int, root: Path, queries: int, versions: int) -> dict[str, Any]:
    run = Run(root / f"federation-{n}", n)
    figures: dict[str, Any] = {}

    def record(name: str, values: dict[str, Any]) -> None:
        """Keep a figure with the load average at the end of its measurement."""
        figures[name] = {**values, "load_avg_1m": round(os.getloadavg()[0], 2)}
        log(f"{n} agencies: {name} {figures[name]}")

    try:
        record("startup", {"seconds": round(start_all(list(run.nodes.values()), 600), 1)})
        record("idle", run.idle())
        times = [run.directory_propagation() for _ in range(versions)]
        record(
            "directory",
            {
                "versions": versions,
                "p50_seconds": round(statistics.median(times), 2),
                "max_seconds": round(max(times), 2),
                "sync_interval_seconds": DIRECTORY_SYNC_SECONDS,
            },
        )
        run.notes([HOLDER])  # warm-up: the officer's connection, the first batch
        # 36 notes to one peer: what a message costs, with n members around it.
        record("one_peer", run.notes([HOLDER] * NOTES))
        # One note to each peer (36 at n = 37; 36 to the one peer at n = 2).
        peers = [a for a in run.ids if a != SENDER]
        record("fan_out", run.notes((peers * NOTES)[: max(NOTES, len(peers))]))
        record("query", run.queries(queries, root))
        time.sleep(8)  # a witness round after the last checkpoint
        record("witnessing", run.witnessing())
        record("memory", run.memory())
    finally:
        codes = run.close()
    failed = {a: c for a, c in codes.items() if c != 0}
    if failed:
        raise RuntimeError(f"nodes exited with {failed}")
    return figures


RATIOS = (
    ("startup", "seconds"),
    ("idle", "ms_per_s_per_node"),
    ("directory", "p50_seconds"),
    ("one_peer", "seconds"),
    ("one_peer", "sender_cpu_ms_per_note"),
    ("fan_out", "seconds"),
    ("fan_out", "sender_cpu_ms_per_note"),
    ("query", "p50_seconds"),
    ("witnessing", "max_witnesses_per_log"),
    ("memory", "mean_mib"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--agencies", type=int, default=37, help="the federation measured")
    parser.add_argument("--baseline", type=int, default=2, help="the federation compared")
    parser.add_argument("--queries", type=int, default=10, help="queries timed per size")
    parser.add_argument("--versions", type=int, default=3, help="directory versions timed")
    args = parser.parse_args(argv)

    def terminate(_sig: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signal.SIGTERM)  # unwinds through the finally blocks

    signal.signal(signal.SIGTERM, terminate)
    log(
        f"federation of {args.agencies} vs {args.baseline} agencies on loopback, sqlite; "
        f"python {platform.python_version()}, {os.cpu_count()} cpus, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    results: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="mlax-bench37-") as tmp:
        for n in (args.baseline, args.agencies):
            results[n] = measure(n, Path(tmp), args.queries, args.versions)
            for name, values in results[n].items():
                line = {"bench": "federation37", "agencies": n, "figure": name, **values}
                print(json.dumps(line), flush=True)
    base, big = results[args.baseline], results[args.agencies]
    for figure, key in RATIOS:
        b, v = base[figure][key], big[figure][key]
        print(
            json.dumps(
                {
                    "bench": "federation37",
                    "figure": "ratio",
                    "of": f"{figure}.{key}",
                    "agencies": args.agencies,
                    "value": v,
                    "baseline_agencies": args.baseline,
                    "baseline": b,
                    "ratio": round(v / b, 2) if b else None,
                }
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
