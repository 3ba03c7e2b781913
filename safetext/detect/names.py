"""Tell a person's name from a toxic word: "Dick Smith", "Philip Dick", "Fanny Brice".

A lexicon word that is also a given name or a surname is read as part of a person's name
when it is written like one (``Dick``, ``DICK``) and its neighbour is a name written the
same way: a given name followed by a surname ("Dick Smith"), or a surname after a given
name ("Philip Dick"). The neighbour counts as a name only when it is more common as a name
than as an English word, so "Smith", "Cheney" and "Young" are names and "Head", "Love",
"Big" and "My" are not ("Dick Head" and "Suck My Dick" stay toxic).

Words whose everyday sense is innocent (a policy's ``proper_nouns`` categories) are also
read as part of any proper noun they are capitalised in ("Tit Willow", "Knob Noster"),
beside a capitalised word that is not a frequent English word, and as half of an English
word written in two ("door knob"). Words that build insult compounds ("Rider", "Jockey")
make neither a name nor a proper noun.

Name frequencies: the ``names`` package's tables from the 1990 US Census. Word
frequencies: wordfreq. Both are read when a lexicon is compiled (:func:`compile_names`);
checking a prompt needs neither.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from importlib import resources

log = logging.getLogger(__name__)

NAME_RATIO = 1.0
"""A neighbour is a name when its share of the population is at least this times its frequency as an English word."""

PROPER_MAX_ZIPF = 5.0
"""A capitalised neighbour makes a proper noun only when rarer than this as an English word (wordfreq Zipf)."""

RARE_NAME_MAX_ZIPF = 2.0
"""A capitalised word after a given name that is a term ("Dick Fosbury") is a surname when it
is rarer than this as an English word (wordfreq Zipf), even if the census tables lack it.
Respellings of insults people write sit above it ("sucka": 2.1, "lickin": 2.1)."""

CENSUS_SURNAME_MAX_ZIPF = 2.5
"""A word the census surname tables list, however rare its share, is a surname after such a
given name when rarer than this as an English word ("Dick Cavett", "Dick Butkus"): famous
surnames reach wordfreq's lists through news text. Surnames that begin with a word that
builds insult compounds ("Headman", "Stickman") are left out (see :func:`compile_names`)."""

_TABLES = {"surname": ("dist.all.last",), "given": ("dist.male.first", "dist.female.first")}
_WORD = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True, slots=True)
class NameSets:
    """What the name rules need, compiled with a lexicon (all lower case).

    ``given_terms``/``surname_terms``: forms that are also given names or surnames;
    ``given``/``surnames``: names that are more common as names than as English words;
    ``frequent``: English words at or above :data:`PROPER_MAX_ZIPF`; ``words``: English
    words at or above :data:`RARE_NAME_MAX_ZIPF`; ``builders``: words that build insult
    compounds, which make no name or proper noun beside a term ("Dick Rider", "Fanny Licker").
    """

    given_terms: frozenset[str] = frozenset()
    surname_terms: frozenset[str] = frozenset()
    given: frozenset[str] = frozenset()
    surnames: frozenset[str] = frozenset()
    frequent: frozenset[str] = frozenset()
    words: frozenset[str] = frozenset()
    builders: frozenset[str] = frozenset()


def _rows(files: tuple[str, ...]) -> Iterator[tuple[str, float]]:
    """(lower-case name, share of people) for each line of the census tables ``files``, in
    their order: by share, highest first."""
    root = resources.files("names")
    for name in files:
        for line in root.joinpath(name).read_text(encoding="ascii").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                yield parts[0].lower(), float(parts[1]) / 100


def _read(files: tuple[str, ...]) -> dict[str, float]:
    """Lower-case name -> share of people, for every name the tables give a non-zero share."""
    out: dict[str, float] = {}
    for key, share in _rows(files):
        if share <= 0.0:
            continue  # each table is sorted by share; the rest of it rounds to zero
        out[key] = max(out.get(key, 0.0), share)
    return out


@functools.lru_cache(maxsize=1)
def census_names() -> frozenset[str]:
    """Every given name and surname the census tables list, however rare (lower case);
    empty without the ``names`` package. A word among them is someone's name."""
    try:
        return frozenset(key for files in _TABLES.values() for key, _ in _rows(files))
    except (ImportError, FileNotFoundError, OSError):
        return frozenset()


def compile_names(
    forms: Collection[str], frequent: frozenset[str], words: frozenset[str] = frozenset(), compounding: Collection[str] = ()
) -> NameSets:
    """:class:`NameSets` for a lexicon's ``forms``; empty, with a warning, without the ``names`` package.

    ``frequent`` is the set of English words at or above :data:`PROPER_MAX_ZIPF`, ``words``
    those at or above :data:`RARE_NAME_MAX_ZIPF`; census surnames under
    :data:`CENSUS_SURNAME_MAX_ZIPF` leave ``words``, unless they begin with one of
    ``compounding`` (words that build insult compounds, three letters or more). A word of
    ``compounding`` is no name at all ("Rider", "Sack" and "Ball" are census surnames, but
    "Dick Rider" reads as the compound), however common as a name.
    """
    try:
        tables = {kind: _read(files) for kind, files in _TABLES.items()}
    except (ImportError, FileNotFoundError, OSError) as exc:
        log.warning("the 'names' package is unavailable (%s); names such as 'Dick Smith' are read as words", exc)
        return NameSets(frequent=frequent)
    try:
        from wordfreq import word_frequency, zipf_frequency
    except ImportError:  # pragma: no cover - wordfreq is a core dependency
        return NameSets(frequent=frequent)

    builders = frozenset(compounding)

    def name_like(shares: dict[str, float]) -> frozenset[str]:  # no compound builder: "Dick Rider" is "dickrider"
        return frozenset(
            k for k, share in shares.items() if k.isalpha() and k not in builders and share >= NAME_RATIO * word_frequency(k, "en")
        )

    heads = tuple(w for w in compounding if len(w) >= 3)
    rare = {
        k for k, _ in _rows(_TABLES["surname"])
        if k in words and zipf_frequency(k, "en") < CENSUS_SURNAME_MAX_ZIPF and not k.startswith(heads)
    }  # census surnames too rare to be English words: "cavett", "butkus"

    return NameSets(
        given_terms=frozenset(f for f in forms if f in tables["given"]),
        surname_terms=frozenset(f for f in forms if f in tables["surname"]),
        given=name_like(tables["given"]),
        surnames=name_like(tables["surname"]),
        frequent=frequent,
        words=words - rare,
        builders=builders,
    )


def _styled_alike(a: str, b: str) -> bool:
    """Both capitalised (``Dick Smith``) or both upper case (``DICK SMITH``)."""
    if a.isupper() and b.isupper():
        return len(a) > 1 and len(b) > 1
    return _capitalised(a) and _capitalised(b)


def _capitalised(word: str) -> bool:
    return word[:1].isupper() and word[1:].islower()


def _next_word(text: str, end: int) -> tuple[int, int, str] | None:
    """The ASCII word one space after ``end``, if it is a whole word."""
    if text[end : end + 1] != " ":
        return None
    after = _WORD.match(text, end + 1)
    if after is None or (after.end() < len(text) and text[after.end()].isalnum()):
        return None
    return after.start(), after.end(), after.group()


REGION_PREFIXES = frozenset(
    "county north south east west northern southern eastern western central upper lower new "
    "greater saint st san santa port fort mount cape isle".split()
)
"""Words that may open a region's name after a place's comma ("Muff, County Donegal",
"Climax, New York"); any other frequent word there ("Hookers, Nice Prices") is no region."""


def _place_region(text: str, end: int, frequent: frozenset[str]) -> tuple[int, int, str] | None:
    """The region after ``", "`` at ``end``, as in "Hooker, Oklahoma" or "Muff, County
    Donegal" (a place, then its region): a capitalised word that is no frequent English
    word, after at most two capitalised :data:`REGION_PREFIXES`."""
    if text[end : end + 1] != ",":
        return None
    pos = end + 1
    for _ in range(3):
        found = _next_word(text, pos)
        if found is None or len(found[2]) < 2 or not _capitalised(found[2]):
            return None
        key = found[2].lower()
        if key not in frequent:
            return found
        if key not in REGION_PREFIXES:
            return None
        pos = found[1]
    return None


def _last_word(text: str, start: int) -> tuple[int, int, str] | None:
    """The ASCII word one space before ``start``, if it is a whole word."""
    end = start - 1
    if end < 1 or text[end] != " ":
        return None
    i = end
    while i > 0 and text[i - 1].isascii() and text[i - 1].isalpha():
        i -= 1
    if i == end or (i > 0 and text[i - 1].isalnum()):
        return None
    return i, end, text[i:end]


_VOWELS = frozenset("aeiouy")


def _rare_surname(word: str, sets: NameSets) -> bool:
    """A word of three letters or more, with a vowel, that is no English word at
    :data:`RARE_NAME_MAX_ZIPF` (needs the compiled word set: without it, nothing is rare)."""
    return bool(sets.words) and len(word) >= 3 and word not in sets.words and not _VOWELS.isdisjoint(word)


NAME_PARTICLES = frozenset({"van", "von", "de", "del", "della", "da", "di", "du", "la", "le"})
"""Words that may stand between a given name and a surname ("Dick Van Patten", "Dick van Patten")."""


def name_partner(text: str, start: int, end: int, sets: NameSets, *, name_like: bool = False) -> tuple[int, int] | None:
    """Where the other half of a person's name lies, if ``text[start:end]`` is one half of one.

    ``text`` is the prompt as written (case kept). Returns the neighbour's ``(start, end)``,
    so the caller can refuse the reading when that neighbour is itself a toxic word. The
    word itself must be a lexicon form that is a name (``Dick``), or, with ``name_like``,
    any name more common as a name than as an English word (``Spicher``, which holds a term).
    After a lexicon form that is a given name, a surname is one of the census tables or a
    word too rare to be English (:func:`_rare_surname`: "Dick Fosbury", "Dick Cavett").
    """
    word = text[start:end]
    if not (word.isascii() and word.isalpha()):
        return None
    key = word.lower()
    given, surname = (sets.given, sets.surnames) if name_like else (sets.given_terms, sets.surname_terms)
    if key in given:  # a given name, then a surname: "Dick Smith", "Dick Van Patten"
        after = _next_word(text, end)
        first = after
        if after is not None and after[2].lower() in NAME_PARTICLES and (after[2].islower() or _styled_alike(word, after[2])):
            after = _next_word(text, after[1])
        if first is not None and after is not None and _styled_alike(word, after[2]):
            later = after[2].lower()
            if later in sets.surnames or (not name_like and _rare_surname(later, sets)):
                return first[0], after[1]
    if key in surname:  # a surname after a given name: "Philip Dick"
        before = _last_word(text, start)
        if before is not None and _styled_alike(before[2], word) and before[2].lower() in sets.given:
            return before[0], before[1]
    return None


def initials_partner(text: str, start: int, end: int, sets: NameSets) -> tuple[int, int] | None:
    """Where the surname lies when ``text[start:end]``, capital letters spelled out as
    initials ("F. U", "S.O.B"), begins a person's name ("F. U. Schmidt"), if it does."""
    letters = [c for c in text[start:end] if c.isalpha()]
    if not letters or not all(c.isupper() for c in letters):
        return None
    after = _next_word(text, end + 1 if text[end : end + 1] == "." else end)
    if after is None or not _capitalised(after[2]) or after[2].lower() not in sets.surnames:
        return None
    return after[0], after[1]


_SENTENCE_END = frozenset('.!?:;"\'([')
TITLE_CASE_WORDS = 2
"""Capitalised frequent words inside a sentence that mark a prompt as written in title case."""
_MAX_NAME = 64  # characters of a hyphenated name; longer runs of parts are no name


@functools.lru_cache(maxsize=16)
def _title_cased(text: str, frequent: frozenset[str]) -> bool:
    """Is ``text`` written in title case ("A T-Shirt With The Word ...")? Then capitals
    carry no sign of a proper noun. Counted: frequent English words written capitalised that
    do not begin a sentence or a quotation. One pass over ``text``, cached: every word of a
    prompt that the name rules look at asks the same question."""
    count = 0
    for m in _WORD.finditer(text):
        word = m.group()
        if not _capitalised(word) or word.lower() not in frequent:
            continue
        k = m.start() - 1
        while k >= 0 and text[k].isspace():
            k -= 1
        if k >= 0 and text[k] not in _SENTENCE_END:
            count += 1
            if count >= TITLE_CASE_WORDS:
                return True
    return False


def _hyphen_partner(text: str, start: int, end: int, frequent: frozenset[str]) -> tuple[int, int] | None:
    """A part of the hyphenated name ``text[start:end]`` belongs to ("Hahoe-dong", "Dong-hyun"):
    the name begins with a capital, and the part beside the word is no frequent English word."""
    i = start
    while i > 0 and start - i <= _MAX_NAME and (text[i - 1].isascii() and text[i - 1].isalpha() or text[i - 1] == "-"):
        i -= 1
    j = end
    while j < len(text) and j - i <= _MAX_NAME and (text[j].isascii() and text[j].isalpha() or text[j] == "-"):
        j += 1
    name = text[i:j]
    if j - i > _MAX_NAME or "-" not in name or (i > 0 and text[i - 1].isalnum()) or (j < len(text) and text[j].isalnum()):
        return None
    if not name[0].isupper() or name.startswith("-") or name.endswith("-") or "--" in name or name.isupper():
        return None  # no capital, or all capitals: no sign of a name
    parts: list[tuple[int, int]] = []
    pos = i
    for piece in name.split("-"):
        parts.append((pos, pos + len(piece)))
        pos += len(piece) + 1
    k = next((n for n, (a, b) in enumerate(parts) if a == start and b == end), None)
    if k is None:
        return None
    for n in (k - 1, k + 1):
        if 0 <= n < len(parts):
            a, b = parts[n]
            if b - a >= 2 and text[a:b].lower() not in frequent:
                return a, b
    return None


TOPONYM_PARTICLES = frozenset({"cum", "lez"})
"""Lower-case words that join the parts of place names: English parishes ("Chorlton cum
Hardy", Latin for "with") and French communes ("Aulnoy-lez-Valenciennes", "near")."""


def particle_partners(text: str, start: int, end: int, frequent: frozenset[str]) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Where the two parts of the place name lie when ``text[start:end]`` is a
    :data:`TOPONYM_PARTICLES` word joining them, written in lower case between two
    capitalised words that are no frequent English words, by spaces or hyphens alike
    ("Stow cum Quy", "Horton-cum-Studley"; not "Hot cum Here")."""
    word = text[start:end]
    if word not in TOPONYM_PARTICLES or start < 3:
        return None
    sep = text[start - 1]
    if sep not in " -" or text[end : end + 1] != sep:
        return None
    i = start - 1
    while i > 0 and text[i - 1].isascii() and text[i - 1].isalpha():
        i -= 1
    j = end + 1
    while j < len(text) and text[j].isascii() and text[j].isalpha():
        j += 1
    if (i > 0 and text[i - 1].isalnum()) or (j < len(text) and text[j].isalnum()):
        return None
    parts = ((i, start - 1), (end + 1, j))
    for a, b in parts:
        part = text[a:b]
        if len(part) < 2 or not _capitalised(part) or part.lower() in frequent:
            return None
    return parts


def split_partners(text: str, start: int, end: int, sets: NameSets) -> Iterator[tuple[int, int, str]]:
    """The neighbours one space from the word ``text[start:end]`` that join it into an English
    word written in two ("door knob" is "doorknob", "hoe down" is "hoedown"), each with the
    joined word (lower case): ``(start, end, joined)``. The caller still reads the joined
    word as the matcher would, since many insult compounds are English words too."""
    word = text[start:end]
    if not (word.isascii() and word.isalpha()) or not sets.words:
        return
    key = word.lower()
    after, before = _next_word(text, end), _last_word(text, start)
    if after is not None and (joined := key + after[2].lower()) in sets.words:
        yield after[0], after[1], joined
    if before is not None and (joined := before[2].lower() + key) in sets.words:
        yield before[0], before[1], joined


def proper_partner(text: str, start: int, end: int, sets: NameSets) -> tuple[int, int] | None:
    """The capitalised neighbour that makes ``text[start:end]`` part of a proper noun, if any.

    For words whose everyday sense is innocent ("Tit Willow", "Knob Noster"): the word and
    a neighbour, one space away, are both capitalised, and the neighbour is not a frequent
    English word (so "Pimp My Ride" and "Snatch It" do not count); or the word is a place
    written before its region ("Hooker, Oklahoma"), under the same test; or it is part of a
    hyphenated name that begins with a capital, beside a part that is no frequent English
    word ("Hahoe-dong", "Dong-hyun"; not "Tit-bits"). Not in a prompt written in title case,
    where every word is capitalised.
    """
    word = text[start:end]
    if not (word.isascii() and word.isalpha()) or _title_cased(text, sets.frequent):
        return None
    joined = _hyphen_partner(text, start, end, sets.frequent)
    if joined is not None or not _capitalised(word):
        return joined
    for found in (_next_word(text, end), _last_word(text, start), _place_region(text, end, sets.frequent)):
        if found is None or len(found[2]) < 2 or not _capitalised(found[2]):
            continue
        key = found[2].lower()
        if key not in sets.frequent and key not in sets.builders:
            return found[0], found[1]
    return None


__all__ = ["CENSUS_SURNAME_MAX_ZIPF", "NAME_PARTICLES", "NAME_RATIO", "PROPER_MAX_ZIPF", "RARE_NAME_MAX_ZIPF", "REGION_PREFIXES", "TITLE_CASE_WORDS", "TOPONYM_PARTICLES", "NameSets", "census_names", "compile_names", "initials_partner", "name_partner", "particle_partners", "proper_partner", "split_partners"]
