"""The per-prompt lexicon matcher: pure Python, dict lookups and a few regexes.

It scans canonical text (see :mod:`safetext.detect.normalize`) token by token. Each token is
tried whole (exact, inflected, leetspeak, l read as i, repeated letters, masked), then in
parts, then with symbols between its letters dropped, then for glued terms, then with
letters written three times or more cut back ("fuuuckaaa"), then with two neighbouring
letters swapped back ("idoit"). A number is read as leetspeak
("80085"), which the engine keeps only where the prompt renders it alone. Then consecutive tokens are
joined across whatever separates them (spaces, punctuation, quotes, emoji: a tokenizer
drops all of it, and the model draws the letters side by side), so ``i d i o t``,
``id, iot`` and ``"id" "iot"`` are found. Every path honours the allow list. Results are
cached per token, since prompts reuse the same words.
"""

from __future__ import annotations

import bisect
import itertools
import operator
import re
from dataclasses import dataclass

from safetext.detect.lexicon import (
    COMPOUND_WORDS,
    DERIVATIONAL_SUFFIXES,
    FUNCTION_WORDS,
    GLUE_WORDS,
    Y_STEM_SUFFIXES,
    CompiledLexicon,
    Entry,
    inner_swaps,
    l_as_i,
)
from safetext.detect.settings import MAX_INITIALS, NormalizeSettings
from safetext.detect.spelling import MIN_STRETCHED_SWAP, MIN_TRANSPOSED, collapse, stretched_swap, transpositions
from safetext.detect.spelling import runs as _runs
from safetext.detect.trie import trie_regex

# Digits and symbols read as letters. Ambiguous ones list every reading.
LEET: dict[str, str] = {
    "0": "o", "1": "il", "2": "z", "3": "e", "4": "a", "5": "s", "6": "gb", "7": "t", "8": "b", "9": "g",
    "@": "a", "$": "s", "!": "i", "|": "il", "+": "t", "#": "h", "€": "ec", "¢": "c", "£": "l", "¡": "i",
}
# Groups read as one letter by shape ("l3" and "|3" as b) or as a sound ("8" as "ate": "masterb8").
LEET_GROUPS: tuple[tuple[str, str], ...] = (("l3", "b"), ("|3", "b"), ("13", "b"), ("8", "ate"))
_SYMBOLS = "@$!|+*#€¢£¡"
_WORD = r"[^\W_]|[@$!|+*#€¢£¡]"
TOKEN_RE = re.compile(rf"(?:{_WORD})+(?:[.\-_'’~](?:{_WORD})+)*")
# TOKEN_RE for text without "_" (where ``\w`` and ``[^\W_]`` agree): one character class, several times faster.
_TOKEN_FAST = re.compile(r"[\w@$!|+*#€¢£¡]+(?:[.\-'’~][\w@$!|+*#€¢£¡]+)*")
# The token patterns with one group around the whole token: re.split then returns gaps and
# tokens in one call, and their offsets come from the lengths.
_TOKEN_SPLIT = re.compile(f"({TOKEN_RE.pattern})")
_TOKEN_FAST_SPLIT = re.compile(f"({_TOKEN_FAST.pattern})")
# The same for ASCII text without "_": an ASCII class, and possessive repeats (a token never
# gives back characters), about a third faster than the Unicode pattern.
_TOKEN_ASCII_SPLIT = re.compile(r"([0-9A-Za-z@$!|+*#]++(?:[.\-'~][0-9A-Za-z@$!|+*#]++)*+)")
_JOIN = frozenset(".-_'’~*")
_DROP_JOINERS = str.maketrans("", "", ".-_'’~")
_DROP_SYMBOLS = str.maketrans("", "", _SYMBOLS)
_PART = re.compile(r"[^.\-_'’~]+")
_MASK = frozenset("*#_")
_MAX_VARIANTS = 32
_MAX_TOKEN = 64  # longer tokens are split at joiners, or searched with a linear trie regex
_MAX_JOINED = 40  # letters in one window of joined tokens
_CONTEXT = 24  # letters of a spelled-out word looked at on each side of a hit
_DOUBLE = re.compile(r"(.)\1")
_RUNS = re.compile(r"(.)\1+")
_STRETCHED = re.compile(r"(.)\1\1")  # no English word holds one letter three times running
# Numbers read as leetspeak need this many digits ("455" is a room before it is "ass");
# years and numbers of 0s and 1s only (binary) stay numbers.
_MIN_DIGITS = 4
_YEAR = re.compile(r"(?:1[5-9]|20)\d\d")
_MAX_L = 3  # l read as i ("dlck") is tried in words with at most this many l's
_CACHE_LIMIT = 50_000
_PROSE_GAP = re.compile(r"[.,;:!?]\s")
_QUOTE_RE = re.compile("[\"'`«»‹›「」『』]")
_QUOTE_PAIR = re.compile("[\"'`«»‹›「」『』][^\\w@$!|+*#€¢£¡]*[\"'`«»‹›「」『』]")  # a quote split's gap holds two quotes
# A coarse key for pruning joined windows: every reading of a leet symbol, and letters a
# leet symbol may stand for together (1 and | read i or l; 6 reads g or b), share one key.
_SKELETON = str.maketrans(
    {
        "l": "i", "1": "i", "|": "i", "!": "i", "¡": "i", "£": "i", "g": "b", "6": "b", "8": "b", "9": "b",
        "0": "o", "2": "z", "3": "e", "4": "a", "@": "a", "5": "s", "$": "s", "7": "t", "+": "t",
        "#": "h", "€": "e", "¢": "c",
    }
)


@dataclass(frozen=True, slots=True)
class Hit:
    """A match in canonical-text coordinates."""

    start: int
    end: int
    entry: Entry
    method: str
    form: str


MIN_SWAPPED_COMPOUND = 8
"""Letters a word needs to be read as two terms glued with two letters swapped ("shitidck")."""
MIN_SWAPPED_PART = 4
"""Letters each part of a term glued to a compound word needs before two swapped letters in
it are read back ("crapafce"): a swap beside "hag" or "man" makes too many words."""
MIN_SWAPPED_PAIR = 2 * MIN_SWAPPED_PART
MAX_SWAPPED_COMPOUND = 20
"""Letters such a word may have: each swap costs a segmentation, so longer unknown words are not tried."""

_COMPANIONS = GLUE_WORDS | COMPOUND_WORDS
"""Words a term may be glued to in a compound (which ones a term takes: :meth:`Matcher._companion`)."""
_DERIVED_TAILS = DERIVATIONAL_SUFFIXES | Y_STEM_SUFFIXES
"""Tails :meth:`Matcher._derived` reads; other splits of a word skip it."""

_HITS = operator.itemgetter(0)
_CANON = operator.itemgetter(1)
_PIECE = operator.itemgetter(2)
_STARTS = operator.itemgetter(3)


def _compounds(entry: Entry) -> bool:
    """May ``entry`` form an insult compound with a COMPOUND_WORDS word (clear word-mode terms of three letters or more)?"""
    return entry.mode == "word" and entry.severity >= 2 and len(entry.term) >= 3 and " " not in entry.term


def _anagram(word: str) -> str:
    """``word``'s first letter and its other letters sorted: what a swap past the first letter keeps."""
    return word[:1] + "".join(sorted(word[1:]))


def skeleton(letters: str) -> str:
    """The pruning key of ``letters``: leet readings merged, repeated letters collapsed."""
    return collapse(letters.translate(_SKELETON))


def _single_runs(pieces: list[tuple[str, str, bool]], matched: list[bool]) -> tuple[list[int], list[int]]:
    """For each token, the first and last index of the run of single-letter tokens holding it."""
    n = len(pieces)
    single = [len(p[0]) == 1 and p[2] and not m for p, m in zip(pieces, matched)]
    first, last = list(range(n)), list(range(n))
    for k in range(1, n):
        if single[k] and single[k - 1]:
            first[k] = first[k - 1]
    for k in range(n - 2, -1, -1):
        if single[k] and single[k + 1]:
            last[k] = last[k + 1]
    return first, last


def _possessive(token: str, letters: str, words: frozenset[str]) -> bool:
    """Is ``token`` a real word with 's ("Tom's", whose letters are "toms")?"""
    return token.endswith(("'s", "’s")) and letters[:-1] in words


class Matcher:
    """Finds lexicon terms in canonical text. One instance per compiled lexicon; thread-safe reads."""

    def __init__(self, lexicon: CompiledLexicon, normalization: NormalizeSettings | None = None) -> None:
        self.lex = lexicon
        self.norm = normalization if normalization is not None else NormalizeSettings()
        self.forms = lexicon.forms
        self._collapsed: dict[str, list[str]] = {}  # forms by their letters with runs cut to one
        self._by_length: dict[int, list[str]] = {}
        skeletons: dict[str, str] = {}
        for form in self.forms:
            key = collapse(form)
            self._collapsed.setdefault(key, []).append(form)
            self._by_length.setdefault(len(form), []).append(form)
            mapped = form.translate(_SKELETON)
            skeletons[form] = key if mapped == form else collapse(mapped)  # skeleton(form), its runs already cut
        prefixes: set[str] = set()
        for form, sk in skeletons.items():
            if len(form) >= 3:
                for k in range(len(sk), 0, -1):  # a prefix already there came with all of its own
                    if sk[:k] in prefixes:
                        break
                    prefixes.add(sk[:k])
        # acronym terms (match: initials) are read only as initials or in leetspeak, never as a word
        self._initials = lexicon.initials
        for key in self._initials:
            sk = skeleton(key)
            prefixes.update(sk[:k] for k in range(1, len(sk) + 1))
        self._skeleton_prefixes = frozenset(prefixes)
        # The trie of every glue-able form serves only tokens over _MAX_TOKEN characters, and
        # compiling it is most of a matcher's build time, so it is built on first use.
        self._loose: re.Pattern[str] | None = None
        self._loose_built = False
        # phrases written without spaces around a term of their own ("kissmyass"): whole words only, never pieces of a glued word
        self._whole_phrases = frozenset(f for f, e in self.forms.items() if e.mode == "exact" and " " in e.term)
        substring_forms = [f for f, e in self.forms.items() if e.mode == "substring"]
        self._substring = trie_regex(substring_forms) if substring_forms else None
        self._swap_forms = lexicon.swap_forms
        # a swap keeps the first letter and the letters: words whose key is not here read as no swap form
        self._swap_anagrams = frozenset(map(_anagram, lexicon.swap_forms))
        # lexicon.swap_keys of the swap forms, from the forms already keyed above
        self._swap_keys = {k: sorted(v) for k, fs in self._collapsed.items() if (v := self._swap_forms.intersection(fs))}
        self._inner_swaps = {**lexicon.edge_swaps, **inner_swaps(lexicon.swap_forms, self.forms)}
        self._inner_swap = trie_regex(list(self._inner_swaps)) if self._inner_swaps else None
        # Words a spelled-out term may stand beside: "y o u a r e a n i d i o t".
        self._connectors = GLUE_WORDS | FUNCTION_WORDS | lexicon.allow_words | frozenset(self.forms)
        self._innocent = lexicon.allow_words | lexicon.known
        # Allowed words with letters repeated ("Scunthorrrpe") stay allowed, unless the
        # stretched spelling would also read as a form.
        form_keys = set(skeletons.values())
        self._allow_stretched = frozenset(
            k for k in (_RUNS.sub(r"\1", w) for w in lexicon.allow_words) if skeleton(k) not in form_keys
        )
        self._innocent_lengths = sorted({len(w) for w in self._innocent if len(w) <= _CONTEXT * 2})
        self._phrases: dict[str, list[tuple[tuple[str, ...], Entry]]] = {}
        for words, entry in lexicon.phrases:
            self._phrases.setdefault(words[0], []).append((words, entry))
        self._phrase_starts = frozenset(words[:2] for words, _entry in lexicon.phrases)  # every phrase has two words or more
        # One word-boundary test around the whole alternation: a boundary inside each branch
        # makes the regex try every branch at every character, about 20 times slower.
        self._allow_phrase_re = (
            re.compile(
                r"(?<![^\W_])(?:"
                + "|".join(r"[\W_]+".join(re.escape(w) for w in phrase) for phrase in lexicon.allow_phrases)
                + r")(?![^\W_])"
            )
            if lexicon.allow_phrases
            else None
        )
        # The allow-phrase regex runs only when a prompt holds a phrase's first word, or the
        # phrase's first words written as one hyphenated token ("moby-dick", "blue-tit").
        self._allow_first = frozenset(
            "".join(p[:k]).translate(_DROP_JOINERS) for p in lexicon.allow_phrases for k in range(1, len(p) + 1)
        )
        self._cache: dict[str, tuple[tuple[Hit, ...], str]] = {}
        self._records: dict[str, tuple[tuple[Hit, ...], str, tuple[str, str, bool], bool]] = {}
        self._pieces: dict[str, tuple[str, str, bool]] = {}
        self._inside: dict[tuple[str, int, int, str], bool] = {}
        self._windows: dict[str, tuple[str, str] | None] = {}

    # ---- whole-string lookups -------------------------------------------------------------

    def allowed(self, text: str) -> bool:
        """Is canonical ``text`` (a word or phrase) on the allow list?"""
        words = [w.translate(_DROP_JOINERS) for w in text.split()]
        if len(words) == 1:
            return self._allowed(words[0])
        return self._allow_phrase_re is not None and self._allow_phrase_re.fullmatch(text) is not None

    def _allowed(self, word: str) -> bool:
        allow = self.lex.allow_words
        if word in allow:
            return True
        for suffix in ("s", "es", "'s"):
            if word.endswith(suffix) and word[: -len(suffix)] in allow:
                return True
        return bool(self._allow_stretched) and _DOUBLE.search(word) is not None and _RUNS.sub(r"\1", word) in self._allow_stretched

    def _leet_variants(self, s: str) -> list[str]:
        variants = self._leet_product(s)
        for group, reading in LEET_GROUPS:
            if group in s and len(variants) < _MAX_VARIANTS:
                variants += self._leet_product(s.replace(group, reading))
        return variants[:_MAX_VARIANTS]

    def _leet_product(self, s: str) -> list[str]:
        slots = [LEET.get(c, c) for c in s]
        if all(len(x) == 1 for x in slots):
            return ["".join(slots)]
        variants = []
        for combo in itertools.product(*slots):
            variants.append("".join(combo))
            if len(variants) >= _MAX_VARIANTS:
                break
        return variants

    def _repeat(self, s: str) -> str | None:
        key, counts = _runs(s)
        if len(key) == len(s):
            return None
        for form in self._collapsed.get(key, ()):
            if all(a >= b for a, b in zip(counts, _runs(form)[1])):
                return form
        return None

    def _masked(self, s: str) -> str | None:
        real = sum(1 for c in s if c not in _MASK)
        if s[0] in _MASK or real < 2 or real * 2 < len(s):
            return None
        pattern = re.compile(
            "".join("[a-z]" if c in _MASK else "[" + re.escape(c + LEET.get(c, "")) + "]" for c in s)
        )
        for form in self._by_length.get(len(s), ()):
            if pattern.fullmatch(form):
                return form
        return None

    def lookup(self, letters: str) -> tuple[str, str] | None:
        """(form, method) when a joiner-free string is a lexicon form after undoing obfuscation."""
        if not letters or letters.isdigit() or self._allowed(letters):
            return None
        if letters in self.forms:
            return letters, "lexicon"
        meant = self.lex.vowelless.get(letters)
        if meant is not None:  # "bstrd": a form written without its vowels
            return meant, "vowelless"
        plain = letters.isalpha()
        if plain and "l" in letters and self.norm.leetspeak and letters not in self.lex.known:
            for v in l_as_i(letters, _MAX_L):
                if v in self.forms and not self._allowed(v):
                    return v, "leetspeak"
        if plain and not _DOUBLE.search(letters):
            return None
        variants = [letters] if plain or not self.norm.leetspeak else self._leet_variants(letters)
        if not plain and self.norm.leetspeak:
            for v in variants:
                if v in self.forms and not self._allowed(v):
                    return v, "leetspeak"
        if self.norm.repeats:
            for v in variants:
                form = self._repeat(v)
                if form is not None and not self._allowed(v) and v not in self.lex.known:
                    return form, "repeat"
        return None

    # ---- one token ----------------------------------------------------------------------------

    def match_token(self, token: str) -> tuple[tuple[Hit, ...], str]:
        """Hits inside one token (token-relative offsets) and the token's canonical word."""
        cached = self._cache.get(token)
        if cached is not None:
            return cached
        result = self._match_token(token)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[token] = result
        return result

    def _match_token(self, token: str) -> tuple[tuple[Hit, ...], str]:
        if len(token) > _MAX_TOKEN:
            return self._long_token(token), token
        pos = [i for i, c in enumerate(token) if c not in _JOIN] if self.norm.separators else list(range(len(token)))
        letters = "".join(token[i] for i in pos)
        if not letters or self._allowed(letters) or self._allowed(token):
            return (), letters
        if self.norm.separators and any(c in _SYMBOLS for c in letters) and self._allowed(letters.translate(_DROP_SYMBOLS)):
            return (), letters  # "Scunt+horpe"
        if letters.isdigit():
            return self._digits(letters, pos), letters
        if len(token) > 3 and token[-1] == "s" and token[-2] in "'’" and token[-3] not in _JOIN:
            # a possessive is its word with 's: "Niger's" is not the form "nigers", "nude's" not "nudes"
            return self.match_token(token[:-2])[0], letters
        if self._initials:
            initial = self._initials_in_token(token, letters, pos)
            if initial is not None:
                return (initial,), initial.form
        found = self.lookup(letters)
        if found is not None and found[0] in self._whole_phrases and letters.isalpha():
            inner = self._glued(letters)  # "idiotface" is "idiot" glued to "face": the term is rewritten, not the phrase
            if inner:
                return tuple(Hit(pos[h.start], pos[h.end - 1] + 1, h.entry, h.method, h.form) for h in inner), letters
        if found is not None:
            form, method = found
            if letters != token.replace("'", "").replace("’", "") and method == "lexicon":
                method = "split"
            entry = self.forms[form]
            return (Hit(pos[0], pos[-1] + 1, entry, method, form),), form
        if any(c in _MASK for c in token):
            masked = "".join(c for c in token if c not in ".-'’~")
            form = self._masked(masked) if masked else None
            if form is not None:
                return (Hit(0, len(token), self.forms[form], "masked", form),), form
        # Leading or trailing symbols: "idiot!!", "#idiot", "**idiot**".
        lo, hi = 0, len(token)
        while lo < hi and not token[lo].isalnum():
            lo += 1
        while hi > lo and not token[hi - 1].isalnum():
            hi -= 1
        if (lo, hi) != (0, len(token)) and hi > lo:
            hits, canon = self.match_token(token[lo:hi])
            return tuple(Hit(h.start + lo, h.end + lo, h.entry, h.method, h.form) for h in hits), canon
        # Parts joined by punctuation: "shit-faced", "idiot's".
        if any(c in _JOIN for c in token):
            hits = []
            for m in re.finditer(r"[^.\-_'’~*]+", token):
                if m.end() - m.start() >= 2:
                    sub, _ = self.match_token(m.group())
                    hits += [Hit(h.start + m.start(), h.end + m.start(), h.entry, h.method, h.form) for h in sub]
            if hits:
                return tuple(hits), letters
        # Symbols used as separators between letters: "id+iot", "i|d|i|o|t", "s*h*i*t".
        if self.norm.separators and any(c in _SYMBOLS for c in letters):
            bare = letters.translate(_DROP_SYMBOLS)
            found = self.lookup(bare) if len(bare) >= 3 and bare.isalpha() else None
            if found is None and len(bare) >= 4 and bare.isalpha():
                glued = self._glued(bare)  # "f|u|c|k|m|e|a|t"
                found = (glued[0].form, "split") if glued else None
            if found is not None:
                return (Hit(pos[0], pos[-1] + 1, self.forms[found[0]], "split", found[0]),), found[0]
        plain = letters if letters.isalpha() else None
        if plain is None and self.norm.leetspeak and not letters.isdigit():
            plain = next((v for v in self._leet_variants(letters) if v.isalpha()), None)
        if plain is not None and len(pos) == len(plain):
            hits = self._glued(plain)
            if hits:
                return tuple(Hit(pos[h.start], pos[h.end - 1] + 1, h.entry, h.method, h.form) for h in hits), plain
        if self.norm.repeats and _STRETCHED.search(token):
            return self._destretched(token), plain or letters
        if plain is not None and self.norm.transpositions and len(pos) == len(plain):
            hits = self._transposed(plain) or self._transposed_leet(letters, plain)
            if hits:
                return tuple(Hit(pos[h.start], pos[h.end - 1] + 1, h.entry, h.method, h.form) for h in hits), hits[0].form
        return (), plain or letters

    def _transposed(self, word: str) -> tuple[Hit, ...]:
        """``word`` read with two neighbouring letters swapped back: as a whole, to a term's
        written form or inflection ("idoit" is "idiot", stretched "reeatrd" is "retard"), or
        inside it, to a substring term ("motherfcuker"), also across the term's edge
        ("mothefruck"). Nothing when ``word`` is a real word (ares, sith), a census name or an
        innocent container. A glued term is searched inside a swapped word only where the word is
        cut into two terms and glue words ("shitidck"): too many real words the compiler never
        saw hold one glued term one swap away ("acocunt")."""
        if len(word) < MIN_TRANSPOSED or word in self.lex.swap_words or word in self._innocent:
            return ()
        form = self._swapped_form(word)
        if form is None and self.norm.repeats and len(word) >= MIN_STRETCHED_SWAP:
            form = stretched_swap(word, self._swap_keys)  # "reeatrd"
            form = None if form is None or self._allowed(form) else form
        if form is not None:
            return (Hit(0, len(word), self.forms[form], "transposed", form),)
        compound = self._swapped_compound(word)
        if compound:
            return compound
        if self._inner_swap is None or len(word) <= MIN_TRANSPOSED:
            return ()
        for m in self._inner_swap.finditer(word):
            a, b = m.span()
            repaired = word[:a] + self._inner_swaps[m.group()] + word[b:]
            # a hit spans the swapped letters too: "fruck" of "mothefruck" is the term's letters
            hits = tuple(Hit(min(h.start, a), max(h.end, b), h.entry, "transposed", h.form) for h in self._glued(repaired) if h.start < b and h.end > a)
            if hits:
                return hits
        return ()

    def _swapped_compound(self, word: str) -> tuple[Hit, ...]:
        """``word`` read with two neighbouring letters swapped back as a compound: a term
        beside the glue or compound word it compounds with, the swap in either part
        ("crapafce", "bollokcface"), or cut whole into glue-able terms and glue words, two of
        them terms, one of which begins or ends ``word`` unswapped ("shitidck"). Reading the
        whole word as its parts keeps out the real words the compiler never saw that hold one
        glued term one swap away ("acocunt")."""
        n = len(word)
        if not self.norm.glued or not MIN_SWAPPED_PAIR <= n <= MAX_SWAPPED_COMPOUND:
            return ()
        pair = self._swapped_pair(word)
        if pair:
            return pair
        forms = self.forms
        if n < MIN_SWAPPED_COMPOUND or not any(forms[p].glue for p in (word[:j] for j in range(4, n - 3)) if p in forms) and not any(
            forms[p].glue for p in (word[j:] for j in range(4, n - 3)) if p in forms
        ):
            return ()  # one of the two terms stands unswapped at the word's start or end
        for k in range(1, n - 1):
            if word[k] == word[k + 1]:
                continue
            repaired = word[:k] + word[k + 1] + word[k] + word[k + 2 :]
            if repaired in self.lex.known or self._allowed(repaired):
                continue
            pieces = self._segment(repaired)
            terms = [(a, b) for a, b in pieces or () if repaired[a:b] in forms and forms[repaired[a:b]].glue]
            if len(terms) >= 2:
                return tuple(Hit(a, b, forms[repaired[a:b]], "transposed", repaired[a:b]) for a, b in terms)
        return ()

    def _swapped_pair(self, word: str) -> tuple[Hit, ...]:
        """``word`` as a compounding term and a glue or compound word (see :meth:`_glued`),
        two neighbouring letters swapped in one of them, each part MIN_SWAPPED_PART letters or
        more. A swapped term is no real word a swap of a form makes ("horse" of "horseface" is
        no swapped "hores")."""
        forms, swapped = self.forms, self.lex.swap_words
        n = len(word)
        for j in range(MIN_SWAPPED_PART, n - MIN_SWAPPED_PART + 1):
            head, tail = word[:j], word[j:]
            readings = []
            if head in forms:  # the swap in the word after the term: "crap" + "afce"
                readings += [(forms[head], head, x, (0, j)) for x in self._swapped_companions(tail)]
            elif tail in _COMPANIONS and head not in swapped:  # ... or in the term: "bollokc" + "face"
                form = self._swapped_form(head)
                readings += [(forms[form], form, tail, (0, j))] if form is not None else []
            if tail in forms:  # the term second, the swap in the word before it: "lmae" + "slut"
                readings += [(forms[tail], tail, x, (j, n)) for x in self._swapped_companions(head)]
            elif head in _COMPANIONS and tail not in swapped:  # ... or in the term: "lame" + "sltu"
                form = self._swapped_form(tail)
                readings += [(forms[form], form, head, (j, n))] if form is not None else []
            for entry, form, other, (a, b) in readings:
                repaired = form + other if a == 0 else other + form
                if self._companion(entry, other) and repaired not in self.lex.known and not self._allowed(repaired):
                    return (Hit(a, b, entry, "transposed", form),)
        return ()

    def _swapped_companions(self, word: str) -> list[str]:
        """The glue and compound words (MIN_SWAPPED_PART letters or more) ``word`` is with two neighbouring letters swapped back."""
        if len(word) < MIN_SWAPPED_PART or word in self.lex.known:
            return []
        return [w for w in transpositions(word, first=0) if w in _COMPANIONS]

    @staticmethod
    def _companion(entry: Entry, word: str) -> bool:
        """May ``word`` stand glued beside ``entry``'s term as :meth:`_glued` reads a compound?"""
        return word in COMPOUND_WORDS and _compounds(entry) or entry.glue and word in GLUE_WORDS

    def _swapped_form(self, word: str) -> str | None:
        """The swap form ``word`` is with two neighbouring letters swapped back, if any."""
        if _anagram(word) not in self._swap_anagrams:
            return None
        return next((f for f in sorted(transpositions(word)) if f in self._swap_forms and not self._allowed(f)), None)

    def _transposed_leet(self, letters: str, plain: str) -> tuple[Hit, ...]:
        """A swap in a leet spelling: ``plain`` (``letters`` read as letters) with its l's read
        as i ("dlkc" is "dick"), or another reading of ``letters``' digits and symbols, with
        two neighbouring letters swapped back, as a whole word only. Nothing when ``plain`` is a
        real word."""
        if not self.norm.leetspeak or len(plain) < MIN_TRANSPOSED or plain in self.lex.swap_words or plain in self._innocent:
            return ()
        readings = [] if letters.isalpha() else [v for v in self._leet_variants(letters) if v.isalpha() and v != plain]
        if "l" in plain and plain not in self.lex.known:
            readings += l_as_i(plain, _MAX_L)
        for reading in readings:
            form = self._swapped_form(reading)
            if form is not None:
                return (Hit(0, len(plain), self.forms[form], "transposed", form),)
        return ()

    def _initial(self, letters: str) -> str | None:
        """The acronym term ``letters`` spell, as written or in leetspeak ("s0b"), if any."""
        if letters in self._initials:
            return letters
        if self.norm.leetspeak and not letters.isalpha() and len(letters) <= MAX_INITIALS:
            return next((v for v in self._leet_variants(letters) if v in self._initials), None)
        return None

    def _initials_in_token(self, token: str, letters: str, pos: list[int]) -> Hit | None:
        """An acronym term in one token, written as initials ("s.o.b", "S-O-B") or with a
        digit or symbol for a letter ("s0b"). The plain word ("sob") is not one."""
        if len(letters) > MAX_INITIALS:
            return None
        spelled = len(pos) < len(token) and all(len(part) == 1 for part in _PART.findall(token))
        if not spelled and letters.isalpha():
            return None
        key = self._initial(letters)
        if key is None or self._allowed(key):
            return None
        return Hit(pos[0], pos[-1] + 1, self._initials[key], "initials", key)

    def _digits(self, digits: str, pos: list[int]) -> tuple[Hit, ...]:
        """A number that reads as a term in leetspeak ("80085"). The engine keeps such a hit
        only in rendered text, where a number is drawn as the letters it stands for."""
        if not self.norm.leetspeak or len(digits) < _MIN_DIGITS or _YEAR.fullmatch(digits) or not digits.strip("01"):
            return ()
        for v in self._leet_variants(digits):
            form = v if v in self.forms else self._repeat(v) if self.norm.repeats else None
            if form is not None and not self._allowed(v):
                return (Hit(pos[0], pos[-1] + 1, self.forms[form], "digits", form),)
        return ()

    def _destretched(self, token: str) -> tuple[Hit, ...]:
        """Hits in ``token`` with each letter written three times or more cut to one, else to two
        ("fuuuckaaa" is "fucka", "booooobies" is "boobies"), mapped back onto ``token``."""
        for keep in (1, 2):
            chars: list[str] = []
            starts: list[int] = []
            ends: list[int] = []  # a kept letter ends where its run ends
            at = 0
            for ch, group in itertools.groupby(token):
                run = sum(1 for _ in group)
                for k in range(run if run < 3 else keep):
                    chars.append(ch)
                    starts.append(at + k)
                    ends.append(at + run if run >= 3 else at + k + 1)
                at += run
            hits, _ = self.match_token("".join(chars))
            if hits:
                return tuple(Hit(starts[h.start], ends[h.end - 1], h.entry, "repeat", h.form) for h in hits)
        return ()

    def _long_token(self, token: str) -> tuple[Hit, ...]:
        """A token longer than ``_MAX_TOKEN`` without joiners, searched in one linear pass.

        Terms that may stand inside a longer word (substring and glue-able terms) are found
        in the token read three ways: as written, with symbols dropped, and in leetspeak.
        """
        if not self._loose_built:  # two threads may both build it; either result is the same
            loose = [f for f, e in self.forms.items() if e.mode == "substring" or e.glue]
            self._loose = trie_regex(loose) if loose else None
            self._loose_built = True
        pattern = self._loose
        if pattern is None or self._allowed(token) or token in self.lex.known:
            return ()
        pos = [i for i, c in enumerate(token) if c not in _SYMBOLS]
        bare = "".join(token[i] for i in pos)
        views = [(token, None), (bare, pos)]
        if self.norm.leetspeak:
            views.append(("".join(LEET.get(c, c)[0] for c in token), None))
        hits: dict[tuple[int, int], Hit] = {}
        for text, where in views:
            for m in pattern.finditer(text):
                if self._innocent_around(text, m.start(), m.end()):
                    continue
                start, end = (m.start(), m.end()) if where is None else (where[m.start()], where[m.end() - 1] + 1)
                hits.setdefault((start, end), Hit(start, end, self.forms[m.group()], "substring", m.group()))
        return tuple(hits.values())

    def _glued(self, w: str) -> list[Hit]:
        """Terms inside a longer word that is not itself a known English word."""
        if len(w) < 4 or w in self.lex.known or self._allowed(w):
            return []
        hits: list[Hit] = []
        if self._substring is not None:
            forms = self.forms
            for m in self._substring.finditer(w):
                start, end = m.span()
                # the longest form starting there, of any mode: "mothafucking" is "fucking", not "fuckin"
                end = next((k for k in range(min(len(w), start + _MAX_TOKEN), end, -1) if w[start:k] in forms and w[start:k] not in self._whole_phrases), end)
                hits.append(Hit(start, end, forms[w[start:end]], "substring", w[start:end]))
        if self.norm.glued and len(w) >= 5:
            forms = self.forms
            pieces = self._segment(w)
            glued = [(a, b) for a, b in pieces or () if w[a:b] in forms and forms[w[a:b]].glue]
            if glued and len(pieces or ()) > 1:
                return hits + [Hit(a, b, forms[w[a:b]], "glued", w[a:b]) for a, b in glued]
            for k in range(2, len(w) - 1):
                head, tail = w[:k], w[k:]
                entry = forms.get(head)
                if entry is not None and (
                    entry.glue and (tail in GLUE_WORDS or tail in forms or self._repeat(tail)) or tail in COMPOUND_WORDS and _compounds(entry)
                ):
                    hits.append(Hit(0, k, entry, "glued", head))
                elif k >= 4 and tail in _DERIVED_TAILS:
                    derived = self._derived(head, tail)
                    if derived is not None:
                        hits.append(Hit(0, len(w), forms[derived], "glued", derived))
                entry = forms.get(tail)
                if entry is not None and (entry.glue and (head in GLUE_WORDS or head in forms) or head in COMPOUND_WORDS and _compounds(entry)):
                    hits.append(Hit(k, len(w), entry, "glued", tail))
        return hits

    def _derived(self, head: str, tail: str) -> str | None:
        """The glue-able form that ``head`` + ``tail`` derives with a derivational suffix:
        "slut" + "dom", "twatt" + "ish" (the consonant doubled), "shitti" + "ly" (a -y
        term's stem: "shitty")."""
        forms = self.forms
        stems: list[str] = []
        if tail in DERIVATIONAL_SUFFIXES:
            # a consonant doubles before -ish only: "slobbery" and "snobbery" are words of their own
            stems += [head, head[:-1]] if head[-1] == head[-2] and tail.startswith("ish") else [head]
        if tail in Y_STEM_SUFFIXES and head[-1] == "i":
            stems.append(head[:-1] + "y")
        # a written term or its inflection, not a respelling ("cuky" of "cuck", "slobb" of "slob")
        return next((stem for stem in stems if stem in forms and forms[stem].glue and (forms[stem].term == stem or forms[stem].ending)), None)

    def _segment(self, w: str) -> list[tuple[int, int]] | None:
        """``w`` cut into glue words and forms of two letters or more, with the fewest pieces
        ("youidiotyou"), or None."""
        n = len(w)
        forms = self.forms
        whole = self._whole_phrases
        best: list[list[tuple[int, int]] | None] = [None] * (n + 1)
        best[n] = []
        for i in range(n - 1, -1, -1):
            for j in range(n, i + 1, -1):
                rest = best[j]
                piece = w[i:j]
                if rest is not None and (piece in GLUE_WORDS or piece in forms and piece not in whole) and (best[i] is None or len(rest) + 1 < len(best[i])):  # type: ignore[arg-type]
                    best[i] = [(i, j), *rest]
        return best[0]

    # ---- whole text ---------------------------------------------------------------------------

    def tokens(self, text: str) -> list[tuple[int, int, str]]:
        """``(start, end, token)`` for each token; tokens over ``_MAX_TOKEN`` are split at joiners."""
        return self._tokenize(text)[0]

    def _tokenize(self, text: str) -> tuple[list[tuple[int, int, str]], list[str]]:
        """:meth:`tokens` and the token strings alone."""
        pattern = _TOKEN_SPLIT if "_" in text else _TOKEN_ASCII_SPLIT if text.isascii() else _TOKEN_FAST_SPLIT
        parts = pattern.split(text)
        offsets = list(itertools.accumulate(map(len, parts), initial=0))
        words = parts[1::2]
        found = list(zip(offsets[1::2], offsets[2::2], words))
        if len(text) <= _MAX_TOKEN or max(map(len, words), default=0) <= _MAX_TOKEN:
            return found, words
        out = []
        for start, end, token in found:
            if end - start > _MAX_TOKEN and any(c in _JOIN for c in token):
                out += [(start + p.start(), start + p.end(), p.group()) for p in _PART.finditer(token)]
            else:
                out.append((start, end, token))
        return out, [t[2] for t in out]

    def scan(self, text: str) -> list[Hit]:
        """All hits in canonical ``text``, possibly overlapping; the engine resolves overlaps."""
        tokens, words = self._tokenize(text)
        hits: list[Hit] = []
        results = list(map(self._records.get, words))
        if None in results:
            results = [r or self._record(w) for r, w in zip(results, words)]
        canon = list(map(_CANON, results))
        matched = list(map(bool, map(_HITS, results)))
        if True in matched:
            for k in itertools.compress(range(len(results)), matched):
                start = tokens[k][0]
                hits += [Hit(start + h.start, start + h.end, h.entry, h.method, h.form) for h in results[k][0]]
        if self.norm.separators and len(tokens) > 1:
            hits += self._joined_hits(text, tokens, matched, list(map(_PIECE, results)), list(map(_STARTS, results)))
        if self._phrases and not self._phrases.keys().isdisjoint(canon) and not self._phrase_starts.isdisjoint(zip(canon, canon[1:])):
            hits += self._phrase_hits(tokens, canon)
        if self._allow_phrase_re is not None and hits and not self._allow_first.isdisjoint(canon):
            allowed = [(m.start(), m.end()) for m in self._allow_phrase_re.finditer(text)]
            if allowed:
                hits = [h for h in hits if not any(a <= h.start and h.end <= b for a, b in allowed)]
        return hits

    def _record(self, token: str) -> tuple[tuple[Hit, ...], str, tuple[str, str, bool], bool]:
        """:meth:`match_token` and :meth:`_piece` of ``token`` in one cached record, and whether
        a joined window may start at the token (it may join, and its skeleton begins a form's)."""
        hits, canon = self.match_token(token)
        piece = self._piece(token)
        record = (hits, canon, piece, piece[2] and piece[1] in self._skeleton_prefixes)
        if len(self._records) >= _CACHE_LIMIT:
            self._records.clear()
        self._records[token] = record
        return record

    def _piece(self, token: str) -> tuple[str, str, bool]:
        """A token's letters (joiners dropped), their skeleton, and whether it may join others.

        A number of two or more digits stays a number ("a 55 gallon drum"); single digits
        may join, since they stand for letters in spaced-out leetspeak ("1 d 1 0 t").
        """
        cached = self._pieces.get(token)
        if cached is None:
            letters = token.translate(_DROP_JOINERS)
            joinable = bool(letters) and not (len(letters) > 1 and letters.isdigit())
            cached = (letters, skeleton(letters), joinable)
            if len(self._pieces) >= _CACHE_LIMIT:
                self._pieces.clear()
            self._pieces[token] = cached
        return cached

    def _joined_hits(
        self,
        text: str,
        tokens: list[tuple[int, int, str]],
        matched: list[bool],
        pieces: list[tuple[str, str, bool]] | None = None,
        starters: list[bool] | None = None,
    ) -> list[Hit]:
        """Terms spelled across consecutive tokens, whatever separates them.

        A window of two or more tokens is a hit when its letters are a lexicon form (after
        leetspeak and repeats), none of its tokens has a hit of its own, it is not made of
        real words only ("pen is"), and, inside a spelled-out word, the word is not innocent
        ("c l a s s i c") and the term stands beside connector words ("y o u a s s").
        A gap with an odd number of quotes leaves or enters quoted text, so it ends a window
        (``"f r e a k" in``), while a quote split (``"id" "iot"``) is crossed; there only
        common words count as real words (``"pen" "is"``, but not ``"da" "mn"``), and two
        quoted pieces may also spell a glued term (``"mothaf" "ucking"``).
        Windows are pruned by skeleton prefix, so the scan stays linear.
        """
        if pieces is None:
            pieces = [self._piece(tok) for _s, _e, tok in tokens]
        n = len(tokens)
        prefixes = self._skeleton_prefixes
        hits: list[Hit] = []
        runs: tuple[list[int], list[int]] | None = None
        resume = 0  # windows do not overlap: the next one starts after the last hit
        for i in range(n) if starters is None else itertools.compress(range(n), starters):
            letters, skel, joinable = pieces[i]
            if i < resume or matched[i] or not joinable or skel not in prefixes:
                continue
            best: tuple[int, str, Entry, str] | None = None
            single = len(letters) == 1  # every piece so far one letter: may spell an acronym term ("S O B")
            j = i
            while j + 1 < n and not matched[j + 1] and pieces[j + 1][2]:
                more, more_skel, _ = pieces[j + 1]
                skel = skel + more_skel[1:] if more_skel[:1] == skel[-1:] else skel + more_skel
                if skel not in prefixes or len(letters) + len(more) > _MAX_JOINED:
                    break
                gap_start, gap_end = tokens[j][1], tokens[j + 1][0]
                if (gap_end - gap_start > 1 or text[gap_start] != " ") and len(_QUOTE_RE.findall(text, gap_start, gap_end)) % 2:
                    break
                j += 1
                letters += more
                single = single and len(more) == 1
                found = self._window_lookup(letters) if len(letters) >= 3 else None
                if found is not None:
                    if runs is None:
                        runs = _single_runs(pieces, matched)
                    if self._window_ok(text, tokens, pieces, runs, i, j, found):
                        best = (j, found[0], self.forms[found[0]], "split")
                elif single and self._initials and len(letters) <= MAX_INITIALS:
                    key = self._initial(letters)
                    if key is not None and not self._allowed(key):
                        if runs is None:
                            runs = _single_runs(pieces, matched)
                        if runs[0][i] == i and runs[1][j] == j:  # all of a run of single letters: "S O B", not "s o b e r"
                            best = (j, key, self._initials[key], "initials")
            if best is None:
                continue
            end, form, entry, method = best
            hits.append(Hit(tokens[i][0], tokens[end][1], entry, method, form))
            resume = end + 1
        if _QUOTE_PAIR.search(text):
            hits += self._quote_split_glued(text, tokens, matched, pieces, hits)
        return hits

    def _quote_split_glued(
        self, text: str, tokens: list[tuple[int, int, str]], matched: list[bool], pieces: list[tuple[str, str, bool]], found: list[Hit]
    ) -> list[Hit]:
        """Two quoted pieces that together are a glued term (``"mothaf" "ucking"``), which the
        form-by-form window search above does not read."""
        hits: list[Hit] = []
        runs: tuple[list[int], list[int]] | None = None
        starts = [t[0] for t in tokens]
        seen = -1
        for quote in _QUOTE_RE.finditer(text):
            k = bisect.bisect_right(starts, quote.start()) - 1  # the token before the gap holding this quote
            if k <= seen or k < 0 or k + 1 >= len(tokens) or tokens[k][1] > quote.start():
                continue
            seen = k
            gap = text[tokens[k][1] : tokens[k + 1][0]]
            quotes = len(_QUOTE_RE.findall(gap))
            if quotes % 2 or matched[k] or matched[k + 1]:
                continue
            start, end = tokens[k][0], tokens[k + 1][1]
            if any(h.start < end and start < h.end for h in found):
                continue
            letters = pieces[k][0] + pieces[k + 1][0]
            if len(letters) < 5 or not letters.isalpha() or self._allowed(letters):
                continue
            glued = self._glued(letters)
            if not glued:
                continue
            if runs is None:
                runs = _single_runs(pieces, matched)
            if self._window_ok(text, tokens, pieces, runs, k, k + 1, (glued[0].form, "glued")):
                hits.append(Hit(start, end, glued[0].entry, "split", glued[0].form))
        return hits

    def _window_lookup(self, letters: str) -> tuple[str, str] | None:
        """:meth:`lookup`, cached: spaced-out text repeats the same windows."""
        if letters in self._windows:
            return self._windows[letters]
        found = self.lookup(letters)
        if len(self._windows) >= _CACHE_LIMIT:
            self._windows.clear()
        self._windows[letters] = found
        return found

    def _window_ok(
        self,
        text: str,
        tokens: list[tuple[int, int, str]],
        pieces: list[tuple[str, str, bool]],
        runs: tuple[list[int], list[int]],
        i: int,
        j: int,
        found: tuple[str, str],
    ) -> bool:
        """Is the window ``pieces[i..j]`` spelling ``found`` (form, method) an obfuscation rather than innocent text?"""
        form, method = found
        words = self.lex.words
        gaps = [text[tokens[k][1] : tokens[k + 1][0]] for k in range(i, j)]
        if any(_QUOTE_RE.search(g) for g in gaps):
            # Pieces quoted one by one ("da" "mn") are drawn side by side: only common words
            # there ("pen" "is") are prose; a fragment of one or two letters is not a word.
            if all(self._common(p[0]) for p in pieces[i : j + 1]):
                return False
        elif all(p[0] in words or p[0] in GLUE_WORDS or _possessive(tokens[k][2], p[0], words) for k, p in enumerate(pieces[i : j + 1], i)):
            return False  # "pen is", "Uncle Tom's": real words side by side are not an obfuscation
        elif j == i + 1 and gaps[0] == " " and (pieces[i][0] in FUNCTION_WORDS or pieces[j][0] in FUNCTION_WORDS):
            # A fragment beside a function word ("sh at", "twa at") spells a term only when
            # it is the term as written: "sh it" is shit, "sh at" is not the irregular "shat",
            # "ef in" is not the respelling "efin".
            entry = self.forms[form]
            if method != "lexicon" or entry.ending or form != entry.term:
                return False
        for k in range(i, j):
            a, b = pieces[k][0], pieces[k + 1][0]
            if len(a) == 1 and len(b) > 1 and self._word(b) or len(b) == 1 and len(a) > 1 and self._word(a):
                single = a if len(a) == 1 else b
                # A number before a word ("1 out of 10", "top 5 hits"), and an initial or list
                # item before or after one ("S. Hit list", "Mr. T, it's"), are prose.
                if single.isdigit() or _PROSE_GAP.search(text, tokens[k][1], tokens[k + 1][0]):
                    return False
        # Single letters next to the window spell one word with it: "c l a s s".
        lo, hi = max(runs[0][i], i - _CONTEXT), min(runs[1][j], j + _CONTEXT)
        if (lo, hi) == (i, j):
            return True
        left = "".join(p[0] for p in pieces[lo:i])
        window = "".join(p[0] for p in pieces[i : j + 1])
        right = "".join(p[0] for p in pieces[j + 1 : hi + 1])
        return self._inside_ok(left + window + right, len(left), len(left) + len(window), form)

    def _common(self, letters: str) -> bool:
        """A word that stands on its own in prose: a function or glue word, or a frequent word of three letters or more."""
        return letters in FUNCTION_WORDS or letters in GLUE_WORDS or letters in self.lex.common

    def _word(self, letters: str) -> bool:
        """Is ``letters`` a real word (an English piece of a form, a function or glue word)?"""
        return letters in self.lex.words or letters in GLUE_WORDS or letters in FUNCTION_WORDS or letters.rstrip("s") in self.lex.words

    def _inside_ok(self, word: str, a: int, b: int, form: str) -> bool:
        """May the form at ``word[a:b]`` count inside the spelled-out ``word``? (cached)"""
        key = (word, a, b, form)
        cached = self._inside.get(key)
        if cached is not None:
            return cached
        if self._allowed(word) or word in self.lex.known or self._innocent_around(word, a, b):
            ok = False
        elif self.forms[form].mode == "substring":
            ok = True
        else:
            connectors = self._connectors
            left_ok = a == 0 or any(word[k:a] in connectors for k in range(max(0, a - 12), a))
            right_ok = b == len(word) or any(word[b:k] in connectors for k in range(b + 1, min(len(word), b + 12) + 1))
            ok = left_ok and right_ok
        if len(self._inside) >= _CACHE_LIMIT:
            self._inside.clear()
        self._inside[key] = ok
        return ok

    def _innocent_around(self, text: str, a: int, b: int) -> bool:
        """True when an allowed or known innocent word in ``text`` covers ``text[a:b]``."""
        innocent = self._innocent
        for length in self._innocent_lengths:
            if length < b - a:
                continue
            for x in range(max(0, b - length), min(a, len(text) - length) + 1):
                word = text[x : x + length]
                if word in innocent or self._allowed(word):
                    return True
        return False

    def _phrase_hits(self, tokens: list[tuple[int, int, str]], canon: list[str]) -> list[Hit]:
        hits: list[Hit] = []
        for i, word in enumerate(canon):
            for words, entry in self._phrases.get(word, ()):
                k = len(words)
                if tuple(canon[i : i + k]) == words:
                    hits.append(Hit(tokens[i][0], tokens[i + k - 1][1], entry, "phrase", " ".join(words)))
        return hits
