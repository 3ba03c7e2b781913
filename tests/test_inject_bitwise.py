"""Injection changes nothing it should not: bitwise comparisons against plain pipeline calls.

Rows that are not rewritten are bitwise the unguarded call's on every kind. A rewritten row
whose benign text equals its own is bitwise too where its benign text K/V come from a batch
of the unguarded call's shape: always for the U-Nets (the benign text rides in the same
call), and for SD3 when its benign pass has as many rows as the pipeline's call. Otherwise
(SD3 under CFG: a pass of the conditional rows only) BLAS may round those K/V differently,
and the image agrees to float rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _inject_helpers import BENIGN, INNOCENT, KINDS, LOCALIZED, STEPS, TOXIC, call_kwargs, processors, tiny

from safetext.inject import InjectionConfig, run_injected


UNETS = tuple(kind for kind in KINDS if kind != "sd3")
ROUNDING = 1e-5  # SD3 images whose rewritten rows' K/V come from a smaller batch


def assert_unchanged(kind: str, plain: np.ndarray, same: np.ndarray) -> None:
    """Benign text equal to the original: bitwise (U-Nets), to float rounding (SD3 under CFG)."""
    if kind == "sd3":
        np.testing.assert_allclose(plain, same, rtol=0.0, atol=ROUNDING)
    else:
        assert np.array_equal(plain, same)


@pytest.mark.parametrize("kind", UNETS)
@pytest.mark.parametrize("start", [0.0, 0.5])
def test_benign_equal_to_original_is_bitwise_unguarded(kind: str, start: float) -> None:
    pipe = tiny(kind)
    config = InjectionConfig(modules=LOCALIZED[kind], start=start)
    plain = pipe(TOXIC, **call_kwargs(kind)).images
    same = run_injected(pipe, TOXIC, TOXIC, config, **call_kwargs(kind)).images
    assert np.array_equal(plain, same)


@pytest.mark.parametrize("kind", KINDS)
def test_rewrite_changes_the_image(kind: str) -> None:
    pipe = tiny(kind)
    config = InjectionConfig(modules=LOCALIZED[kind])
    plain = pipe(TOXIC, **call_kwargs(kind)).images
    patched = run_injected(pipe, TOXIC, BENIGN, config, **call_kwargs(kind)).images
    assert not np.array_equal(plain, patched)


@pytest.mark.parametrize("kind", KINDS)
def test_mixed_batch_keeps_allowed_rows_bitwise(kind: str) -> None:
    """Allowed prompts in a batch with a rewritten one are generated exactly as without injection."""
    pipe = tiny(kind)
    config = InjectionConfig(modules=LOCALIZED[kind])
    prompts = [INNOCENT, TOXIC, INNOCENT]
    plain = pipe(prompts, **call_kwargs(kind)).images
    mixed = run_injected(pipe, prompts, [None, BENIGN, None], config, **call_kwargs(kind)).images
    assert np.array_equal(plain[[0, 2]], mixed[[0, 2]])
    assert not np.array_equal(plain[1], mixed[1])


@pytest.mark.parametrize("kind", KINDS)
def test_negative_prompt_and_images_per_prompt(kind: str) -> None:
    pipe = tiny(kind)
    config = InjectionConfig(modules=LOCALIZED[kind])
    extra = {"negative_prompt": ["blurry", "dark"], "num_images_per_prompt": 2}
    plain = pipe([INNOCENT, TOXIC], **call_kwargs(kind, **extra)).images
    same = run_injected(pipe, [INNOCENT, TOXIC], [INNOCENT, TOXIC], config, **call_kwargs(kind, **extra)).images
    assert plain.shape[0] == 4
    assert_unchanged(kind, plain, same)
    patched = run_injected(pipe, [INNOCENT, TOXIC], [None, BENIGN], config, **call_kwargs(kind, **extra)).images
    assert np.array_equal(plain[:2], patched[:2])  # both images of the allowed prompt
    assert not np.array_equal(plain[2], patched[2]) and not np.array_equal(plain[3], patched[3])


@pytest.mark.parametrize("kind", KINDS)
def test_processors_are_restored_identically(kind: str) -> None:
    pipe = tiny(kind)
    before = processors(pipe)
    run_injected(pipe, TOXIC, BENIGN, InjectionConfig(modules=LOCALIZED[kind]), **call_kwargs(kind))
    after = processors(pipe)
    assert after.keys() == before.keys()
    assert all(after[name] is before[name] for name in before)


def test_without_cfg_every_row_is_conditional() -> None:
    pipe = tiny("sd")
    config = InjectionConfig(modules=LOCALIZED["sd"])
    plain = pipe(TOXIC, **call_kwargs("sd", guidance_scale=1.0)).images
    same = run_injected(pipe, TOXIC, TOXIC, config, **call_kwargs("sd", guidance_scale=1.0)).images
    patched = run_injected(pipe, TOXIC, BENIGN, config, **call_kwargs("sd", guidance_scale=1.0)).images
    assert np.array_equal(plain, same) and not np.array_equal(plain, patched)


@pytest.mark.parametrize("start", [0.0, 0.5])
def test_sd3_benign_equal_to_original(start: float) -> None:
    """Without CFG the benign pass has the call's one row: bitwise. Under CFG (1 row for 2): float rounding."""
    pipe = tiny("sd3")
    config = InjectionConfig(modules=LOCALIZED["sd3"], start=start)
    for guidance, bitwise in ((1.0, True), (7.0, False)):
        plain = pipe(TOXIC, **call_kwargs("sd3", guidance_scale=guidance)).images
        same = run_injected(pipe, TOXIC, TOXIC, config, **call_kwargs("sd3", guidance_scale=guidance)).images
        if bitwise:
            assert np.array_equal(plain, same)
        else:
            assert_unchanged("sd3", plain, same)


def _count_calls(module: torch.nn.Module) -> tuple[list[int], torch.utils.hooks.RemovableHandle]:
    calls = [0]

    def hook(*_: object) -> None:
        calls[0] += 1

    return calls, module.register_forward_pre_hook(hook)


@pytest.mark.parametrize("skipped", [[1], [2]])
def test_sd3_skip_layer_guidance_call_stays_in_its_step(skipped: list[int]) -> None:
    """SD3's skip-layer guidance calls the transformer twice per step; both calls are patched,
    each after its own benign pass, unless the guidance call skips the localized block 1."""
    pipe = tiny("sd3")
    config = InjectionConfig(modules=LOCALIZED["sd3"])
    extra = {"skip_guidance_layers": skipped, "skip_layer_guidance_start": 0.0, "skip_layer_guidance_stop": 1.0}
    calls, handle = _count_calls(pipe.transformer)
    try:
        plain = pipe(TOXIC, **call_kwargs("sd3", **extra)).images
        n_plain, calls[0] = calls[0], 0
        same = run_injected(pipe, TOXIC, TOXIC, config, **call_kwargs("sd3", **extra)).images
        n_same, calls[0] = calls[0], 0
        patched = run_injected(pipe, TOXIC, BENIGN, config, **call_kwargs("sd3", **extra)).images
    finally:
        handle.remove()
    assert n_plain > STEPS  # the guidance ran: some steps call the transformer twice
    assert not np.array_equal(plain, patched)
    assert_unchanged("sd3", plain, same)
    # One benign pass per patched call: the prompt's call of every step, and the guidance calls
    # unless they skip the only localized block.
    assert n_same - n_plain == (STEPS if skipped == [1] else n_plain)


@pytest.mark.parametrize("blocks", [[0, 2], [3], [0, 1, 2, 3]])
def test_sd3_several_or_final_localized_blocks(blocks: list[int]) -> None:
    """The benign pass runs up to the last localized block, including the final, context-pre-only one."""
    pipe = tiny("sd3")
    config = InjectionConfig(modules=[f"transformer_blocks.{i}.attn" for i in blocks])
    prompts = [INNOCENT, TOXIC]
    plain = pipe(prompts, **call_kwargs("sd3")).images
    same = run_injected(pipe, prompts, [None, TOXIC], config, **call_kwargs("sd3")).images
    patched = run_injected(pipe, prompts, [None, BENIGN], config, **call_kwargs("sd3")).images
    assert np.array_equal(plain[0], same[0]) and np.array_equal(plain[0], patched[0])
    assert_unchanged("sd3", plain, same)
    assert not np.array_equal(plain[1], patched[1])
