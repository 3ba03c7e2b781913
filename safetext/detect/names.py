"""Tell a person's name from a toxic word: "Dick Smith", "Philip Dick", "Fanny Brice".

A lexicon word that is also a given name or a surname is read as part of a person's name
when it is written like one (``Dick``, ``DICK``) and its neighbour is a name written the
same way: a given name followed by a surname ("Dick Smith"), or a surname after a given
name ("Philip Dick"). The neighbour counts as a name only when it is more common as a name
than as an English word, so "Smith", "Cheney" and "Young" are names and "Head", "Love",
"Big" and "My" are not ("Dick Head" and "Suck My Dick" stay toxic).

Words whose everyday sense is innocent (a policy's ``proper_nouns`` categories) are also
read as part of any proper noun they are capitalised in ("Tit Willow", "Knob Noster"),
beside a capitalised word that is not a frequent English word.

Name frequencies: the ``names`` package's tables from the 1990 US Census (88,799 surnames,
5,494 given names). Word frequencies: wordfreq. Both load on first use.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from importlib import resources

log = logging.getLogger(__name__)

NAME_RATIO = 1.0
"""A neighbour is a name when its share of the population is at least this times its frequency as an English word."""

_TABLES = {"surname": ("dist.all.last",), "given": ("dist.male.first", "dist.female.first")}
_WORD = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True, slots=True)
class NameTables:
    """Census shares (fraction of people) of surnames and given names, keyed by lower-case name."""

    surname: dict[str, float]
    given: dict[str, float]


_lock = threading.Lock()
_tables: NameTables | None = None


def _read(files: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    root = resources.files("names")
    for name in files:
        for line in root.joinpath(name).read_text(encoding="ascii").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                key = parts[0].lower()
                out[key] = max(out.get(key, 0.0), float(parts[1]) / 100)
    return out


def name_tables() -> NameTables | None:
    """The census tables, loaded once; None (and a warning) when the ``names`` package is missing."""
    global _tables
    if _tables is None:
        with _lock:
            if _tables is None:
                try:
                    _tables = NameTables(**{kind: _read(files) for kind, files in _TABLES.items()})
                except (ImportError, ModuleNotFoundError, FileNotFoundError, OSError) as exc:
                    log.warning("the 'names' package is unavailable (%s); names such as 'Dick Smith' are read as words", exc)
                    _tables = NameTables({}, {})
    return _tables if _tables.surname else None


def _word_frequency(word: str) -> float:
    try:
        from wordfreq import word_frequency
    except ImportError:  # pragma: no cover - wordfreq is a core dependency
        return 0.0
    return float(word_frequency(word, "en"))


def _styled_alike(a: str, b: str) -> bool:
    """Both capitalised (``Dick Smith``) or both upper case (``DICK SMITH``)."""
    if a.isupper() and b.isupper():
        return len(a) > 1 and len(b) > 1
    return a[:1].isupper() and a[1:].islower() and b[:1].isupper() and b[1:].islower()


def _name_like(word: str, shares: dict[str, float]) -> bool:
    share = shares.get(word.lower(), 0.0)
    return share > 0.0 and share >= NAME_RATIO * _word_frequency(word.lower())


def name_partner(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Where the other half of a person's name lies, if ``text[start:end]`` is one half of one.

    ``text`` is the prompt as written (case kept). Returns the neighbour's ``(start, end)``,
    so the caller can refuse the reading when that neighbour is itself a toxic word.
    """
    word = text[start:end]
    if not (word.isascii() and word.isalpha()):
        return None
    tables = name_tables()
    if tables is None:
        return None
    key = word.lower()
    if key in tables.given:  # given name, then a surname: "Dick Smith"
        after = _WORD.match(text, end + 1) if text[end : end + 1] == " " else None
        whole = after is not None and (after.end() == len(text) or not text[after.end()].isalnum())
        if after is not None and whole and _styled_alike(word, after.group()) and _name_like(after.group(), tables.surname):
            return after.span()
    if key in tables.surname and start >= 2 and text[start - 1] == " ":  # a surname after a given name: "Philip Dick"
        before = _last_word(text, start - 1)
        if before is not None and _styled_alike(before[2], word) and _name_like(before[2], tables.given):
            return before[0], before[1]
    return None


PROPER_MAX_ZIPF = 5.0
"""A capitalised neighbour makes a proper noun only when rarer than this as an English word (wordfreq Zipf)."""


def proper_partner(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The capitalised neighbour that makes ``text[start:end]`` part of a proper noun, if any.

    For words whose everyday sense is innocent ("Tit Willow", "Knob Noster"): the word and
    a neighbour, one space away, are both capitalised, and the neighbour is not a frequent
    English word (so "Pimp My Ride" and "Snatch It" do not count).
    """
    word = text[start:end]
    if not (word.isascii() and word.isalpha() and word[:1].isupper() and word[1:].islower()):
        return None
    after = _WORD.match(text, end + 1) if text[end : end + 1] == " " else None
    if after is not None and (after.end() == len(text) or not text[after.end()].isalnum()) and _proper(after.group()):
        return after.span()
    before = _last_word(text, start - 1) if start >= 2 and text[start - 1] == " " else None
    if before is not None and _proper(before[2]):
        return before[0], before[1]
    return None


def _proper(word: str) -> bool:
    if len(word) < 2 or not (word[:1].isupper() and word[1:].islower()):
        return False
    try:
        from wordfreq import zipf_frequency
    except ImportError:  # pragma: no cover - wordfreq is a core dependency
        return False
    return float(zipf_frequency(word.lower(), "en")) < PROPER_MAX_ZIPF


def _last_word(text: str, end: int) -> tuple[int, int, str] | None:
    i = end
    while i > 0 and text[i - 1].isascii() and text[i - 1].isalpha():
        i -= 1
    if i == end or (i > 0 and text[i - 1].isalnum()):
        return None
    return i, end, text[i:end]


__all__ = ["NAME_RATIO", "PROPER_MAX_ZIPF", "NameTables", "name_partner", "name_tables", "proper_partner"]
