"""The audit log: one whole JSON line per write across threads and processes, salted prompt
hashes that hide the text and stay stable, and write failures that raise or warn."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import threading
from datetime import datetime
from pathlib import Path

import pytest

from safetext.audit import AuditLog, AuditOutcome, make_record
from safetext.errors import AuditLogError, SafetextError
from safetext.policy import PolicyEngine

PROMPT = "a neon sign that says idiot, zebra42 style"


@pytest.fixture(scope="module")
def result() -> dict:
    """What GuardResult.to_dict() returns for one rewritten prompt."""
    decision = PolicyEngine("default").check(PROMPT).model_dump(mode="json")
    return {
        "action": decision["action"],
        "blocked": False,
        "decisions": [decision],
        "inputs": {"prompt": [decision]},
        "patched_layers": ["down_blocks.1.attentions.0.transformer_blocks.0.attn2"],
        "preset": "sd15",
        "injection": None,
        "timings": {"policy_s": 0.001, "total_s": 1.5},
    }


def lines(path: Path) -> list[dict]:
    text = path.read_text()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_make_record_summarises_the_call(result: dict) -> None:
    audit = AuditOutcome(read=["idiot"], leaked=True, leaked_images=[0], action="blur", ocr_s=0.2, engine="tesseract")
    record = make_record(result, audit=audit, extra={"request_id": "r1"})
    assert record["action"] == "rewrite" and record["actions"] == ["rewrite"]
    assert record["categories"] == ["insult"] and record["terms"] == ["idiot"]
    assert record["patched_layers"] == result["patched_layers"] and record["preset"] == "sd15"
    assert record["audit"]["action"] == "blur" and record["timings"]["total_s"] == 1.5
    assert record["prompts"] == [PROMPT] and "idiot" not in record["benign_prompts"][0]
    assert record["request_id"] == "r1" and record["policy"] == "default"
    assert datetime.fromisoformat(record["time"].replace("Z", "+00:00")).utcoffset().total_seconds() == 0


def test_lines_parse_as_json(tmp_path: Path, result: dict) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    assert log.write(make_record(result)) and log.write({"note": "two\nlines", "n": 2})
    first, second = lines(log.path)
    assert first["prompts"] == [PROMPT] and second == {"note": "two\nlines", "n": 2}
    assert stat.S_IMODE(os.stat(log.path).st_mode) == 0o600


def test_hashing_hides_prompts_and_is_stable(tmp_path: Path, result: dict) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditOutcome(read=["zebra42 idiot"], leaked=True, leaked_images=[0], action="flag")
    log = AuditLog(path, hash_prompts=True)
    log.write(make_record(result, audit=audit, include_decisions=True))
    AuditLog(path, hash_prompts=True).write(make_record(result))  # a later run: same salt file
    content = path.read_text()
    assert "zebra42" not in content and PROMPT not in content
    first, second = lines(path)
    assert first["prompts"] == second["prompts"] == [log.hash(PROMPT)]
    assert first["prompts"][0].startswith("sha256:") and len(first["prompts"][0]) == len("sha256:") + 64
    assert first["terms"] == ["idiot"] and first["inputs"]["prompt"][0]["prompt"] == log.hash(PROMPT)
    assert stat.S_IMODE(os.stat(log.salt_path).st_mode) == 0o600
    other = AuditLog(tmp_path / "other.jsonl", hash_prompts=True)
    assert other.hash(PROMPT) != log.hash(PROMPT)
    assert AuditLog(tmp_path / "a", salt="s").hash(PROMPT) == AuditLog(tmp_path / "b", salt=b"s").hash(PROMPT)


def test_threads_write_whole_lines(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl", hash_prompts=True)

    def work(t: int) -> None:
        for i in range(50):
            log.write({"thread": t, "i": i, "prompt": f"p{t}-{i}", "pad": "x" * (1000 * (i % 9))})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    got = lines(log.path)
    assert len(got) == 400 and {(r["thread"], r["i"]) for r in got} == {(t, i) for t in range(8) for i in range(50)}
    assert {r["prompt"] for r in got} == {log.hash(f"p{t}-{i}") for t in range(8) for i in range(50)}


def _append_many(path: str, worker: int) -> None:
    log = AuditLog(path)
    for i in range(100):
        log.write({"worker": worker, "i": i, "pad": "y" * (20_000 if i % 4 == 0 else 300)})


def test_processes_write_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(path), w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    got = lines(path)
    assert len(got) == 300 and {(r["worker"], r["i"]) for r in got} == {(w, i) for w in range(3) for i in range(100)}


def test_write_failure_raises_or_warns(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "audit.jsonl"
    with pytest.raises(AuditLogError, match="no-such-dir") as info:
        AuditLog(missing).write({"a": 1})
    assert isinstance(info.value, SafetextError)
    with pytest.raises(AuditLogError):
        AuditLog(missing, hash_prompts=True).write({"prompt": "x"})  # the salt file cannot be made either
    with pytest.warns(RuntimeWarning, match="could not write the audit log"):
        assert AuditLog(tmp_path, errors="warn").write({"a": 1}) is False  # a directory, not a file
    with pytest.raises(ValueError):
        AuditLog(tmp_path / "x", errors="ignore")  # type: ignore[arg-type]
