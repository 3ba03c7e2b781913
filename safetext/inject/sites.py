"""Find the attention modules that read text keys/values, in forward order.

Three kinds exist in the supported pipelines:

* ``cross``: U-Net cross-attention (``...transformer_blocks.N.attn2``, SD 1.x/2.x, SDXL).
  K/V = ``to_k/to_v(text)``.
* ``added_kv``: DeepFloyd IF's attention with extra text projections (``...attentions.N``).
  The text K/V from ``add_k_proj/add_v_proj`` are joined to the image self-attention K/V.
* ``joint``: MMDiT joint attention (SD3 ``transformer_blocks.N.attn``). The text stream has
  its own Q/K/V (``add_q_proj/add_k_proj/add_v_proj``); only the text K/V are swapped.

Forward order is not registration order: ``UNet2DConditionModel`` registers ``up_blocks``
before ``mid_block``. We order by the U-Net's data flow (down, mid, up) and keep
registration order inside each part; the tests check this against a traced forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from diffusers.models.attention_processor import Attention

AttentionKind = Literal["cross", "added_kv", "joint"]

#: Data-flow rank of a U-Net's top-level children; anything else keeps rank 1 (stable sort).
_TOP_LEVEL_RANK = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}


@dataclass(frozen=True)
class AttentionSite:
    """One text-reading attention module: its name, kind and size."""

    name: str
    kind: AttentionKind
    index: int  # position in forward order among the candidates (0-based)
    kv_params: int  # parameters of the projections that turn text into K/V
    params: int  # all parameters of the module


def denoiser_of(pipe: Any) -> tuple[str, torch.nn.Module]:
    """The pipeline's denoiser and its component name (``unet`` or ``transformer``)."""
    for name in ("unet", "transformer"):
        module = getattr(pipe, name, None)
        if isinstance(module, torch.nn.Module):
            return name, module
    raise TypeError(f"{type(pipe).__name__} has no 'unet' or 'transformer' component")


def attention_kind(module: torch.nn.Module) -> AttentionKind | None:
    """The kind of text attention ``module`` is, or None when it reads no text K/V."""
    if not isinstance(module, Attention):
        return None
    if getattr(module, "add_q_proj", None) is not None and getattr(module, "add_k_proj", None) is not None:
        return "joint"
    if module.added_kv_proj_dim is not None and getattr(module, "add_k_proj", None) is not None:
        return "added_kv"
    if module.is_cross_attention:
        return "cross"
    return None


def _kv_params(module: torch.nn.Module, kind: AttentionKind) -> int:
    names = ("to_k", "to_v") if kind == "cross" else ("add_k_proj", "add_v_proj")
    return sum(p.numel() for n in names for p in getattr(module, n).parameters())


def _forward_rank(name: str) -> int:
    return _TOP_LEVEL_RANK.get(name.split(".", 1)[0], 1)


def attention_sites(pipe_or_denoiser: Any) -> list[AttentionSite]:
    """All text-reading attention modules of a pipeline (or denoiser), in forward order."""
    denoiser = pipe_or_denoiser if isinstance(pipe_or_denoiser, torch.nn.Module) else denoiser_of(pipe_or_denoiser)[1]
    found = [(name, module, attention_kind(module)) for name, module in denoiser.named_modules()]
    found = [item for item in found if item[2] is not None]
    found.sort(key=lambda item: _forward_rank(item[0]))  # stable: keeps order within a part
    return [
        AttentionSite(
            name=name,
            kind=kind,  # type: ignore[arg-type]
            index=i,
            kv_params=_kv_params(module, kind),  # type: ignore[arg-type]
            params=sum(p.numel() for p in module.parameters()),
        )
        for i, (name, module, kind) in enumerate(found)
    ]


def candidate_modules(pipe_or_denoiser: Any) -> list[str]:
    """Names of the attention modules that take text K/V, in forward order.

    These are the valid entries of ``InjectionConfig.modules`` and the search space of
    ``safetext localize`` (70 for SDXL, 24 for SD3, 22 for IF-I-XL). Use
    :func:`attention_sites` for each module's kind and parameter count.
    """
    return [site.name for site in attention_sites(pipe_or_denoiser)]
