"""A bounded queue and one worker thread that groups compatible jobs into batches.

Why a thread and not an asyncio task: the pipeline call is blocking and must be serialised
anyway, and a thread with :class:`concurrent.futures.Future` results works the same under
uvicorn, Starlette's TestClient (a new event loop per portal) and Ray Serve replicas.
Handlers await a job with ``asyncio.wrap_future``.

A job is cancelled only while it waits: :meth:`Batcher.cancel` removes it from the queue,
and the worker marks every job it takes as running
(:meth:`~concurrent.futures.Future.set_running_or_notify_cancel`) before the batch starts,
so a started job always finishes and its result is delivered or discarded, never half-run.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any


class QueueFull(Exception):
    """The queue holds ``max_queue`` waiting jobs."""


class BatcherClosed(Exception):
    """The batcher is shutting down and takes no new jobs."""


@dataclass(eq=False)
class Job:
    """One request's work: ``images`` rows of a batch whose settings are ``key``."""

    key: Hashable
    images: int
    payload: Any
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)
    started: float | None = None
    id: int = 0


#: Runs one batch; returns one result per job, in order (or raises for the whole batch).
BatchRunner = Callable[[Sequence[Job]], Sequence[Any]]


class Batcher:
    """FIFO of jobs; the worker takes the oldest and, within ``window_s``, every later job with
    the same key that still fits in ``max_batch`` images.

    When a batch of several jobs raises, each job is run again alone, so one bad request
    fails only itself. ``on_batch(jobs, seconds)`` is called after every batch (metrics).
    """

    def __init__(
        self,
        run: BatchRunner,
        *,
        max_queue: int,
        max_batch: int,
        window_s: float,
        on_batch: Callable[[Sequence[Job], float], None] | None = None,
        name: str = "safetext-batcher",
    ) -> None:
        self._run = run
        self.max_queue = max_queue
        self.max_batch = max_batch
        self.window_s = window_s
        self._on_batch = on_batch
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._running = 0
        self._ids = itertools.count(1)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Jobs waiting (not yet started)."""
        with self._cond:
            return len(self._queue)

    @property
    def running(self) -> int:
        """Jobs in the batch being generated."""
        with self._cond:
            return self._running

    def submit(self, key: Hashable, images: int, payload: Any) -> Job:
        """Queue a job; raises :class:`QueueFull` or :class:`BatcherClosed` instead of waiting."""
        job = Job(key=key, images=images, payload=payload)
        with self._cond:
            if self._closed:
                raise BatcherClosed("the server is shutting down")
            if len(self._queue) >= self.max_queue:
                raise QueueFull(f"{len(self._queue)} requests are waiting; the limit is {self.max_queue}")
            job.id = next(self._ids)
            self._queue.append(job)
            self._cond.notify_all()
        return job

    def cancel(self, job: Job) -> bool:
        """Drop ``job`` if it has not started; True when it will not run."""
        with self._cond:
            try:
                self._queue.remove(job)
            except ValueError:
                return job.future.cancelled()
            job.future.cancel()
            self._cond.notify_all()
            return True

    def close(self, timeout: float | None = None) -> None:
        """Take no new jobs, finish the queued and running ones, stop the worker."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _take(self) -> list[Job] | None:
        """The next batch, or None when closed and empty. Called with the lock held."""
        while not self._queue:
            if self._closed:
                return None
            self._cond.wait()
        batch = [self._queue.popleft()]
        total = batch[0].images
        deadline = time.monotonic() + self.window_s
        while True:
            for job in list(self._queue):
                if job.key == batch[0].key and total + job.images <= self.max_batch:
                    self._queue.remove(job)
                    batch.append(job)
                    total += job.images
            left = deadline - time.monotonic()
            if total >= self.max_batch or left <= 0 or self._closed:
                break
            self._cond.wait(left)
        started = [job for job in batch if job.future.set_running_or_notify_cancel()]
        now = time.perf_counter()
        for job in started:
            job.started = now
        self._running = len(started)
        return started

    def _loop(self) -> None:
        while True:
            with self._cond:
                batch = self._take()
            if batch is None:
                return
            if batch:
                began = time.perf_counter()
                self._execute(batch)
                if self._on_batch is not None:
                    self._on_batch(batch, time.perf_counter() - began)
            with self._cond:
                self._running = 0

    def _execute(self, batch: list[Job]) -> None:
        try:
            results = list(self._run(batch))
            if len(results) != len(batch):
                raise RuntimeError(f"batch runner returned {len(results)} results for {len(batch)} jobs")
        except BaseException as exc:  # noqa: BLE001 - delivered to the waiting requests
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            for job in batch:  # one bad request must not fail its batch-mates
                self._execute([job])
            return
        for job, result in zip(batch, results):
            job.future.set_result(result)
