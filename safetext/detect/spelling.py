"""Spellings people write for a term instead of the dictionary one.

Used when a lexicon is compiled, so a term is written once in a policy and its sound-alike
and careless spellings are found too:

* a hard c written k ("kocks", "fuker"), f written ph ("phuck"), qu written kw ("kweef");
* a plural s written z ("boobz", "bitchez", "norkz" for the listed "norks"), an s after a vowel written z ("lezbo"), a
  final ss written zz ("azz"), a plural -cks written x ("bollox");
* ck written kk ("fukker"), a final ck written q or x ("priq"), -uck written -ook ("fooker"),
  -ock written -awk ("cawk");
* a final -er written -a ("fucka", "wankaz"), a final -a written -ah or -uh ("niggah");
* ur and er written for each other ("terd", "masterbate");
* a final -y written -i, -ie or -ey ("pussi"), and -ie written -y or -i;
* ee and ea written for each other ("queaf"), a short i written ee ("teets") or y ("kyke");
* a word-initial wh written h ("hores"), a final -ore written -oar or -oor ("whoar");
* a doubled consonant written once ("bukake", "cunilingus"; in five- and six-letter forms
  by :func:`short_degeminations`: "pusy"), and in -ed and -er forms the consonant the
  ending doubled ("shited");
* the dropped g of a term listed in its -ing form ("shaggin");
* a u written v ("fvck");
* the -y adjective of a short term, also written -ey ("cunty", "shitey");
* a word of one vowel written without it or with an x for it ("btch", "fxck"), and a short
  word's last consonant doubled ("titt");
* a word of more vowels written with none but a first letter ("bstrd", "dckhd", "asshl"):
  :func:`disemvowelled`, kept apart from the forms and read for whole words only.

The compiler drops a spelling that is a real word (see :mod:`safetext.detect.vocabulary`),
so only spellings that read as nothing but the term are added.

Two neighbouring letters swapped ("idoit") would add several spellings per form, so they are
not compiled: :func:`transpositions` serves the matcher, which swaps the letters of a word
it does not know back (to a written form, or to a respelling of five letters or more:
"skaknz"; also once its l's are read as i: "dlkc"), and the compiler, which lists the real
words such a swap makes.
:func:`edge_swaps` gives the swaps across the edge of a term inside a compound ("mothefruck"),
and :func:`stretched_swap` reads a swap in a word with a letter repeated ("reeatrd").
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping

from safetext.detect.inflect import doubles_final

_VOWELS = frozenset("aeiou")
_HARD_C_BEFORE = frozenset("aoulrtk")
_DOUBLED = re.compile(r"([b-df-hj-np-tv-z])\1")
_S_AFTER_VOWEL = re.compile(r"(?<=[aeiouy])s(?=[aeiouyb-df-hj-np-rtv-z])")
_SHORT_I = re.compile(r"(?<=[b-df-hj-np-tv-z])i(?=[b-df-hj-np-tv-z]s?$)")


def _hard_c_to_k(word: str) -> set[str]:
    """``ck`` as ``k`` and a word-initial hard ``c`` as ``k``: cock -> kock, cok, kok."""
    out = set()
    if "ck" in word:
        out.add(word.replace("ck", "k"))
    if word[:1] == "c" and word[1:2] in _HARD_C_BEFORE:
        out |= {"k" + w[1:] for w in (word, *out)}
    return out


def _ck_spellings(word: str) -> set[str]:
    """``ck`` written ``kk`` (fucker -> fukker), a final ``ck`` written ``q`` or ``x`` (prick -> priq, prix),
    ``-uck`` written ``-ook`` (fuck -> fook) and ``-ock`` written ``-awk`` (cock -> cawk)."""
    out = set()
    if "ck" in word:
        out.add(word.replace("ck", "kk"))
        if word.endswith("ck") and len(word) >= 4:
            out |= {word[:-2] + "q", word[:-2] + "x"}
        out.add(word.replace("uck", "ook"))
        out.add(word.replace("ock", "awk"))
    return out


def _vowel_spellings(word: str) -> set[str]:
    """Vowels written as they sound: ur/er (turd -> terd), ee/ea (queef -> queaf), a short i
    as ee or y (tits -> teets, kike -> kyke), a final -y as -i, -ie or -ey, -ie as -y or -i,
    a final -a as -ah or -uh, and a final -ore as -oar or -oor."""
    out = set()
    for a, b in (("ur", "er"), ("er", "ur"), ("ee", "ea"), ("ea", "ee")):
        k = word.find(a)
        if k > 0 and not (a == "er" and k == len(word) - 2):  # a final -er is respelled -a below
            out.add(word[:k] + b + word[k + 2 :])
    if _SHORT_I.search(word):
        out.add(_SHORT_I.sub("ee", word, count=1))
    stem = word[:-1] if word.endswith("e") else word
    if stem.count("i") == 1 and "y" not in word and sum(c in _VOWELS for c in stem) == 1 and word[0] != "i":
        out.add(word.replace("i", "y"))
    if len(word) >= 4 and word.endswith("y") and word[-2] not in _VOWELS:
        out |= {word[:-1] + e for e in ("i", "ie", "ey")}
    elif len(word) >= 5 and word.endswith("ie"):
        out |= {word[:-2] + "y", word[:-2] + "i"}
    if word.endswith("a") and len(word) >= 4:
        out |= {word + "h", word[:-1] + "uh"}
    if word.endswith("ore"):
        out |= {word[:-3] + "oar", word[:-3] + "oor"}
    return out


def _consonant_spellings(word: str) -> set[str]:
    """A doubled consonant written once in a word of seven letters or more (bukkake -> bukake),
    or before the final -y of a six-letter one (shitty -> shity),
    an s after a vowel written z (lesbo -> lezbo), qu written kw (queef -> kweef) and a
    word-initial wh written h (whores -> hores)."""
    out = {word[: m.start()] + word[m.start() + 1 :] for m in _DOUBLED.finditer(word) if len(word) >= 7 or (len(word) == 6 and m.end() == 5 and word[5] == "y")}
    out |= {word[: m.start()] + "z" + word[m.end() :] for m in _S_AFTER_VOWEL.finditer(word)}
    if "ss" in word[1:-1] or word.endswith("ssy"):
        out.add(word.replace("ss", "zz"))
    if "qu" in word:
        out.add(word.replace("qu", "kw"))
    if word.startswith("wh") and len(word) >= 5:
        out.add(word[1:])
    return out


def _without_vowel(word: str) -> set[str]:
    """A word of one vowel written without it or with an x for it: bitch -> btch, bxtch; dick -> dck, dxck."""
    where = [k for k, c in enumerate(word) if c in _VOWELS]
    if len(word) < 4 or len(where) != 1 or where[0] == 0 or word.endswith("y"):
        return set()
    k = where[0]
    return {word[:k] + word[k + 1 :], word[:k] + "x" + word[k + 1 :]}


MIN_DISEMVOWELLED = 5
"""Letters a spelling without vowels needs before it reads as a term ("bstrd"): shorter ones
are abbreviations ("mngr", "cmnt")."""


def disemvowelled(word: str) -> str | None:
    """``word``, of two vowels or more, written with none but a first letter that is one, as
    people type to pass filters: bastard -> bstrd, dickhead -> dckhd, asshole -> asshl."""
    rest = "".join(c for c in word[1:] if c not in _VOWELS)
    if sum(c in _VOWELS for c in word[1:]) < 2 or len(rest) + 1 < MIN_DISEMVOWELLED:
        return None
    return word[0] + rest


def _u_as_v(word: str) -> set[str]:
    """A u written v, as it looks and as inscriptions write it: fuck -> fvck, slut -> slvt."""
    return {word.replace("u", "v")} if "u" in word[1:] and "v" not in word else set()


def _final_doubled(word: str) -> set[str]:
    """A short word's last consonant written twice: tit -> titt, fag -> fagg."""
    if 3 <= len(word) <= 5 and word[-1] not in "aeiouywxs" and word[-2] != word[-1]:
        return {word + word[-1]}
    return set()


_RESPELLED_ENDINGS = frozenset(("", "s", "ing", "in"))
_UNDOUBLED_ENDINGS = frozenset(("ed", "er", "ers"))  # "shitted" -> "shited", "shitter" -> "shiter"
_MAX_ADJECTIVE = 6  # longer terms are compounds ("wankstain"), which take no -y


def short_degeminations(form: str, ending: str) -> set[str]:
    """A doubled consonant written once in a form of five or six letters, or its plural
    ("pusy", "niga", "tity"). One change from the form, so near many short names and
    words: the compiler keeps one only when it is neither a real word nor a census name.
    Six-letter -y forms are respelled so in :func:`variants` already ("shity")."""
    if ending not in ("", "s") or not 5 <= len(form) <= 6:
        return set()
    out = {form[: m.start()] + form[m.start() + 1 :] for m in _DOUBLED.finditer(form)}
    return out - _consonant_spellings(form) - {form}


def variants(form: str, ending: str) -> set[str]:
    """Sound-alike spellings of ``form``, a lexicon form carrying inflectional ``ending``
    (the base form and its -s and -ing forms are respelled; -ed and -er forms only lose the
    consonant their ending doubled)."""
    if ending in _UNDOUBLED_ENDINGS:
        cut = len(form) - len(ending)  # the consonant the ending doubled: shit|t|ed
        if cut < 2 or form[cut - 1] != form[cut - 2] or form[cut - 1] in _VOWELS:
            return set()
        single = form[: cut - 1] + form[cut:]
        return {v for v in {single, *_hard_c_to_k(single)} if len(v) >= 6}
    if ending not in _RESPELLED_ENDINGS:
        return set()
    out = _hard_c_to_k(form)
    if form.startswith("f"):
        out.add("ph" + form[1:])
    elif form.startswith("ph"):
        out.add("f" + form[2:])
    if ending in ("", "s") and len(form) >= 4 and form.endswith("s") and not form.endswith("ss"):  # also terms listed as plurals: "norks"
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
        out |= {form + form[-1] + "y" if doubles_final(form) else form + "y", form + "ey"}  # "shitty", "shitey"
    if not ending and form.endswith("ing") and len(form) >= 6:
        out.add(form[:-1])  # the dropped g of a term listed in its -ing form: "shagging" -> "shaggin"
    out |= {x for v in list(out) for x in _hard_c_to_k(v)}
    out |= _ck_spellings(form) | {x for v in list(out) for x in _ck_spellings(v)}
    consonants = _consonant_spellings(form)
    out |= consonants | {x for v in consonants for x in _hard_c_to_k(v)}  # "cunnilingus" -> "kunilingus"
    if ending in ("", "s"):
        out |= _vowel_spellings(form) | _u_as_v(form)
    if not ending:
        out |= _without_vowel(form) | _final_doubled(form)
    out.discard(form)
    return {v for v in out if len(v) >= 4}


MIN_TRANSPOSED = 4
"""Letters a form needs before a swap of two of its letters reads as it."""


def transpositions(word: str, first: int = 1) -> set[str]:
    """``word`` with two neighbouring letters swapped, from letter ``first`` on ("idoit",
    "btich", "dikc"). A reader still reads the word (its first letter anchors it) and a model
    draws the letters as written, so the swap hides nothing. Used by the matcher per unknown
    word, and by the compiler to find the real words a swap makes ("ares" from "arse"), which
    stay words. A term inside a longer word has no such anchor: ``first=0`` swaps it anywhere."""
    return {word[:i] + word[i + 1] + word[i] + word[i + 2 :] for i in range(first, len(word) - 1) if word[i] != word[i + 1]}


def edge_swaps(form: str) -> dict[str, str]:
    """``form``'s first or last letter swapped with a letter outside it, each swapped spelling
    to the letters as meant: "fruck" is "rfuck" ("mothefruck"), "fucmk" is "fuckm" ("fucmke").
    A swap at the seam of a compound is the same one slip of the keys as a swap inside a word."""
    out: dict[str, str] = {}
    for x in "abcdefghijklmnopqrstuvwxyz":
        # beside a same letter the swap changes nothing or doubles it; a vowel between two
        # consonants is a syllable of its own and reads as another word ("cunit", "Cunit")
        if x not in form[:2] and not (x in _VOWELS and form[0] not in _VOWELS and form[1] not in _VOWELS):
            out.setdefault(form[0] + x + form[1:], x + form)
        if x not in form[-2:] and not (x in _VOWELS and form[-2] not in _VOWELS and form[-1] not in _VOWELS):
            out.setdefault(form[:-1] + x + form[-1], form + x)
    return out


MIN_STRETCHED_SWAP = 6
"""Letters a word needs before it is read as a stretched term with two letters swapped."""

_RUN = re.compile(r"(.)\1+", re.DOTALL)
_ANY_RUN = re.compile(r"((.)\2*)", re.DOTALL)
_DOUBLE = re.compile(r"(.)\1", re.DOTALL)


def collapse(word: str) -> str:
    """``word`` with each run of one letter cut to one (assess -> ases). Most words repeat no
    letter, so a search comes first; joining ``groupby`` keys beats a regex substitution."""
    return "".join([c for c, _ in itertools.groupby(word)]) if _DOUBLE.search(word) else word


def runs(word: str) -> tuple[str, tuple[int, ...]]:
    """``word`` with each run of one letter cut to one, and the length of each run."""
    found = _ANY_RUN.findall(word)
    return "".join(c for _, c in found), tuple(len(r) for r, _ in found)


def stretched_swap(word: str, by_key: Mapping[str, Iterable[str]]) -> str | None:
    """The form ``word`` reads as with two neighbouring letters swapped back and its repeated
    letters cut ("reeatrd" is "retard", "fagigtt" is "faggit"), or None. ``by_key`` maps the
    forms, each with its runs of one letter cut to one, to the forms. Only the runs ``word``
    holds itself stretch the form: a run the swap makes ("Pennisi" to "penniis") is a chance
    of letters, while one it mends is the form's own ("fagigtt" to "faggitt")."""
    own = {m.group() for m in _RUN.finditer(word)}
    if not own:
        return None
    for swapped in sorted(transpositions(word)):
        key, counts = runs(swapped)
        for form in by_key.get(key, ()):
            wanted = runs(form)[1]
            if all(a >= b for a, b in zip(counts, wanted)) and all(
                key[i] * a in own for i, (a, b) in enumerate(zip(counts, wanted)) if a > b
            ) and counts != wanted:
                return form
    return None


__all__ = ["MIN_STRETCHED_SWAP", "MIN_TRANSPOSED", "collapse", "edge_swaps", "runs", "stretched_swap", "transpositions", "variants"]
