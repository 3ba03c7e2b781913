"""The post-generation audit: real Tesseract reads rendered words, the policy marks leaks,
blurring makes them unreadable, and a missing engine fails at construction."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from pydantic import ValidationError

import safetext.ocr
from safetext.audit import AuditConfig, Auditor, AuditOutcome, blur_text, resolve_audit, to_pil_images
from safetext.errors import OCRUnavailableError, SafetextError
from safetext.ocr.base import OCREngine, OCRResult, Word
from safetext.ocr.registry import _REGISTRY
from safetext.policy import PolicyEngine

FONT = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", 40)


def render(text: str, size: tuple[int, int] = (420, 100)) -> Image.Image:
    im = Image.new("RGB", size, "white")
    ImageDraw.Draw(im).text((20, size[1] // 2), text, font=FONT, fill="black", anchor="lm")
    return im


@pytest.fixture(scope="module")
def policy() -> PolicyEngine:
    return PolicyEngine("default")


@pytest.fixture(scope="module")
def auditor(policy: PolicyEngine) -> Auditor:
    return Auditor("blur", policy)


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    return [render("idiot"), render("sunflower"), render("you idiot friend")]


@pytest.fixture(scope="module")
def audits(auditor: Auditor, images: list[Image.Image]):
    return auditor.read(images)


class FakeEngine(OCREngine):
    """Returns fixed results, so the span-to-box mapping is tested without OCR noise."""

    name = "fake"

    def __init__(self, results: list[OCRResult]) -> None:
        self.results = results

    def _read_unique(self, images: list[Image.Image]) -> list[OCRResult]:
        return self.results[: len(images)]


def test_toxic_word_is_read_and_leaked_innocent_word_is_not(audits) -> None:
    toxic, innocent, _ = audits
    assert toxic.text == "idiot" and toxic.leaked and toxic.action == "rewrite"
    assert toxic.terms == ("idiot",) and toxic.categories == ("insult",)
    assert len(toxic.boxes) == 1 and toxic.ocr_s > 0
    assert innocent.text == "sunflower" and not innocent.leaked and innocent.action == "allow"
    assert innocent.terms == () and innocent.boxes == ()


def test_boxes_cover_only_the_matching_word(audits) -> None:
    draw = ImageDraw.Draw(render(""))
    start, end = 20 + draw.textlength("you ", font=FONT), 20 + draw.textlength("you idiot", font=FONT)
    sentence = audits[2]
    assert sentence.text == "you idiot friend" and sentence.leaked
    (box,) = sentence.boxes
    assert start - 4 <= box[0] < box[2] <= end + 4


def test_numpy_batches_read_like_pil(auditor: Auditor, images: list[Image.Image], audits) -> None:
    batch = np.stack([np.asarray(im, dtype=np.float32) / 255.0 for im in images])
    assert [a.text for a in auditor.read(batch)] == [a.text for a in audits]
    assert [a.leaked for a in auditor.read(list(batch[:2]))] == [True, False]


def test_to_pil_images_accepts_the_pipeline_output_forms() -> None:
    nhwc = np.zeros((2, 8, 12, 3), dtype=np.float32)
    nchw = np.ones((2, 3, 8, 12), dtype=np.float32)
    out = to_pil_images(nhwc) + to_pil_images(nchw) + to_pil_images([Image.new("RGBA", (12, 8))])
    assert [im.size for im in out] == [(12, 8)] * 5
    assert np.asarray(out[2]).min() == 255 and out[4].mode == "RGB"


@pytest.mark.parametrize("method", ["fill", "gaussian"])
def test_blur_makes_the_word_unreadable(auditor: Auditor, policy: PolicyEngine, images, audits, method: str) -> None:
    blurrer = Auditor(AuditConfig(mode="blur", blur_method=method), policy, engine=auditor.engine)
    hidden = blurrer.blur(images, audits)
    assert isinstance(hidden, list) and hidden[1] is images[1]
    reread = auditor.read(hidden)
    assert "idiot" not in reread[0].text.lower() and "idiot" not in reread[2].text.lower()
    assert not any(a.leaked for a in reread)
    assert reread[2].text.startswith("you") and reread[2].text.endswith("friend")  # only the word is hidden


def test_blur_text_keeps_array_dtype_and_touches_only_the_box() -> None:
    for array in (np.full((40, 60, 3), 200, np.uint8), np.linspace(0, 1, 40 * 60).reshape(40, 60).astype(np.float32)):
        array = array.copy()
        array[10:20, 10:30] = 0
        out = blur_text(array, [(10, 10, 30, 20)], margin=2)
        assert out.dtype == array.dtype and out.shape == array.shape
        assert np.array_equal(out[25:], array[25:]) and np.array_equal(out[:, 35:], array[:, 35:])
        area = (slice(8, 22), slice(8, 32))  # the box and its 2 px margin: one flat colour now
        assert array[area].std() > 0.05 and np.ptp(out[area]) == 0


def test_blur_on_a_batch_array_changes_only_leaked_images(auditor: Auditor, images, audits) -> None:
    batch = np.stack([np.asarray(im) for im in images])
    hidden = auditor.blur(batch, audits)
    assert hidden.dtype == np.uint8 and hidden.shape == batch.shape
    assert np.array_equal(hidden[1], batch[1]) and not np.array_equal(hidden[0], batch[0])


def test_spans_map_to_word_boxes_and_unmapped_leaks_hide_everything(policy: PolicyEngine) -> None:
    words = (Word("you", 0.9, (0, 0, 10, 10)), Word("idiot", 0.9, (12, 0, 30, 10)), Word("ok", 0.2, (32, 0, 40, 10)))
    results = [OCRResult("you idiot ok", 0.7, words), OCRResult("idiot", 0.9)]
    auditor = Auditor(AuditConfig(mode="blur", min_confidence=0.5), policy, engine=FakeEngine(results))
    first, textonly = auditor.read([render("a"), render("b")])
    assert first.text == "you idiot" and first.boxes == ((12, 0, 30, 10),)
    assert textonly.leaked and textonly.boxes == ()
    hidden = auditor.blur(np.full((2, 20, 20, 3), 0.5, np.float32) + np.eye(20, dtype=np.float32)[None, :, :, None] * 0.5, [first, textonly])
    assert np.ptp(hidden[1]) < 1e-6  # no boxes: the whole image is hidden


def test_outcome_reports_what_was_done(auditor: Auditor, audits) -> None:
    outcome = auditor.outcome(audits)
    assert isinstance(outcome, AuditOutcome)
    assert outcome.leaked and outcome.leaked_images == [0, 2] and outcome.action == "blur"
    assert outcome.read == ["idiot", "sunflower", "you idiot friend"] and outcome.engine == "tesseract"
    assert outcome.ocr_s == pytest.approx(sum(a.ocr_s for a in audits)) and outcome.terms == ["idiot"]
    assert json.loads(json.dumps(outcome.to_dict()))["attempts"] == 1
    clean = auditor.outcome([audits[1]], attempts=2)
    assert not clean.leaked and clean.action == "none" and clean.attempts == 2
    assert json.loads(json.dumps(audits[0].to_dict()))["boxes"] == [list(audits[0].boxes[0])]


def test_off_builds_no_engine(monkeypatch: pytest.MonkeyPatch, policy: PolicyEngine) -> None:
    calls: list[str] = []

    def refuse(name: str, **kwargs: object) -> OCREngine:
        calls.append(name)
        raise AssertionError("mode='off' must not build an OCR engine")

    monkeypatch.setattr(safetext.ocr, "get_engine", refuse)
    auditor = Auditor("off", policy)
    assert calls == [] and auditor.engine is None and not auditor.config.enabled
    assert auditor.outcome([]).action == "none"
    with pytest.raises(OCRUnavailableError):
        auditor.read([render("idiot")])


def test_import_and_off_mode_load_no_torch_and_no_ocr() -> None:
    code = (
        "import sys\n"
        "from safetext.audit import Auditor\n"
        "class P:\n    def check(self, text): raise AssertionError\n"
        "Auditor('off', P())\n"
        "print(sorted(m for m in ('torch', 'safetext.ocr', 'pytesseract') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_engine_fails_at_construction(monkeypatch: pytest.MonkeyPatch, policy: PolicyEngine) -> None:
    def broken(**kwargs: object) -> OCREngine:
        raise OCRUnavailableError("the broken engine is not installed")

    monkeypatch.setitem(_REGISTRY, "broken", broken)
    with pytest.raises(OCRUnavailableError, match="not installed"):
        Auditor(AuditConfig(mode="flag", engine="broken"), policy)
    with pytest.raises(SafetextError, match="unknown OCR engine"):
        Auditor(AuditConfig(mode="block", engine="no-such-engine"), policy)


def test_config_validation() -> None:
    assert resolve_audit(None).mode == "off" and resolve_audit("regenerate").max_attempts == 3
    config = AuditConfig(mode="regenerate", max_attempts=5, reseed=True)
    assert resolve_audit(config) is config and resolve_audit({"mode": "flag"}).mode == "flag"
    with pytest.raises(ValidationError):
        resolve_audit("shout")
    with pytest.raises(ValidationError):
        AuditConfig(mode="flag", engnie="tesseract")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        AuditConfig(max_attempts=0)
