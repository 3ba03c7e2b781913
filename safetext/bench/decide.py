"""Decisions for the bench: the policy for toxic and innocent prompts, fixed pairs for edits.

``PairPolicy`` duck-types ``PolicyEngine.decide``, so the edit suite goes through the very
same ``Guard`` code path as the safety suites, with the rewrite given instead of detected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from safetext.bench.prompts import PromptItem
from safetext.policy.decision import Action, Decision, Span


def word_span(prompt: str, word: str) -> tuple[int, int] | None:
    """Where ``word`` occurs as a whole word (case-insensitive); the last occurrence, since
    the rendered text closes the testbed's templates."""
    matches = list(re.finditer(rf"(?<![A-Za-z0-9]){re.escape(word)}(?![A-Za-z0-9])", prompt, flags=re.IGNORECASE))
    return (matches[-1].start(), matches[-1].end()) if matches else None


def pair_decision(prompt: str, source: str, target: str) -> Decision:
    """A rewrite of ``source`` into ``target`` inside ``prompt``."""
    where = word_span(prompt, source)
    if where is None:
        raise ValueError(f"edit source {source!r} does not occur in prompt {prompt!r}")
    start, end = where
    span = Span(
        start=start, end=end, text=prompt[start:end], category="edit", term=source,
        method="pair", score=1.0, in_render_scope=True, action=Action.REWRITE, target=target,
    )
    return Decision(action=Action.REWRITE, prompt=prompt, benign_prompt=prompt[:start] + target + prompt[end:], spans=[span], risk=1.0, reasons=["edit pair"], policy="bench-edit-pairs")


class PairPolicy:
    """Rewrites each known edit prompt by its pair; any other prompt is allowed untouched."""

    def __init__(self, items: Iterable[PromptItem]) -> None:
        self._pairs = {it.prompt: (it.source, it.target) for it in items if it.source and it.target}

    def decide(self, prompt: str) -> Decision:
        pair = self._pairs.get(prompt)
        if pair is None:
            return Decision(action=Action.ALLOW, prompt=prompt)
        return pair_decision(prompt, *pair)  # type: ignore[arg-type]
