"""Run the pipeline for a set of prompt pairs: baselines once, then one call per patched configuration.

* **Same noise everywhere.** Pair i always gets a CPU generator seeded ``seed + i``, so its
  A image, B-direct image and every patched image start from the same latents, whatever
  the batch it runs in.
* **Batched.** Up to ``batch_size`` pairs run in one pipeline call (halved on
  out-of-memory); the injection engine patches every row with its own pair's benign text.
* **Encodings cached.** Prompts A, B and the unconditional prompt are encoded once, with the
  pipeline's own ``encode_prompt`` and the arguments its ``__call__`` would use, and passed
  as ``prompt_embeds`` (plus pooled / negative embeddings). The benign K/V for a patched
  run still come from :func:`~safetext.inject.run_injected`, which encodes B itself (one
  text-encoder pass per call, the guard's own cost).
* **Counted.** ``calls`` and ``images`` count the denoising runs, baselines included.
* **Recorded.** With ``record_steps``, the two baseline runs also record the denoiser's
  inputs at those steps, for :mod:`~safetext.localize.attribution` (no extra run).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from safetext.inject import InjectionConfig, attention_sites, pipeline_lock, run_injected
from safetext.inject.encode import call_default
from safetext.inject.sites import AttentionSite, denoiser_of
from safetext.localize.attribution import StepInputs, record_inputs
from safetext.localize.pairs import PromptPair

#: ``__call__`` arguments that change how a prompt is encoded, forwarded to ``encode_prompt``.
_ENCODE_ARGS = ("clip_skip", "max_sequence_length", "clean_caption", "negative_prompt")
_EMBED_NAMES = {
    2: ("prompt_embeds", "negative_prompt_embeds"),
    4: ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"),
}


def uses_cfg(pipe: Any, call_kwargs: dict[str, Any]) -> bool:
    """Whether the coming call runs classifier-free guidance (as the pipelines decide it)."""
    scale = call_kwargs.get("guidance_scale", call_default(pipe, "guidance_scale"))
    _, denoiser = denoiser_of(pipe)
    return bool(scale is not None and scale > 1.0 and getattr(denoiser.config, "time_cond_proj_dim", None) is None)


def encode_prompts(pipe: Any, prompts: list[str], call_kwargs: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """``prompt_embeds`` & co. for ``prompts`` as ``pipe(prompt=prompts, **call_kwargs)`` would make them.

    None when the pipeline's ``encode_prompt`` does not fit the known layouts (the caller
    then passes the prompt strings).
    """
    encode = getattr(pipe, "encode_prompt", None)
    call_params = inspect.signature(pipe.__call__).parameters
    if encode is None or "prompt_embeds" not in call_params:
        return None
    accepted = inspect.signature(encode).parameters
    args: dict[str, Any] = {
        "prompt": prompts,
        "num_images_per_prompt": 1,
        "do_classifier_free_guidance": uses_cfg(pipe, call_kwargs),
        "device": pipe._execution_device,
    }
    for name in ("prompt_2", "prompt_3"):
        if name in accepted:
            args[name] = None
    for name in _ENCODE_ARGS:
        if name in accepted:
            args[name] = call_kwargs.get(name, call_default(pipe, name))
    if set(args) - set(accepted):
        return None
    with torch.no_grad():
        out = encode(**args)
    names = _EMBED_NAMES.get(len(out)) if isinstance(out, tuple) else None
    if names is None or any(n not in call_params for n in names):
        return None
    return {name: tensor for name, tensor in zip(names, out) if isinstance(tensor, torch.Tensor)}


def images_of(output: Any) -> list[Image.Image]:
    images = output.images if hasattr(output, "images") else output[0]
    if not isinstance(images, list) or not all(isinstance(im, Image.Image) for im in images):
        raise TypeError("the pipeline did not return PIL images (pass output_type='pil')")
    return images


class PatchRunner:
    """Generates the A, B-direct and patched images of ``pairs`` on ``pipe``."""

    def __init__(
        self,
        pipe: Any,
        pairs: Sequence[PromptPair],
        *,
        steps: int,
        seed: int = 0,
        batch_size: int = 8,
        call_kwargs: dict[str, Any] | None = None,
        record_steps: Sequence[int] = (),
    ) -> None:
        if not pairs:
            raise ValueError("no prompt pairs")
        if steps < 1 or batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
        self.pipe = pipe
        self.pairs = list(pairs)
        self.steps = steps
        self.seed = seed
        self.batch_size = batch_size
        self.kwargs: dict[str, Any] = {**(call_kwargs or {}), "num_inference_steps": steps, "output_type": "pil"}
        self.sites: list[AttentionSite] = attention_sites(pipe)
        self.calls = 0
        self.images = 0
        self.seconds = 0.0
        self._embeds: dict[str, dict[str, torch.Tensor] | None] = {}
        self._baselines: dict[str, list[Image.Image]] = {}
        self.record_steps = sorted(set(record_steps))
        self.recorded: dict[str, list[StepInputs]] = {"a": [], "b": []}

    @property
    def candidates(self) -> list[str]:
        return [site.name for site in self.sites]

    @property
    def run_rows(self) -> int:
        """Denoiser row evaluations of one patched run: pairs x steps x guidance halves."""
        return len(self.pairs) * self.steps * (2 if uses_cfg(self.pipe, self.kwargs) else 1)

    # ------------------------------------------------------------------ pieces

    def _prompts(self, which: str) -> list[str]:
        return [p.a if which == "a" else p.b for p in self.pairs]

    def _encoded(self, which: str) -> dict[str, torch.Tensor] | None:
        if which not in self._embeds:
            self._embeds[which] = encode_prompts(self.pipe, self._prompts(which), self.kwargs)
        return self._embeds[which]

    def _text_args(self, which: str, rows: range) -> dict[str, Any]:
        embeds = self._encoded(which)
        if embeds is None:
            return {"prompt": self._prompts(which)[rows.start : rows.stop]}
        return {name: tensor[rows.start : rows.stop] for name, tensor in embeds.items()}

    def _generators(self, rows: range) -> list[torch.Generator]:
        return [torch.Generator(device="cpu").manual_seed(self.seed + i) for i in rows]

    def _call(self, which: str, config: InjectionConfig | None, rows: range) -> list[Image.Image]:
        call = {**self.kwargs, **self._text_args(which, rows), "generator": self._generators(rows)}
        with torch.no_grad(), pipeline_lock(self.pipe):
            if config is None and self.record_steps:
                with record_inputs(denoiser_of(self.pipe)[1], self.record_steps, len(rows)) as recording:
                    output = self.pipe(**call)
                if recording.calls != self.steps:
                    raise RuntimeError(
                        f"{type(self.pipe).__name__} called its denoiser {recording.calls} times for {self.steps} steps; "
                        "attribution needs one call per step (use the group or sweep strategy)"
                    )
                self.recorded[which].append(recording.inputs)
            elif config is None:
                output = self.pipe(**call)
            else:
                prompts_a = self._prompts("a")[rows.start : rows.stop]
                benign: list[str | None] = list(self._prompts("b")[rows.start : rows.stop])
                kwargs = {k: v for k, v in call.items() if k != "prompt"}
                output = run_injected(self.pipe, prompts_a, benign, config, **kwargs)
        self.calls += 1
        self.images += len(rows)
        return images_of(output)

    def _run(self, which: str, config: InjectionConfig | None) -> list[Image.Image]:
        """All pairs, ``batch_size`` per call; on out-of-memory the batch is halved and the chunk retried."""
        began = time.perf_counter()
        images: list[Image.Image] = []
        done = 0
        while done < len(self.pairs):
            rows = range(done, min(done + self.batch_size, len(self.pairs)))
            try:
                images.extend(self._call(which, config, rows))
            except torch.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                self.batch_size = max(1, self.batch_size // 2)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            done = rows.stop
        self.seconds += time.perf_counter() - began
        return images

    # ------------------------------------------------------------------ public

    def unpatched(self) -> list[Image.Image]:
        """Prompt A as the model draws it (cached)."""
        if "a" not in self._baselines:
            self._baselines["a"] = self._run("a", None)
        return self._baselines["a"]

    def b_direct(self) -> list[Image.Image]:
        """Prompt B generated outright, same noise (cached)."""
        if "b" not in self._baselines:
            self._baselines["b"] = self._run("b", None)
        return self._baselines["b"]

    def patched(self, modules: Sequence[str], start_step: int) -> list[Image.Image]:
        """Prompt A with B's text K/V in ``modules`` from ``start_step`` (0-based) on."""
        if not 0 <= start_step < self.steps:
            raise ValueError(f"start step {start_step} is outside 0..{self.steps - 1}")
        config = InjectionConfig(
            modules=list(modules), start=start_step / self.steps, source="safetext localize (candidate)"
        )
        if config.start_step(self.steps) != start_step:  # pragma: no cover - float rounding guard
            raise RuntimeError(f"start {config.start} does not map back to step {start_step}")
        return self._run("a", config)
