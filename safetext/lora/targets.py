"""Which linear layers of the denoiser get LoRA.

``localized`` (the method of the paper): the attention modules a preset names, nothing else.
Two baselines take the same projections of other modules: ``all`` (every attention module of
the denoiser, self- and cross-attention) and ``random`` (attention modules drawn at random,
outside the preset, whose LoRA parameter count matches the localized set's as closely as
possible), so a comparison can tell the layers' choice apart from the parameter budget.

Each module gets LoRA on those of its projections that exist: joint attention (SD3, and
FLUX's double-stream ``transformer_blocks.N.attn``) adds the text K/V ``add_k_proj`` /
``add_v_proj``; FLUX's single-stream ``single_transformer_blocks.N.attn`` has no ``to_out``
(the block's ``proj_out`` mixes attention and MLP), so it gets ``to_q``, ``to_k``, ``to_v``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal

import torch

from safetext.errors import FinetuneError
from safetext.inject.sites import attention_kind, denoiser_of, is_attention

Method = Literal["localized", "all", "random"]
METHODS: tuple[str, ...] = ("localized", "all", "random")

#: The projections of every attention module that get LoRA.
PROJECTIONS: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
#: Extra text K/V projections of joint (SD3, FLUX double-stream; HiDream's ``to_k_t``/``to_v_t``)
#: and added-K/V (IF) attention.
TEXT_PROJECTIONS: tuple[str, ...] = ("add_k_proj", "add_v_proj", "to_k_t", "to_v_t")
RANDOM_TRIES = 256  # random orders tried when matching the localized parameter count


@dataclass(frozen=True)
class Targets:
    """The attention modules chosen and the full names of their linear layers that get LoRA."""

    method: str
    modules: tuple[str, ...]
    layers: tuple[str, ...]
    lora_params: int  # trainable parameters at the rank they were counted for
    rank: int


def _linear(module: torch.nn.Module, path: str) -> torch.nn.Linear | None:
    found: Any = module
    for part in path.split("."):
        if part.isdigit():
            indexable = isinstance(found, (torch.nn.ModuleList, torch.nn.Sequential))
            found = found[int(part)] if indexable and int(part) < len(found) else None
        else:
            found = getattr(found, part, None)
        if found is None:
            return None
    return found if isinstance(found, torch.nn.Linear) else None


def module_layers(module: torch.nn.Module, name: str) -> list[str]:
    """Full names of the LoRA layers of one attention module (``name`` is its name in the denoiser)."""
    paths = list(PROJECTIONS)
    if _linear(module, "to_out.0") is None:
        paths.append("to_out")  # HiDream's output projection is one Linear, not a list
    if attention_kind(module) in ("joint", "added_kv"):
        paths += TEXT_PROJECTIONS
    return [f"{name}.{path}" for path in paths if _linear(module, path) is not None]


def lora_param_count(denoiser: torch.nn.Module, layers: list[str] | tuple[str, ...], rank: int) -> int:
    """Parameters LoRA of ``rank`` adds to ``layers``: r * (in + out) per linear layer."""
    total = 0
    for name in layers:
        layer = denoiser.get_submodule(name)
        total += rank * (layer.in_features + layer.out_features)
    return total


def attention_modules(denoiser: torch.nn.Module) -> list[str]:
    """Every diffusers attention module of the denoiser that has the LoRA projections."""
    return [name for name, m in denoiser.named_modules() if is_attention(m) and _linear(m, "to_q") is not None]


def _layers_of(denoiser: torch.nn.Module, modules: list[str]) -> list[str]:
    layers: list[str] = []
    for name in modules:
        layers += module_layers(denoiser.get_submodule(name), name)
    return layers


def _random_match(denoiser: torch.nn.Module, pool: list[str], target: int, rank: int, seed: int) -> list[str]:
    """Attention modules from ``pool`` whose LoRA count is closest to ``target`` (a seeded search)."""
    cost = {name: lora_param_count(denoiser, module_layers(denoiser.get_submodule(name), name), rank) for name in pool}
    rng = random.Random(seed)
    best: list[str] = []
    for _ in range(RANDOM_TRIES):
        order = pool[:]
        rng.shuffle(order)
        chosen, total = [], 0
        for name in order:
            if total + cost[name] <= target:
                chosen.append(name)
                total += cost[name]
        if not best or abs(target - total) < abs(target - sum(cost[n] for n in best)):
            best = chosen
        if total == target:
            break
    if not best:  # every module is larger than the budget: the smallest one
        best = [min(pool, key=lambda n: cost[n])]
    return sorted(best, key=pool.index)


def select_targets(pipe: Any, modules: list[str], method: str = "localized", rank: int = 4, seed: int = 0) -> Targets:
    """The LoRA targets of ``method`` for a preset naming ``modules`` (see the module doc).

    Raises :class:`FinetuneError` when a preset module is not an attention module of the
    pipeline's denoiser, or ``method`` is unknown.
    """
    if method not in METHODS:
        raise FinetuneError(f"unknown target method {method!r}; choose one of {', '.join(METHODS)}")
    _, denoiser = denoiser_of(pipe)
    every = attention_modules(denoiser)
    missing = [m for m in modules if m not in every]
    if missing:
        raise FinetuneError(
            f"preset module(s) not among the denoiser's attention modules: {', '.join(missing)} "
            f"({type(denoiser).__name__} has {len(every)}, e.g. {', '.join(every[:3])})"
        )
    if not modules:
        raise FinetuneError("the preset names no modules")
    if method == "localized":
        chosen = list(modules)
    elif method == "all":
        chosen = every
    else:
        budget = lora_param_count(denoiser, _layers_of(denoiser, list(modules)), rank)
        pool = [m for m in every if m not in modules] or every
        chosen = _random_match(denoiser, pool, budget, rank, seed)
    layers = _layers_of(denoiser, chosen)
    return Targets(method, tuple(chosen), tuple(layers), lora_param_count(denoiser, layers, rank), rank)
