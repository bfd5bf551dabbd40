"""Officer administration over the officer API against real nodes: an admin lists,
issues, demotes and deactivates accounts (SDK and `mlax admin officers`), each change
applies to the officer's next call and is ledgered with the admin's name, as an auditor
reads it through ExportLedger; other roles and bad input are refused and change nothing."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.client import AdminClient, NodeCallError, OfficerClient

if TYPE_CHECKING:
    from conftest import Cli, LiveFederation

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]

FR = "FR-OCRTEH"
ADMIN = "fr-admin-api"
NEW_PASS = "new officer pass"


@pytest.fixture(scope="module")
def admin_cred(live: LiveFederation) -> Path:
    return live.add_officer(FR, ADMIN, role="admin")


@pytest.fixture(scope="module")
def admin(live: LiveFederation, admin_cred: Path) -> Iterator[AdminClient]:
    client = OfficerClient.from_bundle(admin_cred, live.officer_passphrase, timeout=10)
    yield AdminClient(client)
    client.close()


def officer_entries(live: LiveFederation) -> list[dict[str, Any]]:
    """The officer.* entries of FR's ledger, as its auditor exports them."""
    records = live.client(FR, "auditor").export_ledger()
    entries = [json.loads(r.entry.entry) for r in records if r.HasField("entry") and r.entry.entry]
    return [
        {k: v for k, v in e.items() if k != "at"}
        for e in entries
        if e["kind"].startswith("officer.")
    ]


def accounts(admin: AdminClient) -> dict[str, tuple[str, bool]]:
    return {a.name: (a.role, a.active) for a in admin.officers()}


def test_an_admin_issues_demotes_and_deactivates_over_the_api(
    live: LiveFederation, cli: Cli, admin: AdminClient, admin_cred: Path, tmp_path: Path
) -> None:
    listed = accounts(admin)
    assert listed[ADMIN] == ("admin", True)
    assert listed["fr-ocrteh-officer"] == ("officer", True)

    # Issue with the CLI: the bundle is written here (0600, Argon2id) and works at once.
    out = tmp_path / "fr-new.json"
    issued = cli.run(
        "admin",
        "officers",
        "issue",
        "fr-new",
        "--role",
        "supervisor",
        "--out",
        out,
        "--as",
        admin_cred,
        env={"MLAX_NEW_OFFICER_PASSPHRASE": NEW_PASS},
    )
    assert issued.returncode == 0, issued.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_text())["key_file"]["kdf"]["name"] == "argon2id"
    with OfficerClient.from_bundle(out, NEW_PASS.encode(), timeout=10) as new:
        me = new.whoami()
        assert (me.officer, me.role, me.agency) == ("fr-new", "supervisor", FR)

        # Demoted with the SDK: the same channel's next call sees the new role.
        assert admin.set_role("fr-new", "officer").role == "officer"
        assert new.whoami().role == "officer"

        # Deactivated with the CLI: the officer's next call is refused.
        done = cli.run("admin", "officers", "deactivate", "fr-new", "--as", admin_cred, "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["active"] is False
        with pytest.raises(NodeCallError) as refused:
            new.whoami()
        assert refused.value.status == "UNAUTHENTICATED"
        # Its certificate is still the officer CA's: health and reflection answer it, which
        # makes a deactivated account the monitoring credential (operators.md 15).
        health = health_pb2_grpc.HealthStub(new._channel)
        answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING

    # The PEM files standard tools take, the key unencrypted and 0600.
    pem = tmp_path / "pem"
    pem.mkdir()
    exported = cli.run(
        "admin", "export-pem", out, "--out-dir", pem, env={"MLAX_OFFICER_PASSPHRASE": NEW_PASS}
    )
    assert exported.returncode == 0, exported.stderr
    assert stat.S_IMODE((pem / "officer.key").stat().st_mode) == 0o600
    key = serialization.load_pem_private_key((pem / "officer.key").read_bytes(), None)
    cert = x509.load_pem_x509_certificate((pem / "officer.crt").read_bytes())
    assert cert.public_key() == key.public_key()

    rows = {
        r["name"]: r for r in cli.json("admin", "officers", "list", "--as", admin_cred, "--json")
    }
    assert (rows["fr-new"]["role"], rows["fr-new"]["active"]) == ("officer", False)

    entries = officer_entries(live)
    mine = [e for e in entries if e.get("by") == ADMIN]
    assert {"kind": "officer.added", "officer": "fr-new", "role": "supervisor", "by": ADMIN} in mine
    changed = [e for e in mine if e["kind"] == "officer.changed" and e["officer"] == "fr-new"]
    assert changed == [
        {
            "kind": "officer.changed",
            "officer": "fr-new",
            "role": "officer",
            "active": True,
            "by": ADMIN,
        },
        {
            "kind": "officer.changed",
            "officer": "fr-new",
            "role": "officer",
            "active": False,
            "by": ADMIN,
        },
    ]
    listings = [e for e in mine if e["kind"] == "officer.listed"]
    # The SDK's list, then the CLI's (one account more).
    assert [e["count"] for e in listings[-2:]] == [len(listed), len(listed) + 1]


def test_other_roles_and_bad_input_are_refused_and_change_nothing(
    live: LiveFederation, cli: Cli, admin: AdminClient
) -> None:
    before_accounts, before_ledger = accounts(admin), officer_entries(live)
    target = "fr-ocrteh-officer"
    for role in ("officer", "supervisor", "auditor"):
        caller = AdminClient(live.client(FR, role))
        for call, name in [
            (caller.officers, "ListOfficers"),
            (lambda c=caller: c.issue("fr-sneaky", role="admin", passphrase=b"x"), "IssueOfficer"),
            (lambda c=caller: c.set_role(target, "admin"), "SetOfficerRole"),
            (lambda c=caller: c.set_active(target, False), "SetOfficerActive"),
        ]:
            with pytest.raises(NodeCallError) as refused:
                call()
            assert refused.value.status == "PERMISSION_DENIED"
            assert refused.value.message == f"The {role} role may not call {name}."

    for call, status, words in [
        (lambda: admin.set_role("nobody", "officer"), "NOT_FOUND", "No officer 'nobody'"),
        (lambda: admin.set_active("nobody", False), "NOT_FOUND", "No officer 'nobody'"),
        (lambda: admin.set_role(target, "chief"), "INVALID_ARGUMENT", "is not one of"),
        (lambda: admin.set_active(ADMIN, False), "FAILED_PRECONDITION", "their own account"),
        (lambda: admin.issue(target, role="officer", passphrase=b"x"), "ALREADY_EXISTS", target),
        (lambda: admin.issue("fr-x", role="chief", passphrase=b"x"), "INVALID_ARGUMENT", "chief"),
    ]:
        with pytest.raises(NodeCallError) as refused:
            call()
        assert (refused.value.status, words in refused.value.message) == (status, True)

    # The CLI: one sentence, exit 1.
    result = cli.run("admin", "officers", "list", "--as", live.credential(FR))
    assert cli.refusal(result) == "The officer role may not call ListOfficers."

    assert officer_entries(live) == before_ledger
    assert accounts(admin) == before_accounts
