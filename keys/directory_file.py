"""The signed directory as a file: JSON for people and version control, or binary protobuf.

JSON form (`mlax-directory/v1`)::

    {"format": "mlax-directory/v1",
     "directory": "<base64 of the exact Directory protobuf bytes that were signed>",
     "signatures": [{"key_id": "<admin key id>", "signature": "<base64 Ed25519>"}]}

Binary form: the `mlax.v1.SignedDirectory` protobuf. Both carry the signed bytes
untouched, so converting between them never invalidates a signature. Readers tell them
apart by the first byte: a SignedDirectory encoding never starts with `{`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange.directory import MAX_DIRECTORY_BYTES, SignedDirectory
from exchange.errors import MalformedError, OversizedError
from keys.atomic import PUBLIC_FILE_MODE, write_atomic

DIRECTORY_FORMAT = "mlax-directory/v1"
# Base64 grows the bytes by a third; leave room for the JSON around them.
MAX_DIRECTORY_FILE_BYTES = 2 * MAX_DIRECTORY_BYTES
_JSON_KEYS = {"format", "directory", "signatures"}


def signed_directory_to_json(signed: SignedDirectory) -> str:
    """The JSON form of a signed directory, ending in a newline."""
    doc = {
        "format": DIRECTORY_FORMAT,
        "directory": base64.b64encode(signed.directory).decode("ascii"),
        "signatures": [
            {"key_id": kid, "signature": base64.b64encode(sig).decode("ascii")}
            for kid, sig in signed.signatures
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def signed_directory_from_json(
    data: bytes | str, source: str = "the directory file"
) -> SignedDirectory:
    """Parse the JSON form; MalformedError naming `source` when it is not one."""
    try:
        doc: Any = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != DIRECTORY_FORMAT:
            raise ValueError("format")
        if set(doc) != _JSON_KEYS or not isinstance(doc["signatures"], list):
            raise ValueError("fields")
        signatures = []
        for s in doc["signatures"]:
            if not isinstance(s, dict) or set(s) != {"key_id", "signature"}:
                raise ValueError("signature")
            if not isinstance(s["key_id"], str) or not isinstance(s["signature"], str):
                raise ValueError("signature")
            signatures.append((s["key_id"], base64.b64decode(s["signature"], validate=True)))
        if not isinstance(doc["directory"], str):
            raise ValueError("directory")
        directory = base64.b64decode(doc["directory"], validate=True)
    except (ValueError, binascii.Error):
        raise MalformedError(f"{source} is not an {DIRECTORY_FORMAT} JSON document.") from None
    return SignedDirectory(directory, tuple(signatures))


def is_json(data: bytes) -> bool:
    return data.lstrip()[:1] == b"{"


def parse_signed_directory(data: bytes, source: str = "the directory file") -> SignedDirectory:
    """Parse either form of a signed directory (checks nothing about its signatures)."""
    if len(data) > MAX_DIRECTORY_FILE_BYTES:
        raise OversizedError(f"{source} is larger than a directory may be.")
    if is_json(data):
        return signed_directory_from_json(data, source)
    return SignedDirectory.from_bytes(data)


@dataclass(frozen=True)
class DirectoryFile:
    """A signed directory read from a file, remembering the form to write it back in."""

    signed: SignedDirectory
    binary: bool


def read_directory_file(path: Path) -> DirectoryFile:
    """Read a directory file in either form."""
    with path.open("rb") as f:
        data = f.read(MAX_DIRECTORY_FILE_BYTES + 1)
    return DirectoryFile(parse_signed_directory(data, str(path)), binary=not is_json(data))


def read_signed_directory(path: Path) -> SignedDirectory:
    """The signed directory in the file `path`, JSON or binary; verify it before use."""
    return read_directory_file(path).signed


def write_directory_file(
    path: Path, signed: SignedDirectory, *, binary: bool = False, create: bool = False
) -> None:
    """Write `signed` atomically in JSON (default) or binary form; `create` never replaces."""
    data = signed.to_bytes() if binary else signed_directory_to_json(signed).encode()
    write_atomic(path, data, mode=PUBLIC_FILE_MODE, overwrite=not create)
