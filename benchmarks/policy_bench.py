"""Policy engine benchmark: safetext vs better-profanity vs alt-profanity-check, same prompts.

Measures per-prompt latency (p50/p99), throughput (prompts/s), recall on the obfuscated
toxic set and false-positive rate on the innocent sets. Writes JSON and Markdown to
``benchmarks/results/``. Run: ``.venv/bin/python benchmarks/policy_bench.py``.

The two hold-out sets (toxic and innocent) were written after the lexicon was tuned on the
main sets and were never tuned against, so their numbers are the honest estimate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "benchmarks" / "prompts"
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))


def load_sets() -> dict[str, list[str]]:
    toxic = [
        line.split("\t")[0]
        for line in (PROMPTS / "policy_toxic.tsv").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]

    def lines(name: str) -> list[str]:
        return [x for x in (PROMPTS / name).read_text(encoding="utf-8").splitlines() if x.strip()]

    return {
        "toxic": toxic,
        "toxic_holdout": lines("policy_toxic_holdout.txt"),
        "innocent": lines("policy_innocent.txt"),
        "innocent_holdout": lines("policy_innocent_holdout.txt"),
    }


def systems() -> dict[str, tuple[Callable[[], Callable[[str], bool]], int]]:
    """name -> (factory returning a flag(prompt) function, timing rounds)."""

    def safetext(policy: str) -> Callable[[], Callable[[str], bool]]:
        def make() -> Callable[[str], bool]:
            from safetext.policy import Action, PolicyEngine

            engine = PolicyEngine(policy)
            return lambda p: engine.check(p).action is not Action.ALLOW

        return make

    def better_profanity() -> Callable[[str], bool]:
        from better_profanity import profanity

        profanity.load_censor_words()
        return profanity.contains_profanity

    def profanity_check() -> Callable[[str], bool]:
        from profanity_check import predict_prob

        return lambda p: bool(predict_prob([p])[0] >= 0.5)

    return {
        "safetext (default policy)": (safetext("default"), 20),
        "safetext (strict: lexicon + profanity-check)": (safetext("strict"), 3),
        "better-profanity contains_profanity": (better_profanity, 1),
        "alt-profanity-check predict_prob>=0.5": (profanity_check, 3),
    }


def bench(make: Callable[[], Callable[[str], bool]], sets: dict[str, list[str]], rounds: int) -> dict[str, float]:
    t0 = time.perf_counter()
    flag = make()
    init_s = time.perf_counter() - t0
    flags = {name: [flag(p) for p in prompts] for name, prompts in sets.items()}  # also warms caches
    everything = [p for prompts in sets.values() for p in prompts]
    latencies: list[float] = []
    wall = 0.0
    for _ in range(rounds):
        start_round = time.perf_counter()
        for p in everything:
            t = time.perf_counter()
            flag(p)
            latencies.append(time.perf_counter() - t)
        wall += time.perf_counter() - start_round
    latencies.sort()
    return {
        "init_s": round(init_s, 3),
        "prompts_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1e3, 4),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1e3, 4),
        "recall_toxic": round(sum(flags["toxic"]) / len(flags["toxic"]), 4),
        "recall_toxic_holdout": round(sum(flags["toxic_holdout"]) / len(flags["toxic_holdout"]), 4),
        "fpr_innocent": round(sum(flags["innocent"]) / len(flags["innocent"]), 4),
        "fpr_innocent_holdout": round(sum(flags["innocent_holdout"]) / len(flags["innocent_holdout"]), 4),
        "timed_prompts": len(latencies),
    }


def import_time() -> float:
    """Seconds for a fresh interpreter to import safetext.policy (what an API gateway pays)."""
    code = "import time; t = time.perf_counter(); import safetext.policy; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return round(float(out.stdout.strip()), 3)


def long_prompt_latency() -> dict[str, float]:
    """Seconds to check one 100,000-character prompt (best of 3), per filler: the bad-input goal."""
    from safetext.policy import PolicyEngine

    engine = PolicyEngine("default")
    out = {}
    for filler in ("idiot ", "a quiet lake at dawn ", '"x ', "a" * 99):
        prompt = (filler * (100_000 // len(filler) + 1))[:100_000]
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            engine.check(prompt)
            best = min(best, time.perf_counter() - start)
        out[repr(filler[:12])] = round(best, 4)
    return out


def to_markdown(report: dict) -> str:
    rows = report["results"]
    base = rows["better-profanity contains_profanity"]["prompts_per_s"]
    lines = [
        "# Policy engine benchmark",
        "",
        f"Prompts: {report['sets']['toxic']} obfuscated toxic, {report['sets']['innocent']} innocent; hold-out sets "
        f"(never tuned against): {report['sets']['toxic_holdout']} toxic, {report['sets']['innocent_holdout']} innocent. "
        f"Machine: {report['machine']}. Latency is per prompt, one at a time, over all sets.",
        f"`import safetext.policy`: {report['import_safetext_policy_s']} s.",
        "One 100,000-character prompt (best of 3, s): "
        + ", ".join(f"{k}: {v}" for k, v in report["long_prompt_s"].items()) + ".",
        "",
        "| system | prompts/s | × better-profanity | p50 ms | p99 ms | recall | recall (hold-out) | FPR | FPR (hold-out) | init s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['prompts_per_s']:,.0f} | {r['prompts_per_s'] / base:,.1f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | "
            f"{r['recall_toxic']:.1%} | {r['recall_toxic_holdout']:.1%} | {r['fpr_innocent']:.1%} | "
            f"{r['fpr_innocent_holdout']:.1%} | {r['init_s']:.2f} |"
        )
    goals = report["goals"]
    lines += ["", "Goals (safetext default policy): " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in goals.items()), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    sets = load_sets()
    results = {}
    for name, (make, rounds) in systems().items():
        print(f"benchmarking {name} ...", flush=True)
        results[name] = bench(make, sets, rounds)
        print("  ", results[name], flush=True)
    ours = results["safetext (default policy)"]
    base = results["better-profanity contains_profanity"]
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "sets": {k: len(v) for k, v in sets.items()},
        "import_safetext_policy_s": import_time(),
        "long_prompt_s": long_prompt_latency(),
        "results": results,
        "goals": {
            "throughput >= 20x better-profanity": ours["prompts_per_s"] >= 20 * base["prompts_per_s"],
            "recall >= 99%": ours["recall_toxic"] >= 0.99,
            "recall >= 99% (hold-out)": ours["recall_toxic_holdout"] >= 0.99,
            "FPR <= 0.5% (innocent)": ours["fpr_innocent"] <= 0.005,
            "FPR <= 0.5% (hold-out)": ours["fpr_innocent_holdout"] <= 0.005,
        },
    }
    report["goals"]["100k-char prompt < 1 s"] = max(report["long_prompt_s"].values()) < 1.0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "policy_bench.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / "policy_bench.md").write_text(to_markdown(report), encoding="utf-8")
    print(to_markdown(report))


if __name__ == "__main__":
    main()
