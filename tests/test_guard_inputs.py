"""Every positive text input is checked: prompt, prompt_2 (SDXL, SD3) and prompt_3 (SD3)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from _inject_helpers import BENIGN, INNOCENT, LOCALIZED, TOXIC, FakePolicy, call_kwargs, denoiser, tiny

from safetext import Guard, GuardError
from safetext.inject import candidate_modules
from safetext.policy.decision import Action


def _guard(kind: str, preset: list[str] | None = None, **kwargs) -> Guard:
    kwargs.setdefault("policy", FakePolicy())
    return Guard(tiny(kind), preset=preset or LOCALIZED[kind], **kwargs)


@pytest.mark.parametrize(("kind", "name"), [("sdxl", "prompt_2"), ("sd3", "prompt_2"), ("sd3", "prompt_3")])
def test_innocent_extra_input_is_bitwise_the_plain_pipeline(kind: str, name: str) -> None:
    plain = tiny(kind)(INNOCENT, **{name: INNOCENT}, **call_kwargs(kind)).images
    result = _guard(kind)(INNOCENT, **{name: INNOCENT}, **call_kwargs(kind))
    assert result.action is Action.ALLOW
    assert [d.action for d in result.input_decisions[name]] == [Action.ALLOW]
    assert np.array_equal(result.images, plain)


@pytest.mark.parametrize(("kind", "name"), [("sdxl", "prompt_2"), ("sd3", "prompt_2"), ("sd3", "prompt_3")])
def test_toxic_extra_input_is_rewritten_for_its_own_encoder(kind: str, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = tiny(kind)
    plain = pipe(INNOCENT, **{name: TOXIC}, **call_kwargs(kind)).images
    calls: list[dict] = []
    encode = pipe.encode_prompt

    @functools.wraps(encode)  # keeps the signature the injector inspects
    def spy(*args, **kwargs):
        calls.append(kwargs)
        return encode(*args, **kwargs)

    monkeypatch.setattr(pipe, "encode_prompt", spy)  # test-only: see what the injector encodes
    result = _guard(kind)(INNOCENT, **{name: TOXIC}, **call_kwargs(kind))
    monkeypatch.undo()
    assert result.action is Action.REWRITE
    assert result.decision.action is Action.ALLOW  # `prompt` itself was innocent
    assert result.input_decisions[name][0].benign_prompt == BENIGN
    benign_calls = [c for c in calls if c.get("do_classifier_free_guidance") is False]
    assert len(benign_calls) == 1
    assert benign_calls[0]["prompt"] == [INNOCENT] and benign_calls[0][name] == [BENIGN]
    assert result.patched_layers == LOCALIZED[kind]
    assert not np.array_equal(result.images, plain)
    assert "inputs" in result.to_dict() and name in result.to_dict()["inputs"]


def test_sdxl_prompt_2_rewrite_equals_its_benign_embedding_in_every_text_module() -> None:
    """All cross-attention modules from step 0: the image is the one whose text K/V come from
    encode(prompt, benign prompt_2), with the pooled embedding (time path) still the original's."""
    pipe = tiny("sdxl")
    every = candidate_modules(denoiser(pipe))
    result = _guard("sdxl", preset=every)(INNOCENT, prompt_2=TOXIC, **call_kwargs("sdxl"))
    with torch.no_grad():
        benign_embeds, _, _, _ = pipe.encode_prompt(
            prompt=INNOCENT, prompt_2=BENIGN, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        _, _, pooled, _ = pipe.encode_prompt(
            prompt=INNOCENT, prompt_2=TOXIC, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False
        )
    expected = pipe(prompt_embeds=benign_embeds, pooled_prompt_embeds=pooled, **call_kwargs("sdxl")).images
    assert np.allclose(result.images, expected, atol=1e-6)


def test_blocked_extra_input_blocks_the_call() -> None:
    result = _guard("sdxl", policy=FakePolicy(blocks=(TOXIC,)))(INNOCENT, prompt_2=TOXIC, **call_kwargs("sdxl"))
    assert result.blocked and result.images is None
    assert result.input_decisions["prompt_2"][0].action is Action.BLOCK


def test_negative_prompts_pass_through_unchecked() -> None:
    policy = FakePolicy()
    plain = tiny("sdxl")(INNOCENT, negative_prompt_2=TOXIC, **call_kwargs("sdxl")).images
    result = _guard("sdxl", policy=policy)(INNOCENT, negative_prompt_2=TOXIC, **call_kwargs("sdxl"))
    assert policy.seen == [INNOCENT]
    assert np.array_equal(result.images, plain)


@pytest.mark.parametrize(
    ("kind", "kwargs", "match"),
    [
        ("sdxl", {"prompt_embeds": torch.zeros(1, 77, 64)}, "prompt_embeds"),
        ("sdxl", {"pooled_prompt_embeds": torch.zeros(1, 32)}, "pooled_prompt_embeds"),
        ("sd", {"prompt_2": TOXIC}, "takes no prompt_2"),
        ("sdxl", {"prompt_2": [TOXIC]}, "1 entries for 2 prompt"),
    ],
)
def test_inputs_the_guard_cannot_check_are_refused(kind: str, kwargs: dict, match: str) -> None:
    prompts = [INNOCENT, INNOCENT] if "prompt_2" in kwargs and kind == "sdxl" else INNOCENT
    with pytest.raises(GuardError, match=match):
        _guard(kind)(prompts, **kwargs, **call_kwargs(kind))


def test_mixed_batch_rewrites_only_the_row_whose_prompt_2_is_toxic() -> None:
    pipe = tiny("sdxl")
    plain = pipe([INNOCENT, INNOCENT], prompt_2=[INNOCENT, TOXIC], **call_kwargs("sdxl")).images
    result = _guard("sdxl")([INNOCENT, INNOCENT], prompt_2=[INNOCENT, TOXIC], **call_kwargs("sdxl"))
    assert result.actions == [Action.ALLOW, Action.REWRITE]
    assert np.array_equal(result.images[0], plain[0])
    assert not np.array_equal(result.images[1], plain[1])
