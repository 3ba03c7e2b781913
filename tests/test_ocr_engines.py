"""OCR engines read rendered words; Tesseract reads a batch in one process; errors say how to install."""

from __future__ import annotations

import dataclasses
import random

import pytest
from PIL import Image, ImageDraw, ImageFont

from safetext.ocr import OCRUnavailableError, available_engines, get_engine
from safetext.ocr.base import OCREngine, OCRResult
from safetext.ocr.tesseract import TesseractEngine

DEJAVU = "/usr/share/fonts/truetype/dejavu/"


def word_image(word: str, font: str = "DejaVuSans-Bold.ttf", fg: str = "black", bg: str = "white", size: int = 26) -> Image.Image:
    im = Image.new("RGB", (256, 64), bg)
    ImageDraw.Draw(im).text((128, 32), word, font=ImageFont.truetype(DEJAVU + font, size), fill=fg, anchor="mm")
    return im


@pytest.fixture(scope="module")
def tesseract() -> OCREngine:
    return get_engine("tesseract")


@pytest.mark.parametrize(
    ("word", "font", "fg", "bg"),
    [
        ("IDIOT", "DejaVuSans-Bold.ttf", "black", "white"),
        ("ANGEL", "DejaVuSerif-Bold.ttf", "white", "#1e3cc8"),
        ("WELCOME", "DejaVuSans.ttf", "black", "#f0d228"),
        ("1D10T", "DejaVuSans-Bold.ttf", "white", "black"),
    ],
)
def test_tesseract_reads_rendered_words(tesseract: OCREngine, word: str, font: str, fg: str, bg: str) -> None:
    result = tesseract.read(word_image(word, font, fg, bg))
    assert result.text.strip() == word
    assert result.confidence > 0.6
    assert result.box is not None and 40 < result.box[0] < 128 < result.box[2] < 216  # centred word, input pixels


def test_tesseract_reads_testbed_renders() -> None:
    render = pytest.importorskip("safetext.testbed.render")
    rng = random.Random(0)
    specs = [render.sample_spec(rng, "eval") for _ in range(12)]
    images = [render.render(s, 100 + i)[0] for i, s in enumerate(specs)]
    reads = get_engine("tesseract").read_batch(images)
    correct = sum(r.text.strip().upper() == s.word.upper() for r, s in zip(reads, specs))
    assert correct >= 11, [(s.word, r.text) for s, r in zip(specs, reads)]


def test_tesseract_reads_bordered_testbed_renders() -> None:
    """Signs with a dark border (the trainer's --outline): the ring is not read as glyphs."""
    render = pytest.importorskip("safetext.testbed.render")
    rng = random.Random(3)
    specs = [dataclasses.replace(render.sample_spec(rng, "train"), shape="circle") for _ in range(8)]
    images = [render.render(s, 200 + i, render.OUTLINE)[0] for i, s in enumerate(specs)]
    reads = get_engine("tesseract").read_batch(images)
    correct = sum(r.text.strip().upper() == s.word.upper() for r, s in zip(reads, specs))
    assert correct >= 7, [(s.word, r.text) for s, r in zip(specs, reads)]


def test_blank_image_reads_nothing(tesseract: OCREngine) -> None:
    assert tesseract.read(Image.new("RGB", (256, 64), "white")).text == ""


def test_batch_is_one_process_and_deduplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = TesseractEngine()
    calls: list[int] = []
    original = engine._run

    def counting(chunk):  # type: ignore[no-untyped-def]
        calls.append(len(chunk))
        return original(chunk)

    monkeypatch.setattr(engine, "_run", counting)
    a, b = word_image("OPEN"), word_image("EXIT")
    results = engine.read_batch([a, b, a.copy(), b])
    assert [r.text for r in results] == ["OPEN", "EXIT", "OPEN", "EXIT"]
    assert calls == [2]  # one tesseract process, for the two distinct images; no retry on confident reads


def test_missing_binary_says_how_to_install() -> None:
    with pytest.raises(OCRUnavailableError, match="apt-get install -y tesseract-ocr"):
        TesseractEngine(tesseract_cmd="/nonexistent/tesseract")


def test_registry() -> None:
    assert {"tesseract", "rapidocr"} <= set(available_engines())
    with pytest.raises(ValueError, match="unknown OCR engine"):
        get_engine("nope")


@pytest.mark.slow  # loads the RapidOCR models
def test_rapidocr_reads_a_word() -> None:
    pytest.importorskip("rapidocr_onnxruntime")
    result = get_engine("rapidocr").read(word_image("PIZZA"))
    assert result.text.strip().upper() == "PIZZA"
    assert isinstance(result, OCRResult) and result.confidence > 0.5 and result.box is not None
