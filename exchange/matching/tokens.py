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
   date of birth too) do not share the token. The one-field kinds of rule 5 are the
   exception: they name the given-name field, because the family field alone on a date
   is what twins share.
3. **Transliteration and typos.** Names are first transliterated and folded
   (`exchange.matching.normalise`); each part then gets a *code*: first letter (any
   vowel as "a") and the remaining consonants with voicing merged (d/t, b/p, g/k/h,
   z/s, v dropped), so "Mohamed"/"Muhammad"/"محمد" share "mhmt" and "Olha"/"Olga"
   share "alk". Typos are absorbed by prefixes and suffixes of the other field's
   part and by MinHash bands of each field's bigram set (a locality-sensitive hash: similar
   fields share a band with a probability that grows steeply with their Jaccard
   similarity).
4. **Dates.** A full date yields two overlapping two-year windows, (y-1, y) and
   (y, y+1), each with the day and the month in their order: a date one year off
   shares one window, an exact date both. A day/month swap shares neither: a year off
   and a swap at once is what namesakes born a year apart look like far more often
   than a person with two date errors (docs/matching.md, "Measured quality"); a swap
   alone meets through the slip key below, which takes day and month unordered. The year
   alone is published with its precision ("f" from a full date, "p" from a partial
   one); a query with a full date seeks only "p" (it meets full dates through the
   windows, and a year match with a full date would only mean a different day), a
   partial query seeks both. This is the one place where records and queries differ,
   so `record_tokens` takes either and knows which it was given. Only the whole
   name, spelled alike after folding, is tied to the year alone: anything weaker is
   shared by namesakes born the same year. A full date also yields a *slip key*: day and
   month (unordered) and the year with its tens digit unknown ("19?7"), what a slip of
   that digit (1987 written 1977 or 1997) leaves intact; only the whole name spelled
   alike is tied to it (`N`). A namesake shares it far less often than a birth year
   (about once in two thousand against once in fifty). The unit digit is not covered:
   namesakes born on one day a few years apart are too common (docs/matching.md,
   "Measured quality").
5. **One whole field on the exact date.** A family name replaced (marriage, an
   alias), mistyped or unknown leaves the given-name field: spelled alike after
   folding, on the exact date (one key: year, day and month in order), it is `G`
   (labelled `Gm` by a querier whose field has `MIN_G_PARTS_ALONE` parts or more: one
   common given name on one day is shared by namesakes too often to be a hit alone,
   `score`); a
   short given-name field (up to `MAX_DELETION_FIELD` letters) also yields its
   one-letter deletions (a SymSpell neighbourhood), each tied to the whole family
   field, so a one-edit typo in the given name with the rest exact still meets (`D`).
   The family name alone is never tied to the date for a person with two fields:
   twins share exactly that. A person known by one field only (a single name, or an
   unknown field) publishes that field as `O`; a query with two fields seeks each of
   its fields as `O`, a query with one field seeks it as `O`, `G` and `H` (the family
   field of two-field records, published for such queries only). These tokens carry
   the exact date, the rarest date key, so their frequencies stay as low as the
   others'. The whole name on any other distant date is deliberately absent: it is
   exactly what a namesake looks like (docs/matching.md, "Measured quality").

Token kinds (the querier keeps the kind of each of its tokens and `score.band`
grades a record by the set of kinds that matched it; kinds are never published):

=========  =====================================================  =================
kind       name evidence                                          dates
=========  =====================================================  =================
S          all folded parts (the spelling), sorted                y
N          all folded parts (the spelling), sorted                t (tens slip)
P          one part code from each field (up to 3 pairs)          w0, w1
E          a code from one field + 4-letter prefix from the other w0, w1
ES         a code from one field + 3- or 4-letter suffix of the   w0, w1
           other (parts of five letters or more, up to 3)
E2         a code from one field + 2-letter prefix from the other w0, w1
           (up to 2)
La<i>      MinHash band i of the given-name field                 w0, w1
Lb<i>      MinHash band i of the family-name field                w0, w1
X          sex + initial of each field                            w0, w1
G, Gm      the whole given-name field, spelled (Gm: the query's   d (exact date)
           field has two parts or more; a label, not a value)
D          the whole family field + a one-letter deletion of a    d
           short given-name field (or the field itself)
O          a person's only name field (sought by every query)     d
H          the whole family field (sought by one-field queries)   d
=========  =====================================================  =================

w0/w1 are the two windows (named by the parity of their first year, so both sides
name a shared window alike), d the exact date, t the slip key of rule 4. At most
`MAX_TOKENS` (48) tokens per record or query; a long name that would yield more loses
its weakest kinds first (`_PRIORITY`). On the synthetic population a record has about
36 real tokens.
The token domain (`TOKEN_DOMAIN`, in `TAG_MATCH_TOKEN`) changes with any rule here.
"""

from __future__ import annotations

import functools
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
# The token rules' version, carried in every token value (`TAG_MATCH_TOKEN`): bumped with
# any change to the tokens, so old and new indexes never mix.
TOKEN_DOMAIN: int = 2

MAX_DELETION_FIELD = 7  # D tokens: given-name fields up to this many letters
MIN_G_PARTS_ALONE = 2  # a query's G token is labelled "Gm" (a hit alone) from this many parts
MAX_PAIRS = 3  # P tokens: cross-field code pairs kept
MAX_EDGES = 4  # E tokens: (code, prefix) edges kept
MAX_SUFFIX_EDGES = 3  # ES tokens: (code, suffix) edges kept
MAX_SHORT_EDGES = 2  # E2 tokens: (code, 2-letter prefix) edges kept
LONG_PREFIX = 4
SHORT_PREFIX = 2
SUFFIX_MIN_PART = 5  # suffix edges only for parts this long
LSH_BANDS = 3  # per field
LSH_ROWS = 2

_VOWELS = frozenset("aeiou")
_VOICING = str.maketrans("zdbgh", "stpkk")
_DOUBLE = re.compile(r"(.)\1+")
_PRIME = (1 << 61) - 1
# Which kinds stay when a long name would exceed MAX_TOKENS (the weakest go first).
_PRIORITY = ("S", "N", "G", "Gm", "O", "H", "P", "E", "ES", "D", "X", "La", "Lb", "E2")


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


@functools.lru_cache(maxsize=65536)
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
        dm = _day_month(dob.month, dob.day)
        for start in (dob.year - 1, dob.year):
            keys.append((f"w{start % 2}", b"%d-%d|" % (start, start + 1) + dm))
        keys.append(("t", _tens_slip(dob.year) + _month_day(dob.month, dob.day)))
    if not seeking:
        keys.append(("y", (b"f%d" if full else b"p%d") % dob.year))
    else:
        keys.append(("y", b"p%d" % dob.year))
        if not full:
            keys.append(("y", b"f%d" % dob.year))
    return keys


def _tens_slip(year: int) -> bytes:
    """The year with its tens digit unknown ("19?7"): what a slip of that digit keeps."""
    return b"%d?%d|" % (year // 100, year % 10)


def _month_day(month: int, day: int) -> bytes:
    """Day and month as an unordered pair (the slip key): a day/month swap keeps it."""
    low, high = sorted((month, day))
    return b"%d/%d" % (low, high)


def _day_month(month: int, day: int) -> bytes:
    """Day and month in that order (windows and the exact date): a swap changes it."""
    return b"%d/%d" % (day, month)


# --- name evidence -------------------------------------------------------------------------


def _cross_pairs(names: _Names) -> list[bytes]:
    """Code pairs with one part from each field, order-free, the first `MAX_PAIRS` by hash."""
    pairs = {
        " ".join(sorted((code(a), code(b)))).encode() for a in names.given for b in names.family
    }
    return _by_hash(pairs)[:MAX_PAIRS]


def _suffix_edges(names: _Names) -> list[bytes]:
    """(code of a part, the last letters of a part of the other field), first `MAX_SUFFIX_EDGES`.

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
    return _by_hash(edges)[:MAX_SUFFIX_EDGES]


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
    windows = [d for d in dates if d[0] in ("w0", "w1")]
    years = [d for d in dates if d[0] == "y"]
    slips = [d for d in dates if d[0] == "t"]
    spelled = " ".join(sorted(phonetic_fold(p) for p in names.parts)).encode()
    keyed: list[tuple[str, bytes, list[tuple[str, bytes]]]] = [("S", spelled, years)]
    keyed += [("N", spelled, slips)]
    keyed += [("P", pair, windows) for pair in _cross_pairs(names)]
    keyed += [("E", edge, windows) for edge in _edges(names, LONG_PREFIX)]
    keyed += [("ES", edge, windows) for edge in _suffix_edges(names)]
    keyed += [("E2", edge, windows) for edge in _edges(names, SHORT_PREFIX)[:MAX_SHORT_EDGES]]
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
    windows = [d for d in _dates(dob, seeking=False) if d[0] in ("w0", "w1")]
    return [_token("X", key, date_kind, date_key) for date_kind, date_key in windows]


def _exact_date(dob: PartialDate | None) -> bytes | None:
    """The full date as one key (year, day, month), or None for a partial date."""
    if dob is None or dob.month is None or dob.day is None:
        return None
    return b"%d|" % dob.year + _day_month(dob.month, dob.day)


def _whole(parts: Iterable[str]) -> bytes:
    """A whole name field spelled alike after folding, its parts sorted."""
    return " ".join(sorted(phonetic_fold(p) for p in parts)).encode()


def _deletions(parts: Sequence[str]) -> list[bytes]:
    """A short field, joined, and its one-letter deletions (a SymSpell neighbourhood).

    Two spellings one edit apart (a letter inserted, deleted, changed, or two
    neighbours swapped) share at least one member.
    """
    joined = "".join(sorted(phonetic_fold(p) for p in parts))
    if len(joined) > MAX_DELETION_FIELD:
        return []
    variants = {joined} | {joined[:i] + joined[i + 1 :] for i in range(len(joined))}
    return sorted(v.encode() for v in variants)


def _one_field_tokens(person: VictimQuery | VictimRecord, seeking: bool) -> list[Token]:
    """Evidence from one whole name field on the exact date (rule 5)."""
    day = _exact_date(person.date_of_birth)
    if day is None:
        return []
    given, family = name_parts(person.given_name), name_parts(person.family_name)
    keyed: list[tuple[str, bytes]] = []
    if given and family:
        keyed.append(("G", _whole(given)))  # "Gm" on the querier's side for two parts or more
        keyed += [("D", _whole(family) + b"/" + v) for v in _deletions(given)]
        if seeking:  # a record that holds one name field only
            keyed += [("O", _whole(given)), ("O", _whole(family))]
        else:  # what a query that knows one name field only seeks
            keyed.append(("H", _whole(family)))
    else:
        single = _whole(given or family)
        keyed.append(("O", single))
        if seeking:  # the one field the query knows may be either of a record's fields
            keyed += [("G", single), ("H", single)]
    tokens = [_token(kind, key, "d", day) for kind, key in keyed]
    if seeking:  # a given-name field of several parts: a rarer combination than one name
        parts = len(given) if given and family else len(given or family)
        if parts >= MIN_G_PARTS_ALONE:
            tokens = [Token("Gm.d", t.value) if t.kind == "G.d" else t for t in tokens]
    return tokens


def record_tokens(person: VictimQuery | VictimRecord) -> list[Token]:
    """The tokens of a record (what a holder publishes) or of a query (what a querier seeks).

    The same function serves both so that they meet; a `VictimRecord` publishes its
    year with its precision and a `VictimQuery` seeks the years it can meet (rule 4),
    and only the one-field kinds differ otherwise (rule 5). A name without any usable
    part, or a person without a date of birth, yields no tokens: every token needs a
    date (rule 1); a person with one name part only needs the full date.
    """
    seeking = isinstance(person, VictimQuery)
    names = _names(person)
    tokens = _one_field_tokens(person, seeking)
    if names.given and names.family:
        dates = _dates(person.date_of_birth, seeking=seeking)
        tokens += _name_tokens(names, dates) + _sex_token(person, names)
    tokens.sort(key=lambda token: _PRIORITY.index(token.kind.partition(".")[0][:2]))
    return tokens[:MAX_TOKENS]
