"""Key status and expiry warnings, so operators act well before a key or certificate lapses."""

from __future__ import annotations

from enum import Enum

from exchange.agency import AgencyCard, PublicKey
from keys.tls import certificate_not_after_ms

DAY_MS = 24 * 3600 * 1000
DEFAULT_WARNING_DAYS = 30
# What every TLS expiry warning (CLI, node log) tells the operator to do.
TLS_RENEWAL_ADVICE = "renew it with `mlax keys renew-tls` (docs/operators.md, TLS renewal)"


class KeyStatus(Enum):
    ACTIVE = "active"
    EXPIRED = "expired"
    REVOKED = "revoked"
    NOT_YET_VALID = "not yet valid"


def key_status(card: AgencyCard, key: PublicKey, at_ms: int) -> KeyStatus:
    """The status of one of the card's keys at `at_ms`; revocation wins over validity."""
    if card.revocation(key.key_id) is not None:
        return KeyStatus.REVOKED
    if at_ms < key.not_before:
        return KeyStatus.NOT_YET_VALID
    if at_ms >= key.not_after:
        return KeyStatus.EXPIRED
    return KeyStatus.ACTIVE


def _duration(ms: int) -> str:
    hours = ms // (3600 * 1000)
    return f"{hours // 24} days" if hours >= 48 else f"{hours} hours"


def _has_successor(card: AgencyCard, key: PublicKey, at_ms: int) -> bool:
    """Another unrevoked key of the same algorithm that stays valid after `key` ends."""
    return any(
        k.algorithm is key.algorithm
        and k.key_id != key.key_id
        and card.revocation(k.key_id) is None
        and k.not_after > key.not_after
        and k.not_before <= key.not_after
        and k.not_after > at_ms
        for k in (*card.signing_keys, *card.encryption_keys)
    )


def expiry_warnings(
    card: AgencyCard, at_ms: int, within_days: int = DEFAULT_WARNING_DAYS
) -> list[str]:
    """One sentence per active key without a successor, or the TLS certificate, that expires soon.

    A key already replaced by a rotation is not reported: its successor takes over.
    """
    horizon = at_ms + within_days * DAY_MS
    warnings = []
    for key in (*card.signing_keys, *card.encryption_keys):
        if (
            key_status(card, key, at_ms) is KeyStatus.ACTIVE
            and key.not_after <= horizon
            and not _has_successor(card, key, at_ms)
        ):
            warnings.append(
                f"The {key.algorithm.label} key {key.key_id} expires in "
                f"{_duration(key.not_after - at_ms)} "
                "and has no successor: run `mlax keys rotate`."
            )
    # A renewal under way covers the current certificate; then its next one is what ends.
    tls_end = max(certificate_not_after_ms(pem) for pem in card.tls_certificates)
    if tls_end <= horizon:
        state = "has expired" if tls_end <= at_ms else f"expires in {_duration(tls_end - at_ms)}"
        warnings.append(f"The TLS certificate of {card.agency_id} {state}: {TLS_RENEWAL_ADVICE}.")
    return warnings
