"""Post-generation audit: OCR the generated images, check the text read against the policy,
and flag, block, blur or regenerate; plus an append-only JSON-lines audit log.

Importing this package loads no torch, no numpy and no OCR engine: the configuration,
redaction and log names are imported at once, the image-handling ones (``Auditor``,
``blur_text``, ``to_pil_images`` and the outcome types) on first use, so a policy file that
names an audit mode validates without them. ``Auditor`` builds its engine at construction
unless the mode is ``"off"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from safetext._lazy import lazy_attributes

from safetext.audit.config import AUDIT_MODES, AuditConfig, AuditMode, BlurMethod, LogConfig, resolve_audit
from safetext.audit.log import AuditLog
from safetext.audit.redact import hash_text, redact
from safetext.errors import AuditLogError

_LAZY = {
    "Auditor": "safetext.audit.auditor",
    "PolicyChecker": "safetext.audit.auditor",
    "Box": "safetext.audit.blur",
    "blur_text": "safetext.audit.blur",
    "to_pil_images": "safetext.audit.images",
    "AuditAction": "safetext.audit.outcome",
    "AuditOutcome": "safetext.audit.outcome",
    "ImageAudit": "safetext.audit.outcome",
    "make_record": "safetext.audit.record",
    "utc_now": "safetext.audit.record",
}

__all__ = [
    "AUDIT_MODES",
    "AuditConfig",
    "AuditLog",
    "AuditLogError",
    "AuditMode",
    "BlurMethod",
    "LogConfig",
    "hash_text",
    "redact",
    "resolve_audit",
    *_LAZY,
]

if TYPE_CHECKING:  # pragma: no cover
    from safetext.audit.auditor import Auditor, PolicyChecker
    from safetext.audit.blur import Box, blur_text
    from safetext.audit.images import to_pil_images
    from safetext.audit.outcome import AuditAction, AuditOutcome, ImageAudit
    from safetext.audit.record import make_record, utc_now


__getattr__ = lazy_attributes(__name__, _LAZY)
