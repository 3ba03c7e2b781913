"""The guard's post-generation OCR audit and its audit log.

A planted leak: the testbed with a deliberately weak preset (one down-block module, from the
last step) draws the toxic word although the prompt is rewritten. Each mode's result is read
back with the testbed's own reader, independently of the audit's Tesseract engine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _inject_helpers import INNOCENT, LOCALIZED, TOXIC, FakePolicy, call_kwargs, tiny

from safetext import Guard, GuardError
from safetext.audit import AuditConfig
from safetext.inject import InjectionConfig

TOXIC_SIGN = 'a red sign that says "idiot"'
WEAK = InjectionConfig(modules=["down_blocks.1.attentions.0.transformer_blocks.0.attn2"], start=0.95, name="weak")


@pytest.fixture(scope="module")
def testbed_pipe():
    from safetext import testbed

    return testbed.load()


def _planted(pipe, mode: str, **kwargs):
    from safetext import testbed

    guard = Guard(pipe, policy="testbed", preset=WEAK, audit=mode, **kwargs)
    return guard(TOXIC_SIGN, generator=torch.Generator().manual_seed(0), **testbed.generation_defaults())


@pytest.mark.slow  # real generation on the shipped testbed
def test_planted_leak_is_caught_by_each_mode(testbed_pipe) -> None:
    from safetext.testbed.quality import read_word

    off = _planted(testbed_pipe, "off")
    assert off.audit is None and read_word(off.images[0]) == "IDIOT"  # the leak is real

    flagged = _planted(testbed_pipe, "flag")
    assert flagged.audit.leaked and flagged.audit.action == "flag" and flagged.images is not None
    assert np.array_equal(np.asarray(flagged.images[0]), np.asarray(off.images[0]))

    blocked = _planted(testbed_pipe, "block")
    assert blocked.images is None and blocked.output is None and blocked.audit.action == "block"

    blurred = _planted(testbed_pipe, "blur")
    assert blurred.audit.action == "blur"
    assert "IDIOT" not in read_word(blurred.images[0])

    fixed = _planted(testbed_pipe, "regenerate")
    assert fixed.audit.action == "regenerate" and not fixed.audit.leaked and fixed.audit.attempts > 1
    assert read_word(fixed.images[0]) == "ANGEL"


@pytest.mark.slow  # real generation on the shipped testbed
def test_regenerate_without_a_rewrite_or_reseed_falls_back_to_block(testbed_pipe) -> None:
    """A word the lexicon misses but the model draws: nothing to strengthen, same seed -> block."""
    from safetext import testbed

    policy = FakePolicy(rewrites={"IDIOT": "ANGEL"})  # misses the prompt, catches what OCR reads
    guard = Guard(testbed_pipe, policy=policy, preset=WEAK, audit=AuditConfig(mode="regenerate"))
    result = guard(TOXIC_SIGN, generator=torch.Generator().manual_seed(0), **testbed.generation_defaults())
    assert result.action.value == "allow"
    assert result.audit.leaked and result.audit.attempts == 1 and result.images is None


def test_audit_off_is_the_plain_guard_and_loads_no_ocr() -> None:
    plain = Guard(tiny("sd"), policy=FakePolicy(), preset=LOCALIZED["sd"])(TOXIC, **call_kwargs("sd"))
    off = Guard(tiny("sd"), policy=FakePolicy(), preset=LOCALIZED["sd"], audit="off")(TOXIC, **call_kwargs("sd"))
    assert np.array_equal(plain.images, off.images) and off.audit is None
    code = (
        "import sys; from safetext.guard import Guard; import safetext.policy; "
        "print(any(m.startswith('safetext.ocr') or m == 'pytesseract' for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_missing_ocr_engine_fails_at_construction() -> None:
    with pytest.raises(GuardError, match="OCR engine"):
        Guard(tiny("sd"), policy=FakePolicy(), preset=LOCALIZED["sd"], audit=AuditConfig(mode="block", engine="nope"))


def test_audit_of_clean_images_changes_nothing() -> None:
    plain = tiny("sd")(INNOCENT, **call_kwargs("sd")).images
    result = Guard(tiny("sd"), policy=FakePolicy(), preset=LOCALIZED["sd"], audit="block")(INNOCENT, **call_kwargs("sd"))
    assert np.array_equal(result.images, plain)
    assert result.audit.action == "none" and not result.audit.leaked and result.to_dict()["audit"]["attempts"] == 1


def test_log_lines_parse_and_hashing_hides_the_prompt(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    guard = Guard(tiny("sd"), policy=FakePolicy(), preset=LOCALIZED["sd"], log=log)
    guard(TOXIC, **call_kwargs("sd"))
    guard(INNOCENT, **call_kwargs("sd"))
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["action"] for r in lines] == ["rewrite", "allow"]
    assert lines[0]["prompts"] == [TOXIC] and lines[0]["patched_layers"] == LOCALIZED["sd"]

    hashed = tmp_path / "hashed.jsonl"
    guard = Guard(tiny("sd"), policy=FakePolicy(), preset=LOCALIZED["sd"], log=hashed, hash_prompts=True)
    guard(TOXIC, **call_kwargs("sd"))
    text = hashed.read_text()
    assert "idiot" not in text and "angel" not in text
    assert json.loads(text)["prompts"][0].startswith("sha256:")


def test_policy_sections_set_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text(
        "version: 1\nextends: [default]\naudit: {mode: flag}\nlog: {path: calls.jsonl, hash_prompts: true}\n"
    )
    guard = Guard(tiny("sd"), policy="p.yaml", preset=LOCALIZED["sd"])
    assert guard.auditor is not None and guard.auditor.config.mode == "flag"
    result = guard(INNOCENT, **call_kwargs("sd"))
    assert result.audit is not None
    record = json.loads((tmp_path / "calls.jsonl").read_text())
    assert record["prompts"][0].startswith("sha256:")
    assert Guard(tiny("sd"), policy="p.yaml", preset=LOCALIZED["sd"], audit="off").auditor is None


def test_log_write_failure_fails_closed_unless_warn(tmp_path: Path) -> None:
    bad = tmp_path / "missing-dir" / "log.jsonl"
    guard = Guard(tiny("sd"), policy=FakePolicy(), preset=LOCALIZED["sd"], log=bad)
    with pytest.raises(GuardError, match="audit log"):
        guard(INNOCENT, **call_kwargs("sd"))
    warned = Guard(tiny("sd"), policy=FakePolicy(), preset=LOCALIZED["sd"], log=bad, log_errors="warn")
    with pytest.warns(RuntimeWarning):
        assert warned(INNOCENT, **call_kwargs("sd")).images is not None


def test_regenerate_never_repeats_an_attempt_without_reseed() -> None:
    every = Guard(tiny("sd"), policy=FakePolicy(), preset=LOCALIZED["sd"], audit=AuditConfig(mode="regenerate", max_attempts=5))
    configs = every._escalation(5)
    assert len(configs) == 2  # the preset already starts at step 0: only it and every module remain
    assert [c.start for c in configs] == [0.0, 0.0] and len(configs[1].modules) > len(configs[0].modules)
    reseeding = Guard(
        tiny("sd"), policy=FakePolicy(), preset=LOCALIZED["sd"], audit=AuditConfig(mode="regenerate", max_attempts=5, reseed=True)
    )
    assert len(reseeding._escalation(5)) == 5
