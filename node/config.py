"""Node configuration: one TOML file, defaults for everything but identity and listeners.

Validation fails at start with one sentence naming the bad key, e.g.
`delivery.max_backoff_seconds must be a positive number (got "soon")`.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from exchange.agency import AGENCY_ID_RE
from exchange.errors import ConflictError, Status


class ConfigError(ConflictError):
    """A configuration file that cannot be used as it is."""

    status = Status.FAILED_PRECONDITION


@dataclass(frozen=True)
class NodeSection:
    agency: str
    identity_dir: Path
    data_dir: Path
    # Read the key passphrase from this file instead of MLAX_KEY_PASSPHRASE.
    passphrase_file: Path | None = None
    # On SIGTERM, how long calls in flight may take to finish on each listener (an
    # envelope being stored completes and is receipted; officers' open streams are cut).
    federation_shutdown_grace_seconds: float = 10.0
    officer_shutdown_grace_seconds: float = 2.0


@dataclass(frozen=True)
class ListenerSection:
    listen: str
    # Worker threads; long-lived Watch streams hold one each.
    max_workers: int = 32
    # Past this many concurrent calls new ones get RESOURCE_EXHAUSTED instead of queueing.
    max_concurrent_rpcs: int = 256
    reuse_port: bool = False
    # The address clients dial, when it differs from `listen` (0.0.0.0, NAT, a load
    # balancer). Officer credential bundles carry it.
    advertise: str = ""


@dataclass(frozen=True)
class StorageSection:
    # SQLAlchemy URL; empty means SQLite at <data_dir>/node.db.
    url: str = ""
    pool_size: int = 10
    # Evidence files (encrypted chunk streams); empty means <data_dir>/attachments.
    attachments_dir: Path | None = None
    # Where evidence files live: "filesystem" (attachments_dir: one process, or a volume
    # every replica mounts) or "postgresql" (rows in the database at `url`, which every
    # replica reaches; needs a PostgreSQL url).
    blob_backend: str = "filesystem"


@dataclass(frozen=True)
class DeliverySection:
    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 60.0
    give_up_after_seconds: float = 7 * 24 * 3600.0
    # Envelopes in flight per peer at once.
    max_in_flight_per_peer: int = 16
    # Envelopes one DeliverBatch call carries at most (within the message size limit and
    # DELIVER_BATCH_FLOOR, which every peer accepts).
    max_envelopes_per_batch: int = 16
    poll_interval_seconds: float = 0.5
    rpc_timeout_seconds: float = 10.0
    default_ttl_seconds: int = 30 * 24 * 3600
    # A claimed message whose worker died is retried after this long.
    lease_seconds: float = 30.0
    directory_sync_seconds: float = 30.0


@dataclass(frozen=True)
class LedgerSection:
    # Sign a checkpoint this often when the ledger grew...
    checkpoint_interval_seconds: float = 2.0
    # ...or as soon as this many entries were added since the last one (looked for every
    # second, or every checkpoint_interval_seconds if shorter).
    checkpoint_every_entries: int = 1000
    # Ask peers to cosign the latest checkpoint this often.
    witness_interval_seconds: float = 10.0
    # How many peers are asked: the witnesses exchange/ledger/witnesses.py assigns to this
    # log for the hour, the same set every auditor recomputes (ADR 0011). A figure the
    # federation agrees on, like the legal clocks; the federation's size or more asks
    # every peer. The cost per checkpoint is this many calls, whatever the federation's size.
    witnesses_per_checkpoint: int = 3
    # Refused deliveries ledgered one by one per (peer, reason, status) in each window;
    # past that they are counted into one message.rejected_aggregate entry per window.
    rejections_per_window: int = 30
    rejection_window_seconds: float = 60.0


# Envelopes per DeliverBatch call that every node accepts (docs/protocol.md 11.4).
DELIVER_BATCH_FLOOR = 64


@dataclass(frozen=True)
class LimitsSection:
    max_message_bytes: int = 4 * 1024 * 1024
    max_watchers: int = 16
    # Bounded resources on the listeners (node/rpc/limits.py). Unary calls in progress,
    # and streams open, at once from one peer agency (federation listener) or one officer
    # credential (officer listener); past them a call gets RESOURCE_EXHAUSTED at once.
    # A peer's delivery worker keeps delivery.max_in_flight_per_peer calls in flight.
    max_calls_per_peer: int = 16
    max_streams_per_peer: int = 4
    max_calls_per_officer: int = 8
    max_streams_per_officer: int = 4
    # Streams open at once on each listener, all callers together. Each holds a thread
    # until it ends: each listener's pool has this many threads beside its max_workers.
    max_streams: int = 24
    # A call whose client sent nothing for this long while the node waits for its next
    # message, or a stream whose reader took none of the node's next message for this
    # long, is closed with DEADLINE_EXCEEDED.
    stream_idle_seconds: float = 30.0
    stream_send_timeout_seconds: float = 30.0
    # Envelopes one DeliverBatch call may carry (its bytes stay within max_message_bytes);
    # a larger call is refused whole. Never below DELIVER_BATCH_FLOOR, which every node
    # accepts and no sender exceeds.
    max_deliver_batch: int = DELIVER_BATCH_FLOOR


@dataclass(frozen=True)
class MetricsSection:
    # host:port for the Prometheus endpoint; empty turns it off.
    listen: str = ""


_HOUR = 3600.0
_DAY = 24 * _HOUR
CASE_TYPES = ("mla", "extradition", "victim-id")


@dataclass(frozen=True)
class CasesSection:
    # Legal clocks per urgency, from submission: acknowledgement, then acceptance or
    # refusal. Every node of a federation should use its agreement's figures.
    emergency_ack_seconds: float = 4 * _HOUR
    emergency_response_seconds: float = 24 * _HOUR
    urgent_ack_seconds: float = 2 * _DAY
    urgent_response_seconds: float = 10 * _DAY
    ordinary_ack_seconds: float = 10 * _DAY
    ordinary_response_seconds: float = 60 * _DAY
    # Request types that leave only once a supervisor approves them (four-eyes):
    # comma-separated from mla, extradition, victim-id; "none" for none.
    approval_required: str = "mla,extradition,victim-id"
    # How often overdue clocks are looked for (alerts and metrics).
    clock_check_seconds: float = 30.0

    @property
    def approval_types(self) -> frozenset[str]:
        if self.approval_required.strip() == "none":
            return frozenset()
        return frozenset(t.strip() for t in self.approval_required.split(",") if t.strip())


@dataclass(frozen=True)
class MatchingSection:
    # Blind evaluations (one per query token) each peer may ask for per hour: the limit
    # on how fast a peer can test guesses against this agency's records.
    # Each query costs MAX_TOKENS (48) evaluations, so 48000 is 1000 people an hour:
    # one full batch (max_queries_per_call) per hour per peer.
    evaluations_per_hour: int = 48000
    max_elements_per_call: int = 5000
    # Largest batch an officer may ask in one call, and how long to wait for each peer:
    # the deadline of each evaluation call; the sync before it waits at most half of it.
    max_queries_per_call: int = 1000
    query_timeout_seconds: float = 10.0
    # How often the copies of the peers' published indexes are refreshed, and how long one
    # refresh may take. First copies run in the background, never under a query's
    # deadline: 1,000,000 records (max_records_per_load) take about 2 minutes.
    sync_interval_seconds: float = 60.0
    sync_timeout_seconds: float = 1800.0
    max_records_per_load: int = 1_000_000
    # Whether the whole name on the birth year alone counts as a (possible) hit for this
    # node's queries. Off: precision about 0.985 instead of 0.95, recall about 0.72
    # instead of 0.78 on the hard benchmark (docs/matching.md).
    year_alone_hits: bool = True
    # Worker processes that encode records for a load or a key rotation (tokens, OPRF):
    # 0 is one per CPU, 1 does the work in the node's own process.
    encode_processes: int = 0
    # How long a holder keeps serving its old key generation after a rotation (mlax match
    # rotate-key, or a new token domain at start): queriers copy the new index meanwhile.
    key_overlap_hours: float = 72.0


@dataclass(frozen=True)
class RetentionSection:
    """How long content is kept (docs/operators.md, "Retention and purge"): each period
    counts from a stated event, and 0 (the default, meaning not set) keeps it for good.
    Ledger entries, envelope digests and receipts are never purged."""

    # Message content (notes and replies): from delivery (its receipt) or receipt here.
    message_content_seconds: float = 0.0
    # A case's form and its steps' details: from the case's closing.
    case_content_seconds: float = 0.0
    # Evidence files of a case (their bytes and keys): from the case's closing.
    evidence_seconds: float = 0.0
    # Victim records this agency holds for matching: from their load or last update.
    victim_records_seconds: float = 0.0
    # Uploads never completed: from the last chunk that reached the node.
    abandoned_uploads_seconds: float = 7 * _DAY
    # How often the purge job runs, and how many items one transaction purges.
    purge_interval_seconds: float = _HOUR
    purge_batch: int = 200


@dataclass(frozen=True)
class HealthSection:
    # How often readiness is evaluated (node/health.py), and how long the database write
    # probe may take before the database counts as not writable.
    check_interval_seconds: float = 5.0
    probe_timeout_seconds: float = 10.0
    # Not ready when the disk holding the database or evidence files has less free space
    # than either of these.
    min_free_mib: int = 1024
    min_free_percent: float = 2.0


@dataclass(frozen=True)
class StatisticsSection:
    # Differentially private statistics releases (docs/statistics.md, ADR 0015).
    # The epsilon one release spends, split evenly over its tables.
    epsilon_per_release: float = 1.0
    # What all releases together may spend on one calendar year's cases and queries.
    yearly_budget: float = 4.0
    # A cell whose noisy count is below this is left out (CTDC uses k = 11).
    threshold: int = 11
    # Durations are clamped to this many days before they are summed.
    duration_clamp_days: int = 90


@dataclass(frozen=True)
class LogSection:
    level: str = "info"


@dataclass(frozen=True)
class NodeConfig:
    path: Path
    node: NodeSection
    federation: ListenerSection
    officer: ListenerSection
    storage: StorageSection = field(default_factory=StorageSection)
    delivery: DeliverySection = field(default_factory=DeliverySection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    ledger: LedgerSection = field(default_factory=LedgerSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    log: LogSection = field(default_factory=LogSection)
    cases: CasesSection = field(default_factory=CasesSection)
    matching: MatchingSection = field(default_factory=MatchingSection)
    statistics: StatisticsSection = field(default_factory=StatisticsSection)
    retention: RetentionSection = field(default_factory=RetentionSection)
    health: HealthSection = field(default_factory=HealthSection)

    @property
    def database_url(self) -> str:
        return self.storage.url or f"sqlite:///{self.node.data_dir / 'node.db'}"

    @property
    def attachments_dir(self) -> Path:
        return self.storage.attachments_dir or self.node.data_dir / "attachments"


_KNOWN_SECTIONS = {
    "node": NodeSection,
    "federation": ListenerSection,
    "officer": ListenerSection,
    "storage": StorageSection,
    "delivery": DeliverySection,
    "limits": LimitsSection,
    "ledger": LedgerSection,
    "metrics": MetricsSection,
    "log": LogSection,
    "cases": CasesSection,
    "matching": MatchingSection,
    "statistics": StatisticsSection,
    "retention": RetentionSection,
    "health": HealthSection,
}
_REQUIRED_SECTIONS = ("node", "federation", "officer")
_LOG_LEVELS = {"debug", "info", "warning", "error"}

# Every number has a range: what gRPC, the OS or the database would refuse (gRPC options
# and thread pools take C ints; a wait past threading.TIMEOUT_MAX or a deadline past
# gRPC's clock raises) and what no deployment means. Keys not listed get the defaults
# of `_bounds`.
_C_INT_MAX = 2**31 - 1
_YEAR = 365 * _DAY
_RANGES: dict[str, tuple[float, float]] = {
    "limits.max_message_bytes": (64 * 1024, 1 << 30),
    "limits.max_deliver_batch": (DELIVER_BATCH_FLOOR, 4096),
    "federation.max_workers": (1, 4096),
    "officer.max_workers": (1, 4096),
    "storage.pool_size": (1, 1000),
    "matching.encode_processes": (0, 256),  # 0: one per CPU
    "matching.key_overlap_hours": (0.001, 24 * 366.0),
    "delivery.max_in_flight_per_peer": (1, 10_000),
    "delivery.max_envelopes_per_batch": (1, DELIVER_BATCH_FLOOR),
    "delivery.give_up_after_seconds": (1.0, _YEAR),
    "delivery.rpc_timeout_seconds": (0.001, _HOUR),  # below lease_seconds' ceiling
    "ledger.witnesses_per_checkpoint": (1, 10_000),
    "statistics.epsilon_per_release": (0.01, 10.0),
    "statistics.yearly_budget": (0.01, 100.0),
    "statistics.threshold": (1, 1000),
    "statistics.duration_clamp_days": (1, 3650),
    "node.federation_shutdown_grace_seconds": (0.001, _HOUR),
    "node.officer_shutdown_grace_seconds": (0.001, _HOUR),
    "health.check_interval_seconds": (0.1, _HOUR),
    "health.probe_timeout_seconds": (0.1, _HOUR),
    "health.min_free_percent": (0.001, 50.0),
}


def _bounds(key: str, kind: str) -> tuple[float, float]:
    if key in _RANGES:
        return _RANGES[key]
    if kind == "int":
        return 1, _C_INT_MAX
    if key.startswith("retention.") and key != "retention.purge_interval_seconds":
        return (1, 100_000) if kind == "int" else (1.0, 100 * _YEAR)  # retention periods
    if key.endswith(("_ack_seconds", "_response_seconds")):
        return 0.001, 5 * _YEAR  # legal clocks
    return 0.001, _DAY  # intervals, timeouts, backoffs, leases


def _num(x: float) -> str:
    """86400 rather than 86400.0, 0.001 as it is, 1e+300 rather than 301 digits."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


def _plain_text(key: str, value: str, what: str) -> str:
    """A string without NUL or other control characters (no path or address has one)."""
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(f"{key} must be {what} without control characters (got {value!r}).")
    return value


def _coerce(section: str, name: str, kind: Any, value: Any, base: Path) -> Any:
    key = f"{section}.{name}"
    text = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    if "Path" in text:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key} must be a path (got {value!r}).")
        path = Path(_plain_text(key, value, "a path"))
        return path if path.is_absolute() else (base / path).resolve()
    if text == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false (got {value!r}).")
        return value
    if text == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{key} must be a positive integer (got {value!r}).")
        low, high = _bounds(key, "int")
        if not low <= value <= high:
            raise ConfigError(
                f"{key} must be an integer from {_num(low)} to {_num(high)} (got {value})."
            )
        return value
    if text == "float":
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ConfigError(f"{key} must be a positive number (got {value!r}).")
        low, high = _bounds(key, "float")
        if not low <= value <= high:
            raise ConfigError(
                f"{key} must be a number from {_num(low)} to {_num(high)} (got {_num(value)})."
            )
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string (got {value!r}).")
    return _plain_text(key, value, "text")


def _section(name: str, raw: Any, base: Path) -> Any:
    cls = _KNOWN_SECTIONS[name]
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table.")
    known = {f.name: f for f in fields(cls)}
    for key in raw:
        if key not in known:
            raise ConfigError(f"{name}.{key} is not a known setting.")
    values = {}
    for f in known.values():
        if f.name in raw:
            values[f.name] = _coerce(name, f.name, f.type, raw[f.name], base)
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(f"{name}.{f.name} is required.")
    return cls(**values)


# A host name, an IPv4 address, or an IPv6 address in brackets.
_HOST_RE = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")
_PORT_RE = re.compile(r"[0-9]{1,5}")


def _check_listen(key: str, value: str, allow_empty: bool = False) -> None:
    if allow_empty and not value:
        return
    host, sep, port = value.rpartition(":")
    # ASCII digits only: str.isdigit() also takes "²", which int() then refuses.
    if (
        not sep
        or not _HOST_RE.fullmatch(host)
        or not _PORT_RE.fullmatch(port)
        or not 0 < int(port) < 65536
    ):
        raise ConfigError(f"{key} must be HOST:PORT (got {value!r}).")


def _check_rpc_limits(cfg: NodeConfig) -> None:
    """The [limits] caps on callers must leave threads, and streams, for everyone else."""
    lim = cfg.limits
    for who, listener, calls, streams in (
        ("peer", "federation", lim.max_calls_per_peer, lim.max_streams_per_peer),
        ("officer", "officer", lim.max_calls_per_officer, lim.max_streams_per_officer),
    ):
        workers = getattr(cfg, listener).max_workers
        if calls >= workers:
            raise ConfigError(
                f"limits.max_calls_per_{who} must be below {listener}.max_workers ({workers}), "
                f"or one {who} could hold every thread for calls."
            )
        if streams > lim.max_streams:
            raise ConfigError(
                f"limits.max_streams_per_{who} must not exceed limits.max_streams "
                f"({lim.max_streams})."
            )


def load_config(path: Path) -> NodeConfig:
    """Read and validate a node's TOML configuration."""
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"The configuration file {path} does not exist.") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text.") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory, not a configuration file.") from None
    base = path.resolve().parent
    for name in raw:
        if name not in _KNOWN_SECTIONS:
            raise ConfigError(f"[{name}] is not a known section of the node configuration.")
    for name in _REQUIRED_SECTIONS:
        if name not in raw:
            raise ConfigError(f"The [{name}] section is required.")
    sections = {name: _section(name, raw.get(name, {}), base) for name in _KNOWN_SECTIONS}
    cfg = NodeConfig(path=path.resolve(), **sections)
    if not AGENCY_ID_RE.fullmatch(cfg.node.agency):
        raise ConfigError(f"node.agency {cfg.node.agency!r} is not an agency id like GB-NCA.")
    for key, directory in (
        ("node.identity_dir", cfg.node.identity_dir),
        ("node.data_dir", cfg.node.data_dir),
        ("storage.attachments_dir", cfg.attachments_dir),
    ):
        if directory.exists() and not directory.is_dir():
            raise ConfigError(f"{key} {directory} is a file, not a directory.")
    _check_listen("federation.listen", cfg.federation.listen)
    _check_listen("officer.listen", cfg.officer.listen)
    _check_listen("metrics.listen", cfg.metrics.listen, allow_empty=True)
    _check_listen("officer.advertise", cfg.officer.advertise, allow_empty=True)
    _check_listen("federation.advertise", cfg.federation.advertise, allow_empty=True)
    if cfg.log.level not in _LOG_LEVELS:
        raise ConfigError(f"log.level must be one of {sorted(_LOG_LEVELS)}.")
    if cfg.storage.url and not cfg.storage.url.startswith(("sqlite://", "postgresql+psycopg://")):
        raise ConfigError("storage.url must be a sqlite:// or postgresql+psycopg:// URL.")
    if cfg.storage.blob_backend not in ("filesystem", "postgresql"):
        raise ConfigError('storage.blob_backend must be "filesystem" or "postgresql".')
    if cfg.storage.blob_backend == "postgresql" and not cfg.storage.url.startswith("postgresql"):
        raise ConfigError(
            'storage.blob_backend "postgresql" keeps evidence in the node\'s database: '
            "storage.url must be a postgresql+psycopg:// URL."
        )
    d = cfg.delivery
    if d.default_ttl_seconds > 90 * 24 * 3600:
        raise ConfigError("delivery.default_ttl_seconds must not exceed 90 days (7776000).")
    if d.lease_seconds <= d.rpc_timeout_seconds:
        raise ConfigError(
            "delivery.lease_seconds must exceed delivery.rpc_timeout_seconds, or a slow "
            "delivery could be claimed and sent twice at once."
        )
    _check_rpc_limits(cfg)
    if cfg.limits.max_watchers > cfg.limits.max_streams:
        raise ConfigError(
            "limits.max_watchers must not exceed limits.max_streams: each Watch stream is "
            "one of the officer listener's streams."
        )
    c = cfg.cases
    for urgency in ("emergency", "urgent", "ordinary"):
        if getattr(c, f"{urgency}_ack_seconds") > getattr(c, f"{urgency}_response_seconds"):
            raise ConfigError(
                f"cases.{urgency}_ack_seconds must not exceed cases.{urgency}_response_seconds."
            )
    unknown = c.approval_types - set(CASE_TYPES)
    if unknown:
        raise ConfigError(
            f"cases.approval_required names {sorted(unknown)[0]!r}; use {', '.join(CASE_TYPES)} "
            "or none."
        )
    if cfg.statistics.epsilon_per_release > cfg.statistics.yearly_budget:
        raise ConfigError(
            "statistics.epsilon_per_release must not exceed statistics.yearly_budget."
        )
    if cfg.delivery.initial_backoff_seconds > cfg.delivery.max_backoff_seconds:
        raise ConfigError(
            "delivery.initial_backoff_seconds must not exceed delivery.max_backoff_seconds."
        )
    return cfg
