"""``Guard``: a diffusers pipeline behind a content policy and benign K/V injection.

::

    guard = Guard(pipe, policy="policies/default.yaml", preset="auto")
    result = guard('A sign that says "idiot"', num_inference_steps=30, generator=g)
    result.images, result.decision.action, result.patched_layers, result.to_json()

Per prompt the policy decides:

* **allow**: the pipeline is called exactly as a direct call would be; same generator,
  bitwise the same images.
* **block**: nothing is generated. ``result.images`` is None (or, with
  ``on_block="raise"``, :class:`GuardBlockedError` is raised). A batch is generated as a
  unit, so one blocked prompt blocks the whole call; send prompts separately to get the
  others.
* **rewrite**: the pipeline runs the *original* prompt; the localized attention modules
  read the benign prompt's text keys/values from the preset's start step on
  (:mod:`safetext.inject`). Allowed prompts in the same batch keep their own K/V.

Fail closed: if the preset does not fit, injection cannot be installed, or anything
raises or misbehaves during generation (including a localized module that was not
patched at every step from the start step), a :class:`GuardError` is raised and no image
is returned.

Concurrency: one guard (or several) may be called from many threads. Calls on the same
denoiser are serialised by :func:`safetext.inject.pipeline_lock`: diffusers pipelines
keep per-call state on ``self`` and injection installs processors for one call, so
overlapping calls could not be correct. Each call's output equals the same call alone.
Policy checks run outside the lock.

DeepFloyd IF stage II: the guard wraps stage I (``IFPipeline``), where the text is drawn
at 64 px. Give the super-resolution stage (``IFSuperResolutionPipeline``) the
*sanitized* prompt, ``result.sanitized_prompts`` (the benign prompt when rewritten):
stage II is also text-conditioned through T5 and, given the original prompt, can redraw
the toxic word while upscaling a benign 64 px image; given the benign prompt it agrees
with the stage-I image, whose layout and style it keeps anyway. (The paper's code fed
stage II the original prompt, unpatched.)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from safetext.inject.config import InjectionConfig
from safetext.inject.encode import UNCHECKED_TEXT_ARGS
from safetext.inject.installer import Injection, InjectionReport
from safetext.inject.locking import pipeline_lock
from safetext.inject.presets import resolve_preset
from safetext.inject.processors import InjectionError
from safetext.inject.sites import candidate_modules, denoiser_of
from safetext.policy.decision import Action, Decision

PolicyLike = Any  # a path or builtin name, a PolicyEngine, or any object with check()/decide(prompt)


class GuardError(RuntimeError):
    """The guard could not produce a guarded image; nothing unguarded was returned."""


class GuardBlockedError(GuardError):
    """Raised instead of returning a blocked result when ``on_block="raise"``."""

    def __init__(self, result: GuardResult) -> None:
        reasons = "; ".join(r for d in result.decisions for r in d.reasons) or "blocked by policy"
        super().__init__(f"prompt blocked: {reasons}")
        self.result = result


@dataclass
class GuardResult:
    """What one guarded call produced, and why."""

    decisions: list[Decision]
    output: Any = None
    images: Any = None
    patched_layers: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    injection: InjectionReport | None = None
    preset: str | None = None

    @property
    def decision(self) -> Decision:
        """The decision for the first (or only) prompt."""
        return self.decisions[0]

    @property
    def action(self) -> Action:
        """The call's overall action: block if any prompt is blocked, else rewrite if any is rewritten."""
        actions = {d.action for d in self.decisions}
        for action in (Action.BLOCK, Action.REWRITE):
            if action in actions:
                return action
        return Action.ALLOW

    @property
    def blocked(self) -> bool:
        return self.action is Action.BLOCK

    @property
    def sanitized_prompts(self) -> list[str | None]:
        """Per prompt, the text that is safe to show a later stage (IF stage II, captions)."""
        return [d.sanitized_prompt for d in self.decisions]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable report (no images)."""
        return {
            "action": self.action.value,
            "blocked": self.blocked,
            "decisions": [d.model_dump(mode="json") for d in self.decisions],
            "patched_layers": list(self.patched_layers),
            "preset": self.preset,
            "injection": self.injection.to_dict() if self.injection else None,
            "timings": dict(self.timings),
        }

    def to_json(self, **kwargs: Any) -> str:
        kwargs.setdefault("indent", 2)
        return json.dumps(self.to_dict(), **kwargs)


def _load_policy(policy: PolicyLike) -> Any:
    if isinstance(policy, (str, Path)):
        from safetext.policy import PolicyEngine

        return PolicyEngine(policy)
    if any(callable(getattr(policy, name, None)) for name in ("check", "decide")):
        return policy
    raise TypeError(
        f"policy must be a path, a policy name or an object with check()/decide(); got {type(policy).__name__}"
    )


def _images_of(output: Any) -> Any:
    if hasattr(output, "images"):
        return output.images
    if isinstance(output, tuple) and output:
        return output[0]
    return output


class Guard:
    """Wrap ``pipe`` so every call is checked by ``policy`` and rewritten by injection.

    * ``policy``: a policy file path or shipped name (loaded into a
      :class:`~safetext.policy.PolicyEngine`), an engine, or any object with
      ``check(prompt) -> Decision`` or ``decide(prompt) -> Decision``.
    * ``preset``: ``"auto"``, a packaged preset name, a preset file, a list of module names
      (patched from step 0) or an :class:`InjectionConfig`. Resolved and checked against the
      pipeline here, so an unsupported model fails at construction.
    * ``on_block``: ``"result"`` returns a result with ``images=None``; ``"raise"`` raises
      :class:`GuardBlockedError`.
    """

    def __init__(
        self,
        pipe: Any,
        policy: PolicyLike = "policies/default.yaml",
        preset: str | Path | list[str] | InjectionConfig = "auto",
        on_block: Literal["result", "raise"] = "result",
    ) -> None:
        if on_block not in ("result", "raise"):
            raise ValueError("on_block must be 'result' or 'raise'")
        self.pipe = pipe
        self.policy = _load_policy(policy)
        self.config = resolve_preset(pipe, preset)
        self.on_block = on_block
        candidates = set(candidate_modules(denoiser_of(pipe)[1]))
        unknown = [m for m in self.config.modules if m not in candidates]
        if unknown:
            raise InjectionError(
                f"preset {self.config.name or '(unnamed)'} names modules this pipeline lacks: {unknown}; "
                "it was localized for a different model"
            )

    @property
    def patched_layers(self) -> list[str]:
        return list(self.config.modules)

    def check(self, prompt: str | list[str]) -> list[Decision]:
        """The policy's decisions, without generating."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        return [self._decide(p) for p in prompts]

    def _decide(self, prompt: str) -> Decision:
        decide = getattr(self.policy, "check", None) or self.policy.decide
        decision = decide(prompt)
        if not isinstance(decision, Decision):
            raise GuardError(f"policy returned {type(decision).__name__}, not a Decision")
        if decision.action is Action.REWRITE and not decision.benign_prompt:
            raise GuardError(f"policy asked to rewrite {prompt!r} without a benign prompt")
        return decision

    def __call__(self, prompt: str | list[str], **pipe_kwargs: Any) -> GuardResult:
        """Check ``prompt`` and generate accordingly; ``pipe_kwargs`` go to the pipeline."""
        start = time.perf_counter()
        if isinstance(prompt, str):
            prompts = [prompt]
        elif isinstance(prompt, (list, tuple)) and prompt and all(isinstance(p, str) for p in prompt):
            prompts = list(prompt)
        else:
            raise TypeError("prompt must be a string or a non-empty list of strings")
        given = [k for k in UNCHECKED_TEXT_ARGS if pipe_kwargs.get(k) is not None]
        if given:
            raise GuardError(f"{given} would reach the model unchecked; pass all text through `prompt`")
        try:
            decisions = [self._decide(p) for p in prompts]
        except GuardError:
            raise
        except Exception as exc:  # noqa: BLE001 - fail closed on any policy failure
            raise GuardError(f"policy check failed: {exc}") from exc
        timings = {"policy_s": time.perf_counter() - start}
        result = GuardResult(decisions=decisions, timings=timings, preset=self.config.name or self.config.source)

        if result.blocked:
            timings["total_s"] = time.perf_counter() - start
            if self.on_block == "raise":
                raise GuardBlockedError(result)
            return result

        benign = [d.benign_prompt if d.action is Action.REWRITE else None for d in decisions]
        prompt = prompt if isinstance(prompt, str) else prompts  # the pipelines take str or list
        wait = time.perf_counter()
        with pipeline_lock(self.pipe):
            timings["wait_s"] = time.perf_counter() - wait
            try:
                if all(b is None for b in benign):
                    output, report = self._generate(prompt, pipe_kwargs, timings), None
                else:
                    with Injection(self.pipe, self.config, prompts, benign, pipe_kwargs) as injection:
                        output = self._generate(prompt, pipe_kwargs, timings)
                        report = injection.verify()
            except Exception as exc:  # noqa: BLE001 - fail closed: no image leaves on any error
                raise GuardError(f"guarded generation failed, no image returned: {exc}") from exc
        result.output, result.images, result.injection = output, _images_of(output), report
        if report is not None:
            result.patched_layers = report.patched_layers
            timings["encode_s"] = report.encode_s
        timings["total_s"] = time.perf_counter() - start
        return result

    def _generate(self, prompt: str | list[str], pipe_kwargs: dict[str, Any], timings: dict[str, float]) -> Any:
        start = time.perf_counter()
        output = self.pipe(prompt=prompt, **pipe_kwargs)
        timings["generate_s"] = time.perf_counter() - start
        return output
