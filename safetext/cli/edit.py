"""``safetext edit``: change the text in a generated image, keep the rest, and measure both.

Plans the edit (which text changes, the edited prompt) and checks every option before the
model loads; then runs :func:`safetext.edit`, reads both images with the model profile's
OCR reader and measures SSIM outside the two images' text boxes
(:func:`safetext.editing.measure.measure_edit`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from safetext.cli import app

ORIGINAL, EDITED, SIDE_BY_SIDE, REPORT = "original.png", "edited.png", "side_by_side.png", "report.json"


def side_by_side(original: Any, edited: Any, label: str, path: Path) -> None:
    """The original and the edited image in one labelled row (small images upscaled 2x)."""
    from safetext.viz import image_grid

    scale = 2 if original.width <= 256 else 1
    image_grid([(label, [original, edited])], ["original", "edited"], path, tile_width=min(original.width, 768), scale=scale)


@app.command("edit")
def edit_command(
    prompt: str = typer.Option(..., "--prompt", help="The prompt of the image to edit."),
    text: str = typer.Option(..., "--text", help="The new text to render."),
    model: str = typer.Option(..., "--model", help="A shipped model ('testbed') or a local diffusers folder."),
    replace: Optional[str] = typer.Option(None, "--replace", help="The text to change, when the prompt renders several."),
    seed: int = typer.Option(0, "--seed", help="Seed both images share (0 .. 2**64-1)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Inference steps (default: the model profile's, else the pipeline's)."),
    preset: str = typer.Option("auto", "--preset", help="'auto', a packaged preset name or a preset YAML file."),
    out: Path = typer.Option(Path("out/edit"), "--out", help="Folder for the images and report.json."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON on stdout."),
    device: Optional[str] = typer.Option(None, "--device", help="torch device, e.g. cuda (default: cpu)."),
) -> None:
    """Regenerate the --prompt image with --text in place of its text; write both images, a side-by-side and report.json."""
    from safetext.cli import _validate
    from safetext.editing import plan_edit
    from safetext.pipelines.profile import GENERIC

    _validate.prompt(prompt, "--prompt")
    plan = plan_edit(prompt, text, replace=replace)  # EditError: one line, exit 2
    _validate.seed(seed)
    out = _validate.out_dir(out)
    _validate.preset(preset)
    profile = _validate.model(model) or GENERIC
    _validate.device(device)
    reader = _validate.reader("auto", profile)
    from safetext.editing.measure import box_engine, measure_edit

    engine = box_engine(profile.reader)

    from safetext.editing import edit
    from safetext.pipelines.load import load_pipeline

    pipe = load_pipeline(model, device=device)
    pipe.set_progress_bar_config(disable=True)
    kwargs: dict[str, Any] = dict(profile.generation)
    if steps is not None:
        kwargs["num_inference_steps"] = steps
    result = edit(pipe, prompt, text, replace=replace, preset=preset, seed=seed, **kwargs)

    out.mkdir(parents=True, exist_ok=True)
    original, edited = result.original_image, result.edited_image
    original.save(out / ORIGINAL)
    edited.save(out / EDITED)
    side_by_side(original, edited, f"{plan.old_text} -> {plan.new_text}", out / SIDE_BY_SIDE)
    report = {
        "model": model,
        "settings": kwargs,
        **result.to_dict(),
        "original_image": ORIGINAL,
        "edited_image": EDITED,
        "side_by_side": SIDE_BY_SIDE,
        **measure_edit(original, edited, reader, plan.old_text, plan.new_text, engine=engine),
    }
    (out / REPORT).write_text(json.dumps(report, indent=2))

    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(f"edited {plan.old_text!r} -> {plan.new_text!r}: {result.edited_prompt!r}")
    typer.echo(f"  OCR before: {report['ocr_before'] or '-'}   after: {report['ocr_after'] or '-'}")
    shown = report["ssim_outside_text"]
    typer.echo(f"  SSIM outside the text: {shown if shown is not None else '-'}")
    typer.echo(f"  patched layers: {', '.join(result.patched_layers)}")
    typer.echo(f"  {ORIGINAL}, {EDITED}, {SIDE_BY_SIDE} and {REPORT} in {out}")
