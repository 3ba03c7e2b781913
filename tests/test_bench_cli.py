"""``safetext bench`` on a tiny random pipeline with the real Guard: the command, its outputs
and its exit code, and the same command sharded over 2 CPU processes with accelerate."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from safetext.cli import app

torch.set_num_threads(1)

LOCALIZED = "up_blocks.1.attentions.0.transformer_blocks.0.attn2"  # a cross-attention module of tiny SD
BIN = Path(sys.executable).parent


def args(out: Path, *extra: str) -> list[str]:
    return [
        "bench", "--model", "tiny:sd", "--policy", "testbed", "--preset", LOCALIZED, "--steps", "2",
        "--subset", "testbed", "--device", "cpu", "--out", str(out), "--no-progress", *extra,
    ]


@pytest.mark.slow  # whole bench runs, several processes
def test_bench_command_on_tiny_pipeline_gates_and_writes_outputs(tmp_path: Path) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text("toxic:\n  unguarded:\n    exact_leakage: {min: 0.6}\n")  # random weights draw no words
    result = CliRunner().invoke(app, args(tmp_path / "out", "--seeds", "1", "--limit", "1", "--thresholds", str(strict)))
    assert result.exit_code == 1, result.output
    out = tmp_path / "out"
    entries = json.loads((out / "results.json").read_text())
    assert entries and all({"name", "unit", "value"} <= set(e) for e in entries)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["suites"]) == {"toxic", "innocent", "edit"}
    assert summary["suites"]["innocent"]["methods"]["safetext"]["unchanged"]["value"] == 1.0  # allow = untouched
    assert summary["suites"]["toxic"]["policy_flagged"]["value"] == 1.0
    report = (out / "report.md").read_text()
    assert "CI gate: FAILED" in report and "Caution" in report  # a model that draws no words proves nothing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # whole bench runs, several processes
@pytest.mark.skipif(not (BIN / "accelerate").exists() or not (BIN / "safetext").exists(), reason="console scripts not installed")
def test_sharded_run_matches_single_process(tmp_path: Path) -> None:
    common = ["--suite", "toxic", "--seeds", "1", "--limit", "2"]
    # CPU processes even on a GPU machine: the comparison run below is on the CPU too
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    cmd = [
        str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
        str(BIN / "safetext"), *args(tmp_path / "sharded", *common),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    single = CliRunner().invoke(app, args(tmp_path / "single", *common))
    assert single.exit_code == 0, single.output

    sharded_summary = json.loads((tmp_path / "sharded" / "summary.json").read_text())
    assert sharded_summary["meta"]["processes"] == 2
    rows = {}
    for name in ("sharded", "single"):
        rows[name] = [json.loads(line) for line in (tmp_path / name / "records.jsonl").read_text().splitlines()]
    assert len(rows["sharded"]) == len(rows["single"]) == 2 * 5
    keys = ("prompt_id", "seed", "method", "status", "action", "ocr_text", "exact_leak", "unchanged")
    assert [[r[k] for k in keys] for r in rows["sharded"]] == [[r[k] for k in keys] for r in rows["single"]]
    for a, b in zip(rows["sharded"], rows["single"]):  # same seeds, same pixels, whichever process drew them
        if a["image"]:
            assert (tmp_path / "sharded" / a["image"]).read_bytes() == (tmp_path / "single" / b["image"]).read_bytes()
