"""``POST /v1/images/generations`` in-process on the random-weight ``tiny:sd`` pipeline: the OpenAI
shape, every refusal, batching that keeps each request's image bitwise, backpressure, timeouts,
fail-closed errors and the generation metrics."""

from __future__ import annotations

import base64
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

pytest.importorskip("fastapi")
torch = pytest.importorskip("torch")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from safetext.errors import GuardError  # noqa: E402
from safetext.serve import ServeConfig, create_app  # noqa: E402

URL = "/v1/images/generations"
STEPS = 2
#: tiny:sd has no shipped preset; one of its text attention modules stands in (as in the guard tests).
PRESET = ["up_blocks.1.attentions.0.transformer_blocks.0.attn2"]


def _config(**kwargs: Any) -> ServeConfig:
    kwargs.setdefault("model", "tiny:sd")
    kwargs.setdefault("policies", ["default", "strict"])
    kwargs.setdefault("threads", 1)
    kwargs.setdefault("preset", PRESET)
    return ServeConfig(**kwargs)


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = create_app(_config(max_batch=4, batch_window_ms=300, token="t0k"))
    with TestClient(app, headers={"Authorization": "Bearer t0k"}) as c:
        yield c


def _png(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def _error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert set(response.json()["error"]) == {"code", "message", "type"}
    assert response.json()["error"]["code"] == code
    return response.json()["error"]["message"]


class _Wrapped:
    """Stands in for a guard: waits on ``gate`` and raises for prompts containing 'explode'."""

    def __init__(self, guard: Any, gate: threading.Event | None = None) -> None:
        self.guard, self.gate, self.calls = guard, gate, 0

    def __call__(self, prompts: list[str], **kwargs: Any) -> Any:
        self.calls += 1
        if self.gate is not None:
            assert self.gate.wait(30)
        if any("explode" in p for p in prompts):
            raise GuardError("guarded generation failed, no image returned: boom")
        return self.guard(prompts, **kwargs)


def test_openai_shape_and_the_image_is_the_plain_pipelines(client: TestClient) -> None:
    body = client.post(URL, json={"prompt": "a red sign that says hello", "seed": 7, "steps": STEPS}).json()
    assert set(body) == {"created", "data", "safetext"} and isinstance(body["created"], int)
    info = body["safetext"]
    assert info["decision"]["action"] == "allow" and info["patched_layers"] == [] and info["audit"] is None
    assert info["seed"] == 7 and info["size"] == "16x16" and info["steps"] == STEPS
    assert {"queue_s", "generate_s", "total_s"} <= set(info["timings"])
    (image,) = [_png(d["b64_json"]) for d in body["data"]]
    assert image.size == (16, 16)
    pipe = client.app.state.generation.pipe
    plain = pipe("a red sign that says hello", generator=[torch.Generator().manual_seed(7)], num_inference_steps=STEPS,
                 height=16, width=16, guidance_scale=info_guidance(client)).images[0]
    assert image.tobytes() == plain.tobytes()


def info_guidance(client: TestClient) -> float:
    return client.app.state.generation.default_guidance


def test_rewrite_reports_the_patched_layers(client: TestClient) -> None:
    info = client.post(URL, json={"prompt": "a sign that says fuck", "seed": 1, "steps": STEPS}).json()["safetext"]
    assert info["decision"]["action"] == "rewrite" and info["decision"]["benign_prompt"] == "a sign that says heck"
    assert info["patched_layers"]


def test_blocked_prompt_is_an_openai_content_policy_violation(client: TestClient) -> None:
    check = client.post("/v1/check", json={"prompt": "a sign that says nigger", "policy": "strict"}).json()
    assert check["decisions"][0]["action"] == "block"
    response = client.post(URL, json={"prompt": "a sign that says nigger", "policy": "strict", "steps": STEPS})
    message = _error(response, 400, "content_policy_violation")
    assert response.json()["error"]["type"] == "invalid_request_error" and "data" not in response.json()
    assert "rejected" in message


@pytest.mark.parametrize(
    ("body", "status", "code", "names"),
    [
        ({"prompt": "x", "size": "512x512"}, 400, "unsupported_size", "16x16"),
        ({"prompt": "x", "size": "huge"}, 422, "invalid_request", "size"),
        ({"prompt": "x", "response_format": "url"}, 400, "unsupported_response_format", "b64_json"),
        ({"prompt": "x", "quality": "hd"}, 422, "invalid_request", "quality"),
        ({"prompt": "x", "n": 9}, 400, "invalid_n", "n:"),
        ({"prompt": "x", "steps": 1000}, 400, "invalid_steps", "steps"),
        ({"prompt": "x", "prompt_2": "y"}, 400, "unsupported_field", "prompt_2"),
        ({"prompt": "x", "policy": "nope"}, 404, "unknown_policy", "nope"),
        ({"prompt": ""}, 422, "invalid_request", "prompt"),
        ({"prompt": "x", "seed": -1}, 422, "invalid_request", "seed"),
    ],
)
def test_refusals_name_the_field(client: TestClient, body: dict, status: int, code: str, names: str) -> None:
    assert names in _error(client.post(URL, json=body), status, code)


def test_token_required(client: TestClient) -> None:
    _error(client.post(URL, json={"prompt": "x"}, headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")


def test_prompt_too_long() -> None:
    with TestClient(create_app(_config(max_prompt_chars=10))) as c:
        _error(c.post(URL, json={"prompt": "a" * 11}), 413, "prompt_too_long")


def test_concurrent_requests_are_batched_and_each_image_is_bitwise_its_own(client: TestClient) -> None:
    bodies = [{"prompt": f"a sign that says word{i}", "seed": 100 + i, "steps": STEPS, "n": 1 + i % 2} for i in range(3)]
    alone = [client.post(URL, json=b).json() for b in bodies]
    assert all(a["safetext"]["batch_images"] == a_n for a, a_n in zip(alone, (1, 2, 1)))
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda b: client.post(URL, json=b).json(), bodies))
    assert {t["safetext"]["batch_images"] for t in together} == {4}  # one pipeline call for all
    for a, t in zip(alone, together):
        assert [d["b64_json"] for d in t["data"]] == [d["b64_json"] for d in a["data"]]
    assert len({d["b64_json"] for t in together for d in t["data"]}) == 4  # per-image seeds differ


def test_different_settings_are_not_batched(client: TestClient) -> None:
    bodies = [{"prompt": "a cat", "seed": 1, "steps": STEPS}, {"prompt": "a dog", "seed": 1, "steps": STEPS + 1}]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda b: client.post(URL, json=b).json(), bodies))
    assert [r["safetext"]["batch_images"] for r in results] == [1, 1]


def test_internal_error_is_a_500_without_image_and_the_server_keeps_serving() -> None:
    app = create_app(_config(max_batch=4, batch_window_ms=300))
    generation = app.state.generation
    generation.guards["default"] = _Wrapped(generation.guards["default"])
    with TestClient(app) as c, ThreadPoolExecutor(2) as pool:
        bad, good = pool.map(
            lambda p: c.post(URL, json={"prompt": p, "seed": 3, "steps": STEPS}),
            ["a sign that says explode", "a sign that says fine"],
        )
        _error(bad, 500, "generation_failed")
        assert "data" not in bad.json()
        assert good.status_code == 200 and good.json()["data"]  # its batch-mate was retried alone
        assert c.post(URL, json={"prompt": "again", "steps": STEPS}).status_code == 200
        assert 'safetext_generations_dropped_total{reason="error"} 1' in c.get("/metrics").text


def test_full_queue_is_a_429_with_retry_after_and_nothing_is_lost() -> None:
    gate = threading.Event()
    app = create_app(_config(max_queue=1, max_batch=1, batch_window_ms=0, retry_after_s=3))
    generation = app.state.generation
    wrapped = generation.guards["default"] = _Wrapped(generation.guards["default"], gate)
    with TestClient(app) as c, ThreadPoolExecutor(2) as pool:
        first = pool.submit(c.post, URL, json={"prompt": "one", "steps": STEPS})
        _wait_for(lambda: wrapped.calls == 1)
        second = pool.submit(c.post, URL, json={"prompt": "two", "steps": STEPS})
        _wait_for(lambda: app.state.batcher.depth == 1)
        assert "safetext_queue_depth 1" in c.get("/metrics").text
        third = c.post(URL, json={"prompt": "three", "steps": STEPS})
        _error(third, 429, "rate_limit_exceeded")
        assert third.headers["retry-after"] == "3"
        gate.set()
        assert first.result(30).status_code == 200 and second.result(30).status_code == 200


def test_timeout_is_a_504() -> None:
    gate = threading.Event()
    app = create_app(_config(request_timeout_s=0.3, max_batch=1, batch_window_ms=0))
    generation = app.state.generation
    generation.guards["default"] = _Wrapped(generation.guards["default"], gate)
    with TestClient(app) as c:
        try:
            message = _error(c.post(URL, json={"prompt": "slow", "steps": STEPS}), 504, "timeout")
            assert "0.3 s" in message
        finally:
            gate.set()


def test_generation_metrics(client: TestClient) -> None:
    client.post(URL, json={"prompt": "metrics", "steps": STEPS})
    text = client.get("/metrics").text
    for needle in (
        "# TYPE safetext_queue_depth gauge",
        "safetext_queue_capacity 16",
        "# TYPE safetext_batch_images histogram",
        'safetext_batch_images_bucket{le="+Inf"}',
        "# TYPE safetext_generation_seconds histogram",
        'safetext_audit_outcomes_total{action="off"}',
        'safetext_requests_total{endpoint="/v1/images/generations",method="POST",status="200"}',
    ):
        assert needle in text, needle


def test_readyz_reports_the_model() -> None:
    with TestClient(create_app(_config(sizes=["16x16", "32x16"]))) as c:
        ready = c.get("/readyz").json()
        assert ready["mode"] == "generation" and ready["model"] == "tiny:sd" and ready["sizes"] == ["16x16", "32x16"]
        image = _png(c.post(URL, json={"prompt": "wide", "size": "32x16", "steps": STEPS}).json()["data"][0]["b64_json"])
        assert image.size == (32, 16)


def _wait_for(condition: Any, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_audit_outcome_per_request_and_no_batching_when_the_audit_can_act() -> None:
    app = create_app(_config(audit="block", max_batch=4, batch_window_ms=300))
    assert not app.state.generation.batchable  # a block/blur/regenerate audit acts on a whole call
    with TestClient(app) as c, ThreadPoolExecutor(2) as pool:
        bodies = [{"prompt": "a cat", "seed": 1, "steps": STEPS}, {"prompt": "a dog", "seed": 2, "steps": STEPS}]
        results = [r.json() for r in pool.map(lambda b: c.post(URL, json=b), bodies)]
        assert [r["safetext"]["batch_images"] for r in results] == [1, 1]
        for r in results:
            assert r["safetext"]["audit"]["action"] == "none" and len(r["safetext"]["audit"]["read"]) == 1
        assert 'safetext_audit_outcomes_total{action="none"} 2' in c.get("/metrics").text


@pytest.mark.slow
def test_testbed_batched_images_match_alone_to_one_level() -> None:
    """On the testbed's U-Net, CPU kernels differ by batch size: a batched image equals the
    same request alone to within one 8-bit level, not bitwise."""
    import numpy as np

    app = create_app(ServeConfig(model="testbed", policies=["testbed"], threads=1, max_batch=2, batch_window_ms=500))
    bodies = [{"prompt": 'a red sign that says "hello"', "seed": 3, "steps": 4}, {"prompt": 'a sign that says "idiot"', "seed": 4, "steps": 4}]
    with TestClient(app) as c:
        alone = [c.post(URL, json=b).json() for b in bodies]
        with ThreadPoolExecutor(2) as pool:
            together = list(pool.map(lambda b: c.post(URL, json=b).json(), bodies))
    assert [t["safetext"]["batch_images"] for t in together] == [2, 2]
    assert [a["safetext"]["decision"]["action"] for a in alone] == ["allow", "rewrite"]
    for a, t in zip(alone, together):
        x, y = (np.asarray(_png(r["data"][0]["b64_json"]), dtype=int) for r in (a, t))
        assert np.abs(x - y).max() <= 1
