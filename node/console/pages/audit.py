"""Audit: this node's ledger verified as `mlax audit verify --node` does, its export as a
download, and the verification of an export file, the same verifier as `mlax audit verify`.

Only an auditor's credential may export the ledger (the node refuses everyone else, and
ledgers every export it serves, the ones behind this page included), so the pages refuse
other roles up front rather than show them the node's refusal. An export file may come
from the node under audit: what it says (its origin, the problems found in it) is shown
as text, never as markup. Nothing from a verification is logged but the verdict.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import structlog
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from exchange.directory import Directory
from exchange.encoding import now_ms
from exchange.errors import MlaxError
from exchange.ledger.audit import AuditReport, Problem, verify_export
from exchange.ledger.audit_errors import MalformedExportError
from exchange.ledger.export import encode_record, iter_records
from exchange.policy import Role
from keys.directory_file import MAX_DIRECTORY_FILE_BYTES, parse_signed_directory
from node.client import OfficerClient
from node.console.app import Console, Refused, flash, redirect
from node.console.security import Session

log = structlog.get_logger("mlax.console.audit")

OK_VERDICT = "OK: every entry, checkpoint and cosignature verifies"
# Problems after the first, and warnings, shown at most (the rest are counted).
LISTED = 20
# The download is sent in pieces of about this size, not one record (a few hundred bytes)
# at a time: each piece costs a hop to a worker thread.
EXPORT_CHUNK = 256 * 1024
# The extension `mlax audit export` files have in the auditors' guide.
EXPORT_SUFFIX = ".export"
# The form fields of the verification upload.
EXPORT_FIELD = "export"
TRUSTED_FIELD = "trusted"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
_STATE_KEY = "audit"


def _auditor_only(console: Console) -> None:
    if console.role != Role.AUDITOR:
        raise Refused(
            "The ledger audit is for auditors; this credential cannot export the ledger.", 403
        )


def _node_lock(console: Console) -> threading.Lock:
    """One verification of the node's ledger at a time: each is a whole export."""
    state: dict[str, Any] = console.state.setdefault(_STATE_KEY, {})
    with console.lock:
        lock: threading.Lock = state.setdefault("lock", threading.Lock())
    return lock


def _located(p: Problem) -> str:
    """A problem as the CLI prints it: where first, then what."""
    where = f"index {p.index}: " if p.index is not None else ""
    return f"{where}{p.kind} — {p.detail}"


def report_context(report: AuditReport) -> dict[str, Any]:
    """What the report template shows of one verification."""
    problems = [_located(p) for p in report.problems]
    return {
        "ok": report.ok,
        "verdict": OK_VERDICT if report.ok else problems[0],
        "origin": report.origin,
        "entries": report.entries,
        "redacted": report.redacted,
        "checkpoints": report.checkpoints,
        "latest": report.latest_checkpoint_size,
        "cosigned_by": sorted(report.cosigned_by.items()),
        "more_problems": problems[1 : 1 + LISTED],
        "unlisted_problems": max(0, len(problems) - 1 - LISTED),
        "warnings": report.warnings[:LISTED],
        "unlisted_warnings": max(0, len(report.warnings) - LISTED),
        "admins": report.directory_admins,
    }


# --- this node's ledger -----------------------------------------------------------------


def _verify_node(client: OfficerClient, lock: threading.Lock) -> tuple[AuditReport, float]:
    """The node's export verified as it streams in (on a worker thread), and the seconds
    that took."""
    with lock:
        started = time.monotonic()
        report = verify_export(client.export_ledger(), trusted_directory=None)
        return report, time.monotonic() - started


def _export_chunks(client: OfficerClient) -> Iterator[bytes]:
    """The node's export as the bytes of an export file, in pieces of EXPORT_CHUNK."""
    records = client.export_ledger()
    piece: list[bytes] = []
    size = 0
    try:
        for record in records:
            data = encode_record(record)
            piece.append(data)
            size += len(data)
            if size >= EXPORT_CHUNK:
                yield b"".join(piece)
                piece, size = [], 0
        if piece:
            yield b"".join(piece)
    except MlaxError as e:
        # The headers are sent: the download can only be cut short, which the browser
        # shows as failed (and which a verifier would find in the file).
        log.warning("console_export_broken", error=type(e).__name__)
        raise
    finally:
        _close(records)


def _close(it: Iterator[Any]) -> None:
    """Close a generator early: an abandoned download stops the node's stream too."""
    close = getattr(it, "close", None)
    if close is not None:
        close()


def _first(chunks: Iterator[bytes]) -> bytes:
    return next(chunks, b"")


def _then(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    try:
        if first:
            yield first
        yield from rest
    finally:
        _close(rest)


def _export_name(agency: str) -> str:
    day = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    agency = _UNSAFE_NAME.sub("-", agency) or "node"
    return f"{agency}-ledger-{day}{EXPORT_SUFFIX}"


# --- an export file ---------------------------------------------------------------------


def _trusted_directory(data: bytes) -> Directory:
    try:
        signed = parse_signed_directory(data, "the trusted directory file")
        return Directory.from_bytes(signed.directory)
    except MlaxError as e:
        raise Refused(f"The trusted directory file cannot be read: {_clause(e.message)}.") from None
    except ValueError:
        raise Refused("The trusted directory file is not a signed directory.") from None


def _clause(message: str) -> str:
    text = message.rstrip(".")
    return text[:1].lower() + text[1:]


def _verify_file(work_dir: Path, upload: IO[bytes], trusted: Directory | None) -> AuditReport:
    """Copy the upload to a private file of the console's own and verify it from there,
    as `mlax audit verify FILE` reads a file; the copy is gone afterwards."""
    fd, name = tempfile.mkstemp(prefix="verify-", suffix=EXPORT_SUFFIX, dir=work_dir)  # 0600
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            upload.seek(0)
            shutil.copyfileobj(upload, out, 1 << 20)
        with path.open("rb") as f:
            try:
                # The reader itself, not a generator over it: it hands the verifier runs.
                return verify_export(iter_records(f.read), trusted_directory=trusted)
            except MalformedExportError as e:
                raise Refused(f"This file is not a ledger export: {_clause(e.message)}.") from None
    finally:
        path.unlink(missing_ok=True)


def _file_of(post: FormData, name: str) -> UploadFile | None:
    value = post.get(name)
    if not isinstance(value, UploadFile) or (not value.filename and not value.size):
        return None
    return value


def register(console: Console) -> None:
    async def check_node() -> tuple[AuditReport, float, int]:
        report, seconds = await console.call(_verify_node, console.client, _node_lock(console))
        log.info("console_audit_node", ok=report.ok, entries=report.entries)
        last = (report, seconds, now_ms())
        console.state.setdefault(_STATE_KEY, {})["last"] = last
        return last

    @console.page("/audit")
    async def audit(console: Console, request: Request, session: Session) -> Response:
        # The last check is shown with its time; a new one (a whole export, which the node
        # ledgers) runs on the first visit and when the auditor asks for it.
        _auditor_only(console)
        last = console.state.get(_STATE_KEY, {}).get("last") or await check_node()
        report, seconds, at = last
        return _page(console, request, session, report, seconds, checked_at=at)

    @console.page("/audit/check", methods=("POST",))
    async def check_again(console: Console, request: Request, session: Session) -> Response:
        _auditor_only(console)
        report, _, _ = await check_node()
        flash(session, "Checked again: " + ("OK." if report.ok else "FAILED; see below."))
        return redirect("/audit")

    @console.page("/audit/export", methods=("POST",))
    async def export(console: Console, request: Request, session: Session) -> Response:
        _auditor_only(console)
        chunks = _export_chunks(console.client)
        # The first piece before any header is sent: a refusal is still a page.
        first = await console.call(_first, chunks)
        log.info("console_audit_export")
        name = _export_name(console.me.agency)
        return StreamingResponse(
            _then(first, chunks),
            media_type="application/octet-stream",
            headers={"content-disposition": f'attachment; filename="{name}"'},
        )

    @console.page("/audit/verify", methods=("POST",))
    async def verify(console: Console, request: Request, session: Session) -> Response:
        _auditor_only(console)
        post = await request.form(max_part_size=console.settings.max_form_bytes)
        try:
            upload = _file_of(post, EXPORT_FIELD)
            if upload is None:
                raise Refused("Choose an export file to verify.")
            trusted_file = _file_of(post, TRUSTED_FIELD)
            trusted = None
            if trusted_file is not None:
                data = await trusted_file.read(MAX_DIRECTORY_FILE_BYTES + 1)
                trusted = _trusted_directory(data)
            started = time.monotonic()
            report = await console.call(_verify_file, console.work_dir, upload.file, trusted)
        finally:
            await post.close()
        seconds = time.monotonic() - started
        log.info("console_audit_file", ok=report.ok, entries=report.entries)
        return _page(
            console, request, session, report, seconds, file=True, trusted=trusted is not None
        )


def _page(
    console: Console,
    request: Request,
    session: Session,
    report: AuditReport,
    seconds: float,
    *,
    file: bool = False,
    trusted: bool = False,
    checked_at: int = 0,
) -> Response:
    return console.render(
        request,
        session,
        "audit.html",
        {
            "r": report_context(report),
            "took": "under 0.1 s" if seconds < 0.1 else f"{seconds:.1f} s",
            "file": file,
            "trusted": trusted,
            "checked_at": checked_at,
            "agency": console.me.agency,
            "max_export": console.settings.max_export_bytes,
        },
    )


__all__ = ["OK_VERDICT", "register", "report_context"]
