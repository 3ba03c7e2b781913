"""Spellings people write for a term instead of the dictionary one.

Used when a lexicon is compiled, so a term is written once in a policy and its sound-alike
spellings are found too: a hard c written k ("kock", "fuker"), f written ph ("phuck"), a
plural s written z ("boobz"), a final -er written -a ("fucka", "wankaz"), and the -y
adjective of a short term ("cunty"). The compiler drops a spelling that is a real word (see
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
    if not ending and form.endswith("er") and len(form) >= 6:
        out |= {form[:-2] + "a", form[:-2] + "as", form[:-2] + "az"}
    elif ending == "s" and form.endswith("ers") and len(form) >= 7:
        out |= {form[:-3] + "as", form[:-3] + "az"}
    if not ending and form[-1:] not in "aeiouy" and 3 <= len(form) <= _MAX_ADJECTIVE:
        out.add(form + form[-1] + "y" if doubles_final(form) else form + "y")
    out |= {x for v in list(out) for x in _hard_c_to_k(v)}
    out.discard(form)
    return {v for v in out if len(v) >= 4}


__all__ = ["variants"]
