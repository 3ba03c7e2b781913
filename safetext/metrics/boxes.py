"""Text boxes for masked fidelity: where the rendered text is, so that it can be left out.

A box comes from the caller (the testbed renderer knows it), from OCR word boxes, or is
estimated from the pixels with the same components that the OCR binarisation uses.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), x1/y1 exclusive


def union(boxes: Iterable[Box | None]) -> Box | None:
    """The smallest box holding every given box; None if there are none."""
    real = [b for b in boxes if b is not None]
    if not real:
        return None
    return (min(b[0] for b in real), min(b[1] for b in real), max(b[2] for b in real), max(b[3] for b in real))


def pad_box(box: Box, pad: int, size: tuple[int, int]) -> Box:
    """Grow ``box`` by ``pad`` pixels, clipped to an image of ``size`` (width, height)."""
    w, h = size
    return (max(0, box[0] - pad), max(0, box[1] - pad), min(w, box[2] + pad), min(h, box[3] + pad))


def box_mask(box: Box | None, size: tuple[int, int]) -> np.ndarray:
    """A (height, width) bool mask, True inside ``box``."""
    w, h = size
    mask = np.zeros((h, w), dtype=bool)
    if box is not None:
        x0, y0, x1, y1 = box
        mask[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = True
    return mask


def estimate_text_box(image: Image.Image, pad: int = 3) -> Box | None:
    """Bounding box of the text-like ink (interior components of the best threshold), or None."""
    from safetext.ocr.preprocess import text_ink  # the OCR binariser finds letters; reuse it

    mask, _ = text_ink(np.asarray(image.convert("L"), dtype=np.uint8))
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    return pad_box((int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1), pad, image.size)
