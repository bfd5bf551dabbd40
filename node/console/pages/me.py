"""Who am I: the officer, role and agency the node knows this credential as, the peers it
sees, and when the credential's certificates run out.

The node is asked on every visit (the page is where an officer checks that a changed
role or a new directory has arrived), and the answer becomes the console's `me`. An
expiring certificate is flagged a month ahead: renewing one takes an administrator.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from cryptography import x509
from starlette.requests import Request
from starlette.responses import Response

from node.console.app import Console
from node.console.security import Session

# Under this many days left, a certificate's expiry is a warning on the page.
WARN_DAYS = 30


@dataclass(frozen=True)
class Expiry:
    """When one certificate stops being valid, and what the page says about it."""

    label: str
    not_after_ms: int
    warning: str


def expiry(label: str, pem: bytes, now: datetime.datetime) -> Expiry:
    """The expiry of the first certificate in `pem` (a chain starts with its own)."""
    try:
        cert = x509.load_pem_x509_certificates(pem)[0]
    except (ValueError, IndexError):
        return Expiry(label, 0, "cannot be read")
    not_after = cert.not_valid_after_utc
    left = not_after - now
    if left.total_seconds() <= 0:
        warning = "EXPIRED"
    elif left.days == 0:
        warning = "expires in less than a day"
    elif left.days < WARN_DAYS:
        warning = f"expires in {left.days} day{'' if left.days == 1 else 's'}"
    else:
        warning = ""
    return Expiry(label, int(not_after.timestamp() * 1000), warning)


def register(console: Console) -> None:
    @console.page("/me")
    async def me(console: Console, request: Request, session: Session) -> Response:
        console.me = await console.call(console.client.whoami)
        credential = console.client.credential
        now = datetime.datetime.now(datetime.UTC)
        certificates = [
            expiry("Your officer certificate", credential.certificate, now),
            expiry("Your node's TLS certificate", credential.server_certificate, now),
        ]
        return console.render(
            request,
            session,
            "me.html",
            {
                "who": console.me,
                "endpoint": credential.endpoint,
                "certificates": certificates,
                "role_changed": console.me.role != console.role,
            },
        )


__all__ = ["WARN_DAYS", "Expiry", "expiry", "register"]
