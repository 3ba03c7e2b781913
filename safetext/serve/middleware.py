"""ASGI middleware (body limit, request metrics) and the error handlers behind the one error shape.

Both middlewares are plain ASGI rather than ``@app.middleware("http")``: the body limit must
count bytes of chunked bodies as they arrive, and the metrics wrapper must pass
``http.disconnect`` through untouched so generation requests notice clients that left.
"""

from __future__ import annotations

import time
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from safetext.serve.config import ServeError, error_body
from safetext.serve.metrics import Metrics


def error_response(
    status: int, code: str, message: str, type_: str = "invalid_request_error", headers: dict[str, str] | None = None
) -> JSONResponse:
    """A JSON response in the one error shape."""
    return JSONResponse(error_body(code, message, type_), status_code=status, headers=headers)


class BodyLimit:
    """Answer 413 for bodies over ``limit`` bytes, counted as they are received (no Content-Length needed)."""

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
        response = error_response(413, "request_too_large", f"request body is over {self.limit} bytes")
        await response(scope, receive, send)


class Measure:
    """Count every HTTP request by route template, method and status, with its latency."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(endpoint, scope.get("method", ""), status, time.perf_counter() - start)


def install_error_handlers(app: FastAPI) -> None:
    """Every error, ours or the framework's, answers ``{"error": {"code", "message", "type"}}``."""

    @app.exception_handler(ServeError)
    async def _serve_error(request: Request, exc: ServeError) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        return error_response(exc.status, exc.code, exc.message, exc.type, headers or None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(part) for part in err.get("loc", ()) if part != "body") or "body"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return error_response(422, "invalid_request", "; ".join(problems))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal_error", f"internal error ({type(exc).__name__})", "server_error")
