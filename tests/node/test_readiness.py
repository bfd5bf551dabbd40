"""Readiness causes (node/health.py) and the check that evaluates them
(node/workers/readiness.py), on a real SQLite database of the sim federation."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from grpc_health.v1 import health, health_pb2
from sim_peer import GB, federation_template

from node.config import HealthSection
from node.health import CAUSE_NAMES, READINESS_SERVICE, disk_low, own_key_causes
from node.services.trust import TrustedDirectory
from node.storage.db import Database
from node.workers import readiness
from node.workers.readiness import ReadinessCheck

GIB = 1024**3


def fake_statvfs(total: int, free: int, block: int = 4096) -> os.statvfs_result:
    # (bsize, frsize, blocks, bfree, bavail, files, ffree, favail, flag, namemax)
    return os.statvfs_result(
        (block, block, total // block, free // block, free // block, 0, 0, 0, 0, 255)
    )


@pytest.mark.parametrize(
    ("total", "free", "low"),
    [
        (100 * GIB, 5 * GIB, False),  # 5 %, 5 GiB
        (100 * GIB, GIB + GIB // 2, True),  # 1.5 % of the disk: below 2 %
        (10 * GIB, GIB - 4096, True),  # 9.99 %, but below 1 GiB
        (10 * GIB, 2 * GIB, False),
        (1000 * GIB, 19 * GIB, True),  # 1.9 % of a large disk
    ],
)
def test_disk_is_low_below_either_threshold(total: int, free: int, low: bool) -> None:
    assert disk_low(fake_statvfs(total, free), min_free_mib=1024, min_free_percent=2.0) is low


def test_own_key_causes_follow_the_keys_the_node_holds() -> None:
    ident = federation_template().identities[GB]
    card = ident.card
    signing, encryption = set(ident.signing_keys), set(ident.decryption_keys)
    now = int(time.time() * 1000)
    tls_end = ident.tls_certificate_not_after
    assert own_key_causes(card, signing, encryption, tls_end, now) == set()
    # Keys the card publishes but the node does not hold do not make it ready.
    assert own_key_causes(card, set(), encryption, tls_end, now) == {"signing_key_expired"}
    assert own_key_causes(card, signing, set(), tls_end, now) == {"encryption_key_expired"}
    # Valid until the last held key of either kind ends, and expired from then on.
    ends = [max(k.not_after for k in keys) for keys in (card.signing_keys, card.encryption_keys)]
    first, last = min(ends), max(ends)
    assert own_key_causes(card, signing, encryption, last, first - 1) == set()
    assert own_key_causes(card, signing, encryption, last + 1, last) == {
        "signing_key_expired",
        "encryption_key_expired",
    }
    assert own_key_causes(card, signing, encryption, now - 1, now) == {"tls_certificate_expired"}


@pytest.fixture
def node_db(tmp_path: Path) -> Iterator[tuple[Path, Database]]:
    path = tmp_path / "node.db"
    shutil.copy(federation_template().databases[GB], path)
    db = Database(f"sqlite:///{path}")
    yield path, db
    db.close()


def _check(db: Database, **kw: object) -> tuple[ReadinessCheck, health.HealthServicer]:
    status = health.HealthServicer()
    status.set("", health_pb2.HealthCheckResponse.SERVING)
    check = ReadinessCheck(
        HealthSection(check_interval_seconds=0.1, probe_timeout_seconds=0.3),
        db,
        TrustedDirectory(db),
        federation_template().identities[GB],
        [Path(str(kw.get("path", "/")))],
        (status,),
        statvfs=kw.get("statvfs", lambda _p: fake_statvfs(100 * GIB, 50 * GIB)),  # type: ignore[arg-type]
    )
    return check, status


def _status(servicer: health.HealthServicer, service: str) -> int:
    request = health_pb2.HealthCheckRequest(service=service)
    return int(servicer.Check(request, None).status)


def _gauge(name: str, **labels: str) -> float | None:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels)


SERVING, NOT_SERVING = (
    health_pb2.HealthCheckResponse.SERVING,
    health_pb2.HealthCheckResponse.NOT_SERVING,
)


def test_a_write_lock_held_elsewhere_makes_the_node_not_ready_until_released(
    node_db: tuple[Path, Database], caplog: pytest.LogCaptureFixture
) -> None:
    path, db = node_db
    check, status = _check(db)
    check.tick()
    assert check.causes == frozenset()
    assert _status(status, READINESS_SERVICE) == SERVING
    assert _gauge("mlax_ready") == 1
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # e.g. an open sqlite3 shell in a transaction
    try:
        started = time.monotonic()
        check.tick()
        assert time.monotonic() - started < 2  # bounded by probe_timeout_seconds
        assert check.causes == {"database"}
        assert _status(status, READINESS_SERVICE) == NOT_SERVING
        assert _status(status, "") == SERVING  # liveness is another matter
        assert _gauge("mlax_ready") == 0
        assert _gauge("mlax_readiness_cause", cause="database") == 1
        assert all(
            _gauge("mlax_readiness_cause", cause=c) == 0 for c in CAUSE_NAMES if c != "database"
        )
        check.tick()  # the first probe still waits: no second thread, same answer
        assert check.causes == {"database"}
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    deadline = time.monotonic() + 10
    while check.causes and time.monotonic() < deadline:
        check.tick()
    assert check.causes == frozenset()
    assert _status(status, READINESS_SERVICE) == SERVING
    assert _gauge("mlax_ready") == 1


def test_a_read_only_database_is_not_writable(node_db: tuple[Path, Database]) -> None:
    path, _ = node_db
    ro = Database(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        check = _check(ro)[0]
        causes, error = check.evaluate()
        assert causes == {"database"}
        assert "readonly" in str(error)
    finally:
        ro.close()


def test_disk_cause_from_free_space_and_from_a_file_system_that_fails(
    node_db: tuple[Path, Database], tmp_path: Path
) -> None:
    _, db = node_db
    full, _ = _check(db, statvfs=lambda _p: fake_statvfs(100 * GIB, GIB // 2))
    assert full.evaluate()[0] == {"disk"}

    def broken(_p: Path) -> os.statvfs_result:
        raise OSError(5, "Input/output error")

    assert _check(db, statvfs=broken)[0].evaluate()[0] == {"disk"}
    # A directory the node has not created yet is judged by its parent's file system.
    seen: list[Path] = []

    def spy(p: Path) -> os.statvfs_result:
        seen.append(p)
        return fake_statvfs(100 * GIB, 50 * GIB)

    later = tmp_path / "attachments" / "not-yet"
    assert _check(db, statvfs=spy, path=later)[0].evaluate()[0] == set()
    assert seen == [tmp_path]


def test_an_expired_directory_is_a_cause(
    node_db: tuple[Path, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, db = node_db
    expires = TrustedDirectory(db).current().expires_at
    check, _ = _check(db)
    monkeypatch.setattr(readiness, "now_ms", lambda: expires - 1)
    assert check.evaluate()[0] == set()
    monkeypatch.setattr(readiness, "now_ms", lambda: expires)
    assert check.evaluate()[0] == {"directory_expired"}
