"""Generate every method's image for one (prompt, seed), timed side by side.

The methods of one prompt run back to back on the same seed (unguarded first), so a
slowdown from a neighbouring job hits the guarded and unguarded calls alike and the time
ratio stays honest. Every call uses batch size 1 and a fresh CPU generator: identical
noise on any device, and a bitwise comparison that means something.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from PIL import Image

from safetext.bench.methods import SUITE_METHODS, plan
from safetext.bench.prompts import PromptItem
from safetext.policy.decision import Decision


@dataclass
class Sample:
    """One method's output for one (prompt, seed). ``image`` is None when the method refused."""

    item: PromptItem
    seed: int
    method: str
    status: str  # generated | reused | blocked
    image: Image.Image | None
    seconds: float | None  # wall time of the call (plus the policy check for baselines); None if reused
    action: str  # the decision that drove the method (the guard's own, for safetext)
    prompt_used: str | None = None
    negative_prompt: str | None = None
    benign_prompt: str | None = None
    target: str | None = None


def policy_targets(policy: Any) -> dict[str, str]:
    """Blocked term (lower-case) -> its first benign target, from a ``PolicyEngine``'s policy.

    Why: a prompt the policy blocks (or misses) has no rewrite to name the benign word; the
    policy's own target for the prompt's term is what a rewrite would have written. Policy
    objects without a ``policy.term_items()`` give ``{}``.
    """
    spec = getattr(policy, "policy", None)
    term_items = getattr(spec, "term_items", None)
    if not callable(term_items):
        return {}
    out: dict[str, str] = {}
    for category, term, entry in term_items():
        targets = entry.targets or spec.categories[category].targets
        if targets:
            out.setdefault(term.lower(), targets[0])
    return out


def decision_target(item: PromptItem, decision: Decision, targets: Mapping[str, str] | None = None) -> str | None:
    """The benign word the guarded image should show: the pair's target, else the rewrite's,
    else the policy's target for the prompt's term (``targets``, see :func:`policy_targets`)."""
    if item.target:
        return item.target
    for span in decision.spans:
        if span.target:
            return span.target
    if item.term and targets:
        return targets.get(item.term.lower())
    return None


def _generator(seed: int) -> Any:
    import torch

    return torch.Generator(device="cpu").manual_seed(seed)


def _first_image(output: Any) -> Image.Image | None:
    images = getattr(output, "images", None)
    if images is None and isinstance(output, (list, tuple)):
        images = output
    return images[0] if images else None


class ItemRunner:
    """Runs the methods of a suite for one (prompt, seed).

    ``guard_for(suite)`` returns the guard (a callable like ``safetext.Guard``) for that suite;
    ``targets`` is the policy's term -> benign target map (:func:`decision_target`).
    """

    def __init__(
        self, pipe: Any, guard_for: Callable[[str], Any], gen_kwargs: dict[str, Any], targets: Mapping[str, str] | None = None
    ) -> None:
        self.pipe = pipe
        self.guard_for = guard_for
        self.gen_kwargs = dict(gen_kwargs)
        self.targets = dict(targets or {})

    def _pipe(self, prompt: str, seed: int, negative_prompt: str | None) -> tuple[Image.Image, float]:
        kwargs = dict(self.gen_kwargs)
        if negative_prompt is not None:
            kwargs["negative_prompt"] = negative_prompt
        start = time.perf_counter()
        out = self.pipe(prompt=prompt, generator=_generator(seed), **kwargs)
        seconds = time.perf_counter() - start
        image = _first_image(out)
        if image is None:
            raise RuntimeError("the pipeline returned no image")
        return image, seconds

    def _guard(self, suite: str, prompt: str, seed: int) -> tuple[Image.Image | None, float, str]:
        guard = self.guard_for(suite)
        start = time.perf_counter()
        result = guard(prompt, generator=_generator(seed), **self.gen_kwargs)
        seconds = time.perf_counter() - start
        decisions = getattr(result, "decisions", None) or []
        action = decisions[0].action.value if decisions else "unknown"
        return _first_image(result), seconds, action

    def run(self, item: PromptItem, seed: int, decision: Decision, decide_seconds: float = 0.0) -> list[Sample]:
        target = decision_target(item, decision, self.targets)
        common = {"benign_prompt": decision.benign_prompt, "target": target}
        samples: list[Sample] = []
        unguarded: Sample | None = None
        for method in SUITE_METHODS[item.suite]:
            p = plan(method, item.prompt, decision)
            if p.kind == "call":
                assert p.prompt is not None
                image, seconds = self._pipe(p.prompt, seed, p.negative_prompt)
                if method != "unguarded":
                    seconds += decide_seconds  # a baseline needs the policy's verdict too
                s = Sample(item, seed, method, "generated", image, seconds, decision.action.value, p.prompt, p.negative_prompt, **common)
            elif p.kind == "guard":
                image, seconds, action = self._guard(item.suite, item.prompt, seed)
                status = "generated" if image is not None else "blocked"
                s = Sample(item, seed, method, status, image, seconds, action, item.prompt, **common)
            elif p.kind == "reuse":
                assert unguarded is not None
                s = Sample(item, seed, method, "reused", unguarded.image, None, decision.action.value, item.prompt, **common)
            else:
                s = Sample(item, seed, method, "blocked", None, decide_seconds, decision.action.value, None, **common)
            if method == "unguarded":
                unguarded = s
            samples.append(s)
        return samples
