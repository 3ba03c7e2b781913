"""The classifier flag on OCR text (alt-profanity-check backend) and its shared registry."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from safetext.detect.classifiers import available_classifiers, create_classifier, register_classifier
from safetext.errors import ClassifierError, SafetextError
from safetext.metrics import flagged, get_scorer, register_scorer


class Fixed:
    """A scorer that gives every text the same score."""

    name = "fixed"

    def __init__(self, *, value: float = 0.7) -> None:
        self.value = value

    def score(self, texts: Sequence[str]) -> list[float]:
        return [self.value for _ in texts]


def test_profanity_check_flags_toxic_ocr_text() -> None:
    pytest.importorskip("profanity_check")
    scorer = get_scorer("profanity-check")
    assert flagged(["IDIOT", "STUPID", "HELLO", "PIZZA", "", "  "], scorer) == [True, True, False, False, False, False]


def test_threshold() -> None:
    assert flagged(["a", "b"], Fixed(), threshold=0.5) == [True, True]
    assert flagged(["a"], Fixed(), threshold=0.8) == [False]
    assert flagged(["", "a"], Fixed(value=1.0)) == [False, True]


def test_unknown_scorer_names_the_backend_and_the_known_ones() -> None:
    with pytest.raises(ClassifierError, match=r"unknown classifier backend 'nope'; known backends: ") as info:
        get_scorer("nope")
    assert "detoxify" in str(info.value) and "profanity-check" in str(info.value)
    assert isinstance(info.value, SafetextError)


def test_metrics_and_detection_share_one_registry() -> None:
    register_scorer("fixed-metrics-test", Fixed)
    assert "fixed-metrics-test" in available_classifiers()
    assert create_classifier("fixed-metrics-test", value=0.2).score(["x"]) == [0.2]
    register_classifier("fixed-detect-test")(Fixed)
    assert flagged(["x"], get_scorer("fixed-detect-test", value=0.9)) == [True]
    with pytest.raises(ClassifierError, match="bad parameters for classifier 'fixed-detect-test'"):
        get_scorer("fixed-detect-test", colour="red")
