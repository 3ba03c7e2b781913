"""Does the testbed's data recipe teach colour and shape apart? A small denoiser, from scratch.

    python benchmarks/testbed_composition.py --out runs/composition/base
    python benchmarks/testbed_composition.py --light-text --data-from runs/composition/base --out runs/composition/light
    python benchmarks/testbed_composition.py --swap-heldout yellow,banner --out runs/composition/yellow

Why: weights trained on plain (unbordered) signs drew every held-out colour/shape pair but
one: a white *banner* came out as a white sign (safetext/testbed/HISTORY.md). Training the
real model from scratch takes a GPU; this lab answers in about 35 minutes on one core
whether a data recipe teaches colour and shape apart. It trains a 1.3 M-parameter U-Net
and a 2-layer text encoder from scratch on the testbed's own training draws
(``render.sample_spec``, held-out pairs excluded), as latents of a testbed autoencoder
encoded once (``--n`` signs), then draws 16 signs for each held-out pair and a few training
pairs and classifies them as ``testbed_quality.py`` does. No words are scored: the
question is colour and shape only. The ``--outline`` variant is the data the shipped
weights are trained on (``safetext.testbed.data``).

Variants (each changes the training data only; the evaluation prompts stay the same):

* ``--extra-colors``: training-only colours on every shape (the autoencoder of ``--vae-from``
  must be able to draw them, see ``testbed_autoencoder.py``; the shipped one cannot);
* ``--light-text``: training prompts say "light letters" for white text, so "white" only
  ever names a sign colour;
* ``--outline``: every training sign gets a dark 2 px border (``render(..., outline=)``),
  a shape cue of the same contrast whatever the sign's colour (the shipped autoencoder
  round-trips such signs: 48/48 kept colour and shape);
* ``--drop-color P``: a fraction P of training prompts leave the sign colour out
  (``a banner that says ...``), so the shape word alone must draw the shape;
* ``--swap-heldout C,S``: hold out the pair C S instead of white banner (white banners are
  then trained).

Writes ``result.json`` and ``result.md`` and a grid PNG per pair to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from rich.progress import track

import safetext.testbed.render as render_mod
from safetext.testbed import MODEL_DIR
from safetext.testbed import model as tb
from safetext.testbed.quality import sign_color, sign_shape
from safetext.testbed.render import (
    OUTLINE,
    SignSpec,
    render,
    sample_spec,
    to_tensor_array,
)
from safetext.testbed.vocab import PALETTE

MAX_TOKENS = 64  # the longest training prompt is about 60 letters
CONTROL_PAIRS = (("white", "sign"), ("white", "circle"), ("yellow", "banner"), ("red", "banner"))  # trained by default
EVAL_TEMPLATES = (0, 1, 2, 5, 7, 8)  # training templates without a named font or text colour
EVAL_WORDS = ("hello", "idiot", "sale")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vae-from", type=Path, default=MODEL_DIR, help="testbed folder whose autoencoder and tokenizer to use")
    p.add_argument("--extra-colors", default="", help="comma-separated training-only colours (vocab.TRAINING_ONLY_COLORS)")
    p.add_argument("--light-text", action="store_true", help="training prompts say 'light letters' for white text")
    p.add_argument("--outline", action="store_true", help="draw every training sign with a dark 2 px border")
    p.add_argument("--drop-color", type=float, default=0.0, help="fraction of training prompts whose sign colour is left out")
    p.add_argument("--swap-heldout", default="", help="COLOR,SHAPE held out instead of white banner")
    p.add_argument("--data-from", type=Path, default=None, help="reuse the encoded signs of an earlier run (same draws)")
    p.add_argument("--n", type=int, default=16000, help="training signs, encoded once")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--per-pair", type=int, default=16, help="signs generated per evaluated pair")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.swap_heldout:
        pair = tuple(args.swap_heldout.split(","))
        if len(pair) != 2 or pair[1] not in render_mod.SHAPES or pair[0] not in render_mod.SIGN_COLORS:
            p.error(f"--swap-heldout: expected COLOR,SHAPE with a sign colour and a shape, got {args.swap_heldout!r}")
    return args


def heldout_pairs(swap: str) -> frozenset[tuple[str, str]]:
    """The held-out pairs of this run: the renderer's, with white banner swapped for ``swap``."""
    pairs = set(render_mod.HELDOUT_COMBOS)
    if swap:
        pairs = pairs - {("white", "banner")} | {tuple(swap.split(","))}  # type: ignore[arg-type]
    return frozenset(pairs)


def without_color(prompt: str) -> str:
    """The prompt without its sign colour: every template opens 'a COLOR SHAPE' or 'a SHAPE in COLOR'."""
    colors, shapes = "|".join(PALETTE), "|".join(render_mod.SHAPES)
    out = re.sub(rf"^a ({colors}) ({shapes}) ", r"a \2 ", prompt)
    return re.sub(rf"^a ({shapes}) in ({colors}) ", r"a \1 ", out)


@torch.no_grad()
def encode_signs(
    vae, n: int, seed: int, extra: tuple[str, ...], heldout: frozenset = render_mod.HELDOUT_COMBOS, outline: bool = False
) -> dict:
    """``n`` training signs drawn as the trainer draws them: scaled image latents and prompts."""
    rng = random.Random(seed)
    zs, prompts = [], []
    for _ in track(range(0, n, 128), description="encoding signs"):
        specs = [sample_spec(rng, "train", extra_colors=extra, heldout=heldout) for _ in range(128)]
        x = torch.from_numpy(np.stack([to_tensor_array(render(s, rng.getrandbits(32), OUTLINE if outline else None)[0]) for s in specs]))
        zs.append(vae.encode(x).latent_dist.mean[:, : tb.IMAGE_CHANNELS] * vae.config.scaling_factor)
        prompts += [s.prompt() for s in specs]
    return {"z": torch.cat(zs), "prompts": prompts}


def build_models(tok):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok), hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=MAX_TOKENS, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=tb.LATENT_SIZE, in_channels=tb.IMAGE_CHANNELS, out_channels=tb.IMAGE_CHANNELS,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(24, 48, 64), layers_per_block=1, cross_attention_dim=64, attention_head_dim=4, norm_num_groups=8,
    )
    return text, unet


def train(text, unet, z: torch.Tensor, ids: torch.Tensor, empty: torch.Tensor, args: argparse.Namespace) -> list[float]:
    """v-prediction on the cosine schedule, 10% empty prompts (for guidance), linear LR decay."""
    from diffusers import DPMSolverMultistepScheduler

    alphas = torch.as_tensor(DPMSolverMultistepScheduler(**tb.SCHEDULER_CONFIG).alphas_cumprod, dtype=torch.float32)
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(args.seed)
    losses = []
    for step in track(range(args.steps), description="training"):
        idx = torch.randint(0, len(z), (args.batch,), generator=g)
        z0, batch_ids = z[idx], ids[idx].clone()
        batch_ids[torch.rand(args.batch, generator=g) < 0.1] = empty
        t = torch.randint(0, len(alphas), (args.batch,), generator=g)
        a, s = alphas[t].sqrt()[:, None, None, None], (1 - alphas[t]).sqrt()[:, None, None, None]
        noise = torch.randn(z0.shape, generator=g)
        loss = F.mse_loss(unet(a * z0 + s * noise, t, text(batch_ids)[0]).sample, a * noise - s * z0)
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1, (step + 1) / 200) * (1 - 0.9 * step / args.steps)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def generate(text, unet, vae, tok, prompts: list[str], seed: int) -> list[Image.Image]:
    """20 DPM-Solver steps at guidance 4.0 (the testbed's defaults), decoded by the autoencoder."""
    from diffusers import DPMSolverMultistepScheduler

    unet.eval(), text.eval()
    sched = DPMSolverMultistepScheduler(**tb.SCHEDULER_CONFIG)
    sched.set_timesteps(tb.DEFAULT_STEPS)
    cond = text(tok(prompts, padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids)[0]
    uncond = text(tok([""] * len(prompts), padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids)[0]
    z = torch.randn((len(prompts), tb.IMAGE_CHANNELS, *tb.LATENT_SIZE), generator=torch.Generator().manual_seed(seed))
    for t in sched.timesteps:
        eu, ec = unet(torch.cat([z, z]), t, torch.cat([uncond, cond])).sample.chunk(2)
        z = sched.step(eu + tb.DEFAULT_GUIDANCE * (ec - eu), t, z).prev_sample
    # the decoder's input: image channels, and the position channels it gives zero weight to as zeros
    x = vae.decode(torch.cat([z / vae.config.scaling_factor, torch.zeros_like(z[:, : tb.POSITION_CHANNELS])], 1)).sample
    y = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a) for a in y]


def evaluate(text, unet, vae, tok, heldout: frozenset, per_pair: int, out: Path) -> dict[str, dict]:
    rng = random.Random(123)
    # The same prompts in every run: the renderer's held-out pairs, then the controls (a swapped-in pair is one).
    pairs = sorted(render_mod.HELDOUT_COMBOS) + list(CONTROL_PAIRS)
    pairs += sorted(heldout - set(pairs))
    result = {}
    for color, shape in track(pairs, description="evaluating"):
        prompts = [
            SignSpec(rng.choice(EVAL_WORDS), color, shape, template=rng.choice(EVAL_TEMPLATES)).prompt() for _ in range(per_pair)
        ]
        images = generate(text, unet, vae, tok, prompts, seed=7)
        got = [(sign_color(im), sign_shape(im)) for im in images]
        result[f"{color} {shape}"] = {
            "heldout": (color, shape) in heldout,
            "n": len(got),
            "color": sum(c == color for c, _ in got),
            "shape": sum(s == shape for _, s in got),
            "both": sum(g == (color, shape) for g in got),
            "got": [f"{c} {s}" for c, s in got],
        }
        grid = Image.new("RGB", (256 * 4, 64 * ((len(images) + 3) // 4)))
        for k, im in enumerate(images):
            grid.paste(im, (256 * (k % 4), 64 * (k // 4)))
        grid.save(out / f"{color}_{shape}.png")
    return result


def markdown(result: dict[str, dict], args: argparse.Namespace, losses: list[float]) -> str:
    lines = [
        f"# testbed_composition: {args.out.name}",
        "",
        (
            f"Autoencoder from `{args.vae_from}`, {args.n} encoded signs, {args.steps} steps of batch {args.batch}, seed {args.seed};"
            f" extra colours: {args.extra_colors or 'none'}; light text: {args.light_text}; colour left out of {args.drop_color:.0%} of prompts; swapped held-out pair: {args.swap_heldout or 'none'}; outlined signs: {args.outline}."
            f" Final loss (mean of the last 100 steps): {np.mean(losses[-100:]):.4f}."
        ),
        "",
        "| pair | held out | colour | shape | both | drawn as (most common) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in result.items():
        common = max(set(r["got"]), key=r["got"].count)
        lines.append(f"| {name} | {'yes' if r['heldout'] else 'no'} | {r['color']}/{r['n']} | {r['shape']}/{r['n']} | {r['both']}/{r['n']} | {common} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from diffusers import AutoencoderKL
    from transformers import CLIPTokenizer

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    heldout = heldout_pairs(args.swap_heldout)
    tok = CLIPTokenizer.from_pretrained(str(args.vae_from / "tokenizer"))
    vae = AutoencoderKL.from_pretrained(str(args.vae_from / "vae"), torch_dtype=torch.float32).eval()
    extra = tuple(c for c in args.extra_colors.split(",") if c)
    draws = {"n": args.n, "seed": args.seed, "extra_colors": list(extra), "heldout": sorted(map(list, heldout)), "vae": str(args.vae_from)}
    if args.outline:  # only when on, so that earlier runs' signs stay reusable
        draws["outline"] = True
    cache = (args.data_from or args.out) / "signs.pt"
    if cache.exists():
        data = torch.load(cache)
        if data.get("draws") != draws:  # another run's signs would silently change the experiment
            raise SystemExit(f"{cache} holds other draws ({data.get('draws')}); this run needs {draws}")
    elif args.data_from:
        raise SystemExit(f"--data-from {args.data_from}: no signs.pt there")
    else:
        data = {**encode_signs(vae, args.n, args.seed, extra, heldout, args.outline), "draws": draws}
        torch.save(data, cache)
    prompts = data["prompts"]
    if args.light_text:
        prompts = [q.replace("white letters", "light letters") for q in prompts]
    if args.drop_color:
        rng = random.Random(f"drop-{args.seed}")
        prompts = [without_color(q) if rng.random() < args.drop_color else q for q in prompts]
    ids = tok(prompts, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt").input_ids
    empty = tok([""], padding="max_length", max_length=MAX_TOKENS, return_tensors="pt").input_ids
    text, unet = build_models(tok)
    losses = train(text, unet, data["z"], ids, empty, args)
    result = evaluate(text, unet, vae, tok, heldout, args.per_pair, args.out)
    (args.out / "result.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "pairs": result}, indent=1))
    (args.out / "result.md").write_text(md := markdown(result, args, losses))
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
