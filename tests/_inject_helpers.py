"""Shared helpers for the injection and guard tests: tiny pipelines, call settings, a fake policy."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from safetext.policy.decision import Action, Decision

torch.set_num_threads(1)

KINDS = ("sd", "sdxl", "if", "sd3")
TOXIC = 'A sign that says "idiot"'
BENIGN = 'A sign that says "angel"'
INNOCENT = 'A sign that says "hello"'
STEPS = 4

# One localized module per tiny pipeline (not the last candidate, so some run after it).
LOCALIZED = {
    "sd": ["up_blocks.1.attentions.0.transformer_blocks.0.attn2"],
    "sdxl": ["up_blocks.0.attentions.0.transformer_blocks.1.attn2", "up_blocks.0.attentions.1.transformer_blocks.0.attn2"],
    "if": ["up_blocks.0.attentions.0"],
    "sd3": ["transformer_blocks.1.attn"],
}


@functools.lru_cache(maxsize=None)
def tiny(kind: str) -> Any:
    """One cached tiny pipeline per kind (tests must leave it as they found it)."""
    from safetext.pipelines import build_tiny_pipeline

    return build_tiny_pipeline(kind, seed=0)


def call_kwargs(kind: str, seed: int = 0, **extra: Any) -> dict[str, Any]:
    """Fast, deterministic pipeline arguments for ``kind``."""
    kwargs: dict[str, Any] = {
        "num_inference_steps": STEPS,
        "output_type": "np",
        "generator": torch.Generator().manual_seed(seed),
    }
    if kind == "if":
        kwargs["clean_caption"] = False
    if kind == "sd3":
        kwargs["max_sequence_length"] = 32
    kwargs.update(extra)
    return kwargs


def denoiser(pipe: Any) -> torch.nn.Module:
    return pipe.unet if hasattr(pipe, "unet") else pipe.transformer


def processors(pipe: Any) -> dict[str, Any]:
    return dict(denoiser(pipe).attn_processors)


class FakePolicy:
    """A policy object with ``decide(prompt)``: rewrites prompts found in ``rewrites``, blocks ``blocks``."""

    def __init__(self, rewrites: dict[str, str] | None = None, blocks: tuple[str, ...] = ()) -> None:
        self.rewrites = rewrites if rewrites is not None else {TOXIC: BENIGN}
        self.blocks = blocks
        self.seen: list[str] = []

    def decide(self, prompt: str) -> Decision:
        self.seen.append(prompt)
        if prompt in self.blocks:
            return Decision(action=Action.BLOCK, prompt=prompt, risk=1.0, reasons=["blocked term"])
        if prompt in self.rewrites:
            return Decision(action=Action.REWRITE, prompt=prompt, benign_prompt=self.rewrites[prompt], risk=0.8)
        return Decision(action=Action.ALLOW, prompt=prompt)


class AttentionSpy:
    """Records the K/V every attention module computes, by module name and step.

    Test-only instrumentation: pre-hooks on each text attention module say which module is
    running, a pre-hook on the denoiser counts steps, and ``F.scaled_dot_product_attention``
    is wrapped (via pytest's monkeypatch) to record the key/value tensors it receives.
    """

    def __init__(self, pipe: Any, monkeypatch: Any) -> None:
        from safetext.inject.sites import attention_kind

        self.records: dict[tuple[str, int], list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}
        self.step = -1
        self._last_t: float | None = None
        self._current: str | None = None
        self._handles = []
        den = denoiser(pipe)
        for name, module in den.named_modules():
            if attention_kind(module) is not None:
                self._handles.append(module.register_forward_pre_hook(self._enter(name)))
                self._handles.append(module.register_forward_hook(self._leave))
        self._handles.append(den.register_forward_pre_hook(self._on_step, with_kwargs=True))
        original: Callable[..., torch.Tensor] = torch.nn.functional.scaled_dot_product_attention

        def spy(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
            if self._current is not None:
                self.records.setdefault((self._current, self.step), []).append(
                    (query.detach().clone(), key.detach().clone(), value.detach().clone())
                )
            return original(query, key, value, *args, **kwargs)

        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)

    def _enter(self, name: str) -> Callable[..., None]:
        def hook(module: Any, args: Any) -> None:
            self._current = name

        return hook

    def _leave(self, module: Any, args: Any, output: Any) -> None:
        self._current = None

    def _on_step(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
        value = float(t.reshape(-1)[0]) if isinstance(t, torch.Tensor) else float(t)
        if value != self._last_t:
            self.step += 1
            self._last_t = value

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def reset(self) -> None:
        self.records, self.step, self._last_t = {}, -1, None
