"""Pipeline construction: tiny random-weight pipelines for tests and benchmarks, and a
loader for local model folders.

* ``build_tiny_pipeline(kind, seed=0)``: kind in ``TINY_KINDS`` (sd, sdxl, if, sd3, flux).
* ``load_pipeline(path_or_name, device=None, dtype=None)``: a local diffusers folder, or
  ``"testbed"``; raises ``PipelineLoadError`` naming missing components.

Names are imported lazily: the tiny builders import many diffusers pipeline classes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "PipelineLoadError": "safetext.pipelines.load",
    "load_pipeline": "safetext.pipelines.load",
    "TINY_KINDS": "safetext.pipelines.tiny",
    "build_tiny_pipeline": "safetext.pipelines.tiny",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from safetext.pipelines.load import PipelineLoadError, load_pipeline
    from safetext.pipelines.tiny import TINY_KINDS, build_tiny_pipeline


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'safetext.pipelines' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
