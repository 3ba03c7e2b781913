"""Model profiles (``safetext_model.yaml``): parsing, errors that name the file and field,
lookup from a pipeline, the one name resolver, and the shipped testbed's profile."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from safetext.errors import ModelProfileError, PipelineLoadError
from safetext.pipelines.load import SHIPPED_MODELS, check_model, missing_components, resolve_model
from safetext.pipelines.profile import GENERIC, MODEL_PROFILE_FILE, import_object, load_profile, profile_for, profile_of

REPO = Path(__file__).resolve().parents[1]


def _folder(tmp_path: Path, text: str | None) -> Path:
    folder = tmp_path / "model"
    folder.mkdir(parents=True)
    if text is not None:
        (folder / MODEL_PROFILE_FILE).write_text(text, encoding="utf-8")
    return folder


def test_the_testbed_profile_is_the_one_source_of_its_defaults() -> None:
    from safetext import testbed

    profile = testbed.profile()
    assert profile.source == testbed.MODEL_DIR / MODEL_PROFILE_FILE
    assert profile.generation == {"num_inference_steps": 20, "guidance_scale": 4.0}
    assert testbed.generation_defaults() == profile.generation
    assert testbed.generation_defaults() is not testbed.generation_defaults()  # callers may change their copy
    assert (profile.policy, profile.prompt_tag, profile.name) == ("testbed", "testbed", "safetext-testbed")
    from safetext.testbed.pairs import testbed_pairs
    from safetext.testbed.quality import read_words

    assert profile.resolve("reader") is read_words
    assert profile.resolve("pairs") is testbed_pairs


def test_the_profile_file_is_package_data() -> None:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["safetext.testbed.model"]
    assert any(fnmatch.fnmatch(MODEL_PROFILE_FILE, g) for g in globs)


def test_one_resolver_for_shipped_names(tmp_path: Path) -> None:
    from safetext import testbed

    assert set(SHIPPED_MODELS) >= {"testbed"}
    assert resolve_model("testbed") == testbed.model_dir()
    assert profile_for("testbed") == testbed.profile()
    assert resolve_model(tmp_path) == tmp_path
    assert profile_for("tiny:sd") is None  # random weights: a generic model
    with pytest.raises(PipelineLoadError, match="not found"):
        resolve_model(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(PipelineLoadError, match="is a file"):
        resolve_model(tmp_path / "file.txt")
    with pytest.raises(PipelineLoadError, match="unknown tiny pipeline kind 'bogus'"):
        check_model("tiny:bogus")


def test_a_folder_without_a_profile_is_generic(tmp_path: Path) -> None:
    assert load_profile(_folder(tmp_path, None)) is None
    assert GENERIC.reader == "tesseract" and GENERIC.policy == "default" and GENERIC.prompt_tag is None
    assert GENERIC.generation == {}
    from safetext.localize.pairs import make_pairs

    assert GENERIC.resolve("pairs") is make_pairs


def test_every_field_is_optional_and_types_are_kept(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "generation: {num_inference_steps: 8, guidance_scale: 3, clean_caption: false}\n")
    profile = load_profile(folder)
    assert profile is not None and profile.source == folder / MODEL_PROFILE_FILE
    assert profile.generation == {"num_inference_steps": 8, "guidance_scale": 3, "clean_caption": False}
    assert isinstance(profile.generation["num_inference_steps"], int)
    assert (profile.policy, profile.reader) == (GENERIC.policy, GENERIC.reader)
    empty = load_profile(_folder(tmp_path / "empty", ""))
    assert empty is not None and empty.model_dump() == GENERIC.model_dump()


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("polcy: testbed\n", "polcy", "Extra inputs are not permitted"),
        ("generation: {steps one: 3}\n", "generation", "pipeline keyword names"),
        ("generation: {guidance_scale: [1, 2]}\n", "generation.guidance_scale", ""),
        ("reader: 'not a reader!'\n", "reader", "engine name or 'pkg.module:function'"),
        ("pairs: make_pairs\n", "pairs", "pkg.module:function"),
        ("dtype: float64\n", "dtype", "float32"),
    ],
)
def test_errors_name_the_file_and_the_field(tmp_path: Path, text: str, field: str, message: str) -> None:
    folder = _folder(tmp_path, text)
    with pytest.raises(ModelProfileError) as info:
        load_profile(folder)
    shown = str(info.value)
    assert str(folder / MODEL_PROFILE_FILE) in shown and f"{field}" in shown and message in shown


def test_yaml_and_shape_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelProfileError, match=r"safetext_model.yaml:2: invalid YAML"):
        load_profile(_folder(tmp_path / "a", "name: x\npolicy: a: b\n"))
    with pytest.raises(ModelProfileError, match="must be a YAML mapping"):
        load_profile(_folder(tmp_path / "b", "- a\n- b\n"))


def test_import_paths_resolve_lazily_and_fail_clearly(tmp_path: Path) -> None:
    from safetext.localize.scoring import no_reader

    assert import_object("safetext.localize.scoring:no_reader") is no_reader
    with pytest.raises(ModelProfileError, match="cannot import 'no_such_pkg.mod'"):
        import_object("no_such_pkg.mod:f", where="x.yaml: pairs")
    with pytest.raises(ModelProfileError, match="x.yaml: reader: 'safetext.localize.scoring' has no attribute 'nope'"):
        import_object("safetext.localize.scoring:nope", where="x.yaml: reader")
    folder = _folder(tmp_path, "pairs: safetext.localize.pairs:no_such_function\n")
    profile = load_profile(folder)  # valid syntax: the import happens only when asked
    assert profile is not None
    with pytest.raises(ModelProfileError, match=rf"{MODEL_PROFILE_FILE}: pairs: .*no attribute"):
        profile.resolve("pairs")


def test_profile_of_finds_the_folder_a_pipeline_came_from(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "name: mine\nprompt_tag: signs\n")
    found = profile_of(SimpleNamespace(name_or_path=str(folder)))
    assert found is not None and (found.name, found.prompt_tag) == ("mine", "signs")
    assert profile_of(SimpleNamespace(name_or_path=str(tmp_path))) is None
    assert profile_of(object()) is None  # built in memory: a generic model


def test_a_corrupt_model_index_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text('{"unet": ["diffusers", "UNet2DConditionModel"],')
    with pytest.raises(PipelineLoadError, match=r"model_index.json: invalid JSON at line 1"):
        missing_components(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps(["not", "an", "object"]))
    with pytest.raises(PipelineLoadError, match="expected a JSON object"):
        check_model(tmp_path)


def test_profiles_import_no_torch() -> None:
    code = (
        "import sys\nfrom safetext.pipelines.profile import profile_for\n"
        "p = profile_for('testbed')\n"
        "print(p.name, sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "safetext-testbed []"
