"""``finetune(pipe, data, preset=...)``: LoRA on the localized text layers only.

The paper (Staniszewski et al., ICLR 2025) shows that a few attention layers control the
text a diffusion model renders, and that LoRA on those alone improves text rendering while
the rest of the model's output stays as it was. This function adds a peft ``LoraConfig`` to
exactly those layers through diffusers' ``add_adapter``, trains it with the model's own
objective (:mod:`safetext.lora.objective`) and saves it for ``pipe.load_lora_weights``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from safetext.errors import FinetuneError
from safetext.lora.data import Example, load_examples
from safetext.lora.targets import Targets, select_targets
from safetext.lora.train import ADAPTER, TrainSettings, TrainStats, train_lora

CHECKPOINT_DIR = "checkpoints"
LOSS_WINDOW = 20  # steps whose mean loss the model card reports


@dataclass
class FinetuneResult:
    """The targets trained, the run's statistics, the adapter's folder (None: not saved) and name on the denoiser."""

    targets: Targets
    stats: TrainStats
    out: Path | None
    adapter: str
    trainable_params: int
    denoiser_params: int

    @property
    def trainable_share(self) -> float:
        return self.trainable_params / self.denoiser_params


def finetune(
    pipe: Any,
    data: str | Path | list[Example],
    preset: Any = "auto",
    *,
    rank: int = 4,
    alpha: float | None = None,
    steps: int = 200,
    lr: float = 1e-4,
    batch: int = 4,
    seed: int = 0,
    out: str | Path | None = None,
    resume: bool = False,
    method: str = "localized",
    checkpoint_every: int = 50,
    progress: bool = True,
    base_model: str | None = None,
    accelerator: Any = None,
) -> FinetuneResult:
    """Train LoRA (``rank``, ``alpha``; alpha defaults to the rank) on the preset's modules of ``pipe``.

    ``data`` is an image folder with ``metadata.jsonl`` (checked before anything is trained,
    see :mod:`safetext.lora.data`). ``preset`` is anything ``Guard`` takes. ``method``
    ``"all"`` or ``"random"`` trains the baselines of :mod:`safetext.lora.targets`.
    With ``out`` the adapter, its model card and a checkpoint every ``checkpoint_every``
    steps are written there; ``resume=True`` continues from that checkpoint. The adapter
    stays active on ``pipe`` afterwards (named :data:`~safetext.lora.train.ADAPTER`).
    """
    import torch
    from accelerate import Accelerator
    from PIL import Image

    try:
        from peft import LoraConfig
    except ImportError:
        raise FinetuneError("safetext finetune needs peft: pip install 'safetext-t2i[lora]'") from None

    from safetext.lora.objective import Objective, check_supported, encode_images, encode_texts, image_size
    from safetext.lora.save import save_adapter, write_card
    from safetext.inject.presets import resolve_preset
    from safetext.inject.sites import denoiser_of

    if resume and out is None:
        raise FinetuneError("resume=True needs out=, the folder holding the checkpoint")
    if rank < 1 or steps < 1 or batch < 1 or lr <= 0:
        raise FinetuneError(f"rank, steps and batch must be >= 1 and lr > 0 (got {rank}, {steps}, {batch}, {lr})")
    check_supported(pipe)
    component, denoiser = denoiser_of(pipe)
    if ADAPTER in (getattr(denoiser, "peft_config", None) or {}):
        raise FinetuneError(f"the pipeline's {component} already has a {ADAPTER!r} adapter; fine-tune a freshly loaded pipeline")
    size = image_size(pipe)
    examples = data if isinstance(data, list) else load_examples(data, size)
    config = resolve_preset(pipe, preset)
    targets = select_targets(pipe, list(config.modules), method, rank, seed)
    objective = Objective.from_scheduler(pipe.scheduler)  # refuses an unknown prediction type before any work
    accelerator = accelerator or Accelerator()
    pipe.to(accelerator.device)

    images = []
    for example in examples:
        with Image.open(example.image) as image:
            images.append(image.convert("RGB"))
    latents = encode_images(pipe, images)
    cond = encode_texts(pipe, [e.text for e in examples], size)

    alpha = float(rank if alpha is None else alpha)
    denoiser.requires_grad_(False)
    torch.manual_seed(seed)  # LoRA A matrices are drawn from torch's global generator
    lora = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=True, target_modules=list(targets.layers))
    denoiser.add_adapter(lora, adapter_name=ADAPTER)
    trainable = {n: p.numel() for n, p in denoiser.named_parameters() if p.requires_grad}
    if any("lora_" not in n for n in trainable) or sum(trainable.values()) != targets.lora_params:
        raise FinetuneError("LoRA did not land on the selected layers only")  # a peft/diffusers mismatch, never user data

    out_dir = Path(out).expanduser() if out is not None else None
    settings = TrainSettings(steps=steps, lr=lr, batch=batch, seed=seed, checkpoint_every=checkpoint_every)
    run_dir = out_dir / CHECKPOINT_DIR if out_dir is not None else None
    stats = train_lora(pipe, component, latents, cond, settings, run_dir, resume, progress, accelerator)
    denoiser_params = sum(p.numel() for n, p in denoiser.named_parameters() if "lora_" not in n)
    result = FinetuneResult(targets, stats, out_dir, ADAPTER, targets.lora_params, denoiser_params)
    if out_dir is not None and accelerator.is_main_process:
        save_adapter(pipe, component, ADAPTER, out_dir)
        window = stats.losses[-LOSS_WINDOW:]
        facts = {
            "base_model": base_model or _model_name(pipe),
            "component": component,
            "preset": config.name or str(preset),
            "data": str(data) if not isinstance(data, list) else "in-memory examples",
            "examples": len(examples),
            "steps": stats.steps,
            "batch": batch,
            "lr": lr,
            "seed": seed,
            "rank": rank,
            "alpha": alpha,
            "objective": objective.kind,
            "targets": {**asdict(targets), "projections": _projections(targets)},
            "trainable_share": result.trainable_share,
            "loss_window": len(window),
            "final_loss": sum(window) / len(window) if window else float("nan"),
        }
        write_card(out_dir, facts)
    return result


def _projections(targets: Targets) -> list[str]:
    found: list[str] = []
    for layer in targets.layers:
        module = next(m for m in targets.modules if layer.startswith(m + "."))
        suffix = layer[len(module) + 1 :]
        if suffix not in found:
            found.append(suffix)
    return found


def _model_name(pipe: Any) -> str:
    name = getattr(pipe, "name_or_path", None) or pipe.config.get("_name_or_path")
    return str(name) if name else type(pipe).__name__
