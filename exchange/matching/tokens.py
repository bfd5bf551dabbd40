"""Fuzzy match tokens: what a record and a query must share to be called the same person.

A holder publishes, per victim record, the OPRF values of that record's tokens; a
querier obtains the OPRF values of its query's tokens by blind evaluation and looks
them up. Two people *match* only through tokens they share exactly, so all the
fuzziness lives here, in how a name and a date become tokens. The rules:

1. **Every token is a composite of name evidence and date evidence.** The published
   index reveals how often each (keyed, unreadable) token occurs; a token made of a
   birth year alone, or of a common surname alone, would be shared by thousands of
   records and its frequency would betray what it is. Name evidence is always tied
   to a date (a two-year window with day and month, or a year), and the weakest
   name evidence only to a full date.
2. **Order-insensitive, field-aware.** Officers swap given and family names, so no
   token says which field a part came from; but a token that needs both fields takes
   one part from each, so relatives who share a family name (and twins, who share a
   date of birth too) do not share the token.
3. **Transliteration and typos.** Names are first transliterated and folded
   (`exchange.matching.normalise`); each part then gets a *code*: first letter (any
   vowel as "a") and the remaining consonants with voicing merged (d/t, b/p, g/k/h,
   z/s, v dropped), so "Mohamed"/"Muhammad"/"محمد" share "mhmt" and "Olha"/"Olga"
   share "alk". Typos are absorbed by prefixes and suffixes of the other field's
   part and by MinHash bands of each field's bigram set (a locality-sensitive hash: similar
   fields share a band with a probability that grows steeply with their Jaccard
   similarity).
4. **Dates.** Day and month are taken as an unordered pair, so a day/month swap
   still matches. A full date yields two overlapping two-year windows, (y-1, y) and
   (y, y+1): a date one year off shares one window, an exact date both. The year
   alone is published with its precision ("f" from a full date, "p" from a partial
   one); a query with a full date seeks only "p" (it meets full dates through the
   windows, and a year match with a full date would only mean a different day), a
   partial query seeks both. This is the one place where records and queries differ,
   so `record_tokens` takes either and knows which it was given. Only the whole
   name, spelled alike after folding, is tied to the year alone: anything weaker is
   shared by namesakes born the same year.

Token kinds (the querier keeps the kind of each of its tokens and `score.band`
grades a record by the set of kinds that matched it; kinds are never published):

=========  =====================================================  =================
kind       name evidence                                          dates
=========  =====================================================  =================
F          all part codes, sorted                                 w0, w1
S          all folded parts (the spelling), sorted                y
P          one part code from each field (up to 3 pairs)          w0, w1
E          a code from one field + 4-letter prefix from the other w0, w1
ES         a code from one field + 3- or 4-letter suffix of the   w0, w1
           other (parts of five letters or more)
E2         a code from one field + 2-letter prefix from the other w0, w1
La<i>      MinHash band i of the given-name field                 w0, w1
Lb<i>      MinHash band i of the family-name field                w0, w1
X          sex + initial of each field                            w0, w1
=========  =====================================================  =================

w0/w1 are the two windows (named by the parity of their first year, so both sides
name a shared window alike). At most 47 tokens per record or query (`MAX_TOKENS`):
2 F, 1 S, 6 P, 8 E, 8 ES, 8 E2, 12 L, 2 X.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from exchange.encoding import TAG_MATCH_TOKEN, TAG_MINHASH
from exchange.matching.normalise import (
    PARTICLES,
    joined_variants,
    name_parts,
    phonetic_fold,
    words,
)
from exchange.matching.records import PartialDate, VictimQuery, VictimRecord

MAX_TOKENS = 48

MAX_PAIRS = 3  # P tokens: cross-field code pairs kept
MAX_EDGES = 4  # E and E2 tokens: (code, prefix) edges kept per kind
LONG_PREFIX = 4
SHORT_PREFIX = 2
SUFFIX_MIN_PART = 5  # suffix edges only for parts this long
LSH_BANDS = 3  # per field
LSH_ROWS = 2

_VOWELS = frozenset("aeiou")
_VOICING = str.maketrans("zdbgh", "stpkk")
_DOUBLE = re.compile(r"(.)\1+")
_PRIME = (1 << 61) - 1


@dataclass(frozen=True)
class Token:
    """One match token: `kind` names the evidence (kept by its owner), `value` is the OPRF input."""

    kind: str
    value: bytes


@dataclass(frozen=True)
class _Names:
    """The two name fields as lists of folded parts (with joined forms), and all core parts."""

    given: tuple[str, ...]
    family: tuple[str, ...]
    parts: tuple[str, ...]


def code(part: str) -> str:
    """The comparison code of one name part (see the module docstring, rule 3).

    Parts of three letters or fewer keep their vowels: without them "Yan", "Yun" and
    "Yin" would be one code, and such syllables are whole names in Chinese. A short
    part without any vowel is an abjad spelling ("حسن" -> "hsn") and gets the code of
    its Latin spellings ("Hassan" -> "ksn"). A name with a single consonant ("Layla",
    "Leila", "ليلى") keeps it and a mark for "vowels around it".
    """
    folded = phonetic_fold(part)
    if len(folded) <= 3 and any(c in _VOWELS for c in folded):
        return folded
    head = "a" if folded[0] in _VOWELS else folded[0]
    rest = folded[1:].replace("sh", "S").replace("ch", "C")
    consonants = "".join(c for c in rest if c not in _VOWELS and c != "v")
    merged = _DOUBLE.sub(r"\1", (head + consonants).translate(_VOICING))
    return merged if len(merged) >= 2 else merged + "_"


def _particle_joins(text: str) -> list[str]:
    """A particle written joined to the next word ("Al-Hassan" -> "alhassan")."""
    ws = words(text)
    return [a + b for a, b in itertools.pairwise(ws) if a in PARTICLES]


def _article_splits(parts: Iterable[str]) -> list[str]:
    """An Arabic article written joined in Latin ("Alhassan" -> "hassan")."""
    return [p[2:] for p in parts if p[:2] in ("al", "el") and len(p) >= 6 and p[2] not in "aeiou"]


def _field(text: str) -> list[str]:
    parts = name_parts(text)
    joined = joined_variants(parts) + _particle_joins(text) + _article_splits(parts)
    return parts + [j for j in joined if j not in parts]


def _names(person: VictimQuery | VictimRecord) -> _Names:
    given, family = _field(person.given_name), _field(person.family_name)
    core = name_parts(person.given_name) + name_parts(person.family_name)
    if not given or not family:  # the whole name in one field: first part against the rest
        given, family = core[:1], core[1:]
    return _Names(tuple(given), tuple(family), tuple(core))


# --- dates ---------------------------------------------------------------------------------


def _dates(dob: PartialDate | None, seeking: bool) -> list[tuple[str, bytes]]:
    """(date kind, date key) pairs; see the module docstring, rule 4."""
    if dob is None:
        return []
    keys: list[tuple[str, bytes]] = []
    full = dob.month is not None and dob.day is not None
    if dob.month is not None and dob.day is not None:
        md = _month_day(dob.month, dob.day)
        for start in (dob.year - 1, dob.year):
            keys.append((f"w{start % 2}", b"%d-%d|" % (start, start + 1) + md))
    if not seeking:
        keys.append(("y", (b"f%d" if full else b"p%d") % dob.year))
    else:
        keys.append(("y", b"p%d" % dob.year))
        if not full:
            keys.append(("y", b"f%d" % dob.year))
    return keys


def _month_day(month: int, day: int) -> bytes:
    low, high = sorted((month, day))
    return b"%d/%d" % (low, high)


# --- name evidence -------------------------------------------------------------------------


def _cross_pairs(names: _Names) -> list[bytes]:
    """Code pairs with one part from each field, order-free, the first `MAX_PAIRS` by hash."""
    pairs = {
        " ".join(sorted((code(a), code(b)))).encode() for a in names.given for b in names.family
    }
    return _by_hash(pairs)[:MAX_PAIRS]


def _suffix_edges(names: _Names) -> list[bytes]:
    """(code of a part, the last letters of a part of the other field), first `MAX_EDGES`.

    What a typo near the start of the second part leaves intact, where the prefix
    edges break: three letters of a five-letter part, four of a longer one.
    """
    edges = set()
    for near, far in ((names.given, names.family), (names.family, names.given)):
        for a, b in itertools.product(near, far):
            folded = phonetic_fold(b)
            if len(folded) >= SUFFIX_MIN_PART:
                tail = folded[-min(LONG_PREFIX, len(folded) - 2) :]
                edges.add(f"{code(a)}<{tail}".encode())
    return _by_hash(edges)[:MAX_EDGES]


def _edges(names: _Names, prefix: int) -> list[bytes]:
    """(code of a part, prefix of a part of the other field), the first `MAX_EDGES` by hash.

    One exact part and the beginning of the other field's part: survives a typo or a
    variant spelling in the second part's tail, which the code of that part does not.
    """
    edges = set()
    for near, far in ((names.given, names.family), (names.family, names.given)):
        for a, b in itertools.product(near, far):
            edges.add(f"{code(a)}>{phonetic_fold(b)[:prefix]}".encode())
    return _by_hash(edges)[:MAX_EDGES]


def _by_hash(items: Iterable[bytes]) -> list[bytes]:
    """A deterministic order independent of how the name was written: by SHA-256."""
    return sorted(items, key=lambda item: hashlib.sha256(item).digest())


def _lsh_coefficients() -> list[tuple[int, int]]:
    out = []
    for i in range(LSH_BANDS * LSH_ROWS):
        digest = hashlib.sha256(TAG_MINHASH + b"%d" % i).digest()
        out.append(
            (
                int.from_bytes(digest[:8], "big") % (_PRIME - 1) + 1,
                int.from_bytes(digest[8:16], "big") % _PRIME,
            )
        )
    return out


_LSH = _lsh_coefficients()


def _bigrams(parts: Iterable[str]) -> set[bytes]:
    grams: set[bytes] = set()
    for part in parts:
        padded = f"^{phonetic_fold(part)}$".encode()
        grams.update(padded[i : i + 2] for i in range(len(padded) - 1))
    return grams


def minhash_bands(parts: Sequence[str]) -> list[bytes]:
    """`LSH_BANDS` bands of `LSH_ROWS` MinHash values over the parts' bigram set.

    Fields whose bigram sets have Jaccard similarity J share each band with
    probability J**LSH_ROWS.
    """
    grams = _bigrams(parts)
    if not grams:
        return []
    hashed = [int.from_bytes(hashlib.blake2b(g, digest_size=8).digest(), "big") for g in grams]
    mins = [min((a * h + c) % _PRIME for h in hashed) for a, c in _LSH]
    return [
        b"".join(m.to_bytes(8, "big") for m in mins[i * LSH_ROWS : (i + 1) * LSH_ROWS])
        for i in range(LSH_BANDS)
    ]


# --- tokens --------------------------------------------------------------------------------


def _token(kind: str, name_key: bytes, date_kind: str, date_key: bytes) -> Token:
    """A token: the value binds the domain, the evidence kind, the name key and the date key."""
    label = f"{kind}.{date_kind}"
    value_kind = kind[0] + kind[2:] if kind.startswith("L") else kind  # no field in values
    value = b"|".join(
        (TAG_MATCH_TOKEN, value_kind.encode(), name_key, date_kind.encode(), date_key)
    )
    return Token(label, value)


def _name_tokens(names: _Names, dates: list[tuple[str, bytes]]) -> list[Token]:
    windows = [d for d in dates if d[0] != "y"]
    years = [d for d in dates if d[0] == "y"]
    full = " ".join(sorted(code(p) for p in names.parts)).encode()
    spelled = " ".join(sorted(phonetic_fold(p) for p in names.parts)).encode()
    keyed: list[tuple[str, bytes, list[tuple[str, bytes]]]] = [("F", full, windows)]
    keyed += [("S", spelled, years)]
    keyed += [("P", pair, windows) for pair in _cross_pairs(names)]
    keyed += [("E", edge, windows) for edge in _edges(names, LONG_PREFIX)]
    keyed += [("ES", edge, windows) for edge in _suffix_edges(names)]
    keyed += [("E2", edge, windows) for edge in _edges(names, SHORT_PREFIX)]
    for side, field in (("a", names.given), ("b", names.family)):
        keyed += [(f"L{side}{i}", band, windows) for i, band in enumerate(minhash_bands(field))]
    return [
        _token(kind, key, date_kind, date_key)
        for kind, key, kind_dates in keyed
        for date_kind, date_key in kind_dates
    ]


def _sex_token(person: VictimQuery | VictimRecord, names: _Names) -> list[Token]:
    """Sex and both initials on each two-year window: what separates twins of the other sex."""
    dob = person.date_of_birth
    if not person.sex or dob is None or dob.month is None or dob.day is None:
        return []
    initials = "".join(sorted((code(names.given[0])[0], code(names.family[0])[0])))
    key = (person.sex + initials).encode()
    windows = [d for d in _dates(dob, seeking=False) if d[0] != "y"]
    return [_token("X", key, date_kind, date_key) for date_kind, date_key in windows]


def record_tokens(person: VictimQuery | VictimRecord) -> list[Token]:
    """The tokens of a record (what a holder publishes) or of a query (what a querier seeks).

    The same function serves both so that they meet; a `VictimRecord` publishes its
    year with its precision and a `VictimQuery` seeks the years it can meet (rule 4).
    A name without any usable part, or a person without a date of birth, yields no
    tokens: every token needs a date (rule 1).
    """
    names = _names(person)
    if not names.given or not names.family:
        return []
    dates = _dates(person.date_of_birth, seeking=isinstance(person, VictimQuery))
    tokens = _name_tokens(names, dates) + _sex_token(person, names)
    assert len(tokens) <= MAX_TOKENS, len(tokens)
    return tokens
