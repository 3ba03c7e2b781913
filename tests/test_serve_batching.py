"""The serve batcher: grouping by key, size and window limits, the bounded queue, cancellation,
error isolation and draining on close (a fake runner, no model)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from safetext.serve.batching import Batcher, BatcherClosed, Job, QueueFull


class Runner:
    """Records each batch's payloads; blocks while ``gate`` is clear; raises for payload 'boom'."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, jobs: Sequence[Job]) -> list[str]:
        self.entered.set()
        self.gate.wait(10)
        payloads = [job.payload for job in jobs]
        self.batches.append(payloads)
        if "boom" in payloads:
            raise RuntimeError("boom")
        return [p.upper() for p in payloads]


def _batcher(runner: Runner, **kwargs) -> Batcher:
    kwargs.setdefault("max_queue", 8)
    kwargs.setdefault("max_batch", 4)
    kwargs.setdefault("window_s", 0.2)
    return Batcher(runner, **kwargs)


def test_compatible_jobs_share_a_batch_and_keep_their_results() -> None:
    runner = Runner()
    batcher = _batcher(runner)
    jobs = [batcher.submit("k", 1, p) for p in ("a", "b", "c")]
    assert [job.future.result(5) for job in jobs] == ["A", "B", "C"]
    assert runner.batches == [["a", "b", "c"]]
    batcher.close(5)


def test_different_keys_and_the_image_limit_split_batches() -> None:
    runner = Runner()
    runner.gate.clear()
    batcher = _batcher(runner, max_batch=3)
    first = batcher.submit("k", 1, "first")
    assert runner.entered.wait(5)  # the worker is busy: the rest queue up together
    jobs = [batcher.submit("k", 2, "a"), batcher.submit("other", 1, "x"), batcher.submit("k", 1, "b"), batcher.submit("k", 1, "c")]
    runner.gate.set()
    for job in [first, *jobs]:
        job.future.result(5)
    assert runner.batches == [["first"], ["a", "b"], ["x"], ["c"]]
    batcher.close(5)


def test_full_queue_refuses_instead_of_waiting() -> None:
    runner = Runner()
    runner.gate.clear()
    batcher = _batcher(runner, max_queue=2, max_batch=1, window_s=0)
    running = batcher.submit("k", 1, "run")
    assert runner.entered.wait(5)
    waiting = [batcher.submit("k", 1, "w1"), batcher.submit("k", 1, "w2")]
    assert batcher.depth == 2 and batcher.running == 1
    with pytest.raises(QueueFull, match="limit is 2"):
        batcher.submit("k", 1, "w3")
    runner.gate.set()
    assert [j.future.result(5) for j in [running, *waiting]] == ["RUN", "W1", "W2"]
    batcher.close(5)


def test_cancel_before_start_skips_the_job() -> None:
    runner = Runner()
    runner.gate.clear()
    batcher = _batcher(runner, max_batch=1, window_s=0)
    running = batcher.submit("k", 1, "run")
    assert runner.entered.wait(5)
    gone = batcher.submit("k", 1, "gone")
    kept = batcher.submit("k", 1, "kept")
    assert batcher.cancel(gone) and gone.future.cancelled()
    assert not batcher.cancel(running)  # already started: it finishes
    runner.gate.set()
    assert kept.future.result(5) == "KEPT" and running.future.result(5) == "RUN"
    assert ["gone"] not in runner.batches
    batcher.close(5)


def test_a_failing_job_fails_alone_and_the_worker_keeps_going() -> None:
    runner = Runner()
    batcher = _batcher(runner)
    jobs = [batcher.submit("k", 1, p) for p in ("a", "boom", "c")]
    assert jobs[0].future.result(5) == "A" and jobs[2].future.result(5) == "C"
    with pytest.raises(RuntimeError, match="boom"):
        jobs[1].future.result(5)
    assert runner.batches[0] == ["a", "boom", "c"]  # tried together, then one by one
    assert batcher.submit("k", 1, "after").future.result(5) == "AFTER"
    batcher.close(5)


def test_close_drains_queued_jobs_then_refuses() -> None:
    runner = Runner()
    runner.gate.clear()
    batcher = _batcher(runner, max_batch=1, window_s=0)
    jobs = [batcher.submit("k", 1, p) for p in ("a", "b", "c")]
    closer = threading.Thread(target=batcher.close, args=(10,))
    closer.start()
    time.sleep(0.05)
    with pytest.raises(BatcherClosed):
        batcher.submit("k", 1, "late")
    runner.gate.set()
    closer.join(10)
    assert [j.future.result(0) for j in jobs] == ["A", "B", "C"]


def test_on_batch_reports_each_call() -> None:
    seen: list[tuple[int, float]] = []
    batcher = Batcher(Runner(), max_queue=4, max_batch=4, window_s=0.1, on_batch=lambda jobs, s: seen.append((len(jobs), s)))
    for job in [batcher.submit("k", 1, "a"), batcher.submit("k", 1, "b")]:
        job.future.result(5)
    batcher.close(5)
    assert [n for n, _ in seen] == [2] and seen[0][1] >= 0
