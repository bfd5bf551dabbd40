"""Which members witness a log (exchange/ledger/witnesses.py): a bounded set, the same for
every node and auditor holding the directory, that the log cannot steer and that rotates
every hour; and the published vectors (docs/vectors/witnesses.json)."""

from __future__ import annotations

import hashlib
import json
import struct
from collections import Counter
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from factories import FederationSimulator

from exchange.directory import Directory
from exchange.encoding import CTX_WITNESS_RANK
from exchange.ledger.witnesses import (
    WITNESS_EPOCH_SECONDS,
    assigned_witnesses,
    witness_epoch,
    witness_ranking,
    witness_score,
)

VECTORS = Path(__file__).resolve().parents[3] / "docs" / "vectors" / "witnesses.json"
CODES = "GB FR NG AU US CA NL SE NO DK FI DE IT ES PT IE BE LU AT CH PL CZ GR RO BG HR SI SK HU"
MORE_CODES = "EE LV LT MT CY NZ JP KR"
MEMBERS_37 = tuple(f"{c}-NODE{i}" for i, c in enumerate(f"{CODES} {MORE_CODES}".split()))
EPOCH = witness_epoch(1_796_000_000)


@cache
def directory(federation_id: str, members: tuple[str, ...]) -> Directory:
    federation = FederationSimulator(federation_id=federation_id)
    for agency in members:
        federation.add_agency(agency)
    return federation.directory()


def big() -> Directory:
    return directory("call-to-action", MEMBERS_37)


def test_a_log_asks_k_other_members_always_the_same_ones() -> None:
    d = big()
    chosen = assigned_witnesses(d, "GB-NODE0", EPOCH, 3)
    assert len(chosen) == len(set(chosen)) == 3
    assert "GB-NODE0" not in chosen
    assert set(chosen) <= set(MEMBERS_37)
    # Any node or auditor with the directory computes the same set, whatever the order of
    # the directory's cards.
    shuffled = replace(d, agencies=tuple(reversed(d.agencies)))
    assert assigned_witnesses(shuffled, "GB-NODE0", EPOCH, 3) == chosen
    # The set is the head of the ranking: a larger k only adds witnesses.
    assert assigned_witnesses(d, "GB-NODE0", EPOCH, 5)[:3] == chosen


def test_a_small_federation_asks_every_peer() -> None:
    d = directory("call-to-action", ("GB-NCA", "FR-OCRTEH", "NG-NAPTIP"))
    assert sorted(assigned_witnesses(d, "GB-NCA", EPOCH, 3)) == ["FR-OCRTEH", "NG-NAPTIP"]
    assert sorted(assigned_witnesses(d, "GB-NCA", EPOCH, 10_000)) == ["FR-OCRTEH", "NG-NAPTIP"]
    assert len(assigned_witnesses(d, "GB-NCA", EPOCH, 1)) == 1
    with pytest.raises(ValueError, match="at least one witness"):
        assigned_witnesses(d, "GB-NCA", EPOCH, 0)


def test_the_set_rotates_hourly_and_reaches_every_member() -> None:
    d = big()
    assert witness_epoch(EPOCH * WITNESS_EPOCH_SECONDS) == EPOCH
    assert witness_epoch(EPOCH * WITNESS_EPOCH_SECONDS + 3599) == EPOCH
    assert witness_epoch(EPOCH * WITNESS_EPOCH_SECONDS + 3600) == EPOCH + 1
    sets = [frozenset(assigned_witnesses(d, "GB-NODE0", EPOCH + i, 3)) for i in range(200)]
    assert len(set(sets)) > 150  # hardly one set twice
    seen = Counter(w for s in sets for w in s)
    # Over 200 hours every other member witnessed this log, each about 600 / 36 = 17 times.
    assert set(seen) == set(MEMBERS_37) - {"GB-NODE0"}
    assert max(seen.values()) < 40


def test_the_work_of_witnessing_is_spread_over_the_members() -> None:
    d = big()
    load = Counter(w for log in MEMBERS_37 for w in assigned_witnesses(d, log, EPOCH, 3))
    # 37 logs x 3 witnesses: each member witnesses about 3 logs in an hour, none many.
    assert sum(load.values()) == 111
    assert max(load.values()) <= 9


def test_a_change_of_membership_moves_only_the_member_that_changed() -> None:
    d = big()
    fewer = d.without_agency("KR-NODE36")
    for epoch in range(EPOCH, EPOCH + 50):
        before = assigned_witnesses(d, "GB-NODE0", epoch, 3)
        after = assigned_witnesses(fewer, "GB-NODE0", epoch, 3)
        if "KR-NODE36" in before:
            assert set(before) - {"KR-NODE36"} < set(after)
        else:
            assert after == before


def test_the_directory_version_does_not_reshuffle_the_sets() -> None:
    d = big()
    renewed = replace(d, version=d.version + 1)
    assert assigned_witnesses(renewed, "FR-NODE1", EPOCH, 3) == assigned_witnesses(
        d, "FR-NODE1", EPOCH, 3
    )


def test_the_score_is_the_documented_hash() -> None:
    # Written out from docs/protocol.md 12.6 without exchange.encoding.pae.
    def le64(n: int) -> bytes:
        return struct.pack("<Q", n)

    pieces = [CTX_WITNESS_RANK, b"call-to-action", b"GB-NODE0", le64(EPOCH), b"FR-NODE1"]
    encoded = le64(len(pieces)) + b"".join(le64(len(p)) + p for p in pieces)
    expected = hashlib.sha256(encoded).digest()
    assert witness_score("call-to-action", "GB-NODE0", EPOCH, "FR-NODE1") == expected


# -- the published vectors ---------------------------------------------------------------


def _vectors() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(VECTORS.read_text(encoding="utf-8"))
    return doc


def test_vector_constants() -> None:
    doc = _vectors()
    assert doc["context"] == CTX_WITNESS_RANK.decode()
    assert doc["epoch_seconds"] == WITNESS_EPOCH_SECONDS
    ex = doc["example"]
    score = witness_score(ex["federation_id"], ex["log"], ex["epoch"], ex["witness"])
    assert score.hex() == ex["score"]
    assert hashlib.sha256(bytes.fromhex(ex["pae"])).hexdigest() == ex["score"]


@pytest.mark.parametrize("case", _vectors()["cases"], ids=lambda c: c["name"])
def test_vector_case(case: dict[str, Any]) -> None:
    d = directory(case["federation_id"], tuple(case["members"]))
    epoch = witness_epoch(case["unix_seconds"])
    assert epoch == case["epoch"]
    assert assigned_witnesses(d, case["log"], epoch, case["k"]) == case["witnesses"]
    if "ranking" in case:
        assert witness_ranking(d, case["log"], epoch) == case["ranking"]
        for w, score in case["scores"].items():
            assert witness_score(case["federation_id"], case["log"], epoch, w).hex() == score
