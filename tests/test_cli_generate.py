"""``safetext generate`` on a tiny pipeline saved to disk, and ``load_pipeline``'s errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _inject_helpers import LOCALIZED, TOXIC, call_kwargs, tiny
from typer.testing import CliRunner

from safetext.cli import app
from safetext.inject import InjectionConfig
from safetext.pipelines import PipelineLoadError, load_pipeline


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-sd")
    tiny("sd").save_pretrained(folder)
    InjectionConfig(modules=LOCALIZED["sd"], start=0.25, name="tiny-sd").to_yaml(folder / "safetext_preset.yaml")
    return folder


def test_load_pipeline_round_trip(model_dir: Path) -> None:
    loaded = load_pipeline(model_dir)
    kwargs = call_kwargs("sd")
    assert np.array_equal(loaded(TOXIC, **kwargs).images, tiny("sd")(TOXIC, **call_kwargs("sd")).images)


def test_load_pipeline_errors(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PipelineLoadError, match="not found"):
        load_pipeline(tmp_path / "nope")
    with pytest.raises(PipelineLoadError, match="model_index.json"):
        load_pipeline(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    shutil.rmtree(broken / "unet")
    (broken / "vae" / "config.json").unlink()
    with pytest.raises(PipelineLoadError, match="missing component.*unet, vae|missing component.*vae, unet"):
        load_pipeline(broken)


def test_generate_writes_images_and_report(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["generate", TOXIC, "--model", str(model_dir), "--steps", "4", "--seed", "3", "--out", str(out), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["action"] == "rewrite"
    assert report["decisions"][0]["benign_prompt"] == 'A sign that says "angel"'
    assert report["patched_layers"] == LOCALIZED["sd"]
    assert report["preset"] == "tiny-sd"  # found in the model folder by preset=auto
    assert report["injection"]["start_step"] == 1
    assert {"policy_s", "generate_s", "total_s"} <= set(report["timings"])
    assert report["images"] == [str(out / "image_0.png")] and (out / "image_0.png").is_file()


def test_generate_with_explicit_preset_file_and_allowed_prompt(model_dir: Path, tmp_path: Path) -> None:
    preset = tmp_path / "preset.yaml"
    InjectionConfig(modules=LOCALIZED["sd"], name="explicit").to_yaml(preset)
    out = tmp_path / "out"
    args = ["generate", "a cat", "--model", str(model_dir), "--steps", "2", "--out", str(out), "--preset", str(preset)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "allow" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["action"] == "allow" and report["patched_layers"] == []


def test_generate_reports_a_missing_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["generate", "a cat", "--model", str(tmp_path / "missing"), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "model folder not found" in result.output
