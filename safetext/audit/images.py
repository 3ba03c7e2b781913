"""Pipeline outputs as PIL images: diffusers returns PIL lists, ``(N,H,W,C)`` float arrays
in 0..1 (``output_type="np"``) or ``(N,C,H,W)`` tensors (``output_type="pt"``).

Tensors are read through ``.detach().cpu().numpy()``, so this module never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

_CHANNELS = (1, 3, 4)


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, read without importing torch
        return np.asarray(value.detach().float().cpu().numpy())
    return np.asarray(value)


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Floats are read as 0..1; integers as 0..255; both are clipped."""
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        return (np.clip(np.nan_to_num(array), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return np.clip(array, 0, 255).astype(np.uint8)


def array_to_pil(array: np.ndarray) -> Image.Image:
    """One ``(H,W)``, ``(H,W,C)`` or ``(C,H,W)`` array as a PIL image (RGB, RGBA or L)."""
    a = to_uint8(array)
    if a.ndim == 3 and a.shape[-1] not in _CHANNELS and a.shape[0] in _CHANNELS:
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (3, 4)):
        return Image.fromarray(np.ascontiguousarray(a))
    raise ValueError(f"cannot read an image of shape {array.shape}")


def to_pil_images(images: Any) -> list[Image.Image]:
    """A flat list of PIL images from one image, a batch array/tensor, or a sequence of either."""
    if isinstance(images, Image.Image):
        return [images if images.mode in ("RGB", "L") else images.convert("RGB")]
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        return [im for item in images for im in to_pil_images(item)]
    array = _as_numpy(images)
    if array.ndim == 4:
        return [array_to_pil(a) for a in array]
    if array.ndim in (2, 3):
        return [array_to_pil(array)]
    raise ValueError(f"cannot read images of shape {array.shape}")
