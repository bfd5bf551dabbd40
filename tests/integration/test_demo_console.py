"""`mlax demo --console`: after the demo, the federation stays up with a web console per
demo officer; a newcomer opens the printed link and works the demo's cases in a browser
(here: an HTTP client keeping the session cookie, as a browser does)."""

from __future__ import annotations

import http.cookiejar
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from node.devtools.federation import mlax_command

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("demo-console")]

DEADLINE = 900
LINK = re.compile(
    r"  ([A-Z]{2}-[A-Z]+) (officer|supervisor|auditor): (http://\S+/login\?token=\S+)"
)


def _browser() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )


@pytest.mark.timeout(DEADLINE + 120)
def test_demo_console_serves_the_demo_officers(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MLAX_DEBUG",)}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", "MLAX_KDF_PROFILE": "test"})
    demo = subprocess.Popen(
        [*mlax_command(), "demo", "--console", "--dir", str(tmp_path / "demo")],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + DEADLINE
        links: dict[tuple[str, str], str] = {}
        while len(links) < 4 and time.monotonic() < deadline and demo.poll() is None:
            links = {(m[1], m[2]): m[3] for line in lines if (m := LINK.match(line))}
            time.sleep(0.2)
        assert len(links) == 4, "\n".join(lines[-60:])

        officer = _browser()
        with officer.open(links[("GB-NCA", "officer")], timeout=30) as page:
            # Signed in: the link redirects to the officer's first page, the case list.
            assert page.geturl().endswith("/cases")
            text = page.read().decode()
        assert 'id="cases"' in text
        # The demo's MLA case with Nigeria and extradition case with France are listed.
        assert "NG-NAPTIP" in text
        assert "FR-OCRTEH" in text
        # The link is spent: a second browser opening it is not signed in.
        with pytest.raises(urllib.error.HTTPError) as spent:
            _browser().open(links[("GB-NCA", "officer")], timeout=30)
        assert spent.value.code == 401

        auditor = _browser()
        with auditor.open(links[("GB-NCA", "auditor")], timeout=30) as page:
            assert page.geturl().endswith("/audit")
            assert "OK: every entry" in page.read().decode()
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)
        try:
            code = demo.wait(120)
        except subprocess.TimeoutExpired:
            demo.kill()
            code = demo.wait()
    time.sleep(0.2)
    out = "\n".join(lines)
    assert code == 0, out[-4000:]
    for agency in ("GB-NCA", "FR-OCRTEH", "NG-NAPTIP"):
        assert f"{agency} stopped (exit 0)" in out
