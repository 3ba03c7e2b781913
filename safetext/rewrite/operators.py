"""Rewrite operators, kept apart from detection (Presidio's analyzer/anonymizer split).

Each operator is a small class with a name, ``validate(params)`` and
``operate(text, params) -> str``. ``apply_operators`` resolves overlaps, then rebuilds the
text left to right in one pass (linear even with thousands of spans).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

T = TypeVar("T")


class Operator(Protocol):
    name: ClassVar[str]

    def validate(self, params: dict[str, Any]) -> None: ...

    def operate(self, text: str, params: dict[str, Any]) -> str: ...


def spell_like(source: str, target: str) -> str:
    """``target`` in the layout of ``source``, a word written as initials: "S.O.B" and "abc"
    give "A.B.C", "s 0 b" gives "a b c". Each letter, digit or symbol of ``source`` takes one
    letter of ``target``; what lies between them stays. A target of another length is only
    given ``source``'s case."""
    cased = keep_case(source, target)
    slots = [i for i, c in enumerate(source) if c.isalnum() or c in _LETTER_SYMBOLS]
    if len(slots) != len(cased) or not cased.isalpha():
        return cased
    out = list(source)
    for i, ch in zip(slots, cased):
        out[i] = ch
    return "".join(out)


_LETTER_SYMBOLS = frozenset("@$!|+#€¢£¡")  # symbols read as letters in leetspeak


def keep_case(source: str, target: str) -> str:
    """Give ``target`` the case pattern of ``source``: IDIOT->ANGEL, Idiot->Angel, idiot->angel.

    Mixed patterns (iDiOt) are copied letter by letter, then the last letter's case is
    carried on over a longer target.
    """
    letters = [c for c in source if c.isalpha()]
    if not letters:
        return target
    if all(c.isupper() for c in letters):
        return target.upper() if len(letters) > 1 or len(target) == 1 else target[:1].upper() + target[1:]
    if all(c.islower() for c in letters):
        return target.lower()
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return target[:1].upper() + target[1:].lower()
    out, k, last_upper = [], 0, False
    for ch in target:
        if ch.isalpha():
            if k < len(letters):
                last_upper = letters[k].isupper()
                k += 1
            out.append(ch.upper() if last_upper else ch.lower())
        else:
            out.append(ch)
    return "".join(out)


def choose_target(matched: str, candidates: Sequence[str]) -> str:
    """Pick the candidate closest in length to ``matched`` (keeps rendered layout); ties go to the first listed."""
    if not candidates:
        raise ValueError("no benign target candidates")
    length = sum(1 for c in matched if c.isalnum()) or len(matched)
    return min(enumerate(candidates), key=lambda item: (abs(len(item[1]) - length), item[0]))[1]


@dataclass(frozen=True)
class Replace:
    """Replace with a benign target, keeping the matched text's case pattern."""

    name: ClassVar[str] = "replace"

    def validate(self, params: dict[str, Any]) -> None:
        if not isinstance(params.get("target"), str) or not params["target"]:
            raise ValueError("replace needs a non-empty 'target'")

    def operate(self, text: str, params: dict[str, Any]) -> str:
        self.validate(params)
        return keep_case(text, params["target"]) if params.get("keep_case", True) else params["target"]


@dataclass(frozen=True)
class Mask:
    """Mask every letter and digit, keeping length so layout survives: idiot -> *****."""

    name: ClassVar[str] = "mask"

    def validate(self, params: dict[str, Any]) -> None:
        char = params.get("char", "*")
        if not isinstance(char, str) or len(char) != 1:
            raise ValueError("mask 'char' must be one character")

    def operate(self, text: str, params: dict[str, Any]) -> str:
        self.validate(params)
        char = params.get("char", "*")
        return "".join(char if not c.isspace() else c for c in text)


@dataclass(frozen=True)
class Remove:
    """Remove the span; ``apply_operators`` then tidies doubled spaces."""

    name: ClassVar[str] = "remove"

    def validate(self, params: dict[str, Any]) -> None:
        return None

    def operate(self, text: str, params: dict[str, Any]) -> str:
        return ""


OPERATORS: dict[str, Operator] = {op.name: op for op in (Replace(), Mask(), Remove())}


@dataclass(frozen=True)
class Edit:
    """One operator applied to ``text[start:end]``."""

    start: int
    end: int
    operator: str
    params: dict[str, Any]
    priority: float = 0.0


def pick_non_overlapping(ranked: Sequence[T], bounds: Callable[[T], tuple[int, int]]) -> list[T]:
    """Greedy interval selection in ``ranked`` order (best first); the result is sorted by start."""
    starts: list[int] = []
    ends: list[int] = []
    chosen: list[T] = []
    for item in ranked:
        start, end = bounds(item)
        i = bisect.bisect_left(starts, start)
        if i > 0 and ends[i - 1] > start:
            continue
        if i < len(starts) and starts[i] < end:
            continue
        starts.insert(i, start)
        ends.insert(i, end)
        chosen.insert(i, item)
    return chosen


def resolve_overlaps(edits: Sequence[Edit]) -> list[Edit]:
    """Keep a non-overlapping subset: higher priority first, then the longer span, then the earlier."""
    ranked = sorted(edits, key=lambda e: (-e.priority, -(e.end - e.start), e.start))
    return pick_non_overlapping(ranked, lambda e: (e.start, e.end))


def apply_operators(text: str, edits: Sequence[Edit]) -> str:
    """Apply edits (overlaps resolved) right to left and tidy the spacing removals leave behind."""
    pieces: list[str] = []
    removed = False
    pos = 0
    for edit in resolve_overlaps(edits):
        op = OPERATORS.get(edit.operator)
        if op is None:
            raise ValueError(f"unknown operator {edit.operator!r}; known: {sorted(OPERATORS)}")
        new = op.operate(text[edit.start : edit.end], edit.params)
        removed |= new == ""
        pieces += [text[pos : edit.start], new]
        pos = edit.end
    pieces.append(text[pos:])
    out = "".join(pieces)
    if removed:
        out = re.sub(r"[ \t]{2,}", " ", out).strip()
        out = re.sub(r"\s+([,.;:!?])", r"\1", out)
    return out
