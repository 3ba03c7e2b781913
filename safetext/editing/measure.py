"""How well an edit went: what OCR reads before and after, and how much else changed.

One definition for ``safetext edit`` and ``benchmarks/edit_bench.py``, so the command's
report and the benchmark judge an edit alike. The masked SSIM is ``safetext bench``'s: each
image's text box is its confident OCR words' box, else the ink estimate
(:func:`safetext.bench.evaluate.text_box`); the union of both boxes, padded, is left out.
Why OCR boxes first: on a round sign the ink estimate takes the sign's outline for text
and boxes the whole image, which leaves nothing to compare. Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

from safetext.ocr.base import OCREngine

WordReader = Callable[[Sequence[Image.Image]], list[str]]


def box_engine(reader: str = "tesseract") -> OCREngine | None:
    """The OCR engine whose word boxes locate the text: the one a model profile's ``reader``
    names, else Tesseract; None when it is not installed (then the ink estimate alone is used)."""
    from safetext.errors import OCRUnavailableError
    from safetext.ocr import available_engines, get_engine

    name = reader if reader in available_engines() else "tesseract"
    try:
        return get_engine(name)
    except OCRUnavailableError:
        return None


def text_boxes(images: Sequence[Image.Image], engine: OCREngine | None) -> list[tuple[int, int, int, int] | None]:
    """Each image's text box (see the module doc); the ink estimate alone without ``engine``."""
    from safetext.bench.evaluate import text_box
    from safetext.metrics import estimate_text_box

    if engine is None:
        return [estimate_text_box(image) for image in images]
    return [text_box(image, result) for image, result in zip(images, engine.read_batch(list(images)))]


def masked_ssim(
    original: Image.Image, edited: Image.Image, boxes: Sequence[tuple[int, int, int, int] | None]
) -> tuple[float | None, list[int] | None]:
    """SSIM outside the padded union of ``boxes`` (the whole image when there is no box;
    None when the box covers it all), and that box."""
    from safetext.bench.evaluate import BOX_PAD
    from safetext.metrics import pad_box, ssim, union

    box = union(boxes)
    if box is not None:
        box = pad_box(box, BOX_PAD, original.size)
    try:
        value = ssim(original, edited, box=box)
    except ValueError:  # the box covers the whole image
        value = None
    return value, list(box) if box is not None else None


def judge_read(text: str, old_text: str, new_text: str) -> dict[str, bool]:
    """Whether OCR ``text`` reads the new text exactly, and the old text exactly or fuzzily
    (normalised edit distance <= 0.25; an exact read of the new text is no fuzzy match)."""
    from safetext.metrics import exact_leak, fuzzy_leak, reads_target

    return {
        "new_text_read": reads_target(text, new_text),
        "old_text_read": exact_leak(text, [old_text]) is not None,
        "old_text_fuzzy": fuzzy_leak(text, [old_text], allow=[new_text]) is not None,
    }


def measure_edit(
    original: Image.Image,
    edited: Image.Image,
    reader: WordReader,
    old_text: str,
    new_text: str,
    *,
    engine: OCREngine | None = None,
) -> dict[str, Any]:
    """The report fields of one edit: ``ocr_before`` and ``ocr_after`` (``reader``), :func:`judge_read`
    of the edited image, ``ssim_outside_text`` (boxes from ``engine``, see :func:`box_engine`),
    whole-image ``ssim`` and the ``text_box`` left out."""
    from safetext.metrics import ssim

    before, after = reader([original, edited])
    masked, box = masked_ssim(original, edited, text_boxes([original, edited], engine))
    return {
        "ocr_before": before,
        "ocr_after": after,
        **judge_read(after, old_text, new_text),
        "ssim_outside_text": round(masked, 4) if masked is not None else None,
        "ssim": round(ssim(original, edited), 4),
        "text_box": box,
    }
