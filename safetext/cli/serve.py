"""``safetext serve``: the check gateway (no model, no torch) under uvicorn on one host and port.

FastAPI and uvicorn are the optional ``serve`` extra, imported inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from safetext.cli import app
from safetext.cli._validate import ArgumentError


@app.command("serve")
def serve(
    policy: Annotated[Optional[list[str]], typer.Option("--policy", help="Policy name or file to serve; repeat for more (the first is the default).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = 8000,
    token: Annotated[Optional[str], typer.Option("--token", help="Require 'Authorization: Bearer TOKEN' (visible in ps; prefer --token-file).")] = None,
    token_file: Annotated[Optional[Path], typer.Option("--token-file", help="File whose first line is the bearer token.")] = None,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", min=1, help="Largest request body (413 above).")] = 1_000_000,
    max_prompt_chars: Annotated[int, typer.Option("--max-prompt-chars", min=1, help="Longest prompt (413 above).")] = 4_000,
) -> None:
    """Serve /v1/check, /healthz, /readyz and /metrics over HTTP (gateway mode: checks only)."""
    try:
        import uvicorn
        from pydantic import ValidationError

        from safetext.serve import ServeConfig, create_app
    except ModuleNotFoundError as exc:
        raise ArgumentError(f"serve: {exc.name} is not installed; pip install 'safetext-t2i[serve]'") from None
    if token is not None and token_file is not None:
        raise ArgumentError("--token: give --token or --token-file, not both")
    if token_file is not None and not token_file.is_file():
        raise ArgumentError(f"--token-file: not a file: {token_file}")
    try:
        config = ServeConfig(
            policies=policy or ["default"],
            token=token,
            token_file=token_file,
            max_body_bytes=max_body_bytes,
            max_prompt_chars=max_prompt_chars,
        )
    except ValidationError as exc:
        raise ArgumentError("; ".join(err["msg"] for err in exc.errors())) from None
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning", access_log=False)
