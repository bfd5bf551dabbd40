"""`mlax console` as an officer runs it: refusals as one sentence, the sign-in link on
stdout, JSON logs without personal data on stderr, several officers' consoles on one
host kept apart, a clean stop on SIGTERM."""

from __future__ import annotations

import http.cookiejar
import json
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from node.devtools.federation import mlax_command

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]

LINK = re.compile(r"(http://127\.0\.0\.1:(\d+)/login\?token=\S+)")


class Running:
    def __init__(self, cli: Any, credential: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [*mlax_command(), "console", "--as", str(credential), "--port", "0", *extra],
            env=cli.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, sink), daemon=True).start()

    @staticmethod
    def _read(stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line.rstrip("\n"))

    def links(self, n: int = 1, timeout: float = 60) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m.group(1) for line in self.out if (m := LINK.search(line))]
            if len(found) >= n:
                return found
            assert self.proc.poll() is None, (self.out, self.err)
            time.sleep(0.05)
        raise AssertionError(f"no sign-in link: {self.out} {self.err}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def _browser() -> tuple[urllib.request.OpenerDirector, http.cookiejar.CookieJar]:
    jar = http.cookiejar.CookieJar()
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar)), jar


def test_refusals_are_one_sentence(cli: Any, live: Any, tmp_path: Path) -> None:
    nothing = cli.run("console", env={"MLAX_CREDENTIAL": None})
    assert "--as" in cli.refusal(nothing)
    half_tls = cli.run(
        "console", "--as", live.credential("GB-NCA"), "--tls-cert", tmp_path / "c.pem"
    )
    assert "--tls-key" in cli.refusal(half_tls, code=2)
    wrong = cli.run(
        "console",
        "--as",
        live.credential("GB-NCA"),
        env={"MLAX_OFFICER_PASSPHRASE": "not-it"},
    )
    assert "passphrase" in cli.refusal(wrong)
    bad_port = cli.run("console", "--as", live.credential("GB-NCA"), "--port", "70000")
    assert "--port" in cli.refusal(bad_port, code=2)
    ipv6 = cli.run("console", "--as", live.credential("GB-NCA"), "--host", "::1")
    assert "IPv6" in cli.refusal(ipv6, code=2)
    bad_name = cli.run("console", "--as", live.credential("GB-NCA"), "--allow-host", "a/b")
    assert "--allow-host" in cli.refusal(bad_name, code=2)


def test_two_officers_consoles_on_one_host_are_kept_apart(cli: Any, live: Any) -> None:
    officer = Running(cli, live.credential("GB-NCA", "officer"))
    supervisor = Running(cli, live.credential("GB-NCA", "supervisor"))
    try:
        (officer_link,) = officer.links()
        (supervisor_link,) = supervisor.links()
        officer_port = LINK.search(officer_link).group(2)  # type: ignore[union-attr]
        supervisor_port = LINK.search(supervisor_link).group(2)  # type: ignore[union-attr]
        assert officer_port != supervisor_port
        assert "gb-nca-officer (officer, GB-NCA)" in officer.out[0]

        browser, jar = _browser()
        with browser.open(officer_link, timeout=30) as page:
            assert page.geturl().endswith("/cases")
        # The same browser holds the officer's cookie; the supervisor's console, on the
        # same host, does not take it: it has a name of its own, and no session there.
        assert {c.name for c in jar} == {f"mlax_console_{officer_port}"}
        supervisors_page = f"http://127.0.0.1:{supervisor_port}/approvals"
        with pytest.raises(urllib.error.HTTPError) as other:
            browser.open(supervisors_page, timeout=30)
        assert other.value.code == 401
        stolen = f"mlax_console_{supervisor_port}={next(iter(jar)).value}"
        request = urllib.request.Request(supervisors_page, headers={"Cookie": stolen})
        with pytest.raises(urllib.error.HTTPError) as replay:
            urllib.request.urlopen(request, timeout=30)  # noqa: S310 - http://127.0.0.1 only
        assert replay.value.code == 401
    finally:
        codes = [officer.stop(), supervisor.stop()]
    assert codes == [0, 0], (officer.err[-5:], supervisor.err[-5:])
    for line in officer.err + supervisor.err:
        json.loads(line)  # structured logs only
    logged = "\n".join(officer.err + supervisor.err)
    assert "token=" not in logged
    assert "console_login" in logged


def test_listening_beyond_loopback_is_said_out_loud(cli: Any, live: Any) -> None:
    running = Running(cli, live.credential("GB-NCA", "officer"), "--host", "0.0.0.0")  # noqa: S104
    try:
        (link,) = running.links()
        port = LINK.search(link).group(2)  # type: ignore[union-attr]
        browser, _ = _browser()
        with browser.open(link, timeout=30) as page:
            token = re.search(r'name="csrf-token" content="([^"]+)"', page.read().decode())
        assert token
        # A form posted from the console's own page (the browser sends its Origin) works.
        signed_out = urllib.request.Request(
            f"http://127.0.0.1:{port}/logout",
            data=f"csrf={token.group(1)}".encode(),
            headers={"Origin": f"http://127.0.0.1:{port}"},
        )
        with browser.open(signed_out, timeout=30) as page:
            assert "You have signed out" in page.read().decode()
        deadline = time.monotonic() + 10
        while not any("not on loopback" in line for line in running.err):
            assert time.monotonic() < deadline, running.err
            time.sleep(0.05)
    finally:
        assert running.stop() == 0
