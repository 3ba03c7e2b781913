"""Rates with confidence intervals. Benchmarks here have tens of images, so a bare percentage
misleads; the Wilson score interval behaves at 0% and 100%, where the normal one collapses."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054


def wilson_interval(successes: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for ``successes / total``; (0, 1) when ``total`` is 0."""
    if total < 0 or not 0 <= successes <= total:
        raise ValueError(f"need 0 <= successes <= total, got {successes}/{total}")
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    z2 = z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / (1 + z2 / total)
    return (max(0.0, round(centre - half, 12)), min(1.0, round(centre + half, 12)))


@dataclass(frozen=True)
class Rate:
    """``k`` of ``n``, with its 95% Wilson interval. ``value`` is None when ``n`` is 0."""

    k: int
    n: int

    @property
    def value(self) -> float | None:
        return self.k / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.k, self.n)

    def to_dict(self) -> dict[str, object]:
        lo, hi = self.interval
        return {"k": self.k, "n": self.n, "value": self.value, "lo": lo, "hi": hi}


@dataclass(frozen=True)
class Mean:
    """A mean with a normal-approximation 95% interval (for SSIM, PSNR, time ratios)."""

    value: float | None
    lo: float | None
    hi: float | None
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Mean:
        n = len(values)
        if n == 0:
            return cls(None, None, None, 0)
        mean = sum(values) / n
        if n == 1:
            return cls(mean, mean, mean, 1)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
        half = Z95 * sd / math.sqrt(n)
        return cls(mean, mean - half, mean + half, n)

    def to_dict(self) -> dict[str, object]:
        return {"value": self.value, "lo": self.lo, "hi": self.hi, "n": self.n}
