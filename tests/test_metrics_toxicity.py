"""The classifier flag on OCR text (alt-profanity-check backend)."""

from __future__ import annotations

import pytest

from safetext.metrics import flagged, get_scorer


def test_profanity_check_flags_toxic_ocr_text() -> None:
    pytest.importorskip("profanity_check")
    scorer = get_scorer("profanity-check")
    assert flagged(["IDIOT", "STUPID", "HELLO", "PIZZA", "", "  "], scorer) == [True, True, False, False, False, False]


def test_threshold_and_registry() -> None:
    class Fixed:
        name = "fixed"

        def scores(self, texts):  # type: ignore[no-untyped-def]
            return [0.7 for _ in texts]

    assert flagged(["a", "b"], Fixed(), threshold=0.5) == [True, True]
    assert flagged(["a"], Fixed(), threshold=0.8) == [False]
    with pytest.raises(ValueError, match="unknown toxicity scorer"):
        get_scorer("nope")
