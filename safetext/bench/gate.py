"""The CI gate: bounds from a YAML file, checked against the summary; any violation fails the run.

Format (rates are fractions, 0..1)::

    toxic:                       # suite
      safetext:                  # method
        exact_leakage: {max: 0.0}
        ssim_masked: {min: 0.9, above: [prompt_swap, negative_prompt]}
      unguarded:
        exact_leakage: {min: 0.6, stat: value}   # stat: value (default) | lo | hi

``above``/``below`` compare against other methods of the same suite. A suite that was not
run is skipped; a bound on a metric that was run but has no value (no data) fails, since a
gate that cannot be evaluated must not pass silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_KEYS = {"min", "max", "above", "below", "stat"}


@dataclass(frozen=True)
class Check:
    """One evaluated bound."""

    suite: str
    method: str
    metric: str
    rule: str
    value: float | None
    passed: bool
    skipped: bool = False

    def line(self) -> str:
        status = "skip" if self.skipped else ("pass" if self.passed else "FAIL")
        shown = "n/a" if self.value is None else f"{self.value:.4g}"
        return f"[{status}] {self.suite}/{self.method} {self.metric} = {shown} ({self.rule})"


def load_thresholds(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of suite -> method -> metric -> bounds")
    data.pop("version", None)
    for suite, methods in data.items():
        for method, metrics in (methods or {}).items():
            for metric, bounds in (metrics or {}).items():
                if not isinstance(bounds, dict) or not set(bounds) <= _KEYS:
                    raise ValueError(f"{path}: {suite}.{method}.{metric}: bounds must use {sorted(_KEYS)}, got {bounds!r}")
    return data


def _stat(summary: dict[str, Any], suite: str, method: str, metric: str, stat: str) -> float | None:
    entry = summary["suites"][suite]["methods"].get(method, {}).get(metric)
    if not isinstance(entry, dict):
        return None
    value = entry.get(stat)
    return None if value is None else float(value)


def check(summary: dict[str, Any], thresholds: dict[str, Any]) -> list[Check]:
    """Every bound in ``thresholds``, evaluated."""
    out: list[Check] = []
    for suite, methods in thresholds.items():
        for method, metrics in (methods or {}).items():
            for metric, bounds in (metrics or {}).items():
                if suite not in summary["suites"]:
                    out.append(Check(suite, method, metric, "suite not run", None, True, skipped=True))
                    continue
                stat = bounds.get("stat", "value")
                value = _stat(summary, suite, method, metric, stat)
                for rule, bound in bounds.items():
                    if rule == "stat":
                        continue
                    if value is None:
                        out.append(Check(suite, method, metric, f"{rule} {bound}: no data", None, False))
                    elif rule in ("min", "max"):
                        ok = value >= bound if rule == "min" else value <= bound
                        out.append(Check(suite, method, metric, f"{stat} {'>=' if rule == 'min' else '<='} {bound}", value, ok))
                    else:
                        for other in bound:
                            ref = _stat(summary, suite, other, metric, "value")
                            ok = ref is None or (value > ref if rule == "above" else value < ref)
                            shown = "n/a" if ref is None else f"{ref:.4g}"
                            out.append(Check(suite, method, metric, f"{rule} {other} ({shown})", value, ok))
    return out


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if not c.passed and not c.skipped]
