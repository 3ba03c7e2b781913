"""Measure the testbed model: can it spell, colour and shape what the prompt asks, and how fast?

    python benchmarks/testbed_quality.py                      # all 48 words x 2 prompts, default steps
    python benchmarks/testbed_quality.py --per-word 1 --split eval --steps 10

Metrics, on noise seeds the model never trained with (from --seed-base up):

* word accuracy: Tesseract (safetext.ocr) reads exactly the requested word, per word group
  (toxic / benign / innocent) with Wilson 95% intervals; the toxic words must be drawn, or the
  bench's leakage numbers mean nothing;
* sign colour accuracy: the most common nearest-palette colour of the sign pixels (those
  unlike the backdrop) equals the requested colour; the palette (``PALETTE``) holds the
  training-only colours too, so a sign drawn in one of them is a miss;
* shape accuracy: the sign's pixel mask best matches (IoU) the ideal rounded rectangle,
  notched banner or ellipse drawn in its bounding box;
* for models that draw a dark border (most images have one), a diagnostic row:
  the shape the border encloses (``border_shape``), which tells "drew a banner's outline but
  painted its notches" from "drew a sign"; the headline shape stays the fill-based one;
* seconds per image on one CPU core (``torch.set_num_threads(1)``), batch size 1.

Writes ``testbed_quality.json``, ``testbed_quality.md`` and ``testbed_quality.png`` (samples)
under ``--out`` (default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from safetext.metrics import Rate, normalize_text
from safetext.testbed.quality import border_shape, make_specs, sign_color, sign_shape
from safetext.testbed.render import SignSpec
from safetext.testbed.vocab import BENIGN, INNOCENT, SHAPES, TOXIC, WORDS

GROUPS = {"toxic": set(TOXIC), "benign": set(BENIGN), "innocent": set(INNOCENT)}


# ----------------------------------------------------------------------------- scoring


@dataclass
class Sample:
    word: str
    color: str
    shape: str
    font: str
    prompt: str
    seed: int
    seconds: float
    ocr: str
    word_ok: bool
    color_read: str | None
    shape_read: str | None
    border_shape_read: str | None = None  # the shape a dark border encloses; None without a border


def score(specs: Sequence[SignSpec], seeds: Sequence[int], images: Sequence[Image.Image], seconds: Sequence[float], ocr: object) -> list[Sample]:
    reads = ocr.read_batch(list(images))  # type: ignore[attr-defined]
    out = []
    for spec, seed, image, secs, read in zip(specs, seeds, images, seconds, reads):
        text = normalize_text(read.text).replace(" ", "")
        out.append(
            Sample(spec.word, spec.color, spec.shape, spec.font, spec.prompt(), seed, secs, read.text,
                   text == spec.word, sign_color(image), sign_shape(image), border_shape(image))
        )
    return out


def summarize(samples: Sequence[Sample]) -> dict[str, object]:
    def rate(flags: Sequence[bool]) -> dict[str, object]:
        return Rate(sum(flags), len(flags)).to_dict()

    per_word = {w: rate([s.word_ok for s in samples if s.word == w]) for w in WORDS if any(s.word == w for s in samples)}
    secs = [s.seconds for s in samples]
    return {
        "n_images": len(samples),
        "word_accuracy": rate([s.word_ok for s in samples]),
        "word_accuracy_by_group": {g: rate([s.word_ok for s in samples if s.word in ws]) for g, ws in GROUPS.items()},
        "color_accuracy": rate([s.color_read == s.color for s in samples]),
        "shape_accuracy": rate([s.shape_read == s.shape for s in samples]),
        "shape_accuracy_by_shape": {sh: rate([s.shape_read == sh for s in samples if s.shape == sh]) for sh in SHAPES},
        "bordered_images": sum(s.border_shape_read is not None for s in samples),
        "shape_by_border_accuracy": rate([s.border_shape_read == s.shape for s in samples]),
        "seconds_per_image": {"mean": statistics.fmean(secs) if secs else None, "median": statistics.median(secs) if secs else None},
        "per_word": per_word,
    }


def _pct(r: dict[str, object]) -> str:
    return f"{100 * (r['value'] or 0):.1f}% ({r['k']}/{r['n']}; 95% CI {100 * r['lo']:.0f}-{100 * r['hi']:.0f}%)"  # type: ignore[operator]


def markdown(summary: dict[str, object], meta: dict[str, object]) -> str:
    s = summary
    lines = [
        "# Testbed model quality",
        "",
        f"{s['n_images']} images: {meta['per_word']} prompt(s) per word for {len(WORDS)} words, split `{meta['split']}`, "
        f"{meta['steps']} steps, guidance {meta['guidance_scale']}, noise seeds from {meta['seed_base']}, one CPU thread.",
        "",
        "| measure | result |",
        "|---|---|",
        f"| word read exactly (Tesseract) | {_pct(s['word_accuracy'])} |",  # type: ignore[arg-type]
    ]
    for g, r in s["word_accuracy_by_group"].items():  # type: ignore[union-attr]
        lines.append(f"| - {g} words | {_pct(r)} |")
    lines += [
        f"| sign colour | {_pct(s['color_accuracy'])} |",  # type: ignore[arg-type]
        f"| sign shape | {_pct(s['shape_accuracy'])} |",  # type: ignore[arg-type]
    ]
    if 2 * s["bordered_images"] > s["n_images"]:  # type: ignore[operator]
        lines.append(f"| - diagnostic: the shape its dark border encloses ({s['bordered_images']} bordered) | {_pct(s['shape_by_border_accuracy'])} |")  # type: ignore[arg-type]
    lines += [
        f"| seconds per image (1 core) | mean {s['seconds_per_image']['mean']:.2f}, median {s['seconds_per_image']['median']:.2f} |",  # type: ignore[index]
        "",
        "Words read in under half of their images:",
        "",
    ]
    weak = [f"`{w}` {100 * (r['value'] or 0):.0f}%" for w, r in s["per_word"].items() if (r["value"] or 0) < 0.5]  # type: ignore[union-attr]
    lines.append(", ".join(weak) if weak else "none.")
    lines += ["", "![samples](testbed_quality.png)", "", f"Command: `{meta['command']}`", ""]
    return "\n".join(lines)


def sample_grid(images: Sequence[Image.Image], samples: Sequence[Sample], path: Path, n: int = 24) -> None:
    cols, w, h, cap = 4, 256, 64, 14
    n = min(n, len(images))
    grid = Image.new("RGB", (cols * w, ((n + cols - 1) // cols) * (h + cap)), "white")
    d = ImageDraw.Draw(grid)
    from safetext.bench.plots import _font

    for i in range(n):
        x, y = (i % cols) * w, (i // cols) * (h + cap)
        grid.paste(images[i].convert("RGB").resize((w, h)), (x, y))
        s = samples[i]
        d.text((x + 2, y + h), f"{'ok' if s.word_ok else 'NO'} {s.word} -> {s.ocr[:14]!r} {s.color_read}/{s.shape_read}", fill="black", font=_font(10))
    grid.save(path)


# ----------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--per-word", type=int, default=2)
    p.add_argument("--split", choices=("train", "eval", "both"), default="both", help="prompt attributes: seen combos, held-out ones, or both")
    p.add_argument("--seed-base", type=int, default=900_000, help="first noise seed (held out from training)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    p.add_argument("--ocr", default="tesseract")
    p.add_argument("--model", type=Path, default=None, help="a testbed pipeline folder to measure instead of the shipped one (e.g. new weights)")
    args = p.parse_args(argv)

    import torch

    from safetext import testbed
    from safetext.ocr import get_engine

    torch.set_num_threads(1)
    pipe = testbed.load(folder=args.model)
    kwargs = testbed.generation_defaults()
    if args.steps:
        kwargs["num_inference_steps"] = args.steps
    specs = make_specs(args.per_word, args.split)
    seeds = [args.seed_base + i for i in range(len(specs))]
    images, seconds = [], []
    from rich.progress import track

    pipe(prompt=specs[0].prompt(), num_inference_steps=2)  # warm-up, untimed
    for spec, seed in track(list(zip(specs, seeds)), description="testbed quality"):
        t0 = time.perf_counter()
        out = pipe(prompt=spec.prompt(), generator=torch.Generator().manual_seed(seed), **kwargs)
        seconds.append(time.perf_counter() - t0)
        images.append(out.images[0])
    samples = score(specs, seeds, images, seconds, get_engine(args.ocr))
    summary = summarize(samples)
    meta = {
        "per_word": args.per_word, "split": args.split, "seed_base": args.seed_base, "ocr": args.ocr,
        "steps": kwargs["num_inference_steps"], "guidance_scale": kwargs.get("guidance_scale"),
        "command": "python benchmarks/testbed_quality.py " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "testbed_quality.json").write_text(
        json.dumps({"meta": meta, "summary": summary, "samples": [asdict(s) for s in samples]}, indent=2) + "\n"
    )
    (args.out / "testbed_quality.md").write_text(markdown(summary, meta))
    sample_grid(images, samples, args.out / "testbed_quality.png")
    print(markdown(summary, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
