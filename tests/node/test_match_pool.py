"""node/services/match_pool.py: the holder's encoding in worker processes gives what the
single-process path gives, in order, holding a bounded number of chunks at a time."""

from __future__ import annotations

from collections.abc import Iterator

from exchange.matching import oprf
from exchange.matching.records import VictimRecord, parse_csv_row
from exchange.matching.tokens import MAX_TOKENS, record_tokens
from node.services.match_pool import VALUE_BYTES, EncodePool, truncate

PEOPLE = [
    ("Blessing", "Okonkwo", "F", "1999-04-12"),
    ("Olena", "Shevchenko", "F", "2001-11-03"),
    ("Mohammed", "Al-Rashid", "M", "1995"),
    ("Nguyen", "Thi Lan", "F", "2003-02"),
]


def _records(n: int) -> list[VictimRecord]:
    out = []
    for i in range(n):
        given, family, sex, dob = PEOPLE[i % len(PEOPLE)]
        row = {"ref": f"R{i}", "given_name": f"{given}{i // len(PEOPLE) or ''}",
               "family_name": family, "sex": sex, "date_of_birth": dob,
               "nationality": "", "place_of_birth": ""}  # fmt: skip
        out.append(parse_csv_row(row, i + 2))
    return out


def _values(packed: bytes) -> set[int]:
    return {
        int.from_bytes(packed[i : i + VALUE_BYTES], "big", signed=True)
        for i in range(0, len(packed), VALUE_BYTES)
    }


def test_two_worker_processes_publish_each_records_own_values_under_each_key() -> None:
    keys = [oprf.generate_key(), oprf.generate_key()]
    records = _records(10)
    chunks = [(i, records[i : i + 3]) for i in range(0, len(records), 3)]
    pool = EncodePool(2, inline_chunks=0)
    try:
        results = list(pool.map(keys, iter(chunks)))
    finally:
        pool.close()
    # In the order of the chunks, one list of values per record, one bytes per key.
    assert [tag for tag, _ in results] == [0, 3, 6, 9]
    flat = [per_key for _, values in results for per_key in values]
    assert len(flat) == len(records)
    for record, per_key in zip(records, flat, strict=True):
        for key, packed in zip(keys, per_key, strict=True):
            real = {truncate(oprf.evaluate(key, t.value)) for t in record_tokens(record)}
            assert len(packed) == MAX_TOKENS * VALUE_BYTES  # padded
            assert real <= _values(packed)  # every real value, under this key
    # Two keys, two unrelated sets of values for the same record.
    assert not (_values(flat[0][0]) & _values(flat[0][1]))


def test_the_pool_takes_no_more_input_than_it_can_hold() -> None:
    key = oprf.generate_key()
    records = _records(2)
    taken: list[int] = []

    def chunks() -> Iterator[tuple[int, list[VictimRecord]]]:
        for i in range(50):
            taken.append(i)
            yield i, records

    pool = EncodePool(2, inline_chunks=0)
    try:
        stream = pool.map([key], chunks())
        next(stream)
        # The first result comes once 2 x 2 chunks are in flight: the other 46 are unread.
        assert len(taken) <= 5
        assert sum(1 for _ in stream) == 49
    finally:
        pool.close()
    assert len(taken) == 50


def test_one_process_runs_in_the_caller_and_matches_the_pool() -> None:
    key = oprf.generate_key()
    (record,) = _records(1)
    inline = EncodePool(1)
    (_, [[alone]]), = list(inline.map([key], [("x", [record])]))  # fmt: skip
    assert inline._executor is None  # no worker was started
    # A small load on a pool that was never started runs in the caller too.
    small = EncodePool(2)
    assert len(list(small.map([key], [(i, [record]) for i in range(4)]))) == 4
    assert small._executor is None
    real = {truncate(oprf.evaluate(key, t.value)) for t in record_tokens(record)}
    assert real <= _values(alone)
