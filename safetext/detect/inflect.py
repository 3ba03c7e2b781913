"""Rule-based English inflection, used in two directions.

At compile time it expands lexicon terms into the forms people write (idiots, killing,
hated, hater). At rewrite time it gives the benign target the same ending as the matched
form, so "idiots" becomes "angels" and not "angel". spaCy's exception tables add the
irregular forms at compile time (see ``safetext.detect.lexicon``).
"""

from __future__ import annotations

_VOWELS = frozenset("aeiou")

# Endings a lexicon form can carry, in the order they are generated.
NOUN_ENDINGS = ("s",)
VERB_ENDINGS = ("s", "ing", "in", "ed", "er", "ers")
ADJ_ENDINGS = ("er", "est")


def doubles_final(word: str) -> bool:
    """CVC words of one syllable double their last consonant: stab -> stabbed, hit -> hitting."""
    if len(word) < 3 or word[-1] in _VOWELS or word[-1] in "wxy":
        return False
    vowels = sum(1 for c in word if c in _VOWELS)
    return vowels == 1 and word[-2] in _VOWELS and word[-3] not in _VOWELS


def plural(word: str) -> str:
    """Plural or third-person singular: bitch -> bitches, pansy -> pansies, idiot -> idiots."""
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and len(word) > 1 and word[-2] not in _VOWELS:
        return word[:-1] + "ies"
    return word + "s"


def _stem_for_suffix(word: str, suffix: str) -> str:
    if word.endswith("ie") and suffix == "ing":
        return word[:-2] + "y"
    if word.endswith("e") and not word.endswith(("ee", "ye", "oe")) and suffix[0] in "ei":
        return word[:-1]
    if word.endswith("y") and len(word) > 1 and word[-2] not in _VOWELS and suffix[0] == "e":
        return word[:-1] + "i"
    if doubles_final(word):
        return word + word[-1]
    return word


def inflect(word: str, ending: str) -> str:
    """Apply one ending to ``word``. Multi-word targets inflect their last word."""
    if not ending:
        return word
    if " " in word:
        head, _, last = word.rpartition(" ")
        return f"{head} {inflect(last, ending)}"
    if ending == "s":
        return plural(word)
    if ending == "ers":
        return plural(inflect(word, "er"))
    if ending == "in":  # dropped g: fuckin, killin
        return inflect(word, "ing")[:-1]
    return _stem_for_suffix(word, ending) + ending


def expand(word: str, pos: frozenset[str] | None) -> dict[str, str]:
    """All regular forms of ``word`` mapped to their ending. ``pos=None`` means unknown: all endings."""
    endings: list[str] = []
    if pos is None or "noun" in pos:
        endings += NOUN_ENDINGS
    if pos is None or "verb" in pos:
        endings += VERB_ENDINGS
    if pos is not None and "adj" in pos:
        endings += ADJ_ENDINGS
    forms: dict[str, str] = {word: ""}
    for ending in endings:
        forms.setdefault(inflect(word, ending), ending)
    return forms
