"""Shared test helpers."""

from __future__ import annotations

import signal
from contextlib import contextmanager


@contextmanager
def no_hang(seconds: int = 30):
    """Fail if the block runs for ``seconds``: a guard against hangs and quadratic blow-ups,
    not a speed target (speeds are measured by benchmarks/, e.g. policy_bench.py)."""

    def _fail(signum, frame):  # noqa: ARG001
        raise TimeoutError(f"did not finish within {seconds} s (hang or super-linear behaviour)")

    previous = signal.signal(signal.SIGALRM, _fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
