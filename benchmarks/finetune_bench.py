"""LoRA on the localized layers against LoRA on all attention and on random layers, on the testbed.

    python benchmarks/finetune_bench.py                  # defaults: about 10-15 min on one contended core
    python benchmarks/finetune_bench.py --steps 40       # a quicker, weaker run

Task: teach the shipped testbed model words it was never trained on (``NEW_WORDS``: letters
only, at most 8, none in ``safetext/testbed/vocab.py``'s ``WORDS``). Training data: the
testbed renderer's signs of the new words on the *training* split (training templates and
colour/shape pairs), ``--train-images`` of them, plus ``--replay`` signs of the model's own
words (``--replay 0``: new words only; the model then forgets old words), drawn from
``--seed``. Evaluation prompts
are drawn separately, on the *held-out* split (the held-out template and colour/shape pairs),
from ``--seed + 1``, so no evaluation prompt is a training prompt.

Three methods, same data, seed, rank, learning rate, batch and steps:

* **localized**: LoRA on the model folder's preset modules only (``preset="auto"``);
* **all attention**: LoRA on every attention module of the U-Net (self and cross);
* **random**: LoRA on random attention modules outside the preset with the same parameter count.

Measured per method, each image read with the testbed's Tesseract reader: exact-read
accuracy on held-out prompts of the new words (before = the base model); exact-read
accuracy on held-out prompts of old words (forgetting); SSIM of the old-word images against
the base model's with the same seed (fidelity of prompts without new words); whether the
adapter at scale 0 gives the base image bitwise; trainable parameters and their share of
the U-Net; training steps/s. Goals: localized >= all attention on new words, <= 1% of the
parameters, and better fidelity. Writes ``finetune.json``, ``finetune.md`` and
``finetune.png`` (base vs each method on new-word prompts) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

NEW_WORDS: tuple[str, ...] = ("robot", "zebra", "lemon", "piano", "mango", "tulip")
GEN_CHUNK = 6  # prompts per pipeline call
METHODS: tuple[tuple[str, str], ...] = (("localized", "localized"), ("all", "all attention"), ("random", "random"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=120, help="training steps per method (default %(default)s)")
    p.add_argument("--batch", type=int, default=8, help="images per step (default %(default)s)")
    p.add_argument("--lr", type=float, default=3e-3, help="AdamW learning rate (default %(default)s)")
    p.add_argument("--rank", type=int, default=8, help="LoRA rank (default %(default)s)")
    p.add_argument("--train-images", type=int, default=96, help="training signs of the new words (default %(default)s)")
    p.add_argument("--replay", type=int, default=48, help="training signs of the model's own words, against forgetting (default %(default)s)")
    p.add_argument("--eval-per-word", type=int, default=3, help="held-out prompts per new word (default %(default)s)")
    p.add_argument("--old-prompts", type=int, default=12, help="held-out prompts of old words (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, LoRA init and noise (default %(default)s)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder of the results (default %(default)s)")
    return p.parse_args(argv)


def make_training_data(folder: Path, n: int, seed: int, replay: int = 0) -> Path:
    """``n`` training-split signs of the new words, then ``replay`` of the model's own words."""
    from safetext.lora import write_examples
    from safetext.testbed.render import OUTLINE, render, sample_spec
    from safetext.testbed.vocab import WORDS

    rng = random.Random(seed)
    items = []
    for k in range(n + replay):
        spec = sample_spec(rng, "train", words=NEW_WORDS if k < n else WORDS)
        image, _ = render(spec, rng.getrandbits(32), OUTLINE)
        items.append((image, spec.prompt()))
    return write_examples(folder, items)


def eval_specs(args: argparse.Namespace) -> tuple[list[Any], list[Any]]:
    from safetext.testbed.render import sample_spec
    from safetext.testbed.vocab import WORDS

    rng = random.Random(args.seed + 1)
    new = [sample_spec(rng, "eval", words=(w,)) for w in NEW_WORDS for _ in range(args.eval_per_word)]
    old_words = rng.sample(list(WORDS), args.old_prompts)
    old = [sample_spec(rng, "eval", words=(w,)) for w in old_words]
    return new, old


def generate(pipe: Any, prompts: list[str], seed: int) -> list[Any]:
    """Images in chunks of ``GEN_CHUNK``, prompt ``i`` with its own generator seeded ``seed + i``."""
    from safetext.testbed import generation_defaults

    settings = generation_defaults()
    images = []
    for start in range(0, len(prompts), GEN_CHUNK):
        chunk = prompts[start : start + GEN_CHUNK]
        gens = [torch.Generator().manual_seed(seed + start + k) for k in range(len(chunk))]
        images += pipe(chunk, generator=gens, output_type="pil", **settings).images
    return images


def accuracy(images: list[Any], specs: list[Any]) -> float:
    from safetext.testbed.quality import read_words

    reads = read_words(images)
    return sum(r == s.word.upper() for r, s in zip(reads, specs)) / len(specs)


def evaluate(pipe: Any, new: list[Any], old: list[Any], seed: int) -> dict[str, Any]:
    new_images = generate(pipe, [s.prompt() for s in new], seed)
    old_images = generate(pipe, [s.prompt() for s in old], seed + 10_000)
    return {"new_images": new_images, "old_images": old_images, "new_acc": accuracy(new_images, new), "old_acc": accuracy(old_images, old)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from safetext.lora import finetune
    from safetext.lora.save import add_metrics
    from safetext.lora.train import ADAPTER
    from safetext.metrics.fidelity import ssim
    from safetext.testbed import load

    started = time.time()
    new, old = eval_specs(args)
    tmp = Path(tempfile.mkdtemp(prefix="finetune_bench_"))
    data = make_training_data(tmp / "data", args.train_images, args.seed, args.replay)
    train_prompts = {json.loads(line)["text"] for line in (data / "metadata.jsonl").read_text().splitlines()}
    assert not train_prompts & {s.prompt() for s in new + old}, "an evaluation prompt is also a training prompt"

    base_pipe = load()
    base = evaluate(base_pipe, new, old, args.seed)
    unet_params = sum(p.numel() for p in base_pipe.unet.parameters())
    rows: list[dict[str, Any]] = [{"method": "base model", "new_acc": base["new_acc"], "old_acc": base["old_acc"]}]
    grid_images: dict[str, list[Any]] = {"base": base["new_images"]}
    for method, label in METHODS:
        pipe = load()
        result = finetune(
            pipe, data, "auto", rank=args.rank, steps=args.steps, lr=args.lr, batch=args.batch, seed=args.seed,
            method=method, out=tmp / method, checkpoint_every=args.steps, progress=False, base_model="testbed",
        )
        scores = evaluate(pipe, new, old, args.seed)
        fidelity = [ssim(a, b) for a, b in zip(scores["old_images"], base["old_images"])]
        pipe.set_adapters([ADAPTER], adapter_weights=[0.0])
        check = [s.prompt() for s in old[:2]]
        off = generate(pipe, check, args.seed + 10_000)
        bitwise = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(off, base["old_images"][:2]))
        rows.append({
            "method": label,
            "modules": len(result.targets.modules),
            "trainable_params": result.trainable_params,
            "trainable_share": result.trainable_share,
            "new_acc": scores["new_acc"],
            "old_acc": scores["old_acc"],
            "ssim_old_mean": float(np.mean(fidelity)),
            "scale0_bitwise": bitwise,
            "steps_per_s": result.stats.steps_per_s,
            "train_seconds": result.stats.seconds,
            "final_loss": float(np.mean(result.stats.losses[-20:])),
        })
        add_metrics(tmp / method, {
            "new words read (held-out prompts)": f"{100 * scores['new_acc']:.1f}% (base {100 * base['new_acc']:.1f}%)",
            "old words read (held-out prompts)": f"{100 * scores['old_acc']:.1f}% (base {100 * base['old_acc']:.1f}%)",
            "SSIM of old-word images vs base": f"{rows[-1]['ssim_old_mean']:.3f}",
        })
        grid_images[label] = scores["new_images"]
        print(json.dumps(rows[-1]), flush=True)
    grid(grid_images, new, args.out / "finetune.png")
    return {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "new_words": list(NEW_WORDS),
        "eval_new_prompts": [s.prompt() for s in new],
        "eval_old_prompts": [s.prompt() for s in old],
        "unet_params": unet_params,
        "rows": rows,
        "wall_seconds": time.time() - started,
        "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)",
    }


def grid(images: dict[str, list[Any]], specs: list[Any], path: Path, count: int = 6) -> None:
    from safetext.viz import image_grid

    step = max(1, len(specs) // count)
    picks = list(range(0, len(specs), step))[:count]
    rows = [(specs[i].word, [images[label][i] for label in images]) for i in picks]
    image_grid(rows, list(images), path, tile_width=256, scale=1)


def markdown(report: dict[str, Any]) -> str:
    s = report["settings"]
    lines = [
        "# Fine-tuning new words into the testbed: LoRA on the localized layers vs baselines",
        "",
        f"`python benchmarks/finetune_bench.py --steps {s['steps']}` (batch {s['batch']}, lr {s['lr']}, rank {s['rank']}, "
        f"{s['train_images']} training signs of the new words + {s.get('replay', 0)} of old words, seed {s['seed']}); {report['machine']}; whole run {report['wall_seconds'] / 60:.1f} min.",
        "",
        f"New words (not in the testbed's vocabulary): {', '.join(report['new_words'])}. "
        f"Held-out prompts: {len(report['eval_new_prompts'])} of the new words, {len(report['eval_old_prompts'])} of old words, "
        "on the held-out template and colour/shape pairs; training prompts use the training split only.",
        "",
        "| method | modules | trainable params (share of U-Net) | new words read | old words read | SSIM old prompts vs base | scale 0 == base bitwise | steps/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        if "trainable_params" not in r:
            lines.append(f"| {r['method']} | - | - | {100 * r['new_acc']:.1f}% | {100 * r['old_acc']:.1f}% | 1.000 | - | - |")
            continue
        lines.append(
            f"| {r['method']} | {r['modules']} | {r['trainable_params']:,} ({100 * r['trainable_share']:.3f}%) | "
            f"{100 * r['new_acc']:.1f}% | {100 * r['old_acc']:.1f}% | {r['ssim_old_mean']:.3f} | "
            f"{'yes' if r['scale0_bitwise'] else 'no'} | {r['steps_per_s']:.2f} |"
        )
    rows = {r["method"]: r for r in report["rows"]}
    loc, every = rows["localized"], rows["all attention"]
    goals = [
        ("localized >= all attention on new words", loc["new_acc"] >= every["new_acc"]),
        ("localized <= 1% of the U-Net's parameters", loc["trainable_share"] <= 0.01),
        ("localized fidelity (SSIM) better than all attention", loc["ssim_old_mean"] > every["ssim_old_mean"]),
    ]
    lines += ["", "Goals:", ""] + [f"- {name}: {'met' if ok else 'missed'}" for name, ok in goals]
    lines += ["", "`finetune.png`: base model and each method on held-out prompts of the new words (same seeds).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report = run(args)
    (args.out / "finetune.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "finetune.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
