"""FLUX double- and single-stream injection against a hand-written reference of the paper's method.

The reference is written independently of ``safetext.inject``: at every step from the
start step on, a forward pre-hook on the transformer first runs the benign prompt B alone
(its T5 and pooled CLIP embeddings, the original call's current latents, timestep and
guidance) with recording processors on the localized modules, which cache B's text keys
and values (double-stream: the ``add_k_proj``/``add_v_proj`` outputs after qk-norm;
single-stream: the ``to_k``/``to_v`` outputs at the text positions after qk-norm). Then
the original call runs with substituting processors that put the cached K/V in place of
the rewritten rows' text K/V. Both processors are plain re-implementations of FLUX's
attention written here.

The guard's batched path (benign rows in the same call, dropped after the last localized
block) must equal this to float tolerance, and rows of allowed prompts must be bitwise
the plain pipeline's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _inject_helpers import BENIGN, INNOCENT, TOXIC, FakePolicy
from _reference import (
    KVCache, TextKV, check_rows, compare, generators, guard_rows, hook_count, refusal, run_reference, swapped_processors,
)
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.transformers.transformer_flux import FluxAttnProcessor

from safetext import Guard, GuardError
from safetext.inject import InjectionConfig, run_injected

torch.set_num_threads(1)

ATOL = 5e-6
MIN_EFFECT = 20 * ATOL  # the swap must move the image far beyond the tolerance
TEXT_LEN = 16
KW: dict[str, Any] = {"num_inference_steps": 4, "height": 32, "width": 32, "output_type": "np", "max_sequence_length": TEXT_LEN}

@pytest.fixture(scope="module")
def pipe() -> Any:
    from safetext.pipelines import build_tiny_pipeline

    return build_tiny_pipeline("flux")


# --------------------------------------------------------------------------- reference processors


class _RefFlux(TextKV):
    """FLUX attention written out; ``record`` caches the text K/V, ``substitute`` swaps them in."""

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: Any = None,
    ) -> Any:
        heads = (-1, attn.head_dim)
        q = attn.norm_q(attn.to_q(hidden_states).unflatten(-1, heads))
        k = attn.norm_k(attn.to_k(hidden_states).unflatten(-1, heads))
        v = attn.to_v(hidden_states).unflatten(-1, heads)
        if encoder_hidden_states is not None:  # double stream: the text stream's own projections
            eq = attn.norm_added_q(attn.add_q_proj(encoder_hidden_states).unflatten(-1, heads))
            ek = attn.norm_added_k(attn.add_k_proj(encoder_hidden_states).unflatten(-1, heads))
            ev = attn.add_v_proj(encoder_hidden_states).unflatten(-1, heads)
            ek, ev = self.text_kv(ek, ev)
            q, k, v = torch.cat([eq, q], 1), torch.cat([ek, k], 1), torch.cat([ev, v], 1)
        else:  # single stream: text tokens come first in the joined sequence
            tk, tv = self.text_kv(k[:, :TEXT_LEN], v[:, :TEXT_LEN])
            k, v = torch.cat([tk, k[:, TEXT_LEN:]], 1), torch.cat([tv, v[:, TEXT_LEN:]], 1)
        q = apply_rotary_emb(q, image_rotary_emb, sequence_dim=1)
        k = apply_rotary_emb(k, image_rotary_emb, sequence_dim=1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        out = out.transpose(1, 2).flatten(2, 3).to(q.dtype)
        if encoder_hidden_states is None:
            return out
        n_text = encoder_hidden_states.shape[1]
        text, image = out[:, :n_text], out[:, n_text:]
        return attn.to_out[1](attn.to_out[0](image.contiguous())), attn.to_add_out(text.contiguous())


def reference(pipe: Any, prompts: list[str], benign: list[str | None], modules: list[str], start: int, **kwargs: Any) -> np.ndarray:
    """The paper's method on FLUX: B's own pass caches its text K/V each step; A's pass uses them."""
    transformer = pipe.transformer
    rows = [i for i, b in enumerate(benign) if b is not None]
    texts = [benign[i] for i in rows]
    b_embeds, b_pooled, b_ids = pipe.encode_prompt(
        prompt=texts, prompt_2=None, max_sequence_length=kwargs["max_sequence_length"]
    )
    cache: KVCache = {}

    def benign_pass(args: Any, call: dict[str, Any]) -> None:
        index = torch.tensor(rows)
        with swapped_processors(transformer, {name: _RefFlux(name, cache, "record") for name in modules}):
            transformer(
                hidden_states=call["hidden_states"][index],
                timestep=call["timestep"][index],
                guidance=None if call.get("guidance") is None else call["guidance"][index],
                pooled_projections=b_pooled,
                encoder_hidden_states=b_embeds,
                txt_ids=b_ids,
                img_ids=call["img_ids"],
                return_dict=False,
            )

    return run_reference(
        pipe, prompts, modules, start, benign_pass=benign_pass,
        substitutes=lambda args, call: {name: _RefFlux(name, cache, "substitute", rows) for name in modules},
        own_processor=lambda name: FluxAttnProcessor(), **kwargs,
    )


CASES = [
    (["transformer_blocks.0.attn"], 0.0),
    (["transformer_blocks.1.attn"], 0.5),
    (["single_transformer_blocks.0.attn"], 0.0),
    (["single_transformer_blocks.1.attn"], 0.25),
    (["transformer_blocks.1.attn", "single_transformer_blocks.0.attn"], 0.0),
]


@pytest.mark.parametrize(("modules", "start"), CASES)
def test_guard_matches_reference(pipe: Any, modules: list[str], start: float) -> None:
    ours, ref, plain = compare(pipe, reference, [TOXIC, INNOCENT], [BENIGN, None], modules, start, **KW)
    check_rows(ours, ref, plain, atol=ATOL, min_effect=MIN_EFFECT)


def test_true_cfg_negative_call_is_left_alone(pipe: Any) -> None:
    modules = ["transformer_blocks.1.attn"]
    extra = dict(KW, negative_prompt="blurry", true_cfg_scale=2.0)
    ours = run_injected(pipe, [TOXIC], [BENIGN], InjectionConfig(modules=modules), generator=generators(1), **extra).images
    ref = reference(pipe, [TOXIC], [BENIGN], modules, 0, generator=generators(1), **extra)
    assert np.abs(ours - ref).max() <= ATOL


def test_num_images_per_prompt_and_report(pipe: Any) -> None:
    config = InjectionConfig(modules=["single_transformer_blocks.1.attn"])
    out, report = run_injected(
        pipe, [INNOCENT, TOXIC], [None, BENIGN], config, with_report=True,
        num_images_per_prompt=2, generator=generators(4), **KW,
    )
    assert report.rewritten_rows == [2, 3]
    assert report.injected_steps == {"single_transformer_blocks.1.attn": [0, 1, 2, 3]}
    plain = pipe(prompt=[INNOCENT, TOXIC], num_images_per_prompt=2, generator=generators(4), **KW).images
    assert np.array_equal(out.images[:2], plain[:2])
    assert np.abs(out.images[2:] - plain[2:]).max() > MIN_EFFECT


def test_processors_are_untouched_and_restored(pipe: Any) -> None:
    before = dict(pipe.transformer.attn_processors)
    hooks_before = hook_count(pipe.transformer)
    run_injected(pipe, [TOXIC], [BENIGN], InjectionConfig(modules=["transformer_blocks.0.attn"]), generator=generators(1), **KW)
    assert dict(pipe.transformer.attn_processors) == before
    assert hook_count(pipe.transformer) == hooks_before


def test_guard_rewrites_on_flux_and_allows_bitwise(pipe: Any) -> None:
    guard_rows(pipe, ["transformer_blocks.1.attn", "single_transformer_blocks.0.attn"], MIN_EFFECT, **KW)


class _CustomProcessor(FluxAttnProcessor):
    """A processor the injector does not know (as an IP-Adapter or a user's own would be)."""


def test_unknown_processor_is_refused_at_construction(pipe: Any) -> None:
    refusal(pipe, "transformer_blocks.0.attn", _CustomProcessor())


def test_fused_projections_are_refused(pipe: Any) -> None:
    pipe.transformer.fuse_qkv_projections()
    try:
        with pytest.raises(GuardError, match="fused"):
            Guard(pipe, policy=FakePolicy(), preset=["transformer_blocks.0.attn"])
    finally:
        pipe.transformer.unfuse_qkv_projections()


# --------------------------------------------------------------------------- families without an injector

REFUSED: tuple[str, ...] = ("chroma", "cogview4")  # safetext.pipelines.tiny_denoisers
ATTENTION_CLASS: dict[str, str] = {"chroma": "FluxAttention", "cogview4": "Attention"}


@pytest.mark.parametrize("kind", REFUSED)
def test_guard_refuses_unknown_dit_families_at_construction(kind: str) -> None:
    from safetext.pipelines.tiny_denoisers import REFUSED_DENOISERS, build_tiny_denoiser

    pipeline_name, _ = REFUSED_DENOISERS[kind]
    pipe = type(pipeline_name, (), {"transformer": build_tiny_denoiser(kind)})()
    with pytest.raises(GuardError) as caught:
        Guard(pipe, policy=FakePolicy(), preset=["transformer_blocks.0.attn"])
    message = str(caught.value)
    assert pipeline_name in message
    assert type(pipe.transformer).__name__ in message
    assert ATTENTION_CLASS.get(kind, "Attention") in message


def test_toxic_prompt_2_rewrites_the_t5_text_only(pipe: Any) -> None:
    """FLUX's ``prompt_2`` feeds T5, the text stream; ``prompt`` feeds CLIP's pooled embedding."""
    guard = Guard(pipe, policy=FakePolicy(), preset=["transformer_blocks.0.attn"])
    result = guard(INNOCENT, prompt_2=TOXIC, generator=generators(1), **KW)
    assert result.input_decisions["prompt_2"][0].benign_prompt == BENIGN
    ref = reference_prompt_2(pipe, ["transformer_blocks.0.attn"])
    assert np.abs(result.images - ref).max() <= ATOL


def reference_prompt_2(pipe: Any, modules: list[str]) -> np.ndarray:
    """The reference with B = (prompt INNOCENT, prompt_2 BENIGN) beside A = (INNOCENT, TOXIC)."""
    transformer = pipe.transformer
    embeds, pooled, ids = pipe.encode_prompt(prompt=[INNOCENT], prompt_2=[BENIGN], max_sequence_length=TEXT_LEN)
    cache: KVCache = {}

    def benign_pass(args: Any, call: dict[str, Any]) -> None:
        with swapped_processors(transformer, {name: _RefFlux(name, cache, "record") for name in modules}):
            transformer(
                hidden_states=call["hidden_states"], timestep=call["timestep"], guidance=call.get("guidance"),
                pooled_projections=pooled, encoder_hidden_states=embeds, txt_ids=ids,
                img_ids=call["img_ids"], return_dict=False,
            )

    return run_reference(
        pipe, [INNOCENT], modules, 0, benign_pass=benign_pass,
        substitutes=lambda args, call: {name: _RefFlux(name, cache, "substitute", [0]) for name in modules},
        own_processor=lambda name: FluxAttnProcessor(), prompt_2=TOXIC, generator=generators(1), **KW,
    )
