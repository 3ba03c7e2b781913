"""Hide the text inside boxes so that it cannot be read back, for PIL images and arrays alike.

``fill`` paints each box (plus a margin) with its mean colour: no stroke survives, whatever
the letter size. ``gaussian`` blurs it with a sigma of half the box height, which keeps the
colours and layout but leaves no letter shapes. Both work in numpy, so no scipy is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeVar

import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), x1/y1 exclusive, as safetext.ocr.Box
ImageT = TypeVar("ImageT", Image.Image, np.ndarray)


def _gaussian_1d(a: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    radius = max(1, int(3 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    pad = [(0, 0)] * a.ndim
    pad[axis] = (radius, radius)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(a, pad, mode="edge"), kernel.size, axis=axis)
    return windows @ kernel


def _hide(region: np.ndarray, method: Literal["fill", "gaussian"], sigma: float) -> np.ndarray:
    """``region`` is (h, w, c) float64."""
    if method == "fill":
        return np.broadcast_to(region.mean(axis=(0, 1), keepdims=True), region.shape)
    out = region
    for _ in range(2):  # two passes: a wider effective blur without a huge kernel
        out = _gaussian_1d(_gaussian_1d(out, sigma, 0), sigma, 1)
    return out


def _expand(box: Box, margin: int | None, width: int, height: int) -> tuple[int, int, int, int] | None:
    x0, y0, x1, y1 = (int(v) for v in box)
    m = max(2, (y1 - y0) // 4) if margin is None else margin
    x0, y0, x1, y1 = max(0, x0 - m), max(0, y0 - m), min(width, x1 + m), min(height, y1 + m)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def blur_text(
    image: ImageT,
    boxes: Sequence[Box],
    *,
    method: Literal["fill", "gaussian"] = "fill",
    margin: int | None = None,
) -> ImageT:
    """A copy of ``image`` (PIL, or an ``(H,W)``/``(H,W,C)`` array of any dtype) with ``boxes`` unreadable."""
    is_pil = isinstance(image, Image.Image)
    mode = image.mode if is_pil else None
    src = np.asarray(image.convert("RGBA" if "A" in mode else "RGB") if is_pil and mode not in ("RGB", "L") else image)
    work = src.astype(np.float64)
    squeeze = work.ndim == 2
    if squeeze:
        work = work[..., None]
    height, width = work.shape[:2]
    for box in boxes:
        area = _expand(box, margin, width, height)
        if area is None:
            continue
        x0, y0, x1, y1 = area
        sigma = max(2.0, (box[3] - box[1]) / 2)
        work[y0:y1, x0:x1] = _hide(work[y0:y1, x0:x1], method, sigma)
    if squeeze:
        work = work[..., 0]
    if np.issubdtype(src.dtype, np.integer):
        info = np.iinfo(src.dtype)
        work = np.clip(np.rint(work), info.min, info.max)
    out = work.astype(src.dtype)
    if not is_pil:
        return out  # type: ignore[return-value]
    result = Image.fromarray(out)
    return result if result.mode == mode else result.convert(mode)  # type: ignore[return-value, arg-type]
