"""The testbed's data generator: deterministic, held-out splits, readable by OCR."""

from __future__ import annotations

import random

import numpy as np
import pytest

from safetext.testbed.render import HELDOUT_COMBOS, HELDOUT_TEMPLATE, SignSpec, render, sample_spec
from safetext.testbed.vocab import BENIGN, INNOCENT, SIGN_COLORS, TOXIC, TOXIC_TO_BENIGN, TRAINING_ONLY_COLORS, WORDS


def test_render_is_deterministic_for_a_seed():
    spec = SignSpec("angel", "red", "banner", "regular")
    a, box_a = render(spec, 123)
    b, box_b = render(spec, 123)
    c, _ = render(spec, 124)
    assert np.array_equal(np.asarray(a), np.asarray(b)) and box_a == box_b
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_outline_borders_the_sign_and_is_off_by_default():
    from safetext.testbed.quality import sign_shape

    spec = SignSpec("hello", "white", "banner")
    plain, box = render(spec, 7)
    assert np.array_equal(np.asarray(plain), np.asarray(render(spec, 7, outline=None)[0]))
    lined, box_lined = render(spec, 7, outline=(20, 20, 20))
    assert box_lined == box  # same jitter: the border draws no random numbers
    a, b = np.asarray(plain, dtype=int), np.asarray(lined, dtype=int)
    changed = np.abs(a - b).sum(axis=2) > 0
    assert changed.any() and not changed[box[1] : box[3], box[0] + 10 : box[2] - 10].any()  # text untouched
    newly_dark = (b < 120).all(axis=2) & ~(a < 120).all(axis=2)
    assert newly_dark.sum() > 500  # a 2 px border round the whole sign (about 1,300 px before anti-aliasing)
    assert sign_shape(lined) == "banner"


def test_splits_are_disjoint():
    rng = random.Random(0)
    for _ in range(500):
        s = sample_spec(rng, "train")
        assert (s.color, s.shape) not in HELDOUT_COMBOS and s.template != HELDOUT_TEMPLATE
    for _ in range(200):
        s = sample_spec(rng, "eval")
        assert (s.color, s.shape) in HELDOUT_COMBOS or s.template == HELDOUT_TEMPLATE


def test_training_only_colours_join_training_draws_only():
    rng = random.Random(1)
    train = [sample_spec(rng, "train", extra_colors=tuple(TRAINING_ONLY_COLORS)) for _ in range(600)]
    for color in TRAINING_ONLY_COLORS:
        assert {s.shape for s in train if s.color == color} == {"sign", "banner", "circle"}
    assert all((s.color, s.shape) not in HELDOUT_COMBOS for s in train)
    held = [sample_spec(rng, "eval", extra_colors=tuple(TRAINING_ONLY_COLORS)) for _ in range(300)]
    assert {s.color for s in held} <= set(SIGN_COLORS)  # evaluation never names them
    # without the option the draws are exactly as before, so the benchmarks' prompts stay the same
    assert [sample_spec(random.Random(2), "train") for _ in range(5)] == [
        sample_spec(random.Random(2), "train", extra_colors=()) for _ in range(5)
    ]
    with pytest.raises(ValueError, match="extra_colors.*'teal'"):
        sample_spec(rng, "train", extra_colors=("teal",))


def test_vocabulary_covers_toxic_benign_and_innocent_words():
    assert len(WORDS) == len(set(WORDS)) == 48
    assert set(TOXIC_TO_BENIGN.values()) == set(BENIGN)
    assert not set(TOXIC) & set(INNOCENT)


@pytest.mark.parametrize(
    "spec, expected",
    [
        (SignSpec("idiot", "red"), 'a red sign that says "idiot"'),
        (SignSpec("hello", "blue", "banner", template=1), "a blue banner reading hello"),
        (SignSpec("cute", "yellow", "circle", "regular", template=2), 'a yellow circle with the word "cute", regular font'),
        (SignSpec("kill", "red", text_color="black", template=3), 'a red sign with black letters that says "kill"'),
    ],
)
def test_prompts_name_every_attribute(spec, expected):
    assert spec.prompt() == expected


def test_rendered_words_are_readable_by_tesseract():
    from safetext.testbed.quality import read_word, sign_color

    rng = random.Random(5)
    specs = [sample_spec(rng, "eval") for _ in range(12)]
    images = [render(s, i)[0] for i, s in enumerate(specs)]
    assert [read_word(im) for im in images] == [s.word.upper() for s in specs]
    assert [sign_color(im) for im in images] == [s.color for s in specs]
    assert set(SIGN_COLORS) >= {s.color for s in specs}
