"""OCR engines behind one interface: Tesseract (default) and RapidOCR, both offline.

``get_engine("tesseract").read_batch(images)`` -> ``list[OCRResult]`` (text, confidence, word boxes).
"""

from safetext.ocr.base import Box, OCREngine, OCRResult, OCRUnavailableError, Word
from safetext.ocr.preprocess import PreprocessConfig, prepare
from safetext.ocr.registry import DEFAULT_ENGINE, available_engines, get_engine, register_engine

__all__ = [
    "Box",
    "DEFAULT_ENGINE",
    "OCREngine",
    "OCRResult",
    "OCRUnavailableError",
    "PreprocessConfig",
    "Word",
    "available_engines",
    "get_engine",
    "prepare",
    "register_engine",
]
