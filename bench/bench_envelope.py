"""Envelope seal+open throughput against the bare primitives it is built from.

For each body size, measures one `seal` plus one `open_envelope` (the whole protocol:
protobuf, PAE, two Ed25519 signatures, HPKE, every check), and as the baseline the
primitives alone on the same sizes: one HPKE encrypt and decrypt, two Ed25519 signs and
two verifies. The ratio is baseline time / envelope time: 1.0 would mean the protocol
costs nothing beyond its cryptography.

Prints one JSON object per line on stdout and a table on stderr.
Run: .venv/bin/python bench/bench_envelope.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from nacl.signing import SigningKey

from exchange.agency import AgencyCard, KeyAlgorithm, PublicKey
from exchange.directory import AdminKey, Directory
from exchange.envelope import (
    DecryptionKey,
    MemorySeenIds,
    MessageType,
    Recipient,
    Sender,
    Suite,
    load_encryption_key,
    open_envelope,
    seal,
)

KIB = 1024
MIB = 1024 * KIB
NOW = 1_767_225_600_000  # a fixed clock: the benchmark must not depend on the date
YEAR_MS = 365 * 24 * 3600 * 1000


@dataclass(frozen=True)
class Case:
    suite: str  # "x25519" or "mlkem768-x25519"
    body_bytes: int


CASES = [
    Case("x25519", 1 * KIB),
    Case("x25519", 64 * KIB),
    Case("x25519", 1 * MIB),
    Case("mlkem768-x25519", 1 * KIB),
]


@dataclass(frozen=True)
class Timing:
    """How long each measured batch should last, and how many batches to take."""

    batch_seconds: float
    repeats: int


FULL = Timing(batch_seconds=0.1, repeats=21)
QUICK = Timing(batch_seconds=0.02, repeats=3)


@dataclass(frozen=True)
class Federation:
    """Two agencies, enough for `seal` and `open_envelope`; keys made in memory."""

    directory: Directory
    sender: Sender
    card: AgencyCard
    recipient: Recipient
    private_key: DecryptionKey
    public_key: PublicKey


def _card(agency_id: str, signing: SigningKey, encryption: PublicKey | None) -> AgencyCard:
    return AgencyCard(
        agency_id=agency_id,
        name=f"{agency_id} benchmark agency",
        country=agency_id[:2],
        endpoint="localhost:7443",
        tls_spki_sha256=os.urandom(32),
        tls_certificate_pem=b"",
        signing_keys=(
            PublicKey(
                KeyAlgorithm.ED25519, bytes(signing.verify_key), NOW - YEAR_MS, NOW + YEAR_MS
            ),
        ),
        encryption_keys=() if encryption is None else (encryption,),
    )


def make_federation(suite: str) -> Federation:
    sender_key = SigningKey.generate()
    receiver_signing = SigningKey.generate()
    x_key = x25519.X25519PrivateKey.generate()
    private: DecryptionKey
    if suite == "x25519":
        private = x_key
        algorithm, raw = KeyAlgorithm.X25519, x_key.public_key().public_bytes_raw()
    else:
        m_key = mlkem.MLKEM768PrivateKey.generate()
        private = hpke.MLKEM768X25519PrivateKey(m_key, x_key)
        algorithm = KeyAlgorithm.MLKEM768_X25519
        raw = m_key.public_key().public_bytes_raw() + x_key.public_key().public_bytes_raw()
    public = PublicKey(algorithm, raw, NOW - YEAR_MS, NOW + YEAR_MS)
    sender_card = _card("FR-BENCH", sender_key, None)
    receiver_card = _card("DE-BENCH", receiver_signing, public)
    admin = SigningKey.generate()
    directory = Directory(
        federation_id="bench",
        version=1,
        issued_at=NOW - YEAR_MS,
        expires_at=NOW + YEAR_MS,
        threshold=1,
        admins=(AdminKey("admin", bytes(admin.verify_key)),),
        agencies=(receiver_card, sender_card),
    )
    return Federation(
        directory=directory,
        sender=Sender("FR-BENCH", sender_key),
        card=receiver_card,
        recipient=Recipient("DE-BENCH", {public.key_id: private}),
        private_key=private,
        public_key=public,
    )


def envelope_op(fed: Federation, body: bytes) -> Callable[[], None]:
    """One seal and one open of `body`, exactly as two nodes would run them."""
    seen = MemorySeenIds()

    def op() -> None:
        data = seal(fed.sender, fed.card, body, MessageType.NOTE, now_ms=NOW).to_bytes()
        opened = open_envelope(data, fed.directory, fed.recipient, seen, now_ms=NOW)
        assert len(opened.body) == len(body)

    return op


def baseline_op(fed: Federation, body: bytes) -> Callable[[], None]:
    """The primitives an envelope uses, on the same sizes: HPKE round trip, 2 signs, 2 verifies."""
    hpke_suite = Suite.for_key(fed.public_key.algorithm).hpke
    public = load_encryption_key(fed.public_key)
    signing = fed.sender.signing_key
    verify = signing.verify_key
    info = b"i" * 64

    def op() -> None:
        inner = signing.sign(body).signature
        ciphertext = hpke_suite.encrypt(body, public, info=info)
        outer = signing.sign(ciphertext).signature
        verify.verify(ciphertext, outer)
        plaintext = hpke_suite.decrypt(ciphertext, fed.private_key, info=info)
        verify.verify(plaintext, inner)

    return op


def _batch_seconds(op: Callable[[], None], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        op()
    return time.perf_counter() - start


def calibrate(op: Callable[[], None], target: float) -> int:
    """Iterations per batch so that one batch lasts about `target` seconds (warms up too)."""
    n = 1
    while True:
        elapsed = _batch_seconds(op, n)
        if elapsed >= target / 4 or n >= 1 << 20:
            return max(1, round(n * target / max(elapsed, 1e-9)))
        n *= 4


def measure(
    envelope: Callable[[], None], baseline: Callable[[], None], timing: Timing
) -> tuple[float, float, int, int]:
    """Median seconds per op of each, batches interleaved so drift hits both alike."""
    n_env = calibrate(envelope, timing.batch_seconds)
    n_base = calibrate(baseline, timing.batch_seconds)
    _batch_seconds(envelope, n_env)  # warm-up at full batch size
    _batch_seconds(baseline, n_base)
    env_times, base_times = [], []
    for _ in range(timing.repeats):
        env_times.append(_batch_seconds(envelope, n_env) / n_env)
        base_times.append(_batch_seconds(baseline, n_base) / n_base)
    return statistics.median(env_times), statistics.median(base_times), n_env, n_base


def run(case: Case, timing: Timing) -> dict[str, object]:
    fed = make_federation(case.suite)
    body = os.urandom(case.body_bytes)
    env_s, base_s, n_env, n_base = measure(envelope_op(fed, body), baseline_op(fed, body), timing)
    return {
        "benchmark": "envelope_seal_open",
        "suite": case.suite,
        "body_bytes": case.body_bytes,
        "unit": "ops/s",
        "measured": round(1 / env_s, 2),
        "baseline": round(1 / base_s, 2),
        "ratio": round(base_s / env_s, 4),
        "measured_us_per_op": round(env_s * 1e6, 1),
        "baseline_us_per_op": round(base_s * 1e6, 1),
        "baseline_what": "HPKE encrypt+decrypt, 2 Ed25519 signs + 2 verifies, same size",
        "iterations_per_batch": {"measured": n_env, "baseline": n_base},
        "repeats": timing.repeats,
        "statistic": "median",
    }


def _size(n: int) -> str:
    return f"{n // MIB} MiB" if n >= MIB else f"{n // KIB} KiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short batches, for smoke tests")
    args = parser.parse_args(argv)
    timing = QUICK if args.quick else FULL
    print(
        f"envelope seal+open vs bare primitives; python {platform.python_version()}, "
        f"{os.cpu_count()} cpus, median of {timing.repeats} batches of ~{timing.batch_seconds}s",
        file=sys.stderr,
    )
    header = f"{'suite':<16} {'body':>8} {'envelope ops/s':>15} {'baseline ops/s':>15} {'ratio':>6}"
    print(header, file=sys.stderr)
    print("-" * len(header), file=sys.stderr)
    for case in CASES:
        result = run(case, timing)
        print(json.dumps(result), flush=True)
        print(
            f"{case.suite:<16} {_size(case.body_bytes):>8} {result['measured']:>15,.1f} "
            f"{result['baseline']:>15,.1f} {result['ratio']:>6.2f}",
            file=sys.stderr,
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
