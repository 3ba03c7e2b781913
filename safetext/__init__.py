"""safetext: content-safety middleware for text-to-image diffusion pipelines.

Top-level names are imported lazily so that ``import safetext`` (and ``safetext.policy``)
never pulls in torch, diffusers or transformers. An API gateway can check prompts without
loading a model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from safetext._lazy import lazy_attributes

__version__ = "0.1.0"

_LAZY = {
    "Guard": ("safetext.guard", "Guard"),
    "GuardResult": ("safetext.guard", "GuardResult"),
    "GuardBlockedError": ("safetext.guard", "GuardBlockedError"),
    "PolicyEngine": ("safetext.policy", "PolicyEngine"),
    "load_policy": ("safetext.policy", "load_policy"),
    "Decision": ("safetext.policy.decision", "Decision"),
    "Span": ("safetext.policy.decision", "Span"),
    "Action": ("safetext.policy.decision", "Action"),
    "InjectionConfig": ("safetext.inject", "InjectionConfig"),
    "edit": ("safetext.editing", "edit"),
    "EditResult": ("safetext.editing", "EditResult"),
    "finetune": ("safetext.lora", "finetune"),
    "FinetuneResult": ("safetext.lora", "FinetuneResult"),
}

from safetext.errors import (  # noqa: E402 - light, no torch
    GuardError,
    InjectionError,
    PipelineLoadError,
    PolicyError,
    PresetError,
    SafetextError,
)

_ERRORS = ["GuardError", "InjectionError", "PipelineLoadError", "PolicyError", "PresetError", "SafetextError"]
__all__ = sorted([*_LAZY, *_ERRORS]) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from safetext.editing import EditResult, edit
    from safetext.guard import Guard, GuardBlockedError, GuardResult
    from safetext.inject import InjectionConfig
    from safetext.lora import FinetuneResult, finetune
    from safetext.policy import PolicyEngine, load_policy
    from safetext.policy.decision import Action, Decision, Span


__getattr__ = lazy_attributes(__name__, _LAZY)


def __dir__() -> list[str]:
    return __all__
