"""The exceptions safetext raises on purpose, under one base class.

``except SafetextError`` catches every failure the library reports itself (a bad policy,
a preset that does not fit, injection that could not run, a model folder that cannot be
loaded), while programming errors (``TypeError`` on a wrong argument type) stay apart.
Each class also derives from the builtin it replaced (``ValueError`` or
``RuntimeError``), so callers that caught those keep working.

This module imports nothing heavy: a gateway can catch these without torch.
"""

from __future__ import annotations


class SafetextError(Exception):
    """Base of every error safetext raises on purpose."""


class PolicyError(SafetextError, ValueError):
    """A policy that cannot be used. ``problems`` holds (file, line, field, message) tuples."""

    def __init__(self, problems: list[tuple[str, int | None, str, str]]) -> None:
        self.problems = problems
        lines = []
        for file, line, fieldpath, message in problems:
            where = f"{file}:{line}" if line else file
            lines.append(f"{where}: {fieldpath or '<top>'}: {message}" if fieldpath else f"{where}: {message}")
        super().__init__("\n".join(lines))


class PresetError(SafetextError, ValueError):
    """A preset file is missing, unreadable, does not validate or does not fit the model."""


class UnsupportedArchitectureError(PresetError):
    """No preset is known for this pipeline; it must be localized first."""


class InjectionError(SafetextError, RuntimeError):
    """Injection could not be installed or did not run as configured (fail closed)."""


class GuardError(SafetextError, RuntimeError):
    """The guard could not be built or could not produce a guarded image; nothing unguarded was returned."""


class PipelineLoadError(SafetextError, RuntimeError):
    """A model folder is missing, incomplete or cannot be loaded."""


class ModelProfileError(SafetextError, ValueError):
    """A model folder's ``safetext_model.yaml`` is unreadable or does not validate."""


class OCRUnavailableError(SafetextError, RuntimeError):
    """The OCR engine's binary, package or model is missing. The message says how to install it."""


class ClassifierError(SafetextError, RuntimeError):
    """A classifier backend that cannot be built: unknown name, missing library or missing files."""


class AuditLogError(SafetextError, RuntimeError):
    """An audit log line could not be written (unwritable path, full disk, salt file unreadable)."""


class EditError(SafetextError, ValueError):
    """A text edit that cannot be made: the text to change is missing or ambiguous, or the new text is unusable."""


class FinetuneError(SafetextError, ValueError):
    """A fine-tuning run that cannot start: bad training data, a preset that does not fit, or an unusable checkpoint."""
