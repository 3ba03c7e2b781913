"""``safetext serve``: the check gateway (``--model none``, no torch) or guarded generation, under
uvicorn on one host and port, or as a Ray Serve deployment (``--ray``).

FastAPI and uvicorn are the optional ``serve`` extra, imported inside the command; Ray only with ``--ray``.
Options are checked before any model loads, so a mistake is one ``error:`` line and exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from safetext.cli import app
from safetext.cli._validate import ArgumentError


@app.command("serve")
def serve(
    model: Annotated[str, typer.Option("--model", help="'none' (gateway: checks only, no torch), 'testbed', tiny:KIND or a model folder.")] = "none",
    policy: Annotated[Optional[list[str]], typer.Option("--policy", help="Policy name or file to serve; repeat for more (the first is the default).")] = None,
    preset: Annotated[str, typer.Option("--preset", help="'auto', a packaged preset name or a preset YAML file.")] = "auto",
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = 8000,
    token: Annotated[Optional[str], typer.Option("--token", help="Require 'Authorization: Bearer TOKEN' (visible in ps; prefer --token-file).")] = None,
    token_file: Annotated[Optional[Path], typer.Option("--token-file", help="File whose first line is the bearer token.")] = None,
    max_queue: Annotated[int, typer.Option("--max-queue", min=1, help="Generation requests that may wait (429 above).")] = 16,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Most images in one batched pipeline call.")] = 4,
    batch_window_ms: Annotated[float, typer.Option("--batch-window-ms", min=0, help="How long a batch waits for compatible requests.")] = 10.0,
    device: Annotated[Optional[str], typer.Option("--device", help="torch device, e.g. cuda (default: cpu).")] = None,
    audit: Annotated[Optional[str], typer.Option("--audit", help="OCR audit: off, flag, block, blur or regenerate (default: the policy's).")] = None,
    log: Annotated[Optional[Path], typer.Option("--log", help="Append one JSON line per pipeline call to this file.")] = None,
    size: Annotated[Optional[list[str]], typer.Option("--size", help="Image size to serve, WxH; repeat for more (default: the model's native size).")] = None,
    request_timeout: Annotated[float, typer.Option("--request-timeout", min=0.001, help="Seconds a generation request may wait in all (504 above).")] = 300.0,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="torch CPU threads (default: torch's).")] = None,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", min=1, help="Largest request body (413 above).")] = 1_000_000,
    max_prompt_chars: Annotated[int, typer.Option("--max-prompt-chars", min=1, help="Longest prompt (413 above).")] = 4_000,
    use_ray: Annotated[bool, typer.Option("--ray", help="Run as a Ray Serve deployment instead of one uvicorn process.")] = False,
    num_replicas: Annotated[int, typer.Option("--num-replicas", min=1, help="With --ray: replicas (one app and model each).")] = 1,
    num_gpus: Annotated[float, typer.Option("--num-gpus", min=0, help="With --ray: GPUs per replica.")] = 0.0,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="With --ray: cluster address (e.g. auto); default: a local Ray.")] = None,
) -> None:
    """Serve /v1/check, /v1/images/generations, /healthz, /readyz and /metrics over HTTP."""
    from safetext.cli import _validate

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
    served_model = None if model == "none" else model
    if served_model is None:
        for name, value in (("--device", device), ("--audit", audit), ("--log", log), ("--size", size), ("--threads", threads)):
            if value is not None:
                raise ArgumentError(f"{name}: applies to generation; give --model (gateway mode loads no model)")
        policies = policy or ["default"]
    else:
        from safetext.pipelines.profile import GENERIC

        profile = _validate.model(served_model) or GENERIC
        _validate.preset(preset)
        _validate.device(device)
        _validate.audit_mode(audit)
        if log is not None:
            log = _validate.out_file(log, "--log")
        policies = policy or [profile.policy]
    for name in policies:
        _validate.policy(name)
    try:
        config = ServeConfig(
            model=served_model,
            policies=policies,
            preset=preset,
            device=device,
            audit=audit,
            log=log,
            token=token,
            token_file=token_file,
            max_queue=max_queue,
            max_batch=max_batch,
            batch_window_ms=batch_window_ms,
            request_timeout_s=request_timeout,
            sizes=size,
            threads=threads,
            max_body_bytes=max_body_bytes,
            max_prompt_chars=max_prompt_chars,
        )
    except ValidationError as exc:
        raise ArgumentError("; ".join(err["msg"] for err in exc.errors())) from None
    if use_ray:
        _serve_ray(config, host, port, num_replicas, num_gpus, ray_address)
        return
    # uvicorn's graceful shutdown (SIGTERM, Ctrl-C): stop accepting, let in-flight requests
    # finish (each is bounded by --request-timeout), then the app's lifespan drains the queue.
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=int(request_timeout) + 30,
    )


def _serve_ray(config: Any, host: str, port: int, num_replicas: int, num_gpus: float, address: str | None) -> None:
    try:
        import ray  # noqa: F401
    except ModuleNotFoundError as exc:  # pragma: no cover - only while ray is absent
        raise ArgumentError(f"--ray: {exc.name} is not installed; pip install 'safetext-t2i[ray]'") from None
    from safetext.serve.ray import run

    options: dict[str, Any] = {"num_gpus": num_gpus} if num_gpus else {}
    run(config, host=host, port=port, num_replicas=num_replicas, ray_actor_options=options, address=address, blocking=True)
