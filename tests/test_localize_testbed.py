"""The search on the testbed model, from a fixed seed, reproduces the preset shipped for it.

``safetext/testbed/preset.yaml`` is what ``benchmarks/localize_bench.py --preset-out``
found with the sweep (8 pairs, 20 steps, start steps 0-4); the export copies it into the
model folder as ``safetext_preset.yaml``. Here the default strategy (``auto``: the
attribution search on this model) runs on the same 8 pairs and 20 steps, start search
included: 2 baseline runs, one gradient pass and 3 patched runs (about 40 s on one core).
Fewer pairs are not equivalent: the criteria ask for B's word read exactly in 90% as many pairs as B direct,
and which modules achieve that depends on the pairs.

When the testbed is retrained, re-run the bench with ``--preset-out`` to refresh the preset.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from safetext.inject import InjectionConfig

PRESET = Path(__file__).resolve().parents[1] / "safetext" / "testbed" / "preset.yaml"
PAIRS, STEPS, SEED = 8, 20, 0

pytestmark = pytest.mark.slow  # real generation on the shipped testbed


@pytest.fixture(scope="module")
def testbed_pipe():
    from safetext import testbed

    try:
        testbed.model_dir()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    torch.set_num_threads(1)
    return testbed.load()


def test_default_search_reproduces_the_shipped_testbed_preset(testbed_pipe) -> None:
    from safetext.localize.api import localize
    from safetext.pipelines import profile_of

    profile = profile_of(testbed_pipe)  # what `safetext localize --model testbed` uses
    assert profile is not None and profile.generation["num_inference_steps"] == STEPS
    shipped = InjectionConfig.from_yaml(PRESET)
    result = localize(
        testbed_pipe,
        profile.resolve("pairs")(PAIRS, SEED),
        steps=STEPS,
        seed=SEED,
        reader=profile.resolve("reader"),
        call_kwargs={"guidance_scale": profile.generation["guidance_scale"]},
    )
    assert result.chosen.accepted
    assert set(result.chosen.modules) == set(shipped.modules)
    assert result.chosen.strategy == "attribution"
    assert result.preset.start == pytest.approx(shipped.start)
    assert result.chosen.run_counts()["layers"] == 0  # ranked by the gradient pass, not single-layer runs
