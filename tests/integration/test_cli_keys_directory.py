"""The `mlax keys` and `mlax directory` commands, driven through the real console script.

Three agencies and four administrator keys (the fourth is no administrator of the
federation) are created once; the directory goes through its whole life: k of n
signing, an edit that needs signatures again, rollback, a stranger's signature.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from keys.directory_file import read_signed_directory

MLAX = Path(sys.executable).parent / "mlax"
PASSPHRASE = "integration passphrase"
AGENCIES = {"GB-NCA": 7401, "FR-OCRTEH": 7402, "NL-NP": 7403}
ADMINS = ("a1", "a2", "a3", "stranger")


def _env(passphrase: str = PASSPHRASE) -> dict[str, str]:
    # The test KDF profile keeps Argon2id cheap; real key files use the strong default.
    return {
        **os.environ,
        "MLAX_KEY_PASSPHRASE": passphrase,
        "MLAX_KDF_PROFILE": "test",
        "COLUMNS": "200",
    }


@dataclass
class Run:
    code: int
    out: str
    err: str


def mlax(*args: str | Path, cwd: Path, passphrase: str = PASSPHRASE) -> Run:
    proc = subprocess.run(
        [str(MLAX), *map(str, args)],
        cwd=cwd,
        env=_env(passphrase),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return Run(proc.returncode, proc.stdout, proc.stderr)


def ok(*args: str | Path, cwd: Path) -> Run:
    run = mlax(*args, cwd=cwd)
    assert run.code == 0, run.err
    return run


def refused(*args: str | Path, cwd: Path, passphrase: str = PASSPHRASE) -> Run:
    """A refusal: exit 1 and exactly one `error:` sentence on stderr."""
    run = mlax(*args, cwd=cwd, passphrase=passphrase)
    assert run.code == 1, (run.out, run.err)
    errors = [line for line in run.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.err
    return run


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Agency identities and administrator keys, created in parallel to save time."""
    root = tmp_path_factory.mktemp("federation")
    commands = [
        [
            "keys",
            "init",
            "--agency",
            agency,
            "--name",
            f"Agency {agency}",
            "--endpoint",
            f"127.0.0.1:{port}",
            "--dir",
            agency,
        ]
        for agency, port in AGENCIES.items()
    ] + [["keys", "admin-init", "--dir", a, "--name", f"Admin {a}"] for a in ADMINS]
    procs = [
        subprocess.Popen(
            [str(MLAX), *c], cwd=root, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for c in commands
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    return root


def test_directory_k_of_n_lifecycle(federation: Path) -> None:
    d = federation
    a2_public = (d / "a2" / "admin.pub").read_text().strip()
    ok(
        "directory", "init", "--federation", "call-to-action", "--threshold", "2",
        "--admin", "a1/admin.pub", "--admin", a2_public, "--admin", "a3/admin.pub",
        "--admin-name", "Admin One", "--out", "fed.json", cwd=d,
    )  # fmt: skip
    added = ok(
        "directory", "add", "GB-NCA/card.json", "FR-OCRTEH/card.json", "--file", "fed.json", cwd=d
    )
    assert "added GB-NCA" in added.out
    assert "added FR-OCRTEH" in added.out
    ok("directory", "add", "NL-NP/card.json", "--file", "fed.json", cwd=d)

    ok("directory", "sign", "--admin-key", "a1/admin.key", "--file", "fed.json", cwd=d)
    short = refused("directory", "verify", "fed.json", cwd=d)
    assert "error: The directory has 1 valid administrator signatures; it needs 2." in short.err

    ok("directory", "sign", "--admin-key", "a2", "--file", "fed.json", cwd=d)
    verified = ok("directory", "verify", "fed.json", cwd=d)
    assert "OK: federation 'call-to-action' version 1: 2 of 2 required signatures" in verified.out
    assert "3 agencies" in verified.out
    shutil.copy(d / "fed.json", d / "v1.json")

    removed = ok("directory", "remove", "NL-NP", "--file", "fed.json", cwd=d)
    assert "removed NL-NP" in removed.out
    assert "version 1 -> 2; 2 signatures cleared" in removed.out
    unsigned = refused("directory", "verify", "fed.json", "--trusted", "v1.json", cwd=d)
    assert "signatures" in unsigned.err

    ok("directory", "sign", "--admin-key", "a2/admin.key", "--file", "fed.json", cwd=d)
    ok("directory", "sign", "--admin-key", "a3/admin.key", "--file", "fed.json", cwd=d)
    v2 = ok("directory", "verify", "fed.json", "--trusted", "v1.json", "--json", cwd=d)
    report = json.loads(v2.out)
    assert (report["ok"], report["version"], report["valid_signatures"]) == (True, 2, 2)
    assert [a["agency_id"] for a in report["agencies"]] == ["FR-OCRTEH", "GB-NCA"]

    rollback = refused("directory", "verify", "v1.json", "--trusted", "fed.json", cwd=d)
    assert "Directory version 1 is not newer than the trusted version 2." in rollback.err

    shutil.copy(d / "fed.json", d / "stranger.json")
    signed = ok("directory", "sign", "--admin-key", "stranger", "--file", "stranger.json", cwd=d)
    assert "is not an administrator of this version" in signed.err
    stranger = refused("directory", "verify", "stranger.json", cwd=d)
    assert "who is not a federation administrator" in stranger.err

    wrong = refused(
        "directory", "sign", "--admin-key", "a1/admin.key", "--file", "fed.json",
        cwd=d, passphrase="not the passphrase",
    )  # fmt: skip
    assert f"error: The passphrase does not decrypt {Path('a1/admin.key')}." in wrong.err

    ok("directory", "export", "fed.json", "--out", "fed.pb", cwd=d)
    assert read_signed_directory(d / "fed.pb") == read_signed_directory(d / "fed.json")


def test_keys_init_show_rotate_revoke(tmp_path: Path) -> None:
    d = tmp_path
    init = ["keys", "init", "--agency", "DE-BKA", "--name", "Bundeskriminalamt"]
    ok(*init, "--endpoint", "bka.example.test:7443", "--dir", "de", cwd=d)
    again = refused(*init, "--endpoint", "bka.example.test:7443", "--dir", "de", cwd=d)
    assert "already holds an agency identity" in again.err

    rotated = ok(
        "keys", "rotate", "--dir", "de", "--kind", "signing", "--overlap-days", "10", cwd=d
    )
    assert "mlax directory add" in rotated.out

    shown = json.loads(ok("keys", "show", "--dir", "de", "--json", cwd=d).out)
    signing = [k for k in shown["keys"] if k["purpose"] == "signing"]
    assert len(signing) == 2
    assert {k["status"] for k in shown["keys"]} == {"active"}
    assert shown["warnings"] == []
    assert len(shown["tls_spki_sha256"]) == 64
    table = ok("keys", "show", "--dir", "de", cwd=d).out
    assert all(k["key_id"] in table for k in shown["keys"])

    unknown = refused("keys", "revoke", "0123456789abcdef", "--dir", "de", cwd=d)
    assert "DE-BKA has no signing or encryption key '0123456789abcdef'." in unknown.err

    old = min(signing, key=lambda k: k["not_before"])
    revoked = ok("keys", "revoke", old["key_id"], "--dir", "de", "--reason", "rotated", cwd=d)
    assert f"Revoked signing key {old['key_id']}" in revoked.out
