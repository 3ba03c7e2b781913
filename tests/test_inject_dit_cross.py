"""PixArt-Sigma and Sana: projected cross-attention is guarded correctly, unknown text paths are refused.

Their ``attn2`` modules read the caption after the transformer's own ``caption_projection``
(Sana: then ``caption_norm``), and the text is masked: padding tokens get a -10000 bias.
Text reaches these transformers only through ``attn2``, so patching every ``attn2`` from
step 0 must give the benign prompt's own image. A benign prompt with another token count
than the original (``LONG_BENIGN``) checks that the benign text comes with its own mask.

Partial patching is checked against a reference that knows nothing of the caption modules:
it records the text states and mask that ``attn2`` receives in the benign prompt's own call
and puts them in the rewritten rows of the original call's localized modules.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _inject_helpers import BENIGN, INNOCENT, STEPS, TOXIC, FakePolicy, processors, tiny
from typer.testing import CliRunner

from safetext import GuardError
from safetext.guard import Guard
from safetext.inject import (
    InjectionConfig,
    InjectionError,
    UnsupportedArchitectureError,
    attention_sites,
    auto_preset,
    candidate_modules,
    run_injected,
)
from safetext.inject.encode import encode_text
from safetext.inject.sites import text_path

DITS = ("pixart-sigma", "sana")
#: Longer than TOXIC, so its token mask differs from TOXIC's.
LONG_BENIGN = 'A sign that says "sunflower field"'
ATOL = 1e-6
#: The swap must move the image by far more than the comparison tolerance.
MIN_EFFECT = 100 * ATOL
_SIZE = {"pixart-sigma": 64, "sana": 128}


def dit_kwargs(kind: str, seed: int = 0, **extra: Any) -> dict[str, Any]:
    """Fast call settings: no resolution binning, a small image, captions not cleaned (needs bs4)."""
    kwargs: dict[str, Any] = {
        "num_inference_steps": STEPS,
        "output_type": "np",
        "generator": torch.Generator().manual_seed(seed),
        "use_resolution_binning": False,
        "height": _SIZE[kind],
        "width": _SIZE[kind],
    }
    if kind == "pixart-sigma":
        kwargs["clean_caption"] = False
    kwargs.update(extra)
    return kwargs


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max())


def _all_modules(kind: str) -> InjectionConfig:
    return InjectionConfig(modules=candidate_modules(tiny(kind)))


# --------------------------------------------------------------------------- sites


@pytest.mark.parametrize("kind", DITS)
def test_sites_are_projected_cross_attention(kind: str) -> None:
    pipe = tiny(kind)
    sites = attention_sites(pipe)
    assert [s.name for s in sites] == ["transformer_blocks.0.attn2", "transformer_blocks.1.attn2"]
    assert {s.kind for s in sites} == {"projected"}
    expected = ("caption_projection",) if kind == "pixart-sigma" else ("caption_projection", "caption_norm")
    assert text_path(pipe.transformer) == expected


@pytest.mark.parametrize(
    ("cls", "config", "layers", "kind"),
    [
        ("PixArtTransformer2DModel", {"caption_channels": 4096}, 28, "projected"),  # PixArt-Sigma XL
        ("PixArtTransformer2DModel", {}, 28, "cross"),  # no caption_channels: no caption_projection
        ("SanaTransformer2DModel", {}, 20, "projected"),  # Sana 1600M
    ],
)
def test_released_architectures_on_meta(cls: str, config: dict[str, Any], layers: int, kind: str) -> None:
    """Default configs built without weights: one attn2 per block, projected where a caption_projection exists."""
    import diffusers

    with torch.device("meta"):
        model = getattr(diffusers, cls)(**config)
    sites = attention_sites(model)
    assert [s.name for s in sites] == [f"transformer_blocks.{i}.attn2" for i in range(layers)]
    assert {s.kind for s in sites} == {kind}
    assert bool(text_path(model)) == (kind == "projected")


# --------------------------------------------------------------------------- every module = the benign image


@pytest.mark.parametrize("kind", DITS)
@pytest.mark.parametrize("benign", [BENIGN, LONG_BENIGN])
@pytest.mark.parametrize("extra", [{}, {"guidance_scale": 1.0}, {"num_images_per_prompt": 2, "negative_prompt": "blurry"}])
def test_every_module_from_step_0_gives_the_benign_image(kind: str, benign: str, extra: dict[str, Any]) -> None:
    pipe = tiny(kind)
    direct = pipe(benign, **dit_kwargs(kind, **extra)).images
    plain = pipe(TOXIC, **dit_kwargs(kind, **extra)).images
    guarded = run_injected(pipe, TOXIC, benign, _all_modules(kind), **dit_kwargs(kind, **extra)).images
    assert _max_diff(plain, direct) > MIN_EFFECT
    assert np.allclose(guarded, direct, rtol=0.0, atol=ATOL), _max_diff(guarded, direct)


@pytest.mark.parametrize("kind", DITS)
def test_the_long_benign_prompt_has_its_own_mask(kind: str) -> None:
    """Precondition of the LONG_BENIGN cases: its mask differs from TOXIC's, and it is what the call uses."""
    pipe = tiny(kind)
    encoded = encode_text(pipe, {"prompt": [TOXIC, LONG_BENIGN]}, dit_kwargs(kind))
    assert encoded.mask is not None and encoded.embeds.shape[:2] == encoded.mask.shape
    assert int(encoded.mask[1].sum()) > int(encoded.mask[0].sum())


@pytest.mark.parametrize("kind", DITS)
def test_guard_gives_the_benign_image(kind: str) -> None:
    pipe = tiny(kind)
    guard = Guard(pipe, policy=FakePolicy({TOXIC: LONG_BENIGN}), preset=candidate_modules(pipe))
    result = guard(TOXIC, **dit_kwargs(kind))
    direct = pipe(LONG_BENIGN, **dit_kwargs(kind)).images
    assert result.injection is not None and result.injection.kind == "projected"
    assert result.injection.injected_steps == {m: list(range(STEPS)) for m in candidate_modules(pipe)}
    assert np.allclose(result.images, direct, rtol=0.0, atol=ATOL), _max_diff(result.images, direct)


def test_pixart_without_caption_projection_is_plain_cross_attention() -> None:
    """``caption_channels=None``: attn2 reads the T5 text as given (kind ``cross``), still masked."""
    from diffusers import PixArtTransformer2DModel

    from safetext.pipelines import build_tiny_pipeline

    pipe = build_tiny_pipeline("pixart-sigma")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = PixArtTransformer2DModel(
            sample_size=32, num_layers=2, patch_size=2, attention_head_dim=8, num_attention_heads=2,
            caption_channels=None, cross_attention_dim=32, in_channels=4, out_channels=8,
            norm_type="ada_norm_single", norm_elementwise_affine=False, norm_eps=1e-6,
        )
    pipe.register_modules(transformer=model.eval())
    assert {s.kind for s in attention_sites(pipe)} == {"cross"} and text_path(model) == ()
    kind = "pixart-sigma"
    direct = pipe(LONG_BENIGN, **dit_kwargs(kind)).images
    plain = pipe(TOXIC, **dit_kwargs(kind)).images
    guarded = run_injected(pipe, TOXIC, LONG_BENIGN, InjectionConfig(modules=candidate_modules(pipe)), **dit_kwargs(kind))
    assert _max_diff(plain, direct) > MIN_EFFECT
    assert np.allclose(guarded.images, direct, rtol=0.0, atol=ATOL), _max_diff(guarded.images, direct)


# --------------------------------------------------------------------------- untouched rows and calls


@pytest.mark.parametrize("kind", DITS)
def test_mixed_batch_keeps_allowed_rows_bitwise(kind: str) -> None:
    pipe = tiny(kind)
    prompts = [INNOCENT, TOXIC, INNOCENT]
    plain = pipe(prompts, **dit_kwargs(kind)).images
    mixed = run_injected(pipe, prompts, [None, LONG_BENIGN, None], _all_modules(kind), **dit_kwargs(kind)).images
    assert np.array_equal(plain[[0, 2]], mixed[[0, 2]])
    assert _max_diff(plain[1], mixed[1]) > MIN_EFFECT
    guard = Guard(pipe, policy=FakePolicy({TOXIC: LONG_BENIGN}), preset=candidate_modules(pipe))
    guarded = guard(prompts, **dit_kwargs(kind)).images
    assert np.array_equal(plain[[0, 2]], guarded[[0, 2]])
    assert np.array_equal(mixed, guarded)


@pytest.mark.parametrize("kind", DITS)
def test_mixed_batch_with_images_per_prompt(kind: str) -> None:
    """Two images per prompt: the allowed prompt's are the plain call's, the rewritten prompt's the
    benign call's. (Sana 0.42 tiles its masks over images per prompt while it repeats each
    prompt's embeddings in place, so row 2 carries prompt 0's mask; the benign rows reproduce that.)"""
    pipe = tiny(kind)
    kwargs = {"num_images_per_prompt": 2}
    plain = pipe([INNOCENT, TOXIC], **dit_kwargs(kind, **kwargs)).images
    direct = pipe([INNOCENT, LONG_BENIGN], **dit_kwargs(kind, **kwargs)).images
    mixed = run_injected(pipe, [INNOCENT, TOXIC], [None, LONG_BENIGN], _all_modules(kind), **dit_kwargs(kind, **kwargs))
    assert np.array_equal(mixed.images[:2], plain[:2])
    assert _max_diff(plain[2:], direct[2:]) > MIN_EFFECT
    assert np.allclose(mixed.images[2:], direct[2:], rtol=0.0, atol=ATOL), _max_diff(mixed.images[2:], direct[2:])


@pytest.mark.parametrize("kind", DITS)
def test_unguarded_calls_are_bitwise_the_plain_pipeline(kind: str) -> None:
    pipe = tiny(kind)
    plain = pipe(INNOCENT, **dit_kwargs(kind)).images
    guard = Guard(pipe, policy=FakePolicy(), preset=candidate_modules(pipe))
    allowed = guard(INNOCENT, **dit_kwargs(kind))
    assert allowed.injection is None and np.array_equal(allowed.images, plain)
    same = run_injected(pipe, INNOCENT, INNOCENT, _all_modules(kind), **dit_kwargs(kind)).images
    assert np.array_equal(same, plain)  # benign = original: the swap changes no value


@pytest.mark.parametrize("kind", DITS)
def test_a_later_start_changes_the_image(kind: str) -> None:
    pipe = tiny(kind)
    direct = pipe(LONG_BENIGN, **dit_kwargs(kind)).images
    plain = pipe(TOXIC, **dit_kwargs(kind)).images
    config = InjectionConfig(modules=candidate_modules(pipe), start=0.25)
    late, report = run_injected(pipe, TOXIC, LONG_BENIGN, config, with_report=True, **dit_kwargs(kind))
    assert report is not None and report.injected_steps == {m: [1, 2, 3] for m in config.modules}
    assert _max_diff(late.images, direct) > MIN_EFFECT
    assert _max_diff(late.images, plain) > MIN_EFFECT


@pytest.mark.parametrize("kind", DITS)
def test_processors_are_restored_identically(kind: str) -> None:
    pipe = tiny(kind)
    before = processors(pipe)
    hooks = {name: dict(m._forward_hooks) for name, m in pipe.transformer.named_modules()}
    run_injected(pipe, TOXIC, LONG_BENIGN, _all_modules(kind), **dit_kwargs(kind))
    after = processors(pipe)
    assert after.keys() == before.keys() and all(after[n] is before[n] for n in before)
    assert {name: dict(m._forward_hooks) for name, m in pipe.transformer.named_modules()} == hooks


# --------------------------------------------------------------------------- reference for partial patching


def _attn2_inputs(pipe: Any, kind: str, prompt: str) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """What each attn2 receives (text states, mask bias) at the first step of ``prompt``'s own call."""
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = []
    for name in candidate_modules(pipe):

        def hook(module: Any, args: Any, kwargs: dict[str, Any], name: str = name) -> None:
            seen.setdefault(name, (kwargs["encoder_hidden_states"].clone(), kwargs["attention_mask"].clone()))

        handles.append(pipe.transformer.get_submodule(name).register_forward_pre_hook(hook, with_kwargs=True))
    try:
        pipe(prompt, **dit_kwargs(kind, num_inference_steps=1))
    finally:
        for handle in handles:
            handle.remove()
    return seen


class _Substitute:
    """The stock processor, with the rewritten rows' text states and mask bias replaced by recorded ones."""

    def __init__(self, original: Any, text: torch.Tensor, bias: torch.Tensor, rows: list[int]) -> None:
        self.original, self.text, self.bias, self.rows = original, text, bias, rows

    def __call__(
        self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: Any = None, attention_mask: Any = None
    ) -> torch.Tensor:
        text, bias = encoder_hidden_states.clone(), attention_mask.clone()
        text[self.rows], bias[self.rows] = self.text[self.rows], self.bias[self.rows]
        return self.original(attn, hidden_states, text, bias)


@contextmanager
def _reference(pipe: Any, kind: str, modules: list[str], start_step: int, benign: str) -> Iterator[None]:
    """Within the block, one-prompt CFG calls get ``benign``'s recorded attn2 inputs in ``modules``."""
    recorded = _attn2_inputs(pipe, kind, benign)
    den = pipe.transformer
    originals = {name: den.get_submodule(name).processor for name in modules}
    step = {"n": -1}

    def pre_hook(module: Any, args: Any, kwargs: Any) -> None:
        step["n"] += 1  # PixArt and Sana call the transformer once per step
        if step["n"] == start_step:
            for name in modules:
                text, bias = recorded[name]
                den.get_submodule(name).set_processor(_Substitute(originals[name], text, bias, rows=[1]))

    handle = den.register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
        for name, processor in originals.items():
            den.get_submodule(name).set_processor(processor)
    assert step["n"] >= start_step, "the reference never patched"


@pytest.mark.parametrize("kind", DITS)
@pytest.mark.parametrize(
    ("modules", "start"),
    [(["transformer_blocks.0.attn2"], 0.0), (["transformer_blocks.1.attn2"], 0.0), (["transformer_blocks.1.attn2"], 0.25)],
)
def test_partial_patching_matches_the_reference(kind: str, modules: list[str], start: float) -> None:
    pipe = tiny(kind)
    config = InjectionConfig(modules=modules, start=start)
    plain = pipe(TOXIC, **dit_kwargs(kind)).images
    with _reference(pipe, kind, modules, config.start_step(STEPS), LONG_BENIGN):
        reference = pipe(TOXIC, **dit_kwargs(kind)).images
    guarded = run_injected(pipe, TOXIC, LONG_BENIGN, config, **dit_kwargs(kind)).images
    assert _max_diff(reference, plain) > MIN_EFFECT
    assert np.allclose(guarded, reference, rtol=0.0, atol=ATOL), _max_diff(guarded, reference)


# --------------------------------------------------------------------------- benign encoding = the call's


def _call_text(pipe: Any, kind: str, prompt: str, **extra: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The conditional text states and mask the transformer gets in ``prompt``'s own CFG call."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        if not seen:
            seen.append((kwargs["encoder_hidden_states"][1:].clone(), kwargs["encoder_attention_mask"][1:].clone()))

    handle = pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        pipe(prompt, **dit_kwargs(kind, num_inference_steps=1, **extra))
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("sana", {}),  # the pipeline's default complex_human_instruction
        ("sana", {"complex_human_instruction": None}),
        ("sana", {"complex_human_instruction": ["Draw exactly this:", "Prompt: "]}),
        ("sana", {"max_sequence_length": 64}),
        ("pixart-sigma", {}),
        ("pixart-sigma", {"max_sequence_length": 48}),
    ],
)
def test_benign_encoding_equals_the_calls_own(kind: str, extra: dict[str, Any]) -> None:
    pipe = tiny(kind)
    embeds, mask = _call_text(pipe, kind, LONG_BENIGN, **extra)
    encoded = encode_text(pipe, {"prompt": [LONG_BENIGN]}, dit_kwargs(kind, **extra))
    assert encoded.mask is not None
    assert torch.equal(encoded.embeds, embeds) and torch.equal(encoded.mask, mask)


def test_sana_encode_prompt_alone_differs_from_the_call() -> None:
    """Why the call's complex_human_instruction is passed: encode_prompt's own default has none."""
    pipe = tiny("sana")
    embeds, _ = _call_text(pipe, "sana", LONG_BENIGN)
    with torch.no_grad():
        alone = pipe.encode_prompt(LONG_BENIGN, do_classifier_free_guidance=False)[0]
    assert alone.shape == embeds.shape and not torch.equal(alone, embeds)


# --------------------------------------------------------------------------- refusals


def _pipe_with_unknown_denoiser() -> Any:
    """A PixArt-Sigma pipeline whose transformer is a ``Transformer2DModel`` (cross-attention, unknown text path)."""
    from diffusers import Transformer2DModel

    from safetext.pipelines import build_tiny_pipeline

    pipe = build_tiny_pipeline("pixart-sigma")
    model = Transformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, num_layers=1, cross_attention_dim=32, norm_num_groups=2
    )
    pipe.register_modules(transformer=model)
    return pipe


def test_an_unknown_text_path_is_refused_at_construction() -> None:
    pipe = _pipe_with_unknown_denoiser()
    with pytest.raises(GuardError, match="PixArtSigmaPipeline.*Transformer2DModel.*Attention") as caught:
        Guard(pipe, policy=FakePolicy(), preset=["transformer_blocks.0.attn2"])
    assert isinstance(caught.value.__cause__, InjectionError)
    with pytest.raises(UnsupportedArchitectureError, match="cannot inject"):
        auto_preset(pipe)
    with pytest.raises(InjectionError, match="does not know how Transformer2DModel feeds text"):
        run_injected(pipe, TOXIC, BENIGN, InjectionConfig(modules=["transformer_blocks.0.attn2"]), **dit_kwargs("pixart-sigma"))


@pytest.mark.parametrize("kind", DITS)
def test_auto_preset_names_localize(kind: str) -> None:
    pipe = tiny(kind)
    with pytest.raises(UnsupportedArchitectureError, match="no measured preset.*safetext localize"):
        auto_preset(pipe)
    with pytest.raises(GuardError, match="safetext localize") as caught:
        Guard(pipe, policy=FakePolicy())
    assert isinstance(caught.value.__cause__, UnsupportedArchitectureError)


def _double_text(module: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    return args, {**kwargs, "encoder_hidden_states": kwargs["encoder_hidden_states"] * 2}


def _zero_mask(module: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    return args, {**kwargs, "attention_mask": torch.zeros_like(kwargs["attention_mask"])}


@pytest.mark.parametrize("kind", DITS)
@pytest.mark.parametrize(("hook", "message"), [(_double_text, "not its denoiser's projected caption"), (_zero_mask, "as a bias")])
def test_a_changed_text_path_fails_the_call(kind: str, hook: Any, message: str) -> None:
    """Text or mask reaching attn2 other than the model's own: the call fails, nothing is guessed."""
    pipe = tiny(kind)
    before = processors(pipe)
    handle = pipe.transformer.get_submodule("transformer_blocks.1.attn2").register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with pytest.raises(InjectionError, match=message):
            run_injected(pipe, TOXIC, LONG_BENIGN, _all_modules(kind), **dit_kwargs(kind))
    finally:
        handle.remove()
    assert all(processors(pipe)[name] is before[name] for name in before)


# --------------------------------------------------------------------------- localize


@pytest.mark.parametrize("kind", DITS)
def test_localize_runs_group_and_sweep(kind: str, tmp_path: Path) -> None:
    from safetext.localize import make_pairs
    from safetext.localize.api import localize

    pipe = tiny(kind)
    small = {k: v for k, v in dit_kwargs(kind).items() if k in ("use_resolution_binning", "height", "width", "clean_caption")}
    result = localize(pipe, make_pairs(1, seed=0), steps=2, strategies=("auto", "sweep"), call_kwargs=small)
    assert set(result.results) == {"group", "sweep"}  # auto: attribution does not support projected attention
    assert set(result.preset.modules) <= set(candidate_modules(pipe))
    path = tmp_path / "preset.yaml"
    result.preset.to_yaml(path)
    out = Guard(pipe, policy=FakePolicy(), preset=str(path))(TOXIC, **dit_kwargs(kind, num_inference_steps=2))
    assert out.patched_layers == list(result.preset.modules)


def test_localize_cli_on_tiny_pixart(tmp_path: Path) -> None:
    """The pipeline's default call (resolution binning on, 256x256) needs no extra options."""
    from safetext.cli import app

    out = tmp_path / "p.yaml"
    res = CliRunner().invoke(
        app,
        ["localize", "--model", "tiny:pixart-sigma", "--pairs", "1", "--steps", "2", "--ocr", "none", "--no-progress",
         "--strategy", "both", "--out", str(out), "--report", str(tmp_path / "r"), "--json"],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["modules"] == InjectionConfig.from_yaml(out).modules
    assert set(summary["runs"]) == {"sweep", "group"}
