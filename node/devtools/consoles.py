"""Web consoles for a local federation's officers, as separate `mlax console` processes.

`mlax demo --console` keeps the demo's federation up and starts one console per officer
listed in DEMO_CONSOLES; each prints its one-time sign-in link, which this module reads
from the console's output (with a deadline, never a fixed sleep).
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from node.devtools.federation import Federation, free_port, mlax_command

# (agency, officer role) of the consoles `mlax demo --console` starts: the whole MLA case
# (draft, approval, the peer's steps) and the audit can be done in the browser.
DEMO_CONSOLES = (
    ("GB-NCA", "officer"),
    ("GB-NCA", "supervisor"),
    ("NG-NAPTIP", "officer"),
    ("GB-NCA", "auditor"),
)
SIGN_IN = re.compile(r"(https?://\S+/login\?token=\S+)")


@dataclass
class ConsoleProcess:
    agency: str
    role: str
    credential: Path
    port: int
    proc: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    def start(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [
                *mlax_command(),
                "console",
                "--credential",
                str(self.credential),
                "--port",
                str(self.port),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout = self.proc.stdout if self.proc is not None else None
        if stdout is None:
            return
        for line in stdout:
            self.lines.append(line.rstrip("\n"))

    def sign_in_url(self, timeout: float) -> str:
        """The newest sign-in link the console printed, waiting for the first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m.group(1) for line in self.lines if (m := SIGN_IN.search(line))]
            if found:
                return found[-1]
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"The console of {self.agency} {self.role} exited.")
            time.sleep(0.1)
        raise TimeoutError(f"The console of {self.agency} {self.role} printed no sign-in link.")

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_consoles(
    fed: Federation,
    env: dict[str, str],
    which: tuple[tuple[str, str], ...] = DEMO_CONSOLES,
) -> list[ConsoleProcess]:
    consoles = [
        ConsoleProcess(agency, role, fed.nodes[agency].credentials[role], free_port())
        for agency, role in which
    ]
    for c in consoles:
        c.start(env)
    return consoles


__all__ = ["DEMO_CONSOLES", "ConsoleProcess", "start_consoles"]
