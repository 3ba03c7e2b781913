"""Prometheus text-format metrics, written by hand.

Why by hand: a few metric families do not justify a dependency, and the format is plain text.
Labels come from route templates, policy actions, audit actions and fixed reasons only, so
their number stays bounded.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

#: Upper bounds (seconds) of the request latency histogram buckets.
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: Upper bounds (seconds) of the generation latency histogram (one pipeline call).
GENERATION_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

#: Upper bounds of the batch size histogram (images per pipeline call).
BATCH_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64)


class Histogram:
    """Cumulative buckets, sum and count of one unlabelled series (callers hold the lock)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.buckets = [0] * len(bounds)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.buckets[i] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out = [f'{name}_bucket{{le="{bound}"}} {n}' for bound, n in zip(self.bounds, self.buckets)]
        return out + [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {self.sum}", f"{name}_count {self.count}"]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Request counts by endpoint and status, decision counts by policy and action, a latency
    histogram per endpoint, and for generation: gauges (queue depth), images per pipeline call,
    generation latency, audit outcomes and dropped requests."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str, int]] = Counter()
        self._actions: Counter[tuple[str, str]] = Counter()
        self._buckets: dict[str, list[int]] = {}
        self._sums: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._audits: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._batch_images = Histogram(BATCH_BUCKETS)
        self._generation = Histogram(GENERATION_BUCKETS)
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request and add its duration to the endpoint's histogram."""
        with self._lock:
            self._requests[(endpoint, method, status)] += 1
            buckets = self._buckets.setdefault(endpoint, [0] * len(LATENCY_BUCKETS))
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    buckets[i] += 1
            self._sums[endpoint] += seconds
            self._counts[endpoint] += 1

    def observe_action(self, policy: str, action: str) -> None:
        """Count one decision."""
        with self._lock:
            self._actions[(policy, action)] += 1

    def observe_batch(self, images: int, seconds: float) -> None:
        """Record one pipeline call: how many images it generated and how long it took."""
        with self._lock:
            self._batch_images.observe(images)
            self._generation.observe(seconds)

    def mean_generation_s(self) -> float:
        """Mean wall time of one pipeline call so far (0.0 before the first)."""
        with self._lock:
            return self._generation.sum / self._generation.count if self._generation.count else 0.0

    def observe_audit(self, action: str) -> None:
        """Count one request's audit outcome (``off`` when no audit runs)."""
        with self._lock:
            self._audits[action] += 1

    def observe_dropped(self, reason: str) -> None:
        """Count a generation request that got no image: queue_full, cancelled, timeout, error, blocked."""
        with self._lock:
            self._dropped[reason] += 1

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Register a gauge read when the metrics are rendered (e.g. the queue depth)."""
        with self._lock:
            self._gauges[name] = (help_text, read)

    def render(self) -> str:
        """The exposition text (``text/plain; version=0.0.4``)."""
        with self._lock:
            lines = [
                "# HELP safetext_requests_total HTTP requests by endpoint, method and status.",
                "# TYPE safetext_requests_total counter",
            ]
            for (endpoint, method, status), n in sorted(self._requests.items()):
                lines.append(f'safetext_requests_total{{endpoint="{_label(endpoint)}",method="{method}",status="{status}"}} {n}')
            lines += [
                "# HELP safetext_decisions_total Policy decisions by policy and action.",
                "# TYPE safetext_decisions_total counter",
            ]
            for (policy, action), n in sorted(self._actions.items()):
                lines.append(f'safetext_decisions_total{{policy="{_label(policy)}",action="{action}"}} {n}')
            lines += [
                "# HELP safetext_request_duration_seconds HTTP request latency by endpoint.",
                "# TYPE safetext_request_duration_seconds histogram",
            ]
            for endpoint in sorted(self._buckets):
                ep = _label(endpoint)
                for bound, n in zip(LATENCY_BUCKETS, self._buckets[endpoint]):
                    lines.append(f'safetext_request_duration_seconds_bucket{{endpoint="{ep}",le="{bound}"}} {n}')
                lines.append(f'safetext_request_duration_seconds_bucket{{endpoint="{ep}",le="+Inf"}} {self._counts[endpoint]}')
                lines.append(f'safetext_request_duration_seconds_sum{{endpoint="{ep}"}} {self._sums[endpoint]}')
                lines.append(f'safetext_request_duration_seconds_count{{endpoint="{ep}"}} {self._counts[endpoint]}')
            if self._gauges or self._batch_images.count or self._audits or self._dropped:
                lines += self._generation_lines()
        return "\n".join(lines) + "\n"

    def _generation_lines(self) -> list[str]:
        lines = []
        for name, (help_text, read) in sorted(self._gauges.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read()}"]
        lines += ["# HELP safetext_batch_images Images per guarded pipeline call.", "# TYPE safetext_batch_images histogram"]
        lines += self._batch_images.lines("safetext_batch_images")
        lines += [
            "# HELP safetext_generation_seconds Wall time of one guarded pipeline call.",
            "# TYPE safetext_generation_seconds histogram",
        ]
        lines += self._generation.lines("safetext_generation_seconds")
        lines += ["# HELP safetext_audit_outcomes_total OCR audit outcome per generated request.", "# TYPE safetext_audit_outcomes_total counter"]
        lines += [f'safetext_audit_outcomes_total{{action="{_label(a)}"}} {n}' for a, n in sorted(self._audits.items())]
        lines += ["# HELP safetext_generations_dropped_total Generation requests that got no image, by reason.", "# TYPE safetext_generations_dropped_total counter"]
        lines += [f'safetext_generations_dropped_total{{reason="{_label(r)}"}} {n}' for r, n in sorted(self._dropped.items())]
        return lines
