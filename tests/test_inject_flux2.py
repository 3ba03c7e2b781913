"""FLUX.2 double- and single-stream injection against a hand-written reference of the paper's method.

The tiny ``Flux2KleinPipeline`` runs classifier-free guidance as a second transformer call per
step (the empty negative prompt), which the injection leaves alone.

The reference is written independently of ``safetext.inject``: at every step from the start
step on, a forward pre-hook on the transformer first runs the benign prompt B alone (its
Qwen3 embeddings and text ids, the original call's current latents and timestep) with
recording processors on the localized modules, which cache B's text keys and values
(double-stream: the ``add_k_proj``/``add_v_proj`` outputs after qk-norm; single-stream: the
K and V parts of ``to_qkv_mlp_proj`` at the text positions, after qk-norm). Then the
prompt's call runs with substituting processors that put the cached K/V in place of the
rewritten rows' text K/V; the negative prompt's call runs with the plain processors. Both
processors are plain re-implementations of FLUX.2's attention written here.

The guard's batched path (benign rows in the same call, dropped after the last localized
block) must equal this to float tolerance, rows of allowed prompts must be bitwise the plain
pipeline's, and taking a piece out of the injection must break the agreement.
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
from diffusers.models.transformers.transformer_flux2 import (
    Flux2AttnProcessor,
    Flux2KVAttnProcessor,
    Flux2KVParallelSelfAttnProcessor,
    Flux2ParallelSelfAttnProcessor,
)

from safetext import Guard, GuardError
from safetext.errors import InjectionError
from safetext.inject import Injection, InjectionConfig, run_injected
from safetext.inject.streams import StreamHooks

torch.set_num_threads(1)

ATOL = 5e-6
MIN_EFFECT = 20 * ATOL  # the swap must move the image far beyond the tolerance
TEXT_LEN = 64  # the chat-templated prompts are 48 tokens: no truncation
KW: dict[str, Any] = {
    "num_inference_steps": 3,
    "height": 32,
    "width": 32,
    "output_type": "np",
    "max_sequence_length": TEXT_LEN,
}

@pytest.fixture(scope="module")
def pipe() -> Any:
    from safetext.pipelines import build_tiny_pipeline

    return build_tiny_pipeline("flux2")


@pytest.fixture(scope="module")
def dev() -> Any:
    """FLUX.2 [dev]: Mistral3 text in a system-prompt conversation, guidance embedded per row."""
    from safetext.pipelines import build_tiny_pipeline

    return build_tiny_pipeline("flux2-dev")


# --------------------------------------------------------------------------- reference processors


class _RefFlux2(TextKV):
    """FLUX.2 attention written out (both block kinds); ``record`` caches text K/V, ``substitute`` swaps them in."""

    @staticmethod
    def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rotary: Any) -> torch.Tensor:
        q = apply_rotary_emb(q, rotary, sequence_dim=1)
        k = apply_rotary_emb(k, rotary, sequence_dim=1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2).flatten(2, 3).to(q.dtype)


class _RefDouble(_RefFlux2):
    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: Any = None,
    ) -> Any:
        heads = (-1, attn.head_dim)
        q = attn.norm_q(attn.to_q(hidden_states).unflatten(-1, heads))
        k = attn.norm_k(attn.to_k(hidden_states).unflatten(-1, heads))
        v = attn.to_v(hidden_states).unflatten(-1, heads)
        eq = attn.norm_added_q(attn.add_q_proj(encoder_hidden_states).unflatten(-1, heads))
        ek = attn.norm_added_k(attn.add_k_proj(encoder_hidden_states).unflatten(-1, heads))
        ev = attn.add_v_proj(encoder_hidden_states).unflatten(-1, heads)
        ek, ev = self.text_kv(ek, ev)
        out = self._attend(torch.cat([eq, q], 1), torch.cat([ek, k], 1), torch.cat([ev, v], 1), image_rotary_emb)
        n_text = encoder_hidden_states.shape[1]
        text, image = out[:, :n_text], out[:, n_text:]
        return attn.to_out[1](attn.to_out[0](image)), attn.to_add_out(text)


class _RefSingle(_RefFlux2):
    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: Any = None,
    ) -> torch.Tensor:
        projected = attn.to_qkv_mlp_proj(hidden_states)
        inner = attn.inner_dim
        q, k, v = (projected[..., i * inner : (i + 1) * inner].unflatten(-1, (-1, attn.head_dim)) for i in range(3))
        mlp = projected[..., 3 * inner :]
        q, k = attn.norm_q(q), attn.norm_k(k)
        tk, tv = self.text_kv(k[:, :TEXT_LEN], v[:, :TEXT_LEN])  # text tokens come first in the joined sequence
        k, v = torch.cat([tk, k[:, TEXT_LEN:]], 1), torch.cat([tv, v[:, TEXT_LEN:]], 1)
        out = self._attend(q, k, v, image_rotary_emb)
        return attn.to_out(torch.cat([out, attn.mlp_act_fn(mlp)], dim=-1))


def _ref(name: str, cache: KVCache, mode: str, rows: list[int] | None = None) -> _RefFlux2:
    cls = _RefSingle if name.startswith("single_transformer_blocks.") else _RefDouble
    return cls(name, cache, mode, rows)


def _plain(name: str) -> Any:
    return Flux2ParallelSelfAttnProcessor() if name.startswith("single_transformer_blocks.") else Flux2AttnProcessor()


def reference(
    pipe: Any,
    prompts: list[str],
    benign: list[str | None],
    modules: list[str],
    start: int,
    nipp: int = 1,
    **kwargs: Any,
) -> np.ndarray:
    """The paper's method on FLUX.2: B's own pass caches its text K/V each step; A's pass uses them."""
    transformer = pipe.transformer
    rewritten = [i for i, b in enumerate(benign) if b is not None]
    rows = [i * nipp + j for i in rewritten for j in range(nipp)]
    b_embeds, b_ids = pipe.encode_prompt(
        prompt=[benign[i] for i in rewritten],
        num_images_per_prompt=nipp,
        max_sequence_length=kwargs["max_sequence_length"],
    )
    cache: KVCache = {}

    def benign_pass(args: Any, call: dict[str, Any]) -> None:
        index = torch.tensor(rows)
        with swapped_processors(transformer, {name: _ref(name, cache, "record") for name in modules}):
            transformer(
                hidden_states=call["hidden_states"][index],
                timestep=call["timestep"][index],
                guidance=None if call.get("guidance") is None else call["guidance"][index],
                encoder_hidden_states=b_embeds,
                txt_ids=b_ids,
                img_ids=call["img_ids"][index],
                return_dict=False,
            )

    return run_reference(
        pipe, prompts, modules, start, benign_pass=benign_pass,
        substitutes=lambda args, call: {name: _ref(name, cache, "substitute", rows) for name in modules},
        own_processor=_plain, num_images_per_prompt=nipp, **kwargs,
    )


CASES = [
    (["transformer_blocks.0.attn"], 0.0),
    (["transformer_blocks.1.attn"], 0.5),
    (["single_transformer_blocks.0.attn"], 0.0),
    (["single_transformer_blocks.1.attn"], 0.34),
    (["transformer_blocks.1.attn", "single_transformer_blocks.0.attn"], 0.0),
]


@pytest.mark.parametrize(("modules", "start"), CASES)
def test_guard_matches_reference(pipe: Any, modules: list[str], start: float) -> None:
    ours, ref, plain = compare(pipe, reference, [TOXIC, INNOCENT], [BENIGN, None], modules, start, **KW)
    check_rows(ours, ref, plain, atol=ATOL, min_effect=MIN_EFFECT)


@pytest.mark.parametrize(
    ("modules", "start"),
    [
        (["transformer_blocks.1.attn", "single_transformer_blocks.0.attn"], 0.0),
        (["single_transformer_blocks.1.attn"], 0.34),
    ],
)
@pytest.mark.slow  # builds and runs a second pipeline (FLUX.2 [dev])
def test_dev_guard_matches_reference(dev: Any, modules: list[str], start: float) -> None:
    """The same transformer under ``Flux2Pipeline``: one call per step, the guidance embedding copied per row."""
    config = InjectionConfig(modules=modules, start=start)
    prompts, benign = [INNOCENT, TOXIC], [None, BENIGN]
    ours = run_injected(dev, prompts, benign, config, generator=generators(2), **KW).images
    ref = reference(
        dev, prompts, benign, modules, config.start_step(KW["num_inference_steps"]), generator=generators(2), **KW
    )
    plain = dev(prompt=prompts, generator=generators(2), **KW).images
    assert np.abs(ours - ref).max() <= ATOL
    assert np.abs(ours[1] - plain[1]).max() > MIN_EFFECT
    assert np.array_equal(ours[0], plain[0])


@pytest.mark.slow  # encodes a reference image; three more generations
def test_reference_image_tokens_ride_along(pipe: Any) -> None:
    """With ``image=`` the pipeline appends the reference image's tokens to the latents; the benign
    rows copy them with the latents, and the text still comes first in the single stream."""
    from PIL import Image

    image = Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype("uint8"))
    modules = ["transformer_blocks.1.attn", "single_transformer_blocks.1.attn"]
    extra = dict(KW, image=image)
    prompts, benign = [TOXIC, INNOCENT], [BENIGN, None]
    ours = run_injected(
        pipe, prompts, benign, InjectionConfig(modules=modules), generator=generators(2), **extra
    ).images
    ref = reference(pipe, prompts, benign, modules, 0, generator=generators(2), **extra)
    plain = pipe(prompt=prompts, generator=generators(2), **extra).images
    check_rows(ours, ref, plain, atol=ATOL, min_effect=MIN_EFFECT)


def test_without_cfg_the_single_call_is_injected(pipe: Any) -> None:
    modules = ["transformer_blocks.0.attn", "single_transformer_blocks.1.attn"]
    extra = dict(KW, guidance_scale=1.0)
    ours = run_injected(
        pipe, [TOXIC], [BENIGN], InjectionConfig(modules=modules), generator=generators(1), **extra
    ).images
    ref = reference(pipe, [TOXIC], [BENIGN], modules, 0, generator=generators(1), **extra)
    assert np.abs(ours - ref).max() <= ATOL


def test_num_images_per_prompt_and_report(pipe: Any) -> None:
    modules = ["single_transformer_blocks.1.attn"]
    out, report = run_injected(
        pipe,
        [INNOCENT, TOXIC],
        [None, BENIGN],
        InjectionConfig(modules=modules),
        with_report=True,
        num_images_per_prompt=2,
        generator=generators(4),
        **KW,
    )
    assert report.rewritten_rows == [2, 3]
    assert report.injected_steps == {modules[0]: [0, 1, 2]}
    ref = reference(pipe, [INNOCENT, TOXIC], [None, BENIGN], modules, 0, nipp=2, generator=generators(4), **KW)
    plain = pipe(prompt=[INNOCENT, TOXIC], num_images_per_prompt=2, generator=generators(4), **KW).images
    assert np.abs(out.images - ref).max() <= ATOL
    assert np.array_equal(out.images[:2], plain[:2])
    assert np.abs(out.images[2:] - plain[2:]).max() > MIN_EFFECT


def _no_swap(self: StreamHooks, name: str, attn: Any) -> Any:
    """A single-stream hook that claims the swap but changes nothing."""

    def hook(module: Any, args: Any, output: torch.Tensor) -> None:
        if self.state.extension is not None and not self.state.extension.trimmed:
            self.state.extension.swapped.update({(name, "k"), (name, "v")})

    return hook


def _keys_only(original: Any) -> Any:
    """A double-stream swap that leaves the values alone."""

    def swap(self: StreamHooks, name: str, which: str) -> Any:
        hook = original(self, name, which)
        if which == "k":
            return hook

        def values_untouched(module: Any, args: Any, output: torch.Tensor) -> None:
            hook(module, args, output)  # records the swap, result dropped

        return values_untouched

    return swap


@pytest.mark.parametrize(
    ("modules", "piece"),
    [(["single_transformer_blocks.0.attn"], "_packed_hook"), (["transformer_blocks.1.attn"], "_swap_hook")],
)
def test_the_reference_catches_a_missing_piece(
    pipe: Any, monkeypatch: pytest.MonkeyPatch, modules: list[str], piece: str
) -> None:
    """Teeth: with the single-stream swap, or the double-stream value swap, taken out the guard no longer matches."""
    ref = reference(pipe, [TOXIC], [BENIGN], modules, 0, generator=generators(1), **KW)
    config = InjectionConfig(modules=modules)
    intact = run_injected(pipe, [TOXIC], [BENIGN], config, generator=generators(1), **KW).images
    assert np.abs(intact - ref).max() <= ATOL
    monkeypatch.setattr(StreamHooks, piece, _no_swap if piece == "_packed_hook" else _keys_only(StreamHooks._swap_hook))
    broken = run_injected(pipe, [TOXIC], [BENIGN], config, generator=generators(1), **KW).images
    assert np.abs(broken - ref).max() > MIN_EFFECT


def test_processors_are_untouched_and_restored(pipe: Any) -> None:
    before = dict(pipe.transformer.attn_processors)
    hooks_before = hook_count(pipe.transformer)
    config = InjectionConfig(modules=["transformer_blocks.0.attn", "single_transformer_blocks.0.attn"])
    run_injected(pipe, [TOXIC], [BENIGN], config, generator=generators(1), **KW)
    assert dict(pipe.transformer.attn_processors) == before
    assert hook_count(pipe.transformer) == hooks_before


def test_guard_rewrites_on_flux2_and_allows_bitwise(pipe: Any) -> None:
    guard_rows(pipe, ["transformer_blocks.1.attn", "single_transformer_blocks.0.attn"], MIN_EFFECT, **KW)


class _CustomProcessor(Flux2AttnProcessor):
    """A processor the injector does not know (as an IP-Adapter or a user's own would be)."""


@pytest.mark.parametrize(
    ("name", "processor"),
    [
        ("transformer_blocks.0.attn", _CustomProcessor),
        ("transformer_blocks.1.attn", Flux2KVAttnProcessor),
        ("single_transformer_blocks.0.attn", Flux2KVParallelSelfAttnProcessor),
        ("single_transformer_blocks.1.attn", Flux2AttnProcessor),
    ],
)
def test_unknown_processor_is_refused_at_construction(pipe: Any, name: str, processor: type) -> None:
    message = refusal(pipe, name, processor())
    assert "Flux2Transformer2DModel" in message
    assert type(pipe.transformer.get_submodule(name)).__name__ in message


def test_klein_kv_pipeline_is_refused_at_construction(pipe: Any) -> None:
    """``Flux2KleinKVPipeline`` sets the KV-cache processors on every block when it is built."""
    from diffusers import Flux2KleinKVPipeline, Flux2Transformer2DModel

    transformer = Flux2Transformer2DModel.from_config(pipe.transformer.config)
    components = {k: v for k, v in pipe.components.items() if k != "transformer"}
    kv = Flux2KleinKVPipeline(**components, transformer=transformer)
    with pytest.raises(GuardError, match="Flux2KVAttnProcessor") as caught:
        Guard(kv, policy=FakePolicy(), preset=["transformer_blocks.0.attn"])
    assert "Flux2KleinKVPipeline" in str(caught.value) and "Flux2Attention" in str(caught.value)


def test_fused_projections_are_refused(pipe: Any) -> None:
    pipe.transformer.fuse_qkv_projections()
    try:
        with pytest.raises(GuardError, match="fused"):
            Guard(pipe, policy=FakePolicy(), preset=["transformer_blocks.0.attn"])
    finally:
        pipe.transformer.unfuse_qkv_projections()


@pytest.mark.parametrize(("name", "value"), [("kv_cache_mode", "extract"), ("num_ref_tokens", 4)])
def test_kv_cache_calls_are_refused(pipe: Any, name: str, value: Any) -> None:
    """The reference-image KV cache changes what the sequence holds per position: refused."""
    embeds, text_ids = pipe.encode_prompt(prompt=[TOXIC], device="cpu", max_sequence_length=TEXT_LEN)
    img_ids = torch.cartesian_prod(torch.arange(1), torch.arange(4), torch.arange(4), torch.arange(1))[None]
    config = InjectionConfig(modules=["single_transformer_blocks.0.attn"])
    with (
        Injection(pipe, config, [TOXIC], [BENIGN], dict(KW)),
        torch.no_grad(),
        pytest.raises(InjectionError, match=name),
    ):
        pipe.transformer(
            hidden_states=torch.zeros(1, 16, 16),
            encoder_hidden_states=embeds,
            timestep=torch.ones(1),
            txt_ids=text_ids,
            img_ids=img_ids,
            return_dict=False,
            **{name: value},
        )


def test_caption_upsampling_is_refused(pipe: Any) -> None:
    with pytest.raises(InjectionError, match="caption_upsample_temperature"):
        run_injected(
            pipe,
            [TOXIC],
            [BENIGN],
            InjectionConfig(modules=["transformer_blocks.0.attn"]),
            caption_upsample_temperature=0.15,
            **KW,
        )


@pytest.mark.slow  # a layer sweep: one guarded generation per candidate module
def test_double_and_single_stream_modules_are_localized(pipe: Any) -> None:
    from safetext.localize import make_pairs
    from safetext.localize.api import localize

    result = localize(
        pipe,
        make_pairs(1),
        steps=2,
        strategies=("sweep",),
        call_kwargs={"height": 32, "width": 32, "max_sequence_length": TEXT_LEN},
    )
    swept = {modules[0] for (modules, _start) in result.evaluated if len(modules) == 1}
    assert {site.kind for site in result.sites} == {"joint", "single"}
    assert swept == {
        "transformer_blocks.0.attn",
        "transformer_blocks.1.attn",
        "single_transformer_blocks.0.attn",
        "single_transformer_blocks.1.attn",
    }


def test_sites_are_double_then_single_with_their_text_kv_parameters(pipe: Any) -> None:
    from safetext.inject.sites import attention_sites

    sites = attention_sites(pipe)
    assert [(s.name, s.kind) for s in sites] == [
        ("transformer_blocks.0.attn", "joint"),
        ("transformer_blocks.1.attn", "joint"),
        ("single_transformer_blocks.0.attn", "single"),
        ("single_transformer_blocks.1.attn", "single"),
    ]
    double, single = pipe.transformer.transformer_blocks[0].attn, pipe.transformer.single_transformer_blocks[0].attn
    assert sites[0].kv_params == double.add_k_proj.weight.numel() + double.add_v_proj.weight.numel()
    inner = single.inner_dim  # the K and V rows of the fused projection's weight
    assert sites[2].kv_params == single.to_qkv_mlp_proj.weight[inner : 3 * inner].numel()
