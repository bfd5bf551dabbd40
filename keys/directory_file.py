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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange.directory import MAX_DIRECTORY_BYTES, Directory, SignedDirectory
from exchange.errors import InvalidFieldError, MalformedError, OversizedError
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


# --- chains of versions ----------------------------------------------------------------------
#
# A chain file carries consecutive versions so that a node which trusts an old one can
# reach the newest across changes of administrators (`mlax node directory update`):
#
#     {"format": "mlax-directory-chain/v1",
#      "versions": [<mlax-directory/v1 document>, ...]}     oldest first

CHAIN_FORMAT = "mlax-directory-chain/v1"
MAX_CHAIN_VERSIONS = 1000
MAX_CHAIN_FILE_BYTES = 64 * 1024 * 1024


def signed_chain_to_json(versions: list[SignedDirectory]) -> str:
    """The JSON form of a chain of signed directories, ending in a newline."""
    docs = [json.loads(signed_directory_to_json(v)) for v in versions]
    return json.dumps({"format": CHAIN_FORMAT, "versions": docs}, indent=2) + "\n"


def _chain_from_json(data: bytes, source: str) -> list[SignedDirectory]:
    try:
        doc: Any = json.loads(data)
    except ValueError:
        doc = None
    if (
        not isinstance(doc, dict)
        or set(doc) != {"format", "versions"}
        or not isinstance(doc["versions"], list)
    ):
        raise MalformedError(f"{source} is not an {CHAIN_FORMAT} JSON document.")
    if len(doc["versions"]) > MAX_CHAIN_VERSIONS:
        raise OversizedError(f"{source} holds more than {MAX_CHAIN_VERSIONS} versions.")
    return [
        signed_directory_from_json(json.dumps(v), f"Entry {i} of {source}")
        for i, v in enumerate(doc["versions"], start=1)
    ]


def read_directory_versions(path: Path) -> list[SignedDirectory]:
    """The signed directories in `path`: one (a directory file in either form) or the
    versions of a chain file, in file order; nothing about their signatures is checked."""
    with path.open("rb") as f:
        data = f.read(MAX_CHAIN_FILE_BYTES + 1)
    if len(data) > MAX_CHAIN_FILE_BYTES:
        raise OversizedError(f"{path} is larger than a directory chain may be.")
    if is_json(data):
        try:
            doc_format = json.loads(data).get("format")
        except (ValueError, AttributeError):
            doc_format = None
        if doc_format == CHAIN_FORMAT:
            return _chain_from_json(data, str(path))
    return [parse_signed_directory(data, str(path))]


def write_chain_file(path: Path, versions: list[SignedDirectory]) -> None:
    """Write a chain file atomically (JSON), replacing any file at `path`."""
    write_atomic(
        path, signed_chain_to_json(versions).encode(), mode=PUBLIC_FILE_MODE, overwrite=True
    )


def read_versions(paths: Sequence[Path]) -> list[SignedDirectory]:
    """The directory versions in the files `paths` (directories or chains), oldest first.

    A version met twice with the same content is kept once (its first copy); two
    different directories of one version are refused.
    """
    by_version: dict[int, SignedDirectory] = {}
    for path in paths:
        for signed in read_directory_versions(path):
            version = Directory.from_bytes(signed.directory).version
            seen = by_version.setdefault(version, signed)
            if seen.directory != signed.directory:
                raise InvalidFieldError(
                    f"Two different directories claim version {version} ({path} holds one)."
                )
    return [by_version[v] for v in sorted(by_version)]
