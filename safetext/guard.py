"""``Guard``: a diffusers pipeline behind a content policy and benign K/V injection.

::

    guard = Guard(pipe, policy="default", preset="auto")
    result = guard('A sign that says "idiot"', num_inference_steps=30, generator=g)
    result.images, result.decision.action, result.patched_layers, result.to_json()

Every positive text input the pipeline takes is checked: ``prompt`` and, where the
pipeline has them, ``prompt_2`` and ``prompt_3`` (SDXL, SD3), whose text reaches the
model through the second and third text encoders. Negative prompts pass through
unchanged: the model is steered away from their content, never towards it. Precomputed
prompt embeddings are refused, since the policy cannot read them. Per prompt the policy
decides, over all its inputs:

* **allow**: the pipeline is called exactly as a direct call would be; same generator,
  bitwise the same images.
* **block**: nothing is generated. ``result.images`` is None (or, with
  ``on_block="raise"``, :class:`GuardBlockedError` is raised). By default
  (``block_scope="call"``) a batch is generated as a unit, so one blocked prompt blocks
  the whole call. With ``block_scope="row"`` the blocked prompts are dropped from the
  pipeline call and their images are None in ``result.images``; the other prompts are
  generated as a call of them alone would be (their own per-image generators, prompt_2
  and negative rows), which is what a server batching many users' requests needs.
* **rewrite**: the pipeline runs the *original* inputs; the localized attention modules
  read the benign texts' keys/values from the preset's start step on
  (:mod:`safetext.inject`). A rewritten ``prompt_2`` changes only what the second text
  encoder contributes. Allowed prompts in the same batch keep their own K/V.

Fail closed: if the policy or preset cannot be loaded or does not fit, injection cannot
be installed, or anything raises or misbehaves during generation (including a localized
module that was not patched at every step from the start step), a :class:`GuardError`
is raised (the original error is its ``__cause__``) and no image is returned.

Audit (``audit=``, default off or the policy's ``audit:`` section): after generation the
guard OCRs each image, allowed prompts' images included, and runs the policy on the text
read. A read term the policy rewrites or blocks is a leak: ``flag`` returns the images and
says so, ``block`` returns none, ``blur`` hides the read words, and ``regenerate`` tries
again with a stronger injection (the preset's modules from step 0, then every text module
of that kind from step 0; a new seed only with ``reseed``) and falls back to blocking. With
``log=`` every call appends one JSON line (prompts hashed with ``hash_prompts``).

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

import inspect
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from safetext.audit.config import AuditConfig, LogConfig, resolve_audit
from safetext.detect.tokenized import TokenizerReadings, pipeline_tokenizers
from safetext.errors import GuardError
from safetext.inject.config import InjectionConfig
from safetext.inject.encode import NEGATIVE_TEXT_INPUTS, TEXT_INPUTS, precomputed_text_args
from safetext.inject.installer import InjectionReport, check_processors, prompt_list, run_injected
from safetext.inject.presets import resolve_preset
from safetext.inject.sites import attention_sites, candidate_modules, denoiser_of
from safetext.pipelines.output import images_of
from safetext.policy.decision import ACTION_SEVERITY, Action, Decision
from safetext.policy.readings import check_with_readings

PolicyLike = Any  # a path or builtin name, a PolicyEngine, or any object with check()/decide(prompt)

#: How a prompt's action combines over its inputs and a call's over its prompts: the worst wins.
_SEVERITY = ACTION_SEVERITY


class GuardBlockedError(GuardError):
    """Raised instead of returning a blocked result when ``on_block="raise"``."""

    def __init__(self, result: GuardResult) -> None:
        reasons = "; ".join(r for ds in result.input_decisions.values() for d in ds for r in d.reasons)
        super().__init__(f"prompt blocked: {reasons or 'blocked by policy'}")
        self.result = result


@dataclass
class GuardResult:
    """What one guarded call produced, and why.

    ``decisions`` holds one decision per prompt for ``prompt``; ``input_decisions`` holds
    them for every checked input (``{"prompt": [...], "prompt_2": [...]}``).
    """

    decisions: list[Decision]
    input_decisions: dict[str, list[Decision]] = field(default_factory=dict)
    output: Any = None
    images: Any = None
    patched_layers: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    injection: InjectionReport | None = None
    preset: str | None = None
    audit: Any = None  # safetext.audit.AuditOutcome when the audit ran

    def __post_init__(self) -> None:
        if not self.input_decisions:
            self.input_decisions = {"prompt": list(self.decisions)}

    @property
    def decision(self) -> Decision:
        """The decision for the first (or only) prompt's ``prompt`` input."""
        return self.decisions[0]

    @property
    def actions(self) -> list[Action]:
        """Per prompt, the worst action over its inputs."""
        per_input = list(self.input_decisions.values())
        return [max((ds[i].action for ds in per_input), key=_SEVERITY.__getitem__) for i in range(len(self.decisions))]

    @property
    def action(self) -> Action:
        """The call's overall action: block if any input is blocked, else rewrite if any is
        rewritten, else flag if any is flagged (flagged prompts are generated as given)."""
        return max(self.actions, key=_SEVERITY.__getitem__, default=Action.ALLOW)

    @property
    def blocked(self) -> bool:
        return self.action is Action.BLOCK

    @property
    def sanitized_prompts(self) -> list[str | None]:
        """Per prompt, the ``prompt`` text that is safe to show a later stage (IF stage II, captions)."""
        return [d.sanitized_prompt for d in self.decisions]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable report (no images)."""
        return {
            "action": self.action.value,
            "blocked": self.blocked,
            "decisions": [d.model_dump(mode="json") for d in self.decisions],
            "inputs": {
                name: [d.model_dump(mode="json") for d in ds] for name, ds in self.input_decisions.items()
            },
            "patched_layers": list(self.patched_layers),
            "preset": self.preset,
            "injection": self.injection.to_dict() if self.injection else None,
            "audit": self.audit.to_dict() if self.audit is not None else None,
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
    raise GuardError(
        f"policy must be a path, a policy name or an object with check()/decide(); got {type(policy).__name__}"
    )


#: Seed offset between regenerate attempts with ``reseed`` (a prime, so rows never collide).
_RESEED_STRIDE = 1_000_003


class _Checker:
    """The guard's own policy check, as the auditor calls it on the text it read."""

    def __init__(self, decide: Any) -> None:
        self.check = decide


def _generators(value: Any) -> list[Any]:
    """The torch generators of a call (none, one, or one per image)."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


#: Call arguments that hold one entry per prompt when given as a list.
_ROW_INPUTS = (*TEXT_INPUTS[1:], *NEGATIVE_TEXT_INPUTS)


def _select_rows(pipe_kwargs: dict[str, Any], rows: list[int], n: int, per_prompt: int) -> dict[str, Any]:
    """``pipe_kwargs`` for the prompts ``rows`` of ``n`` alone: per-prompt text lists, per-image
    generator lists and ``latents`` keep the kept rows; everything else passes unchanged."""
    images = [i * per_prompt + k for i in rows for k in range(per_prompt)]
    kept = dict(pipe_kwargs)
    for name in _ROW_INPUTS:
        value = kept.get(name)
        if isinstance(value, (list, tuple)) and len(value) == n:
            kept[name] = [value[i] for i in rows]
    generator = kept.get("generator")
    if isinstance(generator, (list, tuple)):
        if len(generator) != n * per_prompt:
            raise GuardError(f"generator has {len(generator)} entries for {n * per_prompt} image(s); give one per image")
        kept["generator"] = [generator[i] for i in images]
    latents = kept.get("latents")
    if latents is not None and getattr(latents, "shape", (0,))[0] == n * per_prompt:
        kept["latents"] = latents[images]
    return kept


def _text_inputs_of(pipe: Any) -> tuple[str, ...]:
    """The positive text inputs ``pipe.__call__`` takes (at least ``prompt``)."""
    try:
        params = inspect.signature(pipe.__call__).parameters
    except (TypeError, ValueError):
        return ("prompt",)
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return tuple(name for name in TEXT_INPUTS if name == "prompt" or name in params or accepts_any)


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
    * ``audit``: ``"off"``, ``"flag"``, ``"block"``, ``"blur"``, ``"regenerate"`` or an
      :class:`~safetext.audit.AuditConfig`; None takes the policy's ``audit:`` section (else
      off). The OCR engine is built here, so a missing one fails at construction.
    * ``log``: a JSON-lines file (or an :class:`~safetext.audit.AuditLog`) that gets one line
      per call; None takes the policy's ``log:`` section. ``hash_prompts`` logs salted hashes
      instead of prompts; ``log_errors="warn"`` keeps serving when a write fails (the
      default fails the call closed).
    * ``block_scope``: ``"call"`` blocks a whole batch when one prompt is blocked; ``"row"``
      generates the others (blocked images are None). ``on_block="raise"`` then raises only
      when every prompt is blocked.

    Any failure to build the guard raises :class:`GuardError` naming what is wrong.
    """

    def __init__(
        self,
        pipe: Any,
        policy: PolicyLike = "default",
        preset: str | Path | list[str] | InjectionConfig = "auto",
        on_block: Literal["result", "raise"] = "result",
        *,
        audit: str | AuditConfig | None = None,
        log: str | Path | Any | None = None,
        hash_prompts: bool | None = None,
        log_errors: Literal["raise", "warn"] | None = None,
        block_scope: Literal["call", "row"] = "call",
    ) -> None:
        if on_block not in ("result", "raise"):
            raise GuardError(f"on_block must be 'result' or 'raise', not {on_block!r}")
        if block_scope not in ("call", "row"):
            raise GuardError(f"block_scope must be 'call' or 'row', not {block_scope!r}")
        self.pipe = pipe
        self.on_block = on_block
        self.block_scope = block_scope
        try:
            self.policy = _load_policy(policy)
            self.config = resolve_preset(pipe, preset)
            candidates = set(candidate_modules(denoiser_of(pipe)[1]))
        except GuardError:
            raise
        except Exception as exc:  # noqa: BLE001 - fail closed: construction errors are GuardErrors
            raise GuardError(f"cannot guard {type(pipe).__name__}: {exc}") from exc
        unknown = [m for m in self.config.modules if m not in candidates]
        if unknown:
            raise GuardError(
                f"preset {self.config.name or '(unnamed)'} names modules {type(pipe).__name__} lacks: {unknown}; "
                "it was localized for a different model"
            )
        try:
            check_processors(pipe, list(self.config.modules))
        except Exception as exc:  # noqa: BLE001 - fail closed at construction
            raise GuardError(f"cannot guard {type(pipe).__name__}: {exc}") from exc
        self.text_inputs = _text_inputs_of(pipe)
        # each prompt is also checked as the pipeline's tokenizers read it (safetext.detect.tokenized)
        self.readings = TokenizerReadings(pipeline_tokenizers(pipe))
        try:
            self.auditor = self._make_auditor(audit)
            self.log = self._make_log(log, hash_prompts, log_errors)
        except GuardError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. the OCR engine is missing
            raise GuardError(f"cannot set up the audit: {exc}") from exc

    def _policy_section(self, name: str) -> Any:
        return getattr(getattr(self.policy, "policy", None), name, None)

    def _make_auditor(self, audit: str | AuditConfig | None) -> Any:
        config = resolve_audit(audit if audit is not None else self._policy_section("audit"))
        if not config.enabled:
            return None  # no OCR import: the guard is bitwise the plain one
        from safetext.audit import Auditor

        return Auditor(config, _Checker(self._decide))

    def _make_log(self, log: Any, hash_prompts: bool | None, log_errors: str | None) -> Any:
        section: LogConfig | None = self._policy_section("log")
        if log is None and section is None:
            return None
        from safetext.audit import AuditLog

        if log is not None and not isinstance(log, (str, Path)):
            return log  # an AuditLog (or anything with write(record))
        return AuditLog(
            log if log is not None else section.path,  # type: ignore[union-attr]
            hash_prompts=hash_prompts if hash_prompts is not None else bool(section and section.hash_prompts),
            errors=log_errors or (section.errors if section else "raise"),  # type: ignore[arg-type]
        )

    @property
    def patched_layers(self) -> list[str]:
        return list(self.config.modules)

    def check(self, prompt: str | list[str]) -> list[Decision]:
        """The policy's decisions for ``prompt``, without generating."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        return [self._decide_input(p) for p in prompts]

    def _decide_input(self, prompt: str) -> Decision:
        """The strictest decision over ``prompt`` and its readings by the pipeline's tokenizers."""
        if not self.readings:
            return self._decide(prompt)
        decision = check_with_readings(self.policy, prompt, self.readings(prompt), self._decide)
        if decision.action is Action.REWRITE and not decision.benign_prompt:
            raise GuardError(f"policy asked to rewrite {prompt!r} without a benign prompt")
        return decision

    def _decide(self, prompt: str) -> Decision:
        decide = getattr(self.policy, "check", None) or self.policy.decide
        decision = decide(prompt)
        if not isinstance(decision, Decision):
            raise GuardError(f"policy returned {type(decision).__name__}, not a Decision")
        if decision.action is Action.REWRITE and not decision.benign_prompt:
            raise GuardError(f"policy asked to rewrite {prompt!r} without a benign prompt")
        return decision

    def _inputs(self, prompt: Any, pipe_kwargs: dict[str, Any]) -> dict[str, list[str]]:
        """Every positive text input of the call, one string per prompt; refuses what cannot be checked."""
        if isinstance(prompt, str):
            prompts = [prompt]
        elif isinstance(prompt, (list, tuple)) and prompt and all(isinstance(p, str) for p in prompt):
            prompts = list(prompt)
        else:
            raise GuardError("prompt must be a string or a non-empty list of strings")
        embeds = precomputed_text_args(pipe_kwargs)
        if embeds:
            raise GuardError(
                f"{embeds} would reach the model unchecked (the policy cannot read embeddings); "
                "pass the text as prompt / prompt_2 / prompt_3"
            )
        inputs = {"prompt": prompts}
        for name in TEXT_INPUTS[1:]:
            if pipe_kwargs.get(name) is None:
                continue
            if name not in self.text_inputs:
                raise GuardError(f"{type(self.pipe).__name__} takes no {name}")
            try:
                inputs[name] = prompt_list(pipe_kwargs[name], len(prompts), name) or []
            except Exception as exc:  # noqa: BLE001 - InjectionError: bad shape of the input
                raise GuardError(str(exc)) from exc
        return inputs

    def __call__(self, prompt: str | list[str], **pipe_kwargs: Any) -> GuardResult:
        """Check every text input, generate accordingly, audit and log; ``pipe_kwargs`` go to the pipeline."""
        result = self._run(prompt, pipe_kwargs)
        if self.log is not None:
            from safetext.audit import make_record

            try:
                self.log.write(make_record(result, include_decisions=True))
            except Exception as exc:  # noqa: BLE001 - AuditLogError: fail closed unless errors="warn"
                raise GuardError(f"audit log write failed, no image returned: {exc}") from exc
        if result.blocked and self.on_block == "raise" and not self._rows_generated(result):
            raise GuardBlockedError(result)
        return result

    def _rows_generated(self, result: GuardResult) -> bool:
        """With ``block_scope="row"``: whether any prompt of a blocked call was generated."""
        return self.block_scope == "row" and any(a is not Action.BLOCK for a in result.actions)

    def _run(self, prompt: str | list[str], pipe_kwargs: dict[str, Any]) -> GuardResult:
        start = time.perf_counter()
        inputs = self._inputs(prompt, pipe_kwargs)
        try:
            checked = {name: [self._decide_input(text) for text in texts] for name, texts in inputs.items()}
        except GuardError:
            raise
        except Exception as exc:  # noqa: BLE001 - fail closed on any policy failure
            raise GuardError(f"policy check failed: {exc}") from exc
        timings = {"policy_s": time.perf_counter() - start}
        result = GuardResult(
            decisions=checked["prompt"],
            input_decisions=checked,
            timings=timings,
            preset=self.config.name or self.config.source,
        )
        if result.blocked:
            if self._rows_generated(result):
                self._generate_rows(result, inputs["prompt"], pipe_kwargs)
            timings["total_s"] = time.perf_counter() - start
            return result
        self._generate_checked(result, prompt, pipe_kwargs)
        timings["total_s"] = time.perf_counter() - start
        return result

    def _generate_rows(self, result: GuardResult, prompts: list[str], pipe_kwargs: dict[str, Any]) -> None:
        """``block_scope="row"``: generate the unblocked prompts as a call of them alone, then
        put their images back in place, None for each blocked prompt's images."""
        rows = [i for i, action in enumerate(result.actions) if action is not Action.BLOCK]
        per_prompt = int(pipe_kwargs.get("num_images_per_prompt") or 1)
        sub = GuardResult(
            decisions=[result.decisions[i] for i in rows],
            input_decisions={name: [ds[i] for i in rows] for name, ds in result.input_decisions.items()},
            timings=result.timings,
            preset=result.preset,
        )
        kept = _select_rows(pipe_kwargs, rows, len(prompts), per_prompt)
        self._generate_checked(sub, [prompts[i] for i in rows], kept)
        result.output, result.injection, result.audit = sub.output, sub.injection, sub.audit
        result.patched_layers = sub.patched_layers
        if sub.images is None:  # the audit blocked the generated rows
            result.images = None
            return
        images: list[Any] = [None] * (len(prompts) * per_prompt)
        generated = list(sub.images)
        for j, i in enumerate(rows):
            images[i * per_prompt : (i + 1) * per_prompt] = generated[j * per_prompt : (j + 1) * per_prompt]
        result.images = images

    def _generate_checked(self, result: GuardResult, prompt: str | list[str], pipe_kwargs: dict[str, Any]) -> None:
        """Generate the checked, unblocked prompts of ``result``; any failure is a GuardError."""
        benign = {
            name: [d.benign_prompt if d.action is Action.REWRITE else None for d in ds]
            for name, ds in result.input_decisions.items()
        }
        try:
            if self.auditor is None:
                self._generate(result, prompt, benign, self.config, pipe_kwargs)
            else:
                self._generate_audited(result, prompt, benign, pipe_kwargs)
        except GuardError:
            raise
        except Exception as exc:  # noqa: BLE001 - fail closed: no image leaves on any error
            raise GuardError(f"guarded generation failed, no image returned: {exc}") from exc

    def _generate(
        self,
        result: GuardResult,
        prompt: str | list[str],
        benign: dict[str, list[str | None]],
        config: InjectionConfig,
        pipe_kwargs: dict[str, Any],
    ) -> None:
        extra = {k: v for k, v in benign.items() if k != "prompt"}
        output, report = run_injected(
            self.pipe,
            prompt if isinstance(prompt, str) else list(prompt),  # the pipelines take str or list
            benign["prompt"],
            config,
            benign_inputs=extra or None,
            with_report=True,
            timings=result.timings,
            **pipe_kwargs,
        )
        result.output, result.images, result.injection = output, images_of(output), report
        result.patched_layers = report.patched_layers if report is not None else []

    def _generate_audited(
        self, result: GuardResult, prompt: str | list[str], benign: dict[str, list[str | None]], pipe_kwargs: dict[str, Any]
    ) -> None:
        """Generate, OCR, and act on a leak; ``regenerate`` retries with stronger injection."""
        auditor = self.auditor
        cfg = auditor.config
        generators = _generators(pipe_kwargs.get("generator"))
        states = [g.get_state() for g in generators]
        rewriting = any(b is not None for values in benign.values() for b in values)
        attempts, ocr_s, audits = 0, 0.0, []
        for attempt, injection in enumerate(self._escalation(cfg.max_attempts if cfg.mode == "regenerate" else 1)):
            if attempt > 0:
                if not rewriting and not cfg.reseed:
                    break  # nothing to strengthen, and the same seed redraws the same image
                for i, (g, state) in enumerate(zip(generators, states)):
                    g.set_state(state)  # the same noise as the first attempt ...
                    if cfg.reseed:  # ... unless a new seed is allowed
                        g.manual_seed(g.initial_seed() + _RESEED_STRIDE * attempt + i)
            generated = result.timings.get("generate_s", 0.0)
            self._generate(result, prompt, benign, injection, pipe_kwargs)
            result.timings["generate_s"] += generated  # every attempt's generation counts
            attempts += 1
            began = time.perf_counter()
            audits = auditor.read(result.images)
            ocr_s += time.perf_counter() - began
            if not any(a.leaked for a in audits):
                action = "none" if attempt == 0 else "regenerate"
                result.audit = auditor.outcome(audits, action=action, attempts=attempts, ocr_s=ocr_s)
                result.timings["audit_s"] = ocr_s
                return
        result.timings["audit_s"] = ocr_s
        mode = cfg.fallback if cfg.mode == "regenerate" else cfg.mode
        if mode == "blur":
            result.images = auditor.blur(result.images, audits)
            result.output = None  # the pipeline's output object still holds the unblurred images
        elif mode == "block":
            result.images, result.output = None, None
        result.audit = auditor.outcome(audits, action=mode, attempts=attempts, ocr_s=ocr_s)

    def _escalation(self, attempts: int) -> list[InjectionConfig]:
        """The injection for each attempt: the preset, then its modules from step 0, then
        every text module of the same kind from step 0. Without ``reseed`` a repeated
        configuration would redraw the same image, so each one is tried once."""
        denoiser = denoiser_of(self.pipe)[1]
        sites = attention_sites(denoiser)
        kinds = {site.kind for site in sites if site.name in self.config.modules}
        wider = [site.name for site in sites if site.kind in kinds]
        configs: list[InjectionConfig] = []
        for config in (
            self.config,
            self.config.model_copy(update={"start": 0.0}),
            InjectionConfig(modules=wider, start=0.0, name=f"{self.config.name or 'preset'}-all-{'-'.join(sorted(kinds))}"),
        ):
            if not any(set(c.modules) == set(config.modules) and c.start == config.start for c in configs):
                configs.append(config)
        if self.auditor is not None and self.auditor.config.reseed:
            configs += configs[-1:] * attempts  # new seeds make repeats worth trying
        return configs[:attempts]
