"""Qwen-Image double-stream injection against a hand-written reference of the paper's method.

The reference is written independently of ``safetext.inject``: at every step from the
start step on, a forward pre-hook on the transformer first runs the benign prompts B alone
(encoded by the pipeline's ``encode_prompt`` with B's own text mask and length, the
original call's current latents and timestep) with recording processors on the localized
modules, which cache B's text keys (after qk-norm and B's text rotary embedding), values
and text mask. Then the original call runs with substituting processors: each rewritten
row attends to B's cached text keys/values under B's mask (text queries and image tokens
stay the row's own), row by row, so B's and A's text lengths may differ. The processor is a
plain re-implementation of ``QwenDoubleStreamAttnProcessor2_0`` written here.

The guard's batched path (benign rows in the same call, both texts padded to the longer
one, the mask carried with the keys, benign rows dropped after the last localized block)
must equal this to float tolerance. Rows of allowed prompts must be bitwise the plain
pipeline's when the original rows get no padding; when the benign text is the longer one
they are padded and masked, and agree to float rounding (``ALLOWED_ATOL``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _inject_helpers import BENIGN, INNOCENT, TOXIC, FakePolicy
from _reference import (
    check_rows, compare, generators, guard_rows, hook_count, refusal, run_reference, swapped_processors,
)
from diffusers import QwenImageTransformer2DModel
from diffusers.models.transformers.transformer_qwenimage import (
    QwenDoubleStreamAttnProcessor2_0,
    apply_rotary_emb_qwen,
)

from safetext import Guard, GuardError
from safetext.inject import InjectionConfig, run_injected

torch.set_num_threads(1)

ATOL = 5e-6
ALLOWED_ATOL = 5e-6  # allowed rows whose text the guard pads (benign text longer than theirs)
MIN_EFFECT = 20 * ATOL  # the swap must move the image far beyond the tolerance
KW: dict[str, Any] = {"num_inference_steps": 4, "height": 32, "width": 32, "output_type": "np", "max_sequence_length": 64}
LONG_BENIGN = 'A big wooden sign that says "angel" in red'
SHORT_BENIGN = "A sign"

Cache = dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@pytest.fixture(scope="module")
def pipe() -> Any:
    from safetext.pipelines import build_tiny_pipeline

    return build_tiny_pipeline("qwen-image")


def _text_len(pipe: Any, prompts: list[str]) -> list[int]:
    """Each prompt's own token count after the template is dropped (its mask's sum)."""
    lengths = []
    for prompt in prompts:
        embeds, _ = pipe.encode_prompt(prompt=[prompt], device="cpu", max_sequence_length=KW["max_sequence_length"])
        lengths.append(embeds.shape[1])
    return lengths


# --------------------------------------------------------------------------- reference processor


class _RefQwen:
    """Qwen-Image's double-stream attention written out, one row at a time.

    ``record`` caches the text keys (after qk-norm and rotary embedding), values and mask;
    ``substitute`` gives row ``rows[j]`` the cached entry ``j`` of the benign pass.
    """

    def __init__(self, name: str, cache: Cache, mode: str, rows: list[int] | None = None) -> None:
        self.name, self.cache, self.mode, self.rows = name, cache, mode, rows or []

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_states_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: Any = None,
    ) -> Any:
        assert attention_mask is None
        heads = (-1, attn.inner_dim // attn.heads)
        q = attn.norm_q(attn.to_q(hidden_states).unflatten(-1, heads))
        k = attn.norm_k(attn.to_k(hidden_states).unflatten(-1, heads))
        v = attn.to_v(hidden_states).unflatten(-1, heads)
        tq = attn.norm_added_q(attn.add_q_proj(encoder_hidden_states).unflatten(-1, heads))
        tk = attn.norm_added_k(attn.add_k_proj(encoder_hidden_states).unflatten(-1, heads))
        tv = attn.add_v_proj(encoder_hidden_states).unflatten(-1, heads)
        img_freqs, txt_freqs = image_rotary_emb
        q, k = apply_rotary_emb_qwen(q, img_freqs, use_real=False), apply_rotary_emb_qwen(k, img_freqs, use_real=False)
        tq, tk = apply_rotary_emb_qwen(tq, txt_freqs, use_real=False), apply_rotary_emb_qwen(tk, txt_freqs, use_real=False)
        n, n_text = encoder_hidden_states.shape[:2]
        mask = encoder_hidden_states_mask
        mask = torch.ones(n, n_text, dtype=torch.bool) if mask is None else mask.bool()
        if self.mode == "record":
            self.cache[self.name] = (tk.clone(), tv.clone(), mask.clone())
        text_out, image_out = [], []
        for i in range(n):
            key, value, key_mask = tk[i], tv[i], mask[i]
            if self.mode == "substitute" and i in self.rows:
                cached_k, cached_v, cached_mask = self.cache[self.name]
                j = self.rows.index(i)
                key, value, key_mask = cached_k[j], cached_v[j], cached_mask[j]
            joint_q = torch.cat([tq[i], q[i]]).transpose(0, 1)[None]
            joint_k = torch.cat([key, k[i]]).transpose(0, 1)[None]
            joint_v = torch.cat([value, v[i]]).transpose(0, 1)[None]
            keep = torch.cat([key_mask, torch.ones(k.shape[1], dtype=torch.bool)])
            out = F.scaled_dot_product_attention(joint_q, joint_k, joint_v, attn_mask=keep[None, None, None, :])
            out = out[0].transpose(0, 1).flatten(1, 2)
            text_out.append(out[:n_text])
            image_out.append(out[n_text:])
        image = attn.to_out[1](attn.to_out[0](torch.stack(image_out)))
        return image, attn.to_add_out(torch.stack(text_out))


def reference(pipe: Any, prompts: list[str], benign: list[str | None], modules: list[str], start: int, **kwargs: Any) -> np.ndarray:
    """The paper's method on Qwen-Image: B's own pass caches its text K/V and mask each step; A's pass uses them."""
    transformer = pipe.transformer
    rows = [i for i, b in enumerate(benign) if b is not None]
    b_embeds, b_mask = pipe.encode_prompt(
        prompt=[benign[i] for i in rows], device="cpu", max_sequence_length=kwargs["max_sequence_length"]
    )
    cache: Cache = {}

    def benign_pass(args: Any, call: dict[str, Any]) -> None:
        index = torch.tensor(rows)
        with swapped_processors(transformer, {name: _RefQwen(name, cache, "record") for name in modules}):
            transformer(
                hidden_states=call["hidden_states"][index],
                timestep=call["timestep"][index],
                guidance=None if call.get("guidance") is None else call["guidance"][index],
                encoder_hidden_states=b_embeds,
                encoder_hidden_states_mask=b_mask,
                img_shapes=[call["img_shapes"][0]] * len(rows),
                return_dict=False,
            )

    return run_reference(
        pipe, prompts, modules, start, benign_pass=benign_pass,
        substitutes=lambda args, call: {name: _RefQwen(name, cache, "substitute", rows) for name in modules},
        own_processor=lambda name: QwenDoubleStreamAttnProcessor2_0(), **kwargs,
    )


def _compare(
    pipe: Any, prompts: list[str], benign: list[str | None], modules: list[str], start: float, **extra: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(guard, reference, plain) images for one call."""
    return compare(pipe, reference, prompts, benign, modules, start, **dict(KW, **extra))


# --------------------------------------------------------------------------- tests


def test_tiny_prompts_have_the_lengths_the_cases_need(pipe: Any) -> None:
    """The cases below rely on these token counts (benign equal, longer and shorter than the original)."""
    toxic, innocent, benign, long, short = _text_len(pipe, [TOXIC, INNOCENT, BENIGN, LONG_BENIGN, SHORT_BENIGN])
    assert toxic == innocent == benign
    assert long > toxic > short


CASES = [
    (["transformer_blocks.0.attn"], 0.0),
    (["transformer_blocks.1.attn"], 0.5),
    (["transformer_blocks.0.attn", "transformer_blocks.1.attn"], 0.25),
]


@pytest.mark.parametrize(("modules", "start"), CASES)
def test_guard_matches_reference(pipe: Any, modules: list[str], start: float) -> None:
    ours, ref, plain = _compare(pipe, [TOXIC, INNOCENT], [BENIGN, None], modules, start)
    check_rows(ours, ref, plain, atol=ATOL, min_effect=MIN_EFFECT)


def test_benign_text_longer_than_the_original(pipe: Any) -> None:
    """The original rows are padded (and get a mask); the rewritten one attends to all of B's tokens."""
    ours, ref, plain = _compare(pipe, [TOXIC, INNOCENT], [LONG_BENIGN, None], ["transformer_blocks.0.attn"], 0.0)
    check_rows(ours, ref, plain, atol=ATOL, min_effect=MIN_EFFECT, allowed_atol=ALLOWED_ATOL)


def test_benign_text_shorter_than_the_original(pipe: Any) -> None:
    """B's rows are padded and masked; the original rows keep their shape, and an all-true mask adds 0 to every score."""
    ours, ref, plain = _compare(pipe, [TOXIC, INNOCENT], [SHORT_BENIGN, None], ["transformer_blocks.1.attn"], 0.0)
    check_rows(ours, ref, plain, atol=ATOL, min_effect=MIN_EFFECT)


def test_original_batch_already_masked(pipe: Any) -> None:
    """Prompts of different lengths: the pipeline's own mask, padded further for the longer benign text."""
    prompts = [TOXIC, SHORT_BENIGN]
    ours, ref, plain = _compare(pipe, prompts, [LONG_BENIGN, None], ["transformer_blocks.0.attn"], 0.0)
    check_rows(ours, ref, plain, atol=ATOL, min_effect=MIN_EFFECT, allowed_atol=ALLOWED_ATOL)


def test_true_cfg_negative_call_is_left_alone(pipe: Any) -> None:
    extra = {"negative_prompt": "blurry", "true_cfg_scale": 2.0}
    ours, ref, plain = _compare(pipe, [TOXIC], [BENIGN], ["transformer_blocks.1.attn"], 0.0, **extra)
    assert np.abs(ours - ref).max() <= ATOL
    assert np.abs(ours - plain).max() > MIN_EFFECT


def test_num_images_per_prompt_and_report(pipe: Any) -> None:
    config = InjectionConfig(modules=["transformer_blocks.1.attn"])
    out, report = run_injected(
        pipe, [INNOCENT, TOXIC], [None, BENIGN], config, with_report=True,
        num_images_per_prompt=2, generator=generators(4), **KW,
    )
    assert report.rewritten_rows == [2, 3]
    assert report.injected_steps == {"transformer_blocks.1.attn": [0, 1, 2, 3]}
    plain = pipe(prompt=[INNOCENT, TOXIC], num_images_per_prompt=2, generator=generators(4), **KW).images
    assert np.array_equal(out.images[:2], plain[:2])
    assert np.abs(out.images[2:] - plain[2:]).max() > MIN_EFFECT


def test_processors_are_untouched_and_restored(pipe: Any) -> None:
    before = dict(pipe.transformer.attn_processors)
    hooks_before = hook_count(pipe.transformer)
    run_injected(pipe, [TOXIC], [LONG_BENIGN], InjectionConfig(modules=["transformer_blocks.0.attn"]), generator=generators(1), **KW)
    assert dict(pipe.transformer.attn_processors) == before
    assert hook_count(pipe.transformer) == hooks_before


def test_guard_rewrites_on_qwen_image_and_allows_bitwise(pipe: Any) -> None:
    images = guard_rows(pipe, ["transformer_blocks.1.attn"], MIN_EFFECT, **KW)
    ref = reference(pipe, [TOXIC, INNOCENT], [BENIGN, None], ["transformer_blocks.1.attn"], 0, generator=generators(2), **KW)
    assert np.abs(images - ref).max() <= ATOL


class _CustomProcessor(QwenDoubleStreamAttnProcessor2_0):
    """A processor the injector does not know (as a user's own would be)."""


def test_unknown_processor_is_refused_at_construction(pipe: Any) -> None:
    refusal(pipe, "transformer_blocks.0.attn", _CustomProcessor())


def test_zero_cond_t_is_refused_at_construction() -> None:
    """Qwen-Image-Edit's ``zero_cond_t`` layout doubles ``temb``'s rows; the hooks do not know it."""
    transformer = QwenImageTransformer2DModel(
        patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=(4, 6, 6), zero_cond_t=True,
    )
    fake = type("QwenImagePipeline", (), {"transformer": transformer})()
    with pytest.raises(GuardError, match="zero_cond_t"):
        Guard(fake, policy=FakePolicy(), preset=["transformer_blocks.0.attn"])


def test_double_stream_modules_are_localized(pipe: Any) -> None:
    from safetext.localize import make_pairs
    from safetext.localize.api import localize

    result = localize(
        pipe, make_pairs(1), steps=2, strategies=("sweep",),
        call_kwargs={"height": 32, "width": 32, "max_sequence_length": 64},
    )
    swept = {modules[0] for (modules, _start) in result.evaluated if len(modules) == 1}
    assert {site.kind for site in result.sites} == {"joint"}
    assert swept == {"transformer_blocks.0.attn", "transformer_blocks.1.attn"}


def test_controlnet_residuals_are_refused(pipe: Any) -> None:
    """``controlnet_block_samples`` add per-row residuals the benign rows would not get: refused."""
    from safetext.errors import InjectionError
    from safetext.inject import Injection

    embeds, mask = pipe.encode_prompt(prompt=[TOXIC], device="cpu", max_sequence_length=KW["max_sequence_length"])
    config = InjectionConfig(modules=["transformer_blocks.0.attn"])
    with Injection(pipe, config, [TOXIC], [BENIGN], dict(KW)), torch.no_grad():
        with pytest.raises(InjectionError, match="controlnet_block_samples"):
            pipe.transformer(
                hidden_states=torch.zeros(1, 16, 16), encoder_hidden_states=embeds, encoder_hidden_states_mask=mask,
                timestep=torch.ones(1), img_shapes=[[(1, 4, 4)]], controlnet_block_samples=[torch.zeros(1, 16, 32)],
                return_dict=False,
            )
