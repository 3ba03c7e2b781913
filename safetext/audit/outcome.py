"""What the audit of one guarded call found and did, in a JSON-ready record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from safetext.audit.blur import Box

AuditAction = Literal["none", "flag", "block", "blur", "regenerate"]


@dataclass(frozen=True)
class ImageAudit:
    """One image's OCR read and the policy's verdict on it.

    ``leaked``: the text read holds a term the policy rewrites or blocks. ``boxes``: where the
    matching words are (all word boxes when the match cannot be tied to words). ``ocr_s`` is this
    image's share of the batch's OCR time. ``decision`` is the policy's Decision on ``text``."""

    index: int
    text: str
    confidence: float
    leaked: bool
    action: str  # the policy's action on the text read: allow, rewrite or block
    terms: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    boxes: tuple[Box, ...] = ()
    ocr_s: float = 0.0
    decision: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("decision")
        out["terms"], out["categories"] = list(self.terms), list(self.categories)
        out["boxes"] = [list(b) for b in self.boxes]
        out["confidence"], out["ocr_s"] = round(self.confidence, 4), round(self.ocr_s, 6)
        return out


@dataclass
class AuditOutcome:
    """The audit of a call: texts read per image (last attempt), which leaked, what was done.

    ``action`` is none when nothing leaked; ``attempts`` counts generations (1 unless
    regenerated); ``ocr_s`` sums the OCR time over all attempts."""

    read: list[str]
    leaked: bool
    leaked_images: list[int]
    action: AuditAction
    attempts: int = 1
    ocr_s: float = 0.0
    engine: str = ""
    terms: list[str] = field(default_factory=list)

    @classmethod
    def from_audits(
        cls, audits: list[ImageAudit], *, action: AuditAction, attempts: int = 1, ocr_s: float | None = None, engine: str = ""
    ) -> AuditOutcome:
        leaked = [a.index for a in audits if a.leaked]
        terms = sorted({t for a in audits if a.leaked for t in a.terms})
        total = sum(a.ocr_s for a in audits) if ocr_s is None else ocr_s
        return cls([a.text for a in audits], bool(leaked), leaked, action, attempts, total, engine, terms)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ocr_s"] = round(self.ocr_s, 6)
        return out
