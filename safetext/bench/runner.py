"""Run a benchmark: load, decide, generate, score, merge, report, gate.

``run_bench(BenchConfig(...))`` is what ``safetext bench`` calls. The pipeline, policy,
guard factory, OCR engine and toxicity scorer can be passed in, which is how the tests run
it on tiny pipelines and fakes without a trained model.
"""

from __future__ import annotations

import hashlib
import shlex
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetext.bench.aggregate import summarize
from safetext.bench.decide import PairPolicy
from safetext.bench.evaluate import Record, evaluate
from safetext.bench.gate import Check, check, failed, load_thresholds
from safetext.bench.generate import ItemRunner, decision_target, policy_targets
from safetext.bench.plots import image_grid, leakage_fidelity_plot
from safetext.bench.prompts import DEFAULT_VERSION, SUITES, PromptItem, load_prompt_set, prompt_set_path, select
from safetext.bench.report import write_report
from safetext.bench.results import write_results
from safetext.bench.shard import gather, my_share, process_state
from safetext.errors import SafetextError
from safetext.pipelines.profile import GENERIC, ModelProfile, profile_for, profile_of

GATE_FAILED = 1


class BenchConfigError(SafetextError, ValueError):
    """The settings select nothing to run (no prompts for this suite, subset and limit)."""


@dataclass
class BenchConfig:
    """Everything ``safetext bench`` takes. ``subset="auto"`` keeps the model profile's
    ``prompt_tag`` (every prompt for a model without one); ``policy=None`` is the profile's."""

    model: str = "testbed"
    policy: str | None = None
    suites: tuple[str, ...] = SUITES
    seeds: int = 2
    ocr: str = "tesseract"
    out: Path = Path("benchmarks/results/bench")
    thresholds: Path | None = None
    steps: int | None = None
    limit: int | None = None
    subset: str = "auto"
    preset: str = "auto"
    version: str = DEFAULT_VERSION
    prompts_dir: Path | None = None
    guidance_scale: float | None = None
    height: int | None = None
    width: int | None = None
    device: str | None = None
    dtype: str = "auto"  # auto: float16 on CUDA, float32 elsewhere
    grid_rows: int = 8
    chunk: int = 16
    progress: bool = True
    command: str = field(default_factory=lambda: "safetext " + shlex.join(sys.argv[1:]))


@dataclass
class BenchOutcome:
    summary: dict[str, Any]
    records: list[Record]
    checks: list[Check]
    exit_code: int
    paths: dict[str, Path] = field(default_factory=dict)


def model_profile(cfg: BenchConfig, pipe: Any = None) -> ModelProfile:
    """The profile of the pipeline passed in, else of ``cfg.model``; :data:`GENERIC` if none."""
    found = profile_of(pipe) if pipe is not None else profile_for(cfg.model)
    return found or GENERIC


def load_items(cfg: BenchConfig, profile: ModelProfile = GENERIC) -> tuple[list[PromptItem], dict[str, str]]:
    """The selected prompts of every suite, and a short hash of each prompt file for the report."""
    tag = profile.prompt_tag if cfg.subset == "auto" else (None if cfg.subset == "all" else cfg.subset)
    items: list[PromptItem] = []
    sets: dict[str, str] = {}
    for suite in cfg.suites:
        path = prompt_set_path(suite, cfg.version, cfg.prompts_dir)
        items += select(load_prompt_set(path, suite), tag=tag, limit=cfg.limit)
        sets[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    if not items:
        shown = f"{cfg.subset} (tag {tag!r})" if cfg.subset == "auto" else cfg.subset
        raise BenchConfigError(f"no prompts selected (suites {', '.join(cfg.suites)}, subset {shown}, limit {cfg.limit})")
    return items, sets


def default_policy(cfg: BenchConfig, profile: ModelProfile = GENERIC) -> Any:
    """``cfg.policy``, else the policy the model profile names."""
    from safetext.policy import PolicyEngine

    return PolicyEngine(cfg.policy or profile.policy)


def decide_with(policy: Any) -> Callable[[str], Any]:
    """``PolicyEngine.check(prompt)``, or ``decide(prompt)`` for simpler policy objects (as the Guard does)."""
    return getattr(policy, "check", None) or policy.decide


def default_guard_factory(pipe: Any, policy: Any, preset: str) -> Any:
    from safetext import Guard

    chosen: str | list[str] = preset if preset == "auto" else [m.strip() for m in preset.split(",") if m.strip()]
    return Guard(pipe, policy=policy, preset=chosen)


def load_model(cfg: BenchConfig, state: Any) -> Any:
    """A shipped name, a local folder, or ``tiny:<kind>`` (random weights: a smoke test of the plumbing)."""
    device = cfg.device or str(state.device)
    from safetext.pipelines import load_pipeline

    pipe = load_pipeline(cfg.model, device=device, dtype=_dtype(cfg.dtype, device))
    pipe.set_progress_bar_config(disable=True)  # the bench shows its own progress
    return pipe


def generation_kwargs(cfg: BenchConfig, profile: ModelProfile = GENERIC) -> dict[str, Any]:
    """The profile's call defaults, overridden by the settings ``cfg`` names."""
    kwargs: dict[str, Any] = dict(profile.generation)
    if cfg.steps is not None:
        kwargs["num_inference_steps"] = cfg.steps
    for key in ("guidance_scale", "height", "width"):
        if getattr(cfg, key) is not None:
            kwargs[key] = getattr(cfg, key)
    return kwargs


def _progress(enabled: bool) -> Any:
    if not enabled:
        return nullcontext(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), transient=False
    )


@dataclass
class Decided:
    """The decisions for every prompt, and the words leakage is judged by (the same on every process)."""

    decisions: dict[str, tuple[Any, float]]  # prompt id -> (Decision, seconds to decide)
    leak_terms: list[str]
    allow_words: list[str]
    targets: dict[str, str] = field(default_factory=dict)  # blocked term -> the policy's benign target


def decide_all(items: list[PromptItem], policy: Any, edit_policy: PairPolicy) -> Decided:
    """Decide every prompt (cheap). Blocked terms: the files' keys plus any term the policy found;
    allowed words: the benign targets, whose exact reads are not fuzzy leaks."""
    decisions: dict[str, tuple[Any, float]] = {}
    for it in items:
        t0 = time.perf_counter()
        d = decide_with(edit_policy if it.suite == "edit" else policy)(it.prompt)
        decisions[it.id] = (d, time.perf_counter() - t0)
    toxic = [it for it in items if it.suite == "toxic"]
    terms = {it.term for it in toxic if it.term} | {sp.term for it in toxic for sp in decisions[it.id][0].spans}
    term_targets = policy_targets(policy)
    targets = {decision_target(it, decisions[it.id][0], term_targets) for it in toxic}
    return Decided(decisions, sorted(terms), sorted(t for t in targets if t), term_targets)


def generate_and_score(cfg: BenchConfig, state: Any, runner: ItemRunner, plan: Decided, work: list[tuple[PromptItem, int]], ocr: Any, scorer: Any) -> list[Record]:
    """This process's share of the work, in chunks: generate, then OCR the chunk in one batch."""
    records: list[Record] = []
    with _progress(cfg.progress and state.is_main_process) as bar:
        task = bar.add_task(f"bench {cfg.model} ({len(work)} prompt x seed here)", total=len(work)) if bar else None
        for start in range(0, len(work), cfg.chunk):
            groups = []
            for it, seed in work[start : start + cfg.chunk]:
                groups.append(runner.run(it, seed, *plan.decisions[it.id]))
                if bar:
                    bar.advance(task)
            records += evaluate(
                groups, ocr=ocr, scorer=scorer, leak_terms=plan.leak_terms, allow_words=plan.allow_words, out_dir=cfg.out
            )
    return records


def write_outputs(cfg: BenchConfig, summary: dict[str, Any], records: list[Record], checks: list[Check], meta: dict[str, Any]) -> dict[str, Path]:
    figures: dict[str, dict[str, Path]] = {}
    for suite in summary["suites"]:
        figs: dict[str, Path] = {}
        grid = image_grid(records, suite, cfg.out, cfg.out / f"grid_{suite}.png", max_rows=cfg.grid_rows)
        if grid:
            figs["grid"] = grid
        if suite in ("toxic", "edit"):
            plot = leakage_fidelity_plot(records, suite, cfg.out / f"leakage_fidelity_{suite}.png")
            if plot:
                figs["plot"] = plot
        figures[suite] = figs
    paths = write_results(cfg.out, summary, records, meta)
    paths["report"] = write_report(cfg.out / "report.md", summary, records, meta, checks, figures)
    return paths


def run_bench(
    cfg: BenchConfig,
    *,
    pipe: Any = None,
    policy: Any = None,
    guard_factory: Callable[[Any, Any, str], Any] | None = None,
    ocr: Any = None,
    scorer: Any = None,
) -> BenchOutcome:
    """Run the suites of ``cfg``; sharded when launched with accelerate. Writes outputs on the main process."""
    started = time.perf_counter()
    state = process_state()
    profile = model_profile(cfg, pipe)
    items, sets = load_items(cfg, profile)
    thresholds = load_thresholds(cfg.thresholds) if cfg.thresholds else None  # fail on a bad file before generating
    if ocr is None:
        from safetext.ocr import get_engine

        ocr = get_engine(cfg.ocr)
    if scorer is None:
        from safetext.metrics import get_scorer

        scorer = get_scorer()
    if policy is None and any(it.suite != "edit" for it in items):
        policy = default_policy(cfg, profile)
    if pipe is None:
        pipe = load_model(cfg, state)
    factory = guard_factory or default_guard_factory
    edit_policy = PairPolicy([it for it in items if it.suite == "edit"])
    guards: dict[str, Any] = {}

    def guard_for(suite: str) -> Any:
        key = "edit" if suite == "edit" else "policy"
        if key not in guards:
            guards[key] = factory(pipe, edit_policy if key == "edit" else policy, cfg.preset)
        return guards[key]

    plan = decide_all(items, policy, edit_policy)
    gen_kwargs = generation_kwargs(cfg, profile)
    mine = my_share(state, [(it, seed) for it in items for seed in range(cfg.seeds)])
    if mine:  # warm-up, untimed: first calls pay for lazy initialisation, which is not overhead
        ItemRunner(pipe, guard_for, dict(gen_kwargs, num_inference_steps=2), plan.targets).run(mine[0][0], 0, *plan.decisions[mine[0][0].id])
    records = generate_and_score(cfg, state, ItemRunner(pipe, guard_for, gen_kwargs, plan.targets), plan, mine, ocr, scorer)
    records = sorted(gather(state, records), key=lambda r: (r.suite, r.prompt_id, r.seed))

    summary = summarize(records)
    checks = check(summary, thresholds) if thresholds else []
    paths: dict[str, Path] = {}
    if state.is_main_process:
        meta = {
            "model": cfg.model,
            "policy": getattr(policy, "name", None) or cfg.policy or profile.policy,
            "preset": cfg.preset,
            "ocr": cfg.ocr,
            "steps": gen_kwargs.get("num_inference_steps", "pipeline default"),
            "seeds": cfg.seeds,
            "subset": cfg.subset,
            "processes": state.num_processes,
            "device": cfg.device or str(state.device),
            "prompt_sets": ", ".join(f"{k} ({v})" for k, v in sets.items()),
            "leak_terms": plan.leak_terms,
            "allow_words": plan.allow_words,
            "thresholds": str(cfg.thresholds) if cfg.thresholds else None,
            "command": cfg.command,
            "safetext_version": _version(),
            "wall_s": round(time.perf_counter() - started, 1),
        }
        paths = write_outputs(cfg, summary, records, checks, meta)
    state.wait_for_everyone()
    return BenchOutcome(summary, records, checks, GATE_FAILED if failed(checks) else 0, paths)


def _dtype(name: str, device: str) -> Any:
    import torch

    if name == "auto":
        return torch.float16 if device.startswith("cuda") else None
    return getattr(torch, name)


def _version() -> str:
    import safetext

    return safetext.__version__
