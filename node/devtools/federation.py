"""Build a local federation on loopback: identities, admins, signed directory, configs,
officers. Used by `mlax demo`, the integration tests and the benchmarks, so all three
exercise the same setup an operator would do by hand (deploy/federation/README.md)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from keys.admin import create_admin, load_admin
from keys.directory_edit import add_agencies, new_directory
from keys.directory_file import write_directory_file
from keys.identity import create_identity, read_card
from node.config import load_config
from node.services.officers import OfficerCA, add_officer, write_bundle
from node.services.trust import TrustedDirectory
from node.storage.db import Database

DEMO_AGENCIES = (
    ("GB-NCA", "National Crime Agency"),
    ("FR-OCRTEH", "Office central pour la repression de la traite des etres humains"),
    ("NG-NAPTIP", "National Agency for the Prohibition of Trafficking in Persons"),
)
OFFICERS = (("officer", "officer"), ("supervisor", "supervisor"), ("auditor", "auditor"))

# Countries for a federation the size of the 2017 Call to Action (37 states), after the
# demo's three: `member_agencies`.
_COUNTRY_CODES = (
    "AU US CA NL SE NO DK FI DE IT ES PT IE BE LU AT CH PL CZ GR RO BG HR SI SK HU EE LV LT MT CY "
    "NZ JP KR"
)
_MORE_COUNTRIES = tuple(_COUNTRY_CODES.split())

# A smaller node for running dozens on one machine (tests and benchmarks): fewer threads
# on each listener and per caller, slower polling. Settings an operator has too; the node
# code is the same.
SMALL_LISTENER = {"max_workers": 8}
SMALL_FOOTPRINT = """
[limits]
max_calls_per_peer = 4
max_calls_per_officer = 4
max_streams = 8
max_watchers = 4
"""
SMALL_DELIVERY = {"poll_interval_seconds": 2.0, "max_in_flight_per_peer": 4}
# Witnesses per checkpoint in the large federations of the 37-agency test and benchmark.
LARGE_WITNESSES = 3
# A large federation on one machine: the small footprint, witnessing every 5 s by the
# default number of witnesses, and no periodic matching-index sync (queries sync first).
LARGE_FEDERATION = (
    SMALL_FOOTPRINT
    + f"""
[ledger]
witness_interval_seconds = 5.0
witnesses_per_checkpoint = {LARGE_WITNESSES}

[matching]
sync_interval_seconds = 3600
"""
)


def member_agencies(n: int) -> tuple[tuple[str, str], ...]:
    """`n` agencies (at most 37): the demo's three, then one central authority per country."""
    if not 1 <= n <= len(DEMO_AGENCIES) + len(_MORE_COUNTRIES):
        raise ValueError(f"from 1 to 37 agencies (got {n})")
    more = tuple((f"{c}-MLA", f"Central authority {c}") for c in _MORE_COUNTRIES)
    return (DEMO_AGENCIES + more)[:n]


# Ports handed out by this process, so two calls never return the same one.
_GIVEN: set[int] = set()
_GIVEN_LOCK = threading.Lock()


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux; IANA's elsewhere)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback TCP port nothing listens on now, for a node to bind a little later.

    Picked at random below the kernel's ephemeral range, where no outgoing connection can
    take it in the meantime: a federation of 37 nodes opens over a thousand connections
    among its members while they start, and a port chosen from the ephemeral range (as
    `bind(0)` does) was taken by one of them before its node could listen on it.
    """
    low, _ = _ephemeral_range()
    first = 10_000 if low > 12_000 else 1024
    with _GIVEN_LOCK:
        for _ in range(1000):
            port = first + secrets.randbelow(low - first)
            if port not in _GIVEN and _bindable(port):
                _GIVEN.add(port)
                return port
        with socket.socket() as s:  # a crowded range: let the kernel choose
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        _GIVEN.add(port)
        return port


@dataclass
class NodeSetup:
    """One agency's files: identity, config, credentials of its officers."""

    agency: str
    root: Path
    config: Path
    federation_port: int
    officer_port: int
    credentials: dict[str, Path] = field(default_factory=dict)
    # The Prometheus endpoint's port (`[metrics] listen`), 0 when the node has none.
    metrics_port: int = 0


@dataclass
class Federation:
    root: Path
    directory_file: Path
    admin_dirs: list[Path]
    nodes: dict[str, NodeSetup]


DEFAULT_DELIVERY = {
    "initial_backoff_seconds": 0.2,
    "max_backoff_seconds": 2.0,
    "directory_sync_seconds": 5.0,
}


def _config_text(
    agency: str,
    fed_port: int,
    off_port: int,
    db_url: str,
    delivery: dict[str, float],
    extra: str,
    listener: dict[str, int],
    metrics_port: int = 0,
) -> str:
    storage = f'\n[storage]\nurl = "{db_url}"\n' if db_url else ""
    metrics = f'\n[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n' if metrics_port else ""
    settings = "\n".join(f"{k} = {v}" for k, v in {**DEFAULT_DELIVERY, **delivery}.items())
    threads = "".join(f"\n{k} = {v}" for k, v in listener.items())
    return f"""# Generated for a local federation on loopback.
[node]
agency = "{agency}"
identity_dir = "keys"
data_dir = "data"

[federation]
listen = "127.0.0.1:{fed_port}"{threads}

[officer]
listen = "127.0.0.1:{off_port}"{threads}
{storage}
[delivery]
{settings}
{metrics}{extra}"""


def build_federation(
    root: Path,
    passphrase: bytes,
    officer_passphrase: bytes,
    agencies: tuple[tuple[str, str], ...] = DEMO_AGENCIES,
    db_urls: dict[str, str] | None = None,
    delivery: dict[str, float] | None = None,
    extra_config: str = "",
    threshold: int = 2,
    admins: int = 3,
    listener: dict[str, int] | None = None,
    metrics: bool = False,
) -> Federation:
    """Create every file of an N-agency federation under `root` and install its directory.

    `listener` settings (e.g. `SMALL_LISTENER`) go to both the federation and the officer
    listener. With `metrics`, each node serves Prometheus metrics on a loopback port of
    its own (`NodeSetup.metrics_port`), which `mlax node health` reads; `extra_config`
    must then have no `[metrics]` table.
    """
    root.mkdir(parents=True, exist_ok=True)
    nodes: dict[str, NodeSetup] = {}
    for agency, name in agencies:
        fed_port, off_port = free_port(), free_port()
        metrics_port = free_port() if metrics else 0
        node_root = root / agency.lower()
        node_root.mkdir(exist_ok=True)
        create_identity(
            node_root / "keys",
            agency_id=agency,
            name=name,
            endpoint=f"127.0.0.1:{fed_port}",
            passphrase=passphrase,
        )
        config = node_root / "node.toml"
        url = (db_urls or {}).get(agency, "")
        config.write_text(
            _config_text(
                agency,
                fed_port,
                off_port,
                url,
                delivery or {},
                extra_config,
                listener or {},
                metrics_port,
            )
        )
        nodes[agency] = NodeSetup(
            agency, node_root, config, fed_port, off_port, metrics_port=metrics_port
        )

    admin_dirs = [root / "admins" / f"admin{i + 1}" for i in range(admins)]
    admin_keys = [
        create_admin(d, f"Federation administrator {i + 1}", passphrase)
        for i, d in enumerate(admin_dirs)
    ]
    signed = new_directory("call-to-action", threshold, admin_keys)
    cards = [read_card(setup.root / "keys") for setup in nodes.values()]
    signed = add_agencies(signed, cards).signed
    for d in admin_dirs[:threshold]:
        signed = signed.signed_by(load_admin(d, passphrase).signing_key)
    directory_file = root / "directory.json"
    write_directory_file(directory_file, signed)

    for setup in nodes.values():
        cfg = load_config(setup.config)
        cfg.node.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = Database(cfg.database_url)
        try:
            db.migrate()
            TrustedDirectory(db).install(signed.to_bytes(), "operator")
            ca = OfficerCA.load_or_create(cfg.node.data_dir, setup.agency, passphrase)
            card = read_card(cfg.node.identity_dir)
            for name, role in OFFICERS:
                bundle = add_officer(
                    db,
                    ca,
                    name=f"{setup.agency.lower()}-{name}",
                    role=role,
                    agency=setup.agency,
                    endpoint=cfg.officer.listen,
                    server_cert_pem=card.tls_certificate_pem,
                    bundle_passphrase=officer_passphrase,
                )
                path = setup.root / f"{name}.json"
                write_bundle(path, bundle)
                setup.credentials[name] = path
        finally:
            db.close()
    return Federation(root, directory_file, admin_dirs, nodes)


def mlax_command() -> list[str]:
    """How to run the `mlax` CLI of this very installation."""
    script = Path(sys.executable).parent / "mlax"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from node.cli import main; main()"]


class NodeProcess:
    """A real node process (`mlax node serve`), logging JSON to a file."""

    def __init__(self, setup: NodeSetup, env: dict[str, str]) -> None:
        self.setup = setup
        self.env = env
        self.log_path = setup.root / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # How long a start waits for `node_ready` by default: a deadline for a saturated
    # 2-core machine (the demo-under-load test hogs every core beside the others), polled,
    # so a quick start costs nothing.
    READY_SECONDS = 120.0

    def start(self, wait: float = READY_SECONDS) -> None:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*mlax_command(), "node", "serve", "--config", str(self.setup.config)],
            stdout=log,
            stderr=log,
            env=self.env,
            start_new_session=True,
        )
        log.close()
        if wait:
            self.wait_ready(wait)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.setup.agency} node exited: {self.log_tail()}")
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                if b'"event": "node_ready"' in f.read():
                    return
            time.sleep(0.05)
        raise TimeoutError(f"{self.setup.agency} node not ready: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a crash or power cut would leave it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait for the graceful shutdown; returns the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def start_all(nodes: list[NodeProcess], timeout: float) -> float:
    """Start every node at once and wait until all are ready; the seconds it took.

    Start-up is mostly the interpreter importing the node (about a second of CPU each), so
    many nodes on few cores come up in about (nodes x 1 s / cores); `timeout` is for all.
    """
    started = time.monotonic()
    for node in nodes:
        node.start(wait=0)
    for node in nodes:
        node.wait_ready(max(1.0, timeout - (time.monotonic() - started)))
    return time.monotonic() - started


def stop_all(nodes: list[NodeProcess], timeout: float = 90.0) -> dict[str, int]:
    """SIGTERM every running node at once, then wait for all; exit status by agency.

    One signal each: a second SIGTERM that reaches a node after its graceful shutdown,
    while the interpreter exits, would kill it (status -15). Each node's graceful stop
    takes about a second, but exiting the interpreter (its last garbage collection) costs
    CPU too: 37 nodes on two cores were all gone after about 10 s. A node still running
    after `timeout` is killed (status -9).
    """
    for proc in [n.proc for n in nodes]:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    codes = {}
    for node in nodes:
        if node.proc is None:
            codes[node.setup.agency] = 0
            continue
        try:
            node.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            node.proc.kill()
            node.proc.wait()
        codes[node.setup.agency] = int(node.proc.returncode)
    return codes
