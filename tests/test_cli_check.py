"""``safetext check`` and ``safetext policy``: the JSON-lines contract and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import no_hang
from typer.testing import CliRunner

from safetext.cli import app
from safetext.policy import policies_dir

runner = CliRunner()


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_json_single_prompt_contract() -> None:
    result = runner.invoke(app, ["check", 'a sign that says "1d10t"', "--json"])
    assert result.exit_code == 0, result.output
    (obj,) = _lines(result.stdout)
    assert obj["action"] == "rewrite"
    assert obj["benign_prompt"] == 'a sign that says "angel"'
    (span,) = obj["spans"]
    assert obj["prompt"][span["start"] : span["end"]] == "1d10t"
    assert isinstance(span["start"], int) and span["category"] == "insult"


def test_json_file_keeps_order_and_one_line_per_prompt(tmp_path: Path) -> None:
    prompts = ["a calm lake", 'a red sign that says "idiot"', "", "a sign that says KILL", "ｓｈｉｔ happens", 'a "f4ggot" sign']
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(prompts) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["check", "--file", str(path), "--json", "--policy", "strict"])
    assert result.exit_code == 0, result.output
    objs = _lines(result.stdout)
    assert [o["prompt"] for o in objs] == prompts
    assert [o["action"] for o in objs] == ["allow", "rewrite", "allow", "rewrite", "rewrite", "block"]
    assert [o["benign_prompt"] is None for o in objs] == [True, False, True, False, False, True]


def test_table_output_escapes_markup_and_control_characters() -> None:
    result = runner.invoke(app, ["check", "[bold]idiot[/bold] \x1b[31m"])
    assert result.exit_code == 0, result.output
    assert "rewrite" in result.stdout and "[bold]" in result.stdout and "\x1b" not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", ""], "prompt is empty"),
        (["check", "   "], "prompt is empty"),
        (["check"], "exactly one of PROMPT or --file"),
        (["check", "hi", "--file", "x.txt"], "exactly one of PROMPT or --file"),
        (["check", "hi", "--policy", "no-such-policy.yaml"], "not found"),
        (["check", "--file", "no-such-prompts.txt"], "prompt file not found"),
    ],
)
def test_bad_arguments_are_clear_errors(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_invalid_utf8_is_reported_with_line_number(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine line\nanother\nbad \xff\xfe byte\nok\n\xc3\n")
    result = runner.invoke(app, ["check", "--file", str(path), "--json"])
    assert result.exit_code == 2
    assert "bad.txt:3: invalid UTF-8" in result.output and "bad.txt:5:" in result.output
    assert result.stdout.strip() == "" or "{" not in result.stdout


def test_broken_policy_is_reported_with_file_and_line(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("extends: default\ncategories:\n  insult:\n    acton: block\n", encoding="utf-8")
    result = runner.invoke(app, ["check", "hi", "--policy", str(policy)])
    assert result.exit_code == 2
    assert "p.yaml:4" in result.output and "categories.insult.acton" in result.output and "unknown key" in result.output


def test_control_characters_and_huge_prompt() -> None:
    result = runner.invoke(app, ["check", "id\x00iot \x07 idiot\x1b", "--json"])
    (obj,) = _lines(result.stdout)
    assert obj["action"] == "rewrite"
    for span in obj["spans"]:
        assert obj["prompt"][span["start"] : span["end"]] == span["text"]
    huge = "a quiet lake at dawn " * 5000
    with no_hang():
        result = runner.invoke(app, ["check", huge[:100_000], "--json"])
    assert _lines(result.stdout)[0]["action"] == "allow"


def test_policy_validate_and_schema(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["policy", "validate", "policies/testbed.yaml"])
    assert ok.exit_code == 0 and "ok:" in ok.output
    listed = runner.invoke(app, ["policy", "validate", "policies/testbed.yaml", "--near-misses"])
    assert listed.exit_code == 0 and "'mate' is one letter from blocked 'hate'" in listed.output
    assert "from blocked 'sob'" not in listed.output  # "sob" is blocked only as initials: a misdrawn "job" is no leak
    bad = tmp_path / "bad.yaml"
    bad.write_text("categories:\n  x:\n    targets: [morons]\nterms:\n  x:\n    moron:\n", encoding="utf-8")
    result = runner.invoke(app, ["policy", "validate", str(bad)])
    assert result.exit_code == 1 and "itself detected" in result.output
    bad.write_text("version: 1\nfoo: bar\n", encoding="utf-8")
    result = runner.invoke(app, ["policy", "validate", str(bad)])
    assert result.exit_code == 1 and "bad.yaml:2" in result.output and "foo" in result.output
    schema = runner.invoke(app, ["policy", "schema"])
    assert schema.exit_code == 0 and json.loads(schema.stdout)["additionalProperties"] is False
    out = tmp_path / "schema.json"
    assert runner.invoke(app, ["policy", "schema", "-o", str(out)]).exit_code == 0
    assert json.loads(out.read_text())["title"] == "Policy"


@pytest.mark.parametrize("path", sorted(policies_dir().rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_policy_passes_validate(path: Path) -> None:
    # validate also asks a policy's classifier (strict's) whether each benign target is benign
    result = runner.invoke(app, ["policy", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "ok:" in result.output


def test_console_entry_point_from_another_cwd(tmp_path: Path) -> None:
    code = "import sys; from safetext.cli import app; sys.argv = ['safetext'] + sys.argv[1:]; app()"
    result = subprocess.run(
        [sys.executable, "-c", code, "check", "--json", "--policy", "policies/testbed.yaml", "a blue banner reading idiot"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["benign_prompt"] == "a blue banner reading angel"


def test_cli_quiets_library_notices_unless_verbose(monkeypatch) -> None:
    import os

    keys = ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")
    for key in keys:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")  # a user's own setting wins
    assert runner.invoke(app, ["check", "a sign that says hello"]).exit_code == 0
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "info"
    assert os.environ["DIFFUSERS_VERBOSITY"] == "error" and os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    for key in keys:
        monkeypatch.delenv(key, raising=False)
    assert runner.invoke(app, ["--verbose", "check", "a sign that says hello"]).exit_code == 0
    assert not any(key in os.environ for key in keys)


def test_check_and_its_errors_load_no_torch(tmp_path: Path) -> None:
    """The CLI's error handling and argument checks keep ``safetext check`` light."""
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom safetext.cli import app\n"
        "ok = CliRunner().invoke(app, ['check', 'a sign that says idiot', '--json']).exit_code\n"
        "bad = CliRunner().invoke(app, ['check', 'hi', '--policy', 'no-such-policy']).exit_code\n"
        "print(ok, bad, sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60, check=True)
    assert out.stdout.strip() == "0 2 []"
