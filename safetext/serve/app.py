"""The HTTP service: one FastAPI app built by :func:`create_app` from a :class:`ServeConfig`.

Gateway mode (``model=None``) checks prompts only and never imports torch, so it can run
in front of any image service. With a model it also generates, every image through a
:class:`~safetext.Guard`. Endpoints:

* ``GET /healthz`` - the process answers (never needs a token);
* ``GET /readyz`` - the policies (and the model) are loaded and warmed (503 until then);
* ``GET /metrics`` - Prometheus text;
* ``POST /v1/check`` - decisions for one prompt or a list;
* ``POST /v1/images/generations`` - OpenAI's images API, guarded, dynamically batched.

Every error is ``{"error": {"code", "message", "type"}}``. With a token configured, every
endpoint but ``/healthz`` and ``/readyz`` needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import math
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from safetext.serve.batching import Batcher, BatcherClosed, Job, QueueFull
from safetext.serve.config import ServeConfig, ServeError, error_body
from safetext.serve.metrics import Metrics
from safetext.serve.middleware import BodyLimit, Measure, error_response, install_error_handlers
from safetext.serve.schemas import (
    CheckRequest,
    CheckResponse,
    DecisionOut,
    GenerationInfo,
    ImageData,
    ImageRequest,
    ImageResponse,
    Prompts,
    decision_out,
)

__all__ = ["ServeConfig", "ServeError", "create_app", "error_body"]

#: Prompt used to warm each policy engine before readiness is reported.
_WARMUP_PROMPT = "a sign that says hello"

#: Most prompts a check runs on the event loop; larger checks run in a worker thread.
_INLINE_PROMPTS = 8

#: How often a waiting generation request looks for a client that disconnected (seconds).
_DISCONNECT_POLL_S = 0.05

log = logging.getLogger("safetext.serve")


def _policy_violation(decision: Any) -> ServeError:
    reasons = "; ".join(getattr(decision, "reasons", []) or []) if decision is not None else ""
    message = "the prompt was rejected by the content policy" + (f": {reasons}" if reasons else "")
    return ServeError(400, "content_policy_violation", message)


def create_app(config: ServeConfig) -> FastAPI:
    """Build the service: compile and warm every policy, load the model, then wire the endpoints.

    Policies compile here, not per request, so a bad policy name fails at startup with its
    :class:`~safetext.errors.PolicyError` and requests never pay for compilation. The model
    and its guards load here too, so a bad model or preset fails before the port opens.
    """
    from safetext.policy import PolicyEngine
    from safetext.policy.decision import Action

    token = config.resolved_token()
    engines: dict[str, PolicyEngine] = {}
    for name in config.policies:
        if name not in engines:
            engines[name] = PolicyEngine(name)
    default_policy = config.policies[0]
    metrics = Metrics()
    state: dict[str, Any] = {"ready": False}
    instance = f"{socket.gethostname()}:{os.getpid()}"  # which process answered (one per Ray replica)

    generation = None
    batcher: Batcher | None = None
    if config.model is not None:
        from safetext.serve.generation import Generation

        generation = Generation(config, engines)

        def batched(jobs: Any, seconds: float) -> None:
            metrics.observe_batch(sum(job.images for job in jobs), seconds)

        batcher = Batcher(
            generation.run,
            max_queue=config.max_queue,
            max_batch=config.max_batch,
            window_s=config.batch_window_ms / 1000.0,
            on_batch=batched,
        )
        metrics.gauge("safetext_queue_depth", "Generation requests waiting for the model.", lambda: batcher.depth)
        metrics.gauge("safetext_queue_capacity", "Most generation requests that may wait (--max-queue).", lambda: config.max_queue)
        metrics.gauge("safetext_generations_running", "Generation requests in the pipeline call now running.", lambda: batcher.running)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if batcher is not None:  # the server stopped taking requests: finish what was queued
            await run_in_threadpool(batcher.close)

    app = FastAPI(title="safetext", version=_version(), docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.config = config
    app.state.metrics = metrics
    app.state.batcher = batcher
    app.state.generation = generation
    # Added first, so it runs inside the metrics middleware and its 413s are counted.
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    app.add_middleware(Measure, metrics=metrics)
    install_error_handlers(app)

    async def authorize(request: Request) -> None:
        """Require the bearer token when one is configured (constant-time comparison).

        Async because it only compares bytes: a sync dependency would cost a threadpool hop per request.
        """
        if token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ServeError(401, "unauthorized", "missing or wrong bearer token", "authentication_error")

    def engine_for(policy: str | None) -> tuple[str, PolicyEngine]:
        name = policy or default_policy
        engine = engines.get(name)
        if engine is None:
            raise ServeError(404, "unknown_policy", f"policy {name!r} is not served; served: {', '.join(engines)}")
        return name, engine

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Alive: the process answers. Says nothing about policies."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        """Ready: every policy compiled and answered a warm-up check, and the model is loaded."""
        if not state["ready"]:
            return error_response(503, "not_ready", "policies are not warmed yet", "server_error")
        body: dict[str, Any] = {
            "status": "ready",
            "mode": "gateway",
            "policies": list(engines),
            "default_policy": default_policy,
            "instance": instance,
        }
        if generation is not None:
            body.update(
                mode="generation",
                model=config.model,
                sizes=[f"{w}x{h}" for w, h in generation.sizes],
                max_batch=config.max_batch,
                max_queue=config.max_queue,
            )
        return JSONResponse(body)

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
            out.append(decision_out(decision))
        return out

    @app.post("/v1/check", dependencies=[Depends(authorize)])
    async def check(body: CheckRequest) -> CheckResponse:
        """Decisions for ``prompt`` (and ``prompt_2``/``prompt_3``) under one policy.

        A check of one prompt takes tens of microseconds, less than a hop to the threadpool,
        so small requests run on the event loop; large ones go to a worker thread so they
        cannot stall other requests.
        """
        policy, engine = engine_for(body.policy)
        count = sum(0 if p is None else 1 if isinstance(p, str) else len(p) for p in (body.prompt, body.prompt_2, body.prompt_3))
        if count > config.max_prompts:
            raise ServeError(413, "too_many_prompts", f"request carries {count} prompts; the limit is {config.max_prompts}")
        if isinstance(body.prompt, list) and not body.prompt:
            raise ServeError(400, "invalid_request", "prompt: the list is empty")

        def decide() -> CheckResponse:
            return CheckResponse(
                policy=policy,
                decisions=_decide(engine, policy, body.prompt, "prompt") or [],
                decisions_2=_decide(engine, policy, body.prompt_2, "prompt_2"),
                decisions_3=_decide(engine, policy, body.prompt_3, "prompt_3"),
            )

        return decide() if count <= _INLINE_PROMPTS else await run_in_threadpool(decide)

    tags = itertools.count()

    def retry_after() -> int:
        """Seconds until the queue has likely moved on: the batches ahead times the mean call, at least the configured floor."""
        assert batcher is not None
        ahead = math.ceil(batcher.depth / config.max_batch) + 1  # the waiting batches and the running one
        return max(config.retry_after_s, math.ceil(ahead * metrics.mean_generation_s()))

    async def wait_for(job: Job, request: Request) -> Any:
        """The job's outcome; a client that left or a timeout drops the job if it has not started."""
        assert batcher is not None
        waiter = asyncio.wrap_future(job.future)
        deadline = time.monotonic() + config.request_timeout_s
        while True:
            done, _ = await asyncio.wait({waiter}, timeout=_DISCONNECT_POLL_S)
            if done:
                return waiter.result()
            if await request.is_disconnected():
                metrics.observe_dropped("cancelled" if batcher.cancel(job) else "disconnected")
                return None
            if time.monotonic() >= deadline:
                started = not batcher.cancel(job)
                metrics.observe_dropped("timeout")
                note = "; its generation had started and its result is discarded" if started else ""
                raise ServeError(504, "timeout", f"no image within {config.request_timeout_s:g} s{note}", "server_error")

    @app.post("/v1/images/generations", dependencies=[Depends(authorize)], response_model=None)
    async def generations(body: ImageRequest, request: Request) -> ImageResponse | Response:
        """Check the prompt, queue it for a batched guarded pipeline call, answer like OpenAI's images API."""
        began = time.perf_counter()
        if generation is None or batcher is None:
            raise ServeError(404, "no_model", "this server runs in gateway mode (no model); start it with --model")
        policy, engine = engine_for(body.policy)
        spec = generation.spec(body, policy)
        texts = [spec.prompt] + ([spec.prompt_2] if spec.prompt_2 is not None else [])
        decisions = await run_in_threadpool(engine.check_batch, texts)
        for decision in decisions:
            metrics.observe_action(policy, decision.action.value)
        blocked = next((d for d in decisions if d.action is Action.BLOCK), None)
        if blocked is not None:  # refused before it takes a queue slot
            metrics.observe_dropped("blocked")
            raise _policy_violation(blocked)
        try:
            job = batcher.submit(spec.key(generation.batchable, next(tags)), spec.n, spec)
        except QueueFull as exc:
            metrics.observe_dropped("queue_full")
            message = f"the generation queue is full ({exc}); retry later"
            retry = {"Retry-After": str(retry_after())}
            raise ServeError(429, "rate_limit_exceeded", message, "rate_limit_error", retry) from None
        except BatcherClosed:
            raise ServeError(503, "shutting_down", "the server is shutting down", "server_error") from None
        try:
            outcome = await wait_for(job, request)
        except ServeError:
            raise
        except Exception as exc:  # noqa: BLE001 - fail closed: no image, and the server keeps serving
            log.error("generation failed: %s", exc, exc_info=exc)
            metrics.observe_dropped("error")
            return error_response(500, "generation_failed", f"generation failed, no image returned ({type(exc).__name__})", "server_error")
        if outcome is None:  # the client disconnected; nobody reads this
            return error_response(499, "client_closed_request", "the client disconnected")
        metrics.observe_audit(outcome.audit["action"] if outcome.audit else "off")
        if outcome.images is None:  # the guard blocked it: by policy, or a block audit read a blocked word
            metrics.observe_dropped("blocked")
            if outcome.audit is not None and outcome.audit["leaked"]:
                raise ServeError(400, "content_policy_violation", "the OCR audit read a blocked word in the image; no image returned")
            raise _policy_violation(outcome.decision)
        return ImageResponse(
            created=int(time.time()),
            data=[ImageData(b64_json=image) for image in outcome.images],
            safetext=GenerationInfo(
                decision=decision_out(outcome.decision),
                patched_layers=outcome.patched_layers,
                audit=outcome.audit,
                timings={**outcome.timings, "total_s": time.perf_counter() - began},
                seed=spec.seed,
                size=f"{spec.width}x{spec.height}",
                steps=spec.steps,
                batch_images=outcome.batch_images,
            ),
        )

    for engine in engines.values():
        engine.check(_WARMUP_PROMPT)
    state["ready"] = True
    return app


def _version() -> str:
    from safetext import __version__

    return __version__
