"""Spellings people write for a term instead of the dictionary one.

Used when a lexicon is compiled, so a term is written once in a policy and its sound-alike
spellings are found too: a hard c written k ("kock", "fuker"), f written ph ("phuck"), a
plural s written z ("boobz", "bitchez"), a final ss written zz ("azz"), a plural -cks written x
("bollox"), a final -er written -a ("fucka", "wankaz"), the -y
adjective of a short term ("cunty"), a final ck written kk, q or x ("dikk", "priq"), a
word of one vowel written without it ("btch"), and a short word's last consonant doubled
("titt"). The compiler drops a spelling that is a real word (see
:mod:`safetext.detect.vocabulary`), so only spellings that read as nothing but the term are
added.
"""

from __future__ import annotations

from safetext.detect.inflect import doubles_final

_HARD_C_BEFORE = frozenset("aoulrtk")


def _hard_c_to_k(word: str) -> set[str]:
    """``ck`` as ``k`` and a word-initial hard ``c`` as ``k``: cock -> kock, cok, kok."""
    out = set()
    if "ck" in word:
        out.add(word.replace("ck", "k"))
    if word[:1] == "c" and word[1:2] in _HARD_C_BEFORE:
        out |= {"k" + w[1:] for w in (word, *out)}
    return out


def _ck_spellings(word: str) -> set[str]:
    """A final ``ck`` written ``kk``, ``q`` or ``x``: prick -> prikk, priq, prix."""
    if not word.endswith("ck") or len(word) < 4:
        return set()
    stem = word[:-2]
    return {stem + "kk", stem + "q", stem + "x"}


def _without_vowel(word: str) -> set[str]:
    """A word of one vowel written without it: bitch -> btch, shit -> sht, dick -> dck."""
    where = [k for k, c in enumerate(word) if c in "aeiou"]
    if len(word) < 4 or len(where) != 1 or where[0] == 0 or word.endswith("y"):
        return set()
    k = where[0]
    return {word[:k] + word[k + 1 :]}


def _final_doubled(word: str) -> set[str]:
    """A short word's last consonant written twice: tit -> titt, fag -> fagg."""
    if 3 <= len(word) <= 5 and word[-1] not in "aeiouywxs" and word[-2] != word[-1]:
        return {word + word[-1]}
    return set()


_RESPELLED_ENDINGS = frozenset(("", "s", "ing", "in"))
_MAX_ADJECTIVE = 6  # longer terms are compounds ("wankstain"), which take no -y


def variants(form: str, ending: str) -> set[str]:
    """Sound-alike spellings of ``form``, a lexicon form carrying inflectional ``ending``
    (only the base form and its -s and -ing forms are respelled)."""
    if ending not in _RESPELLED_ENDINGS:
        return set()
    out = _hard_c_to_k(form)
    if form.startswith("f"):
        out.add("ph" + form[1:])
    elif form.startswith("ph"):
        out.add("f" + form[2:])
    if ending == "s" and form.endswith("s") and not form.endswith("ss"):
        out.add(form[:-1] + "z")
        if form.endswith("cks"):
            out.add(form[:-3] + "x")
    if not ending and form.endswith("ss"):
        out.add(form[:-2] + "zz")
    if not ending and form.endswith("er") and len(form) >= 6:
        out |= {form[:-2] + "a", form[:-2] + "as", form[:-2] + "az"}
    elif ending == "s" and form.endswith("ers") and len(form) >= 7:
        out |= {form[:-3] + "as", form[:-3] + "az"}
    if not ending and form[-1:] not in "aeiouy" and 3 <= len(form) <= _MAX_ADJECTIVE:
        out.add(form + form[-1] + "y" if doubles_final(form) else form + "y")
    out |= {x for v in list(out) for x in _hard_c_to_k(v)}
    out |= _ck_spellings(form)
    if not ending:
        out |= _without_vowel(form) | _final_doubled(form)
    out.discard(form)
    return {v for v in out if len(v) >= 4}


__all__ = ["variants"]
