"""The HTTP service: one FastAPI app built by :func:`create_app` from a :class:`ServeConfig`.

Gateway mode (``model=None``) checks prompts only and never imports torch, so it can run
in front of any image service. Endpoints:

* ``GET /healthz`` - the process answers (never needs a token);
* ``GET /readyz`` - the policies are compiled and answered a warm-up check (503 until then);
* ``GET /metrics`` - Prometheus text;
* ``POST /v1/check`` - decisions for one prompt or a list.

Every error is ``{"error": {"code", "message", "type"}}``. With a token configured, every
endpoint but ``/healthz`` and ``/readyz`` needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Union

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from safetext.errors import SafetextError
from safetext.serve.metrics import Metrics

#: Prompt used to warm each policy engine before readiness is reported.
_WARMUP_PROMPT = "a sign that says hello"


class ServeError(SafetextError, ValueError):
    """A request the service refuses; carries the HTTP status and the error code it answers with."""

    def __init__(self, status: int, code: str, message: str, type_: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.type = type_


class ServeConfig(BaseModel):
    """What the service runs with. The first policy is the default of requests that name none."""

    model_config = ConfigDict(extra="forbid")

    policies: list[str] = Field(default_factory=lambda: ["default"], min_length=1)
    token: str | None = Field(default=None, description="Bearer token; None: no authentication.")
    token_file: Path | None = Field(default=None, description="File whose first line is the token (keeps it out of argv).")
    max_body_bytes: int = Field(default=1_000_000, gt=0)
    max_prompt_chars: int = Field(default=4_000, gt=0)
    max_prompts: int = Field(default=256, gt=0, description="Most prompts one check request may carry.")
    model: str | None = Field(default=None, description="None: gateway mode, checks only, no torch.")

    @model_validator(mode="after")
    def _one_token_source(self) -> "ServeConfig":
        if self.token is not None and self.token_file is not None:
            raise ValueError("give token or token_file, not both")
        if self.token is not None and not self.token.strip():
            raise ValueError("token is empty")
        if self.model is not None:
            raise ValueError("model serving is not available yet; use model=None (gateway mode)")
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


Prompts = Union[str, list[str]]


class CheckRequest(BaseModel):
    """Body of ``POST /v1/check``. ``prompt_2``/``prompt_3`` are the second and third text encoders' prompts (SDXL, SD3)."""

    model_config = ConfigDict(extra="forbid")

    prompt: Prompts
    prompt_2: Prompts | None = None
    prompt_3: Prompts | None = None
    policy: str | None = None


class DecisionOut(BaseModel):
    """One decision as the API returns it: the engine's record plus LLM Guard's sanitized prompt and validity flag."""

    model_config = ConfigDict(extra="forbid")

    action: str
    prompt: str
    benign_prompt: str | None
    sanitized_prompt: str | None
    is_valid: bool
    flagged: bool
    risk: float
    spans: list[dict[str, Any]]
    reasons: list[str]


class CheckResponse(BaseModel):
    """Body of a successful check. ``decisions_2``/``decisions_3`` are set when the request carried ``prompt_2``/``prompt_3``."""

    model_config = ConfigDict(extra="forbid")

    policy: str
    decisions: list[DecisionOut]
    decisions_2: list[DecisionOut] | None = None
    decisions_3: list[DecisionOut] | None = None


def error_body(code: str, message: str, type_: str) -> dict[str, Any]:
    """The one error shape every endpoint answers with."""
    return {"error": {"code": code, "message": message, "type": type_}}


def _error(status: int, code: str, message: str, type_: str = "invalid_request_error", headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, type_), status_code=status, headers=headers)


class BodyLimit:
    """ASGI middleware answering 413 for bodies over ``limit`` bytes.

    Why ASGI and not a FastAPI middleware: the limit must hold for chunked bodies that carry
    no Content-Length, so it counts bytes as they are received, before anything is parsed.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._too_large(scope, receive, send)
                return
        seen = 0
        over = False
        replaced = False

        async def counted() -> Message:
            nonlocal seen, over
            if over:
                return {"type": "http.request", "body": b"", "more_body": False}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    over = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded(message: Message) -> None:
            # Once the body passed the limit, whatever the app answers (a parse error on the
            # cut body) is replaced by one 413.
            nonlocal replaced
            if not over:
                await send(message)
            elif not replaced and message["type"] == "http.response.start":
                replaced = True
                await self._too_large(scope, receive, send)

        await self.app(scope, counted, guarded)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _error(413, "request_too_large", f"request body is over {self.limit} bytes")
        await response(scope, receive, send)


def create_app(config: ServeConfig) -> FastAPI:
    """Build the service: compile and warm every policy, then wire the endpoints.

    Policies compile here, not per request, so a bad policy name fails at startup with its
    :class:`~safetext.errors.PolicyError` and requests never pay for compilation.
    """
    from safetext.policy import PolicyEngine

    token = config.resolved_token()
    engines: dict[str, PolicyEngine] = {}
    for name in config.policies:
        if name not in engines:
            engines[name] = PolicyEngine(name)
    default_policy = config.policies[0]
    metrics = Metrics()
    state: dict[str, Any] = {"ready": False}

    app = FastAPI(title="safetext", version=_version(), docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config = config
    app.state.metrics = metrics

    # Added first, so it runs inside the metrics middleware and its 413s are counted.
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)

    @app.middleware("http")
    async def _measure(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            metrics.observe_request(endpoint, request.method, status, time.perf_counter() - start)

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error(exc.status, exc.code, exc.message, exc.type, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(part) for part in err.get("loc", ()) if part != "body") or "body"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return _error(422, "invalid_request", "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, "internal_error", f"internal error ({type(exc).__name__})", "server_error")

    def authorize(request: Request) -> None:
        """Require the bearer token when one is configured (constant-time comparison)."""
        if token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ServeError(401, "unauthorized", "missing or wrong bearer token", "authentication_error")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Alive: the process answers. Says nothing about policies."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Ready: every policy compiled and answered a warm-up check."""
        if not state["ready"]:
            return _error(503, "not_ready", "policies are not warmed yet", "server_error")
        return JSONResponse({"status": "ready", "mode": "gateway", "policies": list(engines), "default_policy": default_policy})

    @app.get("/metrics", dependencies=[Depends(authorize)])
    def prometheus() -> PlainTextResponse:
        """Prometheus exposition text."""
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    def _decide(engine: PolicyEngine, policy: str, prompts: Prompts | None, field: str) -> list[DecisionOut] | None:
        if prompts is None:
            return None
        items = [prompts] if isinstance(prompts, str) else prompts
        for i, prompt in enumerate(items):
            if len(prompt) > config.max_prompt_chars:
                where = field if isinstance(prompts, str) else f"{field}[{i}]"
                raise ServeError(413, "prompt_too_long", f"{where} has {len(prompt)} characters; the limit is {config.max_prompt_chars}")
        out = []
        for decision in engine.check_batch(items):
            metrics.observe_action(policy, decision.action.value)
            out.append(
                DecisionOut(
                    action=decision.action.value,
                    prompt=decision.prompt,
                    benign_prompt=decision.benign_prompt,
                    sanitized_prompt=decision.sanitized_prompt,
                    is_valid=decision.is_valid,
                    flagged=decision.flagged,
                    risk=decision.risk,
                    spans=[span.model_dump(mode="json") for span in decision.spans],
                    reasons=list(decision.reasons),
                )
            )
        return out

    @app.post("/v1/check", dependencies=[Depends(authorize)])
    def check(body: CheckRequest) -> CheckResponse:
        """Decisions for ``prompt`` (and ``prompt_2``/``prompt_3``) under one policy. Sync: FastAPI runs it in a worker thread."""
        policy = body.policy or default_policy
        engine = engines.get(policy)
        if engine is None:
            raise ServeError(404, "unknown_policy", f"policy {policy!r} is not served; served: {', '.join(engines)}")
        count = sum(0 if p is None else 1 if isinstance(p, str) else len(p) for p in (body.prompt, body.prompt_2, body.prompt_3))
        if count > config.max_prompts:
            raise ServeError(413, "too_many_prompts", f"request carries {count} prompts; the limit is {config.max_prompts}")
        if isinstance(body.prompt, list) and not body.prompt:
            raise ServeError(400, "invalid_request", "prompt: the list is empty")
        return CheckResponse(
            policy=policy,
            decisions=_decide(engine, policy, body.prompt, "prompt") or [],
            decisions_2=_decide(engine, policy, body.prompt_2, "prompt_2"),
            decisions_3=_decide(engine, policy, body.prompt_3, "prompt_3"),
        )

    for engine in engines.values():
        engine.check(_WARMUP_PROMPT)
    state["ready"] = True
    return app


def _version() -> str:
    from safetext import __version__

    return __version__
