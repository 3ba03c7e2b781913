"""The CLI and the bench take a model's defaults from its folder's ``safetext_model.yaml``,
never from its name: a tiny SD folder given a profile behaves as that profile says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from safetext.bench import BenchConfig
from safetext.bench.generate import decision_target, policy_targets
from safetext.bench.prompts import PromptItem
from safetext.bench.runner import BenchConfigError, default_policy, generation_kwargs, load_items
from safetext.cli import app
from safetext.pipelines.profile import GENERIC, MODEL_PROFILE_FILE, load_profile
from safetext.policy.decision import Action, Decision

runner = CliRunner()


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SD folder with a profile: its own policy, 2 steps, guidance 2.5, testbed-style pairs, no OCR."""
    from _inject_helpers import LOCALIZED, tiny

    from safetext.inject import InjectionConfig

    folder = tmp_path_factory.mktemp("profiled")
    tiny("sd").save_pretrained(folder)
    InjectionConfig(modules=LOCALIZED["sd"], name="tiny-sd").to_yaml(folder / "safetext_preset.yaml")
    policy = folder / "tiger.yaml"
    policy.write_text("version: 1\nname: tiger\nextends: default\nterms:\n  insult:\n    idiot: tiger\n", encoding="utf-8")
    (folder / MODEL_PROFILE_FILE).write_text(
        f"name: tiny-profiled\ngeneration: {{num_inference_steps: 2, guidance_scale: 2.5}}\npolicy: {policy}\n"
        "reader: safetext.localize.scoring:no_reader\npairs: safetext.testbed.pairs:testbed_pairs\nprompt_tag: testbed\n",
        encoding="utf-8",
    )
    return folder


def test_generate_uses_the_profile_defaults_and_policy(profiled: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(app, ["generate", 'A sign that says "idiot"', "--model", str(profiled), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["num_inference_steps"] == 2 and report["settings"]["guidance_scale"] == 2.5
    assert report["policy"] == "tiger"
    assert report["decisions"][0]["benign_prompt"] == 'A sign that says "tiger"'
    again = runner.invoke(app, ["generate", "a cat", "--model", str(profiled), "--out", str(out), "--steps", "1", "--policy", "default"])
    assert again.exit_code == 0, again.output
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["num_inference_steps"] == 1 and report["policy"] == "default"  # the user's values win


def test_localize_uses_the_profile_pairs_steps_and_name(profiled: Path, tmp_path: Path) -> None:
    from safetext.inject import InjectionConfig
    from safetext.testbed.vocab import WORDS

    out = tmp_path / "p.yaml"
    args = ["localize", "--model", str(profiled), "--pairs", "2", "--strategy", "group", "--no-progress",
            "--out", str(out), "--report", str(tmp_path / "r"), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    preset = InjectionConfig.from_yaml(out)
    assert preset.name == "tiny-profiled"
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["steps"] == 2
    assert all(p["word_a"] in WORDS and p["word_b"] in WORDS for p in data["pairs"])  # the profile's pairs
    assert data["baselines"]["text_score_from"] == "pixels"  # the profile's reader reads nothing


def test_bench_selection_policy_and_kwargs_follow_the_profile(profiled: Path, tmp_path: Path) -> None:
    profile = load_profile(profiled)
    assert profile is not None
    cfg = BenchConfig(model=str(profiled), suites=("toxic",), steps=5, out=tmp_path)
    tagged, _ = load_items(cfg, profile)
    everything, _ = load_items(cfg, GENERIC)
    assert tagged and all("testbed" in it.tags for it in tagged)
    assert any("testbed" not in it.tags for it in everything)  # a generic model keeps every prompt
    assert generation_kwargs(cfg, profile) == {"num_inference_steps": 5, "guidance_scale": 2.5}
    assert generation_kwargs(BenchConfig(), GENERIC) == {}
    assert default_policy(cfg, profile).name == "tiger"
    assert default_policy(BenchConfig(policy="strict"), profile).name != "tiger"
    with pytest.raises(BenchConfigError, match="no prompts selected"):
        load_items(BenchConfig(suites=("toxic",), subset="no-such-tag"), profile)


def test_a_blocked_prompt_is_judged_by_the_policy_target(profiled: Path) -> None:
    from safetext.policy import PolicyEngine

    targets = policy_targets(PolicyEngine(str(profiled / "tiger.yaml")))
    item = PromptItem(suite="toxic", index=0, prompt='a sign that says "idiot"', tags=("testbed",), term="idiot")
    blocked = Decision(action=Action.BLOCK, prompt=item.prompt, risk=1.0)
    assert decision_target(item, blocked, targets) == "tiger"
    assert decision_target(item, blocked) is None  # no policy map: no guess from any model's vocabulary
    assert policy_targets(object()) == {}


def test_generate_audits_and_logs(profiled: Path, tmp_path: Path) -> None:
    out, log = tmp_path / "out", tmp_path / "calls.jsonl"
    args = ["generate", 'A sign that says "idiot"', "--model", str(profiled), "--out", str(out)]
    result = runner.invoke(app, [*args, "--audit", "flag", "--log", str(log), "--hash-prompts"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["audit"]["engine"] == "tesseract" and report["audit"]["attempts"] == 1
    record = json.loads(log.read_text())
    assert record["action"] == "rewrite" and record["prompts"][0].startswith("sha256:")
    bad = runner.invoke(app, [*args, "--audit", "loud"])
    assert bad.exit_code == 2 and "--audit" in bad.output and "Traceback" not in bad.output
