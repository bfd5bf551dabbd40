"""Name normalisation for victim matching: any script in, comparable ASCII parts out.

Two officers write the same person's name differently: in Cyrillic or in one of
several Latin transliterations, with or without diacritics, family name first or
last, with or without a particle ("al-", "de la", "van"), joined ("Xiaoming") or
split ("Xiao Ming"). Matching tokens are only as good as the common form both sides
reduce a name to, so everything here is deterministic and locale-free: the holder
and the querier must compute exactly the same parts from the same name.

Layers, each a pure function:

- `to_ascii`: transliterate any script to ASCII (anyascii, ISC licence), splitting
  CJK syllables into separate words because Chinese, Japanese and Korean names
  carry no spaces and anyascii glues their syllables together.
- `name_parts`: case-fold, drop punctuation and apostrophes, split on spaces and
  hyphens, drop particles that are written or omitted at will.
- `phonetic_fold`: rewrite letter groups that transliteration systems use
  interchangeably ("kh"/"h", "ph"/"f", "dzh"/"j", "ou"/"u", "w"/"v") to one form.
- `skeleton`: the folded name without vowels. Abjads (Arabic, Hebrew) and
  abugidas transliterate without vowels ("محمد" -> "mhmd"), and vowels are where
  Latin spellings of one name differ most ("Mohamed", "Muhammad"), so the
  consonant skeleton is what a native-script record and a Latin query share.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Iterable

from anyascii import anyascii

# Particles written or dropped at will; they carry no identity. Vietnamese "van" and
# "thi" (Văn, Thị) are the most common middle names of men and women there and are as
# often omitted, so they go too.
_PARTICLE_WORDS = (
    "al el ul bin ibn ben bint binti bte ould de del della der den di da das do dos du "
    "la le lo los las y e van von vom zu ter thi mac st"
)
PARTICLES = frozenset(_PARTICLE_WORDS.split())

# Longest first: a later rule must not undo an earlier, longer one.
_FOLD_RULES: tuple[tuple[str, str], ...] = (
    ("shch", "sh"),
    ("dzh", "j"),
    ("xh", "j"),
    ("dz", "j"),
    ("tch", "ch"),
    ("sch", "sh"),
    ("zh", "j"),
    ("dj", "j"),
    ("gj", "j"),
    ("kh", "h"),
    ("gh", "g"),
    ("ph", "f"),
    ("th", "t"),
    ("ck", "k"),
    ("ks", "x"),
    ("cs", "x"),
    ("ts", "c"),
    ("tz", "c"),
    ("ou", "u"),
    ("oo", "u"),
    ("ee", "i"),
    ("ie", "i"),
    ("iy", "i"),
    ("ii", "i"),
    ("yi", "i"),
    ("ey", "ei"),
    ("ay", "ai"),
    ("q", "k"),
    ("w", "v"),
    ("y", "i"),
)

_VOWELS = frozenset("aeiou")
_CJK_RANGES = (
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3400, 0x4DBF),  # CJK Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0x20000, 0x2FA1F),  # CJK Extensions B-F and supplement
)
_NON_LETTER = re.compile(r"[^a-z]+")
# Letters with a caron, acute or cedilla that stand for a digraph elsewhere ("Ševčenko" is
# "Shevchenko", "Hodža" is "Hodzha"); anyascii would drop the mark and the sound. Not
# "đ": it is "dj" in Serbian but "d" in Vietnamese (Đặng, Đỗ), far more common here.
_HACEK = str.maketrans(
    {
        "š": "sh",
        "Š": "Sh",
        "č": "ch",
        "Č": "Ch",
        "ž": "zh",
        "Ž": "Zh",
        "ć": "ch",
        "Ć": "Ch",
        "ç": "ch",
        "Ç": "Ch",
    }
)

# Arabic script writes long vowels with consonant letters (alef, waw, yeh) that anyascii
# renders as consonants ("يوسف" -> "ywsf") or drops; read inside a word they are vowels,
# as Latin spellings write them ("Yusuf"). Word-initial waw and yeh stay consonants
# ("وليد" Walid, "يوسف" Yusuf).
_ARABIC_VOWEL_LETTERS = {
    "\u0627": "a",  # alef
    "\u0623": "a",  # alef with hamza above
    "\u0625": "i",  # alef with hamza below
    "\u0622": "a",  # alef with madda
    "\u0649": "a",  # alef maksura
    "\u0629": "a",  # teh marbuta
    "\u0626": "i",  # yeh with hamza
    "\u0624": "u",  # waw with hamza
    "\u0621": "",  # hamza
    # Ain: no Latin letter. Latin spellings write a vowel where it stands ("Omar" for
    # "عمر", "Ali" for "علي", "Said" for "سعيد"), so it is read as one.
    "\u0639": "a",
}
_ARABIC_WAW, _ARABIC_YEH, _ARABIC_HEH = "\u0648", "\u064a", "\u0647"
_ARABIC_LETTER = re.compile(r"[\u0620-\u064a]")
# The definite article is written joined to the word ("العمراني"); split it so that it
# meets the particle list as Latin "al-" does.
_ARABIC_ARTICLE = re.compile(r"(?<![\u0620-\u064a])\u0627\u0644(?=[\u0620-\u064a]{2})")
# Thai marks a silent consonant (with any vowel sign on it) by a thanthakhat.
_THAI_SILENT = re.compile(r"[\u0e01-\u0e2e][\u0e31-\u0e3a\u0e47-\u0e4b]*\u0e4c")
_DOUBLE = re.compile(r"(.)\1+")


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _CJK_RANGES)


def to_ascii(text: str) -> str:
    """Transliterate `text` to ASCII, one CJK character per word.

    Each CJK character is one syllable of a name, and a name's syllables are what a
    Latin spelling separates or joins at will; transliterating them as separate
    words lets `name_parts` rebuild both forms.
    """
    text = unicodedata.normalize("NFC", text)
    text = text.translate(_HACEK)
    text = _THAI_SILENT.sub("", text)
    text = _arabic_vowels(_ARABIC_ARTICLE.sub("\u0627\u0644 ", text))
    pieces: list[str] = []
    for char in text:
        if char.isascii():
            pieces.append(char)
        elif _is_cjk(char):
            pieces.append(f" {anyascii(char)} ")
        else:
            pieces.append(anyascii(char))
    return "".join(pieces)


def _arabic_vowels(text: str) -> str:
    """Replace Arabic vowel letters inside words by Latin vowels, as `to_ascii` explains."""
    out: list[str] = []
    for i, char in enumerate(text):
        initial = i == 0 or not _ARABIC_LETTER.match(text[i - 1])
        final = i == len(text) - 1 or not _ARABIC_LETTER.match(text[i + 1])
        if char in _ARABIC_VOWEL_LETTERS:
            out.append(_ARABIC_VOWEL_LETTERS[char])
        elif char == _ARABIC_WAW and not initial:
            out.append("u")
        elif char == _ARABIC_YEH and not initial:
            out.append("i")
        elif char == _ARABIC_HEH and final and not initial:
            out.append("ah")  # "الله" in "عبدالله": Latin writes "-allah"
        else:
            out.append(char)
    return "".join(out)


def words(text: str) -> list[str]:
    """Lower-case ASCII words of `text`, apostrophes dropped and other punctuation splitting.

    Apostrophes and the ayn/hamza signs transliterated as quotes mark sounds, not word
    breaks ("O'Brien", "Mel'nik", "ʿAli"), so they vanish instead of splitting a word.
    """
    ascii_text = to_ascii(text).lower()
    ascii_text = re.sub(r"['`\u2019\u02bc\u02bf\u02be]", "", ascii_text)
    return [w for w in _NON_LETTER.split(ascii_text) if w]


def name_parts(text: str) -> list[str]:
    """The identity-bearing parts of one name field, in written order.

    Particles go (`PARTICLES`), and so do single letters (initials carry too little
    to match on and are as often left out). A field made only of particles keeps
    them: "Da" alone is a name.
    """
    parts = words(text)
    kept = [p for p in parts if p not in PARTICLES and len(p) > 1]
    if kept:
        return kept
    return [p for p in parts if len(p) > 1]


@functools.lru_cache(maxsize=65536)  # names repeat: a holder's million records share few parts
def phonetic_fold(part: str) -> str:
    """Rewrite transliteration-variant letter groups of one lower-case part to one form.

    "Oleksandr"/"Olexandr", "Khalid"/"Halid", "Youssef"/"Yusef", "Tkatchenko"/"Tkachenko"
    and "Dzhafarov"/"Jafarov" each fold to one spelling; doubled letters collapse.
    """
    folded = part
    for old, new in _FOLD_RULES:
        folded = folded.replace(old, new)
    folded = _DOUBLE.sub(r"\1", folded)
    # A final h after a vowel is silent in most transliterations ("Fatimah", "Obih").
    if len(folded) > 3 and folded.endswith("h") and folded[-2] in _VOWELS:
        folded = folded[:-1]
    return folded


def skeleton(part: str) -> str:
    """The consonants of the folded part, doubled letters collapsed; the part if all vowels.

    What a name written in an abjad (vowels unwritten) and its Latin spellings share.
    """
    folded = phonetic_fold(part)
    consonants = _DOUBLE.sub(r"\1", "".join(c for c in folded if c not in _VOWELS))
    return consonants or folded


def joined_variants(parts: Iterable[str]) -> list[str]:
    """Adjacent pairs of parts written as one ("xiao", "ming" -> "xiaoming").

    One officer writes "Xiao Ming" or "Abdul Rahman", another "Xiaoming" or
    "Abdulrahman": offering both forms lets either side meet the other.
    """
    return [a + b for a, b in itertools.pairwise(parts)]
