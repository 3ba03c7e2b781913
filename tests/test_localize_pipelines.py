"""End to end on tiny random SD, SDXL, IF and SD3 pipelines: the code path, not which layers win."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _inject_helpers import KINDS, TOXIC, FakePolicy, call_kwargs, processors, tiny
from typer.testing import CliRunner

from safetext.guard import Guard
from safetext.inject import InjectionConfig, candidate_modules
from safetext.localize import make_pairs
from safetext.localize.api import default_max_start, localize
from safetext.localize.report import write_report
from safetext.localize.runner import PatchRunner

torch.set_num_threads(1)


def _extras(kind: str) -> dict[str, Any]:
    return {k: v for k, v in call_kwargs(kind).items() if k in ("clean_caption", "max_sequence_length")}


@pytest.mark.parametrize("kind", KINDS)
def test_localize_end_to_end_and_the_preset_loads_in_guard(kind: str, tmp_path: Path) -> None:
    pipe = tiny(kind)
    before = processors(pipe)
    result = localize(pipe, make_pairs(1, seed=0), steps=2, strategies=("sweep", "group"), call_kwargs=_extras(kind))
    assert processors(pipe) == before  # every injection was undone

    candidates = candidate_modules(pipe)
    assert set(result.results) == {"sweep", "group"}
    assert result.results["sweep"].run_counts()["layers"] == len(candidates)
    assert set(result.preset.modules) <= set(candidates)
    assert result.baselines.summary()["text_score_from"] == "pixels"  # random weights draw no words
    assert result.calls == 2 + len(result.evaluated)  # baselines + one call per distinct configuration

    path = tmp_path / "preset.yaml"
    result.preset.to_yaml(path)
    assert InjectionConfig.from_yaml(path) == result.preset
    guard = Guard(pipe, policy=FakePolicy(), preset=str(path))
    out = guard(TOXIC, **call_kwargs(kind, num_inference_steps=2))
    assert out.patched_layers == list(result.preset.modules)
    assert guard.config.start_step(2) == result.chosen.start_step


def test_baselines_match_a_plain_call_and_batching_changes_nothing() -> None:
    pipe = tiny("sd")
    pairs = make_pairs(3, seed=1)
    batched = PatchRunner(pipe, pairs, steps=2, batch_size=3)
    single = PatchRunner(pipe, pairs, steps=2, batch_size=1)
    plain = pipe(
        [p.a for p in pairs], num_inference_steps=2, output_type="pil", generator=[torch.Generator().manual_seed(i) for i in range(3)]
    ).images
    a = batched.unpatched()
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, plain))
    module = candidate_modules(pipe)[-1]
    for x, y in zip(batched.patched([module], 0), single.patched([module], 0)):
        assert np.abs(np.asarray(x, dtype=int) - np.asarray(y, dtype=int)).max() <= 1
    assert batched.calls == 2 and single.calls == 3
    batched.unpatched()
    assert batched.calls == 2  # cached


def test_patching_every_layer_of_sd_gives_b_direct() -> None:
    """SD 1.x reads text only through attn2, so patching all of them from step 0 is prompt B."""
    pipe = tiny("sd")
    runner = PatchRunner(pipe, make_pairs(2, seed=2), steps=2)
    patched = runner.patched(candidate_modules(pipe), 0)
    for x, y in zip(patched, runner.b_direct()):
        assert np.abs(np.asarray(x, dtype=int) - np.asarray(y, dtype=int)).max() <= 1


def test_report_files(tmp_path: Path) -> None:
    pipe = tiny("sd")
    result = localize(pipe, make_pairs(2, seed=0), steps=2, strategies=("group",), keep_images=2)
    paths = write_report(result, tmp_path / "report", model="tiny:sd")
    for path in paths.values():
        assert path.is_file() and path.stat().st_size > 0
    data = json.loads(paths["json"].read_text())
    assert data["strategies"]["group"]["modules"] == list(result.preset.modules)
    assert len(data["layers"]) == len(candidate_modules(pipe))
    assert "| index | module |" in paths["layers_md"].read_text()
    from PIL import Image

    assert Image.open(paths["plot"]).size[0] > 300
    assert Image.open(paths["grid"]).size[1] > 2 * 16


def test_cli(tmp_path: Path) -> None:
    from safetext.cli import app

    out = tmp_path / "p.yaml"
    res = CliRunner().invoke(
        app,
        ["localize", "--model", "tiny:sd", "--pairs", "1", "--steps", "2", "--ocr", "none", "--no-progress",
         "--strategy", "both", "--out", str(out), "--report", str(tmp_path / "r"), "--json"],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["modules"] == InjectionConfig.from_yaml(out).modules
    assert set(summary["runs"]) == {"sweep", "group"}
    assert (tmp_path / "r" / "report.md").is_file()


def test_cli_refuses_a_missing_model(tmp_path: Path) -> None:
    from safetext.cli import app

    res = CliRunner().invoke(app, ["localize", "--model", str(tmp_path / "nope"), "--no-progress"])
    assert res.exit_code == 2
    assert "not found" in res.output


@pytest.mark.parametrize(("steps", "expected"), [(1, 0), (2, 1), (4, 1), (20, 4), (50, 10)])
def test_default_max_start(steps: int, expected: int) -> None:
    assert default_max_start(steps) == expected


def test_flux_double_and_single_stream_modules_are_localized() -> None:
    from safetext.pipelines import build_tiny_pipeline

    pipe = build_tiny_pipeline("flux")
    result = localize(
        pipe, make_pairs(1), steps=2, strategies=("sweep",),
        call_kwargs={"height": 32, "width": 32, "max_sequence_length": 16},
    )
    swept = {modules[0] for (modules, _start) in result.evaluated if len(modules) == 1}
    assert {site.kind for site in result.sites} == {"joint", "single"}
    assert swept == {
        "transformer_blocks.0.attn", "transformer_blocks.1.attn",
        "single_transformer_blocks.0.attn", "single_transformer_blocks.1.attn",
    }


def test_out_of_memory_halves_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = PatchRunner(tiny("sd"), make_pairs(3, seed=0), steps=1, batch_size=4)
    real = PatchRunner._call

    def small_batches_only(self: PatchRunner, which: str, config: Any, rows: range) -> Any:
        if len(rows) > 2:
            raise torch.OutOfMemoryError("fake")
        return real(self, which, config, rows)

    monkeypatch.setattr(PatchRunner, "_call", small_batches_only)
    assert len(runner.unpatched()) == 3
    assert runner.batch_size == 2 and runner.calls == 2
