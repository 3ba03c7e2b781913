"""Does a toxicity classifier flag the OCR text? The classifier-based leakage measure.

Scorers are the classifier backends of :mod:`safetext.detect.classifiers`: one registry,
one constructor signature (keyword parameters), so a benchmark can swap alt-profanity-check
(offline, the default) for any registered backend. Texts are scored in one batch.
At the default threshold 0.5, alt-profanity-check flags the testbed's benign targets
"gosh" (0.55) and "heck" (0.51); that is the classifier's view and is reported as is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from safetext.detect.classifiers import Classifier, ClassifierFactory, create_classifier, register_classifier
from safetext.metrics.text import normalize_text

ToxicityScorer = Classifier
"""A scorer is a classifier: ``score(texts)`` gives a toxicity probability per text."""

DEFAULT_SCORER = "profanity-check"


def get_scorer(name: str = DEFAULT_SCORER, **params: Any) -> Classifier:
    """Build a registered classifier backend; see :func:`safetext.detect.classifiers.create_classifier`."""
    return create_classifier(name, **params)


def register_scorer(name: str, factory: ClassifierFactory) -> None:
    """Register a backend in the shared classifier registry (also usable from a policy)."""
    register_classifier(name)(factory)


def flagged(texts: Sequence[str], scorer: Classifier, threshold: float = 0.5) -> list[bool]:
    """True where the normalised OCR text scores at or above ``threshold``; empty text is never flagged."""
    norm = [normalize_text(t) for t in texts]
    idx = [i for i, t in enumerate(norm) if t]
    scores = scorer.score([norm[i] for i in idx])
    out = [False] * len(texts)
    for i, s in zip(idx, scores):
        out[i] = s >= threshold
    return out


__all__ = ["DEFAULT_SCORER", "ToxicityScorer", "flagged", "get_scorer", "register_scorer"]
