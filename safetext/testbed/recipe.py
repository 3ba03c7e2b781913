"""The recipe both testbed trainers share: learning-rate schedule, EMA, autocast, and their
run folder's checkpoint and log.

The U-Net testbed (``safetext.testbed.train``) and the FLUX-style one
(``safetext.testbed.dit.train``) are trained the same way, so their results compare.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch

WARMUP_STEPS = 200  # linear learning-rate warm-up of the denoiser phase (restarted by a fresh optimiser)
LR_FINAL = 0.1  # with a time budget the rate decays linearly to this share of the base rate by the deadline
EMA_DECAY = 0.999  # the exported weights average about the last 1,000 steps
EMA_WARMUP = 10  # the decay ramps as (1 + step) / (EMA_WARMUP + step), so early EMA follows the weights


def learning_rate(base: float, steps_done: int, elapsed: float, budget: float) -> float:
    """``base`` after a linear warm-up over ``steps_done``, decayed linearly to ``LR_FINAL`` of it by the budget (if finite)."""
    warm = min(1.0, (steps_done + 1) / WARMUP_STEPS)
    decay = 1.0 - (1.0 - LR_FINAL) * min(1.0, elapsed / budget) if math.isfinite(budget) else 1.0
    return base * warm * decay


@torch.no_grad()
def update_ema(pairs: Iterable[tuple[torch.nn.Module, torch.nn.Module]], step: int) -> None:
    """Move each EMA module towards its live module, with the warmed-up decay at ``step``."""
    decay = min(EMA_DECAY, (1 + step) / (EMA_WARMUP + step))
    for ema, live in pairs:
        torch._foreach_lerp_(list(ema.parameters()), [p.detach() for p in live.parameters()], 1 - decay)


def autocast(gpu: bool) -> AbstractContextManager[Any]:
    """bf16 autocast on a GPU; a disabled context on the CPU (float32)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if gpu else torch.autocast("cpu", enabled=False)


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` through a temporary file, so a kill mid-save never corrupts the checkpoint."""
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


class RunLog:
    """The run's ``log.jsonl``: one JSON object a line, flushed as written (a resume appends)."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a")

    def write(self, **row: Any) -> None:
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
