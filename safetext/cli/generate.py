"""``safetext generate``: one guarded generation from a local model, with a JSON report.

Torch and diffusers are imported inside the command, so ``safetext check`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from safetext.cli import app


@app.command("generate")
def generate(
    prompt: str = typer.Argument(..., help="The prompt to check and render."),
    model: str = typer.Option(..., "--model", help="A local diffusers folder, or 'testbed'."),
    policy: str = typer.Option("policies/default.yaml", "--policy", help="Policy file or shipped name."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Inference steps (default: the pipeline's)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generator."),
    out: Path = typer.Option(Path("outputs"), "--out", help="Folder for the images and report.json."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    preset: str = typer.Option("auto", "--preset", help="'auto', a packaged preset name or a preset YAML file."),
    guidance_scale: float | None = typer.Option(None, "--guidance-scale", help="CFG scale (default: the pipeline's)."),
    num_images: int = typer.Option(1, "--num-images", min=1, help="Images per prompt."),
    device: str | None = typer.Option(None, "--device", help="torch device, e.g. cuda (default: cpu)."),
) -> None:
    """Check PROMPT with the policy, generate with injection when it is rewritten, save images + report.json."""
    import torch

    from safetext.guard import Guard, GuardError
    from safetext.inject.config import PresetError
    from safetext.pipelines.load import PipelineLoadError, load_pipeline

    try:
        pipe = load_pipeline(model, device=device)
    except (PipelineLoadError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    pipe.set_progress_bar_config(disable=True)
    try:
        guard = Guard(pipe, policy=policy, preset=preset)
    except (PresetError, GuardError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc

    kwargs: dict[str, Any] = {"num_images_per_prompt": num_images}
    if model == "testbed":
        from safetext import testbed

        kwargs.update(testbed.generation_defaults())
    if steps is not None:
        kwargs["num_inference_steps"] = steps
    if guidance_scale is not None:
        kwargs["guidance_scale"] = guidance_scale
    kwargs["generator"] = torch.Generator(device=device or "cpu").manual_seed(seed)

    try:
        result = guard(prompt, **kwargs)
    except GuardError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc

    out.mkdir(parents=True, exist_ok=True)
    saved = []
    for i, image in enumerate(result.images or []):
        path = out / f"image_{i}.png"
        image.save(path)
        saved.append(str(path))
    report = {
        "prompt": prompt,
        "model": model,
        "seed": seed,
        "settings": {k: v for k, v in kwargs.items() if k != "generator"},
        "images": saved,
        **result.to_dict(),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))

    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    decision = result.decision
    typer.echo(f"{decision.action.value}: {prompt!r}")
    if decision.benign_prompt:
        typer.echo(f"  benign prompt: {decision.benign_prompt!r}")
    for reason in decision.reasons:
        typer.echo(f"  {reason}")
    if result.patched_layers:
        typer.echo(f"  patched layers: {', '.join(result.patched_layers)}")
    typer.echo(f"  {len(saved)} image(s) and report.json in {out}")
