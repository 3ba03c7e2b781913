"""An append-only JSON-lines audit log that many threads and processes can share.

Each record becomes one line written by a single ``os.write`` on a descriptor opened with
``O_APPEND``, under a thread lock and an exclusive ``flock``: appends land at the end
whatever other writers do, and the lock keeps a line whole even when the kernel splits a
large write. The file is opened per write, so log rotation and ``fork`` need no care.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from safetext.audit.redact import hash_text, load_or_create_salt, redact
from safetext.errors import AuditLogError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX; O_APPEND alone orders the writes
    fcntl = None  # type: ignore[assignment]


def _json_default(value: Any) -> Any:
    for attr in ("to_dict", "model_dump"):
        if callable(getattr(value, attr, None)):
            return getattr(value, attr)()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


class AuditLog:
    """Appends one JSON line per :meth:`write` to ``path``.

    ``hash_prompts`` replaces user text (prompts, matched span text, reasons, OCR reads) by a
    salted hash; ``salt`` defaults to one stored in ``<path>.salt`` (created 0600), so hashes
    are stable across runs. ``errors="warn"`` turns write failures into warnings, so a full
    disk does not take the service down; ``"raise"`` raises :class:`AuditLogError`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        hash_prompts: bool = False,
        salt: str | bytes | None = None,
        errors: Literal["raise", "warn"] = "raise",
    ) -> None:
        if errors not in ("raise", "warn"):
            raise ValueError(f"errors must be 'raise' or 'warn', not {errors!r}")
        self.path = Path(path)
        self.hash_prompts = hash_prompts
        self.errors = errors
        self._salt = salt.encode("utf-8") if isinstance(salt, str) else salt
        self._lock = threading.Lock()

    @property
    def salt_path(self) -> Path:
        return self.path.with_name(self.path.name + ".salt")

    def _get_salt(self) -> bytes:
        if self._salt is None:
            self._salt = load_or_create_salt(self.salt_path)
        return self._salt

    def hash(self, text: str) -> str:
        """The hash this log writes for ``text``."""
        with self._lock:
            salt = self._get_salt()
        return hash_text(text, salt)

    def write(self, record: Mapping[str, Any]) -> bool:
        """Append ``record`` as one line. True when written; False when a failure was warned about."""
        try:
            if self.hash_prompts:
                with self._lock:
                    salt = self._get_salt()
                record = redact(record, salt)
            line = (json.dumps(record, default=_json_default, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")
            with self._lock:
                self._append(line)
        except OSError as exc:
            message = f"could not write the audit log {self.path}: {exc}"
            if self.errors == "raise":
                raise AuditLogError(message) from exc
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            return False
        return True

    def _append(self, line: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            view = memoryview(line)
            while view:  # one write in practice; the loop only finishes a short write, under the lock
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)  # closing releases the flock
