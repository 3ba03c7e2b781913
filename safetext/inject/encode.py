"""Encode the benign prompts exactly as the pipeline encodes its own prompt.

We call the pipeline's own ``encode_prompt`` (SD, SDXL, IF, SD3, FLUX, PixArt, Sana,
Qwen-Image, Z-Image and Lumina2 all have one) with the arguments the coming ``__call__``
will use (``clip_skip``, ``max_sequence_length``, ``clean_caption``, Sana's
``complex_human_instruction``, Lumina2's ``system_prompt``, the LoRA scale), each taken
from the call or else from ``__call__``'s own default, classifier-free guidance off: the
unconditional half is never touched. ``__call__`` and ``encode_prompt`` defaults differ
(Sana's ``__call__`` prepends a default instruction, its ``encode_prompt`` none; PixArt's
``__call__`` cleans captions by default, its ``encode_prompt`` does not),
so the call's value is what counts.

Pipelines whose ``encode_prompt`` takes a ``prompt_attention_mask`` (PixArt, Sana, Lumina2) return
``(embeds, mask, negative embeds, negative mask)``; the mask marks the real tokens of each
row and is returned with the embeddings, since the attention masks the padding by it.
Qwen-Image's ``encode_prompt`` (``prompt_embeds_mask``) returns ``(embeds, mask)``, the
mask None when every row is as long as the longest; None is kept (all tokens real).
Z-Image's returns a list of per-prompt tensors of their own lengths (and takes no
``num_images_per_prompt``: the pipeline repeats the rows); they are zero-padded into one
batch with a mask of their real tokens, and repeated as the pipeline repeats them.
Lumina2's repeats its embeddings per prompt but tiles its mask (:data:`_ENCODE_ONCE_PIPELINES`),
so its prompts are encoded once and each row is repeated with its own mask.
HiDream's returns ``(t5, negative t5, llama, negative llama, pooled, negative pooled)``, its
Llama states every hidden layer's, stacked as ``(layers, rows, tokens, dim)``; they are kept in
:attr:`EncodedText.layers`.
FLUX.2's (``Flux2Pipeline``, ``Flux2KleinPipeline``) returns ``(embeds, text ids)``: every prompt
is padded to ``max_sequence_length`` inside the pipeline's chat template (and system message),
with the hidden states of ``text_encoder_out_layers`` side by side, and no mask reaches the
transformer. Its ``caption_upsample_temperature`` has the text encoder rewrite the prompt before
encoding it; the benign prompt cannot be encoded as that rewritten text would be, so it is refused.

Every text input the pipeline takes is encoded as the pipeline would encode it:
``prompt`` feeds the first text encoder, ``prompt_2`` and ``prompt_3`` (SDXL, SD3, HiDream) the
second and third, ``prompt_4`` (HiDream) the fourth, and an input left as None reuses ``prompt`` there, as in the
pipelines' own call. A benign ``prompt_2`` therefore changes only the part of the
embedding that text encoder produces.

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
_ENCODE_PASSTHROUGH = (
    "clip_skip", "max_sequence_length", "clean_caption", "complex_human_instruction", "system_prompt",
    "text_encoder_out_layers",
)

#: Pipelines whose ``encode_prompt`` repeats the text mask tiled (``[p0, p1, p0, p1]``) but the
#: embeddings interleaved (``[p0, p0, p1, p1]``) for ``num_images_per_prompt``: their prompts
#: are encoded once each and repeated here, so each benign row keeps its own mask.
_ENCODE_ONCE_PIPELINES = ("Lumina2Pipeline",)

#: The positive text inputs of diffusers pipelines, in text-encoder order (``prompt_4``: HiDream's Llama).
TEXT_INPUTS = ("prompt", "prompt_2", "prompt_3", "prompt_4")

#: Their negative counterparts: they steer away from their content and pass through unchanged.
NEGATIVE_TEXT_INPUTS = ("negative_prompt", "negative_prompt_2", "negative_prompt_3", "negative_prompt_4")


def precomputed_text_args(pipe_kwargs: dict[str, Any]) -> list[str]:
    """Positive prompt embeddings given by the caller: text the policy cannot read."""
    return sorted(
        k for k, v in pipe_kwargs.items()
        if v is not None and (k.startswith("prompt_embeds") or k.startswith("pooled_prompt_embeds"))
    )


@dataclass
class EncodedText:
    """Conditional text embeddings, one row per generated image."""

    embeds: torch.Tensor  # (n_cond, L, D), as the pipeline passes them to the denoiser
    pooled: torch.Tensor | None  # (n_cond, D) pooled embeddings, for pipelines that use them
    mask: torch.Tensor | None = None  # (n_cond, L) 1 = token, 0 = padding, for pipelines that mask text
    layers: torch.Tensor | None = None  # (layers, n_cond, L, D) per-layer text states (HiDream's Llama)


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


def encode_text(pipe: Any, texts: dict[str, list[str]], pipe_kwargs: dict[str, Any]) -> EncodedText:
    """Encode ``texts`` (conditional half only) with the pipeline's ``encode_prompt``.

    ``texts["prompt"]`` is required; ``prompt_2``/``prompt_3`` lists are given only where
    the caller gave those inputs (elsewhere the pipeline reuses ``prompt``).
    """
    encode = getattr(pipe, "encode_prompt", None)
    if encode is None:
        raise InjectionError(f"{type(pipe).__name__} has no encode_prompt; cannot encode the benign prompt")
    if pipe_kwargs.get("caption_upsample_temperature") is not None:
        raise InjectionError(
            f"{type(pipe).__name__} with caption_upsample_temperature rewrites the prompt with its text encoder "
            "before encoding it; injection needs the prompt as given (leave it None)"
        )
    accepted = inspect.signature(encode).parameters
    nipp = pipe_kwargs.get("num_images_per_prompt") or 1
    args: dict[str, Any] = {"prompt": list(texts["prompt"]), "device": pipe._execution_device}
    # Else the pipeline repeats the rows itself (Z-Image), or tiles its mask (Lumina2): we repeat them.
    repeat = nipp
    if "num_images_per_prompt" in accepted:
        once = type(pipe).__name__ in _ENCODE_ONCE_PIPELINES
        args["num_images_per_prompt"] = 1 if once else nipp
        repeat = nipp if once else 1
    if "do_classifier_free_guidance" in accepted:  # FLUX's encode_prompt has no unconditional half
        args["do_classifier_free_guidance"] = False
    for name in TEXT_INPUTS[1:]:
        if name in accepted:
            args[name] = texts.get(name)  # None: the pipeline reuses `prompt`, as in its own call
        elif texts.get(name) is not None:
            raise InjectionError(f"{type(pipe).__name__}.encode_prompt takes no {name}")
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
    if isinstance(out, tuple) and isinstance(out[0], list):
        return _per_prompt(pipe, out[0], repeat)
    if repeat > 1 and isinstance(out, tuple) and isinstance(out[0], torch.Tensor):
        out = tuple(x.repeat_interleave(repeat, dim=0) if isinstance(x, torch.Tensor) else x for x in out)
    if not isinstance(out, tuple) or not isinstance(out[0], torch.Tensor):
        raise InjectionError(f"unexpected encode_prompt output from {type(pipe).__name__}")
    embeds = out[0]
    if "prompt_attention_mask" in accepted:  # (embeds, mask, negative embeds, negative mask)
        mask = out[1] if len(out) >= 2 else None
        if not isinstance(mask, torch.Tensor) or mask.shape != embeds.shape[:2]:
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else None
            raise InjectionError(
                f"{type(pipe).__name__}.encode_prompt returned a text mask of shape {shape} "
                f"for embeddings of shape {tuple(embeds.shape)}"
            )
        return EncodedText(embeds=embeds, pooled=None, mask=mask)
    if "prompt_embeds_mask" in accepted:  # Qwen-Image: (embeds, mask), the mask None when all tokens are real
        mask = out[1] if len(out) >= 2 else None
        if mask is not None and (not isinstance(mask, torch.Tensor) or mask.shape != embeds.shape[:2]):
            raise InjectionError(
                f"{type(pipe).__name__}.encode_prompt returned a text mask that does not fit embeddings "
                f"of shape {tuple(embeds.shape)}"
            )
        return EncodedText(embeds=embeds, pooled=None, mask=mask)
    if "prompt_embeds_llama3" in accepted:  # HiDream: (t5, neg t5, llama layers, neg llama, pooled, neg pooled)
        layers = out[2] if len(out) >= 5 else None
        pooled = out[4] if len(out) >= 5 else None
        if not isinstance(layers, torch.Tensor) or layers.ndim != 4 or layers.shape[1] != embeds.shape[0]:
            raise InjectionError(f"{type(pipe).__name__}.encode_prompt returned no (layers, rows, L, D) Llama states")
        if not isinstance(pooled, torch.Tensor) or pooled.shape[0] != embeds.shape[0]:
            raise InjectionError(f"{type(pipe).__name__}.encode_prompt returned no pooled embeddings")
        return EncodedText(embeds=embeds, pooled=pooled, layers=layers)
    if "do_classifier_free_guidance" not in accepted and "pooled_prompt_embeds" in accepted:
        # FLUX: (embeds, pooled, text ids), conditional only
        pooled = out[1] if len(out) >= 2 and isinstance(out[1], torch.Tensor) else None
        return EncodedText(embeds=embeds, pooled=pooled)
    pooled = out[2] if len(out) >= 4 and isinstance(out[2], torch.Tensor) else None
    return EncodedText(embeds=embeds, pooled=pooled)


def _per_prompt(pipe: Any, embeds: list[Any], repeat: int) -> EncodedText:
    """Z-Image's per-prompt tensors (each its real tokens) as one zero-padded batch and its mask.

    Row ``i``'s tensor is ``embeds[mask[i]]`` again; ``repeat`` copies each row as the pipeline
    does for ``num_images_per_prompt``.
    """
    if not embeds or not all(isinstance(e, torch.Tensor) and e.ndim == 2 for e in embeds):
        raise InjectionError(f"{type(pipe).__name__}.encode_prompt returned no list of (tokens, dim) tensors")
    rows = [e for e in embeds for _ in range(repeat)]
    length = max(e.shape[0] for e in rows)
    batch = rows[0].new_zeros((len(rows), length, rows[0].shape[1]))
    mask = torch.zeros((len(rows), length), dtype=torch.bool, device=rows[0].device)
    for i, e in enumerate(rows):
        batch[i, : e.shape[0]] = e
        mask[i, : e.shape[0]] = True
    return EncodedText(embeds=batch, pooled=None, mask=mask)
