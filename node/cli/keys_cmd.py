"""`mlax keys`: an agency's identity (create, show, rotate, renew-tls, revoke) and admin keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from exchange.agency import AgencyCard, PublicKey
from exchange.encoding import now_ms
from exchange.errors import KeystoreError
from keys.admin import ADMIN_KEY_FILE, ADMIN_PUBLIC_FILE, create_admin, encode_public_key
from keys.expiry import KeyStatus, expiry_warnings, key_status
from keys.identity import DEFAULT_VALIDITY_DAYS, create_identity, read_card
from keys.identity_file import CARD_FILE, IDENTITY_FILE
from keys.keystore import KDF_PROFILE_ENV, STRONG_KDF, KdfParams, kdf_params_from_env
from keys.rotation import (
    DEFAULT_OVERLAP_DAYS,
    RotationKind,
    renew_tls,
    retire_tls,
    revoke_key,
    rotate_keys,
)
from keys.tls import certificate_not_after_ms
from node.cli.common import (
    JsonOpt,
    cli_errors,
    format_time,
    passphrase,
    print_json,
    print_table,
    say,
    warn,
)
from node.cli.safe_text import shown

app = typer.Typer(no_args_is_help=True)

DirOption = Annotated[
    Path, typer.Option("--dir", help="The agency's identity directory.", file_okay=False)
]

REPUBLISH_HINT = (
    "Peers see this only once the federation lists it: send {card} to the administrators "
    "(`mlax directory add {card} --file DIRECTORY`) and have them sign the new version."
)

_STATUS_STYLE = {
    KeyStatus.ACTIVE: "green",
    KeyStatus.EXPIRED: "dim",
    KeyStatus.REVOKED: "red",
    KeyStatus.NOT_YET_VALID: "yellow",
}


def _kdf() -> KdfParams:
    """The KDF profile for new key files, warning loudly when it is not the strong one."""
    kdf = kdf_params_from_env()
    if kdf != STRONG_KDF:
        warn(f"{KDF_PROFILE_ENV} selects weak key-file protection meant for tests only.")
    return kdf


@app.command("init")
@cli_errors
def init(
    agency: Annotated[str, typer.Option(help="Agency id, CC-NAME (e.g. GB-NCA).")],
    name: Annotated[str, typer.Option(help="The agency's full name.")],
    endpoint: Annotated[str, typer.Option(help="HOST:PORT where peers reach this node.")],
    directory: DirOption,
    country: Annotated[
        str | None, typer.Option(help="ISO 3166 alpha-2 code; default: the agency id's prefix.")
    ] = None,
    validity_days: Annotated[
        int, typer.Option(help="How long the new keys and certificate are valid.", min=1)
    ] = DEFAULT_VALIDITY_DAYS,
) -> None:
    """Create an agency identity: signing, encryption and TLS keys, and its public card."""
    if (directory / IDENTITY_FILE).exists():
        raise KeystoreError(f"{directory} already holds an agency identity; it was not replaced.")
    kdf = _kdf()
    secret = passphrase("New key passphrase", confirm=True)
    card = create_identity(
        directory,
        agency_id=agency,
        name=name,
        endpoint=endpoint,
        passphrase=secret,
        country=country,
        validity_days=validity_days,
        kdf=kdf,
    )
    say(f"Created the identity of {card.agency_id} in {directory}.")
    for key in (*card.signing_keys, *card.encryption_keys):
        say(f"  {key.algorithm.label:<16} {key.key_id}")
    say(f"  TLS pin (SPKI SHA-256) {card.tls_spki_sha256.hex()}")
    say(f"Send {directory / CARD_FILE} to the federation administrators to be listed.")


def _utc(ms: int) -> str:
    return format_time(ms).removesuffix(" UTC")


def _key_json(card: AgencyCard, key: PublicKey, purpose: str, at_ms: int) -> dict[str, Any]:
    revoked = card.revocation(key.key_id)
    doc: dict[str, Any] = {
        "key_id": key.key_id,
        "purpose": purpose,
        "algorithm": key.algorithm.label,
        "not_before": key.not_before,
        "not_after": key.not_after,
        "status": key_status(card, key, at_ms).value,
    }
    if revoked is not None:
        doc["revoked_at"] = revoked.revoked_at
        doc["reason"] = revoked.reason
    return doc


@app.command("show")
@cli_errors
def show(directory: DirOption, as_json: JsonOpt = False) -> None:
    """Show the agency's public card, each key's status, and expiry warnings."""
    card = read_card(directory)
    t = now_ms()
    keys = [(k, "signing") for k in card.signing_keys] + [
        (k, "encryption") for k in card.encryption_keys
    ]
    warnings = expiry_warnings(card, t)
    tls_not_after = certificate_not_after_ms(card.tls_certificate_pem)
    if as_json:
        print_json(
            {
                "agency_id": card.agency_id,
                "name": card.name,
                "country": card.country,
                "endpoint": card.endpoint,
                "tls_spki_sha256": card.tls_spki_sha256.hex(),
                "tls_certificate_not_after": tls_not_after,
                "next_tls_spki_sha256": card.next_tls_spki_sha256.hex(),
                "next_tls_certificate_not_after": (
                    certificate_not_after_ms(card.next_tls_certificate_pem)
                    if card.next_tls_certificate_pem
                    else None
                ),
                "keys": [_key_json(card, k, purpose, t) for k, purpose in keys],
                "warnings": warnings,
            }
        )
        return
    say(f"{card.agency_id}  {card.name} ({card.country})")
    say(f"endpoint  {card.endpoint}")
    say(f"TLS pin   {card.tls_spki_sha256.hex()}  (SPKI SHA-256)")
    say(f"TLS cert  valid until {format_time(tls_not_after)}")
    if card.next_tls_certificate_pem:
        nxt = certificate_not_after_ms(card.next_tls_certificate_pem)
        say(f"next TLS  {card.next_tls_spki_sha256.hex()}  valid until {format_time(nxt)}")
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("key id", no_wrap=True)
    table.add_column("algorithm", no_wrap=True)
    table.add_column("valid from (UTC)")
    table.add_column("valid until (UTC)")
    table.add_column("status")
    for key, _ in keys:
        status = key_status(card, key, t)
        label = status.value
        revoked = card.revocation(key.key_id)
        if revoked is not None:
            label += f" {format_time(revoked.revoked_at)}"
            label += f" ({revoked.reason})" if revoked.reason else ""
        table.add_row(
            shown(key.key_id),
            key.algorithm.label,
            _utc(key.not_before),
            _utc(key.not_after),
            Text(shown(label, markup=False), style=_STATUS_STYLE[status]),
        )
    print_table(table)
    for warning in warnings:
        warn(warning)


@app.command("rotate")
@cli_errors
def rotate(
    directory: DirOption,
    kind: Annotated[
        RotationKind, typer.Option(help="Which keys to replace.", case_sensitive=False)
    ] = RotationKind.ALL,
    overlap_days: Annotated[
        int,
        typer.Option(
            help="Days the old keys stay valid, so traffic never stops while the federation "
            "publishes the new ones.",
            min=0,
        ),
    ] = DEFAULT_OVERLAP_DAYS,
    validity_days: Annotated[
        int, typer.Option(help="How long the new keys are valid.", min=1)
    ] = DEFAULT_VALIDITY_DAYS,
) -> None:
    """Add new keys valid from now; the keys they replace end after the overlap."""
    kdf = _kdf()
    rotation = rotate_keys(
        directory,
        passphrase(),
        kind,
        validity_days=validity_days,
        overlap_days=overlap_days,
        kdf=kdf,
    )
    for key in rotation.added:
        say(
            f"added     {key.algorithm.value:<16} {key.key_id}  "
            f"valid until {format_time(key.not_after)}"
        )
    for old, new in rotation.shortened:
        say(
            f"shortened {old.algorithm.value:<16} {old.key_id}  "
            f"now ends {format_time(new.not_after)} (was {format_time(old.not_after)})"
        )
    say(REPUBLISH_HINT.format(card=directory / CARD_FILE))


@app.command("renew-tls")
@cli_errors
def renew_tls_cmd(
    directory: DirOption,
    retire: Annotated[
        bool,
        typer.Option(
            "--retire",
            help="Finish a renewal: the next certificate becomes the only one and the old "
            "key is deleted (once the directory lists the next pin).",
        ),
    ] = False,
    validity_days: Annotated[
        int, typer.Option(help="How long the next certificate is valid.", min=1)
    ] = DEFAULT_VALIDITY_DAYS,
) -> None:
    """Make the next TLS certificate, published beside the current one; then retire the old."""
    if retire:
        old_pin, card = retire_tls(directory)
        say(f"retired   TLS pin {old_pin.hex()}")
        say(f"current   TLS pin {card.tls_spki_sha256.hex()}")
        say(
            "card change: next_tls_spki_sha256 and next_tls_certificate_pem removed, "
            "tls_spki_sha256 and tls_certificate_pem now the renewed certificate."
        )
    else:
        card = renew_tls(directory, passphrase(), validity_days=validity_days, kdf=_kdf())
        nxt = certificate_not_after_ms(card.next_tls_certificate_pem)
        say(f"current   TLS pin {card.tls_spki_sha256.hex()}")
        say(f"next      TLS pin {card.next_tls_spki_sha256.hex()}  valid until {format_time(nxt)}")
        say("card change: next_tls_spki_sha256 and next_tls_certificate_pem added.")
        say(
            "Restart the node so it loads the next key; it presents the next certificate "
            "by itself once its directory has listed the next pin for 3 directory syncs."
        )
    say(REPUBLISH_HINT.format(card=directory / CARD_FILE))


@app.command("revoke")
@cli_errors
def revoke(
    key_id: Annotated[str, typer.Argument(help="Key id (or a unique prefix of 8+ characters).")],
    directory: DirOption,
    reason: Annotated[str, typer.Option(help="Why, for the record and for peers.")] = "",
) -> None:
    """Revoke a signing or encryption key at once (refused for the last valid one)."""
    key, revocation, _ = revoke_key(directory, key_id, reason)
    say(
        f"Revoked {key.purpose.value} key {key.key_id} ({key.algorithm.value}) "
        f"as of {format_time(revocation.revoked_at)}."
    )
    say(REPUBLISH_HINT.format(card=directory / CARD_FILE))


@app.command("admin-init")
@cli_errors
def admin_init(
    directory: DirOption,
    name: Annotated[str, typer.Option(help="The administrator's name, as the directory shows it.")],
) -> None:
    """Create a federation administrator's signing key and print its public key."""
    if (directory / ADMIN_KEY_FILE).exists():
        raise KeystoreError(f"{directory} already holds an administrator key; it was not replaced.")
    kdf = _kdf()
    admin = create_admin(directory, name, passphrase("New key passphrase", confirm=True), kdf)
    say(f"Created the administrator key of {admin.name} in {directory}.")
    say(f"public key  {encode_public_key(admin.public_key)}")
    say(f"key id      {admin.key_id}")
    say(
        f"The public key is also in {directory / ADMIN_PUBLIC_FILE} "
        "(for `mlax directory init --admin`)."
    )
