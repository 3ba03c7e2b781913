"""The loop shared by the independent references of the paper's method (stream and unified DiTs).

Each family's reference writes its own attention processors (a ``record`` mode that caches
the benign prompt's text K/V, a ``substitute`` mode that swaps them in) and its own benign
pass. What they share is the driving loop, written here once and independently of
``safetext.inject``: before every denoiser call that belongs to the prompt (the first call
of a step; a second call in the same step is true CFG's negative prompt) from the start
step on, run the benign pass with the original call's current latents, then give the
localized modules the substituting processors; every other call gets the model's own.
:func:`compare` runs the guard's path, a family's reference and the plain pipeline on the
same call, and :func:`check_rows` holds them side by side; :func:`guard_rows` checks a
``Guard`` call end to end; :func:`hook_count` counts a module tree's hooks (injection must
leave none behind); :func:`refusal` is the message a ``Guard`` fails with when a module has
a processor the injector does not know.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
from _inject_helpers import INNOCENT, TOXIC, FakePolicy

from safetext import Guard, GuardError
from safetext.inject import InjectionConfig, run_injected

#: ``(args, kwargs)`` of a denoiser call -> None (the benign pass) or processors per module.
CallHook = Callable[[tuple[Any, ...], dict[str, Any]], Any]
#: Module name -> the benign pass's text keys and values there, at the current step.
KVCache = dict[str, tuple[torch.Tensor, torch.Tensor]]


class TextKV:
    """Base of a reference processor: in ``record`` mode :meth:`text_kv` caches module ``name``'s
    text K/V; in ``substitute`` mode it gives row ``rows[j]`` the cached row ``j``."""

    def __init__(self, name: str, cache: KVCache, mode: str, rows: list[int] | None = None) -> None:
        self.name, self.cache, self.mode, self.rows = name, cache, mode, rows or []

    def text_kv(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mode == "record":
            self.cache[self.name] = (k.clone(), v.clone())
            return k, v
        cached_k, cached_v = self.cache[self.name]
        k, v = k.clone(), v.clone()
        for j, row in enumerate(self.rows):
            k[row], v[row] = cached_k[j], cached_v[j]
        return k, v


def generators(n: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


@contextmanager
def swapped_processors(denoiser: torch.nn.Module, processors: dict[str, Any]) -> Iterator[None]:
    """``processors`` on their modules inside the block, the previous ones after it."""
    saved = {name: denoiser.get_submodule(name).processor for name in processors}
    for name, processor in processors.items():
        denoiser.get_submodule(name).set_processor(processor)
    try:
        yield
    finally:
        for name, processor in saved.items():
            denoiser.get_submodule(name).set_processor(processor)


def _timestep(args: tuple[Any, ...], call: dict[str, Any]) -> float:
    t = call.get("timestep", call.get("timesteps"))  # HiDream names it ``timesteps``
    if t is None:
        t = args[1]  # Z-Image: (latents, t, captions)
    return float(t.flatten()[0])


def run_reference(
    pipe: Any,
    prompts: list[str],
    modules: list[str],
    start: int,
    *,
    benign_pass: CallHook,
    substitutes: Callable[[tuple[Any, ...], dict[str, Any]], dict[str, Any]],
    own_processor: Callable[[str], Any],
    **kwargs: Any,
) -> np.ndarray:
    """``pipe(prompt=prompts, **kwargs).images`` with the paper's K/V substitution at ``modules``.

    Before each prompt call at step ``start`` or later, ``benign_pass(args, kwargs)`` runs
    (its own denoiser calls are not counted) and the modules get ``substitutes(args,
    kwargs)``; before every other call each gets ``own_processor(name)``.
    """
    denoiser = pipe.transformer
    state: dict[str, Any] = {"step": -1, "t": None, "calls": 0, "inside": False}

    def pre_hook(module: Any, args: tuple[Any, ...], call: dict[str, Any]) -> None:
        if state["inside"]:
            return
        t = _timestep(args, call)
        if t != state["t"]:
            state["step"], state["t"], state["calls"] = state["step"] + 1, t, 0
        else:
            state["calls"] += 1
        chosen = {name: own_processor(name) for name in modules}
        if state["step"] >= start and state["calls"] == 0:
            state["inside"] = True
            try:
                benign_pass(args, call)
            finally:
                state["inside"] = False
            chosen = substitutes(args, call)
        for name, processor in chosen.items():
            denoiser.get_submodule(name).set_processor(processor)

    handle = denoiser.register_forward_pre_hook(pre_hook, with_kwargs=True)
    saved = {name: denoiser.get_submodule(name).processor for name in modules}
    try:
        with torch.no_grad():
            return pipe(prompt=list(prompts), **kwargs).images
    finally:
        handle.remove()
        for name, processor in saved.items():
            denoiser.get_submodule(name).set_processor(processor)


def compare(
    pipe: Any, reference: Callable[..., np.ndarray], prompts: list[str], benign: list[str | None], modules: list[str],
    start: float, **kwargs: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(guard, reference, plain) images of one call, each run with the same per-image generators."""
    config = InjectionConfig(modules=modules, start=start)
    n = len(prompts) * kwargs.get("num_images_per_prompt", 1)
    ours = run_injected(pipe, list(prompts), benign, config, generator=generators(n), **kwargs).images
    start_step = config.start_step(kwargs["num_inference_steps"])
    ref = reference(pipe, list(prompts), benign, modules, start_step, generator=generators(n), **kwargs)
    plain = pipe(prompt=list(prompts), generator=generators(n), **kwargs).images
    return ours, ref, plain


def check_rows(
    ours: np.ndarray, ref: np.ndarray, plain: np.ndarray, *, atol: float, min_effect: float,
    rewritten: tuple[int, ...] = (0,), allowed: tuple[int, ...] = (1,), allowed_atol: float = 0.0,
) -> None:
    """The guard equals the reference within ``atol``; each rewritten row is moved by more than
    ``min_effect`` from the plain image (the swap did something); each allowed row is the plain
    pipeline's, bitwise when ``allowed_atol`` is 0."""
    assert np.abs(ours - ref).max() <= atol
    for row in rewritten:
        assert np.abs(ours[row] - plain[row]).max() > min_effect
    for row in allowed:
        if allowed_atol == 0.0:
            assert np.array_equal(ours[row], plain[row])
        else:
            assert np.abs(ours[row] - plain[row]).max() <= allowed_atol


def hook_count(module: torch.nn.Module) -> int:
    """Forward hooks and pre-hooks on ``module`` and everything under it."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in module.modules())


def guard_rows(pipe: Any, preset: list[str], min_effect: float, **kwargs: Any) -> np.ndarray:
    """A ``Guard`` call on ``[TOXIC, INNOCENT]`` with ``preset``: it patches exactly ``preset``,
    leaves the innocent row bitwise the plain pipeline's and moves the toxic row by more than
    ``min_effect``. Returns the guard's images."""
    guard = Guard(pipe, policy=FakePolicy(), preset=preset)
    result = guard([TOXIC, INNOCENT], generator=generators(2), **kwargs)
    assert result.patched_layers == preset
    plain = pipe(prompt=[TOXIC, INNOCENT], generator=generators(2), **kwargs).images
    assert np.array_equal(result.images[1], plain[1])
    assert np.abs(result.images[0] - plain[0]).max() > min_effect
    return result.images


def refusal(pipe: Any, name: str, processor: Any) -> str:
    """The ``GuardError`` message of a ``Guard`` built with ``processor`` on module ``name``
    (its class must be named there); the module's own processor is put back."""
    module = pipe.transformer.get_submodule(name)
    original = module.processor
    module.set_processor(processor)
    try:
        with pytest.raises(GuardError, match=type(processor).__name__) as caught:
            Guard(pipe, policy=FakePolicy(), preset=[name])
    finally:
        module.set_processor(original)
    return str(caught.value)
