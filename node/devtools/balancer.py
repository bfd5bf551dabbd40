"""A layer-4 load balancer for local replica tests and benchmarks: what HAProxy or nginx
`stream` does in production (docs/operators.md, "Replicas").

Each accepted connection is forwarded, bytes unchanged (mutual TLS runs end to end), to
the next backend in turn that accepts a connection; a backend that refuses is skipped.
A connection whose backend dies is closed, as a real balancer closes it, and the gRPC
client reconnects through the balancer to a live backend.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections.abc import Sequence

from node.devtools.federation import NodeSetup, free_port


class TcpBalancer:
    """Round-robin TCP forwarding from `listen_port` to `backends` (host, port)."""

    def __init__(self, listen_port: int, backends: Sequence[tuple[str, int]]) -> None:
        self.backends = list(backends)
        self._turn = itertools.cycle(range(len(self.backends)))
        self._server = socket.create_server(("127.0.0.1", listen_port), reuse_port=False)
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="balancer", daemon=True)

    def __enter__(self) -> TcpBalancer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()

    def _connect(self) -> socket.socket | None:
        for _ in range(len(self.backends)):
            host, port = self.backends[next(self._turn)]
            try:
                return socket.create_connection((host, port), timeout=1.0)
            except OSError:
                continue
        return None

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            backend = self._connect()
            if backend is None:
                client.close()
                continue
            backend.settimeout(None)
            with self._lock:
                self._sockets.update((client, backend))
            for src, dst in ((client, backend), (backend, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def replica_of(node: NodeSetup, name: str) -> NodeSetup:
    """Another process of `node`'s agency: the same keys, data directory and database
    (PostgreSQL), listening on ports of its own behind a balancer on `node`'s ports."""
    root = node.root.parent / f"{node.root.name}-{name}"
    root.mkdir()
    fed_port, off_port = free_port(), free_port()
    text = node.config.read_text()
    for old, new in (
        (f"127.0.0.1:{node.federation_port}", f"127.0.0.1:{fed_port}"),
        (f"127.0.0.1:{node.officer_port}", f"127.0.0.1:{off_port}"),
        ('identity_dir = "keys"', f'identity_dir = "{node.root / "keys"}"'),
        ('data_dir = "data"', f'data_dir = "{node.root / "data"}"'),
    ):
        if old not in text:
            raise ValueError(f"{node.config} has no {old!r}: not a generated configuration")
        text = text.replace(old, new)
    config = root / "node.toml"
    config.write_text(text)
    return NodeSetup(node.agency, root, config, fed_port, off_port)
