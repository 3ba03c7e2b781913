"""Pipeline construction: tiny random-weight pipelines for tests and benchmarks, a loader
for local model folders, and the model profiles those folders may carry.

* ``build_tiny_pipeline(kind, seed=0)``: kind in ``TINY_KINDS`` (sd, sdxl, if, sd3, flux, flux2, flux2-dev, hidream, qwen-image, z-image, lumina2, pixart-sigma, sana).
* ``load_pipeline(path_or_name, device=None, dtype=None)``: a local diffusers folder, a
  shipped name (``SHIPPED_MODELS``: ``"testbed"``) or ``tiny:KIND``; raises
  ``PipelineLoadError`` naming what is missing. ``resolve_model`` maps a name to its folder.
* ``load_profile(folder)`` / ``profile_of(pipe)``: the folder's ``safetext_model.yaml``
  (``ModelProfile``), or None for a generic model.

Names are imported lazily: the tiny builders import many diffusers pipeline classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from safetext._lazy import lazy_attributes

_LAZY = {
    "PipelineLoadError": "safetext.pipelines.load",
    "load_pipeline": "safetext.pipelines.load",
    "TINY_KINDS": "safetext.pipelines.tiny",
    "build_tiny_pipeline": "safetext.pipelines.tiny",
    "SHIPPED_MODELS": "safetext.pipelines.load",
    "resolve_model": "safetext.pipelines.load",
    "GENERIC": "safetext.pipelines.profile",
    "MODEL_PROFILE_FILE": "safetext.pipelines.profile",
    "ModelProfile": "safetext.pipelines.profile",
    "load_profile": "safetext.pipelines.profile",
    "profile_for": "safetext.pipelines.profile",
    "profile_of": "safetext.pipelines.profile",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from safetext.pipelines.load import SHIPPED_MODELS, PipelineLoadError, load_pipeline, resolve_model
    from safetext.pipelines.profile import GENERIC, MODEL_PROFILE_FILE, ModelProfile, load_profile, profile_for, profile_of
    from safetext.pipelines.tiny import TINY_KINDS, build_tiny_pipeline


__getattr__ = lazy_attributes(__name__, _LAZY)
