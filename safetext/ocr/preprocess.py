"""Consistent pre-processing for OCR: upscale, grayscale, binarise with automatic polarity.

Tesseract reads best with dark text on a light page and letters about 30-40 px tall.
Diffusion outputs give neither: the testbed draws 20-30 px letters on 64x256 images, in
either polarity (white on red, black on yellow), on a sign that sits on a backdrop.

The binarisation is Otsu plus connected components. A sign on a backdrop has three grey
levels, so Otsu is applied to the whole image and again inside each of its two classes;
for each threshold and polarity, components that touch the image border (backdrop) or cover
half the image (the sign itself) are dropped, as are specks much shorter than the letters;
the choice that keeps the most ink is the text. This handles the cases that defeat plain
Otsu, where the letters share a class with the backdrop or with the sign. A sign with a
border (a ring round a round sign) adds a fourth level: ink that hugs the backdrop round a
sign is its frame, not text, and is dropped (``frame_margin``). Noisy images get a 3x3 median
first (estimated noise above ``noise_threshold``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageFilter
from scipy import ndimage

from safetext.ocr.base import Box

BinarizeMode = Literal["auto", "always", "never"]


@dataclass(frozen=True)
class PreprocessConfig:
    """``binarize``: "auto" reads the binary image, and the grey one too where the binary read is weak."""

    min_text_px: int = 40
    max_scale: float = 6.0
    binarize: BinarizeMode = "auto"
    pad: int = 12
    denoise: bool = True  # 3x3 median before upscaling when the image is noisy (diffusion outputs)
    noise_threshold: float = 2.0  # grey levels; clean renders measure 1-2 (anti-aliasing), and a median thins thin strokes
    frame_px: int = 3  # ink within this many input pixels of the backdrop round a sign is the sign's frame (0: off)


@dataclass(frozen=True)
class Prepared:
    """One pre-processed variant of an input image, with the mapping back to input pixels."""

    image: Image.Image  # mode "L"
    variant: str
    scale: float
    pad: int

    def to_source(self, box: Box) -> Box:
        x0, y0, x1, y1 = box
        s, p = self.scale, self.pad
        return (int((x0 - p) / s), int((y0 - p) / s), int(np.ceil((x1 - p) / s)), int(np.ceil((y1 - p) / s)))


def _edges(a: np.ndarray) -> np.ndarray:
    """The image's outermost pixels (rows and columns), where the backdrop shows."""
    return np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])


def otsu_threshold(gray: np.ndarray) -> int:
    """Otsu's threshold on an 8-bit image: pixels <= t form the dark class."""
    hist = np.bincount(np.clip(gray, 0, 255).astype(np.uint8).ravel(), minlength=256).astype(np.float64)
    p = hist / hist.sum()
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma_b = (mu[-1] * omega - mu) ** 2 / (omega * (1.0 - omega))
    return int(np.argmax(np.nan_to_num(sigma_b)))


def noise_sigma(gray: np.ndarray) -> float:
    """Immerkaer's fast estimate of Gaussian pixel noise (grey levels): a Laplacian-difference
    kernel that cancels smooth image structure, averaged in absolute value."""
    g = gray.astype(np.float64)
    if min(g.shape) < 3:
        return 0.0
    lap = (
        g[:-2, :-2] - 2 * g[:-2, 1:-1] + g[:-2, 2:]
        - 2 * g[1:-1, :-2] + 4 * g[1:-1, 1:-1] - 2 * g[1:-1, 2:]
        + g[2:, :-2] - 2 * g[2:, 1:-1] + g[2:, 2:]
    )
    return float(np.sqrt(np.pi / 2) * np.abs(lap).mean() / 6)


def _candidate_thresholds(gray: np.ndarray) -> list[int]:
    """Otsu on the whole image, then again inside each class: a sign on a backdrop has three
    grey levels (backdrop, sign, letters), and the letters may share a class with either."""
    t = otsu_threshold(gray)
    out = [t]
    for part in (gray[gray <= t], gray[gray > t]):
        if part.size and float(part.max()) - float(part.min()) >= 16:
            out.append(otsu_threshold(part))
    return out


def _interior_components(cls: np.ndarray, min_area: int, frame: np.ndarray | None = None) -> tuple[np.ndarray, list[int]]:
    """Components of ``cls`` that neither touch the border (backdrop) nor cover half the image (the sign),
    nor lie mostly on ``frame`` (the band round a sign where its border is), nor are a thin curve
    that reaches the band and spans the sign (a rim drawn partly inside the band: over 3x as wide
    as tall and under a fifth of its box inked; a glyph, a run of touching glyphs or a straight
    dash is denser, and text away from a sign's edge never reaches the band)."""
    h, w = cls.shape
    labels, _ = ndimage.label(cls)
    keep: list[int] = []
    heights: list[int] = []
    for idx, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        ys, xs = sl
        ch, cw = ys.stop - ys.start, xs.stop - xs.start
        if ys.start == 0 or xs.start == 0 or ys.stop == h or xs.stop == w or ch * cw > 0.5 * h * w:
            continue
        own = labels[sl] == idx
        area = int(np.count_nonzero(own))
        on_frame = 0 if frame is None else np.count_nonzero(own & frame[sl])
        if area < min_area or on_frame > 0.5 * area:
            continue
        if on_frame and cw > 3 * ch and area < 0.2 * ch * cw:
            continue
        keep.append(idx)
        heights.append(ch)
    if heights:  # letters share a height; specks of noise do not
        floor = 0.4 * float(np.median(heights))
        keep, heights = [k for k, hh in zip(keep, heights) if hh >= floor], [hh for hh in heights if hh >= floor]
    mask = np.isin(labels, keep) if keep else np.zeros_like(cls, dtype=bool)
    return mask, heights


def frame_margin(image: Image.Image, px: int, tol: int = 30, min_sign: float = 0.25) -> np.ndarray | None:
    """The band within ``px`` pixels of the backdrop's edge, where a sign's border lies; None without a sign.

    The backdrop is what connects to the image border in the border's median colour (RGB, so a
    yellow sign as grey as the backdrop still differs). Text on a plain page is all backdrop and
    letters, so with less than ``min_sign`` of the image off the backdrop there is no sign and no frame."""
    if px <= 0:
        return None
    a = np.asarray(image.convert("RGB"), dtype=np.int16)
    similar = np.abs(a - np.median(_edges(a), axis=0)).max(axis=2) <= tol
    labels, _ = ndimage.label(similar)
    touching = np.unique(_edges(labels))
    backdrop = np.isin(labels, touching[touching > 0])
    if (~backdrop).mean() < min_sign:
        return None
    grow = np.ones((3, 3), dtype=bool)  # both sides of the edge: a generated sign's rim blurs into the backdrop
    return ndimage.binary_dilation(backdrop, structure=grow, iterations=px) & ndimage.binary_dilation(~backdrop, structure=grow, iterations=px)


def text_ink(gray: np.ndarray, frame: np.ndarray | None = None) -> tuple[np.ndarray, float | None]:
    """The text pixels of a grey image and the median letter height (None when no text-like ink).

    Every candidate threshold and polarity is tried; the one that keeps the most interior ink wins.
    ``frame`` (as from :func:`frame_margin`, same size) marks where a sign's border may be."""
    h, w = gray.shape
    if float(gray.max()) - float(gray.min()) < 16:
        return np.zeros_like(gray, dtype=bool), None
    min_area = max(3, int(5e-5 * h * w))
    best: tuple[int, np.ndarray, list[int]] = (0, np.zeros_like(gray, dtype=bool), [])
    for t in _candidate_thresholds(gray):
        for cls in (gray <= t, gray > t):
            mask, heights = _interior_components(cls, min_area, frame)
            ink = int(mask.sum())
            if ink > best[0]:
                best = (ink, mask, heights)
    _, mask, heights = best
    return mask, (float(np.median(heights)) if heights else None)


def scale_for(image: Image.Image, cfg: PreprocessConfig, frame: np.ndarray | None = None) -> float:
    """Upscale factor that brings letters to ``cfg.min_text_px`` (never downscales)."""
    gray = np.asarray(image.convert("L"), dtype=np.uint8)
    _, letter_h = text_ink(gray, frame)
    if letter_h is None:  # no text found: assume a line of text fills about 60% of the height
        letter_h = 0.6 * image.height
    return float(min(max(cfg.min_text_px / max(letter_h, 1.0), 1.0), cfg.max_scale))


def _pad(image: Image.Image, pad: int, fill: int) -> Image.Image:
    out = Image.new("L", (image.width + 2 * pad, image.height + 2 * pad), fill)
    out.paste(image, (pad, pad))
    return out


def binarize(gray: Image.Image, frame: np.ndarray | None = None) -> Image.Image:
    """Dark text on white, whatever the input polarity."""
    mask, _ = text_ink(np.asarray(gray, dtype=np.uint8), frame)
    return Image.fromarray(np.where(mask, 0, 255).astype(np.uint8), mode="L")


def prepare(image: Image.Image, cfg: PreprocessConfig = PreprocessConfig()) -> list[Prepared]:
    """The variants to read for one image, most reliable first (binary, then grey), upscaled and padded."""
    frame = frame_margin(image, cfg.frame_px)
    scale = scale_for(image, cfg, frame)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    gray = image.convert("L")
    if cfg.denoise and noise_sigma(np.asarray(gray)) > cfg.noise_threshold:
        gray = gray.filter(ImageFilter.MedianFilter(3))
    gray = gray.resize(size, Image.LANCZOS) if scale != 1.0 else gray
    out: list[Prepared] = []
    if cfg.binarize in ("auto", "always"):
        big_frame = None if frame is None else np.asarray(Image.fromarray(frame).resize(size, Image.NEAREST))
        out.append(Prepared(_pad(binarize(gray, big_frame), cfg.pad, 255), "binary", scale, cfg.pad))
    if cfg.binarize in ("auto", "never"):
        g = np.asarray(gray)
        out.append(Prepared(_pad(gray, cfg.pad, int(np.median(_edges(g)))), "gray", scale, cfg.pad))
    return out
