"""Tests that play the adversaries of victim matching (issue 6, item 5), without nodes.

1. A holder with a dictionary that contains the searched person cannot tell from its
   transcript (the blinded elements it is sent, and its own answers) which entry was
   searched (P2).
2. A querier cannot match an identity without the holder's online help: the published
   index is useless offline, and its values cannot be linked to token strings (P3).
3. Quotas stop enumeration: every guess costs blind evaluations, which the holder
   counts per peer and hour and refuses past its quota.

Each attack is also run against a deliberately broken counterpart (no blinding, a key
everyone knows, no padding) to show that the test would notice.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import cast

import pytest
import rbcl  # type: ignore[import-untyped]

from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange.matching import oprf
from exchange.matching.records import PartialDate, VictimQuery, VictimRecord
from exchange.matching.score import Band, band
from exchange.matching.tokens import MAX_TOKENS, TOKEN_DOMAIN, record_tokens
from node.config import MatchingSection
from node.peers.client import PeerClient
from node.services.cases import CaseDesk
from node.services.matching import (
    PAD_KIND,
    MatchDesk,
    QuotaExceededError,
    pad_tokens,
    pad_values,
    truncate,
)
from node.services.messages import NodeCore
from node.services.rejections import RejectionLedger
from node.storage.db import Database

ONE = (1).to_bytes(oprf.SCALAR_BYTES, "little")  # a blind, or a key, that hides nothing


def person(given: str, family: str, dob: str = "", sex: str = "") -> VictimQuery:
    return VictimQuery(given, family, sex, PartialDate.parse(dob))


def record(query: VictimQuery, ref: str = "R1") -> VictimRecord:
    return VictimRecord(
        ref,
        query.given_name,
        query.family_name,
        query.sex,
        query.date_of_birth,
        query.nationality,
        query.place_of_birth,
    )


# The holder's dictionary: everyone it can think of, the searched person among them.
A = person("Olena", "Shevchenko", "2001-11-03", "F")
B = person("Blessing", "Okonkwo", "1999-04-12", "F")
DICTIONARY: dict[str, VictimQuery] = {
    "A": A,
    "B": B,
    "A-twin": person("Oksana", "Shevchenko", "2001-11-03", "F"),
    "A-namesake": person("Olena", "Shevchenko", "1987-06-21", "F"),
    "B-year": person("Blessing", "Okonkwo", "1999"),
    "C": person("Mohammed", "Al-Rashid", "1995-02-28", "M"),
    "D": person("Nguyễn Thị", "Ánh", "2004-07-09", "F"),
    "E": person("Ana Maria", "Popescu Ionescu", "1990-12-01", "F"),
}
# People whose queries carry very different numbers of tokens.
UNEVEN = [
    A,
    person("Ana Maria Elena", "Popescu Ionescu Radu", "1990-12-01", "F"),  # many parts
    person("Li", "Wang", "1998"),  # short name, year only
    person("Ana", "Popa", "1993-05"),  # year and month
    person("Ivan", "Petrov"),  # no date of birth: no token at all
]


def query_elements(who: VictimQuery, blind: bytes | None = None) -> list[bytes]:
    """What the holder receives for one query: the node's padded tokens, each blinded."""
    return [oprf.blind(t.value, blind)[1] for t in pad_tokens(record_tokens(who))]


# --- 1. the holder with a dictionary ---------------------------------------------------------


def holder_dictionary(key: bytes, people: dict[str, VictimQuery]) -> dict[bytes, set[str]]:
    """Every group element the holder can tie to entries: the hashed token H(t) as a
    querier would blind it, and k*H(t), what it would return for an unblinded token."""
    known: dict[bytes, set[str]] = {}
    for name, who in people.items():
        for t in record_tokens(who) + record_tokens(record(who)):
            point = oprf.hash_to_group(t.value)
            known.setdefault(point, set()).add(name)
            known.setdefault(oprf.blind_evaluate(key, point), set()).add(name)
    return known


def distinguish(
    known: dict[bytes, set[str]], key: bytes, elements: Iterable[bytes]
) -> Counter[str]:
    """The holder's test of a transcript: which entries its elements or its answers name."""
    hits: Counter[str] = Counter()
    for element in elements:
        for candidate in (element, oprf.blind_evaluate(key, element)):
            hits.update(known.get(candidate, ()))
    return hits


def test_the_holder_cannot_tell_which_of_two_candidates_was_searched() -> None:
    key = oprf.generate_key()
    known = holder_dictionary(key, DICTIONARY)
    # Without blinding, the holder's dictionary names the person searched every time.
    for name in ("A", "B"):
        named = distinguish(known, key, query_elements(DICTIONARY[name], ONE))
        assert named.most_common(1)[0][0] == name
    # Blinded, its transcript of a query for A or for B ties to no entry at all.
    rng = random.Random(9497)
    for _ in range(12):
        name = rng.choice(("A", "B"))
        elements = query_elements(DICTIONARY[name])
        assert len(elements) == MAX_TOKENS
        assert distinguish(known, key, elements) == Counter()


def test_two_queries_for_the_same_person_share_no_element() -> None:
    first, second = query_elements(A), query_elements(A)
    assert len(set(first)) == len(first) == MAX_TOKENS
    assert not set(first) & set(second)  # the holder cannot link them either
    # Unblinded they would be the same list, pads aside.
    real = len(record_tokens(A))
    assert query_elements(A, ONE)[:real] == query_elements(A, ONE)[:real]


def _bits(elements: Sequence[bytes]) -> list[float]:
    """Share of the elements with each of the 256 bits set."""
    counts = [0] * 256
    for e in elements:
        value = int.from_bytes(e, "little")
        for i in range(256):
            counts[i] += (value >> i) & 1
    return [c / len(elements) for c in counts]


def _max_z(x: Sequence[bytes], y: Sequence[bytes]) -> float:
    """The largest two-proportion z score over the 256 bit positions of two samples."""
    worst = 0.0
    for p, q in zip(_bits(x), _bits(y), strict=True):
        pooled = (p * len(x) + q * len(y)) / (len(x) + len(y))
        spread = (pooled * (1 - pooled) * (1 / len(x) + 1 / len(y))) ** 0.5
        if spread:
            worst = max(worst, abs(p - q) / spread)
        elif p != q:
            return float("inf")
    return worst


def test_a_transcript_is_distributed_like_random_group_elements() -> None:
    rounds = 30
    for_a = [e for _ in range(rounds) for e in query_elements(A)]
    for_b = [e for _ in range(rounds) for e in query_elements(B)]
    uniform = [bytes(rbcl.crypto_core_ristretto255_random()) for _ in range(len(for_a))]
    assert all(rbcl.crypto_core_ristretto255_is_valid_point(e) for e in for_a + for_b)
    # 256 positions compared: a z score above 5.5 by chance has probability about 1e-5.
    assert _max_z(for_a, uniform) < 5.5
    assert _max_z(for_b, uniform) < 5.5
    assert _max_z(for_a, for_b) < 5.5
    # Unblinded queries for A, repeated, are far from uniform: the test would see it.
    unblinded = [e for _ in range(rounds) for e in query_elements(A, ONE)]
    assert _max_z(unblinded, uniform) > 5.5


def test_every_query_shows_the_holder_the_same_number_of_elements() -> None:
    real = [len(record_tokens(who)) for who in UNEVEN]
    assert len(set(real)) > 3  # the people do differ in what they say
    assert 0 in real
    assert {len(query_elements(who)) for who in UNEVEN} == {MAX_TOKENS}
    # The dummies are ordinary OPRF inputs: random, and never graded as evidence.
    pads = [t for t in pad_tokens(record_tokens(A)) if t.kind == PAD_KIND]
    assert len(pads) == MAX_TOKENS - real[0]
    assert len({t.value for t in pads}) == len(pads)


# --- 2. the querier without the holder's key ------------------------------------------------


def publish(key: bytes, people: dict[str, VictimQuery]) -> dict[int, str]:
    """A holder's published index, value -> record, as the node publishes it (padded)."""
    index: dict[int, str] = {}
    for name, who in people.items():
        outputs = (truncate(oprf.evaluate(key, t.value)) for t in record_tokens(record(who)))
        for value in pad_values(outputs):
            index[value] = name
    return index


def offline_values(token: bytes, keys: Sequence[bytes]) -> set[int]:
    """Everything a querier can compute from a token without the holder's key."""
    point = oprf.hash_to_group(token)
    return {
        truncate(token.ljust(8, b"\0")),
        truncate(hashlib.sha512(token).digest()),
        truncate(hashlib.sha256(token).digest()),
        truncate(hashlib.blake2b(token).digest()),
        truncate(point),
        truncate(oprf.evaluate(ONE, token)),  # the OPRF under the key "1"
        *(truncate(oprf.evaluate(k, token)) for k in keys),  # its own key, other holders'
    }


def test_a_querier_matches_nothing_without_the_holder() -> None:
    holder_key = oprf.generate_key()
    index = publish(holder_key, DICTIONARY)
    querier_keys = [oprf.generate_key() for _ in range(3)]
    tokens = record_tokens(A)
    guessed = set().union(*(offline_values(t.value, querier_keys) for t in tokens))
    assert not guessed & index.keys()
    # Online, with the holder's blind evaluation, the same tokens find A's record.
    found: Counter[str] = Counter()
    kinds: set[str] = set()
    for t in tokens:
        blind, element = oprf.blind(t.value)
        value = truncate(oprf.finalize(t.value, blind, oprf.blind_evaluate(holder_key, element)))
        if value in index:
            found[index[value]] += 1
            if index[value] == "A":
                kinds.add(t.kind)
    assert found.most_common(1)[0][0] == "A"
    assert band(kinds) is Band.STRONG
    # Had the holder published under a key anyone knows, the offline guesses would hit.
    weak = publish(ONE, DICTIONARY)
    assert guessed & weak.keys()
    assert {weak[v] for v in guessed & weak.keys()} >= {"A"}


def test_the_published_values_do_not_link_to_token_strings_or_across_holders() -> None:
    first, second = oprf.generate_key(), oprf.generate_key()
    index, other = publish(first, DICTIONARY), publish(second, DICTIONARY)
    # The same people held by two agencies: nothing in common between the two indexes.
    assert not index.keys() & other.keys()
    # No hash of any token string of any entry appears among the values.
    strings = {t.value for who in DICTIONARY.values() for t in record_tokens(record(who))}
    unkeyed = set().union(*(offline_values(s, ()) for s in strings))
    assert not unkeyed & index.keys()


def test_a_record_publishes_max_tokens_values_whatever_it_holds() -> None:
    key = oprf.generate_key()
    counts = set()
    for who in UNEVEN:
        real = {truncate(oprf.evaluate(key, t.value)) for t in record_tokens(record(who))}
        published = pad_values(real)
        assert real <= set(published)
        assert len(set(published)) == MAX_TOKENS
        counts.add(len(real))
    assert len(counts) > 3  # without padding the index would show how much each says


# --- 3. quotas against enumeration ----------------------------------------------------------


def dates(first: datetime.date, days: int) -> Iterator[datetime.date]:
    for i in range(days):
        yield first + datetime.timedelta(days=i)


def full_name_window_tokens(given: str, family: str, years: int) -> set[bytes]:
    """The fewest tokens that test one full name against every birth date in `years`:
    each date has exactly one code-pair token in an even two-year window ("P.w0")."""
    out = set()
    for day in dates(datetime.date(1990, 1, 1), 365 * years + years // 4):
        dob = PartialDate(day.year, day.month, day.day)
        out |= {t.value for t in record_tokens(VictimQuery(given, family, "", dob))
                if t.kind == "P.w0"}  # fmt: skip
    return out


def test_every_guess_costs_max_tokens_evaluations_at_a_querying_node() -> None:
    # Whatever the officer knows of the person, one guess is MAX_TOKENS evaluations, so
    # a querying node tests at most evaluations_per_hour // MAX_TOKENS people an hour at
    # each peer (the holder's refusal is below).
    costs = {len(pad_tokens(record_tokens(who))) for who in UNEVEN}
    assert costs == {MAX_TOKENS}


def test_the_default_quota_makes_enumerating_a_population_take_months() -> None:
    quota = MatchingSection().evaluations_per_hour
    # A querier that skips the padding and sends one token per guess pays the least: one
    # evaluation per full name and (two-year window, day and month). For one name over
    # ten years of birth dates that is about two thousand evaluations ...
    per_name = len(full_name_window_tokens("Olena", "Shevchenko", 10))
    assert 1000 < per_name < 3000
    # ... so enumerating even a small population, 200 given names by 500 family names
    # over those ten years, costs 10^5 names times that: months of one peer's quota.
    hours = 200 * 500 * per_name / quota
    assert hours > 24 * 90  # more than three months
    # The limit: one known name against every birth date in ten years fits in an hour's
    # quota (the holder's ledger shows it, and only such a hit reveals a birth date).
    assert per_name <= quota


class _Core:
    """What MatchDesk.evaluate uses of a node: its database and its refusal ledger."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.agency = "NG-NAPTIP"
        self.rejections = RejectionLedger(db)

    def seal_to_self(self, body: bytes) -> bytes:
        return body

    def open_from_self(self, data: bytes) -> bytes:
        return data


def test_the_holder_refuses_guesses_past_the_default_quota(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'holder.db'}")
    db.migrate()
    cfg = MatchingSection()
    desk = MatchDesk(cast(NodeCore, _Core(db)), cfg, cast(PeerClient, None), cast(CaseDesk, None))
    try:
        guess = query_elements(A)  # what one guess costs an honest querying node
        per_call = cfg.max_elements_per_call // MAX_TOKENS
        limit = cfg.evaluations_per_hour // MAX_TOKENS
        admitted = 0
        while admitted < limit:
            size = min(per_call, limit - admitted)
            request = mpb.MatchEvaluateRequest(
                query_id=os.urandom(16), blinded_elements=guess * size, token_domain=TOKEN_DOMAIN
            )
            assert len(desk.evaluate("GB-NCA", request).evaluated_elements) == len(guess) * size
            admitted += size
        with pytest.raises(QuotaExceededError) as refused:
            desk.evaluate(
                "GB-NCA",
                mpb.MatchEvaluateRequest(
                    query_id=os.urandom(16), blinded_elements=guess, token_domain=TOKEN_DOMAIN
                ),
            )
        assert refused.value.status == "RESOURCE_EXHAUSTED"
        # Another peer has a quota of its own.
        desk.evaluate("FR-OCRTEH", mpb.MatchEvaluateRequest(query_id=os.urandom(16),
                      blinded_elements=guess, token_domain=TOKEN_DOMAIN))  # fmt: skip
    finally:
        db.close()
