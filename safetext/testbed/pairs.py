"""Prompt pairs for ``safetext localize`` in the testbed's own style and vocabulary.

A small model only spells the words it was trained on, so the generic pairs
(``safetext.localize.make_pairs``) would give it nothing to read. The testbed's model
profile (``model/safetext_model.yaml``) names :func:`testbed_pairs`.
"""

from __future__ import annotations

import random

from safetext.localize.pairs import PromptPair, word_pair
from safetext.testbed.render import sample_spec
from safetext.testbed.vocab import WORDS


def testbed_pairs(n: int, seed: int = 0) -> list[PromptPair]:
    """``n`` pairs on training templates and colours; A and B differ only in the word."""
    if n < 1:
        raise ValueError("n must be >= 1")
    rng = random.Random(seed)
    pairs: list[PromptPair] = []
    for _ in range(n):
        spec = sample_spec(rng, "train")
        word_a, word_b = word_pair(rng, WORDS)
        a = type(spec)(word_a, spec.color, spec.shape, spec.font, spec.text_color, spec.template)
        b = type(spec)(word_b, spec.color, spec.shape, spec.font, spec.text_color, spec.template)
        pairs.append(PromptPair(a.prompt(), b.prompt(), word_a, word_b))
    return pairs
