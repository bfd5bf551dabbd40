"""The `mlax keys` and `mlax directory` commands, driven through the real console script.

Three agencies and four administrator keys (the fourth is no administrator of the
federation) are created once; the directory then goes through its whole life: k of n
signing, an edit that needs signatures again, rollback, a stranger's signature.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from keys.directory_file import read_signed_directory
from node.devtools.federation import mlax_command

if TYPE_CHECKING:
    # Only the type: which `conftest` module a plain import finds depends on collection order.
    from conftest import Cli

AGENCIES = {"GB-NCA": 7401, "FR-OCRTEH": 7402, "NL-NP": 7403}
ADMINS = ("a1", "a2", "a3", "stranger")


def ok(cli: Cli, *args: str | Path) -> subprocess.CompletedProcess[str]:
    result = cli.run(*args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory, cli: Cli) -> Path:
    """Agency identities and administrator keys, created in parallel to save time."""
    root = tmp_path_factory.mktemp("members")
    commands = [
        ["keys", "init", "--agency", agency, "--name", f"Agency {agency}",
         "--endpoint", f"127.0.0.1:{port}", "--dir", str(root / agency)]
        for agency, port in AGENCIES.items()
    ] + [
        ["keys", "admin-init", "--dir", str(root / a), "--name", f"Admin {a}"] for a in ADMINS
    ]  # fmt: skip
    procs = [
        subprocess.Popen(
            [*mlax_command(), *c], env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for c in commands
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    return root


def test_directory_k_of_n_lifecycle(members: Path, cli: Cli) -> None:
    d = members
    fed, v1, stranger = d / "fed.json", d / "v1.json", d / "stranger.json"
    a2_public = (d / "a2" / "admin.pub").read_text().strip()
    ok(
        cli, "directory", "init", "--federation", "call-to-action", "--threshold", "2",
        "--admin", d / "a1" / "admin.pub", "--admin", a2_public, "--admin", d / "a3" / "admin.pub",
        "--admin-name", "Admin One", "--out", fed,
    )  # fmt: skip
    added = ok(cli, "directory", "add", *(d / a / "card.json" for a in AGENCIES), "--file", fed)
    assert all(f"added {agency}" in added.stdout for agency in AGENCIES)

    ok(cli, "directory", "sign", "--admin-key", d / "a1" / "admin.key", "--file", fed)
    short = cli.refusal(cli.run("directory", "verify", fed))
    assert short == "The directory has 1 valid administrator signatures; it needs 2."

    ok(cli, "directory", "sign", "--admin-key", d / "a2", "--file", fed)
    verified = ok(cli, "directory", "verify", fed).stdout
    assert "OK: federation 'call-to-action' version 1: 2 of 2 required signatures" in verified
    assert "3 agencies" in verified
    shutil.copy(fed, v1)

    removed = ok(cli, "directory", "remove", "NL-NP", "--file", fed).stdout
    assert "removed NL-NP" in removed
    assert "version 1 -> 2; 2 signatures cleared" in removed
    unsigned = cli.refusal(cli.run("directory", "verify", fed, "--trusted", v1))
    assert "signatures" in unsigned

    ok(cli, "directory", "sign", "--admin-key", d / "a2" / "admin.key", "--file", fed)
    ok(cli, "directory", "sign", "--admin-key", d / "a3" / "admin.key", "--file", fed)
    report = cli.json("directory", "verify", fed, "--trusted", v1, "--json")
    assert (report["ok"], report["version"], report["valid_signatures"]) == (True, 2, 2)
    assert [a["agency_id"] for a in report["agencies"]] == ["FR-OCRTEH", "GB-NCA"]

    rollback = cli.refusal(cli.run("directory", "verify", v1, "--trusted", fed))
    assert rollback == "Directory version 1 is not newer than the trusted version 2."

    shutil.copy(fed, stranger)
    signed = ok(cli, "directory", "sign", "--admin-key", d / "stranger", "--file", stranger)
    assert "is not an administrator of this version" in signed.stderr
    assert "who is not a federation administrator" in cli.refusal(
        cli.run("directory", "verify", stranger)
    )

    wrong = cli.run(
        "directory", "sign", "--admin-key", d / "a1" / "admin.key", "--file", fed,
        env={"MLAX_KEY_PASSPHRASE": "not the passphrase"},
    )  # fmt: skip
    assert cli.refusal(wrong) == f"The passphrase does not decrypt {d / 'a1' / 'admin.key'}."

    ok(cli, "directory", "export", fed, "--out", d / "fed.pb")
    assert read_signed_directory(d / "fed.pb") == read_signed_directory(fed)


def test_keys_init_show_rotate_revoke(tmp_path: Path, cli: Cli) -> None:
    de = tmp_path / "de"
    init = ("keys", "init", "--agency", "DE-BKA", "--name", "Bundeskriminalamt")
    ok(cli, *init, "--endpoint", "bka.example.test:7443", "--dir", de)
    again = cli.refusal(cli.run(*init, "--endpoint", "bka.example.test:7443", "--dir", de))
    assert again == f"{de} already holds an agency identity; it was not replaced."

    rotated = ok(cli, "keys", "rotate", "--dir", de, "--kind", "signing", "--overlap-days", "10")
    assert "mlax directory add" in rotated.stdout

    shown = cli.json("keys", "show", "--dir", de, "--json")
    signing = [k for k in shown["keys"] if k["purpose"] == "signing"]
    assert len(signing) == 2
    assert {k["status"] for k in shown["keys"]} == {"active"}
    assert shown["warnings"] == []
    assert len(shown["tls_spki_sha256"]) == 64
    table = ok(cli, "keys", "show", "--dir", de).stdout
    assert all(k["key_id"] in table for k in shown["keys"])

    unknown = cli.refusal(cli.run("keys", "revoke", "0123456789abcdef", "--dir", de))
    assert unknown == "DE-BKA has no signing or encryption key '0123456789abcdef'."

    old = min(signing, key=lambda k: k["not_before"])
    revoked = ok(cli, "keys", "revoke", old["key_id"], "--dir", de, "--reason", "rotated")
    assert f"Revoked signing key {old['key_id']}" in revoked.stdout
