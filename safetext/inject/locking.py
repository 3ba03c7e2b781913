"""One lock per denoiser, so guarded calls on a shared model run one at a time.

Why serialise: diffusers pipelines keep per-call state on ``self`` (``_guidance_scale``,
``_cross_attention_kwargs``, ``_num_timesteps``, ...), and injection installs processors
on the denoiser for the duration of one call. Two overlapping calls would read each
other's settings and processors. The lock is keyed by the denoiser module rather than
the pipeline object, because pipelines built from another's ``components`` share it.

Calls made directly on the pipeline, outside safetext, do not take this lock; do not mix
them with guarded calls from other threads.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from safetext.inject.sites import denoiser_of

_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def pipeline_lock(pipe: Any) -> threading.RLock:
    """The re-entrant lock that serialises guarded calls on ``pipe``'s denoiser."""
    _, denoiser = denoiser_of(pipe)
    with _LOCKS_GUARD:
        lock = _LOCKS.get(denoiser)
        if lock is None:
            lock = _LOCKS[denoiser] = threading.RLock()
        return lock
