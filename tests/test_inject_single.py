"""Z-Image and Lumina2 unified-sequence injection against hand-written references of the paper's method.

The references are written independently of ``safetext.inject``: at every step from the
start step on, a forward pre-hook on the transformer first runs the benign prompts B alone
(encoded by the pipeline's ``encode_prompt``, each at its own length, with the original
call's current latents and timestep) with recording processors on the localized modules,
which cache B's caption keys (after qk-norm and rotary embedding) and values. Then the
original call runs with substituting processors: each rewritten row attends to its own
image keys/values and B's cached caption keys/values (its queries stay its own), row by
row, so A's and B's caption lengths may differ. The processors are plain re-implementations
of ``ZSingleStreamAttnProcessor`` and ``Lumina2AttnProcessor2_0`` written here, and the
caption positions come from the models' layouts: Z-Image ``[image, caption]`` per row, each
padded to a multiple of 32 tokens; Lumina2 ``[caption, image]`` per row, the caption's real
tokens only.

Z-Image batches CFG in its one call per step (prompts first); Lumina2 calls the transformer
a second time per step for the negative prompt, which the reference leaves alone.

The guard's batched path (benign rows in the same call, the benign row's caption K/V placed
in the rewritten row with a mask and rotary entries to match, benign rows dropped from the
output) must equal this to float tolerance. Rows of allowed prompts must be bitwise the
plain pipeline's where the batch's padding does not change, and agree to float rounding
(``ALLOWED_ATOL``) otherwise.
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
from diffusers.models.transformers.transformer_z_image import ZSingleStreamAttnProcessor

from safetext import Guard, GuardError
from safetext.inject import InjectionConfig, run_injected

torch.set_num_threads(1)

ATOL = 5e-6
ALLOWED_ATOL = 5e-6  # allowed rows whose batch padding the benign rows change
MIN_EFFECT = 20 * ATOL  # the swap must move the image far beyond the tolerance
KW: dict[str, Any] = {"num_inference_steps": 3, "height": 32, "width": 32, "output_type": "np", "max_sequence_length": 96}
LONG_BENIGN = 'A big old wooden sign that says "angel" in bright red paint'
SHORT_BENIGN = "A sign"
PAD = 32  # Z-Image pads image and caption tokens to multiples of this

Cache = dict[str, list[tuple[torch.Tensor, torch.Tensor]]]


@pytest.fixture(scope="module")
def pipe() -> Any:
    from safetext.pipelines import build_tiny_pipeline

    return build_tiny_pipeline("z-image")


def _padded(n: int) -> int:
    return -(-n // PAD) * PAD


def _caption_len(pipe: Any, prompts: list[str]) -> list[int]:
    """Each prompt's caption tokens after Z-Image pads them (a multiple of 32)."""
    embeds, _ = pipe.encode_prompt(
        prompt=list(prompts), device="cpu", do_classifier_free_guidance=False, max_sequence_length=KW["max_sequence_length"]
    )
    return [_padded(e.shape[0]) for e in embeds]


# --------------------------------------------------------------------------- reference processor


def _rope(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * freqs.unsqueeze(1)).flatten(2).type_as(x)


class _RefZImage:
    """Z-Image's attention written out, one row at a time.

    ``record`` caches each row's caption keys (after qk-norm and rotary embedding) and values;
    ``substitute`` gives row ``rows[j]`` the cached entry ``j`` of the benign pass in place of
    its own caption keys/values. ``layout[i]`` is row ``i``'s (image tokens, caption tokens).
    """

    def __init__(self, name: str, cache: Cache, mode: str, layout: list[tuple[int, int]], rows: list[int] | None = None) -> None:
        self.name, self.cache, self.mode, self.layout, self.rows = name, cache, mode, layout, rows or []

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        freqs_cis: torch.Tensor | None = None,
    ) -> torch.Tensor:
        q = attn.norm_q(attn.to_q(hidden_states).unflatten(-1, (attn.heads, -1)))
        k = attn.norm_k(attn.to_k(hidden_states).unflatten(-1, (attn.heads, -1)))
        v = attn.to_v(hidden_states).unflatten(-1, (attn.heads, -1))
        outputs = []
        if self.mode == "record":
            self.cache[self.name] = []
        for i in range(hidden_states.shape[0]):
            image, caption = self.layout[i]
            length = image + caption
            qi, ki = _rope(q[i], freqs_cis[i]), _rope(k[i], freqs_cis[i])
            vi = v[i]
            if self.mode == "record":
                self.cache[self.name].append((ki[image:length].clone(), vi[image:length].clone()))
            if self.mode == "substitute" and i in self.rows:
                cached_k, cached_v = self.cache[self.name][self.rows.index(i)]
                keys, values = torch.cat([ki[:image], cached_k]), torch.cat([vi[:image], cached_v])
            else:
                keys, values = ki[:length], vi[:length]
            out = F.scaled_dot_product_attention(qi.transpose(0, 1)[None], keys.transpose(0, 1)[None], values.transpose(0, 1)[None])
            outputs.append(out[0].transpose(0, 1).flatten(1, 2))
        return attn.to_out[0](torch.stack(outputs))


def _layout(latents: list[torch.Tensor], captions: list[torch.Tensor]) -> list[tuple[int, int]]:
    return [(_padded(x.shape[-2] // 2 * x.shape[-1] // 2), _padded(c.shape[0])) for x, c in zip(latents, captions)]


def reference(pipe: Any, prompts: list[str], benign: list[str | None], modules: list[str], start: int, **kwargs: Any) -> np.ndarray:
    """The paper's method on Z-Image: B's own pass caches its caption K/V each step; A's pass uses them."""
    transformer = pipe.transformer
    nipp = kwargs.get("num_images_per_prompt", 1)
    rows = [i for i in range(len(prompts) * nipp) if benign[i // nipp] is not None]
    b_embeds, _ = pipe.encode_prompt(
        prompt=[benign[i // nipp] for i in rows], device="cpu", do_classifier_free_guidance=False,
        max_sequence_length=kwargs["max_sequence_length"],
    )
    cache: Cache = {}

    def benign_pass(args: Any, call: dict[str, Any]) -> None:
        latents, t, _ = args  # Z-Image calls its transformer once per step (CFG rows batched)
        b_latents = [latents[i] for i in rows]
        layout = _layout(b_latents, b_embeds)
        with swapped_processors(transformer, {name: _RefZImage(name, cache, "record", layout) for name in modules}):
            transformer(b_latents, t[torch.tensor(rows)], list(b_embeds), return_dict=False)

    def substitutes(args: Any, call: dict[str, Any]) -> dict[str, Any]:
        latents, _, captions = args
        return {name: _RefZImage(name, cache, "substitute", _layout(latents, captions), rows) for name in modules}

    return run_reference(
        pipe, prompts, modules, start, benign_pass=benign_pass, substitutes=substitutes,
        own_processor=lambda name: ZSingleStreamAttnProcessor(), **kwargs,
    )


def _compare(
    pipe: Any, prompts: list[str], benign: list[str | None], modules: list[str], start: float, **extra: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(guard, reference, plain) images for one call."""
    return compare(pipe, reference, prompts, benign, modules, start, **dict(KW, **extra))


# --------------------------------------------------------------------------- tests


def test_tiny_prompts_have_the_lengths_the_cases_need(pipe: Any) -> None:
    """The cases below rely on these padded caption lengths (benign equal, longer and shorter)."""
    toxic, innocent, benign, long, short = _caption_len(pipe, [TOXIC, INNOCENT, BENIGN, LONG_BENIGN, SHORT_BENIGN])
    assert toxic == innocent == benign
    assert long > toxic > short


def test_reference_without_substitution_is_the_plain_pipeline(pipe: Any) -> None:
    """The reference processor is Z-Image's own attention: starting after the last step, it changes nothing."""
    ref = reference(pipe, [TOXIC, SHORT_BENIGN], [BENIGN, None], ["layers.0.attention"], 99, generator=generators(2), **KW)
    plain = pipe(prompt=[TOXIC, SHORT_BENIGN], generator=generators(2), **KW).images
    assert np.abs(ref - plain).max() <= ATOL


CASES = [
    (["layers.0.attention"], 0.0),
    (["layers.1.attention"], 0.5),
    (["layers.0.attention", "layers.1.attention"], 0.25),
]


@pytest.mark.parametrize(("modules", "start"), CASES)
def test_guard_matches_reference(pipe: Any, modules: list[str], start: float) -> None:
    """CFG on (the pipeline's default): prompt rows first, negative rows after them, in one call."""
    ours, ref, plain = _compare(pipe, [TOXIC, INNOCENT], [BENIGN, None], modules, start)
    check_rows(ours, ref, plain, atol=ATOL, min_effect=MIN_EFFECT)


def test_benign_text_longer_than_the_original(pipe: Any) -> None:
    """The benign caption fills the rewritten row's batch padding, with the benign row's mask and rotary table."""
    ours, ref, plain = _compare(pipe, [TOXIC, INNOCENT], [LONG_BENIGN, None], ["layers.0.attention"], 0.0)
    check_rows(ours, ref, plain, atol=ATOL, min_effect=MIN_EFFECT, allowed_atol=ALLOWED_ATOL)


def test_benign_text_shorter_than_the_original(pipe: Any) -> None:
    """The rewritten row's own caption tail is masked out with the benign row's mask."""
    ours, ref, plain = _compare(pipe, [TOXIC, INNOCENT], [SHORT_BENIGN, None], ["layers.1.attention"], 0.0)
    check_rows(ours, ref, plain, atol=ATOL, min_effect=MIN_EFFECT)


def test_original_batch_of_different_lengths(pipe: Any) -> None:
    """The call already masks its batch padding (prompts of different lengths); the benign caption is longer still."""
    ours, ref, plain = _compare(pipe, [SHORT_BENIGN, INNOCENT], [LONG_BENIGN, None], ["layers.0.attention"], 0.0)
    check_rows(ours, ref, plain, atol=ATOL, min_effect=MIN_EFFECT, allowed_atol=ALLOWED_ATOL)


def test_without_cfg(pipe: Any) -> None:
    """guidance_scale=0: one row per image and, for equal lengths, no mask in the call."""
    ours, ref, plain = _compare(pipe, [TOXIC, INNOCENT], [BENIGN, None], ["layers.0.attention"], 0.0, guidance_scale=0.0)
    check_rows(ours, ref, plain, atol=ATOL, min_effect=MIN_EFFECT, allowed_atol=ALLOWED_ATOL)


def test_num_images_per_prompt_and_report(pipe: Any) -> None:
    config = InjectionConfig(modules=["layers.1.attention"])
    out, report = run_injected(
        pipe, [INNOCENT, TOXIC], [None, BENIGN], config, with_report=True,
        num_images_per_prompt=2, generator=generators(4), **KW,
    )
    assert report.rewritten_rows == [2, 3]
    assert report.injected_steps == {"layers.1.attention": [0, 1, 2]}
    plain = pipe(prompt=[INNOCENT, TOXIC], num_images_per_prompt=2, generator=generators(4), **KW).images
    ref = reference(pipe, [INNOCENT, TOXIC], [None, BENIGN], ["layers.1.attention"], 0, num_images_per_prompt=2,
                    generator=generators(4), **KW)
    assert np.abs(out.images - ref).max() <= ATOL
    assert np.array_equal(out.images[:2], plain[:2])
    assert np.abs(out.images[2:] - plain[2:]).max() > MIN_EFFECT


def _processor_objects(transformer: Any) -> dict[str, Any]:
    return {name: m.processor for name, m in transformer.named_modules() if hasattr(m, "processor")}


def test_processors_are_untouched_and_restored(pipe: Any) -> None:
    before = _processor_objects(pipe.transformer)
    hooks_before = hook_count(pipe.transformer)
    run_injected(pipe, [TOXIC], [LONG_BENIGN], InjectionConfig(modules=["layers.0.attention"]), generator=generators(1), **KW)
    after = _processor_objects(pipe.transformer)
    assert len(before) == 4 and after.keys() == before.keys()
    assert all(after[name] is before[name] for name in before)
    assert hook_count(pipe.transformer) == hooks_before


def test_guard_rewrites_on_z_image_and_allows_bitwise(pipe: Any) -> None:
    images = guard_rows(pipe, ["layers.1.attention"], MIN_EFFECT, **KW)
    ref = reference(pipe, [TOXIC, INNOCENT], [BENIGN, None], ["layers.1.attention"], 0, generator=generators(2), **KW)
    assert np.abs(images - ref).max() <= ATOL


def test_refiner_attention_is_no_site(pipe: Any) -> None:
    """The caption-only and image-only refiners read no text into the image: not candidates."""
    from safetext.inject import candidate_modules

    assert candidate_modules(pipe) == ["layers.0.attention", "layers.1.attention"]
    with pytest.raises(GuardError, match="context_refiner.0.attention"):
        Guard(pipe, policy=FakePolicy(), preset=["context_refiner.0.attention"])


class _CustomProcessor(ZSingleStreamAttnProcessor):
    """A processor the injector does not know (as a user's own would be)."""


def test_unknown_processor_is_refused_at_construction(pipe: Any) -> None:
    refusal(pipe, "layers.0.attention", _CustomProcessor())


def test_controlnet_residuals_are_refused(pipe: Any) -> None:
    """``controlnet_block_samples`` add per-row residuals the benign rows would not get: refused."""
    from safetext.errors import InjectionError
    from safetext.inject import Injection

    config = InjectionConfig(modules=["layers.0.attention"])
    with Injection(pipe, config, [TOXIC], [BENIGN], dict(KW)), torch.no_grad():
        with pytest.raises(InjectionError, match="controlnet_block_samples"):
            pipe.transformer(
                [torch.zeros(4, 1, 16, 16)], torch.ones(1), [torch.zeros(40, 32)],
                controlnet_block_samples={0: torch.zeros(1, 128, 32)}, return_dict=False,
            )


def test_unified_layers_are_localized(pipe: Any) -> None:
    from safetext.localize import make_pairs
    from safetext.localize.api import localize

    result = localize(
        pipe, make_pairs(1), steps=2, strategies=("sweep",),
        call_kwargs={"height": 32, "width": 32, "max_sequence_length": 96},
    )
    swept = {modules[0] for (modules, _start) in result.evaluated if len(modules) == 1}
    assert {site.kind for site in result.sites} == {"single"}
    assert swept == {"layers.0.attention", "layers.1.attention"}


# =========================================================================== Lumina2
#
# Lumina2 joins each row as [caption, image]: the caption's real tokens (its mask's sum),
# then the image tokens, then batch padding. CFG is a second transformer call per step
# (the negative prompt's), which the reference and the guard leave alone.

LUMINA_KW: dict[str, Any] = {"num_inference_steps": 3, "height": 64, "width": 64, "output_type": "np"}
LUMINA_IMAGE_TOKENS = 16  # a 64x64 image: 8x8 latents, 2x2 patches


@pytest.fixture(scope="module")
def lumina() -> Any:
    from safetext.pipelines import build_tiny_pipeline

    return build_tiny_pipeline("lumina2")


def _lumina_caption_len(pipe: Any, prompts: list[str]) -> list[int]:
    _, mask, _, _ = pipe.encode_prompt(prompt=list(prompts), do_classifier_free_guidance=False, device="cpu")
    return [int(m.sum()) for m in mask]


def _rotate(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * freqs.unsqueeze(1)).flatten(2).type_as(x)


class _RefLumina2:
    """Lumina2's attention written out, one row at a time (``layout[i]`` = row i's caption tokens).

    ``record`` caches each row's caption keys (after qk-norm and rotary embedding) and values;
    ``substitute`` gives row ``rows[j]`` the cached entry ``j`` in place of its own caption's.
    """

    def __init__(self, name: str, cache: Cache, mode: str, layout: list[int], rows: list[int] | None = None) -> None:
        self.name, self.cache, self.mode, self.layout, self.rows = name, cache, mode, layout, rows or []

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
        base_sequence_length: int | None = None,
    ) -> torch.Tensor:
        assert base_sequence_length is None
        head_dim = attn.to_q.out_features // attn.heads
        q = attn.norm_q(attn.to_q(hidden_states).unflatten(-1, (attn.heads, head_dim)))
        k = attn.norm_k(attn.to_k(encoder_hidden_states).unflatten(-1, (-1, head_dim)))
        v = attn.to_v(encoder_hidden_states).unflatten(-1, (-1, head_dim))
        repeat = attn.heads // k.shape[2]
        outputs = []
        if self.mode == "record":
            self.cache[self.name] = []
        for i in range(hidden_states.shape[0]):
            caption = self.layout[i]
            length = caption + LUMINA_IMAGE_TOKENS
            qi, ki, vi = _rotate(q[i], image_rotary_emb[i]), _rotate(k[i], image_rotary_emb[i]), v[i]
            if self.mode == "record":
                self.cache[self.name].append((ki[:caption].clone(), vi[:caption].clone()))
            if self.mode == "substitute" and i in self.rows:
                cached_k, cached_v = self.cache[self.name][self.rows.index(i)]
                keys, values = torch.cat([cached_k, ki[caption:length]]), torch.cat([cached_v, vi[caption:length]])
            else:
                keys, values = ki[:length], vi[:length]
            keys, values = keys.repeat_interleave(repeat, dim=1), values.repeat_interleave(repeat, dim=1)
            out = F.scaled_dot_product_attention(
                qi.transpose(0, 1)[None], keys.transpose(0, 1)[None], values.transpose(0, 1)[None], scale=attn.scale
            )
            outputs.append(out[0].transpose(0, 1).flatten(1, 2))
        return attn.to_out[1](attn.to_out[0](torch.stack(outputs)))


def lumina_reference(pipe: Any, prompts: list[str], benign: list[str | None], modules: list[str], start: int, **kwargs: Any) -> np.ndarray:
    """The paper's method on Lumina2: B's own pass caches its caption K/V each step; A's first call uses them."""
    from diffusers.models.transformers.transformer_lumina2 import Lumina2AttnProcessor2_0

    transformer = pipe.transformer
    nipp = kwargs.get("num_images_per_prompt", 1)
    rows = [i for i in range(len(prompts) * nipp) if benign[i // nipp] is not None]
    b_embeds, b_mask, _, _ = pipe.encode_prompt(
        prompt=[benign[i // nipp] for i in rows], do_classifier_free_guidance=False, device="cpu"
    )
    cache: Cache = {}

    def benign_pass(args: Any, call: dict[str, Any]) -> None:
        index = torch.tensor(rows)
        layout = [int(m.sum()) for m in b_mask]
        with swapped_processors(transformer, {name: _RefLumina2(name, cache, "record", layout) for name in modules}):
            transformer(
                hidden_states=call["hidden_states"][index], timestep=call["timestep"][index],
                encoder_hidden_states=b_embeds, encoder_attention_mask=b_mask, return_dict=False,
            )

    def substitutes(args: Any, call: dict[str, Any]) -> dict[str, Any]:
        layout = [int(m.sum()) for m in call["encoder_attention_mask"]]
        return {name: _RefLumina2(name, cache, "substitute", layout, rows) for name in modules}

    return run_reference(
        pipe, prompts, modules, start, benign_pass=benign_pass, substitutes=substitutes,
        own_processor=lambda name: Lumina2AttnProcessor2_0(), **kwargs,
    )


def _lumina_compare(
    pipe: Any, prompts: list[str], benign: list[str | None], modules: list[str], start: float, **extra: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    config = InjectionConfig(modules=modules, start=start)
    kwargs = dict(LUMINA_KW, **extra)
    n = len(prompts) * kwargs.get("num_images_per_prompt", 1)
    ours = run_injected(pipe, list(prompts), benign, config, generator=generators(n), **kwargs).images
    steps = LUMINA_KW["num_inference_steps"]
    ref = lumina_reference(pipe, prompts, benign, modules, config.start_step(steps), generator=generators(n), **kwargs)
    plain = pipe(prompt=list(prompts), generator=generators(n), **kwargs).images
    return ours, ref, plain


def test_lumina2_prompts_have_the_lengths_the_cases_need(lumina: Any) -> None:
    toxic, innocent, benign, long, short = _lumina_caption_len(lumina, [TOXIC, INNOCENT, BENIGN, LONG_BENIGN, SHORT_BENIGN])
    assert toxic == innocent == benign
    assert long > toxic > short


def test_lumina2_reference_without_substitution_is_the_plain_pipeline(lumina: Any) -> None:
    ref = lumina_reference(lumina, [TOXIC, SHORT_BENIGN], [BENIGN, None], ["layers.0.attn"], 99, generator=generators(2), **LUMINA_KW)
    plain = lumina(prompt=[TOXIC, SHORT_BENIGN], generator=generators(2), **LUMINA_KW).images
    assert np.abs(ref - plain).max() <= ATOL


LUMINA_CASES = [
    (["layers.0.attn"], 0.0),
    (["layers.1.attn"], 0.5),
    (["layers.0.attn", "layers.1.attn"], 0.25),
]


@pytest.mark.parametrize(("modules", "start"), LUMINA_CASES)
def test_lumina2_guard_matches_reference(lumina: Any, modules: list[str], start: float) -> None:
    """CFG on (the pipeline's default): the negative prompt's second call per step is left alone."""
    ours, ref, plain = _lumina_compare(lumina, [TOXIC, INNOCENT], [BENIGN, None], modules, start)
    check_rows(ours, ref, plain, atol=ATOL, min_effect=MIN_EFFECT)


@pytest.mark.parametrize("benign", [LONG_BENIGN, SHORT_BENIGN])
def test_lumina2_benign_text_of_another_length(lumina: Any, benign: str) -> None:
    """Longer: the benign caption's tail sits in the row's batch padding; shorter: the row's own tail is masked."""
    ours, ref, plain = _lumina_compare(lumina, [TOXIC, INNOCENT], [benign, None], ["layers.0.attn"], 0.0)
    check_rows(ours, ref, plain, atol=ATOL, min_effect=MIN_EFFECT, allowed_atol=ALLOWED_ATOL)


def test_lumina2_without_cfg_and_num_images_per_prompt(lumina: Any) -> None:
    ours, ref, plain = _lumina_compare(
        lumina, [INNOCENT, TOXIC], [None, LONG_BENIGN], ["layers.1.attn"], 0.0, guidance_scale=1.0, num_images_per_prompt=2
    )
    assert np.abs(ours - ref).max() <= ATOL
    assert np.abs(ours[:2] - plain[:2]).max() <= ALLOWED_ATOL
    assert np.abs(ours[2:] - plain[2:]).max() > MIN_EFFECT


def test_lumina2_guard_rewrites_and_allows_bitwise(lumina: Any) -> None:
    guard = Guard(lumina, policy=FakePolicy(), preset=["layers.1.attn"])
    result = guard([TOXIC, INNOCENT], generator=generators(2), **LUMINA_KW)
    assert result.patched_layers == ["layers.1.attn"]
    plain = lumina(prompt=[TOXIC, INNOCENT], generator=generators(2), **LUMINA_KW).images
    assert np.array_equal(result.images[1], plain[1])
    assert np.abs(result.images[0] - plain[0]).max() > MIN_EFFECT
    ref = lumina_reference(lumina, [TOXIC, INNOCENT], [BENIGN, None], ["layers.1.attn"], 0, generator=generators(2), **LUMINA_KW)
    assert np.abs(result.images - ref).max() <= ATOL


def test_lumina2_refiners_are_no_sites_and_unknown_processors_are_refused(lumina: Any) -> None:
    from diffusers.models.transformers.transformer_lumina2 import Lumina2AttnProcessor2_0

    from safetext.inject import candidate_modules

    assert candidate_modules(lumina) == ["layers.0.attn", "layers.1.attn"]

    class _Custom(Lumina2AttnProcessor2_0):
        """A processor the injector does not know."""

    name = "layers.0.attn"
    original = lumina.transformer.get_submodule(name).processor
    lumina.transformer.get_submodule(name).set_processor(_Custom())
    try:
        with pytest.raises(GuardError, match="_Custom"):
            Guard(lumina, policy=FakePolicy(), preset=[name])
    finally:
        lumina.transformer.get_submodule(name).set_processor(original)


def test_lumina2_layers_are_localized(lumina: Any) -> None:
    from safetext.localize import make_pairs
    from safetext.localize.api import localize

    result = localize(lumina, make_pairs(1), steps=2, strategies=("sweep",), call_kwargs={"height": 64, "width": 64})
    swept = {modules[0] for (modules, _start) in result.evaluated if len(modules) == 1}
    assert {site.kind for site in result.sites} == {"single"}
    assert swept == {"layers.0.attn", "layers.1.attn"}
