"""The LoRA training loop, its checkpoints and exact resume.

Everything a step draws depends on ``(seed, step)`` alone: the examples of step k are
positions ``k*batch ..`` of a stream of per-epoch permutations seeded by the epoch, and the
noise and timesteps come from a CPU generator seeded by the step. So a run resumed from a
checkpoint (LoRA weights, optimizer state, step, RNG states, data order) takes the same
steps as one that never stopped, and one process, one GPU or ``accelerate launch`` on
several (each takes its share of every global batch) follow the same trajectory.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from safetext.errors import FinetuneError
from safetext.lora.objective import Objective, denoise

ADAPTER = "safetext_lora"  # adapter name on the denoiser while training
CHECKPOINT = "checkpoint.pt"
SEED_STRIDE = 1_000_003  # > any run's step or epoch count: two seeds never share a draw
ORDER_OFFSET = 500_000  # keeps the data-order seeds apart from the noise seeds


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings of one run."""

    steps: int = 200
    lr: float = 1e-4
    batch: int = 4
    seed: int = 0
    checkpoint_every: int = 50
    grad_clip: float = 1.0


@dataclass
class TrainStats:
    """What a run did: steps (resumed ones included), the wall time of this process's steps, losses."""

    steps: int
    start_step: int
    seconds: float
    losses: list[float] = field(default_factory=list)

    @property
    def steps_per_s(self) -> float:
        done = self.steps - self.start_step
        return done / self.seconds if self.seconds > 0 else 0.0


def _draw_seed(seed: int, offset: int) -> int:
    """A generator seed for draw ``offset`` of run ``seed``, inside the range torch takes."""
    return (seed * SEED_STRIDE + offset) % 2**63


def batch_indices(seed: int, n: int, batch: int, step: int) -> list[int]:
    """The example indices of ``step``: ``batch`` consecutive positions of the epoch-permutation stream."""
    out, orders = [], {}
    for position in range(step * batch, (step + 1) * batch):
        epoch, offset = divmod(position, n)
        if epoch not in orders:
            orders[epoch] = torch.randperm(n, generator=torch.Generator().manual_seed(_draw_seed(seed, ORDER_OFFSET + epoch)))
        out.append(int(orders[epoch][offset]))
    return out


def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _data_order(settings: TrainSettings, n: int) -> dict[str, int]:
    return {"seed": settings.seed, "examples": n, "batch": settings.batch}


def save_checkpoint(path: Path, denoiser: Any, optimizer: Any, step: int, order: dict[str, int]) -> None:
    """LoRA weights, optimizer state, step, RNG states and the data order, in one file."""
    from peft import get_peft_model_state_dict

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "lora": get_peft_model_state_dict(denoiser, adapter_name=ADAPTER),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "rng": _rng_states(),
        "data_order": order,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, denoiser: Any, optimizer: Any, order: dict[str, int]) -> int:
    """Restore a checkpoint into the run; its step. Refuses one made with other data or settings."""
    from peft import set_peft_model_state_dict

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as exc:
        raise FinetuneError(f"{path}: cannot read the checkpoint: {exc}") from None
    if state.get("data_order") != order:
        raise FinetuneError(
            f"{path}: checkpoint was made with seed/examples/batch {state.get('data_order')}, this run has {order}; "
            "resume with the same data, --seed and --batch"
        )
    set_peft_model_state_dict(denoiser, state["lora"], adapter_name=ADAPTER)
    optimizer.load_state_dict(state["optimizer"])
    _set_rng_states(state["rng"])
    return int(state["step"])


def train_lora(
    pipe: Any,
    component: str,
    latents: torch.Tensor,
    cond: dict[str, torch.Tensor],
    settings: TrainSettings,
    run_dir: Path | None,
    resume: bool = False,
    progress: bool = True,
    accelerator: Any = None,
) -> TrainStats:
    """Train the LoRA already added to the denoiser as adapter :data:`ADAPTER` (see the module doc)."""
    from accelerate import Accelerator

    accelerator = accelerator or Accelerator()
    denoiser = getattr(pipe, component)
    objective = Objective.from_scheduler(pipe.scheduler)
    params = [p for p in denoiser.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    n, world, rank = latents.shape[0], accelerator.num_processes, accelerator.process_index
    if settings.batch % world:
        raise FinetuneError(f"--batch {settings.batch} must be a multiple of the {world} processes")
    order = _data_order(settings, n)
    ckpt = run_dir / CHECKPOINT if run_dir is not None else None
    start = 0
    if resume:
        if ckpt is None or not ckpt.is_file():
            raise FinetuneError(f"--resume: no checkpoint at {ckpt}")
        start = load_checkpoint(ckpt, denoiser, optimizer, order)
    model, optimizer = accelerator.prepare(denoiser, optimizer)
    model.train()
    stats = TrainStats(steps=start, start_step=start, seconds=0.0)
    bar = _progress(progress and accelerator.is_main_process)
    task = bar.add_task("finetune", total=settings.steps, completed=start)
    device = accelerator.device
    t0 = time.perf_counter()
    with bar:
        for step in range(start, settings.steps):
            index = batch_indices(settings.seed, n, settings.batch, step)
            generator = torch.Generator().manual_seed(_draw_seed(settings.seed, step))
            x0 = latents[index].to(device)
            x_t, t, target = objective.sample(x0, generator)
            local = slice(rank * settings.batch // world, (rank + 1) * settings.batch // world)
            step_cond = {k: v[index][local].to(device) for k, v in cond.items()}
            pred = denoise(model, component, x_t[local], t[local], step_cond)
            loss = torch.nn.functional.mse_loss(pred.float(), target[local].float())
            accelerator.backward(loss)
            if settings.grad_clip:
                accelerator.clip_grad_norm_(params, settings.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            stats.steps = step + 1
            stats.losses.append(float(loss.detach()))
            bar.update(task, completed=step + 1, description=f"finetune loss {stats.losses[-1]:.4f}")
            done = step + 1 == settings.steps or (settings.checkpoint_every and (step + 1) % settings.checkpoint_every == 0)
            if ckpt is not None and done:
                accelerator.wait_for_everyone()
                if accelerator.is_main_process:
                    save_checkpoint(ckpt, accelerator.unwrap_model(model), optimizer, step + 1, order)
    stats.seconds = time.perf_counter() - t0
    model.eval()
    return stats


def _progress(enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        disable=not enabled, transient=False,
    )
