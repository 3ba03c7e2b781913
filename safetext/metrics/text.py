"""Normalising OCR output so that leakage is judged on letters, not on OCR noise or spelling tricks.

Two forms. ``normalize_text`` is for people: case-folded, accents stripped, punctuation
turned into spaces. ``skeleton`` is for matching: it also folds the characters that OCR
and obfuscators swap (0/o, 1/l/i and a ``|`` or ``!`` before a letter, 5/s/$, 4/@/a, 3/e, 7/t, 8/b), so ``1D10T``, ``ID1OT``
and ``lDIOT`` all match ``idiot``. Both sides of a comparison go through the same function,
so folding ``l`` into ``i`` cannot create a false match by itself.
"""

from __future__ import annotations

import re
import unicodedata

_CONFUSABLE = str.maketrans(
    {
        "0": "o",
        "1": "i",
        "l": "i",
        "5": "s",
        "$": "s",
        "4": "a",
        "@": "a",
        "3": "e",
        "7": "t",
        "+": "t",
        "8": "b",
    }
)
_NON_WORD = re.compile(r"[^a-z0-9]+")
_BAR_AS_I = re.compile(r"[!|](?=[a-z0-9])")  # "|DIOT", "id!ot" -> i; but "IDIOT!" keeps its "!" as punctuation


def normalize_text(text: str) -> str:
    """Case-folded ASCII letters and digits, words separated by single spaces."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    ascii_text = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return _NON_WORD.sub(" ", ascii_text).strip()


def skeleton(text: str) -> str:
    """The matching form: confusable characters folded *before* punctuation is dropped (``$``, ``|``, ``@``)."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text))
    ascii_text = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return _NON_WORD.sub(" ", _BAR_AS_I.sub("i", ascii_text).translate(_CONFUSABLE)).strip()


def tokens(text: str) -> list[str]:
    """The skeleton's words."""
    return skeleton(text).split()


def joined(text: str) -> str:
    """The whole skeleton without separators: ``S.T.U.P.I.D`` and ``I D I O T`` become one word."""
    return "".join(tokens(text))
