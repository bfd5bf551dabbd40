"""End-to-end exchange throughput and latency between two real nodes, against bare gRPC.

Two node processes (GB-NCA sends, FR-OCRTEH receives, SQLite storage) are built with
`node.devtools.federation.build_federation` and started as `mlax node serve`, exactly as the
integration tests run them. An officer of GB-NCA submits 1 KiB notes through the SDK.

What one message measures: from the moment the client calls `Submit` to the moment the
sender node stores the receiver's verified receipt (`delivered_at` on the outbound row).
In between: Submit RPC over mutual TLS, seal twice (to the peer and to the node's own
key), outbox commit, the delivery worker's claim, Deliver RPC node to node, the
receiver's open + ledger + receipt + commit, and the sender's receipt check + commit.

Closed loop: `c` client threads each submit one message and wait until it is
`delivered` before submitting the next, so at most `c` messages are in the system. The
officer API has no delivery notification, so one poller thread lists the outbox
(`ListMessages`, newest rows only) when the oldest waiting message is due by the
latencies seen so far, and again shortly after while it is late; it wakes the threads
whose messages turned `delivered`. Latency is the node's own `delivered_at` (stamped
as the receipt is recorded, just before that transaction commits) minus the client's
wall clock at the start of `Submit` (same host, same clock), so polling adds no error
to it; polling only delays the next submission (`poll_lag_p50_ms`) and costs the
sender node CPU, which is priced separately (`sender_cpu_ms_per_poll`, measured on the
idle node after each run). Throughput = messages / (first Submit start to last
delivered_at). CPU per message of each process comes from /proc (Linux only).

Baseline: a bare unary echo server in another process (`--echo-server PORT`), generic
handler on raw bytes, sync server with a thread pool, mutual TLS with throwaway P-256
certificates, 1 KiB payloads, one channel, the same concurrency and number of calls.

Prints one JSON object per line on stdout and a table on stderr.
Run: .venv/bin/python bench/bench_exchange.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import ipaddress
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import grpc
from bare_grpc import cpu_seconds, serve_until_signalled  # bench/, first on sys.path
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from node.client import OfficerClient
from node.client.officer import Credential
from node.devtools.balancer import TcpBalancer, replica_of
from node.devtools.databases import pg_databases
from node.devtools.federation import NodeProcess, build_federation, free_port

KIB = 1024
PASSPHRASE, OFFICER_PASSPHRASE = b"bench-node-pass", b"bench-officer-pass"
SENDER, RECEIVER = "GB-NCA", "FR-OCRTEH"
AGENCIES = (
    (SENDER, "National Crime Agency"),
    (RECEIVER, "Office central pour la repression de la traite des etres humains"),
)
ECHO_METHOD = "/bench.Echo/Echo"
# Worker threads of the echo server: the node's default listener pool size.
ECHO_WORKERS = 32
ECHO_REPEATS = 3
# Outbox polls timed on the idle sender after each run, to price the benchmark's polling.
POLL_COST_CALLS = 50
METHOD = (
    "closed loop, c client threads each Submit then wait until delivered; "
    "latency = node delivered_at - client Submit start; "
    "throughput = n / (first Submit start .. last delivered_at)"
)


@dataclass(frozen=True)
class Plan:
    """How many messages (and echo calls) at each concurrency, and the warm-up."""

    counts: dict[int, int]
    warmup: int
    poll_seconds: float


FULL = Plan(counts={1: 200, 16: 500}, warmup=32, poll_seconds=0.005)
QUICK = Plan(counts={1: 20, 16: 64}, warmup=8, poll_seconds=0.005)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def wall_ms() -> float:
    """The host's wall clock in milliseconds, the clock the node stamps rows with."""
    return time.time_ns() / 1e6


# -- throwaway mutual TLS -----------------------------------------------------------------


def _self_signed(common_name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_echo_certificates(directory: Path) -> None:
    """A server and a client certificate, each trusting only the other, as the nodes do."""
    for role in ("server", "client"):
        cert, key = _self_signed(f"bench-echo-{role}")
        (directory / f"{role}.crt").write_bytes(cert)
        (directory / f"{role}.key").write_bytes(key)
        (directory / f"{role}.key").chmod(0o600)


# -- the echo server (runs in its own process) --------------------------------------------


def serve_echo(port: int, cert_dir: Path) -> int:
    """Answer every call on ECHO_METHOD with its own request bytes until SIGTERM."""

    def echo(request: bytes, _context: grpc.ServicerContext) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    return serve_until_signalled(handler, port, cert_dir, ECHO_WORKERS)


# -- the echo client ----------------------------------------------------------------------


@dataclass
class EchoResult:
    rps: float
    p50_ms: float
    p99_ms: float


class EchoServerProcess:
    """The echo server as a subprocess of this script."""

    def __init__(self, cert_dir: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--echo-server",
                str(self.port),
                "--cert-dir",
                str(cert_dir),
            ],
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.stop()
            raise RuntimeError(f"the echo server did not start (said {line!r})")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def run_threads(concurrency: int, total: int, one: Callable[[], None]) -> None:
    """Run `one` `total` times spread over `concurrency` threads; re-raise the first error."""
    errors: list[BaseException] = []

    def loop(count: int) -> None:
        try:
            for _ in range(count):
                one()
        except BaseException as e:  # reported by the caller, after join
            errors.append(e)

    threads = [
        threading.Thread(target=loop, args=(n,), daemon=True) for n in _split(total, concurrency)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def measure_echo(port: int, cert_dir: Path, plan: Plan) -> dict[int, EchoResult]:
    """Median (over ECHO_REPEATS runs) echo calls per second at each concurrency."""
    creds = grpc.ssl_channel_credentials(
        root_certificates=(cert_dir / "server.crt").read_bytes(),
        private_key=(cert_dir / "client.key").read_bytes(),
        certificate_chain=(cert_dir / "client.crt").read_bytes(),
    )
    payload = os.urandom(KIB)
    results: dict[int, EchoResult] = {}
    with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(ECHO_METHOD)
        grpc.channel_ready_future(channel).result(timeout=10)
        latencies: list[float] = []

        def one() -> None:
            start = time.perf_counter()
            answer = call(payload, timeout=10)
            latencies.append((time.perf_counter() - start) * 1000)
            assert answer == payload

        for concurrency, total in plan.counts.items():
            run_threads(concurrency, max(plan.warmup, concurrency) * 4, one)
            runs: list[EchoResult] = []
            for _ in range(ECHO_REPEATS):
                latencies.clear()
                start = time.perf_counter()
                run_threads(concurrency, total, one)
                elapsed = time.perf_counter() - start
                runs.append(
                    EchoResult(
                        total / elapsed, percentile(latencies, 50), percentile(latencies, 99)
                    )
                )
            results[concurrency] = sorted(runs, key=lambda r: r.rps)[len(runs) // 2]
    return results


# -- the exchange -------------------------------------------------------------------------


@dataclass
class _Waiter:
    submit_start_ms: float
    event: threading.Event = field(default_factory=threading.Event)
    delivered_at: int = 0
    created_at: int = 0
    state: str = ""
    seen_ms: float = 0.0


class DeliveryPoller:
    """One thread that lists the newest outbound rows and wakes the submitters.

    Every poll is an officer call the sender node has to serve, so it polls only when
    the oldest waiting message is expected to be done (from the latencies seen so far),
    and then every `interval` (or a tenth of the usual latency) while it is late.
    """

    def __init__(self, client: OfficerClient, interval: float, rows: int) -> None:
        self._client = client
        self._interval_ms = interval * 1000
        self._rows = rows
        self._lock = threading.Lock()
        self._waiting: dict[str, _Waiter] = {}
        self._expected_ms = 0.0  # moving average of submit-to-delivered
        self._last_poll_ms = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.polls = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bench-poller", daemon=True)
        self._thread.start()

    def wait(self, message_id: str, submit_start_ms: float, timeout: float) -> _Waiter:
        """Block until `message_id` is delivered (or failed); raise after `timeout`."""
        waiter = _Waiter(submit_start_ms)
        with self._lock:
            self._waiting[message_id] = waiter
        self._wake.set()
        if not waiter.event.wait(timeout):
            raise TimeoutError(f"message {message_id} not delivered within {timeout} s")
        if waiter.state != "delivered":
            raise RuntimeError(f"message {message_id} ended {waiter.state}")
        return waiter

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(5)

    def _next_poll_ms(self) -> float | None:
        with self._lock:
            if not self._waiting:
                return None
            oldest = min(w.submit_start_ms for w in self._waiting.values())
        due = oldest + 0.8 * self._expected_ms
        # Late messages are looked for again after a tenth of the usual latency.
        interval = max(self._interval_ms, self._expected_ms / 10)
        return max(due, self._last_poll_ms + interval)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                at = self._next_poll_ms()
                now = wall_ms()
                if at is None or at > now:
                    self._wake.wait(0.5 if at is None else (at - now) / 1000)
                    self._wake.clear()
                    continue
                self._last_poll_ms = now
                self._poll_once()
        except BaseException as e:  # surfaced as timeouts in the submitters, then reported
            self.error = e

    def _finish(self, message_id: str, state: str, delivered_at: int, created_at: int) -> None:
        seen = wall_ms()
        with self._lock:
            waiter = self._waiting.pop(message_id, None)
        if waiter is None:
            return
        waiter.state, waiter.seen_ms = state, seen
        waiter.delivered_at, waiter.created_at = delivered_at, created_at
        took = delivered_at - waiter.submit_start_ms
        self._expected_ms = took if not self._expected_ms else 0.8 * self._expected_ms + 0.2 * took
        waiter.event.set()

    def _poll_once(self) -> None:
        infos = self._client.outbox(limit=self._rows)
        self.polls += 1
        listed = {i.message_id for i in infos}
        for info in infos:
            if info.state in ("delivered", "failed"):
                self._finish(info.message_id, info.state, info.delivered_at, info.created_at)
        with self._lock:
            unlisted = [m for m in self._waiting if m not in listed]
        # A row pushed past the listed window (only if it is retried for long): ask for it.
        for message_id in unlisted:
            info = self._client.show(message_id, content=False).info
            if info.state in ("delivered", "failed"):
                self._finish(message_id, info.state, info.delivered_at, info.created_at)


@dataclass(frozen=True)
class Sample:
    submit_start_ms: float
    created_at: int
    delivered_at: int
    seen_ms: float


@dataclass
class ExchangeResult:
    concurrency: int
    messages: int
    msgs_per_s: float
    p50_ms: float
    p99_ms: float
    node_p50_ms: float
    submit_p50_ms: float
    poll_lag_p50_ms: float
    polls: int
    # CPU time per measured message, by process (None where /proc is not available).
    cpu_ms_per_msg: dict[str, float | None] = field(default_factory=dict)
    # Sender CPU for one outbox poll, measured on the idle node right after the run.
    sender_cpu_ms_per_poll: float | None = None

    @property
    def sender_cpu_ms_per_msg_without_polls(self) -> float | None:
        """The sender's CPU per message less what the benchmark's own polling cost it."""
        total = self.cpu_ms_per_msg.get(SENDER)
        if total is None or self.sender_cpu_ms_per_poll is None:
            return None
        return round(total - self.polls * self.sender_cpu_ms_per_poll / self.messages, 2)


def _per_message_ms(before: float | None, after: float | None, total: int) -> float | None:
    if before is None or after is None:
        return None
    return round(1000 * (after - before) / total, 2)


def run_exchange(
    clients: list[OfficerClient],
    concurrency: int,
    total: int,
    plan: Plan,
    pids: dict[str, int],
) -> ExchangeResult:
    """Closed loop: `concurrency` threads, each submit then wait until delivered.

    Submissions take turns over `clients` (one per replica of the sender)."""
    client = clients[0]
    body = "x" * KIB
    samples: list[Sample] = []
    submit_ms: list[float] = []
    rows = 2 * concurrency + 8
    poller = DeliveryPoller(client, plan.poll_seconds, rows)
    counter = iter(range(1 << 30))

    def one() -> None:
        n = next(counter)
        start = wall_ms()
        t0 = time.perf_counter()
        sender = clients[n % len(clients)]
        info = sender.send(RECEIVER, subject=f"bench {n}", text=body, case_ref="BENCH")
        submit_ms.append((time.perf_counter() - t0) * 1000)
        done = poller.wait(info.message_id, start, timeout=60)
        samples.append(Sample(start, done.created_at, done.delivered_at, done.seen_ms))

    try:
        run_threads(concurrency, max(plan.warmup, concurrency), one)
        samples.clear()
        submit_ms.clear()
        polls_before = poller.polls
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        run_threads(concurrency, total, one)
        cpu_after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        polls = poller.polls - polls_before
    except TimeoutError:
        if poller.error is not None:
            raise poller.error from None
        raise
    finally:
        poller.stop()
    sender_pid = pids.get(SENDER)
    poll_cost = None
    if sender_pid is not None:
        time.sleep(0.5)  # let the delivery worker go idle
        before = cpu_seconds(sender_pid)
        for _ in range(POLL_COST_CALLS):
            client.outbox(limit=rows)
        poll_cost = _per_message_ms(before, cpu_seconds(sender_pid), POLL_COST_CALLS)
    first = min(s.submit_start_ms for s in samples)
    last = max(s.delivered_at for s in samples)
    latencies = [s.delivered_at - s.submit_start_ms for s in samples]
    return ExchangeResult(
        concurrency=concurrency,
        messages=total,
        msgs_per_s=total / max((last - first) / 1000, 1e-9),
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        node_p50_ms=percentile([float(s.delivered_at - s.created_at) for s in samples], 50),
        submit_p50_ms=percentile(submit_ms, 50),
        poll_lag_p50_ms=percentile([s.seen_ms - s.delivered_at for s in samples], 50),
        polls=polls,
        cpu_ms_per_msg={
            name: _per_message_ms(cpu_before[name], cpu_after[name], total) for name in pids
        },
        sender_cpu_ms_per_poll=poll_cost,
    )


@contextlib.contextmanager
def agency_databases(base_url: str | None) -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database per agency (dropped afterwards); {} for SQLite."""
    if not base_url:
        yield {}
        return
    names = {a: f"mlax_bench_{os.getpid()}_{a.split('-')[0].lower()}" for a, _ in AGENCIES}
    with pg_databases(base_url, list(names.values())) as urls:
        yield {a: urls[n] for a, n in names.items()}


def measure_exchange(
    root: Path, plan: Plan, db_urls: dict[str, str], replicas: int = 1
) -> tuple[dict[int, ExchangeResult], dict[str, int]]:
    """Build the two-node federation under `root`, start it, run every concurrency.

    With `replicas` > 1 the sender runs as that many processes over its one PostgreSQL
    database, behind a TCP balancer on its addresses (node/devtools/balancer.py)."""
    # One officer drives every concurrent submission: let it have as many calls in
    # flight as the benchmark's highest concurrency (the default allows 8 per officer).
    most = max(plan.counts)
    fed = build_federation(
        root,
        PASSPHRASE,
        OFFICER_PASSPHRASE,
        agencies=AGENCIES,
        db_urls=db_urls,
        extra_config=f"[limits]\nmax_calls_per_officer = {most}\n",
    )
    env = dict(os.environ, MLAX_KEY_PASSPHRASE=PASSPHRASE.decode(), MLAX_KDF_PROFILE="test")
    sender = fed.nodes[SENDER]
    if replicas > 1:
        setups = [replica_of(sender, f"r{i + 1}") for i in range(replicas)]
    else:
        setups = [sender]
    nodes = [NodeProcess(s, env) for s in setups] + [NodeProcess(fed.nodes[RECEIVER], env)]
    balancers = contextlib.ExitStack()
    if replicas > 1:
        # The receiver reaches the sender's federation address through a balancer (its
        # checkpoint and directory calls); the benchmark's officer traffic goes straight
        # to each replica, so no proxy in this process shares its CPU with the client.
        balancers.enter_context(
            TcpBalancer(sender.federation_port, [("127.0.0.1", s.federation_port) for s in setups])
        )
    try:
        for node in nodes:
            node.start()
        pids = {
            (n.setup.agency if i in (0, len(nodes) - 1) else f"{n.setup.agency}#{i + 1}"): (
                n.proc.pid
            )
            for i, n in enumerate(nodes)
            if n.proc is not None
        }
        pids["bench-client"] = os.getpid()
        print(f"nodes up: {pids}", file=sys.stderr, flush=True)
        pause = float(os.environ.get("MLAX_BENCH_PAUSE", "0"))  # time to attach a profiler
        if pause:
            time.sleep(pause)
        results: dict[int, ExchangeResult] = {}
        cred = Credential.load(sender.credentials["officer"], OFFICER_PASSPHRASE)
        clients = [
            OfficerClient(dataclasses.replace(cred, endpoint=f"127.0.0.1:{s.officer_port}"))
            for s in setups
        ]
        try:
            for concurrency, total in plan.counts.items():
                results[concurrency] = run_exchange(clients, concurrency, total, plan, pids)
        finally:
            for c in clients:
                c.close()
        return results, pids
    finally:
        for node in nodes:
            node.stop()
        balancers.close()


# -- report -------------------------------------------------------------------------------


def _record(ex: ExchangeResult, echo: EchoResult, storage: str, replicas: int) -> dict[str, object]:
    return {
        "bench": "exchange",
        "concurrency": ex.concurrency,
        "messages": ex.messages,
        "msgs_per_s": round(ex.msgs_per_s, 1),
        "p50_ms": round(ex.p50_ms, 1),
        "p99_ms": round(ex.p99_ms, 1),
        "baseline_echo_rps": round(echo.rps, 1),
        "ratio_to_echo": round(ex.msgs_per_s / echo.rps, 4),
        "baseline_echo_p50_ms": round(echo.p50_ms, 3),
        "baseline_echo_p99_ms": round(echo.p99_ms, 3),
        "node_p50_ms": round(ex.node_p50_ms, 1),
        "submit_p50_ms": round(ex.submit_p50_ms, 2),
        "poll_lag_p50_ms": round(ex.poll_lag_p50_ms, 1),
        "polls": ex.polls,
        "polls_per_msg": round(ex.polls / ex.messages, 2),
        "sender_cpu_ms_per_poll": ex.sender_cpu_ms_per_poll,
        "sender_cpu_ms_per_msg_without_polls": ex.sender_cpu_ms_per_msg_without_polls,
        "cpu_ms_per_msg": ex.cpu_ms_per_msg,
        "body_bytes": KIB,
        "storage": storage,
        "sender_replicas": replicas,
        "method": METHOD,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="few messages, for smoke tests")
    parser.add_argument(
        "--pg",
        metavar="URL",
        help="PostgreSQL server (postgresql+psycopg://...) to store both nodes in; the "
        "benchmark creates and drops its databases",
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="run the sending agency as this many node processes (needs --pg)",
    )
    parser.add_argument("--echo-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--cert-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.echo_server is not None:
        return serve_echo(args.echo_server, args.cert_dir)

    def terminate(_sig: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signal.SIGTERM)  # unwinds through the finally blocks

    signal.signal(signal.SIGTERM, terminate)
    if args.replicas > 1 and not args.pg:
        parser.error("--replicas needs --pg: replicas share one PostgreSQL database")
    storage = "postgresql" if args.pg else "sqlite"
    plan = QUICK if args.quick else FULL
    started = time.perf_counter()
    print(
        f"exchange {SENDER} (x{args.replicas}) -> {RECEIVER}, {storage}, 1 KiB; "
        f"python {platform.python_version()}, "
        f"{os.cpu_count()} cpus\nmethod: {METHOD}",
        file=sys.stderr,
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="mlax-bench-") as tmp:
        cert_dir = Path(tmp) / "echo"
        cert_dir.mkdir()
        write_echo_certificates(cert_dir)
        server = EchoServerProcess(cert_dir)
        try:
            echo = measure_echo(server.port, cert_dir, plan)
        finally:
            server.stop()
        with agency_databases(args.pg) as db_urls:
            exchange, _pids = measure_exchange(
                Path(tmp) / "federation", plan, db_urls, args.replicas
            )

    header = (
        f"{'c':>3} {'msgs':>5} {'msgs/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'echo rps':>9} "
        f"{'ratio':>6} {'submit p50':>10} {'poll lag':>8}  cpu ms/msg sender/receiver/bench"
    )
    print(header, file=sys.stderr)
    print("-" * len(header), file=sys.stderr)
    for concurrency in plan.counts:
        ex, base = exchange[concurrency], echo[concurrency]
        print(json.dumps(_record(ex, base, storage, args.replicas)), flush=True)
        senders = [v for k, v in ex.cpu_ms_per_msg.items() if k.startswith(SENDER)]
        sender_cpu = None if None in senders else sum(v for v in senders if v is not None)
        cpu = "/".join(
            "-" if v is None else f"{v:.1f}"
            for v in (
                sender_cpu,
                ex.cpu_ms_per_msg.get(RECEIVER),
                ex.cpu_ms_per_msg.get("bench-client"),
            )
        )
        print(
            f"{concurrency:>3} {ex.messages:>5} {ex.msgs_per_s:>8,.1f} {ex.p50_ms:>7.1f} "
            f"{ex.p99_ms:>7.1f} {base.rps:>9,.0f} {ex.msgs_per_s / base.rps:>6.3f} "
            f"{ex.submit_p50_ms:>10.2f} {ex.poll_lag_p50_ms:>8.1f}  {cpu}",
            file=sys.stderr,
            flush=True,
        )
    print(f"total {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
