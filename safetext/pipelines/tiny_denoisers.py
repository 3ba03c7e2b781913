"""Tiny random-weight denoisers of the DiT families safetext does not inject into yet.

HiDream and FLUX.2 each feed text to attention in a way of their own (new attention
classes, their own text-and-image streams), so
:func:`safetext.inject.attention_sites` refuses them by class, and a ``Guard`` on their
pipelines fails at construction naming the pipeline and the attention classes. These
builds, with the real module trees of diffusers' classes and tiny widths, let tests check
that refusal offline; no text encoder or pipeline is built around them. (Z-Image and
Lumina2 are injected into: their tiny pipelines are in :mod:`safetext.pipelines.tiny_single`.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _hidream() -> torch.nn.Module:
    from diffusers import HiDreamImageTransformer2DModel

    return HiDreamImageTransformer2DModel(
        patch_size=2, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, caption_channels=[32, 16], text_emb_dim=32, num_routed_experts=2,
        num_activated_experts=1, axes_dims_rope=(8, 8), max_resolution=(32, 32), llama_layers=[0, 1],
    )


def _flux2() -> torch.nn.Module:
    from diffusers import Flux2Transformer2DModel

    return Flux2Transformer2DModel(
        in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, timestep_guidance_channels=16, axes_dims_rope=(4, 4, 4, 4),
    )


#: Family -> (pipeline class name, builder of its denoiser).
REFUSED_DENOISERS: dict[str, tuple[str, Callable[[], torch.nn.Module]]] = {
    "hidream": ("HiDreamImagePipeline", _hidream),
    "flux2": ("Flux2Pipeline", _flux2),
}


def build_tiny_denoiser(kind: str, seed: int = 0) -> torch.nn.Module:
    """The tiny denoiser of ``kind`` (a key of :data:`REFUSED_DENOISERS`), in eval mode."""
    try:
        builder = REFUSED_DENOISERS[kind][1]
    except KeyError:
        raise ValueError(f"unknown tiny denoiser {kind!r}; choose one of {', '.join(REFUSED_DENOISERS)}") from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return builder().eval()
