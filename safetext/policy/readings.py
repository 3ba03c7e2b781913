"""One decision over a prompt and its tokenizer readings, for any policy object.

A :class:`~safetext.policy.PolicyEngine` maps each reading's spans back onto the prompt
(``check_readings``). Any other policy (an object with ``check`` or ``decide``) is asked
about each reading as a prompt; when a reading is judged more strictly than the prompt,
that reading's action wins, its benign text stands in for the benign prompt and its
reasons are reported, since its spans cannot be placed in the prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from safetext.policy.decision import ACTION_SEVERITY, Decision


def check_with_readings(policy: Any, prompt: str, readings: Sequence[str], check: Callable[[str], Decision]) -> Decision:
    """The strictest decision over ``prompt`` and ``readings``; ``check`` decides one text."""
    if not readings:
        return check(prompt)
    combined = getattr(policy, "check_readings", None)
    if callable(combined):
        decision = combined(prompt, readings)
        if isinstance(decision, Decision):
            return decision
    decision = check(prompt)
    for reading in readings:
        other = check(reading)
        if ACTION_SEVERITY[other.action] > ACTION_SEVERITY[decision.action]:
            decision = Decision(
                action=other.action,
                prompt=prompt,
                benign_prompt=other.benign_prompt,
                risk=max(decision.risk, other.risk),
                reasons=[*decision.reasons, *(f"tokenizer reading {reading!r}: {r}" for r in other.reasons)],
                policy=other.policy or decision.policy,
            )
    return decision


__all__ = ["check_with_readings"]
