"""How the post-generation audit runs: one pydantic model, strict like the policy schema.

A policy file carries these models as its ``audit:`` and ``log:`` sections (a guard built
on the policy takes them as defaults), so unknown keys are errors.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

AuditMode = Literal["off", "flag", "block", "blur", "regenerate"]
BlurMethod = Literal["fill", "gaussian"]
AUDIT_MODES: tuple[str, ...] = ("off", "flag", "block", "blur", "regenerate")


class AuditConfig(BaseModel):
    """What to do when OCR reads a toxic word in a generated image."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: AuditMode = Field(
        "off",
        description="off: no OCR. flag: report leaks. block: withhold leaking images. "
        "blur: hide the leaked words. regenerate: generate again (see max_attempts, fallback).",
    )
    engine: str = Field("tesseract", description="A safetext.ocr engine name (safetext.ocr.available_engines()).")
    engine_options: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the engine.")
    min_confidence: float = Field(0.0, ge=0.0, le=1.0, description="OCR words below this confidence are ignored.")
    max_attempts: int = Field(3, ge=1, le=20, description="regenerate: generations in all, the first included.")
    reseed: bool = Field(False, description="regenerate: whether a new attempt may use a different seed.")
    fallback: Literal["block", "blur", "flag"] = Field(
        "block", description="regenerate: what to do when the last attempt still leaks."
    )
    blur_method: BlurMethod = Field("fill", description="fill: flat local mean colour. gaussian: strong blur.")
    blur_margin: int | None = Field(None, ge=0, description="Pixels added round each box; None: a quarter of its height.")

    @property
    def enabled(self) -> bool:
        return self.mode != "off"


class LogConfig(BaseModel):
    """Where the guard appends its audit log, and how it treats users' text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="The JSON-lines file (relative paths: from the current folder).")
    hash_prompts: bool = Field(False, description="Log a salted SHA-256 of each prompt instead of the text.")
    errors: Literal["raise", "warn"] = Field(
        "raise", description="raise: a failed write fails the call closed. warn: warn and go on."
    )


def resolve_audit(value: str | AuditConfig | dict[str, Any] | None) -> AuditConfig:
    """Accept a mode string (``"blur"``), a mapping, a config, or None (off)."""
    if value is None:
        return AuditConfig()
    if isinstance(value, AuditConfig):
        return value
    if isinstance(value, str):
        return AuditConfig(mode=value)  # type: ignore[arg-type]  # pydantic validates the literal
    if isinstance(value, dict):
        return AuditConfig.model_validate(value)
    raise TypeError(f"audit must be a mode string, a mapping or an AuditConfig; got {type(value).__name__}")
