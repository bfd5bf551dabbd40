"""deploy/federation/README.md runs as written: its ```sh blocks, in order, in one shell.

The guide is for people; this test keeps it from drifting from the product. It runs every
```sh block (except one marked `<!-- guide-test: skip ... -->`, the foreground variant of
starting the nodes) with `set -euo pipefail`, so any failing command fails the test.

What the test changes, and only this:
- `cd /path/to/mlax` goes to a stand-in of the checkout holding `deploy/federation/` and a
  `.venv` link to the virtual environment running the tests; `make venv` is skipped (that
  environment exists already);
- the guide's ports (7401-7403, 7501-7503, 9401-9403) become free ports, in the guide's
  commands and in the stand-in's copies of the three configs, so it runs beside anything;
- HOME is a temporary directory (the guide works in ~/mlax-federation);
- MLAX_KDF_PROFILE=test: cheap Argon2id parameters, as in every test.
The nodes the guide starts in the background are stopped by its last block, and whatever
is left of its process group is killed at the end whatever happens.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from node.devtools.federation import free_port

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("deploy-guide")]

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "deploy" / "federation" / "README.md"
CONFIGS = ("gb-nca", "fr-ocrteh", "ng-naptip")
PORTS = [f"127.0.0.1:{base + i}" for base in (7400, 7500, 9400) for i in (1, 2, 3)]
BLOCK = re.compile(r"(<!-- guide-test: skip[^>]*-->\s*)?^```sh\n(.*?)^```", re.S | re.M)
DEADLINE = 600  # seconds for the whole guide; it takes well under a minute when idle


def guide_blocks(text: str) -> list[str]:
    """The ```sh blocks the guide asks the reader to run, in order."""
    return [body for skip, body in BLOCK.findall(text) if not skip]


def test_the_guide_has_its_blocks() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    blocks = guide_blocks(text)
    assert len(blocks) >= 12, len(blocks)
    assert len(blocks) == text.count("```sh") - 1  # exactly one block skipped
    assert all("mlax node serve --config gb-nca.toml\n" not in b for b in blocks)
    assert not any(re.search(r"^sleep \d+", b, re.M) for b in blocks), "poll, never guess"


def _stand_in(tmp: Path, ports: dict[str, str]) -> Path:
    checkout = tmp / "mlax"
    (checkout / "deploy" / "federation").mkdir(parents=True)
    (checkout / ".venv").symlink_to(sys.prefix)
    unused = set(ports)
    for name in CONFIGS:
        config = (GUIDE.parent / f"{name}.toml").read_text(encoding="utf-8")
        for old, new in ports.items():
            if f'"{old}"' in config:
                config = config.replace(f'"{old}"', f'"{new}"')
                unused.discard(old)
        (checkout / "deploy" / "federation" / f"{name}.toml").write_text(config)
    assert not unused, f"the configs no longer listen on {sorted(unused)}: update this test"
    return checkout


def _script(checkout: Path, ports: dict[str, str]) -> str:
    parts = []
    for n, block in enumerate(guide_blocks(GUIDE.read_text(encoding="utf-8")), start=1):
        parts += [f"echo '>>> guide block {n}' >&2", block]
    script = "set -euo pipefail\n" + "\n".join(parts)
    for old, new in {"cd /path/to/mlax": f"cd {checkout}", "make venv": ": make venv"}.items():
        assert old in script, f"the guide no longer has {old!r}: update this test"
        script = script.replace(old, new)
    for old, new in ports.items():
        script = script.replace(old, new)
    assert not re.search(r"\b(74|75|94)0[1-3]\b", script), "a port this test does not move"
    return script


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to what is left of the guide's process group (its shell and the nodes it
    started in the background), SIGKILL to what is still there after 30 s."""
    for sig, grace in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            proc.poll()  # reap the shell: a zombie still counts as a member of the group
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@pytest.mark.timeout(DEADLINE + 120)
def test_the_guide_runs_as_written(tmp_path: Path) -> None:
    for tool in ("jq", "curl", "bash"):
        if shutil.which(tool) is None:
            pytest.skip(f"the guide uses {tool}, which is not installed")
    ports = {old: f"127.0.0.1:{free_port()}" for old in PORTS}
    checkout = _stand_in(tmp_path, ports)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MLAX_") and k not in ("HOME", "PATH")
    }
    env.update(
        HOME=str(home),
        PATH=f"{Path(sys.prefix) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        MLAX_KDF_PROFILE="test",
        COLUMNS="200",
        NO_COLOR="1",
        TERM="dumb",
    )
    # Files, not pipes: a node left running must not keep the test waiting for EOF.
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    with stdout.open("wb") as out_file, stderr.open("wb") as err_file:
        proc = subprocess.Popen(
            ["bash", "-c", _script(checkout, ports)],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out_file,
            stderr=err_file,
            start_new_session=True,  # the nodes it starts in the background join its group
        )
    try:
        code: int | None = proc.wait(DEADLINE)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        _stop_group(proc)
    out = stdout.read_text(encoding="utf-8", errors="replace")
    err = stderr.read_text(encoding="utf-8", errors="replace")
    assert code is not None, f"the guide did not finish in {DEADLINE} s:\n{err[-3000:]}"
    assert code == 0, f"stderr (the last block run is marked >>>):\n{err[-3000:]}\n{out[-2000:]}"
    assert "Traceback" not in err, err

    # What the reader is told to expect.
    assert "OK: federation 'call-to-action' version 1" in out
    work = home / "mlax-federation"
    message_ids = re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", out)
    assert message_ids, out[-3000:]
    assert "mlax_delivery_failures_total" in out  # the metrics while NG-NAPTIP was down
    assert out.count("delivered") >= 2, out[-3000:]
    for name in CONFIGS:
        log = (work / f"{name}.log").read_text(encoding="utf-8")
        assert '"event": "node_ready"' in log, name
        assert '"event": "node_stopped"' in log, name  # step 10: every node stopped cleanly
