"""RapidOCR (PaddleOCR models on onnxruntime), an offline second opinion to Tesseract.

Its models ship inside the wheel, so it needs no download. It runs in-process, so a batch
is a loop; it detects text regions itself, so it gets the upscaled grey image only.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from safetext.ocr.base import OCREngine, OCRResult, OCRUnavailableError, Word
from safetext.ocr.preprocess import PreprocessConfig, prepare


class RapidOCREngine(OCREngine):
    name = "rapidocr"

    def __init__(self, *, preprocess: PreprocessConfig = PreprocessConfig(binarize="never"), num_threads: int = 1) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise OCRUnavailableError("rapidocr is not installed; `pip install rapidocr-onnxruntime`") from exc
        self._ocr = RapidOCR(intra_op_num_threads=num_threads, inter_op_num_threads=num_threads)
        self.preprocess = preprocess

    def _read_unique(self, images: list[Image.Image]) -> list[OCRResult]:
        return [self._read_one(im) for im in images]

    def _read_one(self, image: Image.Image) -> OCRResult:
        best = OCRResult("", 0.0)
        for prep in prepare(image, self.preprocess):
            found, _ = self._ocr(np.asarray(prep.image.convert("RGB")))
            words = []
            for quad, text, conf in found or []:
                xs = [p[0] for p in quad]
                ys = [p[1] for p in quad]
                box = prep.to_source((int(min(xs)), int(min(ys)), int(np.ceil(max(xs))), int(np.ceil(max(ys)))))
                words.append(Word(str(text).strip(), float(conf), box))
            words.sort(key=lambda w: (w.box[1] // max(1, (w.box[3] - w.box[1])), w.box[0]))  # reading order
            if words:
                result = OCRResult(" ".join(w.text for w in words), sum(w.confidence for w in words) / len(words), tuple(words), prep.variant)
                if result.confidence > best.confidence:
                    best = result
        return best
