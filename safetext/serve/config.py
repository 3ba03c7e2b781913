"""What the service runs with (:class:`ServeConfig`) and the one error it answers with (:class:`ServeError`).

Nothing here imports torch, so gateway mode stays model-free.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from safetext.errors import SafetextError

#: ``WxH`` as the OpenAI images API writes sizes.
SIZE_PATTERN = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$")


class ServeError(SafetextError, ValueError):
    """A request the service refuses; carries the HTTP status and the error code it answers with."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        type_: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.type = type_
        self.headers = headers


def error_body(code: str, message: str, type_: str) -> dict[str, Any]:
    """The one error shape every endpoint answers with."""
    return {"error": {"code": code, "message": message, "type": type_}}


def parse_size(size: str) -> tuple[int, int]:
    """``"WxH"`` -> ``(width, height)``; ValueError for anything else."""
    match = SIZE_PATTERN.match(size)
    if match is None:
        raise ValueError(f"size must be WIDTHxHEIGHT, e.g. 256x64; got {size!r}")
    return int(match.group(1)), int(match.group(2))


class ServeConfig(BaseModel):
    """What the service runs with. The first policy is the default of requests that name none.

    ``model=None`` is gateway mode: checks only, no torch. Otherwise ``model`` is anything
    ``--model`` takes (``testbed``, a folder, ``tiny:KIND``) and ``/v1/images/generations``
    is served through one :class:`~safetext.Guard` per policy.
    """

    model_config = ConfigDict(extra="forbid")

    policies: list[str] = Field(default_factory=lambda: ["default"], min_length=1)
    token: str | None = Field(default=None, description="Bearer token; None: no authentication.")
    token_file: Path | None = Field(default=None, description="File whose first line is the token (keeps it out of argv).")
    max_body_bytes: int = Field(default=1_000_000, gt=0)
    max_prompt_chars: int = Field(default=4_000, gt=0)
    max_prompts: int = Field(default=256, gt=0, description="Most prompts one check request may carry.")
    model: str | None = Field(default=None, description="None: gateway mode, checks only, no torch.")
    preset: str | list[str] = Field(default="auto", description="Injection preset of the guards: 'auto', a name, a file or module names.")
    device: str | None = Field(default=None, description="torch device of the pipeline (default: cpu).")
    audit: str | None = Field(default=None, description="Audit mode of the guards (None: the policy's).")
    log: Path | None = Field(default=None, description="JSON-lines audit log, one line per pipeline call.")
    max_queue: int = Field(default=16, gt=0, description="Generation requests that may wait; more get 429.")
    max_batch: int = Field(default=4, gt=0, description="Most images in one batched pipeline call.")
    batch_window_ms: float = Field(default=10.0, ge=0, description="How long a batch waits for compatible requests.")
    request_timeout_s: float = Field(default=300.0, gt=0, description="A generation request waiting longer gets 504.")
    retry_after_s: int = Field(default=1, ge=0, description="Least Retry-After of a 429 (the estimate from the queue may be longer).")
    max_n: int = Field(default=4, gt=0, description="Most images one request may ask for.")
    max_steps: int = Field(default=100, gt=0, description="Most denoising steps one request may ask for.")
    sizes: list[str] | None = Field(default=None, description="Sizes served ('WxH'); None: the model's native size.")
    threads: int | None = Field(default=None, gt=0, description="torch CPU threads of the pipeline (None: torch's default).")

    @field_validator("sizes")
    @classmethod
    def _sizes(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            for size in value:
                parse_size(size)
        return value

    @model_validator(mode="after")
    def _one_token_source(self) -> "ServeConfig":
        if self.token is not None and self.token_file is not None:
            raise ValueError("give token or token_file, not both")
        if self.token is not None and not self.token.strip():
            raise ValueError("token is empty")
        if self.model is None and (self.audit is not None or self.log is not None):
            raise ValueError("audit and log apply to generation; gateway mode (model=None) has none")
        return self

    def resolved_token(self) -> str | None:
        """The token to require, read from ``token_file`` when that is set."""
        if self.token_file is None:
            return self.token
        try:
            lines = self.token_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ServeError(500, "config_error", f"cannot read token file {self.token_file}: {exc.strerror}") from None
        token = lines[0].strip() if lines else ""
        if not token:
            raise ServeError(500, "config_error", f"token file {self.token_file} is empty")
        return token
