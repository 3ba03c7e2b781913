"""Salted hashes in place of user text, so an audit log can be kept without the prompts.

A hash is ``sha256:`` and the hex HMAC-SHA256 of the text under the salt: equal prompts hash
equally under one salt (so repeats can be counted), and without the salt a dictionary of
likely prompts cannot be tested against the log. The salt lives in a 0600 file next to the log.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Keys whose string values are user text: any *prompt*/*prompts* key (prompt, prompt_2,
# negative_prompt, benign_prompts, ...), a span's matched text, reasons (they quote the
# prompt) and the text OCR read off an image.
_PROMPT_KEY = re.compile(r"prompts?(_\d+)?$")
USER_TEXT_KEYS = frozenset({"text", "reasons", "read"})


def is_user_text_key(key: str) -> bool:
    return key in USER_TEXT_KEYS or bool(_PROMPT_KEY.search(key))


def hash_text(text: str, salt: bytes) -> str:
    return "sha256:" + hmac.new(salt, text.encode("utf-8"), hashlib.sha256).hexdigest()


def redact(value: Any, salt: bytes, *, sensitive: bool = False) -> Any:
    """A copy of ``value`` with the strings under user-text keys hashed (mappings at any depth)."""
    if isinstance(value, Mapping):
        return {k: redact(v, salt, sensitive=is_user_text_key(str(k))) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v, salt, sensitive=sensitive) for v in value]
    if sensitive and isinstance(value, str):
        return hash_text(value, salt)
    return value


def load_or_create_salt(path: Path) -> bytes:
    """The salt stored at ``path``, created (32 random bytes, hex, mode 0600) on first use.

    Creation writes a temporary file and links it into place, so concurrent processes agree
    on one salt and none reads a half-written file."""
    try:
        return _read_salt(path)
    except FileNotFoundError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=".salt-", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_hex(32).encode("ascii"))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)
    return _read_salt(path)


def _read_salt(path: Path) -> bytes:
    data = path.read_bytes().strip()
    if not data:
        raise OSError(f"the salt file {path} is empty")
    return data
