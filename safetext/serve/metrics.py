"""Prometheus text-format metrics, written by hand.

Why by hand: three metric families do not justify a dependency, and the format is plain text.
Labels come from route templates and policy actions only, so their number stays bounded.
"""

from __future__ import annotations

import threading
from collections import Counter

#: Upper bounds (seconds) of the request latency histogram buckets.
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """Request counts by endpoint and status, decision counts by policy and action, and a latency histogram."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str, int]] = Counter()
        self._actions: Counter[tuple[str, str]] = Counter()
        self._buckets: dict[str, list[int]] = {}
        self._sums: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()

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
        return "\n".join(lines) + "\n"
