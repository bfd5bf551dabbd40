"""What the benchmarks' baselines share: a bare mutual-TLS gRPC server run until a signal,
and a process's CPU time. Imported by bench scripts (bench/ is first on sys.path when one
runs)."""

from __future__ import annotations

import os
import signal
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc


def cpu_seconds(pid: int | str) -> float | None:
    """User + system CPU time of a process so far (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_until_signalled(
    handler: grpc.GenericRpcHandler,
    port: int,
    cert_dir: Path,
    workers: int,
    options: list[tuple[str, Any]] | None = None,
) -> int:
    """Serve `handler` on 127.0.0.1:`port` with mutual TLS (cert_dir's server.key/.crt,
    clients trusted by client.crt), print "ready", and stop on SIGTERM or SIGINT.

    The signal handler only records the signal and the main thread polls for it: a wait
    blocked with no timeout may never see a signal the kernel gave another thread."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        handlers=[handler],
        options=[*(options or []), ("grpc.so_reuseport", 0)],
    )
    creds = grpc.ssl_server_credentials(
        [((cert_dir / "server.key").read_bytes(), (cert_dir / "server.crt").read_bytes())],
        root_certificates=(cert_dir / "client.crt").read_bytes(),
        require_client_auth=True,
    )
    server.add_secure_port(f"127.0.0.1:{port}", creds)
    signalled: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: signalled.append(signum))
    server.start()
    print("ready", flush=True)
    while not signalled:
        time.sleep(0.1)
    server.stop(grace=1).wait()
    return 0
