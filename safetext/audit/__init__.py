"""Post-generation audit: OCR the generated images, check the text read against the policy,
and flag, block, blur or regenerate; plus an append-only JSON-lines audit log.

Importing this package loads no torch and no OCR engine; ``Auditor`` builds its engine at
construction unless the mode is ``"off"``.
"""

from safetext.audit.auditor import Auditor, PolicyChecker
from safetext.audit.blur import Box, blur_text
from safetext.audit.config import AUDIT_MODES, AuditConfig, AuditMode, BlurMethod, LogConfig, resolve_audit
from safetext.audit.images import to_pil_images
from safetext.audit.log import AuditLog
from safetext.audit.outcome import AuditAction, AuditOutcome, ImageAudit
from safetext.audit.record import make_record, utc_now
from safetext.audit.redact import hash_text, redact
from safetext.errors import AuditLogError

__all__ = [
    "AUDIT_MODES",
    "AuditAction",
    "AuditConfig",
    "AuditLog",
    "AuditLogError",
    "AuditMode",
    "AuditOutcome",
    "Auditor",
    "BlurMethod",
    "Box",
    "ImageAudit",
    "LogConfig",
    "PolicyChecker",
    "blur_text",
    "hash_text",
    "make_record",
    "redact",
    "resolve_audit",
    "to_pil_images",
    "utc_now",
]
