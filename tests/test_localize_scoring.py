"""Scoring a patched configuration: OCR similarity, the text score, fidelity."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from safetext.localize.scoring import CachedReader, Criteria, Scorer, reading, similarity, toward


@pytest.mark.parametrize(
    ("text", "word", "expected"),
    [("ANGEL", "angel", 1.0), ("ANGFL", "angel", 0.8), ("", "angel", 0.0), ("A N G E L", "angel", 1.0), ("1D10T", "idiot", 1.0)],
)
def test_similarity(text: str, word: str, expected: float) -> None:
    assert similarity(text, word) == pytest.approx(expected)


def test_reading_flags_b_exact_and_a_fuzzy() -> None:
    r = reading("IDIOT", "idiot", "angel")
    assert r.leaks_a and not r.reads_b and r.lean < 0
    r = reading("ANGEL", "idiot", "angel")
    assert r.reads_b and not r.leaks_a and r.lean > 0
    assert reading("IDIQT", "idiot", "angel").leaks_a  # one wrong letter in five still leaks


def _sign(word: str) -> Image.Image:
    image = Image.new("RGB", (96, 32), (200, 30, 30))
    ImageDraw.Draw(image).text((10, 10), word, fill="white")
    return image


class DictReader:
    """OCR stand-in: the word drawn on each image, looked up by its pixels."""

    def __init__(self, words: dict[bytes, str]) -> None:
        self.words = words
        self.calls = 0

    def __call__(self, images: list[Image.Image]) -> list[str]:
        self.calls += 1
        return [self.words.get(im.tobytes(), "") for im in images]


def test_text_score_from_ocr_runs_from_a_to_b_direct() -> None:
    a, b, half = _sign("IDIOT"), _sign("ANGEL"), _sign("ANGOT")
    reader = DictReader({a.tobytes(): "IDIOT", b.tobytes(): "ANGEL", half.tobytes(): "ANGOT"})
    scorer = Scorer(reader)
    base = scorer.set_baselines([("idiot", "angel")], [a], [b])
    assert base.ocr_usable and base.summary()["text_score_from"] == "ocr"
    assert scorer.score(("m",), 0, [a]).text_score == pytest.approx(0.0)
    assert scorer.score(("m",), 0, [b]).text_score == pytest.approx(1.0)
    partial = scorer.score(("m",), 0, [half])
    assert 0.0 < partial.text_score < 1.0
    assert partial.b_rate == 0.0 and scorer.score(("m",), 0, [b]).b_rate == 1.0
    assert scorer.score(("m",), 0, [a]).ssim_masked == pytest.approx(1.0)


def test_text_score_falls_back_to_pixels_when_ocr_reads_nothing() -> None:
    a, b = _sign("IDIOT"), _sign("ANGEL")
    scorer = Scorer(lambda images: [""] * len(images))
    assert not scorer.set_baselines([("idiot", "angel")], [a], [b]).ocr_usable
    assert scorer.score(("m",), 0, [b]).text_score == pytest.approx(1.0)
    assert scorer.score(("m",), 0, [a]).text_score == pytest.approx(0.0)
    assert toward(a, a, b, None) == 0.0 and toward(b, a, b, None) == 1.0


def test_cached_reader_reads_each_image_once() -> None:
    a = _sign("IDIOT")
    inner = DictReader({a.tobytes(): "IDIOT"})
    reader = CachedReader(inner)
    assert reader([a, a]) == ["IDIOT", "IDIOT"]
    assert reader([a]) == ["IDIOT"] and inner.calls == 1


def test_criteria() -> None:
    scorer = Scorer(lambda images: [""] * len(images))
    a, b = _sign("IDIOT"), _sign("ANGEL")
    scorer.set_baselines([("idiot", "angel")], [a], [b])
    assert Criteria().accepts(scorer.score(("m",), 0, [b]))
    assert not Criteria().moved(scorer.score(("m",), 0, [a]))


def test_weak_signal_when_the_model_draws_both_words_alike() -> None:
    blank = lambda images: [""] * len(images)  # noqa: E731
    a, b = _sign("IDIOT"), _sign("ANGEL")
    assert not Scorer(blank).set_baselines([("idiot", "angel")], [a], [b]).weak_signal
    same = Scorer(blank).set_baselines([("idiot", "angel")], [a], [a.copy()])
    assert same.weak_signal and same.pixel_contrast == 0.0
    assert same.summary()["weak_signal"] is True


def test_criteria_require_the_benign_word_when_ocr_scores() -> None:
    """A set that only garbles A's word (high text score, B never read) is not accepted."""
    words = [("idiot", "angel"), ("moron", "champ")]
    a1, a2, b1, b2 = _sign("IDIOT"), _sign("MORON"), _sign("ANGEL"), _sign("CHAMP")
    smudge1, smudge2 = _sign("ANGFL"), _sign("CHAMF")
    reader = DictReader({im.tobytes(): t for im, t in [(a1, "IDIOT"), (a2, "MORON"), (b1, "ANGEL"), (b2, "CHAMP"), (smudge1, "ANGFL"), (smudge2, "CHAMF")]})
    scorer = Scorer(reader)
    scorer.set_baselines(words, [a1, a2], [b1, b2])
    garbled = scorer.score(("m",), 0, [smudge1, smudge2])
    assert garbled.b_ref == 1.0 and garbled.b_rate == 0.0
    lenient = Criteria(min_shift=0.5)
    assert lenient.moved(garbled) and lenient.faithful(garbled) and not lenient.accepts(garbled)
    assert Criteria(min_shift=0.5, min_b_read=0.0).accepts(garbled)
    half = scorer.score(("m",), 0, [b1, smudge2])  # B read in 1 of 2 images
    assert Criteria(min_shift=0.5, min_b_read=0.5).writes_b(half) and not Criteria(min_shift=0.5).writes_b(half)
    pixels = Scorer(lambda images: [""] * len(images))
    pixels.set_baselines(words, [a1, a2], [b1, b2])
    assert pixels.score(("m",), 0, [b1, b2]).b_ref is None  # no OCR signal: the criterion stands aside
