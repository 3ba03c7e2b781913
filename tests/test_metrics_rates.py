"""Wilson intervals (known values) and means with intervals."""

from __future__ import annotations

import pytest

from safetext.metrics import Mean, Rate, wilson_interval


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        (0, 10, 0.0, 0.2775),
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
        (81, 263, 0.2553, 0.3662),  # Wilson (1927) / Newcombe (1998) textbook example
        (1, 50, 0.0035, 0.1050),
    ],
)
def test_wilson_known_values(k: int, n: int, lo: float, hi: float) -> None:
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_edge_cases() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_rate_and_mean() -> None:
    r = Rate(2, 8)
    assert r.value == 0.25 and r.to_dict()["lo"] < 0.25 < r.to_dict()["hi"]
    assert Rate(0, 0).value is None
    m = Mean.of([1.0, 2.0, 3.0])
    assert m.value == 2.0 and m.lo < 2.0 < m.hi and m.n == 3
    assert Mean.of([]).value is None
    assert Mean.of([0.5]).lo == 0.5
