"""Tesseract through pytesseract, reading a whole batch in one process.

Tesseract accepts a text file that lists image paths and reads them as pages of one
document, so a batch of N images (times its pre-processing variants) costs one process
start instead of N. Each image is read as a single text line (``--psm 7``), which is what
a sign shows; the variant with the best score wins.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

from PIL import Image

from safetext.ocr.base import OCREngine, OCRResult, OCRUnavailableError, Word
from safetext.ocr.preprocess import PreprocessConfig, Prepared, prepare

INSTALL_HINT = "install it with `apt-get install -y tesseract-ocr` (and `pip install pytesseract`)"


def score(result: OCRResult) -> float:
    """Confidence, discounted for very short reads: a lone '|' at 95% must not beat a word at 85%."""
    n = sum(c.isalnum() for c in result.text)
    return result.confidence * n / (n + 1)


class TesseractEngine(OCREngine):
    """The default engine.

    ``min_word_conf`` (0-100) drops Tesseract's confidence-0 guesses on blank images.
    ``retry_below``: a read scoring less than this is retried on the next variant."""

    name = "tesseract"

    def __init__(
        self,
        *,
        psm: int = 7,
        lang: str = "eng",
        preprocess: PreprocessConfig = PreprocessConfig(),
        min_word_conf: float = 1.0,
        tesseract_cmd: str | None = None,
        retry_below: float = 0.6,
        chunk_size: int = 200,
        timeout_s: float = 300.0,
    ) -> None:
        try:
            import pytesseract
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise OCRUnavailableError(f"pytesseract is not installed; {INSTALL_HINT}") from exc
        cmd = tesseract_cmd or pytesseract.pytesseract.tesseract_cmd
        resolved = shutil.which(cmd)
        if resolved is None:
            raise OCRUnavailableError(f"the tesseract binary {cmd!r} was not found on PATH; {INSTALL_HINT}")
        self._pt = pytesseract
        self.cmd = resolved
        self.config = f"--psm {psm}"
        self.lang = lang
        self.preprocess = preprocess
        self.min_word_conf = min_word_conf
        self.retry_below = retry_below
        self.chunk_size = chunk_size
        self.timeout_s = timeout_s

    def _read_unique(self, images: list[Image.Image]) -> list[OCRResult]:
        """Read the first variant of every image; read further variants only where that read is weak."""
        variants = [prepare(im, self.preprocess) for im in images]
        best: list[OCRResult | None] = [None] * len(images)
        for level in range(max(len(v) for v in variants)):
            todo = [
                (i, v[level])
                for i, v in enumerate(variants)
                if level < len(v) and (best[i] is None or score(best[i]) < self.retry_below)  # type: ignore[arg-type]
            ]
            for start in range(0, len(todo), self.chunk_size):
                chunk = todo[start : start + self.chunk_size]
                for (i, _), result in zip(chunk, self._run(chunk)):
                    current = best[i]
                    if current is None or score(result) > score(current):
                        best[i] = result
        return [b if b is not None else OCRResult("", 0.0) for b in best]

    def _run(self, chunk: list[tuple[int, Prepared]]) -> list[OCRResult]:
        """One tesseract process for the whole chunk; pages come back in list order."""
        with tempfile.TemporaryDirectory(prefix="safetext_ocr_") as tmp:
            paths = []
            for k, (_, prep) in enumerate(chunk):
                path = Path(tmp) / f"p{k:05d}.png"
                prep.image.save(path)
                paths.append(str(path))
            listing = Path(tmp) / "pages.txt"
            listing.write_text("\n".join(paths) + "\n")
            self._pt.pytesseract.tesseract_cmd = self.cmd
            try:
                data = self._pt.image_to_data(
                    str(listing), lang=self.lang, config=self.config, output_type=self._pt.Output.DICT, timeout=self.timeout_s
                )
            except self._pt.TesseractNotFoundError as exc:
                raise OCRUnavailableError(f"the tesseract binary was not found; {INSTALL_HINT}") from exc
        words: dict[int, list[Word]] = defaultdict(list)
        for k in range(len(data["text"])):
            text = str(data["text"][k]).strip()
            conf = float(data["conf"][k])
            if data["level"][k] != 5 or not text or conf < self.min_word_conf:
                continue
            page = int(data["page_num"][k]) - 1
            prep = chunk[page][1]
            x, y, w, h = (int(data[key][k]) for key in ("left", "top", "width", "height"))
            words[page].append(Word(text, conf / 100.0, prep.to_source((x, y, x + w, y + h))))
        results = []
        for page, (_, prep) in enumerate(chunk):
            ws = tuple(words.get(page, ()))
            conf = sum(w.confidence for w in ws) / len(ws) if ws else 0.0
            results.append(OCRResult(" ".join(w.text for w in ws), conf, ws, prep.variant))
        return results
