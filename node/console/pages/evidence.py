"""Evidence: uploads and downloads with progress, through the SDK's resuming transfers.

An upload arrives from the browser as the raw file body (the page's script sends it with
the file name in a header, percent-encoded; the multipart form without script works
too) and is kept in the console's private work directory (0700) until the SDK has sent
it to the node. `CaseClient.attach` resumes by itself from the last chunk the node
confirmed after a dropped connection; when it gives up (the node is down for longer),
the transfer is "interrupted" and the officer's Resume button starts it again with the
same upload id, so the node goes on from what it holds. A download is fetched into the
work directory by `CaseClient.download`, which keeps the file only once its signed
SHA-256 matches; the page then shows the digest and a link that hands the file over
once and deletes it.

The browser follows a transfer by polling GET /transfers/{id}, which says how many bytes
the node has confirmed (or this console has received).
"""

from __future__ import annotations

import secrets
import shutil
import threading
import time
import unicodedata
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.background import BackgroundTask
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from exchange.errors import MlaxError
from exchange.policy import Role
from node.cli.safe_text import shown
from node.client import NodeCallError
from node.console.app import Console, Refused, flash, json_response, redirect
from node.console.security import Session

# Transfers a console keeps: finished ones go first when there are more.
MAX_TRANSFERS = 64
MAX_NAME_BYTES = 255
# Downloads are kept under this local name; the peer's name only labels the file.
LOCAL_NAME = "file"
# States a transfer rests in: nothing runs for it any more.
_SETTLED = frozenset({"done", "failed", "saved", "interrupted"})
# A settled transfer's file (a download not saved, an upload not resumed) is deleted
# after this long: the console keeps no evidence it is not using.
MAX_IDLE_SECONDS = 3600.0
_TRANSIENT = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "INTERNAL", "UNKNOWN")
_COPY_BLOCK = 1 << 20


@dataclass
class Transfer:
    job: str
    kind: str  # "upload" or "download"
    case_ref: str
    name: str
    total: int
    path: Path
    # "receiving" (browser to console), "sending" (console to node), "fetching" (node to
    # console), "done", "interrupted" (may be resumed) or "failed".
    state: str
    done: int = 0
    error: str = ""
    upload_id: str = ""
    description: str = ""
    attachment_id: str = ""
    sha256: str = ""
    announced: bool = False
    created: float = field(default_factory=time.monotonic)

    def status(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "kind": self.kind,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            # The page's script shows these: made safe here as every page shows text.
            "error": shown(self.error, markup=False),
            "attachment_id": self.attachment_id,
            "sha256": self.sha256,
            "name": shown(self.name, markup=False),
        }


def file_name(raw: str) -> str:
    """The last part of a name a browser sent, refused when it cannot be a file name: at
    most 255 bytes (what a file system takes), and no control or format character (a
    right-to-left override would make `invoice\u202egpj.exe` read as a picture)."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name or name in (".", ".."):
        raise Refused("The file needs a name.")
    if len(name.encode()) > MAX_NAME_BYTES or any(
        unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in name
    ):
        raise Refused(
            f"The file name must be at most {MAX_NAME_BYTES} bytes of printable characters."
        )
    return name


class Transfers:
    """The transfers of one console, each running on a thread of its own."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._lock = threading.Lock()
        self._items: dict[str, Transfer] = {}

    def new(
        self, kind: str, case_ref: str, name: str, total: int, state: str, local: str = ""
    ) -> Transfer:
        job = secrets.token_urlsafe(16)
        folder = self.console.work_dir / job
        folder.mkdir(mode=0o700)
        t = Transfer(job, kind, case_ref, name, total, folder / (local or name), state)
        with self._lock:
            self._trim()
            self._items[job] = t
        return t

    def get(self, job: str) -> Transfer:
        with self._lock:
            t = self._items.get(job)
        if t is None:
            raise Refused("There is no such transfer on this console.", 404)
        return t

    def _trim(self) -> None:
        """Forget what is finished or left alone too long, oldest first; a transfer under
        way is forgotten only when nothing else can be."""
        now = time.monotonic()
        for t in list(self._items.values()):
            if t.state in _SETTLED and now - t.created > MAX_IDLE_SECONDS:
                self._items.pop(t.job)
                self.discard(t)
        while len(self._items) >= MAX_TRANSFERS:
            settled = [t for t in self._items.values() if t.state in _SETTLED]
            oldest = min(settled or self._items.values(), key=lambda t: t.created)
            self._items.pop(oldest.job)
            self.discard(oldest)

    def discard(self, t: Transfer) -> None:
        shutil.rmtree(t.path.parent, ignore_errors=True)

    # -- the work -------------------------------------------------------------------------

    def start_upload(self, t: Transfer) -> None:
        t.state = "sending"
        t.done = 0
        t.error = ""
        threading.Thread(target=self._upload, args=(t,), name="console-upload", daemon=True).start()

    def _upload(self, t: Transfer) -> None:
        def progress(n: int) -> None:
            t.done = n

        try:
            status = self.console.cases.attach(
                t.case_ref,
                t.path,
                progress=progress,
                upload_id=t.upload_id,
                description=t.description,
            )
        except NodeCallError as e:
            t.error = str(e)
            t.state = "interrupted" if e.status in _TRANSIENT else "failed"
            if t.state == "failed":
                self.discard(t)
            return
        except (MlaxError, OSError) as e:
            t.error = str(e)
            t.state = "failed"
            self.discard(t)
            return
        t.attachment_id = status.attachment_id
        t.done = t.total
        t.state = "done"
        self.discard(t)

    def start_download(self, t: Transfer, attachment_id: str) -> None:
        t.attachment_id = attachment_id
        threading.Thread(
            target=self._download, args=(t,), name="console-download", daemon=True
        ).start()

    def _download(self, t: Transfer) -> None:
        def progress(n: int) -> None:
            t.done = n

        try:
            info = self.console.cases.download(t.attachment_id, t.path, progress=progress)
        except (MlaxError, OSError) as e:
            t.error = str(e)
            t.state = "failed"
            self.discard(t)
            return
        t.sha256 = info.sha256.hex()
        t.done = t.total
        t.state = "done"


def _transfers(console: Console) -> Transfers:
    with console.lock:
        found = console.state.get("transfers")
        if not isinstance(found, Transfers):
            found = Transfers(console)
            console.state["transfers"] = found
        return found


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _may_transfer(console: Console) -> None:
    if console.role not in (Role.OFFICER, Role.SUPERVISOR):
        raise Refused("Evidence is for officers and supervisors.", 403)


async def _receive_raw(request: Request, t: Transfer) -> None:
    """The request body into the transfer's file, counted as it arrives (0600)."""
    with t.path.open("xb") as f:
        t.path.chmod(0o600)
        async for block in request.stream():
            f.write(block)
            t.done += len(block)


async def _receive_part(part: UploadFile, t: Transfer) -> None:
    with t.path.open("xb") as f:
        t.path.chmod(0o600)
        while block := await part.read(_COPY_BLOCK):
            f.write(block)
            t.done += len(block)


def register(console: Console) -> None:
    @console.page("/cases/{ref}/evidence", methods=("POST", "PUT"))
    async def upload(console: Console, request: Request, session: Session) -> Response:
        _may_transfer(console)
        ref = request.path_params["ref"]
        transfers = _transfers(console)
        multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
        if multipart:
            form = await request.form(max_files=1, max_part_size=console.settings.max_form_bytes)
            part = form.get("file")
            if not isinstance(part, UploadFile) or not part.filename:
                raise Refused("Choose a file to upload.")
            name = file_name(part.filename)
            description = str(form.get("description", ""))
            total = part.size or 0
        else:
            name = file_name(urllib.parse.unquote(request.headers.get("x-file-name", "")))
            description = urllib.parse.unquote(request.headers.get("x-description", ""))
            declared = request.headers.get("content-length", "")
            total = int(declared) if declared.isdigit() else 0
        part_file = part if multipart and isinstance(part, UploadFile) else None
        t = transfers.new("upload", ref, name, total, "receiving")
        t.description = description
        t.upload_id = secrets.token_hex(16)
        try:
            if part_file is not None:
                await _receive_part(part_file, t)
            else:
                await _receive_raw(request, t)
        except OSError as e:
            t.state, t.error = "failed", "The console could not store the file."
            transfers.discard(t)
            raise Refused(f"The console could not store the file ({e.strerror}).", 507) from None
        except BaseException:
            t.state, t.error = "failed", "The file did not arrive whole from the browser."
            transfers.discard(t)
            raise
        t.total = t.done
        if t.total == 0:
            t.state = "failed"
            transfers.discard(t)
            raise Refused("The file is empty; there is nothing to send.")
        transfers.start_upload(t)
        if _wants_json(request):
            return json_response(t.status(), 202)
        flash(session, f"Sending {name} to your node; this page shows it once it is there.")
        return redirect(f"/cases/{ref}")

    @console.page("/cases/{ref}/files/{attachment_id}/download", methods=("POST",))
    async def download(console: Console, request: Request, session: Session) -> Response:
        _may_transfer(console)
        ref = request.path_params["ref"]
        attachment_id = request.path_params["attachment_id"]
        view = await console.call(console.cases.get, ref)
        chosen = [a for a in view.attachments if a.attachment_id == attachment_id]
        if not chosen:
            raise Refused(f"Case {ref} has no attachment {attachment_id}.", 404)
        a = chosen[0]
        # The peer's name labels the file; it is kept under a local name of our own.
        t = _transfers(console).new("download", ref, a.name, a.size, "fetching", LOCAL_NAME)
        _transfers(console).start_download(t, attachment_id)
        if _wants_json(request):
            return json_response(t.status(), 202)
        return redirect(f"/transfers/{t.job}/page")

    @console.page("/transfers/{job}")
    async def status(console: Console, request: Request, session: Session) -> Response:
        t = _transfers(console).get(request.path_params["job"])
        if t.state == "done" and t.kind == "upload" and not t.announced:
            t.announced = True
            flash(session, f"Uploaded {t.name} to case {t.case_ref} as {t.attachment_id}.")
        return json_response(t.status())

    @console.page("/transfers/{job}/page")
    async def status_page(console: Console, request: Request, session: Session) -> Response:
        t = _transfers(console).get(request.path_params["job"])
        return console.render(request, session, "transfer.html", {"t": t})

    @console.page("/transfers/{job}/resume", methods=("POST",))
    async def resume(console: Console, request: Request, session: Session) -> Response:
        transfers = _transfers(console)
        t = transfers.get(request.path_params["job"])
        if t.kind != "upload" or t.state != "interrupted":
            raise Refused("Only an interrupted upload can be resumed.", 409)
        transfers.start_upload(t)
        if _wants_json(request):
            return json_response(t.status(), 202)
        return redirect(f"/cases/{t.case_ref}")

    @console.page("/transfers/{job}/file")
    async def saved_file(console: Console, request: Request, session: Session) -> Response:
        transfers = _transfers(console)
        t = transfers.get(request.path_params["job"])
        if t.kind != "download" or t.state != "done" or not t.path.exists():
            raise Refused("This download is not ready, or was already saved.", 409)
        # Handed over once: the console keeps no copy of evidence it has passed on.
        t.state = "saved"
        return FileResponse(
            t.path,
            filename=shown(t.name, markup=False),
            media_type="application/octet-stream",
            content_disposition_type="attachment",
            background=BackgroundTask(transfers.discard, t),
        )


__all__ = ["Transfer", "Transfers", "file_name", "register"]
