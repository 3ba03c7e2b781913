"""Text editing on the testbed: ``safetext.edit`` against generating the edited prompt outright.

    python benchmarks/edit_bench.py                     # 64 + 32 pairs, 10-15 min on one core
    python benchmarks/edit_bench.py --per-word 1 --heldout-per-word 0   # 32 pairs, quicker

Pairs (old -> new): the 32 non-toxic testbed words (``INNOCENT`` and ``BENIGN`` of
``safetext/testbed/vocab.py``; toxic words are left out, an edit showcase should not write
them). Each word is the old word of ``--per-word`` pairs; its new word is drawn from the
same pool, at normalised edit distance > 0.5 (clearly different words, as in the bench's
edit suite) and distinct across that word's pairs. Every prompt is the testbed's own
phrasing of the old word (``SignSpec.prompt``): the main split on training templates and
colour/shape pairs, the held-out split on the held-out template and pairs the model never
saw. Everything is drawn from ``random.Random(--seed)``; pair ``i`` generates with seed
``--seed + i`` (held-out pairs: ``--seed + 10000 + i``).

Per pair, three images with the same noise: the original (the old word's prompt),
**safetext edit** (``safetext.edit``: the original prompt, the edited prompt's K/V in the
model's shipped localized layers) and **prompt swap** (the edited prompt generated
outright). Each is read with the model profile's OCR reader. Measured: the new word read
exactly; the old word still read (exact, and fuzzy: normalised edit distance <= 0.25);
SSIM against the original outside the union of both images' text boxes, as ``safetext
bench`` measures it (confident OCR word boxes, else the ink estimate, padded 2 px:
``safetext.editing.measure``). Nothing is tuned: the preset is the model folder's
(``preset="auto"``), the step count and guidance the model profile's.

Targets, on the main split: new word read >= 90%, old word (fuzzy) <= 2%, masked SSIM >=
0.95 and above prompt swap's. The held-out split is reported beside them, not judged.

Writes ``edit_bench.json``, ``edit_bench.md`` and ``edit_bench.png`` (the first pairs:
original, edit, prompt swap) under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
SPLITS = {"main": "train", "heldout": "eval"}
HELDOUT_SEED_OFFSET = 10000
TARGETS = {"new_word_read": 0.90, "old_word_fuzzy": 0.02, "ssim_outside_text": 0.95}
METHODS = ("edit", "prompt_swap")
LABELS = {"edit": "safetext edit", "prompt_swap": "prompt swap"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="testbed", help="'testbed' or a folder holding a testbed export")
    p.add_argument("--per-word", type=int, default=2, help="main-split pairs per old word (32 words)")
    p.add_argument("--heldout-per-word", type=int, default=1, help="held-out-split pairs per old word (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="inference steps (default: the model profile's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--grid-rows", type=int, default=8)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    return p.parse_args(argv)


def word_pool() -> list[str]:
    from safetext.testbed.vocab import BENIGN, INNOCENT

    return list(INNOCENT) + list(BENIGN)


def make_pairs(rng: random.Random, per_word: int, split: str) -> list[dict[str, str]]:
    """``per_word`` rounds over the pool; each old word gets new words it has not had yet."""
    from safetext.metrics import normalized_edit_distance
    from safetext.testbed.render import sample_spec

    pool = word_pool()
    used: dict[str, set[str]] = {w: set() for w in pool}
    pairs = []
    for _ in range(per_word):
        for old in pool:
            choices = [w for w in pool if w != old and w not in used[old] and normalized_edit_distance(old, w) > 0.5]
            new = rng.choice(choices)
            used[old].add(new)
            spec = sample_spec(rng, split, words=(old,))
            pairs.append({"old": old, "new": new, "prompt": spec.prompt()})
    return pairs


def run_pair(pipe: Any, pair: dict[str, str], seed: int, gen: dict[str, Any], reader: Any, engine: Any) -> tuple[dict[str, Any], list[Any]]:
    """The three images of one pair, read and compared with the original."""
    from safetext.editing import edit, plan_edit
    from safetext.editing.measure import judge_read, masked_ssim, text_boxes

    plan = plan_edit(pair["prompt"], pair["new"])
    if plan.old_text != pair["old"]:
        raise RuntimeError(f"the edit found {plan.old_text!r}, not {pair['old']!r}, in {pair['prompt']!r}")
    result = edit(pipe, pair["prompt"], pair["new"], seed=seed, **gen)
    start = time.perf_counter()
    swap = pipe(plan.edited_prompt, generator=torch.Generator().manual_seed(seed), **gen).images[0]
    swap_s = time.perf_counter() - start
    original, edited = result.original_image, result.edited_image
    reads = reader([original, edited, swap])
    boxes = text_boxes([original, edited, swap], engine)
    record: dict[str, Any] = {
        **pair,
        "seed": seed,
        "edited_prompt": plan.edited_prompt,
        "original": {"ocr": reads[0], **judge_read(reads[0], pair["old"], pair["new"]), "seconds": round(result.timings["original_s"], 3)},
    }
    for method, image, text, box, seconds in (
        ("edit", edited, reads[1], boxes[1], result.timings["edited_s"]),
        ("prompt_swap", swap, reads[2], boxes[2], swap_s),
    ):
        masked, box = masked_ssim(original, image, [boxes[0], box])
        record[method] = {
            "ocr": text,
            **judge_read(text, pair["old"], pair["new"]),
            "ssim_outside_text": round(masked, 4) if masked is not None else None,
            "text_box": box,
            "seconds": round(seconds, 3),
        }
    return record, [original, edited, swap]


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates with Wilson intervals and mean SSIM with normal intervals, per method; also on the
    pairs whose original showed the old word exactly (where an edit has something to remove)."""
    from safetext.metrics import Mean, Rate

    def block(rows: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"pairs": len(rows)}
        out["original_old_word_read"] = Rate(sum(r["original"]["old_text_read"] for r in rows), len(rows)).to_dict()
        for method in METHODS:
            cells = [r[method] for r in rows]
            ssims = [c["ssim_outside_text"] for c in cells if c["ssim_outside_text"] is not None]
            out[method] = {
                "new_word_read": Rate(sum(c["new_text_read"] for c in cells), len(cells)).to_dict(),
                "old_word_exact": Rate(sum(c["old_text_read"] for c in cells), len(cells)).to_dict(),
                "old_word_fuzzy": Rate(sum(c["old_text_fuzzy"] for c in cells), len(cells)).to_dict(),
                "ssim_outside_text": Mean.of(ssims).to_dict(),
                "ssim_unmeasured": len(cells) - len(ssims),  # the text box covered the whole image
                "seconds": Mean.of([c["seconds"] for c in cells]).to_dict(),
            }
        paired = [(r["edit"]["ssim_outside_text"], r["prompt_swap"]["ssim_outside_text"]) for r in rows]
        paired = [(a, b) for a, b in paired if a is not None and b is not None]
        out["ssim_edit_minus_swap"] = Mean.of([a - b for a, b in paired]).to_dict()
        out["ssim_edit_above_swap"] = Rate(sum(a > b for a, b in paired), len(paired)).to_dict()
        return out

    summary = block(records)
    shown = [r for r in records if r["original"]["old_text_read"]]
    summary["where_original_read_old_word"] = block(shown) if shown else None
    return summary


def judge(summary: dict[str, Any]) -> list[dict[str, Any]]:
    edit, swap = summary["edit"], summary["prompt_swap"]
    rows = [
        ("new word read", edit["new_word_read"]["value"], ">=", TARGETS["new_word_read"]),
        ("old word still read (fuzzy)", edit["old_word_fuzzy"]["value"], "<=", TARGETS["old_word_fuzzy"]),
        ("masked SSIM", edit["ssim_outside_text"]["value"], ">=", TARGETS["ssim_outside_text"]),
        ("masked SSIM above prompt swap", edit["ssim_outside_text"]["value"], ">", swap["ssim_outside_text"]["value"]),
    ]
    out = []
    for name, value, op, bound in rows:
        met = value is not None and bound is not None and (value >= bound if op == ">=" else value <= bound if op == "<=" else value > bound)
        out.append({"target": name, "value": value, "op": op, "bound": bound, "met": bool(met)})
    return out


def _pct(rate: dict[str, Any]) -> str:
    if rate["value"] is None:
        return "-"
    return f"{100 * rate['value']:.1f}% ({rate['k']}/{rate['n']}; CI {100 * rate['lo']:.0f}-{100 * rate['hi']:.0f}%)"


def _mean(mean: dict[str, Any], digits: int = 3) -> str:
    if mean["value"] is None:
        return "-"
    return f"{mean['value']:.{digits}f} ({mean['lo']:.{digits}f}-{mean['hi']:.{digits}f})"


def markdown(result: dict[str, Any]) -> str:
    meta = result["meta"]
    lines = [
        "# Text editing on the testbed: safetext edit vs prompt swap",
        "",
        f"Written by `benchmarks/edit_bench.py` ({meta['pairs']['main']} main + {meta['pairs']['heldout']} held-out pairs, "
        f"seed {meta['seed']}, {meta['generation']}, preset {meta['preset']!r} ({', '.join(meta['patched_layers'])}), "
        f"{meta['threads']} thread(s), {meta['wall_s']:.0f} s wall). Pairs and method: see the script's docstring.",
        "",
        "## Targets (main split)",
        "",
        "| target | measured | bound | met |",
        "|---|---|---|---|",
    ]
    for t in result["targets"]:
        value = "-" if t["value"] is None else (f"{100 * t['value']:.1f}%" if "read" in t["target"] else f"{t['value']:.4f}")
        bound = f"{100 * t['bound']:.0f}%" if "read" in t["target"] else f"{t['bound']:.4f}"
        lines.append(f"| {t['target']} | {value} | {t['op']} {bound} | {'yes' if t['met'] else '**no**'} |")
    for split, title in (("main", "Main split (training templates and colour/shape pairs)"), ("heldout", "Held-out split (held-out template and colour/shape pairs)")):
        summary = result["summary"].get(split)
        if not summary:
            continue
        lines += ["", f"## {title}", ""]
        lines += _summary_table(summary)
        sub = summary.get("where_original_read_old_word")
        if sub and sub["pairs"] < summary["pairs"]:
            lines += ["", f"Only the {sub['pairs']} pairs whose original shows the old word exactly:", ""]
            lines += _summary_table(sub)
    lines += [
        "",
        "Rates carry 95% Wilson intervals, means 95% normal intervals. *Read* = the profile's OCR reader "
        "(Tesseract, longest word) gives the word exactly, after case/accent normalisation; *fuzzy* = "
        "normalised edit distance <= 0.25 (an exact read of the new word is no fuzzy match). Masked SSIM "
        "compares with the original of the same seed outside the union of both images' text boxes (confident "
        "OCR word boxes, else the ink estimate; padded 2 px), as `safetext bench` does. *s / image*: wall time "
        "of one call, on whatever load the machine had.",
        "",
        f"![first pairs: original, safetext edit, prompt swap]({result['grid']})",
        "",
    ]
    return "\n".join(lines)


def _summary_table(summary: dict[str, Any]) -> list[str]:
    lines = [
        f"{summary['pairs']} pairs; the original shows the old word in {_pct(summary['original_old_word_read'])}.",
        "",
        "| method | new word read | old word read (exact) | old word read (fuzzy) | SSIM outside text | not measurable | s / image |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in METHODS:
        m = summary[method]
        lines.append(
            f"| {LABELS[method]} | {_pct(m['new_word_read'])} | {_pct(m['old_word_exact'])} | {_pct(m['old_word_fuzzy'])} "
            f"| {_mean(m['ssim_outside_text'])} | {m['ssim_unmeasured']} | {_mean(m['seconds'], 2)} |"
        )
    lines += [
        "",
        f"Paired: edit minus prompt swap, masked SSIM {_mean(summary['ssim_edit_minus_swap'], 4)}; "
        f"edit above swap in {_pct(summary['ssim_edit_above_swap'])} of pairs.",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from safetext.editing.measure import box_engine
    from safetext.inject.presets import resolve_preset
    from safetext.localize.scoring import get_reader
    from safetext.pipelines.load import load_pipeline
    from safetext.pipelines.profile import GENERIC, profile_for
    from safetext.viz import image_grid

    began = time.perf_counter()
    profile = profile_for(args.model) or GENERIC
    reader = get_reader(profile.reader)
    engine = box_engine(profile.reader)
    pipe = load_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    gen: dict[str, Any] = dict(profile.generation)
    if args.steps is not None:
        gen["num_inference_steps"] = args.steps
    config = resolve_preset(pipe, "auto")

    rng = random.Random(args.seed)
    splits = {"main": make_pairs(rng, args.per_word, SPLITS["main"])}
    if args.heldout_per_word > 0:
        splits["heldout"] = make_pairs(rng, args.heldout_per_word, SPLITS["heldout"])
    records: dict[str, list[dict[str, Any]]] = {}
    grid: list[tuple[str, list[Any]]] = []
    for split, pairs in splits.items():
        offset = 0 if split == "main" else HELDOUT_SEED_OFFSET
        records[split] = []
        for i, pair in enumerate(pairs):
            record, images = run_pair(pipe, pair, args.seed + offset + i, gen, reader, engine)
            records[split].append(record)
            if split == "main" and i < args.grid_rows:
                grid.append((f"{pair['old']} -> {pair['new']}: {pair['prompt']}", images))
            e, s = record["edit"], record["prompt_swap"]
            print(
                f"[{split} {i + 1}/{len(pairs)}] {pair['old']} -> {pair['new']}: original {record['original']['ocr'] or '-'}, "
                f"edit {e['ocr'] or '-'} ({e['ssim_outside_text']}), swap {s['ocr'] or '-'} ({s['ssim_outside_text']})",
                file=sys.stderr,
                flush=True,
            )

    args.out.mkdir(parents=True, exist_ok=True)
    grid_path = image_grid(grid, ["original", LABELS["edit"], LABELS["prompt_swap"]], args.out / "edit_bench.png")
    summary = {split: summarize(rows) for split, rows in records.items()}
    result = {
        "meta": {
            "model": args.model,
            "seed": args.seed,
            "generation": gen,
            "preset": config.name or config.source,
            "patched_layers": list(config.modules),
            "start_step": config.start_step(int(gen.get("num_inference_steps") or 0)) if gen.get("num_inference_steps") else None,
            "pairs": {split: len(rows) for split, rows in records.items()} | {"heldout": len(records.get("heldout", []))},
            "per_word": args.per_word,
            "heldout_per_word": args.heldout_per_word,
            "threads": args.threads,
            "wall_s": round(time.perf_counter() - began, 1),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "targets": judge(summary["main"]),
        "summary": summary,
        "grid": grid_path.name,
        "records": records,
    }
    (args.out / "edit_bench.json").write_text(json.dumps(result, indent=2))
    (args.out / "edit_bench.md").write_text(markdown(result))
    for t in result["targets"]:
        print(f"{t['target']}: {t['value']} {t['op']} {t['bound']}: {'met' if t['met'] else 'MISSED'}")
    print(f"wrote {args.out / 'edit_bench.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
