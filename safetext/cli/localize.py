"""``safetext localize``: find a model's text-rendering attention modules and write a preset.

Torch and diffusers are imported inside the command, so ``safetext check`` stays fast.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from safetext.cli import app

if TYPE_CHECKING:  # pragma: no cover
    from safetext.pipelines.profile import ModelProfile


class StrategyName(str, Enum):
    auto = "auto"
    attribution = "attribution"
    group = "group"
    sweep = "sweep"
    both = "both"
    all = "all"


#: What each --strategy value runs (``both`` kept for scripts written before ``attribution``).
STRATEGY_SETS = {
    StrategyName.both: ("sweep", "group"),
    StrategyName.all: ("sweep", "group", "attribution"),
}


def _load(model: str, device: str | None, dtype: str) -> Any:
    """A pipeline from a local folder, a shipped name, or 'tiny:KIND' (random weights: a code-path check)."""
    import torch

    from safetext.pipelines.load import load_pipeline

    if dtype == "auto":
        dtype = "float16" if device and device.startswith("cuda") else "float32"
    return load_pipeline(model, device=device, dtype=getattr(torch, dtype))


def _preset_name(model: str, profile: ModelProfile | None) -> str:
    """The profile's model name, else one derived from the ``--model`` value."""
    if profile is not None and profile.name:
        return profile.name
    from safetext.pipelines.load import is_tiny_spec, resolve_model

    base = model.replace(":", "-") if is_tiny_spec(model) else resolve_model(model).resolve().name
    return base + "-localized"


def _call_kwargs(model: str, pipe: Any, profile: ModelProfile, guidance_scale: float | None) -> dict[str, Any]:
    """Call keywords for every localization run: the profile's generation defaults (the size,
    guidance and text length the model was made for; ``--steps`` sets the step count),
    pipeline quirks, then the user's."""
    from safetext.pipelines.load import is_tiny_spec

    kwargs: dict[str, Any] = {k: v for k, v in profile.generation.items() if k != "num_inference_steps"}
    if type(pipe).__name__.startswith("IF"):
        kwargs["clean_caption"] = False  # our templates are clean; cleaning needs bs4 + ftfy
    if is_tiny_spec(model) and type(pipe).__name__ == "StableDiffusion3Pipeline":
        kwargs["max_sequence_length"] = 32
    if guidance_scale is not None:
        kwargs["guidance_scale"] = guidance_scale
    return kwargs


@app.command("localize")
def localize_command(
    model: str = typer.Option(..., "--model", help="A local diffusers folder, a shipped model ('testbed'), or 'tiny:KIND' with a random-weight KIND (sd, sdxl, if, sd3, flux, flux2, flux2-dev, hidream, qwen-image, z-image, lumina2, pixart-sigma, sana; a code-path check)."),
    prompts: Optional[Path] = typer.Option(
        None, "--prompts", help="Pairs 'A<TAB>B', templates with {word}, 'words: ...' (default: the model profile's pairs)."
    ),
    pairs: int = typer.Option(8, "--pairs", min=1, help="Number of prompt pairs."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Inference steps (default: the model profile's, else the pipeline's)."),
    seed: int = typer.Option(0, "--seed", help="Seed for the pairs and the noise (pair i uses seed + i)."),
    out: Path = typer.Option(Path("out/localize/preset.yaml"), "--out", help="Where to write the preset file."),
    report: Optional[Path] = typer.Option(Path("out/localize"), "--report", help="Report folder (tables, plot, grid)."),
    strategy: StrategyName = typer.Option(
        StrategyName.auto,
        "--strategy",
        help="auto (attribution where the model supports it, else group), attribution (gradient ranking, fewest runs), "
        "group (group testing), sweep (the paper's exhaustive one), both (sweep+group) or all.",
    ),
    max_start: Optional[int] = typer.Option(None, "--max-start", min=0, help="Latest start step to try (default: first 20% of the steps)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Pairs per pipeline call."),
    guidance_scale: Optional[float] = typer.Option(None, "--guidance-scale", help="CFG scale (default: the model's)."),
    ocr: str = typer.Option(
        "auto", "--ocr", help="auto (the model profile's reader, else tesseract), tesseract, rapidocr, none, or 'pkg.module:function'."
    ),
    min_shift: float = typer.Option(0.8, "--min-shift", help="Text score a set must reach (0 = like A, 1 = like B direct)."),
    min_fidelity: float = typer.Option(0.8, "--min-fidelity", help="Masked SSIM to the unpatched image a set must keep."),
    min_b_read: float = typer.Option(
        0.9, "--min-b-read", help="Exact reads of B's word a set must keep, as a share of B direct's (OCR scoring only; 0 turns it off)."
    ),
    name: Optional[str] = typer.Option(None, "--name", help="Preset name (default: derived from the model)."),
    device: Optional[str] = typer.Option(None, "--device", help="torch device, e.g. cuda (default: cpu)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (float16 on CUDA, else float32), float32, float16, bfloat16."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    """Patch the text attention modules of a model to find those that control rendered text; write a preset."""
    from rich.console import Console

    from safetext.cli import _validate
    from safetext.localize import Criteria, read_prompt_file
    from safetext.localize.api import localize
    from safetext.localize.report import write_report
    from safetext.pipelines.profile import GENERIC

    _validate.seed(seed, count=pairs)
    out = _validate.out_file(out)
    if report is not None:
        report = _validate.out_dir(report, "--report")
    _validate.dtype(dtype)
    found = _validate.model(model)
    profile = found or GENERIC
    _validate.device(device)
    if prompts is not None:
        prompt_pairs = read_prompt_file(_validate.in_file(prompts, "--prompts"), pairs, seed)
    else:
        prompt_pairs = profile.resolve("pairs")(pairs, seed)
    reader = _validate.reader(ocr, profile)
    strategies = STRATEGY_SETS.get(strategy, (strategy.value,))
    preset_name = name or _preset_name(model, found)

    console = Console(stderr=True)
    pipe = _load(model, device, dtype)
    pipe.set_progress_bar_config(disable=True)
    if steps is None:
        from safetext.inject.encode import call_default

        default_steps = profile.generation.get("num_inference_steps") or call_default(pipe, "num_inference_steps")
        steps = int(default_steps or 30)

    with _StageBar(console, enabled=progress) as bar:  # a LocalizeError stops the bar, then reaches safetext.cli
        result = localize(
            pipe,
            prompt_pairs,
            steps=steps,
            seed=seed,
            strategies=strategies,
            criteria=Criteria(min_shift=min_shift, min_fidelity=min_fidelity, min_b_read=min_b_read),
            max_start=max_start,
            reader=reader,
            batch_size=batch_size,
            call_kwargs=_call_kwargs(model, pipe, profile, guidance_scale),
            name=preset_name,
            on_run=bar.on_run,
            on_stage=bar.on_stage,
        )

    out.parent.mkdir(parents=True, exist_ok=True)
    result.preset.to_yaml(out)
    paths = write_report(result, report, model=model) if report is not None else {}
    summary = {
        "preset": str(out),
        "modules": list(result.preset.modules),
        "start": result.preset.start,
        "start_step": result.chosen.start_step,
        "accepted": result.chosen.accepted,
        "runs": {name: res.run_counts() for name, res in result.results.items()},
        "agree": result.agree,
        "text_score_from": result.baselines.summary()["text_score_from"],
        "report": str(paths.get("markdown", "")) or None,
        "seconds": round(result.seconds, 1),
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    _print_summary(console, result, summary)


class _StageBar:
    """One rich progress bar per stage (baselines, then each strategy), advanced per patched run."""

    def __init__(self, console: Any, *, enabled: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        self.progress = Progress(*columns, console=console, disable=not enabled)
        self.tasks: list[Any] = []

    def __enter__(self) -> _StageBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._finish()
        self.progress.stop()

    def _finish(self) -> None:  # a finished stage shows as full
        if self.tasks:
            task = self.progress.tasks[-1]
            done = task.completed or task.total or 1
            self.progress.update(self.tasks[-1], total=done, completed=done)

    def on_stage(self, text: str, total: int | None) -> None:
        self._finish()
        self.tasks.append(self.progress.add_task(text, total=total))

    def on_run(self, strategy: str, run: Any) -> None:
        score, task = run.score, self.progress.tasks[-1]
        shown = score.modules[0] if len(score.modules) == 1 else f"{len(score.modules)} modules"
        self.progress.update(
            self.tasks[-1],
            advance=1,
            total=None if task.total is None else max(task.total, task.completed + 1),
            description=f"{strategy}: {run.phase} {shown} @ step {score.start_step}: text {score.text_score:.2f}",
        )


def _print_summary(console: Any, result: Any, summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(
        title="runs by strategy (a run = one patched configuration over all pairs; gradient pass and cost in runs)"
    )
    for column in ("strategy", "layer", "start", "gradient", "cost", "modules", "start step"):
        table.add_column(column, no_wrap=True)
    for name, res in result.results.items():
        counts = res.run_counts()
        table.add_row(
            name,
            str(counts["layer_search"]),
            str(counts["start"]),
            f"{counts['attribution']:.2f}" if name == "attribution" else "-",
            f"{counts['cost']:g}",
            str(len(res.modules)),
            str(res.start_step),
        )
    console.print(table)
    if result.baselines.weak_signal:
        console.print(
            "[yellow]weak signal: OCR cannot read the words and the model draws A and B almost alike "
            f"({result.baselines.pixel_contrast:.2f}/255 in the text box); the preset is not trustworthy[/yellow]"
        )
    if not result.chosen.accepted:
        console.print("[yellow]no set met the criteria; the preset holds the best prefix found[/yellow]")
    if result.agree is False:
        console.print("[yellow]the strategies disagree; the preset follows the sweep[/yellow]")
    typer.echo(f"preset: {summary['preset']} ({len(summary['modules'])} modules, start {summary['start']})")
    for module in summary["modules"]:
        typer.echo(f"  {module}")
    if summary["report"]:
        typer.echo(f"report: {summary['report']}")
