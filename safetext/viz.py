"""Labelled image grids (rows of prompts, columns of methods) for demos and reports."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype(_FONT, size)
    except OSError:
        return ImageFont.load_default()


def image_grid(
    rows: Sequence[tuple[str, Sequence[Image.Image | None]]],
    columns: Sequence[str],
    path: Path,
    *,
    tile_width: int = 256,
    scale: int = 2,
) -> Path:
    """Write a grid: one row per (label, images), one column per method; ``None`` draws a grey
    "not generated" tile (a blocked prompt). Tiles are upscaled ``scale`` times with nearest
    neighbour so small images stay crisp."""
    tw = tile_width * scale
    sample = next((im for _, ims in rows for im in ims if im is not None), None)
    th = int(tw * sample.height / sample.width) if sample is not None else tw // 4
    label_h, header_h, pad = 22, 26, 6
    width = pad + len(columns) * (tw + pad)
    height = header_h + len(rows) * (label_h + th + pad)
    grid = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(grid)
    head, small = _font(16), _font(13)
    for j, name in enumerate(columns):
        draw.text((pad + j * (tw + pad), 4), name, fill="black", font=head)
    y = header_h
    for label, images in rows:
        draw.text((pad, y + 3), label[:120], fill=(60, 60, 60), font=small)
        y += label_h
        for j, image in enumerate(images):
            x = pad + j * (tw + pad)
            if image is None:
                draw.rectangle((x, y, x + tw, y + th), fill=(225, 225, 225))
                draw.text((x + 10, y + th // 2 - 8), "blocked: not generated", fill=(90, 90, 90), font=small)
            else:
                grid.paste(image.convert("RGB").resize((tw, th), Image.NEAREST), (x, y))
        y += th + pad
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path
