"""Shared test helpers."""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager

# Intel MKL picks its matrix kernels by CPU and by matrix shape: on CPUs with AVX-512 or AMX a
# batch of three rows can round differently from a batch of two in the last bit. The bitwise
# tests compare a pipeline's rows across batch sizes (benign rows ride along in the batch), so
# MKL runs in its conditional-numerical-reproducibility mode, set before torch loads it.
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")


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
