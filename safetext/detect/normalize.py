"""Text normalisation that remembers where every character came from.

Detection runs on a folded string (lower case, confusables and fullwidth forms mapped to
ASCII, zero-width and soft-hyphen characters dropped), but spans must index the prompt the
user wrote. Each normalised character therefore carries the ``[start, end)`` slice of the
original text it came from.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Characters that render as nothing. Attackers insert them to split a word invisibly.
_INVISIBLE = frozenset(
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200c\u200d\u200e\u200f"
    "\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069"
    "\u3164\ufeff\uffa0"
)

# Look-alikes that NFKD does not fold: Cyrillic, Greek, small capitals and a few Latin letters.
_CONFUSABLES: dict[str, str] = {
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
    # Punctuation that stands in for quotes or separators
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
    "\u2022": ".", "\u00b7": ".", "\u2219": ".", "\u2027": ".",
    "\u00a0": " ", "\u2007": " ", "\u202f": " ", "\u3000": " ",
}


@dataclass(frozen=True, slots=True)
class Normalized:
    """A folded string plus, for each of its characters, the original slice it came from."""

    text: str
    starts: tuple[int, ...] | None  # None: identity map (pure ASCII fast path)
    ends: tuple[int, ...] | None
    original_length: int

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Map a ``[start, end)`` slice of the normalised text back to the original text."""
        if self.starts is None or self.ends is None:
            return start, end
        if end <= start:
            pos = self.starts[start] if start < len(self.starts) else self.original_length
            return pos, pos
        return self.starts[start], self.ends[end - 1]


def _fold_char(ch: str, *, unicode: bool) -> str:
    """Fold one non-ASCII character: confusables map, then NFKD without combining marks."""
    if unicode:
        mapped = _CONFUSABLES.get(ch)
        if mapped is not None:
            return mapped
        decomposed = unicodedata.normalize("NFKD", ch)
        ch = "".join(c for c in decomposed if not unicodedata.combining(c))
    return ch.lower()


def normalize(text: str, *, unicode: bool = True, invisible: bool = True) -> Normalized:
    """Fold ``text`` for matching and keep the offset map back to ``text``.

    Control characters become spaces, so they split words rather than hide inside them.
    Pure-ASCII text (the common case) takes a fast path with an identity offset map.
    """
    if text.isascii():
        folded = _ASCII_CONTROL.sub(" ", text.lower())
        return Normalized(folded, None, None, len(text))
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for i, ch in enumerate(text):
        if ch.isascii():
            code = ord(ch)
            piece = " " if code < 32 or code == 127 else ch.lower()
        elif invisible and (ch in _INVISIBLE or unicodedata.category(ch) in ("Cf", "Mn", "Me")):
            continue
        else:
            piece = _fold_char(ch, unicode=unicode)
            if unicodedata.category(ch) == "Cc":
                piece = " "
        for c in piece:
            out.append(c)
            starts.append(i)
            ends.append(i + 1)
    return Normalized("".join(out), tuple(starts), tuple(ends), len(text))
