"""User mistakes on the command line: one ``error:`` line on stderr naming what is wrong,
exit code 2, no traceback, and (for paths and options) nothing loaded first."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from safetext.cli import app
from safetext.errors import PipelineLoadError
from safetext.inject import InjectionConfig

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from _inject_helpers import tiny

    folder = tmp_path_factory.mktemp("tiny-sd")
    tiny("sd").save_pretrained(folder)
    return folder


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a command loads a model before it has checked its arguments."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the arguments were checked")

    import safetext.pipelines.load

    monkeypatch.setattr(safetext.pipelines.load, "load_pipeline", refuse)


def user_error(args: list[str], *needles: str) -> str:
    """Run ``args``; assert exit 2 and exactly one ``error:`` line holding every needle."""
    result = runner.invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.output
    # library progress bars may share stderr inside this test process; the error is one line
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and result.stderr.rstrip().endswith(lines[0]), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------ generate


def test_generate_out_is_an_existing_file(tmp_path: Path, model_dir: Path, no_loading: None) -> None:
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"x")
    user_error(["generate", "a cat", "--model", str(model_dir), "--out", str(taken)], "--out:", "is a file, not a folder")


def test_generate_out_below_a_file(tmp_path: Path, model_dir: Path, no_loading: None) -> None:
    (tmp_path / "f").write_text("x")
    user_error(["generate", "a cat", "--model", str(model_dir), "--out", str(tmp_path / "f" / "sub")], "--out:", "is a file")


@pytest.mark.parametrize("seed", [str(2**70), str(2**64), "-1"])
def test_generate_seed_out_of_range(seed: str, tmp_path: Path, model_dir: Path, no_loading: None) -> None:
    user_error(["generate", "a cat", "--model", str(model_dir), "--out", str(tmp_path), "--seed", seed], "--seed:", "0..18446744073709551615")


def test_generate_preset_naming_modules_the_model_lacks(tmp_path: Path, model_dir: Path) -> None:
    preset = tmp_path / "other.yaml"
    InjectionConfig(modules=["down_blocks.9.attentions.0.transformer_blocks.0.attn2"], name="other").to_yaml(preset)
    args = ["generate", "a cat", "--model", str(model_dir), "--out", str(tmp_path / "o"), "--steps", "1", "--preset", str(preset)]
    user_error(args, "down_blocks.9.attentions.0.transformer_blocks.0.attn2", "lacks")
    assert not (tmp_path / "o").exists()


def test_generate_unknown_preset_name(tmp_path: Path, model_dir: Path, no_loading: None) -> None:
    user_error(["generate", "a cat", "--model", str(model_dir), "--out", str(tmp_path), "--preset", "sdxl-typo"], "--preset:", "sdxl-typo")


def test_generate_corrupt_model_index(tmp_path: Path, model_dir: Path, no_loading: None) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "model_index.json").write_text('{"unet": ["diffusers", "UNet2DConditionModel"')
    user_error(["generate", "a cat", "--model", str(broken), "--out", str(tmp_path / "o")], str(broken / "model_index.json"), "invalid JSON")


def test_generate_missing_and_incomplete_model(tmp_path: Path, model_dir: Path, no_loading: None) -> None:
    user_error(["generate", "a cat", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], "--model:", "not found")
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    shutil.rmtree(broken / "unet")
    user_error(["generate", "a cat", "--model", str(broken), "--out", str(tmp_path / "o")], "missing component(s) unet")


def test_generate_device_this_machine_lacks(tmp_path: Path, model_dir: Path, no_loading: None) -> None:
    import torch

    base = ["generate", "a cat", "--model", str(model_dir), "--out", str(tmp_path)]
    user_error([*base, "--device", "banana"], "--device:", "not a torch device")
    if not torch.cuda.is_available():
        user_error([*base, "--device", "cuda"], "--device:", "CUDA is not available")
        user_error([*base, "--device", "cuda:3"], "CUDA is not available")
    else:
        user_error([*base, "--device", f"cuda:{torch.cuda.device_count()}"], "CUDA device(s) here")
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        user_error([*base, "--device", "mps"], "--device:", "MPS is not available")


def test_generate_missing_and_invalid_policy(tmp_path: Path, model_dir: Path, no_loading: None) -> None:
    base = ["generate", "a cat", "--model", str(model_dir), "--out", str(tmp_path)]
    user_error([*base, "--policy", str(tmp_path / "nope.yaml")], "--policy:", "policy file not found")
    bad = tmp_path / "p.yaml"
    bad.write_text("extends: default\ncategories:\n  insult:\n    acton: block\n", encoding="utf-8")
    user_error([*base, "--policy", str(bad)], "invalid policy", "p.yaml:4", "categories.insult.acton")


def test_generate_empty_prompt(tmp_path: Path, model_dir: Path, no_loading: None) -> None:
    user_error(["generate", "  ", "--model", str(model_dir), "--out", str(tmp_path)], "the prompt is empty")


def test_verbose_shows_the_traceback_instead(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text("{not json")
    args = ["--verbose", "generate", "a cat", "--model", str(tmp_path), "--out", str(tmp_path / "o")]
    result = runner.invoke(app, args)
    from safetext.errors import SafetextError

    assert result.exit_code == 1
    assert isinstance(result.exception, SafetextError) and "invalid JSON" in str(result.exception)


def test_verbose_reraises_library_errors(tmp_path: Path, model_dir: Path) -> None:
    preset = tmp_path / "other.yaml"
    InjectionConfig(modules=["down_blocks.9.attn2"], name="other").to_yaml(preset)
    args = ["--verbose", "generate", "a cat", "--model", str(model_dir), "--out", str(tmp_path / "o"), "--preset", str(preset)]
    result = runner.invoke(app, args)
    from safetext.errors import SafetextError

    assert result.exit_code == 1 and isinstance(result.exception, SafetextError)


# ------------------------------------------------------------------ bench


def test_bench_bad_paths_and_options(tmp_path: Path, no_loading: None) -> None:
    (tmp_path / "file").write_text("x")
    base = ["bench", "--model", "tiny:sd", "--no-progress"]
    user_error([*base, "--out", str(tmp_path / "file")], "--out:", "is a file")
    user_error([*base, "--out", str(tmp_path / "o"), "--thresholds", str(tmp_path / "none.yaml")], "--thresholds:", "not found")
    bad = tmp_path / "bad.yaml"
    bad.write_text("toxic:\n  safetext:\n    exact_leakage: {maximum: 0}\n")
    user_error([*base, "--out", str(tmp_path / "o"), "--thresholds", str(bad)], "--thresholds:", "bad.yaml", "bounds must use")
    bad.write_text("toxic: [unclosed\n")
    user_error([*base, "--out", str(tmp_path / "o"), "--thresholds", str(bad)], "invalid YAML")
    user_error([*base, "--out", str(tmp_path / "o"), "--suite", "nasty"], "'--suite'", "nasty")
    user_error([*base, "--out", str(tmp_path / "o"), "--dtype", "float64"], "'--dtype'")
    user_error(["bench", "--model", "tiny:bogus", "--out", str(tmp_path / "o")], "unknown tiny pipeline kind 'bogus'")
    user_error(["bench", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], "--model:", "not found")
    user_error([*base, "--out", str(tmp_path / "o"), "--device", "cuda:x"], "--device:")
    assert not (tmp_path / "o").exists()


def test_bench_selection_and_policy_fail_before_the_model(tmp_path: Path, no_loading: None) -> None:
    base = ["bench", "--model", "tiny:sd", "--no-progress", "--out", str(tmp_path / "o")]
    user_error([*base, "--subset", "no-such-tag"], "no prompts selected", "no-such-tag")
    user_error([*base, "--policy", str(tmp_path / "nope.yaml")], "policy file not found")


# ------------------------------------------------------------------ localize


def test_localize_bad_outputs_and_inputs(tmp_path: Path, no_loading: None) -> None:
    (tmp_path / "file").write_text("x")
    base = ["localize", "--model", "tiny:sd", "--no-progress", "--report", str(tmp_path / "r")]
    user_error([*base, "--out", str(tmp_path / "file" / "preset.yaml")], "--out:", "is a file, not a folder")
    user_error([*base, "--out", str(tmp_path)], "--out:", "is a folder")
    out = ["--out", str(tmp_path / "p.yaml")]
    user_error(["localize", "--model", "tiny:sd", *out, "--report", str(tmp_path / "file")], "--report:", "is a file")
    user_error([*base, *out, "--prompts", str(tmp_path / "none.txt")], "--prompts:", "not found")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("just a line\n")
    user_error([*base, *out, "--prompts", str(prompts)], "prompts.txt:1:", "expected")
    user_error([*base, *out, "--ocr", "ocrmagic"], "--ocr:", "unknown OCR engine")
    user_error([*base, *out, "--ocr", "no_such_pkg:read"], "--ocr:", "cannot import")
    user_error([*base, *out, "--dtype", "float64"], "--dtype:")
    user_error([*base, *out, "--seed", str(2**64 - 1), "--pairs", "2"], "--seed:", "and the 1 after it")
    user_error(["localize", "--model", "tiny:nope", *out], "unknown tiny pipeline kind 'nope'")


def test_localize_bad_model_profile_names_file_and_field(tmp_path: Path, model_dir: Path, no_loading: None) -> None:
    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    (folder / "safetext_model.yaml").write_text("generation: {num_inference_steps: 2}\nsteps: 3\n")
    user_error(["localize", "--model", str(folder), "--out", str(tmp_path / "p.yaml")], "safetext_model.yaml", "steps", "not permitted")
    (folder / "safetext_model.yaml").write_text("pairs: safetext.localize.pairs:gone\n")
    user_error(["localize", "--model", str(folder), "--out", str(tmp_path / "p.yaml")], "safetext_model.yaml: pairs", "no attribute 'gone'")


# ------------------------------------------------------------------ demo, check, policy, root


def test_demo_bad_out_and_policy(tmp_path: Path, no_loading: None) -> None:
    (tmp_path / "file").write_text("x")
    user_error(["demo", "--out", str(tmp_path / "file")], "--out:", "is a file")
    user_error(["demo", "--out", str(tmp_path / "o"), "--policy", "nope-policy"], "--policy:", "not found")
    user_error(["demo", "--out", str(tmp_path / "o"), "--model", str(tmp_path / "none")], "--model:", "not found")
    user_error(["demo", "--out", str(tmp_path / "o"), "--seed", str(2**70)], "--seed:")


def test_check_and_policy_commands(tmp_path: Path) -> None:
    user_error(["check", "--file", str(tmp_path)], "cannot read prompt file")
    user_error(["policy", "validate", str(tmp_path / "nope.yaml")], "policy file not found")
    user_error(["policy", "schema", "-o", str(tmp_path)], "--output:", "is a folder")
    user_error(["check", "hi", "--policy"], "--policy")


def test_unknown_commands_and_options() -> None:
    user_error(["genrate"], "No such command 'genrate'")
    user_error(["--bogus"], "No such option: --bogus")
    user_error(["generate", "a cat"], "Missing option '--model'", "safetext generate --help")
    user_error(["bench", "--seeds", "many"], "'--seeds'", "valid integer")


def test_console_entry_point_prints_one_line(tmp_path: Path) -> None:
    """The real entry point (``app()``), not the test runner: stderr is one line, no traceback."""
    (tmp_path / "model_index.json").write_text("{not json")
    code = "import sys; from safetext.cli import app; sys.argv = ['safetext'] + sys.argv[1:]; app()"
    cmd = [sys.executable, "-c", code, "generate", "a cat", "--model", str(tmp_path), "--out", str(tmp_path / "o")]
    quiet = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 2
    assert quiet.stderr.strip().count("\n") == 0 and quiet.stderr.startswith("error: ") and "invalid JSON" in quiet.stderr
    assert "Traceback" not in quiet.stderr + quiet.stdout
    loud = subprocess.run(cmd[:3] + ["--verbose"] + cmd[3:], capture_output=True, text=True, timeout=120)
    assert loud.returncode == 1 and "Traceback" in loud.stderr


def test_load_pipeline_names_a_corrupt_index(tmp_path: Path) -> None:
    from safetext.pipelines import load_pipeline

    (tmp_path / "model_index.json").write_text("[1, 2")
    with pytest.raises(PipelineLoadError, match="model_index.json: invalid JSON"):
        load_pipeline(tmp_path)
