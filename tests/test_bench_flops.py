"""The full-size FLOP model (benchmarks/flops.py) against FLOPs counted on real guarded calls.

The model says what the guard adds: a benign row through the blocks up to the last
localized one (streams), or the benign text's K/V projections (cross-attention), plus one
benign encoding. Here the same counter runs over a whole unguarded and a whole guarded
generation on tiny pipelines, and their difference must be exactly that.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from _bench_scripts import load_benchmark
from _inject_helpers import BENIGN, TOXIC, tiny

from safetext.inject import InjectionConfig, candidate_modules, run_injected

flops = load_benchmark("flops")
STEPS = 3


def _captured_call(pipe: Any, denoiser: torch.nn.Module, kwargs: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """FLOPs of an unguarded ``pipe(TOXIC)`` and the denoiser's keyword arguments at its first call."""
    seen: list[dict[str, Any]] = []

    def hook(module: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> None:
        if not seen:
            seen.append(dict(inspect.signature(module.forward).bind(*args, **kw).arguments))

    handle = denoiser.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        total = flops._count(lambda: pipe(prompt=TOXIC, generator=torch.Generator().manual_seed(0), **kwargs))["Global"]
    finally:
        handle.remove()
    inputs = {k: v for k, v in seen[0].items() if k != "return_dict"}
    return total, inputs


def _guarded(pipe: Any, modules: list[str], kwargs: dict[str, Any]) -> float:
    config = InjectionConfig(modules=modules)
    return flops._count(lambda: run_injected(pipe, [TOXIC], [BENIGN], config, generator=torch.Generator().manual_seed(0), **kwargs))["Global"]


@pytest.mark.parametrize(("module", "last_block"), [("transformer_blocks.0.attn", 0), ("single_transformer_blocks.0.attn", 2)])
def test_stream_extra_flops_are_the_benign_row_up_to_the_last_block(module: str, last_block: int) -> None:
    pipe = tiny("flux")
    kwargs = {"num_inference_steps": STEPS, "height": 32, "width": 32, "output_type": "np", "max_sequence_length": 16}
    plain, inputs = _captured_call(pipe, pipe.transformer, kwargs)
    counts = flops.denoiser_counts(pipe.transformer, inputs)
    assert len(counts.blocks) == 4 and counts.head > 0
    encode = flops._count(lambda: pipe.encode_prompt(prompt=BENIGN, prompt_2=None, max_sequence_length=16))["Global"]
    predicted = STEPS * flops.extra_per_step(counts, last_block) + encode
    assert _guarded(pipe, [module], kwargs) - plain == pytest.approx(predicted, rel=1e-9)


@pytest.mark.parametrize("kind", ["sd", "pixart-sigma"])
def test_cross_extra_flops_are_the_benign_encoding_and_caption_projection(kind: str) -> None:
    pipe = tiny(kind)
    module = candidate_modules(pipe)[0]
    kwargs: dict[str, Any] = {"num_inference_steps": STEPS, "output_type": "np"}
    encode_kwargs: dict[str, Any] = {"do_classifier_free_guidance": False, "device": "cpu", "num_images_per_prompt": 1}
    if kind == "pixart-sigma":
        kwargs.update(clean_caption=False, use_resolution_binning=False, height=64, width=64)
        encode_kwargs["clean_caption"] = False
    denoiser = pipe.unet if kind == "sd" else pipe.transformer
    plain, inputs = _captured_call(pipe, denoiser, kwargs)
    rows = next(v for k, v in inputs.items() if k in ("sample", "hidden_states")).shape[0]
    assert rows == 2  # classifier-free guidance
    counts = flops.denoiser_counts(denoiser, inputs)
    assert (counts.text_path > 0) == (kind == "pixart-sigma")
    encode = flops._count(lambda: pipe.encode_prompt(BENIGN, **encode_kwargs))["Global"]
    # counts are of the captured call's rows, so its caption projection is already per call
    assert _guarded(pipe, [module], kwargs) - plain == pytest.approx(encode + counts.text_path, rel=1e-9)


def test_extra_per_step_checks_the_block_index() -> None:
    counts = flops.Counts(row=10.0, blocks=[3.0, 3.0, 3.0], head=1.0)
    assert flops.extra_per_step(counts, 0) == 10.0 - 6.0 - 1.0
    assert flops.extra_per_step(counts, 2) == 9.0
    with pytest.raises(ValueError, match="last_block"):
        flops.extra_per_step(counts, 3)


def test_full_size_report_on_meta() -> None:
    """FLUX.1-dev counted without weights: about 74 TFLOPs a step at 1024x1024, and the ratio grows with the block."""
    spec = next(s for s in flops.MODELS if s.name == "FLUX.1-dev")
    counts = flops.count(spec)
    assert len(counts.blocks) == 57
    assert 60e12 < counts.row < 90e12
    ratios = [1.0 + flops.guarded_extra(spec, counts, last) / flops.unguarded(spec, counts) for last in (0, 28, 56)]
    assert ratios == sorted(ratios) and 1.0 < ratios[0] < 1.05 and 1.9 < ratios[-1] < 2.0
