"""Find the attention modules that read text keys/values, in forward order, and refuse the rest.

Four kinds exist in the supported denoisers:

* ``cross``: U-Net cross-attention (``...transformer_blocks.N.attn2``, SD 1.x/2.x, SDXL).
  K/V = ``to_k/to_v(text)``, the text being the denoiser's ``encoder_hidden_states``.
* ``projected``: cross-attention of DiTs that project the caption with their own modules
  before the blocks (PixArt-alpha/Sigma: ``caption_projection``; Sana: ``caption_projection``
  then ``caption_norm``). K/V = ``to_k/to_v(projected text)``; the benign text must take
  the same path (:func:`text_path`).
* ``added_kv``: DeepFloyd IF's attention with extra text projections (``...attentions.N``).
  The text K/V from ``add_k_proj/add_v_proj`` are joined to the image self-attention K/V.
* ``joint``: double-stream attention (SD3, FLUX, FLUX.2 and Qwen-Image ``transformer_blocks.N.attn``). The text
  stream has its own Q/K/V (``add_q_proj/add_k_proj/add_v_proj``); only the text K/V are swapped.
  HiDream's ``double_stream_blocks.N.block.attn1`` names them ``to_q_t/to_k_t/to_v_t``.
* ``single``: single-stream attention (FLUX and FLUX.2 ``single_transformer_blocks.N.attn``, Z-Image
  ``layers.N.attention``, Lumina2 ``layers.N.attn``, HiDream
  ``single_stream_blocks.N.block.attn1``). The block joins text and image tokens
  into one sequence (FLUX: text first; Z-Image: image then caption, per row; Lumina2:
  caption then image, per row; HiDream: image, then text); the text K/V are the ``to_k/to_v``
  outputs at the text positions (FLUX.2: the K and V columns of its fused
  ``to_qkv_mlp_proj``, whose output packs Q, K, V and the MLP input).

Modules are found by class: diffusers' ``Attention`` and the model-specific
``AttentionModuleMixin`` classes (``FluxAttention``). HiDream's ``HiDreamAttention`` subclasses
``Attention`` without running its ``__init__``, so it has none of the attributes by which
:func:`attention_kind` tells cross-attention apart; its double-stream modules are found by their
text projections and its single-stream ones by their block list.

A denoiser whose text path is not one of these (:data:`KNOWN_DENOISERS`) is refused with an
:class:`InjectionError` as soon as its sites are asked for, which is at ``Guard``
construction: swapping text states the attention does not read would give a wrong image
with no error.

Forward order is not registration order: ``UNet2DConditionModel`` registers ``up_blocks``
before ``mid_block``. We order by the U-Net's data flow (down, mid, up) and keep
registration order inside each part; the tests check this against a traced forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from diffusers.models.attention import AttentionModuleMixin
from diffusers.models.attention_processor import Attention

from safetext.errors import InjectionError

AttentionKind = Literal["cross", "projected", "added_kv", "joint", "single"]
ModuleKind = Literal["cross", "added_kv", "joint", "single"]

#: Data-flow rank of a U-Net's top-level children; anything else keeps rank 1 (stable sort).
_TOP_LEVEL_RANK = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}

#: Denoiser classes whose text path the injector knows, with the module kinds they may hold.
KNOWN_DENOISERS: dict[str, tuple[ModuleKind, ...]] = {
    "UNet2DConditionModel": ("cross", "added_kv"),
    "SD3Transformer2DModel": ("joint",),
    "PixArtTransformer2DModel": ("cross",),
    "SanaTransformer2DModel": ("cross",),
    "FluxTransformer2DModel": ("joint", "single"),
    "QwenImageTransformer2DModel": ("joint",),
    "ZImageTransformer2DModel": ("single",),
    "Lumina2Transformer2DModel": ("single",),
    "Flux2Transformer2DModel": ("joint", "single"),
    "HiDreamImageTransformer2DModel": ("joint", "single"),
}

#: Denoisers whose blocks in one ModuleList join text and image tokens into one sequence
#: before their attention: that list's name (FLUX: text first; Z-Image: ``[image, caption]``
#: per row; Lumina2: ``[caption, image]`` per row, see :mod:`safetext.inject.unified`; their
#: caption-only ``context_refiner`` and image-only ``noise_refiner`` are no sites).
SINGLE_STREAM_BLOCKS: dict[str, str] = {
    "FluxTransformer2DModel": "single_transformer_blocks",
    "ZImageTransformer2DModel": "layers",
    "Lumina2Transformer2DModel": "layers",
    "Flux2Transformer2DModel": "single_transformer_blocks",
    "HiDreamImageTransformer2DModel": "single_stream_blocks",
}

#: U-Net ``encoder_hid_dim_type`` values whose attention reads (projected) text only.
_UNET_TEXT_HID_TYPES = (None, "text_proj")

#: The submodules each DiT applies, in this order, to ``encoder_hidden_states`` before its blocks.
_CAPTION_PATHS: dict[str, tuple[str, ...]] = {
    "PixArtTransformer2DModel": ("caption_projection",),
    "SanaTransformer2DModel": ("caption_projection", "caption_norm"),
}


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


def attention_kind(module: torch.nn.Module) -> ModuleKind | None:
    """The kind of text attention ``module`` is by its own layout, or None when it reads no text K/V.

    This looks at the module alone: a ``cross`` module of a denoiser that projects its
    caption is reported as ``projected`` by :func:`attention_sites`.
    """
    if not is_attention(module):
        return None
    if getattr(module, "add_q_proj", None) is not None and getattr(module, "add_k_proj", None) is not None:
        return "joint"
    if getattr(module, "to_q_t", None) is not None and getattr(module, "to_k_t", None) is not None:
        return "joint"  # HiDream's double stream: text projections to_q_t/to_k_t/to_v_t
    if getattr(module, "added_kv_proj_dim", None) is not None and getattr(module, "add_k_proj", None) is not None:
        return "added_kv"
    if getattr(module, "is_cross_attention", False):
        return "cross"
    return None


def is_attention(module: torch.nn.Module) -> bool:
    """Whether ``module`` is a diffusers attention module (``Attention`` or an ``AttentionModuleMixin``)."""
    return isinstance(module, (Attention, AttentionModuleMixin))


def _site_kind(denoiser: torch.nn.Module, name: str, module: torch.nn.Module) -> ModuleKind | None:
    """:func:`attention_kind`, plus ``single`` for the self-attention of single-stream blocks."""
    kind = attention_kind(module)
    if kind is not None or not is_attention(module):
        return kind
    blocks = SINGLE_STREAM_BLOCKS.get(type(denoiser).__name__)
    parts = name.split(".")
    # ``<blocks>.N.attn`` (HiDream: ``<blocks>.N.block.attn1``, its blocks wrapped in HiDreamBlock)
    if blocks is not None and len(parts) >= 3 and parts[0] == blocks and parts[1].isdigit():
        return "single"
    return None


def text_path(denoiser: torch.nn.Module) -> tuple[str, ...]:
    """Names of the denoiser's own modules that turn its ``encoder_hidden_states`` into the
    text its cross-attention reads, in the order its forward applies them (``()``: as given).

    PixArt without ``caption_channels`` has no ``caption_projection`` and reads the text as given.
    """
    names = _CAPTION_PATHS.get(type(denoiser).__name__, ())
    if names and getattr(denoiser, names[0], None) is None:
        return ()
    return names


def _kv_params(module: torch.nn.Module, kind: AttentionKind) -> int:
    packed = getattr(module, "to_qkv_mlp_proj", None)
    if isinstance(packed, torch.nn.Linear):  # FLUX.2 single stream: the K and V columns of the fused projection
        rows = 2 * int(module.inner_dim)
        return rows * packed.in_features + (rows if packed.bias is not None else 0)
    names = ("to_k", "to_v") if kind in ("cross", "projected", "single") else ("add_k_proj", "add_v_proj")
    if kind == "joint" and getattr(module, "to_k_t", None) is not None:
        names = ("to_k_t", "to_v_t")  # HiDream
    return sum(p.numel() for n in names for p in getattr(module, n).parameters())


def _forward_rank(name: str) -> int:
    return _TOP_LEVEL_RANK.get(name.split(".", 1)[0], 1)


def _refuse_unknown(denoiser: torch.nn.Module, found: list[tuple[str, torch.nn.Module, ModuleKind]], owner: str) -> None:
    """Raise unless the injector knows how ``denoiser`` feeds text to every module in ``found``.

    A denoiser the injector does not know is refused whenever it has attention modules at
    all: a text path of an unknown kind (one text-and-image sequence, a new attention class)
    would otherwise be found as no sites, or the wrong ones.
    """
    cls = type(denoiser).__name__
    kinds = KNOWN_DENOISERS.get(cls)
    if kinds is None:
        classes = sorted({type(m).__name__ for m in denoiser.modules() if is_attention(m)})
        if classes:
            known = ", ".join(KNOWN_DENOISERS)
            raise InjectionError(
                f"{owner}: safetext does not know how {cls} feeds text to its attention ({', '.join(classes)}), "
                f"so it cannot swap text keys/values in it; known denoisers: {known}"
            )
    if not found:
        return
    for name, module, kind in found:
        if kinds is None or kind not in kinds:
            known = ", ".join(f"{k} ({'/'.join(v)})" for k, v in KNOWN_DENOISERS.items())
            raise InjectionError(
                f"{owner}: safetext does not know how {cls} feeds text to {name} ({type(module).__name__}, "
                f"{kind} attention), so it cannot swap that module's text keys/values; known denoisers: {known}"
            )
    if cls == "UNet2DConditionModel" and getattr(denoiser, "encoder_hid_proj", None) is not None:
        hid_type = denoiser.config.get("encoder_hid_dim_type")
        if hid_type not in _UNET_TEXT_HID_TYPES:
            raise InjectionError(
                f"{owner}: its U-Net has encoder_hid_dim_type={hid_type!r}, so its attention does not read "
                "the text encoder's states alone; safetext supports only 'text_proj' (DeepFloyd IF)"
            )


def attention_sites(pipe_or_denoiser: Any) -> list[AttentionSite]:
    """All text-reading attention modules of a pipeline (or denoiser), in forward order.

    Raises :class:`InjectionError` when the denoiser holds text attention whose text path
    the injector does not know (see :data:`KNOWN_DENOISERS`).
    """
    if isinstance(pipe_or_denoiser, torch.nn.Module):
        denoiser, owner = pipe_or_denoiser, type(pipe_or_denoiser).__name__
    else:
        denoiser = denoiser_of(pipe_or_denoiser)[1]
        owner = f"{type(pipe_or_denoiser).__name__} ({type(denoiser).__name__})"
    found = [(name, module, _site_kind(denoiser, name, module)) for name, module in denoiser.named_modules()]
    found = [item for item in found if item[2] is not None]
    _refuse_unknown(denoiser, found, owner)  # type: ignore[arg-type]
    found.sort(key=lambda item: _forward_rank(item[0]))  # stable: keeps order within a part
    projected = bool(text_path(denoiser))
    sites = []
    for i, (name, module, module_kind) in enumerate(found):
        kind: AttentionKind = "projected" if projected and module_kind == "cross" else module_kind  # type: ignore[assignment]
        sites.append(
            AttentionSite(
                name=name,
                kind=kind,
                index=i,
                kv_params=_kv_params(module, kind),
                params=sum(p.numel() for p in module.parameters()),
            )
        )
    return sites


def candidate_modules(pipe_or_denoiser: Any) -> list[str]:
    """Names of the attention modules that take text K/V, in forward order.

    These are the valid entries of ``InjectionConfig.modules`` and the search space of
    ``safetext localize`` (70 for SDXL, 24 for SD3, 22 for IF-I-XL, 28 for PixArt-Sigma,
    20 for Sana 1600M, 60 for Qwen-Image; 30 for Z-Image and 26 for Lumina2 at their
    diffusers default configs). Use :func:`attention_sites` for each module's kind and parameter count.
    """
    return [site.name for site in attention_sites(pipe_or_denoiser)]
