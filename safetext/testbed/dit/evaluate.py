"""Measure an exported DiT testbed: ``python -m safetext.testbed.dit.evaluate --model DIR``.

The first testbed's quality measures on its prompts (``safetext.testbed.quality``): 2 prompts
per word, one with training attributes and one with a held-out pair or template, noise seeds
from ``--seed-base``, the folder's profile defaults, one CPU thread. Prints a summary and
writes every sample to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

GOALS = {"word_exact": 0.9, "color": 0.9, "shape": 0.9, "seconds_per_image": 2.0}


def evaluate(model: Path, per_word: int = 2, seed_base: int = 900_000, steps: int | None = None) -> dict[str, Any]:
    """Word (Tesseract), colour and shape rates and seconds per image of the pipeline in ``model``."""
    import torch

    from safetext.pipelines.load import load_pipeline
    from safetext.pipelines.profile import load_profile
    from safetext.testbed.quality import make_specs, read_words, sign_color, sign_shape

    torch.set_num_threads(1)
    pipe = load_pipeline(model, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    profile = load_profile(model)
    kwargs: dict[str, Any] = dict(profile.generation) if profile is not None else {}
    if steps:
        kwargs["num_inference_steps"] = steps
    specs = make_specs(per_word, "both")
    pipe(prompt=specs[0].prompt(), **{**kwargs, "num_inference_steps": 2})  # warm-up, untimed
    images, seconds = [], []
    for i, spec in enumerate(specs):
        t0 = time.perf_counter()
        images.append(pipe(prompt=spec.prompt(), generator=torch.Generator().manual_seed(seed_base + i), **kwargs).images[0])
        seconds.append(time.perf_counter() - t0)
    words = read_words(images)
    samples = [
        {
            "prompt": s.prompt(),
            "seed": seed_base + i,
            "word": w,
            "word_ok": w == s.word.upper(),
            "color_ok": sign_color(img) == s.color,
            "shape_ok": sign_shape(img) == s.shape,
            "seconds": round(sec, 3),
        }
        for i, (s, img, w, sec) in enumerate(zip(specs, images, words, seconds))
    ]
    n = len(samples)
    summary = {
        "images": n,
        "word_exact": sum(x["word_ok"] for x in samples) / n,
        "color": sum(x["color_ok"] for x in samples) / n,
        "shape": sum(x["shape_ok"] for x in samples) / n,
        "seconds_per_image": sum(seconds) / n,
        "generation": kwargs,
    }
    return {"summary": summary, "samples": samples}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m safetext.testbed.dit.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, required=True, help="an exported DiT testbed folder")
    p.add_argument("--per-word", type=int, default=2)
    p.add_argument("--seed-base", type=int, default=900_000, help="first noise seed (held out from training)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the profile's)")
    p.add_argument("--json", type=Path, default=None, help="write summary and samples here")
    args = p.parse_args(argv)
    result = evaluate(args.model, args.per_word, args.seed_base, args.steps)
    summary = result["summary"]
    for key, goal in GOALS.items():
        met = summary[key] <= goal if key == "seconds_per_image" else summary[key] >= goal
        print(f"{key:>18}: {summary[key]:.3f}  (goal {'<=' if key == 'seconds_per_image' else '>='} {goal}) {'met' if met else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
