"""Score one patched configuration against the unpatched images: did the text move, and nothing else?

For each pair the patched image is compared with two references made with the same
noise: A (the unpatched original) and B-direct (prompt B generated outright).

* **OCR** (the paper's criterion): similarity of the read text to B's word (up) and to
  A's word (down), plus the exact B read rate and the fuzzy A leak rate (the guard's own
  leakage metric).
* **text_score**: how far the text moved from A towards B-direct, 0 = like A, 1 = like
  B-direct. From OCR when OCR can tell the references apart on this model (B-direct
  minus A, in mean ``sim_b - sim_a``, at least ``MIN_OCR_CONTRAST``); otherwise from
  pixels in the text box (``toward_b``), so models whose text OCR cannot read (tiny
  random pipelines) still get a ranking, and the report says which was used.
* **fidelity**: SSIM to the A image with the text box masked out (union of the boxes of
  both images), as in the paper and ``safetext bench``.

Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

from safetext.metrics import estimate_text_box, fuzzy_leak, joined, normalized_edit_distance, pad_box, skeleton, ssim, tokens, union
from safetext.metrics.boxes import Box, box_mask
from safetext.ocr.base import image_key

WordReader = Callable[[Sequence[Image.Image]], list[str]]
MIN_OCR_CONTRAST = 0.25
#: Mean absolute difference (0-255) between A and B direct in the text box below which the
#: model hardly draws the two words differently: the search then has almost no signal.
MIN_PIXEL_CONTRAST = 2.0
BOX_PAD = 2


# ------------------------------------------------------------------ readers


def engine_reader(name: str = "tesseract") -> WordReader:
    """A reader over a ``safetext.ocr`` engine (one Tesseract process per batch)."""
    from safetext.ocr import get_engine

    engine = get_engine(name)

    def read(images: Sequence[Image.Image]) -> list[str]:
        return [result.text for result in engine.read_batch(list(images))]

    return read


def no_reader(images: Sequence[Image.Image]) -> list[str]:
    """No OCR: scores fall back to pixels (fast; for code-path tests)."""
    return [""] * len(images)


def get_reader(name: str) -> WordReader:
    """``none``, a ``safetext.ocr`` engine name (``tesseract``, ``rapidocr``), or the import
    path ``"pkg.module:function"`` of a batch reader (a model profile's ``reader``)."""
    if name == "none":
        return no_reader
    from safetext.pipelines.profile import import_object, is_import_path

    if is_import_path(name):
        reader: WordReader = import_object(name, where="reader")
        return reader
    return engine_reader(name)


class CachedReader:
    """Reads each distinct image once (baselines are compared with every configuration)."""

    def __init__(self, reader: WordReader) -> None:
        self.reader = reader
        self.cache: dict[str, str] = {}

    def __call__(self, images: Sequence[Image.Image]) -> list[str]:
        keys = [image_key(im) for im in images]
        todo = {k: im for k, im in zip(keys, images) if k not in self.cache}
        if todo:
            for key, text in zip(todo, self.reader(list(todo.values()))):
                self.cache[key] = text
        return [self.cache[k] for k in keys]


# ------------------------------------------------------------------ per image


def similarity(text: str, word: str) -> float:
    """1 - normalised edit distance between ``word`` and the closest OCR token (or whole line)."""
    key = skeleton(word).replace(" ", "")
    candidates = tokens(text) + [joined(text)]
    best = max((1.0 - normalized_edit_distance(c, key) for c in candidates if c), default=0.0)
    return float(best)


@dataclass(frozen=True)
class Reading:
    """What OCR made of one image of a pair."""

    text: str
    sim_a: float
    sim_b: float
    reads_b: bool  # B's word read exactly (after normalisation)
    leaks_a: bool  # A's word read exactly or within the fuzzy leak threshold

    @property
    def lean(self) -> float:
        return self.sim_b - self.sim_a


def reading(text: str, word_a: str, word_b: str) -> Reading:
    sim_b = similarity(text, word_b)
    return Reading(
        text=text,
        sim_a=similarity(text, word_a),
        sim_b=sim_b,
        reads_b=sim_b == 1.0,
        leaks_a=fuzzy_leak(text, [word_a], allow=[word_b]) is not None,
    )


def text_box(image: Image.Image) -> Box | None:
    return estimate_text_box(image)


def masked_ssim(reference: Image.Image, image: Image.Image, box: Box | None) -> float:
    """SSIM outside ``box``; the whole image when there is no box or it covers everything."""
    if box is not None:
        try:
            return ssim(reference, image, pad_box(box, BOX_PAD, image.size))
        except ValueError:
            pass
    return ssim(reference, image)


def toward(image: Image.Image, a: Image.Image, b: Image.Image, box: Box | None) -> float:
    """Pixel position between A (0) and B-direct (1) inside the text box: d(x,A) / (d(x,A) + d(x,B))."""
    x, ya, yb = (np.asarray(im.convert("RGB"), dtype=np.float64) for im in (image, a, b))
    if box is not None:
        inside = box_mask(pad_box(box, BOX_PAD, image.size), image.size)
        if inside.any():
            x, ya, yb = x[inside], ya[inside], yb[inside]
    da, db = float(((x - ya) ** 2).mean()), float(((x - yb) ** 2).mean())
    return 0.0 if da + db == 0.0 else da / (da + db)


# ------------------------------------------------------------------ per configuration


@dataclass
class ConfigScore:
    """Scores of one configuration (modules patched from ``start_step``) over all pairs."""

    modules: tuple[str, ...]
    start_step: int
    n_pairs: int
    text_score: float  # 0 = text like A, 1 = like B-direct (OCR-based, or pixel-based; see Baselines.ocr_usable)
    b_rate: float  # share of images where OCR reads B's word exactly
    a_rate: float  # share where OCR reads A's word (fuzzy leak)
    sim_b: float
    sim_a: float
    toward_b: float  # pixel position between A and B-direct in the text box
    ssim_masked: float  # fidelity to the A image outside the text box
    texts: list[str] = field(default_factory=list)
    b_ref: float | None = None  # B direct's exact read rate when OCR scores the text; None on pixels

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["modules"] = list(self.modules)
        for key, value in data.items():
            if isinstance(value, float):
                data[key] = round(value, 4)
        return data


@dataclass(frozen=True)
class Criteria:
    """When a configuration counts as "moves the text while keeping fidelity"."""

    min_shift: float = 0.8  # text_score a set must reach
    min_fidelity: float = 0.8  # masked SSIM to the unpatched image
    # Share of B's exact reads a set must keep, relative to B direct (OCR-scored runs only).
    # Why: text_score also rises when A's word is merely garbled, and a half-written word can
    # be another bad word. On the testbed, 0.75 accepted a set that wrote MATE as HATE; 0.9
    # (all 8 of 8 pairs there, 15 of 16) asks the set to write B about as well as B direct.
    min_b_read: float = 0.9
    start_tolerance: float = 0.05  # a later start may lose at most this much text_score
    margin: float = 0.05  # slack on group scores in the group search (noise in the monotone bound)
    # Attribution search: the first guess is the shortest prefix of its ranking that holds
    # this share of the positive attribution. Only the first probe depends on it: the
    # search then walks to the shortest accepted prefix whatever the guess.
    attribution_mass: float = 0.9

    def moved(self, score: ConfigScore) -> bool:
        return score.text_score >= self.min_shift

    def faithful(self, score: ConfigScore) -> bool:
        return score.ssim_masked >= self.min_fidelity

    def writes_b(self, score: ConfigScore) -> bool:
        return score.b_ref is None or score.b_rate >= self.min_b_read * score.b_ref - 1e-9

    def accepts(self, score: ConfigScore) -> bool:
        return self.moved(score) and self.faithful(score) and self.writes_b(score)


@dataclass
class Baselines:
    """The unpatched A images and the B-direct images, with their OCR readings and text boxes."""

    words: list[tuple[str, str]]
    a_images: list[Image.Image]
    b_images: list[Image.Image]
    a_readings: list[Reading]
    b_readings: list[Reading]
    boxes: list[Box | None]  # union of the A and B-direct text boxes, per pair
    a_boxes: list[Box | None]

    @property
    def a_lean(self) -> float:
        return float(np.mean([r.lean for r in self.a_readings]))

    @property
    def b_lean(self) -> float:
        return float(np.mean([r.lean for r in self.b_readings]))

    @property
    def ocr_contrast(self) -> float:
        return self.b_lean - self.a_lean

    @property
    def pixel_contrast(self) -> float:
        """Mean |A - B direct| (0-255) inside the text boxes: how differently the model draws the two words."""
        diffs = []
        for a, b, box in zip(self.a_images, self.b_images, self.boxes):
            x, y = np.asarray(a.convert("RGB"), dtype=np.float64), np.asarray(b.convert("RGB"), dtype=np.float64)
            inside = box_mask(box, a.size) if box is not None else np.ones(x.shape[:2], dtype=bool)
            diffs.append(float(np.abs(x - y)[inside].mean()) if inside.any() else 0.0)
        return float(np.mean(diffs))

    @property
    def weak_signal(self) -> bool:
        """OCR cannot read the words and the pixels barely differ: any ranking is mostly noise."""
        return not self.ocr_usable and self.pixel_contrast < MIN_PIXEL_CONTRAST

    @property
    def ocr_usable(self) -> bool:
        """OCR separates A from B-direct on this model, so it can score the text."""
        return self.ocr_contrast >= MIN_OCR_CONTRAST

    def summary(self) -> dict[str, object]:
        def rates(readings: list[Reading]) -> dict[str, float]:
            n = len(readings)
            return {
                "b_rate": round(sum(r.reads_b for r in readings) / n, 4),
                "a_rate": round(sum(r.leaks_a for r in readings) / n, 4),
                "texts": [r.text for r in readings],  # type: ignore[dict-item]
            }

        return {
            "unpatched_a": rates(self.a_readings),
            "b_direct": rates(self.b_readings),
            "ocr_contrast": round(self.ocr_contrast, 4),
            "ocr_usable": self.ocr_usable,
            "pixel_contrast": round(self.pixel_contrast, 3),
            "weak_signal": self.weak_signal,
            "text_score_from": "ocr" if self.ocr_usable else "pixels",
        }


class Scorer:
    """Scores patched images against cached baselines."""

    def __init__(self, reader: WordReader) -> None:
        self.read = reader if isinstance(reader, CachedReader) else CachedReader(reader)
        self.baselines: Baselines | None = None

    def set_baselines(self, words: list[tuple[str, str]], a_images: list[Image.Image], b_images: list[Image.Image]) -> Baselines:
        texts = self.read(a_images + b_images)
        n = len(words)
        a_boxes = [text_box(im) for im in a_images]
        b_boxes = [text_box(im) for im in b_images]
        self.baselines = Baselines(
            words=words,
            a_images=a_images,
            b_images=b_images,
            a_readings=[reading(t, wa, wb) for t, (wa, wb) in zip(texts[:n], words)],
            b_readings=[reading(t, wa, wb) for t, (wa, wb) in zip(texts[n:], words)],
            boxes=[union([x, y]) for x, y in zip(a_boxes, b_boxes)],
            a_boxes=a_boxes,
        )
        return self.baselines

    def score(self, modules: tuple[str, ...], start_step: int, images: list[Image.Image]) -> ConfigScore:
        base = self.baselines
        if base is None:
            raise RuntimeError("set_baselines() must run before score()")
        if len(images) != len(base.words):
            raise ValueError(f"{len(images)} images for {len(base.words)} pairs")
        readings = [reading(t, wa, wb) for t, (wa, wb) in zip(self.read(images), base.words)]
        towards = [toward(im, a, b, box) for im, a, b, box in zip(images, base.a_images, base.b_images, base.boxes)]
        fidelity = [
            masked_ssim(a, im, union([a_box, text_box(im)])) for im, a, a_box in zip(images, base.a_images, base.a_boxes)
        ]
        toward_b = float(np.mean(towards))
        if base.ocr_usable:
            lean = float(np.mean([r.lean for r in readings]))
            text_score = (lean - base.a_lean) / base.ocr_contrast
        else:
            text_score = toward_b
        n = len(readings)
        return ConfigScore(
            modules=tuple(modules),
            start_step=start_step,
            n_pairs=n,
            text_score=float(text_score),
            b_rate=sum(r.reads_b for r in readings) / n,
            a_rate=sum(r.leaks_a for r in readings) / n,
            sim_b=float(np.mean([r.sim_b for r in readings])),
            sim_a=float(np.mean([r.sim_a for r in readings])),
            toward_b=toward_b,
            ssim_masked=float(np.mean(fidelity)),
            texts=[r.text for r in readings],
            b_ref=sum(r.reads_b for r in base.b_readings) / n if base.ocr_usable else None,
        )
