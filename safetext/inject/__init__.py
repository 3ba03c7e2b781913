"""Benign K/V injection into the localized attention layers (Staniszewski et al., ICLR 2025).

Public API:

* :class:`InjectionConfig`: which modules, from which step; also the preset file format.
* :func:`resolve_preset`, :func:`auto_preset`, :func:`builtin_presets`: presets.
* :func:`candidate_modules`, :func:`attention_sites`: the text attention modules of a
  pipeline in forward order (the search space of ``safetext localize``).
* :func:`run_injected`: one pipeline call with benign K/V in the configured modules.
* :class:`Injection`: the per-call installer behind ``run_injected``, for callers that
  want the :class:`InjectionReport`.

``safetext.inject.config`` imports no torch; everything else here does, so the
torch-dependent names are imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from safetext._lazy import lazy_attributes

from safetext.errors import InjectionError, PresetError, UnsupportedArchitectureError
from safetext.inject.config import InjectionConfig, PresetMatch

_LAZY = {
    "AttentionSite": "safetext.inject.sites",
    "attention_sites": "safetext.inject.sites",
    "candidate_modules": "safetext.inject.sites",
    "Injection": "safetext.inject.installer",
    "InjectionReport": "safetext.inject.installer",
    "run_injected": "safetext.inject.installer",
    "pipeline_lock": "safetext.inject.locking",
    "auto_preset": "safetext.inject.presets",
    "builtin_presets": "safetext.inject.presets",
    "resolve_preset": "safetext.inject.presets",
    "MODEL_PRESET_FILE": "safetext.inject.presets",
}

__all__ = ["InjectionConfig", "InjectionError", "PresetError", "PresetMatch", "UnsupportedArchitectureError", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from safetext.inject.installer import Injection, InjectionReport, run_injected
    from safetext.inject.locking import pipeline_lock
    from safetext.inject.presets import (
        MODEL_PRESET_FILE,
        auto_preset,
        builtin_presets,
        resolve_preset,
    )
    from safetext.inject.sites import AttentionSite, attention_sites, candidate_modules


__getattr__ = lazy_attributes(__name__, _LAZY)
