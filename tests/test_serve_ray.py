"""The FastAPI app as a Ray Serve deployment on a local Ray instance: two replicas behind Ray's
HTTP proxy, both answering (gateway mode keeps the replicas fast to start)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'safetext-t2i[ray]')")
pytest.importorskip("ray.serve", reason="ray[serve] is not installed")
httpx = pytest.importorskip("httpx")

from safetext.serve import ServeConfig  # noqa: E402

pytestmark = pytest.mark.slow  # starting Ray and two replicas takes ~15-30 s on 2 cores

TOKEN = "ray-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    from ray import serve

    from safetext.serve.ray import run

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    port = _free_port()
    try:
        run(
            ServeConfig(policies=["default", "strict"], token=TOKEN),
            host="127.0.0.1",
            port=port,
            num_replicas=2,
            ray_actor_options={"num_cpus": 0.5},
        )
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def test_requests_are_routed_to_both_replicas(base: str) -> None:
    seen: set[str] = set()
    deadline = time.monotonic() + 60
    while len(seen) < 2 and time.monotonic() < deadline:
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["mode"] == "gateway"
        seen.add(ready.json()["instance"])
    assert len(seen) == 2, seen


def test_the_same_app_answers_behind_ray(base: str) -> None:
    with httpx.Client(base_url=base, timeout=10) as http:
        body = http.post("/v1/check", json={"prompt": ["a sign that says fuck", "hello"], "policy": "strict"}, headers=AUTH).json()
        assert [d["action"] for d in body["decisions"]] == ["rewrite", "allow"]
        assert http.post("/v1/check", json={"prompt": "x"}).status_code == 401
        bad = http.post("/v1/check", json={"prompt": "x", "prompts": []}, headers=AUTH)
        assert bad.status_code == 422 and "prompts" in bad.json()["error"]["message"]
        assert http.post("/v1/images/generations", json={"prompt": "x"}, headers=AUTH).json()["error"]["code"] == "no_model"
        assert "safetext_requests_total" in http.get("/metrics", headers=AUTH).text


def test_deployment_options_reach_ray() -> None:
    from safetext.serve.ray import build, deployment

    app = deployment(ServeConfig(), num_replicas=3, ray_actor_options={"num_gpus": 1})
    bound = app._bound_deployment
    assert bound.num_replicas == 3 and bound.ray_actor_options["num_gpus"] == 1
    built = build({"model": "none", "policy": "default,strict", "num_replicas": "2", "num_gpus": "1", "max_queue": "8"})._bound_deployment
    assert built.num_replicas == 2 and built.ray_actor_options == {"num_cpus": 1.0, "num_gpus": 1.0}
    (config,) = built.init_args
    assert config["policies"] == ["default", "strict"] and config["max_queue"] == 8 and config["model"] is None
