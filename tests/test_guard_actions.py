"""Guard behaviour per policy action: allow, block, rewrite, mixed batches, and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _inject_helpers import BENIGN, INNOCENT, KINDS, LOCALIZED, TOXIC, FakePolicy, call_kwargs, denoiser, tiny

from safetext import Guard, GuardBlockedError, GuardResult
from safetext.guard import GuardError
from safetext.inject import InjectionConfig, run_injected
from safetext.policy.decision import Action, Decision


def _guard(kind: str, **kwargs) -> Guard:
    kwargs.setdefault("policy", FakePolicy())
    return Guard(tiny(kind), preset=LOCALIZED[kind], **kwargs)


@pytest.mark.parametrize("kind", KINDS)
def test_allow_is_bitwise_the_plain_pipeline(kind: str) -> None:
    guard = _guard(kind)
    result = guard(INNOCENT, **call_kwargs(kind))
    plain = tiny(kind)(INNOCENT, **call_kwargs(kind))
    assert result.decision.action is Action.ALLOW and result.patched_layers == [] and result.injection is None
    assert np.array_equal(result.images, plain.images)
    assert result.output is not None and np.array_equal(result.output.images, plain.images)


@pytest.mark.parametrize("kind", KINDS)
def test_rewrite_runs_the_original_prompt_with_benign_kv(kind: str) -> None:
    policy = FakePolicy()
    result = _guard(kind, policy=policy)(TOXIC, **call_kwargs(kind))
    expected = run_injected(
        tiny(kind), TOXIC, BENIGN, InjectionConfig.from_modules(LOCALIZED[kind]), **call_kwargs(kind)
    ).images
    assert policy.seen == [TOXIC]
    assert result.action is Action.REWRITE and result.decision.benign_prompt == BENIGN
    assert result.patched_layers == LOCALIZED[kind]
    assert np.array_equal(result.images, expected)
    assert not np.array_equal(result.images, tiny(kind)(TOXIC, **call_kwargs(kind)).images)


def test_block_generates_nothing() -> None:
    calls = []
    pipe = tiny("sd")
    handle = denoiser(pipe).register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        result = _guard("sd", policy=FakePolicy(blocks=(TOXIC,)))(TOXIC, **call_kwargs("sd"))
    finally:
        handle.remove()
    assert calls == []
    assert result.blocked and result.images is None and result.output is None
    assert result.decision.reasons == ["blocked term"]
    with pytest.raises(GuardBlockedError, match="blocked term") as info:
        _guard("sd", policy=FakePolicy(blocks=(TOXIC,)), on_block="raise")(TOXIC, **call_kwargs("sd"))
    assert info.value.result.blocked


def test_one_blocked_prompt_blocks_the_batch() -> None:
    result = _guard("sd", policy=FakePolicy(blocks=(TOXIC,)))([INNOCENT, TOXIC], **call_kwargs("sd"))
    assert result.blocked and result.images is None
    assert [d.action for d in result.decisions] == [Action.ALLOW, Action.BLOCK]


@pytest.mark.parametrize("kind", ["sdxl", "sd3"])
def test_mixed_batch_in_one_call(kind: str) -> None:
    result = _guard(kind)([INNOCENT, TOXIC], **call_kwargs(kind, num_images_per_prompt=2))
    plain = tiny(kind)([INNOCENT, TOXIC], **call_kwargs(kind, num_images_per_prompt=2)).images
    assert [d.action for d in result.decisions] == [Action.ALLOW, Action.REWRITE]
    assert result.injection is not None and result.injection.rewritten_rows == [2, 3]
    assert np.array_equal(result.images[:2], plain[:2])
    assert not np.array_equal(result.images[2:], plain[2:])
    assert result.sanitized_prompts == [INNOCENT, BENIGN]


@pytest.mark.parametrize("output_type", ["pil", "pt", "latent"])
def test_output_type_is_honoured(output_type: str) -> None:
    result = _guard("sd")(TOXIC, **call_kwargs("sd", output_type=output_type))
    plain = tiny("sd")(TOXIC, **call_kwargs("sd", output_type=output_type)).images
    if output_type == "pil":
        assert isinstance(result.images, list) and result.images[0].size == plain[0].size
    else:
        assert isinstance(result.images, torch.Tensor) and result.images.shape == plain.shape


def test_return_dict_false_gives_the_tuple() -> None:
    result = _guard("sd")(INNOCENT, **call_kwargs("sd", return_dict=False))
    assert isinstance(result.output, tuple)
    assert np.array_equal(result.images, tiny("sd")(INNOCENT, **call_kwargs("sd")).images)


def test_report_is_json_serialisable() -> None:
    result = _guard("sd")(TOXIC, **call_kwargs("sd"))
    report = json.loads(result.to_json())
    assert report["action"] == "rewrite" and report["blocked"] is False
    assert report["patched_layers"] == LOCALIZED["sd"]
    assert report["decisions"][0]["benign_prompt"] == BENIGN
    assert report["injection"]["injected_steps"][LOCALIZED["sd"][0]] == [0, 1, 2, 3]
    assert {"policy_s", "encode_s", "generate_s", "total_s"} <= set(report["timings"])
    assert isinstance(result, GuardResult)


def test_real_policy_engine_by_path() -> None:
    guard = Guard(tiny("sd"), policy="policies/default.yaml", preset=LOCALIZED["sd"])
    result = guard(TOXIC, **call_kwargs("sd"))
    assert result.action is Action.REWRITE and result.decision.benign_prompt == BENIGN
    assert guard(INNOCENT, **call_kwargs("sd")).action is Action.ALLOW


def test_policy_failure_fails_closed() -> None:
    class Broken:
        def decide(self, prompt: str) -> None:
            raise RuntimeError("classifier down")

    with pytest.raises(GuardError, match="classifier down"):
        _guard("sd", policy=Broken())(INNOCENT, **call_kwargs("sd"))


def test_preset_not_fitting_the_model_is_refused() -> None:
    with pytest.raises(Exception, match="lacks"):
        Guard(tiny("sd"), policy=FakePolicy(), preset="sdxl-base-1.0")


def test_flagged_prompt_is_generated_as_given_and_reported() -> None:
    class Flagging:
        def decide(self, prompt: str) -> Decision:
            return Decision(action=Action.FLAG, prompt=prompt, risk=0.4, reasons=["review: mild term"])

    plain = tiny("sd")(TOXIC, **call_kwargs("sd")).images
    result = _guard("sd", policy=Flagging())(TOXIC, **call_kwargs("sd"))
    assert result.action is Action.FLAG and not result.blocked
    assert result.injection is None and result.patched_layers == []
    assert np.array_equal(result.images, plain)
