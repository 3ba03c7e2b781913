"""Image fidelity of a guarded image against the unguarded one with the same seed.

The guard is meant to change the text and nothing else, so the telling number is the
similarity *outside* the text box. Masked SSIM first copies the reference's box pixels into
the other image, then averages the SSIM map outside the box: SSIM windows that straddle
the box edge then see no change inside it, so a change in the box cannot leak into the
score. Masked PSNR is the PSNR of the pixels outside the box.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from safetext.metrics.boxes import Box, box_mask

PSNR_CAP = 100.0  # dB for identical pixels: JSON has no infinity, and 100 dB is far above any real change


def _arrays(a: Image.Image, b: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    if a.size != b.size:
        raise ValueError(f"images differ in size: {a.size} vs {b.size}")
    return np.asarray(a.convert("RGB"), dtype=np.float64), np.asarray(b.convert("RGB"), dtype=np.float64)


def _ssim_map(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    from skimage.metrics import structural_similarity

    win = min(7, min(x.shape[:2]) // 2 * 2 - 1)  # odd, at most the image side
    _, full = structural_similarity(x, y, channel_axis=-1, data_range=255.0, full=True, win_size=max(win, 3))
    return full.mean(axis=-1)


def ssim(a: Image.Image, b: Image.Image, box: Box | None = None) -> float:
    """SSIM of RGB images (mean over channels); with ``box``, only the pixels outside it count."""
    x, y = _arrays(a, b)
    if box is None:
        return float(_ssim_map(x, y).mean())
    inside = box_mask(box, a.size)
    if inside.all():
        raise ValueError("the box covers the whole image; nothing is left to compare")
    y = np.where(inside[..., None], x, y)
    return float(_ssim_map(x, y)[~inside].mean())


def psnr(a: Image.Image, b: Image.Image, box: Box | None = None) -> float:
    """PSNR in dB (8-bit range), capped at ``PSNR_CAP``; with ``box``, over the pixels outside it."""
    x, y = _arrays(a, b)
    keep = ~box_mask(box, a.size) if box is not None else np.ones(x.shape[:2], dtype=bool)
    if not keep.any():
        raise ValueError("the box covers the whole image; nothing is left to compare")
    mse = float(((x - y) ** 2)[keep].mean())
    if mse == 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * math.log10(255.0**2 / mse))


def bitwise_equal(a: Image.Image, b: Image.Image) -> bool:
    """Exactly the same pixels (the check for prompts the guard must leave alone)."""
    return a.size == b.size and a.mode == b.mode and a.tobytes() == b.tobytes()
