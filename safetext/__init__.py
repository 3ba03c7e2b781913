"""safetext: content-safety middleware for text-to-image diffusion pipelines.

Top-level names are imported lazily so that ``import safetext`` (and ``safetext.policy``)
never pulls in torch, diffusers or transformers. An API gateway can check prompts without
loading a model.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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


def __getattr__(name: str) -> Any:
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'safetext' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
