"""How well the person a follow-up seeks agrees with the record behind its reference.

A hit's reference names a record by its random handle, and the holder cannot tell which
handle a querier's query hit without learning the query. So a follow-up carries the
person the querier is looking for (docs/protocol-matching.md 8), and the holder's node
grades that person against the record it holds before its supervisor discloses
anything: a reference copied from the published index for a record nobody queried
then names a person who does not match it.

The holder has both people in clear, so no OPRF is needed: the tokens of each side
(`tokens.record_tokens`, the sought person as a query, the held one as a record, exactly
as the matching path computes them) are compared by value, and the kinds that met are
graded by `score.band`, the rule every hit is graded by. Pure.
"""

from __future__ import annotations

from enum import Enum

from exchange.matching.records import VictimQuery, VictimRecord
from exchange.matching.score import Band, band
from exchange.matching.tokens import record_tokens


class Agreement(Enum):
    """The person sought against the record: the hit the querier could have had."""

    MATCHES = "matches"  # a strong band
    WEAK = "weak"  # a possible band
    DOES_NOT_MATCH = "does-not-match"  # no band: no honest query for this person hits it

    @property
    def words(self) -> str:
        """The agreement in a sentence: "does not match"."""
        return self.value.replace("-", " ")


_OF_BAND = {Band.STRONG: Agreement.MATCHES, Band.POSSIBLE: Agreement.WEAK}


def agreement(sought: VictimQuery, record: VictimRecord) -> Agreement:
    """Grade the person a follow-up seeks against a held record, as a query would be.

    The year-alone rule is always on here: whether a querier's node counts the whole
    name on the birth year alone as a hit is its own policy, which the holder cannot
    see, so an honest follow-up on such a hit must not read as a mismatch.
    """
    held = {t.value for t in record_tokens(record)}
    kinds = {t.kind for t in record_tokens(sought) if t.value in held}
    found = band(kinds, year_alone=True)
    return Agreement.DOES_NOT_MATCH if found is None else _OF_BAND[found]


__all__ = ["Agreement", "agreement"]
