"""Engines by name (spaCy-style registry), so the CLI and configs can say ``--ocr rapidocr``.

Built-in engines are imported on first use: Tesseract users never load onnxruntime.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from safetext.ocr.base import OCREngine

EngineFactory = Callable[..., OCREngine]

_BUILTIN: dict[str, str] = {
    "tesseract": "safetext.ocr.tesseract:TesseractEngine",
    "rapidocr": "safetext.ocr.rapid:RapidOCREngine",
}
_REGISTRY: dict[str, EngineFactory] = {}

DEFAULT_ENGINE = "tesseract"


def register_engine(name: str) -> Callable[[EngineFactory], EngineFactory]:
    """Decorator: ``@register_engine("easyocr")`` on a class or factory returning an OCREngine."""

    def deco(factory: EngineFactory) -> EngineFactory:
        _REGISTRY[name] = factory
        return factory

    return deco


def available_engines() -> list[str]:
    return sorted(set(_BUILTIN) | set(_REGISTRY))


def get_engine(name: str = DEFAULT_ENGINE, **kwargs: Any) -> OCREngine:
    """Build the engine called ``name``. Raises ``OCRUnavailableError`` when its backend is missing."""
    if name in _REGISTRY:
        return _REGISTRY[name](**kwargs)
    if name not in _BUILTIN:
        raise ValueError(f"unknown OCR engine {name!r}; choose one of {available_engines()}")
    module, attr = _BUILTIN[name].split(":")
    factory: EngineFactory = getattr(importlib.import_module(module), attr)
    return factory(**kwargs)
