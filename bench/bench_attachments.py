"""Evidence attachments end to end (upload, node-to-node transfer, download) against bare gRPC.

Two node processes (NG-NAPTIP sends evidence, GB-NCA receives it) are built with
`node.devtools.federation.build_federation` and started as `mlax node serve`, exactly as
the integration tests run them, on each storage in turn: SQLite with the filesystem blob
backend, and (with `--pg URL` or MLAX_TEST_PG_URL) PostgreSQL with the postgresql blob
backend (evidence in rows of the node's database). GB-NCA's officer opens an MLA case
against NG-NAPTIP (deploy/forms/mla-request.toml), submits it and GB-NCA's supervisor
approves it; once NG-NAPTIP has the case, one file of random bytes is sent through it,
in one of two modes (`--mode`, default both):

- pipelined (docs/adr/0012-evidence-pipeline.md): NG-NAPTIP's officer, in a process of
  its own, `CaseClient.attach` (1 MiB chunks; the SDK hashes the file in a thread and
  declares the SHA-256 as soon as it has it, so the node announces the file and pushes
  chunks while the upload goes on). At the same moment GB-NCA's officer, in another
  process, polls GetCase every 0.05 s until the file appears and downloads it with
  `follow` (chunks as they land at GB-NCA; the SDK hashes as it writes, and names the
  file only once GB-NCA said "available" and the SHA-256 matches).
- sequential (the protocol before ADR 0012): the upload declares no SHA-256 early, so
  the push starts after the upload returned; the download starts once GB-NCA shows the
  file `available` (GetCase every 0.1 s).

Stages: upload = the attach() call; available = from the upload's start to GB-NCA's
`completed_at` for the file (same host clock); download = the download() call; end to
end = from the upload's start to the end of the verified download (or of the upload
call, if its answer comes later).

Baseline, in the same run (twice before the nodes start, twice after they stop; the
mean is the figure): a bare gRPC client-streaming copy of the same file between two
processes of this script, generic handlers on raw bytes, mutual TLS with the two nodes'
own TLS keys, the same 1 MiB messages and the node's message size limits (4 MiB),
every other gRPC setting at its default. The server writes each message to a file and
fsyncs it at the end, before it answers. The ratio of each stage is its MB/s over the
baseline's (MB = 10^6 bytes).

Memory: VmRSS of every process is read once it is up and idle (after the case is set
up, the clients connected), its peak (VmHWM, reset through /proc/PID/clear_refs at that
moment) at the end. Growth = peak - that idle RSS. CPU seconds per process come from
/proc too (Linux only).

Prints one JSON object per line on stdout and a table on stderr.
Run: .venv/bin/python bench/bench_attachments.py [--size-mib N | --quick] [--pg URL]
     [--mode pipelined|sequential|both]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import grpc
from bare_grpc import cpu_seconds, serve_until_signalled  # bench/, first on sys.path

from exchange import forms
from exchange.attachment import DEFAULT_CHUNK_SIZE
from exchange.encoding import now_ms
from keys.identity import load_identity
from node.client import OfficerClient
from node.client.cases import CaseClient
from node.config import LimitsSection
from node.devtools.databases import pg_databases
from node.devtools.federation import Federation, NodeProcess, build_federation, free_port

MIB = 1 << 20
MB = 1e6
ROOT = Path(__file__).resolve().parent.parent
FORM = ROOT / "deploy" / "forms" / "mla-request.toml"
PASSPHRASE, OFFICER_PASSPHRASE = b"bench-node-pass", b"bench-officer-pass"
# A uploads and pushes the evidence, B receives it and its officer downloads it.
SENDER, RECEIVER = "NG-NAPTIP", "GB-NCA"
AGENCIES = (
    (RECEIVER, "National Crime Agency"),
    (SENDER, "National Agency for the Prohibition of Trafficking in Persons"),
)
CHUNK = DEFAULT_CHUNK_SIZE
MAX_MESSAGE_BYTES = LimitsSection().max_message_bytes
# The baseline is gRPC as it comes: only the node's message size limits are set.
BARE_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
COPY_RUNS = 2  # before the nodes start, and again after they stop
COPY_METHOD = "/bench.Copy/Copy"
COPY_WORKERS = 32  # the node's default listener pool
FULL_MIB, QUICK_MIB = 1024, 16
RATIO_TARGET = 0.5
GROWTH_TARGET_MIB = 64
POLL_SECONDS = 0.1
# Disk the run needs, in file sizes: input, baseline copy, A's blob, B's blob, download.
DISK_FILES = 5
METHOD = (
    "one file, 1 MiB chunks; upload = attach() call; available = upload start .. receiver "
    "completed_at; download = download() call (hashed as written); pipelined: download "
    "follows from the file's first appearance; sequential: push after the upload, download "
    "after available; baseline = bare gRPC client-streaming copy over mTLS, fsync at end, "
    "mean of 4"
)


# -- /proc --------------------------------------------------------------------------------


def _status_kib(pid: int | str, key: str) -> int | None:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM), or None where there is none."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_kib(pid: int | str) -> int | None:
    return _status_kib(pid, "VmRSS")


def peak_kib(pid: int | str) -> int | None:
    return _status_kib(pid, "VmHWM")


def reset_peak(pid: int | str) -> None:
    """Set the process's VmHWM back to its current RSS (Linux 4.0+; owner only)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def _mib(kib: int | None) -> float | None:
    return None if kib is None else round(kib / 1024, 1)


# -- the input file -----------------------------------------------------------------------


def make_input(path: Path, size: int) -> bytes:
    """Random bytes written 1 MiB at a time (never held whole); returns their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(MIB, left))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return digest.digest()


def file_sha256(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(MIB):
            digest.update(block)
    return digest.digest()


# -- the baseline: a bare gRPC streaming copy (server in its own process) ----------------


def _tls_files(fed: Federation, cert_dir: Path) -> None:
    """The two nodes' own TLS keys: the copy server is B, its client is A."""
    cert_dir.mkdir(mode=0o700)
    for role, agency in (("server", RECEIVER), ("client", SENDER)):
        ident = load_identity(fed.nodes[agency].root / "keys", PASSPHRASE)
        (cert_dir / f"{role}.crt").write_bytes(ident.tls_certificate_pem())
        key = cert_dir / f"{role}.key"
        key.write_bytes(ident.tls_private_key_pem())
        key.chmod(0o600)


def serve_copy(port: int, cert_dir: Path, out: Path) -> int:
    """Write each streamed call's messages to `out`, fsync, answer the byte count."""

    def copy(chunks: Iterator[bytes], _context: grpc.ServicerContext) -> bytes:
        total = 0
        with out.open("wb") as f:
            for chunk in chunks:
                f.write(chunk)
                total += len(chunk)
            f.flush()
            os.fsync(f.fileno())
        return total.to_bytes(8, "big")

    handler = grpc.method_handlers_generic_handler(
        "bench.Copy", {"Copy": grpc.stream_unary_rpc_method_handler(copy)}
    )
    return serve_until_signalled(handler, port, cert_dir, COPY_WORKERS, list(BARE_OPTIONS))


def _copy_channel(port: int, cert_dir: Path) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(
        root_certificates=(cert_dir / "server.crt").read_bytes(),
        private_key=(cert_dir / "client.key").read_bytes(),
        certificate_chain=(cert_dir / "client.crt").read_bytes(),
    )
    options = [*BARE_OPTIONS, ("grpc.ssl_target_name_override", "127.0.0.1")]
    return grpc.secure_channel(f"127.0.0.1:{port}", creds, options=options)


# -- client processes ---------------------------------------------------------------------


def run_worker(args: argparse.Namespace) -> int:
    """One client operation in its own process, so that its memory is its own.

    Connects, says `ready` with its idle RSS, waits for `go [ARG]` on stdin, does the
    operation, and prints its start and end (wall clock), peak RSS and CPU time.
    """
    role: str = args.worker
    extra: dict[str, Any] = {}
    if role == "copy":
        channel = _copy_channel(args.port, args.cert_dir)
        grpc.channel_ready_future(channel).result(timeout=30)
        call: grpc.StreamUnaryMultiCallable[bytes, bytes] = channel.stream_unary(COPY_METHOD)
    else:
        client = OfficerClient.from_bundle(args.bundle, OFFICER_PASSPHRASE, timeout=30)
        cases = CaseClient(client)
        cases.get(args.case_ref)  # connected, authenticated, warm
    reset_peak("self")
    idle = rss_kib("self")
    print(json.dumps({"ready": True, "rss_kib": idle}), flush=True)
    words = sys.stdin.readline().split()
    cpu0 = os.times()
    start = time.time()
    if role == "copy":

        def chunks() -> Iterator[bytes]:
            with args.file.open("rb") as f:
                while block := f.read(CHUNK):
                    yield block

        answer = call(chunks(), timeout=600 + args.file.stat().st_size / MB)
        extra["copied"] = int.from_bytes(answer, "big")
        channel.close()
    elif role == "upload":
        pipelined = args.mode == "pipelined"
        status = cases.attach(args.case_ref, args.file, chunk_size=CHUNK, early=pipelined)
        extra["attachment_id"] = status.attachment_id
    elif role == "download":
        if len(words) > 1:  # sequential: told the file once it is available
            info = cases.download(words[1], args.file)
        else:  # pipelined: find the file as soon as it appears, and follow it

            def appeared() -> str:
                found = cases.get(args.case_ref).attachments
                return found[0].attachment_id if found else ""

            attachment_id = _wait("the file did not appear", 600, appeared, 0.05)
            extra["found"] = time.time()
            info = cases.download(attachment_id, args.file, follow=True)
        extra["sha256"] = bytes(info.sha256).hex()
    else:
        raise SystemExit(f"unknown worker role {role}")
    end = time.time()
    cpu1 = os.times()
    report = {
        "start": start,
        "end": end,
        "rss_kib": idle,
        "peak_kib": peak_kib("self"),
        "cpu_s": round(cpu1.user + cpu1.system - cpu0.user - cpu0.system, 2),
        **extra,
    }
    print(json.dumps(report), flush=True)
    return 0


class Child:
    """A process of this script (a worker or the copy server) spoken to by lines."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self.name = " ".join(args[:2])

    def _line(self) -> str:
        out: IO[bytes] | None = self.proc.stdout
        assert out is not None
        line = out.readline()
        if not line:
            self.proc.wait()
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")
        return line.decode()

    def ready(self) -> dict[str, Any]:
        line = self._line()
        return {"ready": True} if line.strip() == "ready" else json.loads(line)

    def go(self, *words: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((" ".join(("go", *words)) + "\n").encode())
        self.proc.stdin.flush()

    def result(self) -> dict[str, Any]:
        """The worker's report (it exits afterwards: see `finish`)."""
        doc: dict[str, Any] = json.loads(self._line())
        return doc

    def finish(self) -> None:
        if self.proc.wait(60) != 0:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


def _worker_args(role: str, file: Path, **kw: object) -> list[str]:
    args = ["--worker", role, "--file", str(file)]
    for k, v in kw.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return args


# -- the baseline run ---------------------------------------------------------------------


@dataclass
class CopyResult:
    seconds: float
    mb_per_s: float
    server_growth_mib: float | None
    client_growth_mib: float | None
    server_cpu_s: float | None
    client_cpu_s: float


def measure_copy(src: Path, size: int, cert_dir: Path, out: Path) -> CopyResult:
    port = free_port()
    server = Child(["--copy-server", str(port), "--cert-dir", str(cert_dir), "--out", str(out)])
    try:
        server.ready()
        client = Child(_worker_args("copy", src, port=port, cert_dir=cert_dir))
        try:
            client.ready()
            time.sleep(0.2)
            server_idle = rss_kib(server.pid)
            reset_peak(server.pid)
            cpu0 = cpu_seconds(server.pid)
            client.go()
            done = client.result()
            server_peak = peak_kib(server.pid)
            cpu1 = cpu_seconds(server.pid)
            client.finish()
        finally:
            client.stop()
    finally:
        server.stop()
    if done["copied"] != size or out.stat().st_size != size:
        raise RuntimeError(f"the copy moved {done['copied']} bytes, not {size}")
    out.unlink()
    seconds = done["end"] - done["start"]
    return CopyResult(
        seconds=seconds,
        mb_per_s=size / MB / seconds,
        server_growth_mib=_growth(server_idle, server_peak),
        client_growth_mib=_growth(done["rss_kib"], done["peak_kib"]),
        server_cpu_s=None if cpu0 is None or cpu1 is None else round(cpu1 - cpu0, 2),
        client_cpu_s=done["cpu_s"],
    )


def _growth(idle: int | None, peak: int | None) -> float | None:
    return None if idle is None or peak is None else round((peak - idle) / 1024, 1)


# -- the MLAX run -------------------------------------------------------------------------


@dataclass
class ProcessMemory:
    idle_kib: int | None
    peaks_kib: dict[str, int | None] = field(default_factory=dict)

    @property
    def peak_kib(self) -> int | None:
        known = [p for p in self.peaks_kib.values() if p is not None]
        return max(known) if known else None


@dataclass
class MlaxResult:
    storage: str  # "sqlite+filesystem" or "postgresql+postgresql"
    mode: str  # "pipelined" or "sequential"
    upload_s: float
    available_s: float  # from the upload's start to the receiver's completed_at
    download_s: float
    end_to_end_s: float
    poll_lag_s: float  # sequential: available .. noticed; pipelined: start .. file found
    memory: dict[str, ProcessMemory]
    cpu_s: dict[str, dict[str, float | None]]  # stage -> process -> seconds


class Stages:
    """Node memory and CPU per stage: read the peak and reset it at every boundary."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.memory = {name: ProcessMemory(rss_kib(pid)) for name, pid in pids.items()}
        self.cpu: dict[str, dict[str, float | None]] = {}
        for pid in pids.values():
            reset_peak(pid)
        self._cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}

    def end(self, stage: str) -> None:
        cpu = {}
        for name, pid in self.pids.items():
            self.memory[name].peaks_kib[stage] = peak_kib(pid)
            reset_peak(pid)
            now, before = cpu_seconds(pid), self._cpu[name]
            cpu[name] = None if now is None or before is None else round(now - before, 2)
            self._cpu[name] = now
        self.cpu[stage] = cpu


def _wait(what: str, timeout: float, check: Any, every: float = POLL_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise TimeoutError(f"{what} within {timeout:.0f} s")


def open_case(fed: Federation) -> str:
    """An MLA case GB-NCA -> NG-NAPTIP, submitted, approved, and known to NG-NAPTIP."""
    creds = fed.nodes[RECEIVER].credentials
    data = tomllib.loads(FORM.read_text())
    form = forms.form_from_mapping(forms.CaseType.MLA, data, now_ms=now_ms())
    with (
        OfficerClient.from_bundle(creds["officer"], OFFICER_PASSPHRASE) as officer,
        OfficerClient.from_bundle(creds["supervisor"], OFFICER_PASSPHRASE) as supervisor,
        OfficerClient.from_bundle(
            fed.nodes[SENDER].credentials["officer"], OFFICER_PASSPHRASE
        ) as requested,
    ):
        gb = CaseClient(officer)
        ref = gb.create(form).summary.case_ref
        gb.act(ref, "submit")
        CaseClient(supervisor).approve(ref)
        ng = CaseClient(requested)

        def submitted() -> bool:
            try:
                summary = ng.get(ref).summary
            except Exception:  # not there yet
                return False
            return summary.state == "submitted" and not summary.pending_action

        _wait(f"{SENDER} did not receive case {ref}", 30, submitted)
    return ref


def measure_mlax(
    fed: Federation, src: Path, size: int, out: Path, env: dict[str, str], storage: str, mode: str
) -> MlaxResult:
    nodes = {a: NodeProcess(fed.nodes[a], env) for a in (SENDER, RECEIVER)}
    workers: list[Child] = []
    pipelined = mode == "pipelined"
    try:
        for node in nodes.values():
            node.start(wait=0)
        for node in nodes.values():
            node.wait_ready(30)
        ref = open_case(fed)
        up = Child(
            _worker_args(
                "upload",
                src,
                bundle=fed.nodes[SENDER].credentials["officer"],
                case_ref=ref,
                mode=mode,
            ),
            env,
        )
        down = Child(
            _worker_args(
                "download",
                out,
                bundle=fed.nodes[RECEIVER].credentials["officer"],
                case_ref=ref,
                mode=mode,
            ),
            env,
        )
        workers += [up, down]
        idle = {"upload-client": up.ready()["rss_kib"], "download-client": down.ready()["rss_kib"]}
        pids = {f"node-{a}": n.proc.pid for a, n in nodes.items() if n.proc is not None}
        print(
            f"{storage}, {mode}: nodes up: {pids}, case {ref}, load {os.getloadavg()[0]:.2f}",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(1.0)  # let the nodes settle after the case's messages
        stages = Stages(pids)

        with OfficerClient.from_bundle(
            fed.nodes[RECEIVER].credentials["auditor"], OFFICER_PASSPHRASE
        ) as watcher:
            cases = CaseClient(watcher)

            def available(attachment_id: str) -> int:
                for a in cases.get(ref).attachments:
                    if a.attachment_id == attachment_id and a.state in ("available", "rejected"):
                        if a.state != "available":
                            raise RuntimeError(f"{RECEIVER} rejected the file: {a.last_error}")
                        return int(a.completed_at)
                return 0

            if pipelined:
                up.go()
                down.go()
                uploaded = up.result()
                downloaded = down.result()
                stages.end("pipeline")
                completed_ms = available(uploaded["attachment_id"])
                seen = downloaded["found"]
                poll_lag = downloaded["found"] - uploaded["start"]
            else:
                up.go()
                uploaded = up.result()
                stages.end("upload")  # before the worker's exit: the push starts at once
                attachment_id = uploaded["attachment_id"]
                completed_ms = _wait(
                    f"{RECEIVER} did not get the file",
                    300 + size / (2 * MB),
                    lambda: available(attachment_id),
                )
                seen = time.time()
                poll_lag = seen - completed_ms / 1000
                stages.end("transfer")
                down.go(attachment_id)
                downloaded = down.result()
                stages.end("download")
        up.finish()
        down.finish()
    finally:
        for w in workers:
            w.stop()
        codes = {a: n.stop() for a, n in nodes.items()}
    if any(codes.values()):
        raise RuntimeError(f"a node exited badly: {codes}")
    if not completed_ms:
        raise RuntimeError(f"{RECEIVER} does not show the file available")
    if file_sha256(out) != file_sha256(src):
        raise RuntimeError("the downloaded file differs from the uploaded one")
    out.unlink()
    memory = stages.memory
    for name, doc, stage in (
        ("upload-client", uploaded, "pipeline" if pipelined else "upload"),
        ("download-client", downloaded, "pipeline" if pipelined else "download"),
    ):
        memory[name] = ProcessMemory(idle[name], {stage: doc["peak_kib"]})
        stages.cpu[stage][name] = doc["cpu_s"]
    return MlaxResult(
        storage=storage,
        mode=mode,
        upload_s=uploaded["end"] - uploaded["start"],
        available_s=completed_ms / 1000 - uploaded["start"],
        download_s=downloaded["end"] - downloaded["start"],
        # Pipelined, the upload's answer may reach its client after the download ended.
        end_to_end_s=max(downloaded["end"], uploaded["end"]) - uploaded["start"],
        poll_lag_s=poll_lag,
        memory=memory,
        cpu_s=stages.cpu,
    )


# -- report -------------------------------------------------------------------------------


def _records(size: int, copies: list[CopyResult], runs: list[MlaxResult]) -> list[dict[str, Any]]:
    base = sum(c.mb_per_s for c in copies) / len(copies)
    common = {"bench": "attachments", "size_bytes": size, "chunk_bytes": CHUNK}
    records: list[dict[str, Any]] = [
        {
            **common,
            "stage": "baseline",
            "mb_per_s": round(base, 1),
            "runs_mb_per_s": [round(c.mb_per_s, 1) for c in copies],
            "seconds": [round(c.seconds, 2) for c in copies],
            "rss_growth_mib": {
                "copy-server": max((c.server_growth_mib or 0.0) for c in copies),
                "copy-client": max((c.client_growth_mib or 0.0) for c in copies),
            },
            "cpu_s": {
                "copy-server": [c.server_cpu_s for c in copies],
                "copy-client": [c.client_cpu_s for c in copies],
            },
            "method": "bare gRPC client-streaming copy, mTLS, 1 MiB messages, fsync at end",
        }
    ]
    for run in runs:
        tag = {**common, "storage": run.storage, "mode": run.mode}
        stages = (
            ("upload", run.upload_s),
            ("available", run.available_s),
            ("download", run.download_s),
            ("end_to_end", run.end_to_end_s),
        )
        for stage, seconds in stages:
            mbps = size / MB / seconds
            record = {
                **tag,
                "stage": stage,
                "seconds": round(seconds, 2),
                "mb_per_s": round(mbps, 1),
                "baseline_mb_per_s": round(base, 1),
                "ratio": round(mbps / base, 3),
                "ratio_target": RATIO_TARGET,
            }
            if stage == "end_to_end":
                record["poll_lag_s"] = round(run.poll_lag_s, 3)
                record["cpu_s"] = run.cpu_s
            records.append(record)
        processes = {
            name: {
                "idle_rss_mib": _mib(m.idle_kib),
                "peak_rss_mib": _mib(m.peak_kib),
                "rss_growth_mib": _growth(m.idle_kib, m.peak_kib),
                "peak_by_stage_mib": {k: _mib(v) for k, v in m.peaks_kib.items()},
            }
            for name, m in run.memory.items()
        }
        growths = [_growth(m.idle_kib, m.peak_kib) for m in run.memory.values()]
        max_growth = max((g for g in growths if g is not None), default=None)
        records.append(
            {
                **tag,
                "stage": "memory",
                "processes": processes,
                "max_rss_growth_mib": max_growth,
                "growth_target_mib": GROWTH_TARGET_MIB,
                "growth_ok": max_growth is not None and max_growth < GROWTH_TARGET_MIB,
            }
        )
    return records


def _table(records: list[dict[str, Any]]) -> None:
    def err(text: str = "") -> None:
        print(text, file=sys.stderr, flush=True)

    base = records[0]
    err(
        f"baseline copy: {base['mb_per_s']:,.1f} MB/s (runs {base['runs_mb_per_s']}), "
        f"RSS growth server {base['rss_growth_mib']['copy-server']} MiB, "
        f"client {base['rss_growth_mib']['copy-client']} MiB"
    )
    header = f"{'storage':<24} {'mode':<10} {'stage':<11} {'seconds':>8} {'MB/s':>8} {'ratio':>6}"
    err(header)
    err("-" * len(header))
    for r in records[1:]:
        if r["stage"] == "memory":
            growth = ", ".join(f"{k} {v['rss_growth_mib']}" for k, v in r["processes"].items())
            err(f"{r['storage']:<24} {r['mode']:<10} RSS growth MiB: {growth}")
            continue
        err(
            f"{r['storage']:<24} {r['mode']:<10} {r['stage']:<11} {r['seconds']:>8.2f} "
            f"{r['mb_per_s']:>8.1f} {r['ratio']:>6.3f}"
        )
        if r["stage"] == "end_to_end":
            cpu = "; ".join(
                f"{stage}: " + ", ".join(f"{k} {v}" for k, v in by.items())
                for stage, by in r["cpu_s"].items()
            )
            err(f"{'':<36} cpu s {cpu}")


def _use_postgresql_blobs(fed: Federation) -> None:
    """Evidence in the nodes' PostgreSQL databases (storage.blob_backend)."""
    for setup in fed.nodes.values():
        text = setup.config.read_text()
        setup.config.write_text(
            text.replace("[storage]\n", '[storage]\nblob_backend = "postgresql"\n', 1)
        )


@contextlib.contextmanager
def _pg_databases(base_url: str) -> Iterator[dict[str, str]]:
    """A fresh database per node on the server of `base_url`, dropped afterwards."""
    tag = os.urandom(4).hex()
    names = {a: f"mlax_bench_att_{tag}_{a.split('-')[0].lower()}" for a, _ in AGENCIES}
    with pg_databases(base_url, list(names.values())) as urls:
        yield {a: urls[n] for a, n in names.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    size_group = parser.add_mutually_exclusive_group()
    size_group.add_argument("--quick", action="store_true", help=f"{QUICK_MIB} MiB, smoke tests")
    size_group.add_argument(
        "--size-mib", type=int, default=FULL_MIB, help=f"file size (default {FULL_MIB})"
    )
    parser.add_argument("--tmp", type=Path, help="where the files go (default: system temp)")
    parser.add_argument(
        "--pg",
        metavar="URL",
        default=os.environ.get("MLAX_TEST_PG_URL", ""),
        help="also run on PostgreSQL with the postgresql blob backend "
        "(postgresql+psycopg://USER@HOST/DB; default $MLAX_TEST_PG_URL)",
    )
    parser.add_argument(
        "--storage",
        choices=("sqlite", "postgresql", "all"),
        default="all",
        help="which storage to run (default: both when --pg is given)",
    )
    parser.add_argument(
        "--mode", choices=("pipelined", "sequential", "both"), default="both", help="see above"
    )
    # Internal: the copy server and the client processes.
    parser.add_argument("--copy-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=("copy", "upload", "download"), help=argparse.SUPPRESS)
    parser.add_argument("--cert-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bundle", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--case-ref", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.copy_server is not None:
        return serve_copy(args.copy_server, args.cert_dir, args.out)
    if args.worker is not None:
        return run_worker(args)

    def terminate(_sig: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signal.SIGTERM)  # unwinds through the finally blocks

    signal.signal(signal.SIGTERM, terminate)
    size = (QUICK_MIB if args.quick else args.size_mib) * MIB
    if size <= 0:
        parser.error("--size-mib must be positive")
    os.environ["MLAX_KDF_PROFILE"] = "test"  # key files: fast KDF, as in the tests
    env = dict(
        os.environ,
        MLAX_KEY_PASSPHRASE=PASSPHRASE.decode(),
        MLAX_OFFICER_PASSPHRASE=OFFICER_PASSPHRASE.decode(),
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mlax-bench-att-", dir=args.tmp) as tmp_name:
        tmp = Path(tmp_name)
        free = shutil.disk_usage(tmp).free
        need = DISK_FILES * size + 256 * MIB
        if free < need:
            raise SystemExit(
                f"{tmp} has {free / MIB:,.0f} MiB free; this run needs {need / MIB:,.0f} MiB."
            )
        print(
            f"attachments {SENDER} -> {RECEIVER}, {size / MIB:,.0f} MiB; "
            f"python {platform.python_version()}, grpcio {grpc.__version__}, "
            f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}; "
            f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC\nmethod: {METHOD}",
            file=sys.stderr,
            flush=True,
        )
        src = tmp / "evidence.bin"
        make_input(src, size)
        modes = ("pipelined", "sequential") if args.mode == "both" else (args.mode,)
        storages = [st for st in ("sqlite", "postgresql") if args.storage in (st, "all")]
        if not args.pg:
            if args.storage == "postgresql":
                parser.error("--storage postgresql needs --pg URL (or MLAX_TEST_PG_URL)")
            storages = ["sqlite"]
        copies: list[CopyResult] = []
        runs: list[MlaxResult] = []
        for storage in storages:
            with contextlib.ExitStack() as stack:
                urls = stack.enter_context(_pg_databases(args.pg)) if storage != "sqlite" else {}
                fed = build_federation(
                    tmp / f"federation-{storage}",
                    PASSPHRASE,
                    OFFICER_PASSPHRASE,
                    AGENCIES,
                    db_urls=urls,
                )
                label = "sqlite+filesystem"
                if storage != "sqlite":
                    _use_postgresql_blobs(fed)
                    label = "postgresql+postgresql"
                cert_dir = tmp / f"copy-tls-{storage}"
                copy = tmp / "copy.bin"
                if not copies:
                    _tls_files(fed, cert_dir)
                    copies += [measure_copy(src, size, cert_dir, copy) for _ in range(COPY_RUNS)]
                    last_certs = cert_dir
                for mode in modes:
                    runs.append(
                        measure_mlax(fed, src, size, tmp / "downloaded.bin", env, label, mode)
                    )
        copies += [measure_copy(src, size, last_certs, copy) for _ in range(COPY_RUNS)]
    records = _records(size, copies, runs)
    for record in records:
        print(json.dumps(record), flush=True)
    _table(records)
    print(f"total {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
