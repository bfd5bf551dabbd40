"""Serving a console: the listening socket, uvicorn, and what the officer is told."""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from node.client import OfficerClient
from node.console.app import Console, ConsoleSettings

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """The console's listening socket, bound before anything is printed (port 0: any
    free port), so the login URL names the port that answers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn, except that a stop asked by SIGTERM or Ctrl-C is the console's normal end
    (exit 0 once in-flight requests finished), not a death by that signal afterwards."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def serve(
    client: OfficerClient,
    settings: ConsoleSettings,
    sock: socket.socket,
    certfile: Path | None = None,
    keyfile: Path | None = None,
) -> None:
    """Serve until SIGINT or SIGTERM; the session store and transfer files go with it."""

    def announce(url: str) -> None:
        sys.stdout.write(f"Sign in (this link works once): {url}\n")
        sys.stdout.flush()

    console = Console(client, settings, announce=announce)
    me = console.me
    sys.stdout.write(
        f"MLAX console for {me.officer} ({me.role}, {me.agency}) at "
        f"{console.scheme}://{settings.host}:{settings.port}/\n"
    )
    console.announce_login()
    config = uvicorn.Config(
        console.build(),
        log_config=None,
        access_log=False,  # structured events of our own; URLs never reach a log
        server_header=False,
        ssl_certfile=str(certfile) if certfile else None,
        ssl_keyfile=str(keyfile) if keyfile else None,
        timeout_graceful_shutdown=5,
        lifespan="off",
    )
    try:
        _Server(config).run(sockets=[sock])
    finally:
        console.close()
        client.close()


__all__ = ["bind", "is_loopback", "serve"]
