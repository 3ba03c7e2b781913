"""Tiny random-weight denoisers of DiT families safetext does not inject into.

Chroma (a FLUX.1 derivative whose blocks take their modulation from a separate
approximator network) and CogView4 (one ``Attention`` over ``[text, image]`` with its own
processor) feed text to attention in ways the injector does not know, so
:func:`safetext.inject.attention_sites` refuses them by class, and a ``Guard`` on their
pipelines fails at construction naming the pipeline, the denoiser and the attention
classes. These builds, with the real module trees of diffusers' classes and tiny widths,
let tests check that refusal offline; no text encoder or pipeline is built around them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _chroma() -> torch.nn.Module:
    from diffusers import ChromaTransformer2DModel

    return ChromaTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, axes_dims_rope=(4, 6, 6), approximator_num_channels=8, approximator_hidden_dim=32,
        approximator_layers=1,
    )


def _cogview4() -> torch.nn.Module:
    from diffusers import CogView4Transformer2DModel

    return CogView4Transformer2DModel(
        patch_size=2, in_channels=4, out_channels=4, num_layers=1, attention_head_dim=16, num_attention_heads=2,
        text_embed_dim=32, time_embed_dim=16, condition_dim=8, pos_embed_max_size=16, sample_size=16, rope_axes_dim=(8, 8),
    )


#: Family -> (pipeline class name, builder of its denoiser).
REFUSED_DENOISERS: dict[str, tuple[str, Callable[[], torch.nn.Module]]] = {
    "chroma": ("ChromaPipeline", _chroma),
    "cogview4": ("CogView4Pipeline", _cogview4),
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
