"""Real words of the language, so a term inside one is not read as the term (Scunthorpe).

Used only when a lexicon is compiled, never per prompt. Two sources:

* **wordfreq** (``wordfreq.iter_wordlist``, English): every ASCII word at or above a Zipf
  frequency. It knows names and places a dictionary lacks (Pratt, Matsushita, Hancock).
  Import and reading the list take about 0.2 s, once per compile.
* **built-in names and places** (:data:`BUILTIN_WORDS`, :data:`BUILTIN_PHRASES`): innocent
  words too rare for the frequency cut (Penistone, Shitterton) and multi-word names whose
  words are terms on their own (Dick Van Dyke). A policy turns them off with
  ``builtin_names: false``.

A frequent word is still not innocent when it is a toxic compound of the term: the term
plus glue words, other terms or an inflection (``dumbass``, ``bitchy``), so frequency alone
never hides what a glued or inflected spelling means.
"""

from __future__ import annotations

import logging
from collections.abc import Container
from functools import lru_cache

from safetext.detect.normalize import strip_marks

log = logging.getLogger(__name__)

LANGUAGE = "en"
CONTAINER_MIN_ZIPF = 2.0
"""Words at least this frequent may hold a term inside them (Matsushita: 2.2, Scunthorpe: 2.6)."""
COMMON_MIN_ZIPF = 4.0
"""Words at least this frequent are prose when quoted one by one ("pen" "is": pen is 4.4),
where rarer pieces (bast 2.6, ards 2.5) are a term split in two ("bast" "ards")."""
SPELLING_LANGUAGES = ("es", "fr", "de", "pt", "it")
SPELLING_MIN_ZIPF = 2.5
"""A sound-alike spelling of a term that is a word at least this frequent in one of these
languages (German "kok", Spanish "fuka") is that word, and is not added."""
LISTED_LANGUAGES = ("en", *SPELLING_LANGUAGES, "nl", "pl", "sv", "ca", "cs")
"""Languages whose whole word lists (:func:`listed_words`) rule out a respelling's swap: a
swap of a respelling is two changes from the term, so even a rare word or place (Carpin,
Cunit, Lubrza) is likelier than the term."""
REPEAT_MIN_ZIPF = 2.5
"""Words at least this frequent are not a term with a letter stretched (Pratt: 3.6, Shiite:
2.8). Stretched spellings people write reach 2.1 (fuuuuck) and 2.3 (kaffir), so the cut is higher."""

# Innocent single words below the frequency cut, or ones every policy should keep.
BUILTIN_WORDS: frozenset[str] = frozenset(
    """
    snigger sniggers sniggered sniggering scunthorpe penistone cocktail cocktails peacock hancock
    therapist therapists assassin assassins classic classical shiitake grape grapes
    assess assessed assesses assessing assessment cockermouth clitheroe twatt shitterton
    cockfosters essex sussex middlesex wessex hitchcock babcock woodcock matsushita dickens
    dickinson cumming cummings shittu dikshit pratt shiite shiites wankie
    """.split()
)

# Names and fixed phrases whose words are terms on their own.
BUILTIN_PHRASES: tuple[str, ...] = (
    "dick van dyke",
    "moby dick",
    "philip k dick",
    "dick tracy",
    "dick cheney",
    "dick turpin",
    "spotted dick",
    "spic and span",
    "homo sapiens",
    "homo erectus",
)

# Endings that keep a term's meaning: the term inflected (bitchy, shitty, idiots).
_ENDINGS = frozenset("s es ed d er ers ing in y ie ies ey est".split())


@lru_cache(maxsize=8)
def frequent_words(min_zipf: float, language: str = LANGUAGE, fold: bool = False) -> frozenset[str]:
    """ASCII alphabetic words of ``language`` at or above ``min_zipf``; empty without wordfreq.
    With ``fold``, accented words count too, with their accents removed (the matcher reads
    "nègres" as "negres")."""
    try:
        from wordfreq import iter_wordlist, word_frequency
    except ImportError:  # pragma: no cover - wordfreq is a core dependency
        log.warning("wordfreq is not installed; words inside real words may be reported")
        return frozenset()
    floor = 10 ** (min_zipf - 9)
    words = list(iter_wordlist(language))  # most frequent first
    lo, hi = 0, len(words)
    while lo < hi:  # the first word below the floor
        mid = (lo + hi) // 2
        if word_frequency(words[mid], language) >= floor:
            lo = mid + 1
        else:
            hi = mid
    kept = words[:lo]
    if fold:
        kept = [w if w.isascii() else strip_marks(w) for w in kept]
    return frozenset(w for w in kept if w.isascii() and w.isalpha())


def listed_words(candidates: set[str] | frozenset[str], languages: tuple[str, ...] = LISTED_LANGUAGES) -> set[str]:
    """The ``candidates`` that wordfreq lists as an ASCII word of any of ``languages``, at any
    frequency; empty without wordfreq."""
    try:
        from wordfreq import iter_wordlist
    except ImportError:  # pragma: no cover - wordfreq is a core dependency
        return set()
    found: set[str] = set()
    for language in languages:
        found.update(candidates.intersection(iter_wordlist(language)))
    return found


def toxic_compound(word: str, start: int, end: int, forms: Container[str], glue: Container[str], endings: bool = True) -> bool:
    """Is ``word`` the form at ``word[start:end]`` plus glue words, other forms or (when the
    form takes ``endings``) an ending?"""
    left, right = word[:start], word[end:]
    left_ok = not left or left in forms or (len(left) >= 3 and left in glue)
    if not left_ok:
        return False
    return (
        not right
        or endings and right in _ENDINGS
        or endings and (right[:1] == word[end - 1 : end] and right[1:] in _ENDINGS)  # doubled consonant: shitty
        or right in forms
        or (len(right) >= 3 and right in glue)
    )


__all__ = [
    "BUILTIN_PHRASES",
    "BUILTIN_WORDS",
    "COMMON_MIN_ZIPF",
    "CONTAINER_MIN_ZIPF",
    "LANGUAGE",
    "REPEAT_MIN_ZIPF",
    "SPELLING_LANGUAGES",
    "SPELLING_MIN_ZIPF",
    "frequent_words",
    "toxic_compound",
]
