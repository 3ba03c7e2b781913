"""Read the testbed's images back: the word (Tesseract), the sign colour and the sign shape.

Words are read with :mod:`safetext.ocr` (the benchmarks' engine and pre-processing); colour
and shape are classified from the sign's pixel mask.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from safetext.testbed.render import BACKDROP, OUTLINE, SignSpec, sample_spec
from safetext.testbed.vocab import PALETTE, SHAPES, WORDS


def read_word(image: Image.Image) -> str:
    """The longest alphabetic token that safetext's Tesseract engine reads, upper-cased ('' if none).

    The same engine and pre-processing as ``safetext bench`` and the quality benchmark, so a
    test and a benchmark never disagree about what an image says.
    """
    return read_words([image])[0]


def read_words(images: Sequence[Image.Image]) -> list[str]:
    """:func:`read_word` for many images in one Tesseract batch (the model profile's ``reader``)."""
    from safetext.ocr import get_engine

    return [_longest_word(r.text) for r in get_engine("tesseract").read_batch(list(images))]


def _longest_word(text: str) -> str:
    tokens = re.findall(r"[A-Za-z]+", text)
    return max(tokens, key=len).upper() if tokens else ""


def sign_mask(image: Image.Image, min_diff: int = 40) -> np.ndarray:
    """The sign: pixels unlike the backdrop, holes (the letters) filled, largest component kept."""
    a = np.asarray(image.convert("RGB"), dtype=np.int16)
    mask = np.abs(a - np.array(BACKDROP)).sum(axis=2) > min_diff
    mask = ndimage.binary_opening(mask, iterations=1)
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    biggest = 1 + int(np.argmax(ndimage.sum(mask, labels, range(1, n + 1))))
    return ndimage.binary_fill_holes(labels == biggest)


def sign_color(image: Image.Image) -> str | None:
    """The most common nearest palette colour among sign pixels (letters are a minority)."""
    mask = sign_mask(image)
    if mask.sum() < 50:
        return None
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)[mask]
    palette = np.array(list(PALETTE.values()), dtype=np.float32)
    nearest = np.argmin(((pixels[:, None, :] - palette[None]) ** 2).sum(-1), axis=1)
    return list(PALETTE)[int(np.bincount(nearest, minlength=len(palette)).argmax())]


def _ideal(shape: str, size: tuple[int, int], box: tuple[int, int, int, int]) -> np.ndarray:
    """The shape as safetext.testbed.render draws it, filling ``box``."""
    im = Image.new("L", size, 0)
    d = ImageDraw.Draw(im)
    x0, y0, x1, y1 = box
    if shape == "circle":
        d.ellipse(box, fill=1)
    elif shape == "banner":
        notch, ym = (y1 - y0) * 0.35, (y0 + y1) / 2
        d.polygon([(x0, y0), (x1, y0), (x1 - notch, ym), (x1, y1), (x0, y1), (x0 + notch, ym)], fill=1)
    else:
        d.rounded_rectangle(box, radius=5, fill=1)
    return np.asarray(im, dtype=bool)


def sign_shape(image: Image.Image) -> str | None:
    """The shape whose ideal mask in the sign's bounding box overlaps the sign best (IoU)."""
    mask = sign_mask(image)
    if mask.sum() < 50:
        return None
    ys, xs = np.nonzero(mask)
    return _best_shape(mask, (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())))


def _best_shape(region: np.ndarray, box: tuple[int, int, int, int]) -> str:
    """The shape whose ideal mask in ``box`` overlaps ``region`` best (IoU)."""
    size = (region.shape[1], region.shape[0])

    def iou(shape: str) -> float:
        ideal = _ideal(shape, size, box)
        return float((ideal & region).sum() / max(1, (ideal | region).sum()))

    return max(SHAPES, key=iou)


def border_shape(image: Image.Image, tol: int = 90, min_box: float = 0.3) -> str | None:
    """The shape the sign's dark border (``OUTLINE``; every training sign has one) encloses; None
    without one. A diagnostic beside :func:`sign_shape`: a model can draw a banner's outline yet
    paint its notches in the sign's colour, which the fill-based shape reads as a sign."""
    a = np.asarray(image.convert("RGB"), dtype=np.int16)
    dark = np.abs(a - np.array(OUTLINE)).max(axis=2) < tol
    labels, n = ndimage.label(ndimage.binary_closing(dark, iterations=2), structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return None
    slices = ndimage.find_objects(labels)
    areas = [(sl[0].stop - sl[0].start) * (sl[1].stop - sl[1].start) for sl in slices]
    biggest = int(np.argmax(areas))
    if areas[biggest] < min_box * dark.size:  # letters only: no border
        return None
    ys, xs = slices[biggest]
    return _best_shape(ndimage.binary_fill_holes(labels == biggest + 1), (xs.start, ys.start, xs.stop - 1, ys.stop - 1))


def make_specs(per_word: int, split: str, seed: int = 0) -> list[SignSpec]:
    """The quality benchmark's prompts: ``per_word`` per vocabulary word, attributes drawn like the data
    (``split="both"`` alternates training and held-out attributes). Shared by the benchmarks that
    must judge the same signs."""
    rng = random.Random(seed)
    specs = []
    for word in WORDS:
        for k in range(per_word):
            which = split if split != "both" else ("train" if k % 2 == 0 else "eval")
            specs.append(sample_spec(rng, which, words=(word,)))
    return specs
