"""A node renews its TLS certificate on a live federation while messages flow both ways:
the next pin is published, the node switches to it without a restart, the old pin is
retired, and every message sent before, during and after is delivered. A peer presenting a
certificate the directory no longer lists is refused. An officer credential issued before
the renewal learns the next certificate from its node during the overlap and still reaches
the node after the retirement and a restart (SDK and CLI); a credential that trusts a
certificate the node never had is refused."""

from __future__ import annotations

import datetime
import json
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, cast

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from exchange._proto.mlax.v1 import federation_pb2 as fpb
from exchange._proto.mlax.v1 import federation_pb2_grpc as fgrpc
from exchange.agency import AgencyCard
from exchange.directory import Directory
from keys.admin import load_admin
from keys.directory_edit import add_agencies
from keys.directory_file import read_signed_directory, write_directory_file
from keys.identity import load_identity, read_card
from node.client import NodeCallError, OfficerClient
from node.devtools.federation import DEMO_AGENCIES, NodeProcess, build_federation
from node.peers.channels import PeerChannels

if TYPE_CHECKING:
    from conftest import Cli

    from node.services.trust import TrustedDirectory

GB, FR = "GB-NCA", "FR-OCRTEH"
SYNC_SECONDS = 1.0  # GB presents its next certificate 3 syncs after its directory lists it


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except NodeCallError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout} s")


def wait_delivered(
    clients: dict[str, OfficerClient], sent: list[tuple[str, str, str]], timeout: float = 60
) -> None:
    """Wait until every message of `sent` is delivered."""

    def delivered() -> bool:
        for agency, client in clients.items():
            mine = {m for s, m, _ in sent if s == agency}
            done = {m.message_id for m in client.outbox(1000) if m.state == "delivered"}
            if not mine <= done:
                return False
        return True

    wait_for(delivered, timeout, "some messages were not delivered")


def log_events(node: NodeProcess, event: str) -> list[dict[str, object]]:
    """The node's JSON log lines whose event is `event`."""
    out = []
    for line in node.log_path.read_text(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("event") == event:
            out.append(doc)
    return out


class Traffic:
    """Sends a message GB->FR and FR->GB every `every` seconds, tagged with the phase."""

    def __init__(self, clients: dict[str, OfficerClient], every: float = 0.25) -> None:
        self.clients, self.every = clients, every
        self.phase = "before"
        self.sent: list[tuple[str, str, str]] = []  # (sender agency, message id, phase)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic")

    def _send(self, sender: str, recipient: str) -> None:
        phase, key = self.phase, uuid.uuid4().hex
        # A node restarting refuses submissions for a moment: the same idempotency key
        # retried makes one message, and a refused submission is not a failed delivery.
        while not self._stop.is_set():
            try:
                sent = self.clients[sender].send(
                    recipient, subject=f"tls {phase}", text="renewal", idempotency_key=key
                )
            except NodeCallError:
                time.sleep(0.2)
                continue
            self.sent.append((sender, sent.message_id, phase))
            return

    def _run(self) -> None:
        while not self._stop.is_set():
            self._send(GB, FR)
            self._send(FR, GB)
            self._stop.wait(self.every)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def at(self, phase: str, min_each: int = 2) -> None:
        """Enter `phase` once both directions sent `min_each` messages in the one before."""
        previous = self.phase
        wait_for(
            lambda: all(
                sum(1 for s, _, p in self.sent if s == a and p == previous) >= min_each
                for a in (GB, FR)
            ),
            60,
            f"traffic in phase {previous}",
        )
        self.phase = phase


def _impostor_certificate(genuine: bytes) -> bytes:
    """A self-signed certificate with the subject and names of `genuine`, another key."""
    real = x509.load_pem_x509_certificate(genuine)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    san = real.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(real.subject)
        .issuer_name(real.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(san, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _get_directory(endpoint: str, roots: bytes, key: bytes, cert: bytes) -> None:
    """GetDirectory on `endpoint` trusting only `roots` and presenting (`key`, `cert`)."""
    creds = grpc.ssl_channel_credentials(roots, key, cert)
    options = [("grpc.ssl_target_name_override", "127.0.0.1")]
    with grpc.secure_channel(endpoint, creds, options=options) as channel:
        fgrpc.FederationStub(channel).GetDirectory(fpb.GetDirectoryRequest(), timeout=10)


@pytest.mark.integration
def test_tls_renewal_on_a_live_federation_loses_no_delivery(tmp_path: Path, cli: Cli) -> None:
    passphrase = cli.env["MLAX_KEY_PASSPHRASE"].encode()
    officer_passphrase = cli.env["MLAX_OFFICER_PASSPHRASE"].encode()
    fed = build_federation(
        tmp_path,
        passphrase,
        officer_passphrase,
        agencies=DEMO_AGENCIES[:2],
        delivery={"directory_sync_seconds": SYNC_SECONDS},
    )
    nodes = {a: NodeProcess(fed.nodes[a], cli.env) for a in (GB, FR)}

    def gb_card() -> AgencyCard:
        directory = Directory.from_bytes(read_signed_directory(fed.directory_file).directory)
        card = directory.agency(GB)
        assert card is not None
        return card

    gb_keys = fed.nodes[GB].root / "keys"
    old = load_identity(gb_keys, passphrase)
    fr = load_identity(fed.nodes[FR].root / "keys", passphrase)
    gb_endpoint = old.card.endpoint
    gb_bundle = fed.nodes[GB].credentials["officer"]
    before_bundle = tmp_path / "officer-before-renewal.json"
    shutil.copyfile(gb_bundle, before_bundle)

    def publish() -> None:
        """The admins add GB's card.json and sign the next version 2 of 3; GB installs it."""
        signed = add_agencies(read_signed_directory(fed.directory_file), [read_card(gb_keys)])
        new = signed.signed
        for admin in fed.admin_dirs[:2]:
            new = new.signed_by(load_admin(admin, passphrase).signing_key)
        write_directory_file(fed.directory_file, new)
        run = cli.run(
            "node", "directory", "update", fed.directory_file, "--config", fed.nodes[GB].config
        )
        assert run.returncode == 0, run.stderr

    clients: dict[str, OfficerClient] = {}
    try:
        for proc in nodes.values():
            proc.start(wait=0)
        for proc in nodes.values():
            proc.wait_ready(120)
        clients |= {
            a: OfficerClient.from_bundle(
                fed.nodes[a].credentials["officer"], officer_passphrase, timeout=10
            )
            for a in (GB, FR)
        }
        with Traffic(clients) as traffic:
            # 1. The next certificate, then a graceful restart so GB holds its key.
            nothing = cli.refusal(cli.run("keys", "renew-tls", "--retire", "--dir", gb_keys))
            assert nothing.startswith("No TLS renewal is under way"), nothing
            traffic.at("renewed")
            renewed = cli.run("keys", "renew-tls", "--dir", gb_keys)
            assert renewed.returncode == 0, renewed.stderr
            assert "next_tls_spki_sha256" in renewed.stdout
            card = load_identity(gb_keys, passphrase).card
            new_pin, new_cert = card.next_tls_spki_sha256, card.next_tls_certificate_pem
            assert new_pin.hex() in renewed.stdout
            assert nodes[GB].stop() == 0
            nodes[GB].start()
            nxt = load_identity(gb_keys, passphrase).next_tls_pair()
            assert nxt is not None
            # GB's officer tells its credential about the next certificate (the console
            # and the SDK ask at sign-in and hourly); the credential file learns it.
            both = (old.tls_certificate_pem().decode(), new_cert.decode())
            wait_for(
                lambda: clients[GB].whoami().server_certificates == both,
                30,
                "GB did not name its next certificate to its officer",
            )
            learned = json.loads(gb_bundle.read_text())
            assert learned["server_certificates"] == [new_cert.decode()]
            assert learned["key_file"] == json.loads(before_bundle.read_text())["key_file"]

            # 2. Publish the next pin: FR adopts it from GB, GB switches after 3 syncs.
            traffic.at("published")
            publish()
            assert gb_card().tls_pins == (old.card.tls_spki_sha256, new_pin)
            wait_for(
                lambda: any(
                    e.get("presenting") == "next"
                    for e in log_events(nodes[GB], "tls_certificate_switched")
                ),
                60,
                "GB did not switch to its next certificate",
            )
            traffic.phase = "switched"
            # GB now presents the new certificate as server, with no restart.
            _get_directory(
                gb_endpoint, new_cert, fr.tls_private_key_pem(), fr.tls_certificate_pem()
            )

            # During the overlap, after the switch, both ways deliver (not just retry).
            traffic.at("retired")
            wait_delivered(clients, list(traffic.sent))
            # FR's channel code, with the overlap directory, trusts GB's new certificate.
            overlap = Directory.from_bytes(read_signed_directory(fed.directory_file).directory)
            trust = cast("TrustedDirectory", SimpleNamespace(current=lambda: overlap))
            fr_channels = PeerChannels(fr, trust, 4 * 1024 * 1024)
            try:
                stub = fgrpc.FederationStub(fr_channels.channel(GB))
                stub.GetDirectory(fpb.GetDirectoryRequest(), timeout=10)
            finally:
                fr_channels.close()

            # 3. Retire the old pin: GB's card lists only the new certificate.
            retired = cli.run("keys", "renew-tls", "--retire", "--dir", gb_keys)
            assert retired.returncode == 0, retired.stderr
            publish()
            assert gb_card().tls_pins == (new_pin,)
            wait_for(
                lambda: any(
                    e.get("version") == 3 for e in log_events(nodes[FR], "directory_adopted")
                ),
                30,
                "FR did not adopt the directory that retires GB's old pin",
            )
            traffic.at("after")
            # The restart after the retirement: GB's officer listener presents only the
            # new certificate; the officer's client, created before the renewal, goes on.
            assert nodes[GB].stop() == 0
            nodes[GB].start()
            traffic.at("done")

        # Every message of every phase, both ways, is delivered; none failed.
        wait_delivered(clients, traffic.sent)
        for client in clients.values():
            assert {m.state for m in client.outbox(1000)} == {"delivered"}
        phases = {p for _, _, p in traffic.sent}
        assert phases >= {"before", "renewed", "published", "switched", "retired", "after"}

        # The old certificate, no longer in FR's directory, is refused by FR.
        with pytest.raises(grpc.RpcError) as refused:
            _get_directory(
                fr.card.endpoint,
                fr.tls_certificate_pem(),
                old.tls_private_key_pem(),
                old.tls_certificate_pem(),
            )
        assert refused.value.code() in (
            grpc.StatusCode.UNAVAILABLE,  # refused in the handshake
            grpc.StatusCode.UNAUTHENTICATED,
        )
        # The new one is accepted by FR as a client certificate.
        assert nxt is not None
        _get_directory(fr.card.endpoint, fr.tls_certificate_pem(), *nxt)

        # The credential issued before the renewal, as the SDK and the CLI load it again.
        with OfficerClient.from_bundle(gb_bundle, officer_passphrase, timeout=10) as again:
            assert again.whoami().server_certificates == (new_cert.decode(),)
        inbox = cli.run("inbox", "--as", gb_bundle, "--json")
        assert inbox.returncode == 0, inbox.stderr
        # A copy of it that was never used during the overlap pins only the retired
        # certificate: refused (operators.md, TLS renewal: issue such credentials again).
        with OfficerClient.from_bundle(before_bundle, officer_passphrase, timeout=5) as stale:
            with pytest.raises(NodeCallError) as pinned_old:
                stale.whoami()
            assert pinned_old.value.code == grpc.StatusCode.UNAVAILABLE
        # A credential trusting only a certificate GB never had, for GB's name, is refused
        # in the handshake, and nothing it is told widens its trust.
        forged = json.loads(before_bundle.read_text())
        forged["server_certificate"] = _impostor_certificate(new_cert).decode()
        forged_path = tmp_path / "forged.json"
        forged_path.write_text(json.dumps(forged))
        with OfficerClient.from_bundle(forged_path, officer_passphrase, timeout=5) as refused_by:
            with pytest.raises(NodeCallError) as unreachable:
                refused_by.whoami()
            assert unreachable.value.code == grpc.StatusCode.UNAVAILABLE
        assert "server_certificates" not in json.loads(forged_path.read_text())
    finally:
        for client in clients.values():
            client.close()
        codes = {a: p.stop() for a, p in nodes.items()}
    assert codes == {GB: 0, FR: 0}, {a: nodes[a].log_tail() for a in nodes}
