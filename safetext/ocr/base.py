"""The OCR engine interface: one result type, a batch-first API, de-duplication.

Every engine reads a batch because the bench reads hundreds of images and Tesseract's
cost is mostly process start-up (~0.2 s). Identical images (the bench reuses the
unguarded image for baselines that reduce to it) are read once.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from safetext.errors import OCRUnavailableError  # noqa: F401 - re-exported

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), pixels of the input image, x1/y1 exclusive


@dataclass(frozen=True)
class Word:
    """One recognised word with its confidence (0..1) and box in input-image pixels."""

    text: str
    confidence: float
    box: Box


@dataclass(frozen=True)
class OCRResult:
    """What an engine read in one image. ``text`` joins the words in reading order."""

    text: str
    confidence: float  # mean word confidence, 0..1; 0.0 when nothing was read
    words: tuple[Word, ...] = field(default_factory=tuple)
    variant: str = ""  # the pre-processing variant that won (see safetext.ocr.preprocess)

    @property
    def box(self) -> Box | None:
        """The union of the word boxes: where the text is, for masked fidelity metrics."""
        if not self.words:
            return None
        xs0, ys0, xs1, ys1 = zip(*(w.box for w in self.words))
        return (min(xs0), min(ys0), max(xs1), max(ys1))

    def to_dict(self) -> dict[str, object]:
        return {"text": self.text, "confidence": round(self.confidence, 4), "box": self.box, "variant": self.variant}


EMPTY = OCRResult(text="", confidence=0.0)


def image_key(image: Image.Image) -> str:
    """A content hash, so that repeated images are read once."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.mode}{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


class OCREngine(ABC):
    """Reads the text in images. Subclasses implement ``_read_unique``."""

    name: str = "base"

    def read(self, image: Image.Image) -> OCRResult:
        return self.read_batch([image])[0]

    def read_batch(self, images: Sequence[Image.Image]) -> list[OCRResult]:
        """Read many images; each distinct image is processed once, results keep the input order."""
        keys = [image_key(im) for im in images]
        unique: dict[str, Image.Image] = {}
        for key, im in zip(keys, images):
            unique.setdefault(key, im)
        if not unique:
            return []
        results = self._read_unique(list(unique.values()))
        by_key = dict(zip(unique, results))
        return [by_key[k] for k in keys]

    @abstractmethod
    def _read_unique(self, images: list[Image.Image]) -> list[OCRResult]:
        """Read distinct images, in order."""
