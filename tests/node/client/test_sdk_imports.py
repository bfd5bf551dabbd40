"""The officer SDK stands on the protocol and gRPC alone: never on the node's storage."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("sqlalchemy", "alembic", "psycopg", "node.storage", "node.services", "node.server")


def test_the_sdk_imports_without_the_nodes_storage() -> None:
    code = (
        "import sys\n"
        "import node.client, node.client.cases, node.client.matching\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} "
        f"or m.startswith({FORBIDDEN!r}))\n"
        "print('\\n'.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "", f"the SDK loaded: {out.stdout.split()}"
