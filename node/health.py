"""Readiness: the causes that make a running node unfit to take work, and how each is judged.

Liveness and readiness are separate (docs/operators.md section 15). The process serves
while it runs (liveness, health service `""`); it is *ready* (health service
`mlax.v1.Readiness`, metric `mlax_ready`) only while none of the causes below holds.
The checks here are pure: the caller (node/workers/readiness.py) gathers the facts (a
write probe, `statvfs`, the installed directory, the node's own card) and this module
says which causes hold. The CLI (`mlax node health`) prints the same sentences.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from exchange.agency import AgencyCard, PublicKey
from exchange.errors import MlaxError, Status
from keys.expiry import KeyStatus, key_status

# The health service name that answers readiness on both listeners.
READINESS_SERVICE = "mlax.v1.Readiness"


@dataclass(frozen=True)
class Cause:
    name: str
    # What is wrong, and what the operator does about it: one sentence each.
    meaning: str
    action: str


CAUSES: tuple[Cause, ...] = (
    Cause(
        "database",
        "The node cannot write to its database: a write probe failed or did not finish "
        "within [health] probe_timeout_seconds.",
        "Look for another process holding the database's write lock (an open sqlite3 "
        "shell, a copy or backup tool), a read-only or unreachable database, and the "
        "`readiness_changed` log line's `error`.",
    ),
    Cause(
        "disk",
        "The disk holding the database or the evidence files is almost full (free space "
        "below [health] min_free_mib or min_free_percent).",
        "Free space or grow the volume (`df -h` on node.data_dir and "
        "storage.attachments_dir); the node is ready again by itself once there is room.",
    ),
    Cause(
        "directory_expired",
        "The installed federation directory has expired, so peers' keys can no longer be trusted.",
        "Have the federation administrators sign a version with a later expiry and "
        "install it: `mlax node directory update FILE`.",
    ),
    Cause(
        "signing_key_expired",
        "None of this agency's signing keys that the node holds is valid now (expired, "
        "revoked or not yet valid), so peers refuse what it sends.",
        "Run `mlax keys rotate`, have the new card signed into the directory and install "
        "it (section 7).",
    ),
    Cause(
        "encryption_key_expired",
        "None of this agency's encryption keys that the node holds is valid now, so peers "
        "cannot send it anything.",
        "Run `mlax keys rotate`, have the new card signed into the directory and install "
        "it (section 7).",
    ),
    Cause(
        "tls_certificate_expired",
        "The node's TLS certificate has expired, so peers refuse its connections.",
        "Renew the TLS certificate and publish its pin in the directory (section 7).",
    ),
)
CAUSE_NAMES: tuple[str, ...] = tuple(c.name for c in CAUSES)
BY_NAME: Mapping[str, Cause] = {c.name: c for c in CAUSES}

_MIB = 1024 * 1024


def disk_low(st: os.statvfs_result, min_free_mib: int, min_free_percent: float) -> bool:
    """Whether a file system is almost full: free space for unprivileged writers below
    `min_free_mib` MiB, or below `min_free_percent` of its size."""
    free = st.f_bavail * st.f_frsize
    total = st.f_blocks * st.f_frsize
    return free < min_free_mib * _MIB or free * 100 < min_free_percent * total


def existing(path: Path) -> Path:
    """`path`, or its nearest ancestor that exists (a directory the node creates later
    lives on the same file system as its parent)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _none_valid(card: AgencyCard, keys: Iterable[PublicKey], held: Iterable[str], at: int) -> bool:
    held_ids = set(held)
    return not any(
        k.key_id in held_ids and key_status(card, k, at) is KeyStatus.ACTIVE for k in keys
    )


def own_key_causes(
    card: AgencyCard,
    held_signing: Iterable[str],
    held_encryption: Iterable[str],
    tls_not_after_ms: int,
    at_ms: int,
) -> set[str]:
    """The key causes that hold at `at_ms`: a kind of key none of whose keys, among those
    both published in `card` and held by the node, is active; an expired TLS certificate."""
    causes = set()
    if _none_valid(card, card.signing_keys, held_signing, at_ms):
        causes.add("signing_key_expired")
    if _none_valid(card, card.encryption_keys, held_encryption, at_ms):
        causes.add("encryption_key_expired")
    if tls_not_after_ms <= at_ms:
        causes.add("tls_certificate_expired")
    return causes


# -- reading a running node's readiness (`mlax node health`, the demo) -------------------


class HealthReadError(MlaxError):
    """A node's metrics endpoint that cannot be read, or serves no metrics."""

    status = Status.UNAVAILABLE


def metrics_url(listen: str) -> str:
    """The URL of the metrics endpoint a `[metrics] listen` address serves."""
    host, _, port = listen.rpartition(":")
    # A wildcard bind is reached on loopback.
    host = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    return f"http://{host}:{port}/metrics"


def scrape_readiness(url: str) -> tuple[float | None, dict[str, float], float | None]:
    """mlax_ready, mlax_readiness_cause by cause, and the last check's time, from `url`;
    HealthReadError (one sentence) when the endpoint cannot be read."""
    import urllib.error
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - http from config
            text = resp.read(8 * 1024 * 1024).decode("utf-8", errors="replace")
    except (OSError, urllib.error.URLError) as e:
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or type(e).__name__
        raise HealthReadError(
            f"The node's metrics at {url} cannot be read ({reason}): is the node running?"
        ) from None
    ready: float | None = None
    checked: float | None = None
    causes: dict[str, float] = {}
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError:
        raise HealthReadError(f"{url} does not serve Prometheus metrics.") from None
    for family in families:
        for sample in family.samples:
            if sample.name == "mlax_ready":
                ready = sample.value
            elif sample.name == "mlax_readiness_checked_timestamp_seconds":
                checked = sample.value
            elif sample.name == "mlax_readiness_cause":
                causes[sample.labels.get("cause", "")] = sample.value
    return ready, causes, checked
