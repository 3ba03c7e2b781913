"""The methods compared on the same seeds, and what each asks of the pipeline.

Baselines follow the paper's code: *prompt swap* generates the benign prompt outright,
*negative prompt* passes the blocked term as the negative prompt, *block* refuses. A
baseline that reduces to the unguarded call (an allowed prompt) reuses the unguarded image
instead of generating it again; only the guard is always run, because whether it leaves
innocent prompts bitwise unchanged is one of the things measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from safetext.policy.decision import Action, Decision

METHODS: tuple[str, ...] = ("unguarded", "block", "prompt_swap", "negative_prompt", "safetext")
LABELS: dict[str, str] = {
    "unguarded": "unguarded",
    "block": "block (refuse)",
    "prompt_swap": "prompt swap",
    "negative_prompt": "negative prompt",
    "safetext": "safetext injection",
}
SUITE_METHODS: dict[str, tuple[str, ...]] = {
    "toxic": METHODS,
    "innocent": METHODS,
    "edit": ("unguarded", "prompt_swap", "negative_prompt", "safetext"),  # refusing an edit measures nothing
}

PlanKind = Literal["call", "reuse", "blocked", "guard"]


@dataclass(frozen=True)
class Plan:
    """How one method produces its image for one prompt."""

    kind: PlanKind
    prompt: str | None = None
    negative_prompt: str | None = None


def blocked_terms(decision: Decision) -> list[str]:
    """The words the policy wants gone, as written in the prompt (what the model would draw)."""
    return list(dict.fromkeys(span.text for span in decision.spans))


def plan(method: str, prompt: str, decision: Decision) -> Plan:
    """The plan for ``method`` given the policy's decision on ``prompt``."""
    flagged = decision.action is not Action.ALLOW
    if method == "unguarded":
        return Plan("call", prompt)
    if method == "safetext":
        return Plan("guard", prompt)
    if not flagged:
        return Plan("reuse")
    if method == "block":
        return Plan("blocked")
    if method == "prompt_swap":
        if decision.action is Action.REWRITE and decision.benign_prompt:
            return Plan("call", decision.benign_prompt)
        return Plan("blocked")  # the policy blocks outright: there is no benign prompt to swap in
    if method == "negative_prompt":
        terms = blocked_terms(decision)
        return Plan("call", prompt, ", ".join(terms)) if terms else Plan("reuse")
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
