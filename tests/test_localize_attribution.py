"""Attribution patching on tiny random pipelines: the gradient is right, and the strategy runs end to end."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from _inject_helpers import call_kwargs, processors, tiny

from safetext.inject import candidate_modules
from safetext.inject.sites import attention_sites, denoiser_of
from safetext.localize import make_pairs
from safetext.localize.api import LocalizeError, localize, resolve_strategies
from safetext.localize.attribution import (
    AttributionUnsupported,
    _denoise,
    _InterpolateText,
    _processors,
    _RecordText,
    _with_latent,
    attribute,
    attribution_steps,
    check_supported,
)
from safetext.localize.runner import PatchRunner

torch.set_num_threads(1)


def _extras(kind: str) -> dict[str, Any]:
    return {k: v for k, v in call_kwargs(kind).items() if k in ("clean_caption", "max_sequence_length")}


@pytest.mark.parametrize(("steps", "points", "expected"), [(20, 5, [0, 5, 10, 14, 19]), (3, 5, [0, 1, 2]), (1, 5, [0]), (10, 1, [0])])
def test_attribution_steps_spread_over_the_run(steps: int, points: int, expected: list[int]) -> None:
    assert attribution_steps(steps, points) == expected


def _recorded(kind: str, steps: int = 2) -> tuple[Any, PatchRunner]:
    pipe = tiny(kind)
    runner = PatchRunner(pipe, make_pairs(2, seed=3), steps=steps, record_steps=[0, steps - 1], call_kwargs=_extras(kind))
    runner.unpatched()
    runner.b_direct()
    return pipe, runner


def _outputs(pipe: Any, runner: PatchRunner, alphas: dict[str, float], step: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out_A, out_B on A's latent, out with text interpolated by ``alphas``) at ``step``."""
    _, denoiser = denoiser_of(pipe)
    names = candidate_modules(pipe)
    modules = {n: denoiser.get_submodule(n) for n in names}
    args_a, kwargs_a = runner.recorded["a"][0][step]
    args_b, kwargs_b = _with_latent(args_a, kwargs_a, *runner.recorded["b"][0][step])
    with torch.no_grad():
        out_a = _denoise(denoiser, args_a, kwargs_a)
        with _processors(modules, lambda _n, inner: _RecordText(inner)) as seen:
            out_b = _denoise(denoiser, args_b, kwargs_b)
        benign = {n: p.text for n, p in seen.items()}
        make = lambda n, inner: _InterpolateText(inner, torch.tensor(alphas.get(n, 0.0)), benign[n])  # noqa: E731
        with _processors(modules, make):
            mixed = _denoise(denoiser, args_a, kwargs_a)
    return out_a, out_b, mixed


def test_interpolating_every_module_fully_is_prompt_b() -> None:
    """alpha = 1 everywhere patches every module; SD reads text only there, so that is prompt B; alpha = 0 is A."""
    pipe, runner = _recorded("sd")
    out_a, out_b, mixed = _outputs(pipe, runner, {n: 1.0 for n in candidate_modules(pipe)})
    assert (out_a - out_b).abs().max() > 1e-3  # the prompts do differ
    torch.testing.assert_close(mixed, out_b, rtol=1e-4, atol=1e-4)
    _, _, none = _outputs(pipe, runner, {})
    torch.testing.assert_close(none, out_a, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["sd", "if"])
def test_scores_match_finite_differences(kind: str) -> None:
    """Each module's score is d<out, d>/d alpha at 0, over |d|^2: compare with a central difference."""
    pipe, runner = _recorded(kind, steps=1)
    _, denoiser = denoiser_of(pipe)
    sites = attention_sites(pipe)
    found = attribute(denoiser, sites, runner.recorded["a"], runner.recorded["b"], run_rows=runner.run_rows)
    out_a, out_b, _ = _outputs(pipe, runner, {})
    direction = out_b - out_a
    norm = float((direction.double() ** 2).sum())
    eps = 1e-2
    for site in sites[:3]:
        plus = _outputs(pipe, runner, {site.name: eps})[2]
        minus = _outputs(pipe, runner, {site.name: -eps})[2]
        numeric = float(((plus - minus).double() * direction.double()).sum()) / (2 * eps) / norm
        assert math.isclose(found.scores[site.name], numeric, rel_tol=0.05, abs_tol=1e-4), site.name
    assert found.run_equivalents == pytest.approx(4 * 2 * 1 / runner.run_rows)


def test_recording_changes_no_image_and_restores_everything() -> None:
    pipe = tiny("sd")
    pairs = make_pairs(2, seed=1)
    plain = PatchRunner(pipe, pairs, steps=2).unpatched()
    runner = PatchRunner(pipe, pairs, steps=2, record_steps=[0, 1])
    recorded = runner.unpatched()
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(plain, recorded))
    assert sorted(runner.recorded["a"][0]) == [0, 1]
    sample = runner.recorded["a"][0][0][0][0]
    assert sample.shape[0] == 2  # the conditional half of the guidance batch

    before = processors(pipe)
    flags = [p.requires_grad for p in pipe.unet.parameters()]
    runner.b_direct()
    attribute(pipe.unet, attention_sites(pipe), runner.recorded["a"], runner.recorded["b"], run_rows=runner.run_rows)
    assert processors(pipe) == before
    assert [p.requires_grad for p in pipe.unet.parameters()] == flags


def test_out_of_memory_splits_the_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    import safetext.localize.attribution as attribution

    pipe, runner = _recorded("sdxl")  # SDXL: added_cond_kwargs must be split along with the rows
    args = (pipe.unet, attention_sites(pipe), runner.recorded["a"], runner.recorded["b"])
    whole = attribute(*args, run_rows=runner.run_rows)
    real = attribution._step
    seen: list[int] = []

    def one_row_only(denoiser: Any, modules: Any, a: Any, b: Any) -> Any:
        rows = a[0][0].shape[0]
        seen.append(rows)
        if rows > 1:
            raise torch.OutOfMemoryError("fake")
        return real(denoiser, modules, a, b)

    monkeypatch.setattr(attribution, "_step", one_row_only)
    split = attribute(*args, run_rows=runner.run_rows)
    assert 2 in seen and 1 in seen
    np.testing.assert_allclose(split.per_step, whole.per_step, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(split.norms, whole.norms, rtol=1e-4)  # float32 sums in another order
    assert split.row_passes == whole.row_passes


@pytest.mark.parametrize("kind", ["sd", "sdxl", "if"])
def test_attribution_strategy_end_to_end(kind: str) -> None:
    pipe = tiny(kind)
    before = processors(pipe)
    result = localize(pipe, make_pairs(2, seed=0), steps=3, strategies=("attribution",), call_kwargs=_extras(kind))
    assert processors(pipe) == before
    assert result.attribution is not None
    scores = result.attribution.scores
    assert set(scores) == set(candidate_modules(pipe)) and all(math.isfinite(v) for v in scores.values())
    found = result.results["attribution"]
    assert found.ranking[0] == max(scores, key=scores.__getitem__)
    assert set(found.modules) == set(found.ranking[: len(found.modules)])  # a prefix of the gradient ranking
    assert found.run_counts()["layers"] == 0  # no single-layer runs
    assert found.cost == pytest.approx(len(found.runs) + result.attribution.run_equivalents)
    assert result.calls == 2 + len(result.evaluated)  # the gradient pass needs no pipeline call


def test_joint_attention_is_refused_and_auto_falls_back_to_group() -> None:
    pipe = tiny("sd3")
    with pytest.raises(AttributionUnsupported, match="joint"):
        check_supported(attention_sites(pipe))
    assert resolve_strategies(attention_sites(pipe), ["auto"]) == ("group",)
    assert resolve_strategies(attention_sites(tiny("sd")), ["auto", "sweep", "attribution"]) == ("attribution", "sweep")
    with pytest.raises(LocalizeError, match="use the group or sweep strategy"):
        localize(pipe, make_pairs(1), steps=1, strategies=("attribution",), call_kwargs=_extras("sd3"))
    with pytest.raises(LocalizeError, match="unknown strategy"):
        resolve_strategies(attention_sites(pipe), ["fastest"])


def test_a_denoiser_call_count_other_than_the_steps_is_refused() -> None:
    runner = PatchRunner(tiny("sd"), make_pairs(1, seed=0), steps=2, record_steps=[0])
    runner.steps = 3  # as if the pipeline ran its denoiser twice in some step
    with pytest.raises(RuntimeError, match="one call per step"):
        runner.unpatched()


def test_cli_default_strategy_is_attribution(tmp_path: Any) -> None:
    import json

    from typer.testing import CliRunner

    from safetext.cli import app

    res = CliRunner().invoke(
        app,
        ["localize", "--model", "tiny:sd", "--pairs", "1", "--steps", "2", "--ocr", "none", "--no-progress",
         "--out", str(tmp_path / "p.yaml"), "--report", str(tmp_path / "r"), "--json"],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert set(summary["runs"]) == {"attribution"}
    assert summary["runs"]["attribution"]["layers"] == 0 and summary["runs"]["attribution"]["attribution"] > 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert set(report["attribution"]["scores"]) == set(candidate_modules(tiny("sd")))
    assert "attribution" in (tmp_path / "r" / "layers.md").read_text()
