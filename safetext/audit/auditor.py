"""The post-generation audit: OCR each image, run the policy on what was read.

The OCR engine is built when the Auditor is, so a missing engine fails at start-up and not
mid-request; ``mode="off"`` imports no OCR code at all.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from safetext.audit.blur import Box, blur_text
from safetext.audit.config import AuditConfig, resolve_audit
from safetext.audit.images import to_pil_images
from safetext.audit.outcome import AuditAction, AuditOutcome, ImageAudit
from safetext.errors import OCRUnavailableError


_LEAK_ACTIONS = ("rewrite", "block")


def _value(action: Any) -> str:
    return str(getattr(action, "value", action))


class PolicyChecker(Protocol):
    """What the auditor needs of a policy: ``safetext.policy.PolicyEngine`` fits."""

    def check(self, prompt: str) -> Any: ...


def _words(result: Any, min_confidence: float) -> tuple[str, list[tuple[int, int, Box]]]:
    """The text to check and each kept word's (start, end, box) in it."""
    found = tuple(getattr(result, "words", ()))
    if not found:
        return str(result.text), []
    spans: list[tuple[int, int, Box]] = []
    parts: list[str] = []
    pos = 0
    for w in (w for w in found if w.confidence >= min_confidence):
        spans.append((pos, pos + len(w.text), w.box))
        parts.append(w.text)
        pos += len(w.text) + 1
    return " ".join(parts), spans


class Auditor:
    """Reads generated images and says which show a term the policy rewrites or blocks.

    ``engine`` reuses an already built OCR engine instead of building ``config.engine``."""

    def __init__(self, config: AuditConfig | str | None = None, policy: PolicyChecker | str | Path = "default", *, engine: Any = None) -> None:
        self.config = resolve_audit(config)
        if isinstance(policy, (str, Path)):
            from safetext.policy import PolicyEngine

            policy = PolicyEngine(policy)
        self.policy = policy
        self.engine = engine
        if self.engine is None and self.config.enabled:
            from safetext import ocr

            if self.config.engine not in ocr.available_engines():  # unusable, like a missing binary
                raise OCRUnavailableError(f"unknown OCR engine {self.config.engine!r}; choose one of {ocr.available_engines()}")
            self.engine = ocr.get_engine(self.config.engine, **self.config.engine_options)

    @property
    def engine_name(self) -> str:
        return str(getattr(self.engine, "name", self.config.engine)) if self.engine is not None else ""

    def read(self, images: Any) -> list[ImageAudit]:
        """OCR every image (PIL, arrays or tensors; see ``to_pil_images``) and check the text read."""
        if self.engine is None:
            raise OCRUnavailableError("the audit is off (mode='off'), so no OCR engine was built")
        pil = to_pil_images(images)
        start = time.perf_counter()
        results = self.engine.read_batch(pil)
        share = (time.perf_counter() - start) / max(1, len(pil))
        return [self._judge(i, r, share) for i, r in enumerate(results)]

    def _judge(self, index: int, result: Any, ocr_s: float) -> ImageAudit:
        text, words = _words(result, self.config.min_confidence)
        decision = self.policy.check(text) if text.strip() else None
        action = _value(decision.action) if decision is not None else "allow"
        # A leak is a term the policy rewrites or blocks; a flagged one asks for review only.
        hits = [s for s in (decision.spans if decision is not None else []) if _value(s.action) in _LEAK_ACTIONS]
        leaked = action in _LEAK_ACTIONS
        boxes: list[Box] = []
        if leaked:
            boxes = [b for s0, e0, b in words if any(s.start < e0 and s0 < s.end for s in hits)] or [b for _, _, b in words]
        return ImageAudit(
            index=index,
            text=text,
            confidence=float(getattr(result, "confidence", 0.0)),
            leaked=leaked,
            action=action,
            terms=tuple(dict.fromkeys(s.term for s in hits)),
            categories=tuple(dict.fromkeys(s.category for s in hits)),
            boxes=tuple(boxes),
            ocr_s=ocr_s,
            decision=decision,
        )

    def blur(self, images: Any, audits: Sequence[ImageAudit]) -> Any:
        """``images`` with the leaked words hidden, in the input's form (PIL, list, or NHWC batch array).

        A leaked image without word boxes is hidden whole: the audit fails closed."""
        by_index = {a.index: a for a in audits if a.leaked}
        method, margin = self.config.blur_method, self.config.blur_margin

        def hide(i: int, im: Any) -> Any:
            audit = by_index.get(i)
            if audit is None:
                return im
            boxes = list(audit.boxes)
            if not boxes:
                w, h = im.size if isinstance(im, Image.Image) else (im.shape[1], im.shape[0])
                boxes = [(0, 0, w, h)]
            return blur_text(im, boxes, method=method, margin=margin)

        if isinstance(images, (list, tuple)):
            return type(images)(hide(i, im) for i, im in enumerate(images))
        if isinstance(images, np.ndarray) and images.ndim == 4:
            return np.stack([hide(i, im) for i, im in enumerate(images)])
        return hide(0, images)

    def outcome(self, audits: list[ImageAudit], *, action: AuditAction | None = None, attempts: int = 1, ocr_s: float | None = None) -> AuditOutcome:
        """Summarise ``audits``; ``action`` defaults to the configured mode when something leaked, else none."""
        if action is None:
            mode = self.config.mode
            action = "none" if mode == "off" or not any(a.leaked for a in audits) else mode  # type: ignore[assignment]
        return AuditOutcome.from_audits(audits, action=action, attempts=attempts, ocr_s=ocr_s, engine=self.engine_name)  # type: ignore[arg-type]
