"""Text canonicalisation that remembers where every character came from.

Detection runs on the text as a text-to-image encoder reads it, so that two prompts the
encoder cannot tell apart are also one prompt to detection:

* HTML entities are unescaped twice (CLIP's ``basic_clean`` does ``html.unescape`` twice):
  ``id&#105;ot`` is ``idiot``, ``&amp;lt;`` is ``<``.
* Control characters are dropped (ftfy in CLIP's cleaning, and T5's SentencePiece
  normaliser, remove them), except tab, line feed, form feed and carriage return, which are
  whitespace.
* Format characters (zero-width, bidi controls, soft hyphen) and combining marks are
  dropped: they render as nothing or as an accent.
* Every whitespace run becomes one space (CLIP's ``whitespace_clean``): ``idi  ot`` and
  ``idi ot`` give CLIP the same token ids.
* Curly quotes become straight ones (ftfy's ``uncurl_quotes`` in CLIP's cleaning).
* Unicode compatibility folding, as NFKC does (fullwidth forms, ligatures, mathematical
  and circled letters), with accents removed; then visual look-alikes are mapped to the
  ASCII letter they show, so the text reads as the image will.
* Lower case. Letters whose two cases read differently (Greek mu: ``Μ`` reads m, ``μ``
  reads u) give :func:`case_variants`, which detection reads too, since CLIP lower-cases
  before it tokenizes.

Look-alikes come from Unicode's confusables table (UTS #39, ``confusables.txt``) as shipped
by the ``confusable-homoglyphs`` package (MIT; the one kept PyPI package that carries the
whole table, covering Armenian, Cherokee, Latin-extended and the other scripts, as data
with a small lookup API). Its data (about 1 MB of JSON) is loaded on the first character
that neither the built-in overrides nor compatibility folding resolve, so pure-ASCII prompts
never load it; each folded character is cached. A short built-in table overrides UTS #39
where a rendered letter reads differently from its skeleton (Cyrillic ``и`` reads ``u``,
capital-I shapes read ``i`` rather than the skeleton's ``l``).

Spans must index the prompt the user wrote, so each canonical character carries the
``[start, end)`` slice of the original text it came from; an unescaped entity maps to the
whole entity, a collapsed whitespace run to the whole run.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

# Plain ASCII text that canonicalises character for character (no entity, no control
# character, no whitespace run) keeps an identity offset map.
_ASCII_SLOW = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f&]|[ \t\n\r\x0c]{2}")
_ASCII_SPACES = str.maketrans("\t\n\r\x0c", "    ")
_ASCII_WHITESPACE = frozenset(" \t\n\r\x0c")

# The character references html.unescape replaces (the standard library's own pattern).
_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")

# Characters that render as nothing and are not format characters (category Cf).
_INVISIBLE = frozenset(
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200c\u200d\u200e\u200f"
    "\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069"
    "\u3164\ufeff\uffa0"
)

# Readings that take precedence over UTS #39: letters whose rendered shape reads as another
# letter than their skeleton (Cyrillic и as u, capital I shapes as i), letters UTS #39 does
# not map (ß, æ), and punctuation standing in for quotes, dashes, dots and spaces.
_OVERRIDES: dict[str, str] = {
    # Cyrillic
    "а": "a", "б": "b", "в": "b", "г": "r", "д": "d", "е": "e", "ё": "e", "з": "3", "и": "u",
    "к": "k", "л": "n", "м": "m", "н": "h", "о": "o", "п": "n", "р": "p", "с": "c", "т": "t",
    "у": "y", "ф": "f", "х": "x", "ц": "u", "ч": "4", "ш": "w", "щ": "w", "ь": "b", "ы": "bl",
    "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l",
    "А": "a", "В": "b", "Е": "e", "Ё": "e", "З": "3", "К": "k", "М": "m", "Н": "h", "О": "o",
    "Р": "p", "С": "c", "Т": "t", "У": "y", "Х": "x", "І": "i", "Ј": "j", "Ѕ": "s", "Ӏ": "l",
    # Greek
    "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "ζ": "z", "η": "n", "θ": "o", "ι": "i",
    "κ": "k", "λ": "l", "μ": "u", "ν": "v", "ξ": "e", "ο": "o", "π": "n", "ρ": "p", "σ": "o",
    "ς": "s", "τ": "t", "υ": "u", "φ": "f", "χ": "x", "ψ": "w", "ω": "w",
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n",
    "Ο": "o", "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x",
    # Latin letters without a decomposition, and small capitals
    "ı": "i", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŧ": "t", "ƒ": "f", "ß": "ss", "æ": "ae",
    "œ": "oe", "ɑ": "a", "ɡ": "g", "ɪ": "i", "ʏ": "y", "ʀ": "r", "ʜ": "h", "ʟ": "l", "ɴ": "n",
    "ʙ": "b", "ɢ": "g", "ᴀ": "a", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ꜰ": "f", "ᴊ": "j", "ᴋ": "k",
    "ᴍ": "m", "ᴏ": "o", "ᴘ": "p", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ᴢ": "z",
    # Punctuation that stands in for quotes, dashes, dots or spaces
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
    "\u2022": ".", "\u00b7": ".", "\u2219": ".", "\u2027": ".",
    "\u00a0": " ", "\u2007": " ", "\u202f": " ", "\u3000": " ",
}

_FOLD_CACHE: dict[str, str] = {}
_FOLD_CACHE_LIMIT = 65_536


@dataclass(frozen=True, slots=True)
class Normalized:
    """A canonical string plus, for each of its characters, the original slice it came from."""

    text: str
    starts: tuple[int, ...] | None  # None: identity map (plain ASCII fast path)
    ends: tuple[int, ...] | None
    original_length: int

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Map a ``[start, end)`` slice of the canonical text back to the original text."""
        if self.starts is None or self.ends is None:
            return start, end
        if end <= start:
            pos = self.starts[start] if start < len(self.starts) else self.original_length
            return pos, pos
        return self.starts[start], self.ends[end - 1]


def strip_marks(text: str) -> str:
    """Compatibility decomposition without combining marks: NFKC's folding, accents removed."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _uts39(ch: str) -> str | None:
    """The ASCII letter, digit or symbol that ``ch`` is confusable with in UTS #39, if any."""
    from confusable_homoglyphs import confusables  # ~1 MB of JSON, loaded on first need only

    found = confusables.is_confusable(ch, greedy=True, preferred_aliases=[])
    if not found:
        return None
    readings = [strip_marks(h["c"]) for h in found[0]["homoglyphs"]]
    readings = [r for r in readings if r and r.isascii() and r.strip()]
    if not readings:
        return None
    best = min(readings, key=lambda r: (not r.isalpha(), not r.isalnum(), len(r)))
    if best in ("l", "I"):
        # UTS #39 folds every vertical stroke to l. An upper-case one reads as capital I, a
        # lower-case one as l; a caseless one (ǀ, ׀, ∣) reads either way, which is what the
        # matcher reads "|" as.
        category = unicodedata.category(ch)
        return "i" if category == "Lu" else "l" if category == "Ll" else "|"
    return best.lower()


def _own_reading(ch: str) -> str | None:
    """The reading of ``ch`` by itself: the overrides, compatibility folding to ASCII, UTS #39."""
    folded = _OVERRIDES.get(ch)
    if folded is not None:
        return folded
    stripped = strip_marks(ch)
    if stripped.isascii():
        return stripped.lower()
    return _uts39(ch) if len(stripped) == 1 else None


def fold_char(ch: str) -> str:
    """The canonical reading of one non-ASCII character (cached): overrides, NFKC, UTS #39;
    a character with none takes its other case's reading (Armenian capital Ho reads h, as
    small ho does), since an encoder that changes case reads it as that one."""
    cached = _FOLD_CACHE.get(ch)
    if cached is not None:
        return cached
    folded = _own_reading(ch)
    if folded is None:
        other = _other_case(ch)
        folded = _own_reading(other) if other is not None else None
    if folded is None:
        folded = strip_marks(ch).lower()
    if len(_FOLD_CACHE) >= _FOLD_CACHE_LIMIT:
        _FOLD_CACHE.clear()
    _FOLD_CACHE[ch] = folded
    return folded


def _other_case(ch: str) -> str | None:
    """The one-character other case of ``ch`` (lower or upper), if it has one."""
    for other in (ch.lower(), ch.upper()):
        if other != ch and len(other) == 1:
            return other
    return None


_CASE_SWAP: dict[str, str | None] = {}


def _case_swap(ch: str) -> str | None:
    """The other case of non-ASCII ``ch`` when the two read as different letters (Greek
    capital mu reads m, small mu reads u), else None (cached)."""
    if ch in _CASE_SWAP:
        return _CASE_SWAP[ch]
    other = _other_case(ch)
    swap = other if other is not None and fold_char(other) != fold_char(ch) else None
    if len(_CASE_SWAP) < _FOLD_CACHE_LIMIT:
        _CASE_SWAP[ch] = swap
    return swap


def case_variants(text: str) -> list[str]:
    """``text`` with its case-ambiguous letters all lower case, then all upper case (same
    length, so offsets still index ``text``), where that changes how the text reads.

    CLIP lower-cases a prompt before tokenizing it, so ``ΒDSΜ`` and ``βdsμ`` are one input
    to it, although small mu and capital mu read as different letters. Detection reads each
    variant as well. ASCII text has none.
    """
    if text.isascii():
        return []
    swaps = {ch: s for ch in set(text) if not ch.isascii() and (s := _case_swap(ch)) is not None}
    if not swaps:
        return []
    out = []
    for pick in (str.islower, str.isupper):
        variant = "".join(c if c not in swaps or pick(c) else swaps[c] for c in text)
        if variant != text and variant not in out:
            out.append(variant)
    return out


def _unescape(chars: list[str], starts: list[int], ends: list[int]) -> None:
    """Replace HTML character references in place; replaced text maps to the whole reference."""
    joined = "".join(chars)
    if "&" not in joined:
        return
    out_c: list[str] = []
    out_s: list[int] = []
    out_e: list[int] = []
    pos = 0
    for m in _CHARREF.finditer(joined):
        replaced = html.unescape(m.group())
        if replaced == m.group():
            continue
        out_c += chars[pos : m.start()]
        out_s += starts[pos : m.start()]
        out_e += ends[pos : m.start()]
        start, end = starts[m.start()], ends[m.end() - 1]
        for c in replaced:
            out_c.append(c)
            out_s.append(start)
            out_e.append(end)
        pos = m.end()
    if pos == 0:
        return
    out_c += chars[pos:]
    out_s += starts[pos:]
    out_e += ends[pos:]
    chars[:], starts[:], ends[:] = out_c, out_s, out_e


# After tabs and newlines became spaces: a run that starts with a control character, or a
# space followed by more spaces or control characters.
_ASCII_IRREGULAR = re.compile(r"[\x00-\x1f\x7f][\x00-\x20\x7f]*| [\x00-\x20\x7f]+")


def _ascii_runs(text: str) -> Normalized:
    """:func:`normalize` of ASCII text without entities, in slices rather than per character:
    control characters dropped, each whitespace run one space mapped to the whole run."""
    low = text.lower().translate(_ASCII_SPACES)
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pos = 0
    for m in _ASCII_IRREGULAR.finditer(low):
        a, b = m.span()
        out.append(low[pos:a])
        starts.extend(range(pos, a))
        ends.extend(range(pos + 1, a + 1))
        run = m.group()
        first = run.find(" ")
        if first >= 0:
            out.append(" ")
            starts.append(a + first)
            ends.append(a + run.rfind(" ") + 1)
        pos = b
    out.append(low[pos:])
    starts.extend(range(pos, len(low)))
    ends.extend(range(pos + 1, len(low) + 1))
    return Normalized("".join(out), tuple(starts), tuple(ends), len(text))


def normalize(text: str, *, unicode: bool = True, invisible: bool = True) -> Normalized:
    """Canonicalise ``text`` for matching and keep the offset map back to ``text``.

    ``unicode`` switches compatibility folding and look-alike mapping, ``invisible`` the
    dropping of format characters and combining marks. Entity unescaping, control
    characters and whitespace runs are always canonicalised: the encoder does so too.
    """
    if text.isascii():
        if text.isprintable():  # no control character, no tab or newline: only spaces can run
            if "  " not in text and "&" not in text:
                return Normalized(text.lower(), None, None, len(text))
        elif not _ASCII_SLOW.search(text):
            return Normalized(text.lower().translate(_ASCII_SPACES), None, None, len(text))
        if "&" not in text:
            return _ascii_runs(text)
    source: Iterable[tuple[str, int, int]] = ((ch, i, i + 1) for i, ch in enumerate(text))
    if "&" in text:
        chars, starts, ends = list(text), list(range(len(text))), list(range(1, len(text) + 1))
        _unescape(chars, starts, ends)
        _unescape(chars, starts, ends)  # CLIP unescapes twice: &amp;lt; is <
        source = zip(chars, starts, ends)
    cache = _FOLD_CACHE
    out: list[str] = []
    out_s: list[int] = []
    out_e: list[int] = []
    for ch, start, end in source:
        if ch.isascii():
            if ch in _ASCII_WHITESPACE:
                piece = " "
            elif ch < " " or ch == "\x7f":
                continue
            else:
                piece = ch.lower()
        else:
            category = unicodedata.category(ch)
            if category == "Cc":
                piece = " " if ch.isspace() else ""
            elif invisible and (ch in _INVISIBLE or category in ("Cf", "Mn", "Me")):
                continue
            elif ch.isspace():
                piece = " "
            elif unicode:
                piece = cache.get(ch) or fold_char(ch)
            else:
                piece = ch.lower()
        for c in piece:
            if c == " " and out and out[-1] == " ":
                out_e[-1] = end  # one space stands for the whole whitespace run
                continue
            out.append(c)
            out_s.append(start)
            out_e.append(end)
    return Normalized("".join(out), tuple(out_s), tuple(out_e), len(text))
