"""Text editing: which text an edit changes, ``safetext.edit`` on a tiny pipeline, and
``safetext edit`` (argument checks, its output folder; on the testbed, what OCR reads)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _inject_helpers import LOCALIZED, call_kwargs, tiny
from typer.testing import CliRunner

import safetext
from safetext.cli import app
from safetext.editing import EditResult, edit, match_case, plan_edit, rendered_texts
from safetext.errors import EditError, SafetextError
from safetext.inject import InjectionConfig
from safetext.inject.installer import run_injected

PROMPT = 'A sign that says "idiot"'
TWO = 'a red sign that says "open" above a blue banner reading "closed"'
runner = CliRunner()


def _kwargs(**extra: object) -> dict[str, object]:
    kwargs = call_kwargs("sd", **extra)
    kwargs.pop("generator")
    return kwargs


# ------------------------------------------------------------------ which text


@pytest.mark.parametrize(
    ("prompt", "new", "edited"),
    [
        ('a red sign that says "hello"', "pizza", 'a red sign that says "pizza"'),
        ("a yellow banner with the text: champ, black letters", "cafe", "a yellow banner with the text: cafe, black letters"),
        ("a black circle reading stop", "exit", "a black circle reading exit"),
        ("a blue banner reading LOSER", "champ", "a blue banner reading CHAMP"),  # upper case kept
        ('A sign that says "Coffee".', "iced tea", 'A sign that says "Iced Tea".'),  # title case kept
        ('a sign that says "open"', "McDonald", 'a sign that says "McDonald"'),  # the user's capitals win
    ],
)
def test_plan_edit_finds_the_rendered_text(prompt: str, new: str, edited: str) -> None:
    plan = plan_edit(prompt, new)
    assert plan.edited_prompt == edited
    assert plan.prompt[plan.start : plan.end] == plan.old_text


def test_replace_chooses_among_several_texts() -> None:
    assert [s.text for s in rendered_texts(TWO)] == ["open", "closed"]
    plan = plan_edit(TWO, "shut", replace="closed")
    assert plan.old_text == "closed"
    assert plan.edited_prompt == 'a red sign that says "open" above a blue banner reading "shut"'
    assert plan_edit(TWO, "ajar", replace="OPEN").edited_prompt.startswith('a red sign that says "ajar"')


def test_replace_inside_a_phrase_and_outside_rendered_text() -> None:
    inside = plan_edit('a shop sign reading "Essex Classic Cars"', "modern", replace="classic")
    assert inside.edited_prompt == 'a shop sign reading "Essex Modern Cars"'
    # "red" occurs twice, once as the rendered text: that one changes
    assert plan_edit('a red sign that says "red"', "blue", replace="red").edited_prompt == 'a red sign that says "blue"'
    # no render cue at all: the one occurrence in the prompt
    assert plan_edit("a red sign, hello", "bye", replace="hello").edited_prompt == "a red sign, bye"


@pytest.mark.parametrize(
    ("prompt", "new", "replace", "message"),
    [
        (TWO, "shut", None, "renders 2 texts ('open', 'closed'); choose one with replace"),
        ("a red sign", "shut", None, "no rendered text found"),
        (TWO, "shut", "ajar", "'ajar' does not occur in the prompt (its rendered text: 'open', 'closed')"),
        ('a sign that says "no no"', "yes", "no", "occurs 2 times in the rendered text"),
        ("a red sign next to a red car", "blue", "red", "occurs 2 times in the prompt"),
        ('a sign that says "hi"', "   ", None, "the new text is empty"),
        ('a sign that says "hi"', 'say "x"', None, "contains the quote"),
        ('a sign that says "hi"', "hi", None, "nothing to edit"),
        ('a sign that says "hi"', "a\nb", None, "one line"),
        ('a sign that says "hi"', "x", "  ", "replace must be a non-empty string"),
    ],
)
def test_plan_edit_errors(prompt: str, new: str, replace: str | None, message: str) -> None:
    with pytest.raises(EditError) as caught:
        plan_edit(prompt, new, replace=replace)
    assert message in str(caught.value)
    assert isinstance(caught.value, SafetextError) and isinstance(caught.value, ValueError)


def test_match_case() -> None:
    assert match_case("HELLO", "pizza") == "PIZZA"
    assert match_case("Hello", "pizza") == "Pizza"
    assert match_case("hello", "pizza") == "pizza"
    assert match_case("A", "pizza") == "Pizza"  # one capital letter: title, not shouting
    assert match_case("HELLO", "iPhone") == "iPhone"


def test_judge_read_and_masked_ssim() -> None:
    from PIL import Image, ImageDraw

    from safetext.editing.measure import judge_read, masked_ssim

    assert judge_read("PIZZA", "hello", "pizza") == {"new_text_read": True, "old_text_read": False, "old_text_fuzzy": False}
    slip = judge_read("HELLQ", "hello", "pizza")  # one letter in five off: a fuzzy read, not an exact one
    assert slip["old_text_fuzzy"] and not slip["old_text_read"] and not slip["new_text_read"]
    a = Image.new("RGB", (64, 32), (200, 30, 30))
    b = a.copy()
    ImageDraw.Draw(b).rectangle((10, 10, 20, 20), fill="white")
    value, box = masked_ssim(a, b, [(8, 8, 23, 23), None])
    assert value == pytest.approx(1.0) and box == [6, 6, 25, 25]  # padded like safetext bench's boxes
    assert masked_ssim(a, b, [None, None])[0] < 0.99  # no text box: the whole image counts
    assert masked_ssim(a, b, [(0, 0, 64, 32)]) == (None, [0, 0, 64, 32])


# ------------------------------------------------------------------ the API


def test_edit_regenerates_the_original_and_injects_the_edit() -> None:
    pipe = tiny("sd")
    result = edit(pipe, PROMPT, "angel", preset=LOCALIZED["sd"], seed=3, **_kwargs())
    assert isinstance(result, EditResult)
    plain = pipe(PROMPT, generator=torch.Generator().manual_seed(3), **_kwargs()).images
    assert np.array_equal(result.original_images, plain)
    config = InjectionConfig.from_modules(LOCALIZED["sd"])
    injected = run_injected(pipe, PROMPT, 'A sign that says "angel"', config, generator=torch.Generator().manual_seed(3), **_kwargs())
    assert np.array_equal(result.edited_images, injected.images)
    assert not np.array_equal(result.edited_images, result.original_images)
    assert result.edited_prompt == 'A sign that says "angel"'
    assert (result.old_text, result.new_text, result.seed) == ("idiot", "angel", 3)
    assert result.patched_layers == LOCALIZED["sd"]
    report = json.loads(json.dumps(result.to_dict()))
    assert report["injection"]["injected_steps"] == {LOCALIZED["sd"][0]: [0, 1, 2, 3]}
    assert {"original_s", "edited_s", "encode_s", "total_s"} <= set(report["timings"])


def test_same_seed_same_images_and_a_generator_is_not_advanced() -> None:
    pipe = tiny("sd")
    first = edit(pipe, TWO, "shut", replace="closed", preset=LOCALIZED["sd"], seed=7, **_kwargs())
    again = edit(pipe, TWO, "shut", replace="closed", preset=LOCALIZED["sd"], seed=7, **_kwargs())
    assert np.array_equal(first.original_images, again.original_images)
    assert np.array_equal(first.edited_images, again.edited_images)
    generator = torch.Generator().manual_seed(7)
    state = generator.get_state()
    via_generator = edit(pipe, TWO, "shut", replace="closed", preset=LOCALIZED["sd"], generator=generator, **_kwargs())
    assert torch.equal(generator.get_state(), state)
    assert np.array_equal(via_generator.edited_images, first.edited_images)
    assert via_generator.seed is None
    other = edit(pipe, TWO, "shut", replace="closed", preset=LOCALIZED["sd"], seed=8, **_kwargs())
    assert not np.array_equal(other.original_images, first.original_images)


def test_without_a_seed_one_is_drawn_and_reported() -> None:
    pipe = tiny("sd")
    result = edit(pipe, PROMPT, "angel", preset=LOCALIZED["sd"], **_kwargs())
    assert isinstance(result.seed, int)
    plain = pipe(PROMPT, generator=torch.Generator().manual_seed(result.seed), **_kwargs()).images
    assert np.array_equal(result.original_images, plain)


def test_edit_errors() -> None:
    pipe = tiny("sd")
    with pytest.raises(EditError, match="choose one with replace"):
        edit(pipe, TWO, "shut", preset=LOCALIZED["sd"], seed=0, **_kwargs())
    with pytest.raises(EditError, match="either seed or generator"):
        edit(pipe, PROMPT, "angel", preset=LOCALIZED["sd"], seed=0, generator=torch.Generator(), **_kwargs())
    with pytest.raises(EditError, match="prompt_embeds"):
        edit(pipe, PROMPT, "angel", preset=LOCALIZED["sd"], seed=0, prompt_embeds=torch.zeros(1, 4, 32), **_kwargs())
    with pytest.raises(EditError, match="seed must be"):
        edit(pipe, PROMPT, "angel", preset=LOCALIZED["sd"], seed=-1, **_kwargs())


def test_import_safetext_stays_light_and_exports_edit() -> None:
    code = "import sys, safetext; safetext.edit; safetext.EditResult; import safetext.editing; assert 'torch' not in sys.modules; print(safetext.edit.__module__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "safetext.editing.api"
    assert safetext.edit is edit and safetext.EditResult is EditResult


# ------------------------------------------------------------------ the command


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-sd-edit")
    tiny("sd").save_pretrained(folder)
    InjectionConfig(modules=LOCALIZED["sd"], start=0.25, name="tiny-sd").to_yaml(folder / "safetext_preset.yaml")
    return folder


def _error_line(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_cli_checks_arguments_before_loading(tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import safetext.pipelines.load

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded before the arguments were checked")

    monkeypatch.setattr(safetext.pipelines.load, "load_pipeline", refuse)
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"x")
    base = ["edit", "--model", str(model_dir), "--prompt", PROMPT, "--text", "angel"]
    line = _error_line([*base, "--out", str(taken)])
    assert "--out" in line and "is a file" in line
    assert "choose one with replace" in _error_line(["edit", "--model", str(model_dir), "--prompt", TWO, "--text", "x", "--out", str(tmp_path / "o")])
    assert "'ajar' does not occur" in _error_line([*base, "--replace", "ajar", "--out", str(tmp_path / "o")])
    assert "--seed" in _error_line([*base, "--seed", "-1", "--out", str(tmp_path / "o")])
    assert "--preset" in _error_line([*base, "--preset", "nope", "--out", str(tmp_path / "o")])
    assert "--model" in _error_line([*base[:2], str(tmp_path / "missing"), *base[3:], "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()


def test_cli_writes_images_side_by_side_and_report(tmp_path: Path, model_dir: Path) -> None:
    out = tmp_path / "out"
    args = ["edit", "--model", str(model_dir), "--prompt", TWO, "--text", "shut", "--replace", "closed", "--steps", "4", "--seed", "2", "--out", str(out), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert json.loads(result.stdout) == report
    assert (report["original_image"], report["edited_image"]) == ("original.png", "edited.png")
    for name in ("original.png", "edited.png", "side_by_side.png"):
        assert (out / name).is_file()
    assert report["edited_prompt"] == 'a red sign that says "open" above a blue banner reading "shut"'
    assert report["patched_layers"] == LOCALIZED["sd"] and report["preset"] == "tiny-sd"
    assert report["injection"]["start_step"] == 1 and report["seed"] == 2
    assert {"ocr_before", "ocr_after", "ssim_outside_text", "new_text_read", "old_text_read"} <= set(report)
    assert report["ssim_outside_text"] is None or 0.0 < report["ssim_outside_text"] <= 1.0


@pytest.mark.slow
def test_cli_on_the_testbed_reads_the_new_word(tmp_path: Path) -> None:
    out = tmp_path / "edit"
    args = ["edit", "--model", "testbed", "--prompt", 'a red sign that says "hello"', "--text", "pizza", "--seed", "0", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert (report["ocr_before"], report["ocr_after"]) == ("HELLO", "PIZZA")
    assert report["new_text_read"] and not report["old_text_read"]
    assert report["ssim_outside_text"] > 0.95
    assert report["settings"] == {"num_inference_steps": 20, "guidance_scale": 4.0}  # the model profile's
    for name in (report["original_image"], report["edited_image"], "side_by_side.png"):
        assert (out / name).is_file()
