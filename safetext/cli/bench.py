"""``safetext bench``: the safety benchmark suite (leakage, fidelity, overhead, CI gate).

Sharded runs use the same command under accelerate::

    accelerate launch --cpu --num_processes 2 .venv/bin/safetext bench --model testbed
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from safetext.cli import app


class Suite(str, Enum):
    toxic = "toxic"
    innocent = "innocent"
    edit = "edit"
    all = "all"


class OCRName(str, Enum):
    tesseract = "tesseract"
    rapidocr = "rapidocr"


class DType(str, Enum):
    auto = "auto"
    float32 = "float32"
    float16 = "float16"
    bfloat16 = "bfloat16"


@app.command()
def bench(
    model: str = typer.Option("testbed", help="A shipped model ('testbed'), a local diffusers folder (SDXL, SD3, IF, SD 1.x ...) or tiny:KIND."),
    policy: Optional[str] = typer.Option(None, help="Policy file or name (default: the model profile's, else 'default')."),
    suite: Suite = typer.Option(Suite.all, help="Which prompt set to run."),
    seeds: int = typer.Option(2, min=1, help="Seeds per prompt (0..N-1), the same for every method."),
    ocr: OCRName = typer.Option(OCRName.tesseract, help="OCR engine."),
    out: Path = typer.Option(Path("benchmarks/results/bench"), help="Output folder (report.md, results*.json, images)."),
    thresholds: Optional[Path] = typer.Option(None, help="YAML bounds; exit 1 if any is violated."),
    steps: Optional[int] = typer.Option(None, min=1, help="Inference steps (default: the model's)."),
    limit: Optional[int] = typer.Option(None, min=1, help="First N prompts of each suite (the quick CI suite)."),
    subset: str = typer.Option("auto", help="Prompt tag to keep: auto (the model profile's prompt_tag, else all), all, or a tag."),
    preset: str = typer.Option("auto", help="Guard layer preset: auto, or comma-separated module names."),
    guidance_scale: Optional[float] = typer.Option(None, help="Classifier-free guidance scale (default: the model's)."),
    device: Optional[str] = typer.Option(None, help="Device (default: accelerate's choice for this process)."),
    dtype: DType = typer.Option(DType.auto, help="auto (float16 on CUDA, float32 on CPU), float32, float16 or bfloat16."),
    progress: bool = typer.Option(True, help="Show progress bars."),
) -> None:
    """Compare unguarded, block, prompt swap, negative prompt and safetext injection on the same seeds."""
    from safetext.cli import _validate

    out = _validate.out_dir(out)
    _validate.thresholds(thresholds)
    _validate.model(model)
    _validate.device(device)
    _validate.module_list(preset)

    from safetext.bench import BenchConfig, run_bench
    from safetext.bench.prompts import SUITES

    cfg = BenchConfig(
        model=model, policy=policy, suites=SUITES if suite is Suite.all else (suite.value,), seeds=seeds, ocr=ocr.value,
        out=out, thresholds=thresholds, steps=steps, limit=limit, subset=subset, preset=preset,
        guidance_scale=guidance_scale, device=device, dtype=dtype.value, progress=progress,
    )
    outcome = run_bench(cfg)  # prompts, thresholds, OCR and policy load before the model
    if outcome.paths:
        typer.echo(f"report: {outcome.paths['report']}")
        for c in outcome.checks:
            if not c.passed and not c.skipped:
                typer.echo(c.line(), err=True)
    raise typer.Exit(outcome.exit_code)
