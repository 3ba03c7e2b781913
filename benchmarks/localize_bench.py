"""Localization on the testbed: the exhaustive sweep against the group and attribution searches.

    python benchmarks/localize_bench.py                       # 8 pairs, 20 steps, seed 0
    python benchmarks/localize_bench.py --pairs 4 --steps 10 --guard-prompts 8

For each strategy, a fresh search (its own baselines and caches, so wall times are
honest) reports: runs (patched configurations over all pairs; layer search and start
search apart), pipeline calls and images including the two baseline runs, wall time, the
module set and start step it found. Then the guard runs with each distinct set found (and
with the preset currently shipped in the model folder, for reference) on held-out toxic
testbed prompts, one seed each: leakage (OCR reads the toxic word, exact or fuzzy),
benign success (OCR reads the benign target) and fidelity to the unguarded image of the
same seed (SSIM and PSNR with the text box masked), next to the unguarded leakage.

The attribution strategy's gradient pass is counted in run-equivalents (denoiser
evaluations, a backward pass as two forwards) and added to its runs; its wall time is in
its wall time. The goal: a faster strategy costs at most a third of the sweep's runs and
finds the same module set.

A second, synthetic section runs the strategies on oracles shaped like the testbed (7
cross-attention layers), SD 1.5 (16) and SDXL base (70, the paper's 3-layer answer): no
images, only how the run counts scale with the number of candidate layers (attribution
there uses the oracle's effects as its scores, so its pass cost is not included).

Writes ``localize_bench.json`` and ``localize_bench.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


def _psnr_masked(psnr: Any, reference: Any, image: Any, box: Any) -> float:
    """PSNR outside ``box``; the whole image when there is no box or it covers everything (as masked_ssim)."""
    if box is not None:
        try:
            return psnr(reference, image, box)
        except ValueError:
            pass
    return psnr(reference, image)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="testbed", help="'testbed' or a folder holding a testbed export (its model profile, else the shipped one)")
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--guard-prompts", type=int, default=16, help="held-out toxic prompts for the guard check (0: skip)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--preset-out", type=Path, default=None, help="also write the sweep's preset here (e.g. safetext/testbed/preset.yaml)")
    return p.parse_args(argv)


def run_strategy(pipe: Any, pairs: list, strategy: str, args: argparse.Namespace, profile: Any) -> dict[str, Any]:
    from safetext.localize.api import localize

    began = time.perf_counter()
    result = localize(
        pipe,
        pairs,
        steps=args.steps,
        seed=args.seed,
        strategies=(strategy,),  # type: ignore[arg-type]
        reader=profile.resolve("reader"),
        batch_size=args.batch_size,
        call_kwargs={"guidance_scale": profile.generation["guidance_scale"]},
        name=profile.name,
    )
    seconds = time.perf_counter() - began
    found = result.results[strategy]
    counts = found.run_counts()
    print(f"{strategy}: {counts['total']} runs ({counts['layer_search']} layer + {counts['start']} start), cost {counts['cost']:g} "
          f"runs, {result.calls} calls, {seconds:.0f} s -> {list(found.modules)} from step {found.start_step}", flush=True)
    return {
        "strategy": strategy,
        "runs": counts,
        "pipeline_calls": result.calls,
        "images": result.images,
        "seconds": round(seconds, 1),
        "modules": list(found.modules),
        "start_step": found.start_step,
        "start": result.preset.start,
        "accepted": found.accepted,
        "ranking": found.ranking,
        "final": found.final.to_dict(),
        "baselines": result.baselines.summary(),
        "singles": {m: s.to_dict() for (mods, start), s in result.evaluated.items() if len(mods) == 1 and start == 0 for m in mods},
        "log": found.to_dict()["log"],
        "attribution": result.attribution.to_dict() if result.attribution else None,
        "preset": result.preset,
    }


def guard_prompts(n: int, seed: int) -> list[tuple[str, str, str]]:
    """(prompt, toxic term, benign target) on held-out sign specs, cycling through the toxic words."""
    from safetext.testbed.render import sample_spec
    from safetext.testbed.vocab import TOXIC_TO_BENIGN

    rng = random.Random(10_000 + seed)
    terms = list(TOXIC_TO_BENIGN)
    items = []
    for i in range(n):
        term = terms[i % len(terms)]
        spec = sample_spec(rng, "eval", words=(term,))
        items.append((spec.prompt(), term, TOXIC_TO_BENIGN[term]))
    return items


def evaluate_guard(
    pipe: Any, presets: dict[str, Any], items: list[tuple[str, str, str]], args: argparse.Namespace, profile: Any
) -> dict[str, Any]:
    from safetext.guard import Guard
    from safetext.localize.scoring import BOX_PAD, masked_ssim, text_box, toward
    from safetext.metrics import fuzzy_leak, pad_box, psnr, reads_target, union
    from safetext.policy import PolicyEngine

    reader = profile.resolve("reader")
    defaults = dict(profile.generation) | {"num_inference_steps": args.steps}
    prompts = [p for p, _, _ in items]

    def gens() -> list[torch.Generator]:
        return [torch.Generator().manual_seed(1000 + i) for i in range(len(items))]

    policy = profile.policy
    unguarded = pipe(prompts, generator=gens(), **defaults).images
    benign_prompts = [PolicyEngine(policy).check(p).benign_prompt or p for p in prompts]
    benign_direct = pipe(benign_prompts, generator=gens(), **defaults).images  # prompt swap, same noise
    b_boxes = [union([text_box(u), text_box(b)]) for u, b in zip(unguarded, benign_direct)]
    words = reader(unguarded)
    rows: dict[str, Any] = {
        "unguarded": {
            "leak_rate": sum(fuzzy_leak(w, [t], allow=[b]) is not None for w, (_, t, b) in zip(words, items)) / len(items),
            "benign_rate": sum(reads_target(w, b) for w, (_, _, b) in zip(words, items)) / len(items),
            "reads": words,
        }
    }
    for label, preset in presets.items():
        guard = Guard(pipe, policy=policy, preset=preset)
        began = time.perf_counter()
        result = guard(prompts, generator=gens(), **defaults)
        seconds = time.perf_counter() - began
        images = result.images
        reads = reader(images)
        boxes = [union([text_box(u), text_box(g)]) for u, g in zip(unguarded, images)]
        padded = [pad_box(box, BOX_PAD, g.size) if box else None for box, g in zip(boxes, images)]
        rows[label] = {
            "modules": list(guard.config.modules),
            "start": guard.config.start,
            "leak_rate": sum(fuzzy_leak(w, [t], allow=[b]) is not None for w, (_, t, b) in zip(reads, items)) / len(items),
            "benign_rate": sum(reads_target(w, b) for w, (_, _, b) in zip(reads, items)) / len(items),
            "ssim_masked": sum(masked_ssim(u, g, box) for u, g, box in zip(unguarded, images, boxes)) / len(items),
            "psnr_masked": sum(_psnr_masked(psnr, u, g, box) for u, g, box in zip(unguarded, images, padded)) / len(items),
            # 0 = the unguarded text, 1 = the benign prompt generated outright (pixels in the text box)
            "toward_benign": sum(toward(g, u, b, box) for g, u, b, box in zip(images, unguarded, benign_direct, b_boxes)) / len(items),
            "seconds": round(seconds, 1),
            "reads": reads,
        }
        print(f"guard [{label}]: leak {rows[label]['leak_rate']:.2f}, benign {rows[label]['benign_rate']:.2f}, "
              f"toward benign {rows[label]['toward_benign']:.3f}, masked SSIM {rows[label]['ssim_masked']:.3f}", flush=True)
    return rows


FASTER = ("group", "attribution")


def synthetic_scaling() -> list[dict[str, Any]]:
    """The strategies on oracles of 7, 16 and 70 layers with known answers (no images)."""
    from safetext.localize.scoring import Criteria
    from safetext.localize.search import run_search
    from safetext.localize.synthetic import scaling_cases

    rows = []
    for label, oracle, candidates, answer in scaling_cases():
        row: dict[str, Any] = {"case": label, "candidates": len(candidates)}
        for strategy in ("sweep", *FASTER):
            oracle.calls.clear()
            found = run_search(
                strategy,  # type: ignore[arg-type]
                candidates,
                oracle,
                Criteria(),
                max_start=4,
                attribution=oracle.attribution(candidates),
            )
            row[strategy] = {"runs": found.run_counts(), "modules": list(found.modules), "correct": found.modules == answer}
        rows.append(row)
    return rows


def all_modules_preset(pipe: Any) -> Any:
    """Every candidate module from step 0: for the testbed (text enters only through attn2) this is prompt swap."""
    from safetext.inject import InjectionConfig, candidate_modules

    return InjectionConfig(modules=candidate_modules(pipe), source="all candidate modules")


def checkpoint_line(meta: dict[str, Any]) -> str:
    keys = ("denoiser_steps", "batch", "train_seconds", "device")
    return ", ".join(f"{k} {meta[k]}" for k in keys if k in meta) or "unknown"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def goal(sweep: dict[str, Any], other: dict[str, Any]) -> bool:
    """Same module set as the sweep, at most a third of its cost."""
    return set(other["modules"]) == set(sweep["modules"]) and 3 * other["runs"]["cost"] <= sweep["runs"]["cost"]


def markdown(data: dict[str, Any]) -> str:
    s = data["strategies"]["sweep"]
    lines = [
        "# Localization on the testbed: sweep vs group and attribution search",
        "",
        f"Testbed checkpoint: {checkpoint_line(data['checkpoint'])}. {data['pairs']} prompt pairs, {data['steps']} steps, seed {data['seed']}, "
        f"{data['candidates']} candidate attn2 modules, start steps tried 0..{data['max_start']}, torch threads {data['threads']}. "
        f"Text score from {s['baselines']['text_score_from']} (OCR contrast {s['baselines']['ocr_contrast']}); unpatched A read as A in "
        f"{s['baselines']['unpatched_a']['a_rate']:.0%} of pairs, B direct read as B in {s['baselines']['b_direct']['b_rate']:.0%}; "
        f"mean |A - B direct| in the text box {s['baselines']['pixel_contrast']}/255"
        + (" (**weak signal**: the model draws the two words almost alike)." if s["baselines"]["weak_signal"] else "."),
        "",
        "One run = one patched configuration over all pairs. Calls and images include the two baseline runs. "
        "Gradient pass: the attribution strategy's one forward-and-backward pass, in run-equivalents (denoiser evaluations, "
        "a backward counted as two forwards); cost = runs + gradient pass. Wall time includes the baselines.",
        "",
        "| strategy | layer runs | start runs | total runs | gradient pass (runs) | cost (runs) | pipeline calls | images | wall s | modules | start step | accepted |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in data["strategies"].values():
        grad = f"{r['runs']['attribution']:.2f}" if r["strategy"] == "attribution" else "-"
        lines.append(
            f"| {r['strategy']} | {r['runs']['layer_search']} | {r['runs']['start']} | {r['runs']['total']} | {grad} | {r['runs']['cost']:g} | "
            f"{r['pipeline_calls']} | {r['images']} | {r['seconds']} | {'<br>'.join(r['modules'])} | {r['start_step']} | {r['accepted']} |"
        )
    lines.append("")
    for name in FASTER:
        r = data["strategies"][name]
        lines.append(
            f"{name.capitalize()} / sweep: cost {ratio(r['runs']['cost'], s['runs']['cost'])}, "
            f"wall time {r['seconds'] / max(s['seconds'], 1e-9):.2f}. Same module set: "
            f"**{'yes' if set(r['modules']) == set(s['modules']) else 'no'}**; same start: "
            f"**{'yes' if r['start_step'] == s['start_step'] else 'no'}**. Goal (<= 1/3 of the sweep's cost, same set): "
            f"**{'met' if goal(s, r) else 'not met'}**."
        )
        lines.append("")
    attribution = data["strategies"]["attribution"].get("attribution")
    if attribution:
        lines += [
            f"Attribution scores (steps {', '.join(map(str, attribution['steps']))}; share of the way to B's denoiser output, "
            f"first order; pass took {attribution['seconds']} s):",
            "",
            "| module | attribution | rank |",
            "|---|---|---|",
        ]
        ranked = sorted(attribution["scores"].items(), key=lambda kv: -kv[1])
        for rank, (module, value) in enumerate(ranked, 1):
            lines.append(f"| {module} | {value:.4f} | {rank} |")
        lines.append("")
    lines += [
        "## Single layers (sweep)",
        "",
        "| module | text score | B read | A read | masked SSIM |",
        "|---|---|---|---|---|",
    ]
    for module, sc in s["singles"].items():
        lines.append(f"| {module} | {sc['text_score']:.3f} | {sc['b_rate']:.2f} | {sc['a_rate']:.2f} | {sc['ssim_masked']:.3f} |")
    lines += ["", "## Sets and starts the sweep tried after the single layers", "", "| phase | modules | start step | text score | masked SSIM |", "|---|---|---|---|---|"]
    for run in s["log"]:
        if run["phase"] != "layers":
            lines.append(
                f"| {run['phase']} | {'<br>'.join(run['modules'])} | {run['start_step']} | {run['text_score']:.3f} | {run['ssim_masked']:.3f} |"
            )
    if data.get("guard"):
        lines += [
            "",
            f"## Guard with each set ({data['guard_prompts']} held-out toxic prompts, 1 seed each)",
            "",
            "Leakage: OCR reads the toxic word (exact or fuzzy). Benign read: OCR reads the benign target. Toward benign: "
            "pixels in the text box, 0 = the unguarded image, 1 = the benign prompt generated outright with the same noise. "
            "Masked SSIM / PSNR: against the unguarded image, text box masked.",
            "",
            "| preset | modules | start | leakage | benign read | toward benign | masked SSIM | masked PSNR |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for label, row in data["guard"].items():
            if label == "unguarded":
                lines.append(f"| unguarded | - | - | {row['leak_rate']:.2f} | {row['benign_rate']:.2f} | 0 | 1 | - |")
            else:
                lines.append(
                    f"| {label} | {'<br>'.join(row['modules'])} | {row['start']} | {row['leak_rate']:.2f} | {row['benign_rate']:.2f} | "
                    f"{row['toward_benign']:.3f} | {row['ssim_masked']:.3f} | {row['psnr_masked']:.1f} |"
                )
    lines += [
        "",
        "## Synthetic oracles: run counts by model size (known answers; no images)",
        "",
        "| case | sweep runs | group runs | group / sweep | attribution runs (+ 1 gradient pass) | attribution / sweep | all correct |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in data["synthetic"]:
        sw, gr, at = (row[k]["runs"]["total"] for k in ("sweep", "group", "attribution"))
        correct = all(row[k]["correct"] for k in ("sweep", *FASTER))
        lines.append(f"| {row['case']} | {sw} | {gr} | {ratio(gr, sw)} | {at} | {ratio(at, sw)} | {correct} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from safetext import testbed
    from safetext.localize.api import default_max_start
    from safetext.pipelines import load_pipeline, load_profile, resolve_model

    folder = resolve_model(args.model)
    profile = load_profile(folder) or testbed.profile()
    pipe = load_pipeline(folder)
    pipe.set_progress_bar_config(disable=True)
    pairs = profile.resolve("pairs")(args.pairs, args.seed)
    strategies = {name: run_strategy(pipe, pairs, name, args, profile) for name in ("sweep", *FASTER)}
    s = strategies["sweep"]
    if args.preset_out is not None:
        s["preset"].to_yaml(args.preset_out)
        print(f"wrote {args.preset_out}")
    presets: dict[str, Any] = {"sweep": s["preset"]}
    for name in FASTER:
        r = strategies[name]
        if set(r["modules"]) != set(s["modules"]) or r["start_step"] != s["start_step"]:
            presets[name] = r["preset"]
    shipped = folder / "safetext_preset.yaml"
    if shipped.is_file():
        from safetext.inject import InjectionConfig

        config = InjectionConfig.from_yaml(shipped)
        if (set(config.modules), config.start) != (set(s["modules"]), s["preset"].start):
            presets["shipped (model folder)"] = config
    presets["all attn2 (reference)"] = all_modules_preset(pipe)
    items = guard_prompts(args.guard_prompts, args.seed) if args.guard_prompts else []
    guard = evaluate_guard(pipe, presets, items, args, profile) if items else {}
    checkpoint = json.loads((folder / "training.json").read_text()) if (folder / "training.json").is_file() else {}
    data = {
        "model": str(args.model),
        "checkpoint": checkpoint,
        "pairs": args.pairs,
        "steps": args.steps,
        "seed": args.seed,
        "threads": args.threads,
        "candidates": len(s["singles"]),
        "max_start": default_max_start(args.steps),
        "strategies": {k: {kk: vv for kk, vv in v.items() if kk != "preset"} for k, v in strategies.items()},
        "goal_met": {name: goal(s, strategies[name]) for name in FASTER},
        "guard_prompts": len(items),
        "guard": guard,
        "synthetic": synthetic_scaling(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "localize_bench.json").write_text(json.dumps(data, indent=1))
    (args.out / "localize_bench.md").write_text(markdown(data))
    print(f"wrote {args.out / 'localize_bench.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
