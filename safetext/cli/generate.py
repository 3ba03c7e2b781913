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
    model: str = typer.Option(..., "--model", help="A local diffusers folder, or a shipped model ('testbed')."),
    policy: str | None = typer.Option(None, "--policy", help="Policy file or shipped name (default: the model profile's, else 'default')."),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Inference steps (default: the model profile's, else the pipeline's)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the generator (0 .. 2**64-1)."),
    out: Path = typer.Option(Path("outputs"), "--out", help="Folder for the images and report.json."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    preset: str = typer.Option("auto", "--preset", help="'auto', a packaged preset name or a preset YAML file."),
    guidance_scale: float | None = typer.Option(None, "--guidance-scale", help="CFG scale (default: the model profile's, else the pipeline's)."),
    num_images: int = typer.Option(1, "--num-images", min=1, help="Images per prompt."),
    device: str | None = typer.Option(None, "--device", help="torch device, e.g. cuda (default: cpu)."),
    audit: str | None = typer.Option(
        None, "--audit", help="OCR audit of the output: off, flag, block, blur or regenerate (default: the policy's, else off)."
    ),
    log: Path | None = typer.Option(None, "--log", help="Append one JSON line per call to this file."),
    hash_prompts: bool = typer.Option(False, "--hash-prompts", help="Log salted hashes instead of prompts."),
) -> None:
    """Check PROMPT with the policy, generate with injection when it is rewritten, save images + report.json."""
    from safetext.cli import _validate
    from safetext.pipelines.profile import GENERIC

    _validate.prompt(prompt)
    _validate.seed(seed)
    out = _validate.out_dir(out)
    _validate.preset(preset)
    profile = _validate.model(model) or GENERIC
    _validate.device(device)
    engine = _validate.policy(policy or profile.policy)
    _validate.audit_mode(audit)
    if log is not None:
        log = _validate.out_file(log, "--log")

    import torch

    from safetext.guard import Guard, GuardError
    from safetext.pipelines.load import load_pipeline

    pipe = load_pipeline(model, device=device)
    pipe.set_progress_bar_config(disable=True)
    # a preset that does not fit, or a missing OCR engine: GuardError, exit 2
    guard = Guard(pipe, policy=engine, preset=preset, audit=audit, log=log, hash_prompts=hash_prompts or None)

    kwargs: dict[str, Any] = {"num_images_per_prompt": num_images}
    kwargs.update(profile.generation)
    if steps is not None:
        kwargs["num_inference_steps"] = steps
    if guidance_scale is not None:
        kwargs["guidance_scale"] = guidance_scale
    kwargs["generator"] = torch.Generator(device=device or "cpu").manual_seed(seed)

    try:
        result = guard(prompt, **kwargs)
    except GuardError as exc:  # failed while generating: not the user's mistake
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
        "policy": engine.name,
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
    if result.audit is not None:
        read = ", ".join(repr(text) for text in result.audit.read)
        typer.echo(f"  audit: read {read}; leaked: {result.audit.leaked}; action: {result.audit.action}")
    typer.echo(f"  {len(saved)} image(s) and report.json in {out}")
