"""Read the testbed's images back: the word (Tesseract) and the sign colour.

The testbed draws white or black letters, so isolating pixels of those two colours
before OCR removes the sign's edges, which Tesseract otherwise reads as ``|`` or ``>``.
"""

from __future__ import annotations

import re

import numpy as np
from PIL import Image, ImageOps

from safetext.testbed.vocab import SIGN_COLORS


def isolate_text(image: Image.Image) -> Image.Image:
    """Black-on-white image of the pixels that look like the text (white or black letters)."""
    a = np.asarray(image.convert("RGB"), dtype=np.int16)
    candidates = (a.min(axis=2) > 215, a.max(axis=2) < 60)
    best, best_score = candidates[0], float("inf")
    for mask in candidates:
        border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]]).mean()
        score = abs(mask.mean() - 0.15) + border
        if score < best_score:
            best, best_score = mask, score
    return Image.fromarray(np.where(best, 0, 255).astype(np.uint8))


def read_word(image: Image.Image) -> str:
    """The longest alphabetic token Tesseract reads, upper-cased ('' if none)."""
    import pytesseract

    prepared = isolate_text(image)
    prepared = prepared.resize((prepared.width * 3, prepared.height * 3), Image.LANCZOS)
    prepared = ImageOps.expand(prepared, border=24, fill=255)
    text = pytesseract.image_to_string(prepared, config="--psm 7")
    tokens = re.findall(r"[A-Za-z]+", text)
    return max(tokens, key=len).upper() if tokens else ""


def sign_color(image: Image.Image) -> str:
    """Nearest palette colour to the median of the pixels that are neither backdrop nor text."""
    from safetext.testbed.render import BACKDROP

    a = np.asarray(image.convert("RGB"), dtype=np.float32).reshape(-1, 3)
    not_backdrop = np.abs(a - np.array(BACKDROP)).sum(axis=1) > 40
    region = a[not_backdrop] if not_backdrop.sum() > 50 else a
    palette = np.array(list(SIGN_COLORS.values()), dtype=np.float32)
    # the most common nearest colour among sign pixels (text pixels are a minority)
    nearest = np.argmin(((region[:, None, :] - palette[None]) ** 2).sum(-1), axis=1)
    counts = np.bincount(nearest, minlength=len(palette))
    return list(SIGN_COLORS)[int(counts.argmax())]
