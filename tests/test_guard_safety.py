"""Fail-closed behaviour, user callbacks and kwargs, no warning spam, and thread safety."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from _inject_helpers import (
    BENIGN,
    INNOCENT,
    LOCALIZED,
    STEPS,
    TOXIC,
    FakePolicy,
    call_kwargs,
    denoiser,
    processors,
    tiny,
)
from diffusers.models.attention_processor import AttnProcessor2_0

from safetext import Guard
from safetext.guard import GuardError
from safetext.inject import InjectionConfig, InjectionError, run_injected

MORON = 'A sign that says "moron"'


def _guard(kind: str, **kwargs) -> Guard:
    kwargs.setdefault("policy", FakePolicy())
    return Guard(tiny(kind), preset=kwargs.pop("preset", LOCALIZED[kind]), **kwargs)


# ------------------------------------------------------------------ fail closed


@pytest.mark.parametrize("kind", ["sd", "if", "sd3"])
def test_fault_mid_generation_returns_no_image_and_restores(kind: str) -> None:
    pipe = tiny(kind)
    before = processors(pipe)
    plain = pipe(TOXIC, **call_kwargs(kind)).images
    module = denoiser(pipe).get_submodule(LOCALIZED[kind][0])
    projection = module.to_k if kind in ("sd", "sdxl") else module.add_k_proj
    calls = []

    def fault(mod, args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injected fault")

    handle = projection.register_forward_pre_hook(fault)
    try:
        with pytest.raises(GuardError, match="injected fault"):
            _guard(kind)(TOXIC, **call_kwargs(kind))
    finally:
        handle.remove()
    after = processors(pipe)
    assert all(after[name] is before[name] for name in before)
    assert np.array_equal(pipe(TOXIC, **call_kwargs(kind)).images, plain)  # the pipeline is left clean


def test_callback_error_mid_generation_fails_closed() -> None:
    def callback(pipe, step, timestep, kwargs):
        if step == 1:
            raise ValueError("callback broke")
        return {}

    with pytest.raises(GuardError, match="callback broke"):
        _guard("sd")(TOXIC, **call_kwargs("sd", callback_on_step_end=callback))


def test_interrupted_before_the_start_step_fails_closed() -> None:
    """The pipeline stops early (``_interrupt``); nothing was patched, so no image may leave."""

    def stop(pipe, step, timestep, kwargs):
        pipe._interrupt = True
        return {}

    guard = _guard("sd", preset=InjectionConfig(modules=LOCALIZED["sd"], start=0.75))
    with pytest.raises(GuardError, match="nothing was patched"):
        guard(TOXIC, **call_kwargs("sd", callback_on_step_end=stop))


def test_unwrappable_processor_fails_closed() -> None:
    class MaskedProcessor(AttnProcessor2_0):
        def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, ip_adapter_masks=None):
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask)

    pipe = tiny("sd")
    module = denoiser(pipe).get_submodule(LOCALIZED["sd"][0])
    original = module.processor
    custom = MaskedProcessor()
    module.set_processor(custom)
    try:
        with pytest.raises(GuardError, match="standard attention processors"):
            _guard("sd")(TOXIC, **call_kwargs("sd"))
        assert module.processor is custom
    finally:
        module.set_processor(original)


def test_module_missing_from_the_model_is_an_error() -> None:
    with pytest.raises(InjectionError, match="not a text attention module"):
        run_injected(tiny("sd"), TOXIC, BENIGN, InjectionConfig(modules=["up_blocks.9.attn2"]), **call_kwargs("sd"))
    with pytest.raises(GuardError, match="lacks"):
        Guard(tiny("sd"), policy=FakePolicy(), preset=["down_blocks.0.attentions.0.transformer_blocks.0.attn1"])



def test_sd3_controlnet_residuals_are_refused() -> None:
    """ControlNet residuals come from the original text; the benign pass has none: refused, restored."""
    import torch

    from safetext.inject import Injection

    pipe = tiny("sd3")
    before = processors(pipe)
    config = InjectionConfig(modules=LOCALIZED["sd3"])
    embeds, _, pooled, _ = pipe.encode_prompt(TOXIC, TOXIC, TOXIC, do_classifier_free_guidance=False, max_sequence_length=32)
    latents = torch.zeros(1, pipe.transformer.config.in_channels, 8, 8)
    with Injection(pipe, config, [TOXIC], [BENIGN], call_kwargs("sd3")), torch.no_grad():
        with pytest.raises(InjectionError, match="block_controlnet_hidden_states"):
            pipe.transformer(
                hidden_states=latents, encoder_hidden_states=embeds, pooled_projections=pooled,
                timestep=torch.ones(1), block_controlnet_hidden_states=[torch.zeros(1, 64, pipe.transformer.inner_dim)],
                return_dict=False,
            )
    assert all(processors(pipe)[name] is before[name] for name in before)


# ------------------------------------------------------------------ user callbacks and kwargs


@pytest.mark.parametrize("kind", ["sd", "sdxl", "sd3"])
def test_user_callback_on_step_end_is_called(kind: str) -> None:
    seen = []

    def callback(pipe, step, timestep, kwargs):
        seen.append((step, tuple(kwargs)))
        return {}

    extra = {"callback_on_step_end": callback, "callback_on_step_end_tensor_inputs": ["latents", "prompt_embeds"]}
    result = _guard(kind)(TOXIC, **call_kwargs(kind, **extra))
    assert seen == [(i, ("latents", "prompt_embeds")) for i in range(STEPS)]
    assert np.array_equal(result.images, _guard(kind)(TOXIC, **call_kwargs(kind)).images)


def test_if_legacy_callback_is_called() -> None:
    seen = []
    _guard("if")(TOXIC, **call_kwargs("if", callback=lambda i, t, x: seen.append(i), callback_steps=1))
    assert seen == list(range(STEPS))


@pytest.mark.parametrize(("kind", "key"), [("if", "cross_attention_kwargs"), ("sd3", "joint_attention_kwargs")])
def test_user_attention_kwargs_pass_through_untouched(kind: str, key: str) -> None:
    user = {"scale": 1.0}
    result = _guard(kind)(TOXIC, **call_kwargs(kind, **{key: user}))
    assert user == {"scale": 1.0}
    assert np.array_equal(result.images, _guard(kind)(TOXIC, **call_kwargs(kind)).images)


def test_user_kwargs_reach_user_processors() -> None:
    """A user's own processor on another module still gets its cross_attention_kwargs.

    (SD's LoRA ``scale`` key cannot be used here: without PEFT, diffusers 0.42 fails on
    transformers 5 text encoders for plain pipeline calls too.)
    """

    class Gain(AttnProcessor2_0):
        def __init__(self) -> None:
            super().__init__()
            self.gains: list[float] = []

        def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, gain=1.0):
            self.gains.append(gain)
            return gain * super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask)

    pipe = tiny("sd")
    name = "mid_block.attentions.0.transformer_blocks.0.attn2"
    module = denoiser(pipe).get_submodule(name)
    original, gain = module.processor, Gain()
    module.set_processor(gain)
    try:
        user = {"gain": 0.5}
        result = _guard("sd")(TOXIC, **call_kwargs("sd", cross_attention_kwargs=user))
        assert gain.gains == [0.5] * STEPS and user == {"gain": 0.5}
        expected = run_injected(
            pipe, TOXIC, BENIGN, InjectionConfig.from_modules(LOCALIZED["sd"]), **call_kwargs("sd", cross_attention_kwargs=user)
        ).images
        assert np.array_equal(result.images, expected)
    finally:
        module.set_processor(original)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("kind", ["sd", "sd3"])
def test_no_attention_kwargs_warnings(kind: str) -> None:
    """Per-call state is bound to the call's processors, not sent as attention kwargs, so no
    "cross_attention_kwargs [...] are not expected" warning is logged for unpatched modules."""
    records = _Records()
    logger = logging.getLogger("diffusers")
    logger.addHandler(records)
    try:
        key = "cross_attention_kwargs" if kind == "sd" else "joint_attention_kwargs"
        tiny(kind)(TOXIC, **call_kwargs(kind, **{key: {"bogus": 1}}))
        assert any("not expected" in m for m in records.messages)  # the capture works
        records.messages.clear()
        _guard(kind)([TOXIC, INNOCENT], **call_kwargs(kind))
        assert records.messages == []
    finally:
        logger.removeHandler(records)


# ------------------------------------------------------------------ concurrency


@pytest.mark.parametrize("kind", ["sd", "sd3"])
def test_threads_get_the_same_output_as_alone(kind: str) -> None:
    policy = FakePolicy(rewrites={TOXIC: BENIGN, MORON: 'A sign that says "tiger"'})
    guard = _guard(kind, policy=policy)
    other = _guard(kind, policy=policy)  # a second guard on the same pipeline
    jobs = [(TOXIC, 1), (INNOCENT, 2), (MORON, 3), (TOXIC, 4), ([MORON, INNOCENT], 5), (MORON, 6)]
    alone = [guard(prompt, **call_kwargs(kind, seed=seed)).images for prompt, seed in jobs]
    before = processors(tiny(kind))

    def run(i: int) -> np.ndarray:
        prompt, seed = jobs[i % len(jobs)]
        return (guard if i % 2 else other)(prompt, **call_kwargs(kind, seed=seed)).images

    with ThreadPoolExecutor(max_workers=4) as pool:
        outputs = list(pool.map(run, range(2 * len(jobs))))
    for i, images in enumerate(outputs):
        assert np.array_equal(images, alone[i % len(jobs)]), jobs[i % len(jobs)]
    after = processors(tiny(kind))
    assert all(after[name] is before[name] for name in before)
