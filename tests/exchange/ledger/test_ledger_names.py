"""Which keys may sign a member's checkpoints: all listed keys for history, only live
ones for witnessing now."""

from __future__ import annotations

from factories import DAY, T0, YEAR, FederationSimulator

from exchange.ledger.names import log_origin, log_verifiers


def test_live_witnessing_ignores_revoked_and_expired_log_keys() -> None:
    federation = FederationSimulator()
    gb = federation.add_agency("GB-NCA")
    revoked = gb.signing_public  # the agency's first key, withdrawn below
    _, rotated_out = gb.add_signing_key(not_before=T0 - YEAR, not_after=T0 - DAY)
    _, current = gb.add_signing_key()
    gb.revoke(revoked.key_id, T0 - DAY, "key compromise")
    directory = federation.directory()

    history = {v.public_key for v in log_verifiers(directory, "GB-NCA")}
    live = {v.public_key for v in log_verifiers(directory, "GB-NCA", at_ms=T0)}

    assert {rotated_out.public_key, current.public_key, revoked.public_key} <= history
    assert current.public_key in live
    assert rotated_out.public_key not in live
    assert revoked.public_key not in live
    assert {v.name for v in log_verifiers(directory, "GB-NCA")} == {
        log_origin(directory.federation_id, "GB-NCA")
    }
    assert log_verifiers(directory, "XX-UNKNOWN", at_ms=T0) == []
