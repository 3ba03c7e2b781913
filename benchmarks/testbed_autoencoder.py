"""The testbed autoencoder's ceiling: what survives a round trip through it, per colour and shape.

    python benchmarks/testbed_autoencoder.py                  # shipped autoencoder
    python benchmarks/testbed_autoencoder.py --model DIR      # another testbed folder

The denoiser can only draw what the decoder can decode. This renders the quality benchmark's
exact signs (``safetext.testbed.quality.make_specs``: the same prompts, ground-truth images
instead of generated ones) and signs in the training-only colours, encodes and decodes
each, and classifies colour and shape as the quality benchmark does. A pair that fails
here fails in generation however good the denoiser is.
No denoiser, no OCR: seconds on one core.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from safetext.testbed.model import image_channels_only
from safetext.testbed.quality import make_specs, sign_color, sign_shape
from safetext.testbed.render import HELDOUT_COMBOS, SignSpec, render, to_tensor_array
from safetext.testbed.vocab import SHAPES, TRAINING_ONLY_COLORS, WORDS


@torch.no_grad()
def round_trip(vae, images: list[Image.Image]) -> list[Image.Image]:
    """Encode (posterior mean) and decode, with the position channels zeroed as in training."""
    x = torch.from_numpy(np.stack([to_tensor_array(im) for im in images]))
    z = image_channels_only(vae.encode(x).latent_dist.mean)
    y = ((vae.decode(z).sample.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(a) for a in y.permute(0, 2, 3, 1).numpy()]


def training_only_specs(per_shape: int = 8) -> list[SignSpec]:
    """Signs in the training-only colours (``TRAINING_ONLY_COLORS``), every shape; the quality
    benchmark never asks for them."""
    return [
        SignSpec(WORDS[(7 * i) % len(WORDS)], color, shape)
        for color in TRAINING_ONLY_COLORS
        for shape in SHAPES
        for i in range(per_shape)
    ]


def measure(vae, specs: list[SignSpec], seeds: int = 2, seed_base: int = 900_000) -> dict[tuple[str, str], list[int]]:
    """(colour, shape) -> [signs, colour right, shape right] after the round trip."""
    rows: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for k in range(seeds):
        images = [render(spec, seed_base + k * len(specs) + i)[0] for i, spec in enumerate(specs)]
        for spec, out in zip(specs, round_trip(vae, images)):
            row = rows[(spec.color, spec.shape)]
            row[0] += 1
            row[1] += sign_color(out) == spec.color
            row[2] += sign_shape(out) == spec.shape
    return dict(rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="testbed pipeline folder (default: the shipped one)")
    p.add_argument("--seeds", type=int, default=2, help="jitter seeds per prompt")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from diffusers import AutoencoderKL

    from safetext.testbed import model_dir

    vae = AutoencoderKL.from_pretrained(args.model or model_dir(), subfolder="vae").eval()
    rows = measure(vae, make_specs(2, "both"), args.seeds)
    extra = measure(vae, training_only_specs(), args.seeds)
    total = np.array(list(rows.values())).sum(0)
    print("| colour | shape | held out | signs | colour kept | shape kept |\n|---|---|---|---|---|---|")
    for (color, shape), (n, c, s) in sorted(rows.items()):
        print(f"| {color} | {shape} | {'yes' if (color, shape) in HELDOUT_COMBOS else ''} | {n} | {c}/{n} | {s}/{n} |")
    print(f"| all | | | {total[0]} | {total[1] / total[0]:.1%} | {total[2] / total[0]:.1%} |")
    for (color, shape), (n, c, s) in sorted(extra.items()):
        print(f"| {color} (training only) | {shape} | | {n} | {c}/{n} | {s}/{n} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
