"""Instrumented proof: only the localized modules read the benign K/V, and only from the start step.

The spy records the key/value tensors that reach ``scaled_dot_product_attention`` in every
text attention module at every step, for three runs with the same seed: the original
prompt A, the benign prompt B, and A with injection. Cross-attention and IF text K/V
depend only on the text, so the injected run must equal B's K/V exactly where patched
and A's exactly everywhere else.
"""

from __future__ import annotations

import pytest
import torch
from _inject_helpers import BENIGN, KINDS, LOCALIZED, STEPS, TOXIC, AttentionSpy, call_kwargs, denoiser, tiny

from safetext.inject import InjectionConfig, candidate_modules, run_injected

START = 0.5  # patch steps 2 and 3 of 4
SD3_IMAGE_TOKENS = 64  # tiny SD3: 8x8 latents, patch size 1


def _text_kv(kind: str, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The text part of K/V: all of it (cross), the leading tokens (IF), the trailing tokens (SD3)."""
    if kind in ("sd", "sdxl"):
        return key, value
    if kind == "if":
        n_text = key.shape[2] - query.shape[2]
        return key[:, :, :n_text], value[:, :, :n_text]
    return key[:, :, SD3_IMAGE_TOKENS:], value[:, :, SD3_IMAGE_TOKENS:]


def _record_runs(kind: str, config: InjectionConfig, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, dict, dict]:
    pipe = tiny(kind)
    spy = AttentionSpy(pipe, monkeypatch)
    try:
        pipe(TOXIC, **call_kwargs(kind))
        plain_a, _ = spy.records, spy.reset()
        pipe(BENIGN, **call_kwargs(kind))
        plain_b, _ = spy.records, spy.reset()
        run_injected(pipe, TOXIC, BENIGN, config, **call_kwargs(kind))
        injected = spy.records
    finally:
        spy.remove()
    return plain_a, plain_b, injected


@pytest.mark.parametrize("kind", ["sd", "sdxl", "if"])
def test_unet_kinds_patch_only_localized_modules_from_start(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = InjectionConfig(modules=LOCALIZED[kind], start=START)
    start = config.start_step(STEPS)
    assert start == 2
    plain_a, plain_b, injected = _record_runs(kind, config, monkeypatch)
    modules = candidate_modules(tiny(kind))
    assert {m for m, _ in injected} == set(modules) and len(injected) == len(modules) * STEPS
    for (module, step), [(q, k, v)] in injected.items():
        k_txt, v_txt = _text_kv(kind, q, k, v)
        a_k, a_v = _text_kv(kind, *plain_a[(module, step)][0])
        b_k, b_v = _text_kv(kind, *plain_b[(module, step)][0])
        if module in LOCALIZED[kind] and step >= start:
            # CFG batch: row 0 unconditional (left alone), row 1 conditional (benign K/V).
            assert torch.equal(k_txt[1], b_k[1]) and torch.equal(v_txt[1], b_v[1]), (module, step)
            assert not torch.equal(k_txt[1], a_k[1])
            assert torch.equal(k_txt[0], a_k[0]) and torch.equal(v_txt[0], a_v[0])
        else:
            assert torch.equal(k_txt, a_k) and torch.equal(v_txt, a_v), (module, step)


def _record_text_projections(kind: str, config: InjectionConfig, monkeypatch: pytest.MonkeyPatch):
    """Like ``_record_runs``, plus the localized SD3 block's add_k_proj/add_v_proj outputs in the injected run."""
    module = denoiser(tiny(kind)).get_submodule(config.modules[0])
    projections: dict[str, list[torch.Tensor]] = {"k": [], "v": []}
    handles = [
        module.add_k_proj.register_forward_hook(lambda m, a, out: projections["k"].append(out.detach().clone())),
        module.add_v_proj.register_forward_hook(lambda m, a, out: projections["v"].append(out.detach().clone())),
    ]
    try:
        runs = _record_runs(kind, config, monkeypatch)
    finally:
        for handle in handles:
            handle.remove()
    # The injected run: STEPS pipeline calls, and one benign pass before each patched one.
    patched = STEPS - config.start_step(STEPS)
    return runs, {key: outs[-(STEPS + patched) :] for key, outs in projections.items()}


def _as_heads(projection: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(L, heads * d) -> (heads, L, d), the layout of one row of K/V at the attention."""
    heads, _, dim = like.shape
    return projection.view(-1, heads, dim).transpose(0, 1)


def test_sd3_benign_pass_runs_up_to_last_localized_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """A benign pass of the rewritten row runs to the localized block; the pipeline's call keeps its 2 rows."""
    kind = "sd3"
    config = InjectionConfig(modules=LOCALIZED[kind], start=START)
    (plain_a, _, injected), projections = _record_text_projections(kind, config, monkeypatch)
    blocks = candidate_modules(tiny(kind))
    localized = blocks.index(LOCALIZED[kind][0])
    # add_k_proj/add_v_proj at the localized block, per step: steps 0-1 the call alone, steps 2-3 pass then call.
    k_calls = [[projections["k"][0]], [projections["k"][1]], projections["k"][2:4], projections["k"][4:6]]
    v_calls = [[projections["v"][0]], [projections["v"][1]], projections["v"][2:4], projections["v"][4:6]]
    for (module, step), records in injected.items():
        index = blocks.index(module)
        a_q, a_k, a_v = plain_a[(module, step)][0]
        if step < 2:
            # Before the start step nothing changes: one call, bitwise the same tensors.
            [(q, k, v)] = records
            assert torch.equal(q, a_q) and torch.equal(k, a_k) and torch.equal(v, a_v)
            continue
        if index < localized:
            # The benign pass (1 row) attends here before the pipeline's call (2 rows, bitwise A's).
            [(bq, _, _), (q, k, v)] = records
            assert bq.shape[0] == 1
        else:
            # The pass stops at the localized block's text K/V: only the pipeline's call attends from here on.
            [(q, k, v)] = records
        assert q.shape[0] == 2, (module, step)
        if index == localized:
            # The conditional row (1) reads the text K/V the benign pass projected in this block.
            k_txt, v_txt = _text_kv(kind, q, k, v)
            (k_pass, k_call), (v_pass, _) = k_calls[step], v_calls[step]
            assert k_pass.shape[0] == 1 and k_call.shape[0] == 2
            assert torch.equal(k_txt[1], _as_heads(k_pass[0], k_txt[1])) and torch.equal(v_txt[1], _as_heads(v_pass[0], v_txt[1]))
            assert torch.equal(k_txt[0], _as_heads(k_call[0], k_txt[0]))  # unconditional: its own
    # At the first patched step the original rows up to the localized block are untouched,
    # apart from the swapped text K/V: queries and the image stream stay A's.
    q, k, v = injected[(LOCALIZED[kind][0], 2)][0]
    a_q, a_k, a_v = plain_a[(LOCALIZED[kind][0], 2)][0]
    assert torch.equal(q, a_q)
    assert torch.equal(k[:, :, :SD3_IMAGE_TOKENS], a_k[:, :, :SD3_IMAGE_TOKENS])
    assert torch.equal(k[0], a_k[0]) and torch.equal(v[0], a_v[0])  # unconditional row untouched
    assert not torch.equal(k[1, :, SD3_IMAGE_TOKENS:], a_k[1, :, SD3_IMAGE_TOKENS:])
    for index in range(localized):
        assert torch.equal(injected[(blocks[index], 2)][1][1], plain_a[(blocks[index], 2)][0][1])


@pytest.mark.parametrize("kind", KINDS)
def test_report_lists_patched_steps(kind: str) -> None:
    from safetext.inject import Injection, pipeline_lock

    pipe = tiny(kind)
    config = InjectionConfig(modules=LOCALIZED[kind], start=START)
    kwargs = call_kwargs(kind)
    with pipeline_lock(pipe), Injection(pipe, config, [TOXIC], [BENIGN], kwargs) as injection:
        pipe(TOXIC, **kwargs)
        report = injection.verify()
    assert report.patched_layers == LOCALIZED[kind]
    assert report.start_step == 2 and report.steps_run == STEPS
    assert all(steps == [2, 3] for steps in report.injected_steps.values())
    assert report.rewritten_rows == [0]
