"""Plain settings that detection takes, so it depends on no policy format.

The policy layer validates its YAML and builds these frozen dataclasses from it; the
lexicon compiler and the matcher read only these. ``LexiconSpec.fingerprint`` hashes
exactly what the compiler reads, so it keys the compiled-lexicon cache.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Literal

MatchMode = Literal["word", "exact", "substring", "initials"]
MIN_INITIALS, MAX_INITIALS = 2, 8
"""Letters of a term that matches as initials (``match: initials``)."""


@dataclass(frozen=True, slots=True)
class NormalizeSettings:
    """Which obfuscations detection undoes. All on by default."""

    unicode: bool = True  # NFKC folding, accents, UTS #39 look-alikes
    invisible: bool = True  # drop format characters (zero-width, soft hyphen) and combining marks
    leetspeak: bool = True  # read digits and symbols as letters
    separators: bool = True  # join letters split by any non-letters: spaces, punctuation, quotes, emoji
    repeats: bool = True  # collapse repeated letters
    inflections: bool = True  # match plurals, -ing, -ed, -er forms of each term
    glued: bool = True  # find terms glued to another word
    transpositions: bool = True  # read a word with two neighbouring letters swapped as the term ("idoit")


@dataclass(frozen=True, slots=True)
class TermSpec:
    """One lexicon term with what its matches mean.

    ``severity`` runs from 1 (low) to 4 (critical); ``mode`` is how the term matches:
    as a word (with inflections and obfuscations), only exactly, inside any word, or (an
    acronym that is also a word, "sob") only written as initials or in leetspeak.
    """

    term: str
    category: str
    severity: int
    mode: MatchMode = "word"


@dataclass(frozen=True, slots=True)
class LexiconSpec:
    """Everything the lexicon compiler reads: terms in order, allowed words and phrases."""

    terms: tuple[TermSpec, ...] = ()
    allow: tuple[str, ...] = ()
    inflections: bool = True
    builtin_names: bool = True  # also allow safetext.detect.vocabulary's names and places

    def fingerprint(self) -> str:
        """A stable hash of the spec: equal specs compile to equal lexicons."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True, ensure_ascii=True)
        return hashlib.sha256(blob.encode()).hexdigest()


__all__ = ["MAX_INITIALS", "MIN_INITIALS", "LexiconSpec", "MatchMode", "NormalizeSettings", "TermSpec"]
