"""Encode the benign prompts exactly as the pipeline encodes its own prompt.

We call the pipeline's own ``encode_prompt`` (SD, SDXL, IF and SD3 all have one) with
the arguments the coming ``__call__`` will use (``clip_skip``, ``max_sequence_length``,
``clean_caption``, the LoRA scale), classifier-free guidance off: the unconditional
half is never touched.

The batch is the full prompt list, with the original text in rows that are not
rewritten. Encoding the same batch shape as the pipeline's own pass keeps every row
bitwise equal to what the pipeline computes for it, whatever kernels the text encoder
picks for that shape.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch

from safetext.inject.processors import InjectionError

#: ``__call__`` arguments that change how a prompt is encoded, forwarded when accepted.
_ENCODE_PASSTHROUGH = ("clip_skip", "max_sequence_length", "clean_caption")

#: Arguments that carry extra prompt text the guard does not check.
UNCHECKED_TEXT_ARGS = ("prompt_2", "prompt_3", "prompt_embeds", "pooled_prompt_embeds")


@dataclass
class EncodedText:
    """Conditional text embeddings, one row per generated image."""

    embeds: torch.Tensor  # (n_cond, L, D), as the pipeline passes them to the denoiser
    pooled: torch.Tensor | None  # (n_cond, D) pooled embeddings, for pipelines that use them


def call_default(pipe: Any, name: str) -> Any:
    """The default of ``pipe.__call__``'s argument ``name`` (None when absent)."""
    param = inspect.signature(pipe.__call__).parameters.get(name)
    if param is None or param.default is inspect.Parameter.empty:
        return None
    return param.default


def _lora_scale(pipe_kwargs: dict[str, Any]) -> float | None:
    for key in ("cross_attention_kwargs", "joint_attention_kwargs", "attention_kwargs"):
        extra = pipe_kwargs.get(key)
        if extra and extra.get("scale") is not None:
            return float(extra["scale"])
    return None


def encode_text(pipe: Any, prompts: list[str], pipe_kwargs: dict[str, Any]) -> EncodedText:
    """Encode ``prompts`` (conditional half only) with the pipeline's ``encode_prompt``."""
    encode = getattr(pipe, "encode_prompt", None)
    if encode is None:
        raise InjectionError(f"{type(pipe).__name__} has no encode_prompt; cannot encode the benign prompt")
    accepted = inspect.signature(encode).parameters
    nipp = pipe_kwargs.get("num_images_per_prompt") or 1
    args: dict[str, Any] = {
        "prompt": prompts,
        "num_images_per_prompt": nipp,
        "do_classifier_free_guidance": False,
        "device": pipe._execution_device,
    }
    for name in ("prompt_2", "prompt_3"):
        if name in accepted:
            args[name] = None  # the pipelines then reuse `prompt`, as in their own call
    for name in _ENCODE_PASSTHROUGH:
        if name in accepted:
            args[name] = pipe_kwargs.get(name, call_default(pipe, name))
    if "lora_scale" in accepted:
        args["lora_scale"] = _lora_scale(pipe_kwargs)
    unknown = set(args) - set(accepted)
    if unknown:
        raise InjectionError(f"{type(pipe).__name__}.encode_prompt does not take {sorted(unknown)}")
    with torch.no_grad():
        out = encode(**args)
    if not isinstance(out, tuple) or not isinstance(out[0], torch.Tensor):
        raise InjectionError(f"unexpected encode_prompt output from {type(pipe).__name__}")
    pooled = out[2] if len(out) >= 4 and isinstance(out[2], torch.Tensor) else None
    return EncodedText(embeds=out[0], pooled=pooled)
