"""The console as officers use it: headless Chromium against real `mlax console` processes
talking to the real nodes of the shared live federation.

Each officer has a browser of their own (its own cookie jar) and a console of their own,
started as `mlax console --as CREDENTIAL --port 0` and signed in through the one-time
link it prints. A whole MLA case runs across four of them (draft with a field error,
submission, four-eyes approval, the peer's steps, evidence up and down with its digest
checked, closing); then victim identification and the auditor's export and verification.
On each main page the browser must log no error (a CSP violation is one), TAB must reach
every visible control, and every visible field must have a label. The pages' screenshots
go to MLAX_SCREENSHOT_DIR when it is set (docs/console/ holds the committed ones).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import re
import signal
import subprocess
import threading
import time
import tomllib
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait

from exchange import forms
from exchange.case import Action
from exchange.encoding import now_ms
from node.client.cases import CaseClient
from node.client.matching import MatchClient
from node.devtools.federation import mlax_command

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = "apt-get install -y chromium chromium-driver"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.xdist_group("federation"),
    pytest.mark.skipif(
        not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
        reason=f"the browser tests need Chromium and its driver in /usr/bin: {INSTALL}",
    ),
]

GB, NG = "GB-NCA", "NG-NAPTIP"
# Every wait polls against this deadline: the machine may be loaded, never asleep.
DEADLINE = 60.0
LOGIN_URL = re.compile(r"https?://\S+/login\?token=\S+")
FORMS_DIR = Path(__file__).resolve().parents[3] / "deploy" / "forms"
EVIDENCE_NAME = "bank-statements-2025.pdf"

# The MLA request as the officer types it, by input name (the form's dotted paths).
MLA_TYPED = {
    "offences[0].legal_provision": "Modern Slavery Act 2015, s. 2",
    "offences[0].maximum_penalty": "Life imprisonment",
    "summary_of_facts": "Eleven workers were made to work 80-hour weeks for one employer.",
    "contact_officer.email": "marsh@nca.example",
}
MLA_DESCRIPTION = ("offences[0].description", "Human trafficking for labour exploitation.")

# Records the NG officer loads for victim identification; the GB officer looks for the
# first person under a transliterated spelling, then for someone nobody holds.
VICTIMS = """ref,given_name,family_name,sex,date_of_birth,nationality,place_of_birth
NG-BROWSER-0001,Chiamaka,Eze,F,2002-06-14,NGA,Enugu
NG-BROWSER-0002,Олена,Шевченко,F,2001-11-03,UKR,Kharkiv
"""
FOUND = {"Given name": "Chiamaka", "Family name": "Eze", "Date of birth": "2002-06-14"}
NOBODY = {"Given name": "Wilhelmina", "Family name": "Quarrington", "Date of birth": "1951-02-27"}

# Marks every control a page has, then counts which of them TAB focuses (recorded by a
# focusin listener: one ActionChains run of TABs instead of a round trip per key).
# checkVisibility, not getClientRects: the content of a closed <details> keeps its boxes.
_MARK_FOCUSABLE = """
const out = [];
let i = 0;
for (const el of document.querySelectorAll('a[href], button, input, select, textarea, summary')) {
  el.dataset.kbd = String(i++);
  if (el.disabled || el.type === 'hidden' || el.getAttribute('tabindex') === '-1') continue;
  if (el.tagName === 'SUMMARY' && el.parentElement.tagName !== 'DETAILS') continue;
  if (!el.checkVisibility({visibilityProperty: true}) || el.closest('[inert]')) continue;
  out.push(el.dataset.kbd);
}
window.__focused = [];
document.addEventListener('focusin', (e) => {
  window.__focused.push(e.target.dataset ? e.target.dataset.kbd || '' : '');
}, true);
if (document.activeElement) { document.activeElement.blur(); }
window.scrollTo(0, 0);
return out;
"""
_DESCRIBE = """
return Array.from(arguments[0]).map((k) => {
  const e = document.querySelector('[data-kbd="' + k + '"]');
  return e.tagName.toLowerCase() + ' ' + (e.id || e.name || e.textContent.trim().slice(0, 40));
});
"""
# Visible fields without a label of their own (`labels` follows for= to the element that
# id names first, so a duplicated id leaves the second field unlabelled).
_UNLABELLED = """
const out = [];
for (const el of document.querySelectorAll('input, select, textarea')) {
  if (['hidden', 'submit', 'button', 'reset', 'image'].includes(el.type)) continue;
  if (!el.checkVisibility({visibilityProperty: true})) continue;
  if (el.labels && el.labels.length) continue;
  out.push(el.tagName.toLowerCase() + ' ' + (el.id || el.name));
}
return out;
"""
_DUPLICATE_IDS = """
const seen = {};
document.querySelectorAll('[id]').forEach((e) => { seen[e.id] = (seen[e.id] || 0) + 1; });
return Object.keys(seen).filter((k) => seen[k] > 1);
"""


# -- consoles -------------------------------------------------------------------------------


class ConsoleProcess:
    """`mlax console` for one credential, its stdout read line by line on a thread (so the
    console never blocks on a full pipe, and each new sign-in link can be waited for)."""

    def __init__(self, credential: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("wb") as err:
            self.proc = subprocess.Popen(
                [*mlax_command(), "console", "--as", str(credential), "--port", "0"],
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=env,
                text=True,
                start_new_session=True,
            )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, name="console-stdout", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def login_url(self, timeout: float = DEADLINE) -> str:
        """The next sign-in link the console prints."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise AssertionError(
                        f"the console exited ({self.proc.returncode}): {self.stderr()}"
                    ) from None
                continue
            found = LOGIN_URL.search(line)
            if found:
                return found.group(0)
        raise AssertionError(f"no sign-in link within {timeout} s: {self.stderr()}")

    def stderr(self) -> str:
        return self.log.read_bytes()[-2000:].decode(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def _chromium() -> webdriver.Chrome:
    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--hide-scrollbars",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver is named explicitly: nothing is downloaded at run time.
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


# -- one officer at their browser -----------------------------------------------------------


@dataclass
class Officer:
    who: str
    console: ConsoleProcess
    driver: webdriver.Chrome
    shots: Path
    base: str = ""

    # navigation

    def sign_in(self, url: str) -> None:
        self.base = "/".join(url.split("/")[:3])
        self.driver.get(url)
        self.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "header .who"), "the signed-in page")
        self.no_errors()

    def open(self, path: str, allow: tuple[str, ...] = ()) -> None:
        self.driver.get(self.base + path)
        self.assert_console_page(path)
        self.no_errors(allow)

    def submit(self, button: WebElement, allow: tuple[str, ...] = ()) -> None:
        """Press a button that posts a form and wait for the page it leads to."""
        old = self.driver.find_element(By.TAG_NAME, "html")
        label = button.text
        button.click()
        self.wait(expected_conditions.staleness_of(old), "the next page")
        self.wait(
            lambda d: d.execute_script("return document.readyState") == "complete", "page load"
        )
        self.assert_console_page(f"after pressing {label!r}")
        self.no_errors(allow)

    def assert_console_page(self, what: str) -> None:
        # A refusal before any page (CSRF, origin, size) is a plain-text line: say which.
        if not self.driver.find_elements(By.ID, "main"):
            body = self.driver.find_element(By.TAG_NAME, "body").text
            raise AssertionError(f"{self.who}, {what}: the console answered {body!r}")

    def wait(self, condition: Callable[[Any], Any], what: str, timeout: float = DEADLINE) -> Any:
        return WebDriverWait(
            self.driver,
            timeout,
            poll_frequency=0.2,
            ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
        ).until(condition, f"{self.who}: {what} within {timeout} s")

    def reload_until(
        self, path: str, condition: Callable[[], bool], what: str, allow: tuple[str, ...] = ()
    ) -> None:
        """Reload `path` until `condition` holds (what another node sends takes a moment)."""
        deadline = time.monotonic() + DEADLINE
        while True:
            self.driver.get(self.base + path)
            try:
                if condition():
                    break
            except NoSuchElementException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.who}: {what} within {DEADLINE} s")
            time.sleep(0.5)
        self.no_errors(allow)

    # reading and filling

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return str(self.find(css).text)

    def button(self, label: str, within: WebElement | None = None) -> WebElement:
        scope = within or self.driver
        xpath = f".//button[normalize-space()={_xpath_text(label)}]"
        # Not the off-screen default button a form has for Enter (aria-hidden, no TAB stop).
        found = [
            b
            for b in scope.find_elements(By.XPATH, xpath)
            if b.is_displayed() and b.get_attribute("aria-hidden") != "true"
        ]
        assert found, f"{self.who}: no visible button {label!r}"
        return found[0]

    def field(self, label: str, within: WebElement | None = None) -> WebElement:
        """The control a <label> names (its text up to any "(required)")."""
        scope = within or self.driver
        for lab in scope.find_elements(By.TAG_NAME, "label"):
            own = re.sub(r"\s*\((required|required in some cases)\)$", "", lab.text.strip())
            if own == label and lab.get_attribute("for"):
                return self.driver.find_element(By.ID, lab.get_attribute("for"))
        raise AssertionError(f"{self.who}: no field labelled {label!r}")

    def type_into(self, element: WebElement, text: str) -> None:
        element.clear()
        element.send_keys(text)

    def action(self, label: str) -> WebElement:
        """Open the case action whose <summary> is `label`; its <details>."""
        for details in self.driver.find_elements(By.CSS_SELECTOR, "details.action"):
            if details.find_element(By.TAG_NAME, "summary").text.strip() == label:
                if details.get_attribute("open") is None:
                    details.find_element(By.TAG_NAME, "summary").click()
                return details
        offered = [s.text for s in self.driver.find_elements(By.CSS_SELECTOR, "details > summary")]
        raise AssertionError(f"{self.who}: no action {label!r}; the page offers {offered}")

    def take(self, label: str, typed: dict[str, str] | None = None) -> None:
        """Take a case action: open it, fill its fields by name, press its button."""
        details = self.action(label)
        for name, value in (typed or {}).items():
            self.type_into(details.find_element(By.NAME, name), value)
        self.submit(self.button(label, details))

    # session

    def cookie_header(self) -> str:
        return "; ".join(f"{c['name']}={c['value']}" for c in self.driver.get_cookies())

    def csrf(self) -> str:
        return str(self.find("meta[name=csrf-token]").get_attribute("content"))

    # checks

    def no_errors(self, allow: tuple[str, ...] = ()) -> None:
        """No SEVERE browser log entry since the last check (CSP violations, script
        errors, failed loads), but the ones `allow` expects (a page answered 400 on
        purpose logs its own status)."""
        severe = [
            e["message"]
            for e in self.driver.get_log("browser")
            if e["level"] == "SEVERE" and not any(re.search(a, e["message"]) for a in allow)
        ]
        assert not severe, f"{self.who} at {self.driver.current_url}: {severe}"

    def check_page(self, name: str) -> None:
        """Keyboard and labels on the page as it stands."""
        want = self.driver.execute_script(_MARK_FOCUSABLE)
        keys = ActionChains(self.driver)
        for _ in range(2 * len(want) + 10):  # a date input takes a TAB per part
            keys.send_keys(Keys.TAB)
        keys.perform()
        focused = set(self.driver.execute_script("return window.__focused;"))
        missed = self.driver.execute_script(_DESCRIBE, [k for k in want if k not in focused])
        assert not missed, f"{name}: TAB from the top never reaches {missed}"
        unlabelled = self.driver.execute_script(_UNLABELLED)
        assert not unlabelled, f"{name}: fields without a label: {unlabelled}"
        self.no_errors()

    def screenshot(self, name: str, at: str = "") -> None:
        # No focus ring left over from the keyboard check in the pictures.
        self.driver.execute_script("if (document.activeElement) document.activeElement.blur();")
        if at:
            self.driver.execute_script(
                "arguments[0].scrollIntoView({block: 'center'});", self.find(at)
            )
        else:
            self.driver.execute_script("window.scrollTo(0, 0);")
        path = self.shots / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), path


def _xpath_text(text: str) -> str:
    return f'"{text}"' if '"' not in text else f"'{text}'"


Officers = Callable[[str, str], Officer]


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("MLAX_SCREENSHOT_DIR")
    if not chosen:
        return tmp_path_factory.mktemp("screenshots")
    path = Path(chosen)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def officers(
    live: Any, shots: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Officers]:
    """`officers(agency, role)`: that officer's console and browser, signed in; started
    on first use and kept for the module."""
    logs = tmp_path_factory.mktemp("consoles")
    made: dict[tuple[str, str], Officer] = {}

    def officer(agency: str, role: str) -> Officer:
        key = (agency, role)
        if key not in made:
            console = ConsoleProcess(
                live.credential(agency, role), live.cli.env, logs / f"{agency}-{role}.log"
            )
            try:
                url = console.login_url()
                driver = _chromium()
            except BaseException:
                console.stop()
                raise
            made[key] = Officer(f"{agency} {role}", console, driver, shots)
            made[key].sign_in(url)
        else:
            made[key].driver.get_log("browser")  # what an earlier test left is its own
        return made[key]

    yield officer
    codes = {}
    for key, o in made.items():
        with contextlib.suppress(WebDriverException):
            o.driver.quit()
        codes[key] = o.console.stop()
    # SIGTERM is the console's ordinary stop: anything else is a crash.
    assert all(code == 0 for code in codes.values()), codes


# -- the tests ------------------------------------------------------------------------------


def test_an_mla_case_from_draft_to_closed_across_four_browsers(
    officers: Officers, tmp_path: Path
) -> None:
    gb = officers(GB, "officer")
    supervisor = officers(GB, "supervisor")
    ng = officers(NG, "officer")

    # 1. The GB officer drafts the request; first with the offence's description left empty.
    gb.open("/cases")
    gb.check_page("cases")
    gb.open("/cases/new?type=mla")
    gb.check_page("new request")
    Select(gb.field("Requested agency")).select_by_visible_text(NG)
    for name, value in MLA_TYPED.items():
        gb.type_into(gb.find(f'[name="{name}"]'), value)
    gb.find('[data-path="assistance_sought"] input[value="banking-records"]').click()
    gb.submit(gb.button("Save draft"), allow=(r"/cases/new .*status of 400",))
    error = gb.find(f'[data-path="{MLA_DESCRIPTION[0]}"] p.field-error')
    assert error.text.strip(), "the protocol's sentence beside the field"
    assert "Field" not in error.text, error.text
    assert "The draft was not saved" in gb.text("main")
    # What was typed is still there.
    kept = gb.find('[name="offences[0].legal_provision"]').get_attribute("value")
    assert kept == MLA_TYPED["offences[0].legal_provision"]
    gb.screenshot("new-request-field-error", at=f'[data-path="{MLA_DESCRIPTION[0]}"]')
    gb.type_into(gb.find(f'[name="{MLA_DESCRIPTION[0]}"]'), MLA_DESCRIPTION[1])
    gb.submit(gb.button("Save draft"))
    ref = gb.text("#case-ref")
    assert f"Draft {ref} saved" in gb.text(".flash")
    assert gb.text("#case-state") == "draft"
    assert gb.driver.current_url.endswith(f"/cases/{ref}")
    gb.take("Submit")
    assert "waits for a supervisor" in gb.text(".flash")
    assert "waits for a supervisor's approval" in gb.text("#awaiting")

    # 2. The GB supervisor finds it among the approvals and approves it.
    supervisor.open("/approvals")
    row = supervisor.find("#approvals").find_element(
        By.XPATH, f".//tr[td/a[normalize-space()={_xpath_text(ref)}]]"
    )
    supervisor.check_page("approvals")
    supervisor.screenshot("approvals")
    supervisor.driver.get(row.find_element(By.LINK_TEXT, "Read and decide").get_attribute("href"))
    supervisor.no_errors()
    supervisor.submit(supervisor.button("Approve"))
    assert f"Approved {ref}" in supervisor.text(".flash")

    # 3. NG receives it, acknowledges, accepts, executes, uploads the evidence, reports.
    case = f"/cases/{ref}"
    ng.reload_until(
        case,
        lambda: ng.text("#case-state") == "submitted",
        "the case arrives at NG",
        allow=(rf"{re.escape(case)} .*status of 404",),
    )
    ng.take("Acknowledge", {"reference": "NAPTIP/2026/0612"})
    assert ng.text("#case-state") == "acknowledged"
    ng.take("Accept")
    assert ng.text("#case-state") == "accepted"
    ng.take("Start execution", {"executing_authority": "NAPTIP Lagos zonal command"})
    assert ng.text("#case-state") == "in execution"

    evidence = tmp_path / EVIDENCE_NAME
    evidence.write_bytes(b"%PDF-1.7\n" + os.urandom(256 * 1024))
    sha256 = hashlib.sha256(evidence.read_bytes()).hexdigest()
    ng.field("Evidence file").send_keys(str(evidence))
    ng.button("Upload", ng.find("#upload-form")).click()
    ng.wait(
        lambda d: (
            ng.find("#upload-progress").is_displayed() or EVIDENCE_NAME in ng.text("#attachments")
        ),
        "the upload's progress bar",
    )
    ng.wait(lambda d: EVIDENCE_NAME in ng.text("#attachments"), "the evidence in the table")
    ng.wait(lambda d: d.execute_script("return document.readyState") == "complete", "reload")
    # Only the page's script (XHR and polling) says "Uploaded": the plain form says "Sending".
    assert f"Uploaded {EVIDENCE_NAME} to case {ref}" in ng.text(".flash")
    ng.no_errors()
    report = ng.action("Report execution")
    ng.type_into(
        report.find_element(By.NAME, "summary"),
        "Bank statements for 2025 obtained by production order.",
    )
    box = report.find_element(
        By.XPATH, f'.//fieldset[@data-path="evidence"]//label[contains(., "{EVIDENCE_NAME}")]'
    )
    box.click()
    assert box.find_element(By.TAG_NAME, "input").is_selected()
    ng.submit(ng.button("Report execution", report))
    assert ng.text("#case-state") == "executed"

    # 4. GB sees it executed, downloads the evidence and checks the digest and the bytes.
    gb.reload_until(
        case,
        lambda: gb.text("#case-state") == "executed" and EVIDENCE_NAME in gb.text("#attachments"),
        "the executed case and its evidence at GB",
    )
    gb.check_page("case")
    gb.screenshot("case")
    gb.button(f"Download {EVIDENCE_NAME}").click()
    verified = gb.wait(
        lambda d: [e for e in d.find_elements(By.CSS_SELECTOR, ".digest-verified") if e.text],
        "the verified digest",
    )[0]
    assert sha256 in verified.text, (verified.text, sha256)
    save = gb.driver.find_element(By.LINK_TEXT, f"Save {EVIDENCE_NAME}")
    gb.no_errors()
    gb.screenshot("case-evidence-downloaded", at="#attachments")
    request = urllib.request.Request(  # noqa: S310 - the console's own http://127.0.0.1 URL
        str(save.get_attribute("href")), headers={"Cookie": gb.cookie_header()}
    )
    with urllib.request.urlopen(request, timeout=DEADLINE) as saved:  # noqa: S310
        assert saved.status == 200
        assert EVIDENCE_NAME in saved.headers.get("content-disposition", "")
        body = saved.read()
    assert body == evidence.read_bytes()

    # 5. GB closes the case.
    gb.take("Close", {"outcome": "Evidence received; case closed."})
    assert gb.text("#case-state") == "closed"
    assert "Close: done" in gb.text(".flash")
    gb.open("/cases")
    assert ref in gb.text("#cases")
    gb.screenshot("cases")

    gb.open("/messages")
    gb.check_page("messages")


def test_victim_identification_finds_a_hit_and_a_miss(
    officers: Officers, live: Any, tmp_path: Path
) -> None:
    records = tmp_path / "victims.csv"
    records.write_text(VICTIMS, encoding="utf-8")
    MatchClient(live.client(NG)).load(records)
    gb = officers(GB, "officer")

    gb.open("/match")
    gb.check_page("match")
    for label, value in FOUND.items():
        gb.type_into(gb.field(label), value)
    gb.submit(gb.button("Search"))
    assert "/match/results/" in gb.driver.current_url
    # Names and dates travel in the POST body only, never in the address.
    for value in FOUND.values():
        assert value not in gb.driver.current_url
    ng_row = gb.find("#match-results").find_element(
        By.XPATH, f'.//tr[td[normalize-space()="{NG}"]]'
    )
    assert "hit (" in ng_row.text, ng_row.text
    assert f"Reference {NG}:" in ng_row.text
    assert NG in gb.text("#match-summary")
    gb.check_page("match results")
    gb.screenshot("match-results")

    gb.open("/match")
    for label, value in NOBODY.items():
        gb.type_into(gb.field(label), value)
    gb.submit(gb.button("Search"))
    rows = gb.find("#match-results").find_elements(By.CSS_SELECTOR, "tbody tr")
    assert rows
    assert all("no hit" in r.text for r in rows), [r.text for r in rows]
    assert "no hit." in gb.text("#match-summary")


def test_the_auditor_exports_verifies_and_signs_out(officers: Officers, tmp_path: Path) -> None:
    auditor = officers(GB, "auditor")
    auditor.open("/audit")
    assert auditor.text("#verify-result").startswith("OK"), auditor.text("main")
    auditor.check_page("audit")

    # A browser download is not Selenium's to save: the export is fetched as the page's
    # form would post it, with the session cookie and the page's CSRF token.
    request = urllib.request.Request(  # noqa: S310 - the console's own http://127.0.0.1 URL
        auditor.base + "/audit/export",
        data=urllib.parse.urlencode({"csrf": auditor.csrf()}).encode(),
        headers={
            "Cookie": auditor.cookie_header(),
            "Content-Type": "application/x-www-form-urlencoded",
        },
        method="POST",
    )
    export = tmp_path / "gb-nca-ledger.export"
    with urllib.request.urlopen(request, timeout=DEADLINE) as answer:  # noqa: S310
        assert answer.status == 200
        export.write_bytes(answer.read())
    assert export.stat().st_size > 0

    auditor.field("Export file").send_keys(str(export))
    auditor.submit(auditor.button("Verify"))
    assert auditor.text("#verify-result").startswith("OK"), auditor.text("main")
    auditor.check_page("audit verify")
    auditor.screenshot("audit-verify")

    auditor.open("/me")
    assert auditor.text("#me-role") == "auditor"
    assert auditor.text("#me-agency") == GB
    auditor.check_page("me")
    auditor.screenshot("me")

    # Signing out ends the session; the console prints a new one-time link.
    auditor.submit(auditor.button("Sign out"))
    assert "You have signed out" in auditor.text("main")
    auditor.driver.get(auditor.base + "/me")
    assert "Sign in" in auditor.text("h1")
    auditor.no_errors(allow=(r"/me .*status of 401",))
    auditor.sign_in(auditor.console.login_url())
    auditor.open("/me")
    assert auditor.text("#me-officer")


def test_a_draft_with_no_person_saves(officers: Officers) -> None:
    gb = officers(GB, "officer")
    gb.open("/cases/new?type=mla")
    Select(gb.field("Requested agency")).select_by_visible_text(NG)
    for name in ("offences[0].legal_provision", "summary_of_facts", "contact_officer.email"):
        gb.type_into(gb.find(f'[name="{name}"]'), MLA_TYPED[name])
    gb.type_into(gb.find(f'[name="{MLA_DESCRIPTION[0]}"]'), MLA_DESCRIPTION[1])
    gb.find('[data-path="assistance_sought"] input[value="banking-records"]').click()
    gb.submit(gb.button("Save draft"), allow=(r"/cases/new .*status of 400",))
    problems = [e.text for e in gb.driver.find_elements(By.CSS_SELECTOR, "p.field-error")]
    assert not problems, problems
    assert gb.text("#case-state") == "draft"


def test_every_field_of_every_open_action_has_its_own_label(officers: Officers, live: Any) -> None:
    ref = _case_in_execution(live)
    ng = officers(NG, "officer")
    ng.open(f"/cases/{ref}")
    for details in ng.driver.find_elements(By.CSS_SELECTOR, "details.action"):
        details.find_element(By.TAG_NAME, "summary").click()
    assert ng.driver.execute_script(_DUPLICATE_IDS) == []
    assert ng.driver.execute_script(_UNLABELLED) == []


def _case_in_execution(live: Any) -> str:
    """An MLA case from GB that NG has started to execute, set up through the SDK."""
    officer, supervisor = CaseClient(live.client(GB)), CaseClient(live.client(GB, "supervisor"))
    ng = CaseClient(live.client(NG))
    data = tomllib.loads((FORMS_DIR / "mla-request.toml").read_text())
    form = forms.form_from_mapping(forms.CaseType.MLA, data, now_ms=now_ms())
    ref = officer.create(form, recipient=NG).summary.case_ref
    officer.act(ref, "submit")
    supervisor.approve(ref)
    live.wait_for(lambda: ng.get(ref).summary.state == "submitted", DEADLINE, "the case at NG")
    for action in (Action.ACKNOWLEDGE, Action.ACCEPT, Action.START_EXECUTION):
        ng.act(ref, action.value, forms.details_from_mapping(action, {}, now_ms=now_ms()))
    return ref
