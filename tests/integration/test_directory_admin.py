"""Directory administration through the real console script: extending the expiry,
rotating the administrators with the old ones' approval, and bootstrapping a new node
onto a directory whose administrators changed, through the versions in between.

Keys and identities are made in-process with cheap KDF parameters (the `keys` commands
have their own tests); every command under test runs as `mlax`. No node is started:
`mlax node directory update` works on the node's database.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from nacl.signing import SigningKey

from exchange.directory import AdminKey, Directory, SignedDirectory
from exchange.encoding import now_ms
from keys.admin import create_admin, load_admin
from keys.directory_edit import DAY_MS, add_admin, add_agencies, new_directory, remove_admin
from keys.directory_file import read_signed_directory, write_chain_file, write_directory_file
from keys.identity import create_identity
from keys.keystore import TEST_KDF

if TYPE_CHECKING:
    from conftest import Cli

PASSPHRASE = b"pw"  # the Cli's MLAX_KEY_PASSPHRASE
ADMINS = ("a1", "a2", "a3", "b1", "b2")


def ok(cli: Cli, *args: str | Path) -> subprocess.CompletedProcess[str]:
    result = cli.run(*args)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result


@dataclass(frozen=True)
class People:
    root: Path
    admins: dict[str, AdminKey]
    v1: Path  # version 1, signed by a1 and a2 of a1..a3 (2 of 3)

    def key(self, name: str) -> Path:
        return self.root / name / "admin.key"

    def pub(self, name: str) -> Path:
        return self.root / name / "admin.pub"

    def sign(self, signed: SignedDirectory, *names: str) -> SignedDirectory:
        for name in names:
            signed = signed.signed_by(load_admin(self.key(name), PASSPHRASE).signing_key)
        return signed


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> People:
    root = tmp_path_factory.mktemp("federation")
    admins = {a: create_admin(root / a, f"Admin {a}", PASSPHRASE, TEST_KDF) for a in ADMINS}
    card = create_identity(
        root / "GB-NCA",
        agency_id="GB-NCA",
        name="National Crime Agency",
        endpoint="127.0.0.1:7401",
        passphrase=PASSPHRASE,
        kdf=TEST_KDF,
    )
    signed = new_directory("call-to-action", 2, [admins[a] for a in ("a1", "a2", "a3")])
    signed = add_agencies(signed, [card]).signed
    people = People(root, admins, root / "v1.json")
    write_directory_file(people.v1, people.sign(signed, "a1", "a2"))
    return people


def _copy(people: People, tmp_path: Path) -> Path:
    fed = tmp_path / "federation.json"
    shutil.copy(people.v1, fed)
    return fed


def _directory(path: Path) -> Directory:
    return Directory.from_bytes(read_signed_directory(path).directory)


def test_extend_the_expiry(people: People, cli: Cli, tmp_path: Path) -> None:
    fed = _copy(people, tmp_path)
    old_expiry = _directory(fed).expires_at
    past = cli.refusal(cli.run("directory", "extend", "--file", fed, "--until", "2020-01-01"))
    assert past == "2020-01-01 00:00 UTC is in the past; a directory must expire in the future."
    shorter = cli.refusal(cli.run("directory", "extend", "--file", fed, "--days", "30"))
    assert shorter.startswith("Version 1 already expires ")
    assert shorter.endswith(" would not extend it.")
    assert read_signed_directory(fed) == read_signed_directory(people.v1)  # nothing changed

    extended = ok(cli, "directory", "extend", "--file", fed, "--until", "2099-06-30").stdout
    assert "expiry " in extended
    assert "-> 2099-06-30 00:00 UTC" in extended
    assert "version 1 -> 2; 2 signatures cleared" in extended
    assert cli.refusal(cli.run("directory", "verify", fed, "--trusted", people.v1)) == (
        "The directory has 0 valid administrator signatures; it needs 2."
    )
    ok(cli, "directory", "sign", "--admin-key", people.key("a2"), "--file", fed)
    ok(cli, "directory", "sign", "--admin-key", people.key("a3"), "--file", fed)
    report = cli.json("directory", "verify", fed, "--trusted", people.v1, "--json")
    assert (report["version"], report["valid_signatures"]) == (2, 2)
    assert report["expires_at"] == 4086460800000  # 2099-06-30 00:00 UTC
    assert report["expires_at"] > old_expiry
    assert [a["agency_id"] for a in report["agencies"]] == ["GB-NCA"]


def test_rotate_the_admins_with_the_old_admins_approval(
    people: People, cli: Cli, tmp_path: Path
) -> None:
    fed = _copy(people, tmp_path)
    ok(cli, "directory", "admins", "add", people.pub("b1"), "--name", "Bea", "--file", fed)
    b2 = people.pub("b2").read_text().strip()
    added = ok(cli, "directory", "admins", "add", b2, "--name", "Bob", "--file", fed).stdout
    assert "must approve it too" in added
    ok(cli, "directory", "admins", "remove", people.pub("a1"), "--file", fed)
    ok(cli, "directory", "admins", "remove", people.admins["a2"].key_id, "--file", fed)
    ok(cli, "directory", "admins", "threshold", "3", "--file", fed)
    too_few = cli.refusal(cli.run("directory", "admins", "remove", people.pub("a3"), "--file", fed))
    assert too_few == (
        "Removing 'Admin a3' would leave 2 administrators for a threshold of 3; "
        "lower the threshold first."
    )
    ok(cli, "directory", "admins", "threshold", "2", "--file", fed)
    ok(cli, "directory", "admins", "remove", people.pub("a3"), "--file", fed)
    rotated = _directory(fed)
    assert (rotated.version, rotated.threshold) == (2, 2)
    assert {a.name for a in rotated.admins} == {"Bea", "Bob"}

    # The new administrators alone: enough for the new set, refused by a node trusting v1.
    ok(cli, "directory", "sign", "--admin-key", people.key("b1"), "--file", fed)
    ok(cli, "directory", "sign", "--admin-key", people.key("b2"), "--file", fed)
    ok(cli, "directory", "verify", fed)
    new_only = cli.refusal(cli.run("directory", "verify", fed, "--trusted", people.v1))
    assert new_only == (
        "The directory has 0 signatures of the administrators trusted until now; they require 2."
    )
    # The old administrators approve it: accepted.
    old_signs = ok(cli, "directory", "sign", "--admin-key", people.key("a1"), "--file", fed)
    assert "is not an administrator of this version" in old_signs.stderr
    ok(cli, "directory", "sign", "--admin-key", people.key("a3"), "--file", fed)
    report = cli.json("directory", "verify", fed, "--trusted", people.v1, "--json")
    assert (report["version"], report["valid_signatures"]) == (2, 2)
    assert {a["name"] for a in report["admins"]} == {"Bea", "Bob"}


@pytest.fixture(scope="module")
def rotated(people: People) -> tuple[Path, Path]:
    """v2 hands over from a1..a3 to b1, b2 (both sets sign); v3 is signed by b1, b2 only."""
    v1 = read_signed_directory(people.v1)
    edit = add_admin(v1, people.admins["b1"])
    edit = add_admin(edit.signed, people.admins["b2"])
    for a in ("a1", "a2", "a3"):
        edit = remove_admin(edit.signed, people.admins[a].key_id)
    v2 = people.sign(edit.signed, "a1", "a3", "b1", "b2")
    d2 = Directory.from_bytes(v2.directory)
    t = now_ms()
    d3 = Directory(d2.federation_id, 3, t, t + 30 * DAY_MS, d2.threshold, d2.admins, d2.agencies)
    v3 = people.sign(SignedDirectory(d3.to_bytes()), "b1", "b2")
    paths = people.root / "v2.json", people.root / "v3.json"
    for path, signed in zip(paths, (v2, v3), strict=True):
        write_directory_file(path, signed)
    return paths


def _node_config(people: People, where: Path) -> Path:
    where.mkdir()
    config = where / "node.toml"
    config.write_text(
        f"""[node]
agency = "GB-NCA"
identity_dir = "{people.root / "GB-NCA"}"
data_dir = "data"

[federation]
listen = "127.0.0.1:7401"

[officer]
listen = "127.0.0.1:7501"
"""
    )
    return config


def test_a_new_node_bootstraps_onto_v3_from_v1_through_v2(
    people: People, rotated: tuple[Path, Path], cli: Cli, tmp_path: Path
) -> None:
    v2, v3 = rotated
    chain = tmp_path / "chain.json"
    built = ok(cli, "directory", "chain", v3, people.v1, v2, "--out", chain).stdout
    assert f"Wrote {chain}: versions 1 to 3 of 'call-to-action'" in built

    config = _node_config(people, tmp_path / "node")
    installed = ok(cli, "node", "directory", "update", chain, "--trusted", people.v1, "-c", config)
    assert [line.split()[3] for line in installed.stdout.splitlines()] == ["1", "2", "3"]
    shown = cli.json("node", "directory", "show", "-c", config, "--json")
    assert (shown["version"], shown["agencies"]) == (3, ["GB-NCA"])
    again = ok(cli, "node", "directory", "update", chain, "-c", config).stdout
    assert again.strip() == "Nothing to install: the node already trusts the newest version given."


def test_a_chain_with_a_gap_is_refused_and_installs_nothing(
    people: People, rotated: tuple[Path, Path], cli: Cli, tmp_path: Path
) -> None:
    _, v3 = rotated
    gap = "Directory version 3 follows version 1: version 2 is missing from the chain."
    assert cli.refusal(cli.run("directory", "chain", people.v1, v3, "--out", tmp_path / "c")) == gap
    assert not (tmp_path / "c").exists()
    config = _node_config(people, tmp_path / "node")
    refused = cli.run("node", "directory", "update", v3, "--trusted", people.v1, "-c", config)
    assert cli.refusal(refused) == gap
    nothing = cli.refusal(cli.run("node", "directory", "show", "-c", config))
    assert nothing.startswith("No federation directory is installed")


def test_trusted_anchors_the_chain_so_an_older_forged_version_is_not_installed(
    people: People, rotated: tuple[Path, Path], cli: Cli, tmp_path: Path
) -> None:
    """A chain file with a version older than the one trusted out of band, forged to list
    an attacker with threshold 1 beside the real administrators' public keys: it must not
    become the anchor the trusted version is checked against (nor be stored and served)."""
    _, v3 = rotated
    d3 = Directory.from_bytes(read_signed_directory(v3).directory)
    attacker = SigningKey.generate()
    t = now_ms()
    forged = Directory(
        d3.federation_id,
        2,
        t,
        t + 30 * DAY_MS,
        1,
        (AdminKey("X", bytes(attacker.verify_key)), *d3.admins),
        d3.agencies,
    )
    chain = tmp_path / "chain.json"
    write_chain_file(chain, [SignedDirectory(forged.to_bytes()).signed_by(attacker)])
    config = _node_config(people, tmp_path / "node")
    installed = ok(cli, "node", "directory", "update", chain, "--trusted", v3, "-c", config)
    assert [line.split()[3] for line in installed.stdout.splitlines()] == ["3"]
    with sqlite3.connect(tmp_path / "node" / "data" / "node.db") as db:
        stored = [v for (v,) in db.execute("SELECT version FROM directories ORDER BY version")]
    assert stored == [3]
