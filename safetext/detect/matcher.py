"""The per-prompt lexicon matcher: pure Python, dict lookups and a few regexes.

It scans folded text (see :mod:`safetext.detect.normalize`) token by token. Each token is
tried whole (exact, inflected, leetspeak, repeated letters, masked), then in parts, then for
glued terms. Letters split by spaces or dots are joined across tokens. Results are cached per
token, since prompts reuse the same words.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from safetext.detect.lexicon import GLUE_WORDS, CompiledLexicon, Entry
from safetext.detect.settings import NormalizeSettings
from safetext.detect.trie import trie_regex

# Digits and symbols read as letters. Ambiguous ones list every reading.
LEET: dict[str, str] = {
    "0": "o", "1": "il", "2": "z", "3": "e", "4": "a", "5": "s", "6": "gb", "7": "t", "8": "b", "9": "g",
    "@": "a", "$": "s", "!": "i", "|": "il", "+": "t", "#": "h", "€": "e", "¢": "c", "£": "l", "¡": "i",
}
_WORD = r"[^\W_]|[@$!|+*#€¢£¡]"
TOKEN_RE = re.compile(rf"(?:{_WORD})+(?:[.\-_'’~](?:{_WORD})+)*")
_JOIN = frozenset(".-_'’~*")
_MASK = frozenset("*#_")
_SEPARATOR_GAP = re.compile(r"[\s.\-*_~/\\|,:+]{1,3}")
_MAX_VARIANTS = 32
_MAX_TOKEN = 64  # longer tokens get only exact and substring checks, keeping the scan linear
_DOUBLE = re.compile(r"(.)\1")
_MAX_RUN = 40  # single-letter runs longer than this are searched with the trie regex only
_CACHE_LIMIT = 50_000


@dataclass(frozen=True, slots=True)
class Hit:
    """A match in folded-text coordinates."""

    start: int
    end: int
    entry: Entry
    method: str
    form: str


def _runs(s: str) -> tuple[str, tuple[int, ...]]:
    letters, counts = [], []
    for ch, group in itertools.groupby(s):
        letters.append(ch)
        counts.append(sum(1 for _ in group))
    return "".join(letters), tuple(counts)


class Matcher:
    """Finds lexicon terms in folded text. One instance per compiled lexicon; thread-safe reads."""

    def __init__(self, lexicon: CompiledLexicon, normalization: NormalizeSettings | None = None) -> None:
        self.lex = lexicon
        self.norm = normalization if normalization is not None else NormalizeSettings()
        self.forms = lexicon.forms
        self._collapsed: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
        self._by_length: dict[int, list[str]] = {}
        for form in self.forms:
            key, counts = _runs(form)
            self._collapsed.setdefault(key, []).append((form, counts))
            self._by_length.setdefault(len(form), []).append(form)
        self._lengths = sorted({len(f) for f in self.forms if 3 <= len(f) <= 24}, reverse=True)
        self._all_forms = trie_regex(self.forms)
        substring_forms = [f for f, e in self.forms.items() if e.mode == "substring"]
        self._substring = trie_regex(substring_forms) if substring_forms else None
        self._phrases: dict[str, list[tuple[tuple[str, ...], Entry]]] = {}
        for words, entry in lexicon.phrases:
            self._phrases.setdefault(words[0], []).append((words, entry))
        self._allow_phrase_re = (
            re.compile(
                "|".join(
                    r"(?<![^\W_])" + r"[\s\-_.]+".join(re.escape(w) for w in phrase) + r"(?![^\W_])"
                    for phrase in lexicon.allow_phrases
                )
            )
            if lexicon.allow_phrases
            else None
        )
        self._cache: dict[str, tuple[tuple[Hit, ...], str]] = {}

    # ---- whole-string lookups -------------------------------------------------------------

    def _allowed(self, word: str) -> bool:
        allow = self.lex.allow_words
        if word in allow:
            return True
        for suffix in ("s", "es", "'s"):
            if word.endswith(suffix) and word[: -len(suffix)] in allow:
                return True
        return False

    def _leet_variants(self, s: str) -> list[str]:
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
        for form, form_counts in self._collapsed.get(key, ()):
            if all(a >= b for a, b in zip(counts, form_counts)):
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
        plain = letters.isalpha()
        if plain and not _DOUBLE.search(letters):
            return None
        if len(letters) > _MAX_TOKEN:
            return None
        variants = [letters] if plain or not self.norm.leetspeak else self._leet_variants(letters)
        if not plain and self.norm.leetspeak:
            for v in variants:
                if v in self.forms and not self._allowed(v):
                    return v, "leetspeak"
        if self.norm.repeats:
            for v in variants:
                form = self._repeat(v)
                if form is not None and not self._allowed(v):
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
        found = self.lookup(letters)
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
        plain = letters if letters.isalpha() else None
        if plain is None and self.norm.leetspeak and not letters.isdigit():
            plain = next((v for v in self._leet_variants(letters) if v.isalpha()), None)
        if plain is not None and len(pos) == len(plain):
            hits = self._glued(plain)
            if hits:
                return tuple(Hit(pos[h.start], pos[h.end - 1] + 1, h.entry, h.method, h.form) for h in hits), plain
        return (), plain or letters

    def _long_token(self, token: str) -> tuple[Hit, ...]:
        if self._substring is None or self._allowed(token):
            return ()
        return tuple(
            Hit(m.start(), m.end(), self.forms[m.group()], "substring", m.group()) for m in self._substring.finditer(token)
        )

    def _glued(self, w: str) -> list[Hit]:
        """Terms inside a longer word that is not itself a known English word."""
        if len(w) < 4 or w in self.lex.known or self._allowed(w):
            return []
        hits: list[Hit] = []
        if self._substring is not None:
            for m in self._substring.finditer(w):
                hits.append(Hit(m.start(), m.end(), self.forms[m.group()], "substring", m.group()))
        if self.norm.glued and len(w) >= 5:
            forms = self.forms
            for k in range(2, len(w) - 1):
                head, tail = w[:k], w[k:]
                entry = forms.get(head)
                if entry is not None and entry.glue and (tail in GLUE_WORDS or tail in forms or self._repeat(tail)):
                    hits.append(Hit(0, k, entry, "glued", head))
                entry = forms.get(tail)
                if entry is not None and entry.glue and (head in GLUE_WORDS or head in forms):
                    hits.append(Hit(k, len(w), entry, "glued", tail))
        return hits

    # ---- whole text ---------------------------------------------------------------------------

    def scan(self, text: str) -> list[Hit]:
        """All hits in folded ``text``, possibly overlapping; the engine resolves overlaps."""
        tokens = [(m.start(), m.end(), m.group()) for m in TOKEN_RE.finditer(text)]
        hits: list[Hit] = []
        canon: list[str] = []
        matched: list[bool] = []
        for start, _end, tok in tokens:
            token_hits, word = self.match_token(tok)
            canon.append(word)
            matched.append(bool(token_hits))
            hits += [Hit(start + h.start, start + h.end, h.entry, h.method, h.form) for h in token_hits]
        if self.norm.separators:
            hits += self._split_hits(text, tokens, matched)
        if self._phrases:
            hits += self._phrase_hits(tokens, canon)
        if self._allow_phrase_re is not None and hits:
            allowed = [(m.start(), m.end()) for m in self._allow_phrase_re.finditer(text)]
            if allowed:
                hits = [h for h in hits if not any(a <= h.start and h.end <= b for a, b in allowed)]
        return hits

    def _split_hits(self, text: str, tokens: list[tuple[int, int, str]], matched: list[bool]) -> list[Hit]:
        """Letters split by separators: "i d i o t", "f.u.c.k" across tokens, and "fu ck" pairs."""
        hits: list[Hit] = []
        n = len(tokens)
        i = 0
        while i < n:
            j = i
            while (
                j + 1 < n
                and len(tokens[j][2]) == 1
                and len(tokens[j + 1][2]) == 1
                and _SEPARATOR_GAP.fullmatch(text, tokens[j][1], tokens[j + 1][0])
            ):
                j += 1
            if j - i + 1 >= 3 and len(tokens[i][2]) == 1:
                hits += self._run_hits(tokens[i : j + 1])
                i = j + 1
                continue
            i += 1
        for k in range(n - 1):
            (s1, e1, a), (s2, e2, b) = tokens[k], tokens[k + 1]
            if matched[k] or matched[k + 1] or len(a) > 6 or len(b) > 6 or e2 - s1 - len(a) - len(b) != 1:
                continue
            if text[e1] not in " .-" or (len(a) == 1 and len(b) == 1):
                continue
            found = self.lookup(a + b)
            if found is None:
                continue
            words = self.lex.words
            if (a in words or a in GLUE_WORDS) and (b in words or b in GLUE_WORDS):
                continue  # "pen is": two real words are not an obfuscation
            hits.append(Hit(s1, e2, self.forms[found[0]], "split", found[0]))
        return hits

    def _run_hits(self, run: list[tuple[int, int, str]]) -> list[Hit]:
        letters = "".join(t[2] for t in run)
        if len(run) > _MAX_RUN:  # very long runs: linear trie search for plain and simple-leet forms
            hits = []
            for text in dict.fromkeys((letters, "".join(LEET.get(c, c)[0] for c in letters))):
                for m in self._all_forms.finditer(text):
                    form = m.group()
                    if len(form) >= 3:
                        hits.append(Hit(run[m.start()][0], run[m.end() - 1][1], self.forms[form], "split", form))
            return hits
        hits: list[Hit] = []
        covered = [False] * len(run)
        for length in self._lengths:
            if length > len(run):
                continue
            for a in range(0, len(run) - length + 1):
                if any(covered[a : a + length]):
                    continue
                found = self.lookup(letters[a : a + length])
                if found is None:
                    continue
                hits.append(Hit(run[a][0], run[a + length - 1][1], self.forms[found[0]], "split", found[0]))
                for k in range(a, a + length):
                    covered[k] = True
        return hits

    def _phrase_hits(self, tokens: list[tuple[int, int, str]], canon: list[str]) -> list[Hit]:
        hits: list[Hit] = []
        for i, word in enumerate(canon):
            for words, entry in self._phrases.get(word, ()):
                k = len(words)
                if tuple(canon[i : i + k]) == words:
                    hits.append(Hit(tokens[i][0], tokens[i + k - 1][1], entry, "phrase", " ".join(words)))
        return hits
