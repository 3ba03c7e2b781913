"""Guard overhead: guarded (rewrite path) over unguarded wall time, side by side.

For each pipeline the same prompt, seed and step count run unguarded (``pipe(...)``) and
guarded with a policy that always rewrites (``Guard(...)(...)``: policy, benign encoding,
processor install, generation with injection, verification, restore). Repeats are
interleaved, alternating which goes first, so drift and thermal or load changes hit both
alike. Reported per pipeline: the median of the per-repeat wall-time ratios, the ratio
of the fastest runs (min/min, robust when other processes share the CPU), and the same
for process CPU time (unaffected by time spent descheduled; with one torch thread it is
the work done).

    python benchmarks/overhead.py                      # every tiny pipeline on the local CPU
    python benchmarks/overhead.py --model PATH --steps 30 --preset auto   # a real local model
    python benchmarks/overhead.py --mid                # also a compute-bound mid-size SD3

On the tiny builds a call's time is mostly per-module dispatch; ``--mid`` adds SD3 with a
384-wide, 4-block transformer on 1,024 image tokens (random weights, the tiny text encoders
and VAE), where block time is arithmetic, as at full size.

Goals: <= 1.03x for cross-attention and IF pipelines, <= 1.3x for double- and single-stream
transformers (SD3, FLUX) with the localized block in the first half. For those, the cost
model in ``benchmarks/cost_model.py`` predicts the ratio from the position of the last
localized block; the report puts prediction and measurement side by side.
Writes ``benchmarks/results/overhead.json`` and ``overhead.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from safetext import Guard
from safetext.policy.decision import Action, Decision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cost_model import predict_for  # noqa: E402  (the benchmark folder is not a package)

PROMPT = 'A sign that says "idiot"'
BENIGN = 'A sign that says "angel"'
# The paper's step counts per architecture (FLUX.2, not in the paper: its pipelines' default), and the
# goal per architecture family.
PAPER_STEPS = {"sd": 50, "sdxl": 50, "if": 50, "sd3": 28, "flux": 28, "qwen-image": 50, "z-image": 8, "lumina2": 30, "pixart-sigma": 20, "sana": 20, "flux2": 50, "flux2-dev": 50, "hidream": 50}
GOALS = {"cross": 1.03, "projected": 1.03, "added_kv": 1.03, "joint": 1.3, "single": 1.3, "stream": 1.3}
#: Call settings the tiny pipelines need to run small and offline.
TINY_EXTRA: dict[str, dict[str, Any]] = {
    "if": {"clean_caption": False},
    "sd3": {"max_sequence_length": 32},
    "flux": {"max_sequence_length": 16, "height": 32, "width": 32},
    "qwen-image": {"max_sequence_length": 64, "height": 32, "width": 32},
    "z-image": {"max_sequence_length": 96, "height": 32, "width": 32},
    "lumina2": {"max_sequence_length": 96, "height": 32, "width": 32},
    "pixart-sigma": {"clean_caption": False, "use_resolution_binning": False, "height": 64, "width": 64},
    "sana": {"use_resolution_binning": False, "height": 128, "width": 128},
    "flux2": {"max_sequence_length": 64, "height": 32, "width": 32},
    "flux2-dev": {"max_sequence_length": 64, "height": 32, "width": 32},
    "hidream": {"max_sequence_length": 32},  # 16x16 pixels: the tiny pipeline's fixed area
}
# Localized modules on the tiny pipelines, at about the paper's relative depth.
TINY_PRESETS = {
    "sd": ["up_blocks.1.attentions.0.transformer_blocks.0.attn2"],
    "sdxl": [f"up_blocks.0.attentions.1.transformer_blocks.{i}.attn2" for i in (0, 1)],
    "if": ["up_blocks.0.attentions.1"],
    "sd3": ["transformer_blocks.1.attn"],  # block 10 of 24 in SD3 medium ~ block 1 of 4 here
    "flux": ["transformer_blocks.1.attn"],  # block 2 of 4 (2 double, 2 single): the first half
    "qwen-image": ["transformer_blocks.0.attn"],  # block 1 of 2
    "z-image": ["layers.0.attention"],
    "lumina2": ["layers.0.attn"],
    "pixart-sigma": ["transformer_blocks.1.attn2"],
    "sana": ["transformer_blocks.1.attn2"],
    "flux2": ["transformer_blocks.1.attn"],  # block 2 of 4 (2 double, 2 single), as for FLUX.1
    "flux2-dev": ["transformer_blocks.1.attn"],
    "hidream": ["double_stream_blocks.1.block.attn1"],  # block 2 of 4 (2 double, 2 single)
}


def _uses_cfg(pipe: Any, extra: dict[str, Any]) -> bool:
    """Whether the call runs an unconditional half in the same denoiser batch (FLUX: no)."""
    return type(pipe).__name__ not in ("FluxPipeline", "QwenImagePipeline", "Lumina2Pipeline", "Flux2KleinPipeline", "Flux2Pipeline")  # a second call, if any


class AlwaysRewrite:
    """A policy that rewrites every prompt to one benign prompt (the path being measured)."""

    def __init__(self, benign: str) -> None:
        self.benign = benign

    def decide(self, prompt: str) -> Decision:
        return Decision(action=Action.REWRITE, prompt=prompt, benign_prompt=self.benign, risk=1.0)


def measure(
    name: str, pipe: Any, guard: Guard, steps: int, repeats: int, warmup: int, seed: int, extra: dict[str, Any]
) -> dict[str, Any]:
    """Interleaved timings of one pipeline, unguarded vs guarded, with identical arguments."""

    def _kwargs(pipe: Any, steps: int, seed: int) -> dict[str, Any]:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        return {"num_inference_steps": steps, "generator": generator, "output_type": "np", **extra}

    plain_s: list[float] = []
    guarded_s: list[float] = []
    plain_cpu: list[float] = []
    guarded_cpu: list[float] = []
    encode_s: list[float] = []

    def plain() -> None:
        start, cpu = time.perf_counter(), time.process_time()
        pipe(prompt=PROMPT, **_kwargs(pipe, steps, seed))  # by name: FLUX.2's first argument is `image`
        plain_s.append(time.perf_counter() - start)
        plain_cpu.append(time.process_time() - cpu)

    def guarded() -> None:
        start, cpu = time.perf_counter(), time.process_time()
        result = guard(PROMPT, **_kwargs(pipe, steps, seed))
        guarded_s.append(time.perf_counter() - start)
        guarded_cpu.append(time.process_time() - cpu)
        encode_s.append(result.timings["encode_s"])

    for _ in range(warmup):
        plain()
        guarded()
    for samples in (plain_s, guarded_s, plain_cpu, guarded_cpu, encode_s):
        samples.clear()
    for i in range(repeats):
        for run in (plain, guarded) if i % 2 == 0 else (guarded, plain):
            run()
    ratios = [g / p for g, p in zip(guarded_s, plain_s)]
    cpu_ratios = [g / p for g, p in zip(guarded_cpu, plain_cpu)]
    from safetext.inject.sites import attention_sites

    sites = attention_sites(pipe)
    kinds = {s.kind for s in sites if s.name in guard.config.modules}
    kind = kinds.pop() if len(kinds) == 1 else "stream"
    goal = GOALS[kind]
    ratio = statistics.median(ratios)
    predicted = predict_for(pipe, guard.config.modules, guidance=_uses_cfg(pipe, extra))
    return {
        "predicted_ratio": predicted,
        "name": name,
        "pipeline": type(pipe).__name__,
        "attention": kind,
        "patched_layers": guard.config.modules,
        "steps": steps,
        "repeats": repeats,
        "unguarded_median_s": statistics.median(plain_s),
        "guarded_median_s": statistics.median(guarded_s),
        "benign_encode_median_s": statistics.median(encode_s),
        "ratio_median": ratio,
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "ratio_of_fastest": min(guarded_s) / min(plain_s),
        "cpu_ratio_median": statistics.median(cpu_ratios),
        "cpu_ratio_of_fastest": min(guarded_cpu) / min(plain_cpu),
        "goal": goal,
        "meets_goal": ratio <= goal,
        "unguarded_s": plain_s,
        "guarded_s": guarded_s,
        "unguarded_cpu_s": plain_cpu,
        "guarded_cpu_s": guarded_cpu,
    }


def measure_step(pipe: Any, guard: Guard, extra: dict[str, Any], pairs: int = 100) -> dict[str, Any]:
    """One denoiser call (one step) with and without injection installed, fastest of many.

    The whole-run ratio on a busy CPU is noisy; this isolates the per-step cost of the
    hooks, the wrapped processors and (SD3) the benign rows, on the exact inputs of a real
    step. Plain and injected calls alternate one by one (installation and the once-per-call
    preparation are outside the timed call); the fastest of each is kept.
    """
    from safetext.inject import Injection, InjectionConfig, pipeline_lock
    from safetext.inject.sites import denoiser_of

    _, denoiser = denoiser_of(pipe)
    captured: dict[str, Any] = {}
    handle = denoiser.register_forward_pre_hook(
        lambda m, a, k: captured.setdefault("call", (a, dict(k))), with_kwargs=True
    )
    kwargs = {"num_inference_steps": 1, "output_type": "latent", **extra}
    try:
        pipe(prompt=PROMPT, generator=torch.Generator().manual_seed(0), **kwargs)
    finally:
        handle.remove()
    args, call_kwargs = captured["call"]
    config = InjectionConfig(modules=guard.config.modules, start=0.0)
    from safetext.inject.streams import layout_of
    from safetext.inject.unified import is_unified

    stream = layout_of(denoiser) is not None or is_unified(denoiser)

    def timed() -> float:
        start = time.perf_counter()
        denoiser(*args, **call_kwargs)
        return time.perf_counter() - start

    plain_best = injected_best = float("inf")
    with torch.no_grad(), pipeline_lock(pipe):
        for _ in range(pairs):
            plain_best = min(plain_best, timed())
            with Injection(pipe, config, [PROMPT], [BENIGN], kwargs):
                if stream:  # FLUX and later: one prompt call per step, so time the first one
                    injected_best = min(injected_best, timed())
                    continue
                denoiser(*args, **call_kwargs)  # first call of a generation prepares the mixed text
                injected_best = min(injected_best, timed())
    return {
        "step_unguarded_min_s": plain_best,
        "step_guarded_min_s": injected_best,
        "step_overhead_us": (injected_best - plain_best) * 1e6,
        "step_ratio": injected_best / plain_best,
    }


def measure_modules(pipe: Any, guard: Guard, extra: dict[str, Any], calls: int = 300) -> dict[str, Any]:
    """The localized modules alone, original vs injecting processor: the wrapper's own cost.

    Short calls (~0.1 ms) are timed far more precisely than whole steps on a shared CPU.
    Cross-attention and IF only: SD3's cost is the benign rows, seen in the step timing.
    """
    from safetext.inject import Injection, InjectionConfig, pipeline_lock
    from safetext.inject.sites import denoiser_of

    _, denoiser = denoiser_of(pipe)
    modules = {name: denoiser.get_submodule(name) for name in guard.config.modules}
    captured: dict[str, Any] = {}
    handles = [
        module.register_forward_pre_hook(
            lambda m, a, k, name=name: captured.setdefault(name, (a, dict(k))), with_kwargs=True
        )
        for name, module in modules.items()
    ]
    step_captured: dict[str, Any] = {}
    handles.append(
        denoiser.register_forward_pre_hook(lambda m, a, k: step_captured.setdefault("c", (a, dict(k))), with_kwargs=True)
    )
    kwargs = {"num_inference_steps": 1, "output_type": "latent", **extra}
    try:
        pipe(prompt=PROMPT, generator=torch.Generator().manual_seed(0), **kwargs)
    finally:
        for handle in handles:
            handle.remove()

    def fastest() -> float:
        total = 0.0
        for name, module in modules.items():
            args, call_kwargs = captured[name]
            best = float("inf")
            for _ in range(calls):
                start = time.perf_counter()
                module(*args, **call_kwargs)
                best = min(best, time.perf_counter() - start)
            total += best
        return total

    config = InjectionConfig(modules=guard.config.modules, start=0.0)
    with torch.no_grad(), pipeline_lock(pipe):
        plain = min(fastest(), fastest())
        with Injection(pipe, config, [PROMPT], [BENIGN], kwargs):
            denoiser(*step_captured["c"][0], **step_captured["c"][1])  # prepares this call's text states
            injected = min(fastest(), fastest())
    return {"modules_unguarded_min_s": plain, "modules_guarded_min_s": injected}


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        "# Guard overhead (rewrite path)",
        "",
        f"{env['machine']}, torch {env['torch']} with {env['torch_threads']} thread(s), {env['device']}. "
        f"{report.get('repeats', '')} interleaved repeats. Wall ratio = median of per-repeat guarded/unguarded "
        "(range in brackets); fastest = min guarded / min unguarded; CPU = the same on process CPU time.",
        "",
        "| pipeline | attention | steps | unguarded (s) | guarded (s) | benign encode (s) "
        "| wall ratio (range) | fastest | CPU ratio | CPU fastest | predicted | goal (on wall ratio) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        mark = "met" if r["meets_goal"] else "missed"
        lines.append(
            f"| {r['name']} | {r['attention']} | {r['steps']} | {r['unguarded_median_s']:.4f} | "
            f"{r['guarded_median_s']:.4f} | {r['benign_encode_median_s']:.4f} | "
            f"{r['ratio_median']:.3f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) | {r['ratio_of_fastest']:.3f}x | "
            f"{r['cpu_ratio_median']:.3f}x | {r['cpu_ratio_of_fastest']:.3f}x | "
            f"{_predicted(r)} | <= {r['goal']}x {mark} |"
        )
    lines += [
        "",
        "One denoiser step, fastest of many calls, with and without injection installed (start step 0):",
        "",
        "| pipeline | step unguarded (ms) | step guarded (ms) | overhead per step (us) | step ratio "
        "| localized modules alone, unguarded / guarded (us) |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        modules = (
            f"{1e6 * r['modules_unguarded_min_s']:.1f} / {1e6 * r['modules_guarded_min_s']:.1f}"
            if "modules_unguarded_min_s" in r
            else "n/a (needs the whole denoiser call)"
        )
        lines.append(
            f"| {r['name']} | {1e3 * r['step_unguarded_min_s']:.3f} | {1e3 * r['step_guarded_min_s']:.3f} | "
            f"{r['step_overhead_us']:.0f} | {r['step_ratio']:.3f}x | {modules} |"
        )
    return "\n".join(lines) + "\n"


def _predicted(r: dict[str, Any]) -> str:
    value = r.get("predicted_ratio")
    return "n/a" if value is None else f"{value:.3f}x"


def mid_sd3() -> Any:
    """The tiny SD3 pipeline with a 384-wide, 4-block transformer on 32x32 latents (1,024 tokens)."""
    from diffusers import SD3Transformer2DModel

    from safetext.pipelines import build_tiny_pipeline

    tiny = build_tiny_pipeline("sd3", seed=0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        transformer = SD3Transformer2DModel(
            sample_size=32, patch_size=1, in_channels=4, num_layers=4, attention_head_dim=64, num_attention_heads=6,
            joint_attention_dim=64, caption_projection_dim=384, pooled_projection_dim=64, out_channels=4,
            pos_embed_max_size=32,
        ).eval()
    # A new pipeline object, so that its default size comes from this transformer's sample_size.
    pipe = type(tiny)(**{**tiny.components, "transformer": transformer})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--kinds", default="sd,sdxl,if,sd3,flux,qwen-image,z-image,lumina2,pixart-sigma,sana,flux2,flux2-dev,hidream", help="tiny pipelines to measure ('' for none)"
    )
    parser.add_argument("--model", action="append", default=[], help="a local diffusers folder (repeatable)")
    parser.add_argument("--mid", action="store_true", help="also time the compute-bound mid-size SD3")
    parser.add_argument("--mid-steps", type=int, default=8, help="--mid steps")
    parser.add_argument("--preset", default="auto", help="preset for --model pipelines")
    parser.add_argument("--steps", type=int, default=None, help="tiny pipelines' steps (default: the paper's)")
    parser.add_argument("--model-steps", type=int, default=None, help="--model steps (default: the model profile's, else 30)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from safetext.pipelines import build_tiny_pipeline, load_pipeline, profile_of

    results = []
    for kind in [k for k in args.kinds.split(",") if k]:
        pipe = build_tiny_pipeline(kind).to(args.device)
        guard = Guard(pipe, policy=AlwaysRewrite(BENIGN), preset=TINY_PRESETS[kind])
        steps = args.steps or PAPER_STEPS[kind]
        extra = TINY_EXTRA.get(kind, {})
        results.append(measure(f"tiny-{kind}", pipe, guard, steps, args.repeats, args.warmup, args.seed, extra))
        results[-1].update(measure_step(pipe, guard, extra))
        if results[-1]["attention"] in ("cross", "added_kv"):  # modules callable alone
            results[-1].update(measure_modules(pipe, guard, extra))
        print(results[-1]["name"], f"{results[-1]['ratio_median']:.3f}x", f"step {results[-1]['step_ratio']:.3f}x", flush=True)
    if args.mid:
        pipe = mid_sd3().to(args.device)
        guard = Guard(pipe, policy=AlwaysRewrite(BENIGN), preset=TINY_PRESETS["sd3"])
        results.append(measure("mid-sd3", pipe, guard, args.mid_steps, args.repeats, args.warmup, args.seed, TINY_EXTRA["sd3"]))
        results[-1].update(measure_step(pipe, guard, TINY_EXTRA["sd3"], pairs=10))
        print(results[-1]["name"], f"{results[-1]['ratio_median']:.3f}x", f"step {results[-1]['step_ratio']:.3f}x", flush=True)
    for path in args.model:
        pipe = load_pipeline(path, device=args.device)
        pipe.set_progress_bar_config(disable=True)
        guard = Guard(pipe, policy=AlwaysRewrite(BENIGN), preset=args.preset)
        profile = profile_of(pipe)
        steps = args.model_steps or int((profile.generation.get("num_inference_steps") if profile else None) or 30)
        extra = {"clean_caption": False} if type(pipe).__name__.startswith("IF") else {}
        results.append(measure(Path(path).name, pipe, guard, steps, args.repeats, args.warmup, args.seed, extra))
        results[-1].update(measure_step(pipe, guard, extra, pairs=10))
        if results[-1]["attention"] in ("cross", "added_kv"):  # modules callable alone
            results[-1].update(measure_modules(pipe, guard, extra, calls=50))
        print(results[-1]["name"], f"{results[-1]['ratio_median']:.3f}x", f"step {results[-1]['step_ratio']:.3f}x", flush=True)

    report = {
        "environment": _env(args),
        "repeats": args.repeats,
        "prompt": PROMPT,
        "benign_prompt": BENIGN,
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "overhead.json").write_text(json.dumps(report, indent=2))
    (args.out / "overhead.md").write_text(markdown(report))
    print(f"wrote {args.out / 'overhead.json'} and {args.out / 'overhead.md'}")
    return 0


def _env(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "machine": f"{platform.machine()} ({os.cpu_count()} logical CPUs)",
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_threads": args.threads,
        "device": args.device,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


if __name__ == "__main__":
    raise SystemExit(main())
