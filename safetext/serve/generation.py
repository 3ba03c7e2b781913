"""The model side of the service: one pipeline, one row-scoped :class:`~safetext.Guard` per
policy, and the batch runner the :class:`~safetext.serve.batching.Batcher` calls.

Torch, diffusers and the pipeline load here, only when a model is served. Every image
leaves through a guard call; a failure anywhere is raised to the request (500, no image).

Batches: the jobs of one batch share every setting but prompt, ``prompt_2``, ``n`` and
seed. Each image gets its own CPU ``torch.Generator`` seeded ``seed + i``, so a request's
images do not depend on its batch-mates, and ``block_scope="row"`` keeps a blocked prompt
from blocking them. CPU generators also make a seed mean the same image on any device.
"""

from __future__ import annotations

import base64
import inspect
import io
import secrets
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from safetext.serve.batching import Job
from safetext.serve.config import ServeConfig, ServeError, parse_size
from safetext.serve.schemas import MAX_SEED, ImageRequest

#: Audit modes whose outcome is decided per image, so batch-mates cannot change each other's result.
BATCHABLE_AUDIT = ("off", "flag")


@dataclass(frozen=True)
class Spec:
    """One validated generation request, with every default filled in."""

    prompt: str
    prompt_2: str | None
    n: int
    seed: int
    steps: int
    guidance_scale: float | None
    width: int
    height: int
    policy: str

    def key(self, batchable: bool, job_tag: int) -> Hashable:
        """Jobs with equal keys may share a pipeline call."""
        shared = (self.policy, self.width, self.height, self.steps, self.guidance_scale, self.prompt_2 is not None)
        return shared if batchable else (*shared, job_tag)


@dataclass
class Outcome:
    """What one job got: its images as base64 PNGs, or None when the guard blocked them."""

    decision: Any
    images: list[str] | None
    patched_layers: list[str]
    audit: dict[str, Any] | None
    timings: dict[str, float]
    batch_images: int


def native_size(pipe: Any) -> tuple[int, int]:
    """``(width, height)`` the denoiser was configured for (its ``sample_size`` in pixels)."""
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    sample = getattr(getattr(denoiser, "config", None), "sample_size", None)
    scale = int(getattr(pipe, "vae_scale_factor", 1) or 1)
    if isinstance(sample, int):
        return sample * scale, sample * scale
    if isinstance(sample, (list, tuple)) and len(sample) == 2:
        return int(sample[1]) * scale, int(sample[0]) * scale
    raise ServeError(500, "config_error", f"cannot tell the image size of {type(pipe).__name__}; give sizes")


def _png_b64(image: Any) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _audit_slice(audit: Any, positions: list[int]) -> dict[str, Any] | None:
    """The audit of the images at ``positions`` of the generated images (indices renumbered)."""
    if audit is None:
        return None
    out = audit.to_dict()
    out["read"] = [audit.read[i] for i in positions if i < len(audit.read)]
    leaked = [positions.index(i) for i in audit.leaked_images if i in positions]
    out["leaked_images"], out["leaked"] = leaked, bool(leaked)
    return out


class Generation:
    """The pipeline and its guards, built once at startup; :meth:`run` generates one batch."""

    def __init__(self, config: ServeConfig, engines: dict[str, Any]) -> None:
        import torch

        from safetext.guard import Guard
        from safetext.pipelines.load import load_pipeline
        from safetext.pipelines.profile import GENERIC, profile_for

        if config.threads is not None:
            torch.set_num_threads(config.threads)
        if config.model is None:
            raise ValueError("Generation needs a model; gateway mode (model=None) has none")
        self.config = config
        self.profile = profile_for(config.model) or GENERIC
        self.pipe = load_pipeline(config.model, device=config.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.guards = {
            name: Guard(
                self.pipe, policy=engine, preset=config.preset, audit=config.audit, log=config.log, block_scope="row"
            )
            for name, engine in engines.items()
        }
        first = next(iter(self.guards.values()))
        # The named parameter, not Guard.text_inputs: a pipeline whose __call__ takes **kwargs would ignore it.
        self.takes_prompt_2 = "prompt_2" in inspect.signature(self.pipe.__call__).parameters
        self.batchable = all(g.auditor is None or g.auditor.config.mode in BATCHABLE_AUDIT for g in self.guards.values())
        self.audit_mode = first.auditor.config.mode if first.auditor is not None else "off"
        self.native = native_size(self.pipe)
        self.sizes = [parse_size(s) for s in config.sizes] if config.sizes else [self.native]
        from safetext.inject.encode import call_default

        defaults = dict(self.profile.generation)
        self.default_steps = int(defaults.get("num_inference_steps") or call_default(self.pipe, "num_inference_steps") or 50)
        guidance = defaults.get("guidance_scale", call_default(self.pipe, "guidance_scale"))
        self.default_guidance = float(guidance) if guidance is not None else None

    def spec(self, body: ImageRequest, policy: str) -> Spec:
        """Validate ``body`` against what this model and server do; ServeError (400) names the field."""
        config = self.config
        if body.response_format == "url":
            raise ServeError(400, "unsupported_response_format", "response_format: 'url' is not served (no image store); use 'b64_json'")
        if body.n > min(config.max_n, config.max_batch):
            raise ServeError(400, "invalid_n", f"n: {body.n} images; this server gives at most {min(config.max_n, config.max_batch)} per request")
        size = parse_size(body.size) if body.size is not None else self.sizes[0]
        if size not in self.sizes:
            served = ", ".join(f"{w}x{h}" for w, h in self.sizes)
            raise ServeError(400, "unsupported_size", f"size: {body.size} is not served by this model; served: {served}")
        steps = body.steps if body.steps is not None else self.default_steps
        if steps > config.max_steps:
            raise ServeError(400, "invalid_steps", f"steps: {steps}; the limit is {config.max_steps}")
        if body.prompt_2 is not None and not self.takes_prompt_2:
            raise ServeError(400, "unsupported_field", f"prompt_2: {type(self.pipe).__name__} has no second text encoder")
        for name, text in (("prompt", body.prompt), ("prompt_2", body.prompt_2)):
            if text is not None and len(text) > config.max_prompt_chars:
                raise ServeError(413, "prompt_too_long", f"{name} has {len(text)} characters; the limit is {config.max_prompt_chars}")
        seed = body.seed if body.seed is not None else secrets.randbelow(MAX_SEED + 1 - body.n)
        guidance = body.guidance_scale if body.guidance_scale is not None else self.default_guidance
        return Spec(body.prompt, body.prompt_2, body.n, seed, steps, guidance, size[0], size[1], policy)

    def run(self, jobs: Sequence[Job]) -> list[Outcome]:
        """One guarded pipeline call for every image of ``jobs`` (all share one key)."""
        import torch

        specs: list[Spec] = [job.payload for job in jobs]
        first = specs[0]
        prompts = [s.prompt for s in specs for _ in range(s.n)]
        kwargs: dict[str, Any] = {
            "num_inference_steps": first.steps,
            "height": first.height,
            "width": first.width,
            "generator": [torch.Generator().manual_seed(s.seed + i) for s in specs for i in range(s.n)],
        }
        if first.guidance_scale is not None:
            kwargs["guidance_scale"] = first.guidance_scale
        if first.prompt_2 is not None:
            kwargs["prompt_2"] = [s.prompt_2 for s in specs for _ in range(s.n)]
        began = time.perf_counter()
        result = self.guards[first.policy](prompts, **kwargs)
        generate_s = time.perf_counter() - began
        images = result.images
        generated = [i for i in range(len(prompts)) if images is not None and images[i] is not None]
        outcomes, row = [], 0
        for job, spec in zip(jobs, specs):
            rows = list(range(row, row + spec.n))
            row += spec.n
            mine = None if images is None or any(images[i] is None for i in rows) else [images[i] for i in rows]
            timings = {"queue_s": (job.started or began) - job.enqueued, "generate_s": generate_s}
            outcomes.append(
                Outcome(
                    decision=_worst(result, rows),
                    images=[_png_b64(image) for image in mine] if mine is not None else None,
                    patched_layers=list(result.patched_layers) if mine is not None else [],
                    audit=_audit_slice(result.audit, [generated.index(i) for i in rows if i in generated]),
                    timings=timings,
                    batch_images=len(prompts),
                )
            )
        return outcomes


def _worst(result: Any, rows: list[int]) -> Any:
    """The decision shown for a request: its ``prompt_2`` decision when that one is worse."""
    from safetext.policy.decision import ACTION_SEVERITY

    decisions = [ds[rows[0]] for ds in result.input_decisions.values()]
    return max(decisions, key=lambda d: ACTION_SEVERITY[d.action])
