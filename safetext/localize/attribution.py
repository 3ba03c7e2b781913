"""Attribution patching: rank every text-attention module with one gradient pass, not one run each.

Patching module *m* means feeding it B's text instead of A's. Interpolate instead:
``text_m(alpha_m) = text_A + alpha_m * (text_B - text_A)``, so ``alpha_m = 1`` is the patch
and ``alpha_m = 0`` the unpatched model. One forward and backward pass through the denoiser
at ``alpha = 0`` gives the derivative of a "moved towards B" metric with respect to every
``alpha_m`` at once: a first-order estimate of what patching each module alone would do
(Nanda's attribution patching; Kramar et al. 2024 use it the same way, to pick the
components worth patching for real).

* **Where.** On A's own denoising trajectory: the baseline run that generates A records
  the denoiser's inputs (the conditional half of the batch) at a few steps spread over the
  run, and the B-direct baseline records B's conditioning. No extra pipeline run.
* **Metric.** At each recorded step, the denoiser's output for A (``out_A``) and for B's
  conditioning on the same noisy latent (``out_B``) give the direction ``d = out_B - out_A``;
  the metric is ``<out(alpha), d>``, and a module's score is the sum of its gradients over
  steps and pairs divided by the sum of ``|d|^2``: the share of the way to B's output that
  the module alone covers, to first order. It works on latents of any prediction type.
* **Cost.** Per recorded step and pair: one forward for ``out_B``, one forward and one
  backward (counted as two forwards) with gradients. :attr:`Attribution.run_equivalents`
  converts that into patched runs (all steps, both guidance halves) so strategies compare
  in one unit.

The estimate only orders the modules; :mod:`~safetext.localize.search` still measures the
sets it proposes with real patched runs, and the criteria decide.

Supported: cross-attention (``attn2``) and IF's added-KV attention, whose text input is
the same tensor the injection engine swaps. SD3's joint attention updates its text stream
in every block, so it has no single "text input" to interpolate; use the group search.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from safetext.inject.sites import AttentionSite

#: Recorded denoiser inputs of one batch chunk: step -> (positional args, keyword args).
StepInputs = dict[int, tuple[tuple[Any, ...], dict[str, Any]]]
SUPPORTED_KINDS = ("cross", "added_kv")
DEFAULT_POINTS = 5


class AttributionUnsupported(ValueError):
    """The pipeline has text attention that attribution cannot interpolate (SD3 joint attention)."""


def attribution_steps(steps: int, points: int = DEFAULT_POINTS) -> list[int]:
    """``points`` steps spread evenly from the first to the last (all steps when there are fewer)."""
    if steps < 1 or points < 1:
        raise ValueError("steps and points must be >= 1")
    if points == 1:
        return [0]
    return sorted({round(i * (steps - 1) / (points - 1)) for i in range(points)})


def check_supported(sites: Sequence[AttentionSite]) -> None:
    kinds = sorted({s.kind for s in sites} - set(SUPPORTED_KINDS))
    if kinds:
        raise AttributionUnsupported(
            f"attribution search supports {' and '.join(SUPPORTED_KINDS)} attention, not {', '.join(kinds)}; "
            "use the group or sweep strategy"
        )


# ------------------------------------------------------------------ recording


def _cond_half(value: Any, rows: int) -> Any:
    """The conditional half of a classifier-free-guidance batch (``[uncond, cond]``), detached."""
    if isinstance(value, torch.Tensor):
        if value.dim() > 0 and value.shape[0] == 2 * rows:
            return value[rows:].detach().clone()
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _cond_half(v, rows) for k, v in value.items()}
    return value


@dataclass
class Recording:
    """What :func:`record_inputs` saw during one pipeline call."""

    inputs: StepInputs = field(default_factory=dict)
    calls: int = 0  # denoiser calls: one per step in the supported pipelines


@contextmanager
def record_inputs(denoiser: torch.nn.Module, steps: Sequence[int], rows: int) -> Iterator[Recording]:
    """Record the denoiser's inputs (conditional rows only) at ``steps`` of the coming pipeline call.

    A forward pre-hook, removed on exit; it reads the inputs and changes nothing. Each
    denoiser call counts as one step (the supported pipelines batch both guidance halves);
    the caller checks ``calls`` against the step count.
    """
    wanted = set(steps)
    recording = Recording()

    def hook(_module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        step = recording.calls
        recording.calls += 1
        if step in wanted:
            recording.inputs[step] = (tuple(_cond_half(a, rows) for a in args), _cond_half(dict(kwargs), rows))

    handle = denoiser.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield recording
    finally:
        handle.remove()


# ------------------------------------------------------------------ processors


class _RecordText:
    """Runs the original processor and keeps the text states the module saw."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.text: torch.Tensor | None = None

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        self.text = encoder_hidden_states
        return self.inner(attn, hidden_states, encoder_hidden_states, *args, **kwargs)


class _InterpolateText:
    """Runs the original processor on ``text + alpha * (benign - text)``."""

    def __init__(self, inner: Any, alpha: torch.Tensor, benign: torch.Tensor) -> None:
        self.inner = inner
        self.alpha = alpha
        self.benign = benign

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        if encoder_hidden_states is None:
            raise RuntimeError("attribution: a text attention module was called without text states")
        mixed = encoder_hidden_states + self.alpha.to(encoder_hidden_states.dtype) * (self.benign - encoder_hidden_states)
        return self.inner(attn, hidden_states, mixed, *args, **kwargs)


@contextmanager
def _processors(modules: dict[str, torch.nn.Module], make: Any) -> Iterator[dict[str, Any]]:
    """Install ``make(name, original)`` on each module for the block; the originals come back after."""
    originals = {name: module.processor for name, module in modules.items()}
    installed = {name: make(name, originals[name]) for name in modules}
    try:
        for name, module in modules.items():
            module.set_processor(installed[name])
        yield installed
    finally:
        for name, module in modules.items():
            module.set_processor(originals[name])


@contextmanager
def _frozen(module: torch.nn.Module) -> Iterator[None]:
    """No parameter gradients during the pass (only the interpolation weights need them)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


# ------------------------------------------------------------------ result


@dataclass
class Attribution:
    """First-order patching effects: one score per module (and per module and step)."""

    modules: list[str]
    steps: list[int]
    per_step: np.ndarray  # (modules, steps): gradient . d, summed over pairs
    norms: np.ndarray  # (steps,): |d|^2 summed over pairs
    row_passes: float  # denoiser row evaluations, a backward counted as two
    run_rows: float  # row evaluations of one patched run (all pairs, steps and guidance halves)
    seconds: float = 0.0

    @property
    def scores(self) -> dict[str, float]:
        """Share of the way from A's output to B's that patching each module alone covers (first order)."""
        total = float(self.norms.sum()) or 1.0
        return {m: float(v) / total for m, v in zip(self.modules, self.per_step.sum(axis=1))}

    @property
    def run_equivalents(self) -> float:
        """The pass's cost in patched pipeline runs."""
        return self.row_passes / self.run_rows if self.run_rows else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "scores": {m: round(v, 6) for m, v in self.scores.items()},
            "run_equivalents": round(self.run_equivalents, 3),
            "seconds": round(self.seconds, 2),
        }


# ------------------------------------------------------------------ the pass


def _denoise(denoiser: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    out = denoiser(*args, **{**kwargs, "return_dict": False})
    return (out[0] if isinstance(out, tuple) else out.sample).float()


def _with_latent(args_a: tuple[Any, ...], kwargs_a: dict[str, Any], args_b: tuple[Any, ...], kwargs_b: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """B's conditioning on A's noisy latent and timestep (positional, or ``sample``/``timestep`` keywords)."""
    if len(args_a) != len(args_b):
        raise RuntimeError("attribution: the A and B runs called the denoiser differently")
    kwargs = dict(kwargs_b)
    for key in ("sample", "hidden_states", "timestep"):
        if key in kwargs_a:
            kwargs[key] = kwargs_a[key]
    return tuple(args_a[:2]) + tuple(args_b[2:]), kwargs


Inputs = tuple[tuple[Any, ...], dict[str, Any]]


def _step(denoiser: torch.nn.Module, modules: dict[str, torch.nn.Module], a: Inputs, b: Inputs) -> tuple[np.ndarray, float, int]:
    """One recorded step: (gradient . d per module, |d|^2, rows), summed over the rows."""
    with torch.no_grad(), _processors(modules, lambda _n, inner: _RecordText(inner)) as seen:
        out_b = _denoise(denoiser, *b)
    benign = {name: proc.text.detach() for name, proc in seen.items() if proc.text is not None}
    if len(benign) != len(modules):
        raise RuntimeError("attribution: some text attention modules did not run")
    alpha = torch.zeros(len(modules), device=out_b.device, requires_grad=True)
    index = {name: i for i, name in enumerate(modules)}

    def interpolate(name: str, inner: Any) -> _InterpolateText:
        return _InterpolateText(inner, alpha[index[name]], benign[name])

    with torch.enable_grad(), _processors(modules, interpolate):
        out = _denoise(denoiser, *a)
        direction = (out_b - out).detach()
        (out * direction).sum().backward()
    assert alpha.grad is not None
    return alpha.grad.detach().cpu().double().numpy(), float((direction.double() ** 2).sum()), int(out.shape[0])


def _take(value: Any, start: int, stop: int, rows: int) -> Any:
    """Rows ``start:stop`` of every tensor whose first dimension is the batch (``rows``)."""
    if isinstance(value, torch.Tensor):
        return value[start:stop] if value.dim() > 0 and value.shape[0] == rows else value
    if isinstance(value, dict):
        return {k: _take(v, start, stop, rows) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_take(v, start, stop, rows) for v in value)
    return value


def _split_on_oom(denoiser: torch.nn.Module, modules: dict[str, torch.nn.Module], a: Inputs, b: Inputs) -> tuple[np.ndarray, float, int]:
    """:func:`_step`, halving the rows on out-of-memory (a backward pass needs far more memory than a run)."""
    try:
        return _step(denoiser, modules, a, b)
    except torch.OutOfMemoryError:
        rows = int(a[0][0].shape[0]) if a[0] else int(a[1]["sample"].shape[0])
        if rows < 2:
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = rows // 2
        parts = [
            _split_on_oom(denoiser, modules, _take(a, lo, hi, rows), _take(b, lo, hi, rows)) for lo, hi in ((0, half), (half, rows))
        ]
        return parts[0][0] + parts[1][0], parts[0][1] + parts[1][1], parts[0][2] + parts[1][2]


def attribute(
    denoiser: torch.nn.Module,
    sites: Sequence[AttentionSite],
    recorded_a: Sequence[StepInputs],
    recorded_b: Sequence[StepInputs],
    *,
    run_rows: float,
) -> Attribution:
    """Score every site from the recorded A and B inputs (one list entry per batch chunk)."""
    check_supported(sites)
    if len(recorded_a) != len(recorded_b) or not recorded_a:
        raise ValueError("attribution needs the A and B inputs of the same batch chunks")
    steps = sorted(recorded_a[0])
    if any(sorted(chunk) != steps for chunk in [*recorded_a, *recorded_b]):
        raise ValueError("attribution: the recorded steps differ between runs (did every call run all steps?)")
    began = time.perf_counter()
    names = [s.name for s in sites]
    modules = {name: denoiser.get_submodule(name) for name in names}
    per_step = np.zeros((len(names), len(steps)))
    norms = np.zeros(len(steps))
    row_passes = 0.0
    with _frozen(denoiser):
        for chunk_a, chunk_b in zip(recorded_a, recorded_b):
            for j, step in enumerate(steps):
                args_a, kwargs_a = chunk_a[step]
                args_b, kwargs_b = _with_latent(args_a, kwargs_a, *chunk_b[step])
                grad, norm, rows = _split_on_oom(denoiser, modules, (args_a, kwargs_a), (args_b, kwargs_b))
                per_step[:, j] += grad
                norms[j] += norm
                row_passes += 4 * rows
    return Attribution(
        modules=names,
        steps=steps,
        per_step=per_step,
        norms=norms,
        row_passes=row_passes,
        run_rows=run_rows,
        seconds=time.perf_counter() - began,
    )
