"""Figures for the report: image grids (rows: prompts; columns: methods) and leakage against
fidelity per method, so that the winner is visible without reading a table.

Grid borders: red = a blocked term was read (fuzzy), green = the benign target was read,
orange = an innocent prompt's image changed, grey = none of these. A refused image is a dark tile.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from safetext.bench.evaluate import Record
from safetext.bench.methods import LABELS, SUITE_METHODS
from safetext.metrics import Mean, wilson_interval

RED, GREEN, GREY, DARK, ORANGE = (220, 40, 40), (40, 170, 70), (170, 170, 170), (45, 45, 45), (245, 140, 20)
COLORS = {"unguarded": "#d62728", "block": "#7f7f7f", "prompt_swap": "#ff7f0e", "negative_prompt": "#9467bd", "safetext": "#2ca02c"}


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf"):
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default()


def _tile(rec: Record | None, out_dir: Path, width: int) -> Image.Image:
    caption_h, border = 18, 3
    if rec is None or rec.image is None:
        body = Image.new("RGB", (width, width // 4), DARK)
        ImageDraw.Draw(body).text((width // 2, body.height // 2), "REFUSED" if rec else "-", fill="white", font=_font(14), anchor="mm")
        color, caption = GREY, "no image"
    else:
        img = Image.open(out_dir / rec.image).convert("RGB")
        height = max(1, round(img.height * width / img.width))
        body = img.resize((width, height), Image.NEAREST if img.width < width // 2 else Image.LANCZOS)
        changed = rec.suite == "innocent" and rec.unchanged is False
        color = RED if rec.fuzzy_leak else GREEN if rec.target_ok else ORANGE if changed else GREY
        caption = f'OCR: "{rec.ocr_text[:28]}"' if rec.ocr_text else "OCR: (nothing)"
    tile = Image.new("RGB", (width + 2 * border, body.height + 2 * border + caption_h), "white")
    ImageDraw.Draw(tile).rectangle((0, 0, tile.width - 1, body.height + 2 * border - 1), fill=color)
    tile.paste(body, (border, border))
    ImageDraw.Draw(tile).text((border, body.height + 2 * border + 2), caption, fill="black", font=_font(11))
    return tile


def image_grid(records: Sequence[Record], suite: str, out_dir: Path, path: Path, *, max_rows: int = 8, tile_width: int = 256) -> Path | None:
    """A PNG grid of the first ``max_rows`` prompts of ``suite`` at the lowest seed."""
    rows = [r for r in records if r.suite == suite]
    if not rows:
        return None
    seed = min(r.seed for r in rows)
    cells: dict[str, dict[str, Record]] = defaultdict(dict)
    for r in rows:
        if r.seed == seed:
            cells[r.prompt_id][r.method] = r
    prompt_ids = sorted(cells)[:max_rows]
    methods = [m for m in SUITE_METHODS[suite] if any(m in cells[p] for p in prompt_ids)]
    label_w, header_h, gap = 230, 26, 6
    tiles = [[_tile(cells[p].get(m), out_dir, tile_width) for m in methods] for p in prompt_ids]
    tw, th = tiles[0][0].width, max(t.height for row in tiles for t in row)
    grid = Image.new("RGB", (label_w + len(methods) * (tw + gap), header_h + len(prompt_ids) * (th + gap)), "white")
    draw = ImageDraw.Draw(grid)
    for j, m in enumerate(methods):
        draw.text((label_w + j * (tw + gap) + tw // 2, header_h // 2), LABELS[m], fill="black", font=_font(15), anchor="mm")
    for i, p in enumerate(prompt_ids):
        y = header_h + i * (th + gap)
        first = next(iter(cells[p].values()))
        words, lines, line = first.prompt.split(), [], ""
        for w in words:  # wrap the prompt into the label column
            if len(line) + len(w) + 1 > 30:
                lines.append(line)
                line = w
            else:
                line = f"{line} {w}".strip()
        lines.append(line)
        draw.text((6, y + 4), "\n".join(lines[:4]), fill="black", font=_font(12))
        for j, tile in enumerate(tiles[i]):
            grid.paste(tile, (label_w + j * (tw + gap), y))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


def leakage_fidelity_plot(records: Sequence[Record], suite: str, path: Path) -> Path | None:
    """Fuzzy leakage (Wilson 95% CI) against masked SSIM (95% CI) per method; refusals count as SSIM 0."""
    rows = [r for r in records if r.suite == suite and r.method != "unguarded"]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((0.9, -3), 0.15, 5, color="#2ca02c", alpha=0.15, label="goal: leakage <= 2%, SSIM >= 0.9"))
    for i, method in enumerate(SUITE_METHODS[suite]):
        mine = [r for r in rows if r.method == method]
        if not mine:
            continue
        k = sum(r.fuzzy_leak is not None for r in mine)
        lo, hi = wilson_interval(k, len(mine))
        y = 100 * k / len(mine)
        # a refusal delivers nothing (0); an image whose text box covers everything has no masked score (skipped)
        fid = Mean.of([0.0 if r.status == "blocked" else r.ssim_masked for r in mine if r.status == "blocked" or r.ssim_masked is not None])
        x = fid.value or 0.0
        ax.errorbar(
            x, y, yerr=[[y - 100 * lo], [100 * hi - y]],
            xerr=[[x - (fid.lo or x)], [(fid.hi or x) - x]], fmt="o", ms=8, capsize=3, color=COLORS.get(method, "black"),
        )
        offset = (8, -16 - 11 * (i % 2)) if y > 80 else (8, 6 + 11 * (i % 3))  # keep labels inside the axes
        ha = "right" if x > 0.8 else "left"
        offset = (-offset[0], offset[1]) if ha == "right" else offset
        ax.annotate(LABELS[method], (x, y), textcoords="offset points", xytext=offset, ha=ha, fontsize=9, color=COLORS.get(method, "black"))
    base = [r for r in records if r.suite == suite and r.method == "unguarded"]
    if base:
        y = 100 * sum(r.fuzzy_leak is not None for r in base) / len(base)
        ax.axhline(y, color=COLORS["unguarded"], ls="--", lw=1, label=f"unguarded leakage {y:.0f}%")
    ax.set_xlim(-0.02, 1.05)
    ax.set_ylim(-3, 103)
    ax.set_xlabel("SSIM outside the text box vs unguarded (refusal = 0)  ->  better")
    what = "source word still read" if suite == "edit" else "fuzzy leakage"
    ax.set_ylabel(f"{what}, % of images  (lower is better)")
    ax.set_title(f"{suite}: leakage vs fidelity (95% CIs); best is bottom right")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
