"""A node that missed a change of directory administrators catches up from a peer: the
peer's GetDirectory answer carries the intermediate versions, and the directory sync
installs them and the newest, each verified against the one before (issue 15)."""

from __future__ import annotations

import functools
from collections.abc import Callable, MutableMapping
from dataclasses import replace
from typing import Any

import pytest
import structlog
from nacl.signing import SigningKey
from sim_peer import GB, NG, PASSPHRASE, MakeNetwork, SimNode, SimPeer, federation_template
from sqlalchemy import select

from exchange._proto.mlax.v1 import federation_pb2 as fpb
from exchange.directory import AdminKey, Directory, SignedDirectory
from exchange.encoding import now_ms
from keys.admin import load_admin
from node.services.trust import MAX_DIRECTORY_CHAIN
from node.storage.models import DirectoryRow, LedgerEntryRow
from node.workers.directory_sync import DirectorySync

NEW_ADMINS = [SigningKey(bytes([i]) * 32) for i in (7, 8, 9)]


@functools.cache
def old_admins() -> tuple[SigningKey, ...]:
    """The template federation's administrators (threshold 2), whose keys sign v1."""
    db = federation_template().databases[GB]
    root = next(p for p in db.parents if (p / "admins").is_dir())
    return tuple(load_admin(root / "admins" / f"admin{i}", PASSPHRASE).signing_key for i in (1, 2))


def _next(signed: bytes, signers: list[SigningKey], **changes: object) -> bytes:
    """The version after `signed`, with `changes`, signed by `signers`."""
    before = Directory.from_bytes(SignedDirectory.from_bytes(signed).directory)
    after = replace(before, version=before.version + 1, issued_at=now_ms(), **changes)  # type: ignore[arg-type]
    out = SignedDirectory(after.to_bytes())
    for key in signers:
        out = out.signed_by(key)
    return out.to_bytes()


def rotate(node: SimNode) -> tuple[bytes, bytes]:
    """Move `node` from v1 to v2, which hands over to new administrators (the old and the
    new sign it), then v3, which only the new ones sign. Returns (v2, v3)."""
    v1 = node.core.directory.signed_bytes()
    admins = tuple(
        AdminKey(f"new-admin-{i}", bytes(k.verify_key)) for i, k in enumerate(NEW_ADMINS)
    )
    v2 = _next(v1, [*old_admins(), *NEW_ADMINS[:2]], admins=admins, threshold=2)
    v3 = _next(v2, NEW_ADMINS[1:])
    node.core.directory.install_chain([v2, v3], "operator")
    return v2, v3


class Tampering(SimPeer):
    """A peer client whose GetDirectory answers `edit` changes on the way."""

    def __init__(self, node: SimNode, edit: Callable[[fpb.GetDirectoryResponse], None]) -> None:
        super().__init__(node.identity, node.core.directory, node.peers.nodes)
        self.edit = edit

    def get_directory(
        self, peer: str, request: fpb.GetDirectoryRequest, timeout: float
    ) -> fpb.GetDirectoryResponse:
        response = super().get_directory(peer, request, timeout)
        self.edit(response)
        return response


def sync(node: SimNode, peers: SimPeer | None = None) -> list[MutableMapping[str, Any]]:
    """One round of `node`'s directory sync; its log events."""
    with structlog.testing.capture_logs() as logs:
        DirectorySync(node.core, peers or node.peers, every=60, timeout=5).sync_once()
    return logs


def versions(node: SimNode) -> list[tuple[int, str]]:
    with node.db.read() as s:
        rows = s.execute(select(DirectoryRow.version, DirectoryRow.source)).all()
    return sorted((r.version, r.source) for r in rows)


def ledgered_installs(node: SimNode) -> int:
    with node.db.read() as s:
        kinds = s.scalars(select(LedgerEntryRow.kind)).all()
    return kinds.count("directory.installed")


@pytest.fixture
def rotated(sim_network: MakeNetwork) -> tuple[SimNode, SimNode, bytes, bytes]:
    """GB at v1; NG at v3, across a change of administrators at v2."""
    net = sim_network()
    v2, v3 = rotate(net[NG])
    return net[GB], net[NG], v2, v3


def test_a_node_at_v1_catches_up_to_v3_across_an_admin_change(
    rotated: tuple[SimNode, SimNode, bytes, bytes],
) -> None:
    gb, ng, v2, _ = rotated
    answer = ng.federation.get_directory(
        fpb.GetDirectoryRequest(have_version=1), gb.peers._context()
    )
    assert (answer.version, list(answer.chain)) == (3, [v2])
    installs = ledgered_installs(gb)

    logs = sync(gb)

    assert gb.core.directory.current().version == 3
    assert {a.name for a in gb.core.directory.current().admins} == {
        "new-admin-0",
        "new-admin-1",
        "new-admin-2",
    }
    assert versions(gb) == [(1, "operator"), (2, NG), (3, NG)]
    assert ledgered_installs(gb) == installs + 2
    [adopted] = [e for e in logs if e["event"] == "directory_adopted"]
    assert (adopted["version"], adopted["versions"], adopted["source"]) == (3, 2, NG)
    # A caller one version behind gets no chain; a current one gets nothing.
    assert not ng.federation.get_directory(
        fpb.GetDirectoryRequest(have_version=2), gb.peers._context()
    ).chain
    assert not sync(gb)


def _gap(r: fpb.GetDirectoryResponse) -> None:
    r.chain[0] = r.signed_directory  # v3 where v2 belongs: the chain skips v2


def _forged(r: fpb.GetDirectoryResponse) -> None:
    signed = SignedDirectory.from_bytes(r.chain[0])
    kid, sig = signed.signatures[0]
    forged = replace(
        signed, signatures=((kid, bytes([sig[0] ^ 1]) + sig[1:]), *signed.signatures[1:])
    )
    r.chain[0] = forged.to_bytes()


def _other_federation(r: fpb.GetDirectoryResponse) -> None:
    v2 = Directory.from_bytes(SignedDirectory.from_bytes(r.chain[0]).directory)
    other = SignedDirectory(replace(v2, federation_id="another-federation").to_bytes())
    for key in [*old_admins(), *NEW_ADMINS[:2]]:
        other = other.signed_by(key)
    r.chain[0] = other.to_bytes()


def _old_style(r: fpb.GetDirectoryResponse) -> None:
    del r.chain[:]  # a server of an earlier release


def _too_long(r: fpb.GetDirectoryResponse) -> None:
    r.chain.extend([r.chain[0]] * MAX_DIRECTORY_CHAIN)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (_gap, "ChainGapError"),
        (_forged, "BadSignatureError"),
        (_other_federation, "FederationMismatchError"),
        (_old_style, "ThresholdError"),
        (_too_long, "OversizedError"),
    ],
)
def test_a_bad_or_missing_chain_changes_nothing(
    rotated: tuple[SimNode, SimNode, bytes, bytes],
    edit: Callable[[fpb.GetDirectoryResponse], None],
    reason: str,
) -> None:
    gb, _, _, _ = rotated
    before, installs = versions(gb), ledgered_installs(gb)

    logs = sync(gb, Tampering(gb, edit))

    assert gb.core.directory.current().version == 1
    assert (versions(gb), ledgered_installs(gb)) == (before, installs)
    [refused] = [e for e in logs if e["event"] == "directory_offer_refused"]
    assert (refused["reason"], refused["source"]) == (reason, NG)
    # The node tries again later, and catches up once the peer answers honestly.
    sync(gb)
    assert gb.core.directory.current().version == 3


def test_a_peer_missing_a_version_sends_no_chain(
    rotated: tuple[SimNode, SimNode, bytes, bytes],
) -> None:
    gb, ng, _, _ = rotated
    with ng.db.write() as s:
        s.delete(s.get(DirectoryRow, 2))
    answer = ng.federation.get_directory(
        fpb.GetDirectoryRequest(have_version=1), gb.peers._context()
    )
    assert (answer.version, list(answer.chain)) == (3, [])
    logs = sync(gb)
    assert gb.core.directory.current().version == 1
    assert [e["reason"] for e in logs if e["event"] == "directory_offer_refused"] == [
        "ThresholdError"
    ]


def test_the_chain_is_bounded_in_versions_and_bytes(sim_network: MakeNetwork) -> None:
    net = sim_network()
    gb, ng = net[GB], net[NG]
    signed = [ng.core.directory.signed_bytes()]
    for _ in range(MAX_DIRECTORY_CHAIN + 2):  # v2 .. v67, signed by the same admins
        signed.append(_next(signed[-1], list(old_admins())))
    ng.core.directory.install_chain(signed[1:], "operator")

    def chain(have: int) -> list[bytes]:
        request = fpb.GetDirectoryRequest(have_version=have)
        return list(ng.federation.get_directory(request, gb.peers._context()).chain)

    assert chain(1) == []  # 65 versions in between: none
    assert chain(2) == signed[2:-1]  # 64: all, v3 .. v66
    fits = len(signed[-1]) + sum(len(v) for v in signed[2:-1])
    ng.core.limits = replace(ng.core.limits, max_envelope_bytes=fits)
    assert chain(2) == signed[2:-1]
    ng.core.limits = replace(ng.core.limits, max_envelope_bytes=fits - 1)
    assert chain(2) == []
