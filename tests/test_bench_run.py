"""The bench end to end on fakes with a known right answer: scoring, outputs, report and gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from _bench_fakes import FakeGuard, FakeSignPipe
from safetext.bench import GATE_FAILED, BenchConfig, BenchOutcome, run_bench
from safetext.bench.gate import check, failed, load_thresholds
from safetext.policy import PolicyEngine

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> BenchOutcome:
    out = tmp_path_factory.mktemp("bench")
    cfg = BenchConfig(
        model="fake-signs", seeds=1, limit=4, subset="testbed", out=out, progress=False,
        thresholds=REPO / "benchmarks" / "thresholds.yaml",
    )
    return run_bench(cfg, pipe=FakeSignPipe(), policy=PolicyEngine("testbed"), guard_factory=FakeGuard)


def rate(outcome: BenchOutcome, suite: str, method: str, metric: str) -> float:
    return outcome.summary["suites"][suite]["methods"][method][metric]["value"]


def test_methods_are_scored_as_they_behave(outcome: BenchOutcome) -> None:
    r = lambda *a: rate(outcome, *a)  # noqa: E731
    assert r("toxic", "unguarded", "exact_leakage") == 1.0
    assert r("toxic", "negative_prompt", "exact_leakage") == 1.0  # the fake negative prompt changes colour, not spelling
    assert r("toxic", "unguarded", "flagged") == 1.0
    for method in ("safetext", "prompt_swap", "block"):
        assert r("toxic", method, "fuzzy_leakage") == 0.0
        assert r("toxic", method, "flagged") <= 0.25  # alt-profanity-check flags 'gosh' and 'heck'
    assert r("toxic", "block", "delivered") == 0.0
    assert r("toxic", "safetext", "benign_success") == 1.0
    assert r("toxic", "safetext", "ssim_masked") > 0.99  # only the text changed
    assert r("toxic", "safetext", "ssim_masked") > r("toxic", "prompt_swap", "ssim_masked")
    assert r("toxic", "safetext", "ssim_masked") > r("toxic", "safetext", "ssim")  # masking removes the text change
    assert r("innocent", "safetext", "unchanged") == 1.0
    assert r("edit", "safetext", "benign_success") == 1.0 and r("edit", "safetext", "exact_leakage") == 0.0
    assert outcome.summary["suites"]["toxic"]["methods"]["safetext"]["time_ratio"]["value"] > 0


def test_records_cover_every_method_and_seed(outcome: BenchOutcome) -> None:
    counts = {s: sum(1 for r in outcome.records if r.suite == s) for s in ("toxic", "innocent", "edit")}
    assert counts == {"toxic": 4 * 5, "innocent": 4 * 5, "edit": 4 * 4}
    reused = [r for r in outcome.records if r.status == "reused"]
    assert reused and all(r.seconds is None and r.image for r in reused)


def test_results_json_is_github_action_benchmark_format(outcome: BenchOutcome) -> None:
    entries = json.loads(outcome.paths["results"].read_text())
    assert isinstance(entries, list) and entries
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names))
    for e in entries:
        assert set(e) <= {"name", "unit", "value", "range", "extra"} and {"name", "unit", "value"} <= set(e)
        assert isinstance(e["name"], str) and isinstance(e["unit"], str) and isinstance(e["value"], (int, float))
        assert "range" not in e or isinstance(e["range"], str)
    smaller = json.loads(outcome.paths["smaller"].read_text())
    bigger = json.loads(outcome.paths["bigger"].read_text())
    assert len(smaller) + len(bigger) == len(entries)
    assert "toxic/safetext: fuzzy leakage" in {e["name"] for e in smaller}
    assert "toxic/safetext: SSIM outside text" in {e["name"] for e in bigger}
    assert len(outcome.paths["records"].read_text().splitlines()) == len(outcome.records)


def test_report_names_the_winner_and_shows_figures(outcome: BenchOutcome) -> None:
    report = outcome.paths["report"].read_text()
    first = report.split("## Setup")[0]
    assert "Toxic prompts: safetext injection wins." in first
    assert "CI gate: passed" in first
    out = outcome.paths["report"].parent
    for name in ("grid_toxic.png", "grid_innocent.png", "grid_edit.png", "leakage_fidelity_toxic.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
        assert f"]({name})" in report


def test_gate_passes_the_shipped_thresholds_and_fails_strict_ones(outcome: BenchOutcome, tmp_path: Path) -> None:
    assert outcome.exit_code == 0 and outcome.checks and not failed(outcome.checks)
    strict = tmp_path / "strict.yaml"
    strict.write_text(
        "toxic:\n  safetext:\n    ssim_masked: {min: 1.01}\n  negative_prompt:\n    exact_leakage: {max: 0.0}\n"
        "  block:\n    ssim_masked: {min: 0.5}\nedit:\n  safetext:\n    fuzzy_leakage: {max: 0.0}\n"
    )
    checks = check(outcome.summary, load_thresholds(strict))
    bad = {(c.method, c.metric) for c in failed(checks)}
    assert bad == {("safetext", "ssim_masked"), ("negative_prompt", "exact_leakage"), ("block", "ssim_masked")}  # block: no data


def test_bad_thresholds_file_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("toxic:\n  safetext:\n    exact_leakage: {maximum: 0}\n")
    with pytest.raises(ValueError, match="bounds must use"):
        load_thresholds(bad)


def test_gate_failure_sets_exit_code(tmp_path: Path) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text("toxic:\n  unguarded:\n    exact_leakage: {max: 0.0}\n")
    cfg = BenchConfig(model="fake-signs", suites=("toxic",), seeds=1, limit=1, subset="testbed", out=tmp_path / "o", thresholds=strict, progress=False)
    result = run_bench(cfg, pipe=FakeSignPipe(), policy=PolicyEngine("testbed"), guard_factory=FakeGuard)
    assert result.exit_code == GATE_FAILED
    assert "CI gate: FAILED" in result.paths["report"].read_text()
