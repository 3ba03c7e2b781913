"""Find the text a prompt asks the model to render.

Rendered text is where a diffusion model spells words out, so it is checked at least as
strictly as the rest. Markers: quoted strings, "that says ...", "saying ...", "reading ...",
"with the word(s) ...", "with the text ...", "text: ...", "written ...", "labeled ...".
All patterns are linear (no nested quantifiers), so a 100k-character prompt scans quickly.
"""

from __future__ import annotations

import bisect
import re

# (opening quote, pattern): a pattern runs only on text holding its opening quote.
_QUOTES = [
    ('"', re.compile(r'"([^"\n]{1,2000})"')),
    ("“", re.compile(r"“([^”\n]{1,2000})”")),
    ("„", re.compile(r"„([^“”\n]{1,2000})[“”]")),
    ("«", re.compile(r"«([^»\n]{1,2000})»")),
    ("‘", re.compile(r"‘([^’\n]{1,2000})’")),
    ("`", re.compile(r"`([^`\n]{1,2000})`")),
    ("'", re.compile(r"(?<![^\W_])'([^'\n]{1,2000})'(?![^\W_])")),
]

_MARKER = re.compile(
    r"(?<![^\W_])(?:"
    r"(?:that|which|it)\s+(?:says|said|say|reads|read|spells|spell|shows|displays|states)"
    r"|says|saying|reads|reading|spelling|spelled|spelt|spells|stating|displaying"
    r"|labell?ed|captioned|titled|inscribed|printed|written|lettered|painted|stamped|engraved|embroidered"
    r"|(?:the\s+)?(?:words?|text|caption|message|slogan|phrase|lettering|inscription|title|label|sign)\s*:"
    r"|with\s+(?:the\s+|a\s+)?(?:words?|text|caption|message|slogan|phrase|letters|lettering|inscription|title|label|name)"
    r"|the\s+words?"
    r")(?![^\W_])[ \t]*(?:[:=\-][ \t]*)?"
)

# After a marker, unquoted rendered text runs to the end of the clause.
_CLAUSE = re.compile(r"[^.,;!?\n\"“”«»]{1,300}")
# "with idiot written on it": the rendered text comes before the marker.
_BEFORE = re.compile(
    r"(?<![^\W_])with\s+([^\W_][^,.;\n]{0,80}?)\s+(?:written|printed|painted|spelled\s+out|scrawled|stamped)(?![^\W_])"
)


# Words without which neither _MARKER nor _BEFORE can match: a cheap test that skips both.
_TRIGGERS = frozenset(
    """
    says said say reads read spells spell shows displays states saying reading spelling spelled spelt
    stating displaying labeled labelled captioned titled inscribed printed written lettered painted
    stamped engraved embroidered scrawled word words text caption message slogan phrase lettering
    inscription title label sign letters name
    """.split()
)
_WORDS = re.compile(r"[^\W\d_]+")


def render_scope(text: str, words: set[str] | frozenset[str] | None = None) -> list[tuple[int, int]]:
    """Sorted, merged ``[start, end)`` slices of ``text`` that the prompt asks to render.

    ``words``, the set of lower-case words of ``text`` when the caller has it, only speeds
    up the test for marker words.
    """
    spans: list[tuple[int, int]] = []
    for opening, pattern in _QUOTES:
        if opening in text:
            spans += [(m.start(1), m.end(1)) for m in pattern.finditer(text)]
    if words is None:
        words = set(_WORDS.findall(text.lower()))
    if not _TRIGGERS.isdisjoint(words):
        for m in _MARKER.finditer(text):
            rest = _CLAUSE.match(text, m.end())
            if rest:
                spans.append((rest.start(), rest.end()))
        spans += [(m.start(1), m.end(1)) for m in _BEFORE.finditer(text)]
    if not spans:
        return []
    spans.sort()
    merged = [spans[0]]
    for start, end in spans[1:]:
        last_start, last_end = merged[-1]
        if start <= last_end:
            merged[-1] = (last_start, max(last_end, end))
        else:
            merged.append((start, end))
    return merged


_ALONE_BEFORE = re.compile(
    r"(?:[\"“„«‘`':]|(?<![^\W_])(?:says|said|reads|read|saying|reading|spelling|spells|word|words|text|caption|message|slogan|lettering))\s*$"
)
_ALONE_AFTER = re.compile(r"\s*(?:[\"”“»’`'.,;!?]|$|(?:printed|written|painted|on|in)(?![^\W_]))")


def renders_alone(text: str, start: int, end: int) -> bool:
    """Is ``text[start:end]`` drawn as text on its own: quoted by itself, or right after a
    render marker and before the clause ends ("reading 80085", "the word 8008 printed")?

    A number in such a place is all the model writes there, so it is read as the letters it
    could stand for; a number among other words ("route 8008 north") stays a number.
    """
    return _ALONE_BEFORE.search(text, max(0, start - 24), start) is not None and _ALONE_AFTER.match(text, end) is not None


def in_scope(scope: list[tuple[int, int]], start: int, end: int) -> bool:
    """True when ``[start, end)`` overlaps rendered text (``scope`` sorted and merged)."""
    i = bisect.bisect_right(scope, (start, float("inf"))) - 1
    for s, e in scope[max(i, 0) : i + 2]:
        if s < end and start < e:
            return True
    return False
