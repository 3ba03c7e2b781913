"""The guard's IF and SD3 injection against a hand-written reference of the paper's method.

For added-KV (IF) and joint (SD3) attention, "every text module patched equals generating
B" does not hold, so the check is a reference written independently of
``safetext.inject``'s processors and installer. At every denoising step from the start step
on, a forward pre-hook on the denoiser:

1. runs the benign prompt B alone through the denoiser (its conditional rows only, with
   the original call's current latents and timestep, and B's pooled embedding for SD3),
   with :class:`_RecordAddedKV` / :class:`_RecordJoint` on the localized modules caching
   B's text K/V (the ``add_k_proj`` / ``add_v_proj`` outputs of the text states those
   modules see; for SD3 that is B's text stream after the preceding blocks);
2. then lets the original call run with :class:`_SubstituteAddedKV` /
   :class:`_SubstituteJoint` on those modules, which put the cached K/V in place of the
   text K/V of the rewritten conditional rows only. Queries, the image stream and the
   unconditional CFG half stay the original's.

Benign and original batches differ in row count, so BLAS may round differently: images
are compared to float tolerance, and the swap's own effect is checked to be far larger.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _inject_helpers import BENIGN, INNOCENT, LOCALIZED, TOXIC, FakePolicy, call_kwargs, denoiser, processors, tiny
from diffusers.models.attention_processor import Attention, AttnAddedKVProcessor2_0, JointAttnProcessor2_0

import safetext
from safetext.inject import InjectionConfig, run_injected

ATOL = 5e-6
#: The swap must move the image by far more than the comparison tolerance.
MIN_EFFECT = 100 * ATOL

KVCache = dict[str, tuple[torch.Tensor, torch.Tensor]]


# --------------------------------------------------------------------------- IF processors


def _added_kv_attention(
    attn: Attention, hidden_states: torch.Tensor, text_k: torch.Tensor, text_v: torch.Tensor
) -> torch.Tensor:
    """``AttnAddedKVProcessor2_0`` (no mask) with the text K/V projections given."""
    residual = hidden_states
    hidden_states = hidden_states.view(hidden_states.shape[0], hidden_states.shape[1], -1).transpose(1, 2)
    hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    query = attn.head_to_batch_dim(attn.to_q(hidden_states), out_dim=4)
    key = attn.head_to_batch_dim(text_k, out_dim=4)
    value = attn.head_to_batch_dim(text_v, out_dim=4)
    if not attn.only_cross_attention:
        key = torch.cat([key, attn.head_to_batch_dim(attn.to_k(hidden_states), out_dim=4)], dim=2)
        value = torch.cat([value, attn.head_to_batch_dim(attn.to_v(hidden_states), out_dim=4)], dim=2)
    out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
    out = out.transpose(1, 2).reshape(residual.shape[0], -1, residual.shape[1])
    out = attn.to_out[1](attn.to_out[0](out))
    return out.transpose(-1, -2).reshape(residual.shape) + residual


def _added_text_kv(attn: Attention, encoder_hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    text = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross else encoder_hidden_states
    return attn.add_k_proj(text), attn.add_v_proj(text)


class _RecordAddedKV(AttnAddedKVProcessor2_0):
    """Caches the module's text K/V (B's pass), then computes the stock attention."""

    def __init__(self, name: str, cache: KVCache) -> None:
        super().__init__()
        self.name, self.cache = name, cache

    def __call__(
        self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: Any = None, *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        self.cache[self.name] = _added_text_kv(attn, encoder_hidden_states)
        return super().__call__(attn, hidden_states, encoder_hidden_states, *args, **kwargs)


class _SubstituteAddedKV:
    """The original call: cached B text K/V in the rewritten conditional rows."""

    def __init__(self, name: str, cache: KVCache, rows: torch.Tensor) -> None:
        self.name, self.cache, self.rows = name, cache, rows

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: Any = None,
        attention_mask: Any = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        assert attention_mask is None
        text_k, text_v = _added_text_kv(attn, encoder_hidden_states)
        benign_k, benign_v = self.cache[self.name]
        text_k, text_v = text_k.clone(), text_v.clone()
        text_k[self.rows], text_v[self.rows] = benign_k, benign_v
        return _added_kv_attention(attn, hidden_states, text_k, text_v)


# --------------------------------------------------------------------------- SD3 processors


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.view(x.shape[0], -1, heads, x.shape[-1] // heads).transpose(1, 2)


def _joint_attention(
    attn: Attention, hidden_states: torch.Tensor, context: torch.Tensor, text_k: torch.Tensor, text_v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``JointAttnProcessor2_0`` with the context K/V projections given."""
    heads = attn.heads
    query, key, value = (_heads(p(hidden_states), heads) for p in (attn.to_q, attn.to_k, attn.to_v))
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    c_query, c_key, c_value = _heads(attn.add_q_proj(context), heads), _heads(text_k, heads), _heads(text_v, heads)
    if attn.norm_added_q is not None:
        c_query = attn.norm_added_q(c_query)
    if attn.norm_added_k is not None:
        c_key = attn.norm_added_k(c_key)
    query, key, value = (torch.cat(pair, dim=2) for pair in ((query, c_query), (key, c_key), (value, c_value)))
    out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
    out = out.transpose(1, 2).reshape(hidden_states.shape[0], -1, query.shape[1] * query.shape[-1]).to(query.dtype)
    image, text = out[:, : hidden_states.shape[1]], out[:, hidden_states.shape[1] :]
    if not attn.context_pre_only:
        text = attn.to_add_out(text)
    return attn.to_out[1](attn.to_out[0](image)), text


class _RecordJoint(JointAttnProcessor2_0):
    """Caches the text stream's K/V (B's pass), then computes the stock joint attention."""

    def __init__(self, name: str, cache: KVCache) -> None:
        super().__init__()
        self.name, self.cache = name, cache

    def __call__(
        self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states: Any = None, *args: Any, **kwargs: Any
    ) -> Any:
        self.cache[self.name] = (attn.add_k_proj(encoder_hidden_states), attn.add_v_proj(encoder_hidden_states))
        return super().__call__(attn, hidden_states, encoder_hidden_states, *args, **kwargs)


class _SubstituteJoint:
    """The original call: cached B context K/V in the rewritten conditional rows."""

    def __init__(self, name: str, cache: KVCache, rows: torch.Tensor) -> None:
        self.name, self.cache, self.rows = name, cache, rows

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: Any = None,
        attention_mask: Any = None,
        **kwargs: Any,
    ) -> Any:
        assert attention_mask is None and encoder_hidden_states is not None
        text_k = attn.add_k_proj(encoder_hidden_states).clone()
        text_v = attn.add_v_proj(encoder_hidden_states).clone()
        benign_k, benign_v = self.cache[self.name]
        text_k[self.rows], text_v[self.rows] = benign_k, benign_v
        return _joint_attention(attn, hidden_states, encoder_hidden_states, text_k, text_v)


# --------------------------------------------------------------------------- driver


def _encode_benign(pipe: Any, kind: str, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """B's conditional embeddings (and SD3's pooled ones) from the pipeline's own encoder."""
    device = pipe._execution_device
    with torch.no_grad():
        if kind == "if":
            embeds, _ = pipe.encode_prompt(texts, do_classifier_free_guidance=False, device=device, clean_caption=False)
            return embeds, None
        embeds, _, pooled, _ = pipe.encode_prompt(
            texts, None, None, device=device, do_classifier_free_guidance=False, max_sequence_length=32
        )
        return embeds, pooled


@contextmanager
def reference_injection(
    pipe: Any, kind: str, modules: list[str], start_step: int, benign: list[str | None]
) -> Iterator[None]:
    """Within the block, calls of ``pipe`` get the paper's K/V injection (one image per prompt)."""
    den = denoiser(pipe)
    names = list(inspect.signature(den.forward).parameters)
    rewritten = [i for i, b in enumerate(benign) if b is not None]
    embeds, pooled = _encode_benign(pipe, kind, [benign[i] for i in rewritten])  # type: ignore[misc]
    originals = {name: den.get_submodule(name).processor for name in modules}
    cache: KVCache = {}
    record, substitute = (_RecordAddedKV, _SubstituteAddedKV) if kind == "if" else (_RecordJoint, _SubstituteJoint)
    state = {"step": -1, "inside": False}

    def set_all(make: Any) -> None:
        for name in modules:
            den.get_submodule(name).set_processor(make(name))

    def pre_hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if state["inside"]:
            return
        state["step"] += 1  # IF and SD3 (no skip-layer guidance) call the denoiser once per step
        if state["step"] < start_step:
            return
        call = {**dict(zip(names, args)), **kwargs}
        sample_key = "sample" if kind == "if" else "hidden_states"
        sample, timestep = call[sample_key], call["timestep"]
        n_cond = len(benign)
        offset = n_cond if sample.shape[0] == 2 * n_cond else 0
        rows = torch.tensor(rewritten) + offset
        b_call: dict[str, Any] = {
            sample_key: sample[rows],
            "timestep": timestep[rows] if isinstance(timestep, torch.Tensor) and timestep.ndim else timestep,
            "encoder_hidden_states": embeds,
            "return_dict": False,
        }
        if kind == "sd3":
            b_call["pooled_projections"] = pooled
        cache.clear()
        set_all(lambda name: record(name, cache))
        state["inside"] = True
        try:
            with torch.no_grad():
                module(**b_call)
        finally:
            state["inside"] = False
        assert set(cache) == set(modules)
        set_all(lambda name: substitute(name, cache, rows))

    handle = den.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
        for name, processor in originals.items():
            den.get_submodule(name).set_processor(processor)
    assert state["step"] >= start_step, "the reference never patched"


def reference_images(
    pipe: Any, kind: str, prompts: list[str], benign: list[str | None], config: InjectionConfig, **kwargs: Any
) -> np.ndarray:
    """The pipeline's images with the reference injection (``benign[i]`` None: prompt i untouched)."""
    steps = kwargs["num_inference_steps"]
    with reference_injection(pipe, kind, config.modules, config.start_step(steps), benign):
        return pipe(prompts, **kwargs).images


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


# --------------------------------------------------------------------------- tests

CASES = [
    ("if", LOCALIZED["if"], 0.0),
    ("if", LOCALIZED["if"], 0.5),
    ("if", ["down_blocks.1.attentions.0", "mid_block.attentions.0", "up_blocks.0.attentions.1"], 0.25),
    ("sd3", LOCALIZED["sd3"], 0.0),
    ("sd3", LOCALIZED["sd3"], 0.5),
    ("sd3", ["transformer_blocks.0.attn", "transformer_blocks.2.attn"], 0.0),
    ("sd3", ["transformer_blocks.1.attn", "transformer_blocks.3.attn"], 0.25),
]


@pytest.mark.parametrize(("kind", "modules", "start"), CASES)
def test_guard_matches_reference(kind: str, modules: list[str], start: float) -> None:
    """CFG on (the pipelines' default guidance): the guard's image equals the reference's."""
    pipe = tiny(kind)
    before = processors(pipe)
    config = InjectionConfig(modules=modules, start=start)
    plain = pipe(TOXIC, **call_kwargs(kind)).images
    reference = reference_images(pipe, kind, [TOXIC], [BENIGN], config, **call_kwargs(kind))
    assert all(processors(pipe)[name] is before[name] for name in before)
    guarded = safetext.Guard(pipe, policy=FakePolicy(), preset=config)(TOXIC, **call_kwargs(kind)).images
    assert _max_diff(reference, plain) > MIN_EFFECT
    assert np.allclose(guarded, reference, rtol=0.0, atol=ATOL), _max_diff(guarded, reference)


@pytest.mark.parametrize("kind", ["if", "sd3"])
def test_guard_matches_reference_without_cfg(kind: str) -> None:
    pipe = tiny(kind)
    config = InjectionConfig(modules=LOCALIZED[kind], start=0.25)
    kwargs = call_kwargs(kind, guidance_scale=1.0)
    plain = pipe(TOXIC, **kwargs).images
    reference = reference_images(pipe, kind, [TOXIC], [BENIGN], config, **call_kwargs(kind, guidance_scale=1.0))
    guarded = run_injected(pipe, TOXIC, BENIGN, config, **call_kwargs(kind, guidance_scale=1.0)).images
    assert _max_diff(reference, plain) > MIN_EFFECT
    assert np.allclose(guarded, reference, rtol=0.0, atol=ATOL), _max_diff(guarded, reference)


@pytest.mark.parametrize("kind", ["if", "sd3"])
def test_mixed_batch_matches_reference(kind: str) -> None:
    """An allowed prompt beside a rewritten one: its image is the plain pipeline's, in both."""
    pipe = tiny(kind)
    config = InjectionConfig(modules=LOCALIZED[kind], start=0.25)
    prompts = [INNOCENT, TOXIC]
    plain = pipe(prompts, **call_kwargs(kind)).images
    reference = reference_images(pipe, kind, prompts, [None, BENIGN], config, **call_kwargs(kind))
    result = safetext.Guard(pipe, policy=FakePolicy(), preset=config)(prompts, **call_kwargs(kind))
    guarded = result.images
    assert np.allclose(reference[0], plain[0], rtol=0.0, atol=ATOL)
    assert _max_diff(reference[1], plain[1]) > MIN_EFFECT
    assert np.array_equal(guarded[0], plain[0])
    assert np.allclose(guarded, reference, rtol=0.0, atol=ATOL), _max_diff(guarded, reference)
