"""``Guard(block_scope="row")``: a blocked prompt drops out of the batch and its batch-mates
generate as a call of them alone would."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _inject_helpers import BENIGN, INNOCENT, LOCALIZED, STEPS, TOXIC, FakePolicy, tiny

from safetext import Guard, GuardBlockedError
from safetext.guard import GuardError
from safetext.policy.decision import Action

BLOCKED = 'A sign that says "forbidden"'
OTHER = 'A poster that says "pizza"'


def _guard(kind: str = "sd", **kwargs) -> Guard:
    kwargs.setdefault("policy", FakePolicy(blocks=(BLOCKED,)))
    return Guard(tiny(kind), preset=LOCALIZED[kind], **kwargs)


def _gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def _kwargs(**extra) -> dict:
    return {"num_inference_steps": STEPS, "output_type": "np", **extra}


def test_blocked_row_is_none_and_the_others_match_a_call_without_it() -> None:
    guard = _guard(block_scope="row")
    result = guard([INNOCENT, BLOCKED, OTHER], generator=_gens(0, 1, 2), **_kwargs())
    alone = guard([INNOCENT, OTHER], generator=_gens(0, 2), **_kwargs())
    assert result.blocked and [a.value for a in result.actions] == ["allow", "block", "allow"]
    assert len(result.images) == 3 and result.images[1] is None
    assert np.array_equal(result.images[0], alone.images[0])
    assert np.array_equal(result.images[2], alone.images[1])
    single = guard(OTHER, generator=_gens(2), **_kwargs())
    np.testing.assert_allclose(result.images[2], single.images[0], atol=1e-5)


def test_rewritten_row_next_to_a_blocked_row_is_injected() -> None:
    guard = _guard(block_scope="row")
    result = guard([BLOCKED, TOXIC], generator=_gens(5, 6), **_kwargs())
    alone = guard([TOXIC], generator=_gens(6), **_kwargs())
    assert result.images[0] is None
    assert result.decisions[1].action is Action.REWRITE and result.decisions[1].benign_prompt == BENIGN
    assert result.patched_layers == LOCALIZED["sd"] and result.injection is not None
    assert np.array_equal(result.images[1], alone.images[0])


def test_images_per_prompt_keep_their_own_generators() -> None:
    guard = _guard(block_scope="row")
    result = guard([BLOCKED, INNOCENT], generator=_gens(1, 2, 3, 4), num_images_per_prompt=2, **_kwargs())
    alone = guard([INNOCENT], generator=_gens(3, 4), num_images_per_prompt=2, **_kwargs())
    assert result.images[0] is None and result.images[1] is None
    assert np.array_equal(np.stack(result.images[2:]), alone.images)


def test_negative_prompt_rows_follow_their_prompts() -> None:
    guard = _guard(block_scope="row")
    result = guard([BLOCKED, INNOCENT], negative_prompt=["blurry", "dark"], generator=_gens(0, 1), **_kwargs())
    alone = guard([INNOCENT], negative_prompt=["dark"], generator=_gens(1), **_kwargs())
    assert np.array_equal(result.images[1], alone.images[0])


def test_all_blocked_generates_nothing_and_raise_only_then() -> None:
    result = _guard(block_scope="row")([BLOCKED, BLOCKED], generator=_gens(0, 1), **_kwargs())
    assert result.images is None and result.output is None
    with pytest.raises(GuardBlockedError):
        _guard(block_scope="row", on_block="raise")([BLOCKED], generator=_gens(0), **_kwargs())
    partial = _guard(block_scope="row", on_block="raise")([BLOCKED, INNOCENT], generator=_gens(0, 1), **_kwargs())
    assert partial.images[0] is None and partial.images[1] is not None


def test_call_scope_still_blocks_the_whole_batch() -> None:
    result = _guard()([INNOCENT, BLOCKED], generator=_gens(0, 1), **_kwargs())
    assert result.blocked and result.images is None


def test_bad_scope_and_misaligned_generators_fail_closed() -> None:
    with pytest.raises(GuardError, match="block_scope"):
        _guard(block_scope="image")  # type: ignore[arg-type]
    with pytest.raises(GuardError, match="one per image"):
        _guard(block_scope="row")([BLOCKED, INNOCENT], generator=_gens(0, 1, 2), **_kwargs())


def test_row_scope_call_is_logged_once_with_every_decision(tmp_path) -> None:  # noqa: ANN001
    import json

    log = tmp_path / "audit.jsonl"
    result = _guard(block_scope="row", log=log)([INNOCENT, BLOCKED], generator=_gens(0, 1), **_kwargs())
    assert result.images[0] is not None and result.images[1] is None
    (line,) = [json.loads(text) for text in log.read_text().splitlines()]
    assert line["action"] == "block" and line["prompts"] == [INNOCENT, BLOCKED]
