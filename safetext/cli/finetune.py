"""``safetext finetune``: LoRA on the model's localized text layers only.

Checks the options, the preset file and every line and image of the data folder before the
model loads (one ``error: ...`` line and exit 2 otherwise), then runs
:func:`safetext.lora.finetune` and writes the adapter, its model card and checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from safetext.cli import app


@app.command("finetune")
def finetune_command(
    model: str = typer.Option(..., "--model", help="A shipped model ('testbed') or a local diffusers folder."),
    data: Path = typer.Option(..., "--data", help="Image folder with metadata.jsonl lines {\"file_name\": ..., \"text\": ...}."),
    preset: str = typer.Option("auto", "--preset", help="'auto', a packaged preset name or a preset YAML file: the layers to train."),
    rank: int = typer.Option(4, "--rank", min=1, help="LoRA rank."),
    alpha: Optional[float] = typer.Option(None, "--alpha", help="LoRA alpha (default: the rank, a scale of 1)."),
    steps: int = typer.Option(200, "--steps", min=1, help="Training steps in all (a resumed run's included)."),
    lr: float = typer.Option(1e-4, "--lr", help="AdamW learning rate (> 0)."),
    batch: int = typer.Option(4, "--batch", min=1, help="Images per step."),
    seed: int = typer.Option(0, "--seed", help="Seed of the LoRA init, data order and noise (0 .. 2**64-1)."),
    checkpoint_every: int = typer.Option(50, "--checkpoint-every", min=1, help="Steps between checkpoints."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the checkpoint in --out."),
    out: Path = typer.Option(Path("out/finetune"), "--out", help="Adapter folder: LoRA weights, README.md, checkpoints/."),
) -> None:
    """Fine-tune LoRA on the preset's attention layers; write an adapter pipe.load_lora_weights(--out) loads."""
    from safetext.cli import _validate
    from safetext.errors import FinetuneError

    _validate.seed(seed)
    if not lr > 0:
        raise _validate.ArgumentError(f"--lr: {lr} must be > 0")
    out = _validate.out_dir(out)
    _validate.preset(preset)
    _validate.model(model)
    if resume and not (out / "checkpoints" / "checkpoint.pt").is_file():
        raise _validate.ArgumentError(f"--resume: no checkpoint in {out / 'checkpoints'}")
    from safetext.lora.data import load_examples

    try:
        load_examples(data)  # every line and image; the size is checked once the model is known
    except FinetuneError as exc:
        raise _validate.ArgumentError(f"--data: {exc}") from None

    from safetext.lora import finetune
    from safetext.pipelines.load import load_pipeline

    pipe = load_pipeline(model)
    pipe.set_progress_bar_config(disable=True)
    result = finetune(
        pipe, data, preset, rank=rank, alpha=alpha, steps=steps, lr=lr, batch=batch, seed=seed,
        out=out, resume=resume, checkpoint_every=checkpoint_every, base_model=model,
    )
    t = result.targets
    typer.echo(f"trained LoRA rank {rank} on {len(t.modules)} module(s): {', '.join(t.modules)}")
    typer.echo(f"  {result.trainable_params:,} trainable parameters ({100 * result.trainable_share:.3f}% of the denoiser)")
    typer.echo(f"  steps {result.stats.start_step}->{result.stats.steps} at {result.stats.steps_per_s:.2f} steps/s")
    typer.echo(f"  adapter, README.md and checkpoints in {out}; load with pipe.load_lora_weights({str(out)!r})")
