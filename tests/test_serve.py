"""``safetext serve`` gateway mode: every endpoint and error path in-process, and one real server.

Generation is tested in test_serve_generation.py (in-process), test_serve_process.py (real
server processes) and test_serve_ray.py (Ray Serve)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from safetext.serve import ServeConfig, create_app  # noqa: E402

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(create_app(ServeConfig(policies=["default", "strict"], token=TOKEN, max_prompt_chars=200, max_body_bytes=4096)))


@pytest.fixture(scope="module")
def open_client() -> TestClient:
    return TestClient(create_app(ServeConfig()))


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "type"}
    assert body["error"]["code"] == code
    return body["error"]["message"]


def test_gateway_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from safetext.serve import ServeConfig, create_app\n"
        "c = TestClient(create_app(ServeConfig(policies=['default', 'strict'])))\n"
        "assert c.post('/v1/check', json={'prompt': 'a sign that says fuck'}).json()['decisions'][0]['action'] == 'rewrite'\n"
        "assert c.post('/v1/check', json={'prompt': 'x', 'policy': 'strict'}).status_code == 200\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["policies"] == ["default", "strict"]
    assert ready.json()["default_policy"] == "default"


@pytest.mark.parametrize(
    ("prompt", "action", "sanitized", "is_valid"),
    [
        ("a sign that says fuck", "rewrite", "a sign that says heck", False),
        ("a sign that says hello", "allow", "a sign that says hello", True),
    ],
)
def test_check_one_prompt(client: TestClient, prompt: str, action: str, sanitized: str, is_valid: bool) -> None:
    body = client.post("/v1/check", json={"prompt": prompt}, headers=AUTH).json()
    assert body["policy"] == "default"
    (decision,) = body["decisions"]
    assert (decision["action"], decision["sanitized_prompt"], decision["is_valid"]) == (action, sanitized, is_valid)
    assert body["decisions_2"] is None


def test_check_batch_prompt_2_and_named_policy(client: TestClient) -> None:
    body = client.post(
        "/v1/check", json={"prompt": ["a sign that says fuck", "hello"], "prompt_2": "fuck", "policy": "strict"}, headers=AUTH
    ).json()
    assert body["policy"] == "strict"
    assert [d["action"] for d in body["decisions"]] == ["rewrite", "allow"]
    assert body["decisions"][0]["spans"][0]["text"] == "fuck"
    assert body["decisions"][0]["benign_prompt"] == body["decisions"][0]["sanitized_prompt"]
    assert len(body["decisions_2"]) == 1 and body["decisions_2"][0]["action"] != "allow"


def test_unknown_field_names_the_field(client: TestClient) -> None:
    message = _error(client.post("/v1/check", json={"prompt": "x", "negative": "y"}, headers=AUTH), 422, "invalid_request")
    assert "negative" in message


def test_missing_prompt_and_wrong_type(client: TestClient) -> None:
    assert "prompt" in _error(client.post("/v1/check", json={}, headers=AUTH), 422, "invalid_request")
    _error(client.post("/v1/check", json={"prompt": 3}, headers=AUTH), 422, "invalid_request")
    _error(client.post("/v1/check", json={"prompt": []}, headers=AUTH), 400, "invalid_request")


def test_unknown_policy(client: TestClient) -> None:
    assert "nope" in _error(client.post("/v1/check", json={"prompt": "x", "policy": "nope"}, headers=AUTH), 404, "unknown_policy")


def test_prompt_too_long(client: TestClient) -> None:
    message = _error(client.post("/v1/check", json={"prompt": ["ok", "a" * 201]}, headers=AUTH), 413, "prompt_too_long")
    assert "prompt[1]" in message


def test_body_too_large(client: TestClient) -> None:
    _error(client.post("/v1/check", json={"prompt": "a" * 5000}, headers=AUTH), 413, "request_too_large")


def test_body_too_large_without_content_length(client: TestClient) -> None:
    def chunks():  # noqa: ANN202 - a generator body is sent chunked, with no Content-Length
        for _ in range(10):
            yield b"a" * 1000

    _error(client.post("/v1/check", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}), 413, "request_too_large")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}])
def test_token_required(client: TestClient, headers: dict[str, str]) -> None:
    response = client.post("/v1/check", json={"prompt": "x"}, headers=headers)
    _error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    _error(client.get("/metrics", headers=headers), 401, "unauthorized")


def test_health_open_with_token(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200


def test_no_token_configured(open_client: TestClient) -> None:
    assert open_client.post("/v1/check", json={"prompt": "hello"}).status_code == 200


def test_token_file(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("from-file\n", encoding="utf-8")
    c = TestClient(create_app(ServeConfig(token_file=path)))
    assert c.post("/v1/check", json={"prompt": "x"}, headers={"Authorization": "Bearer from-file"}).status_code == 200
    _error(c.post("/v1/check", json={"prompt": "x"}, headers=AUTH), 401, "unauthorized")


def test_config_rejects_token_and_file_and_generation_options_without_model(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        ServeConfig(token="a", token_file=tmp_path / "t")
    with pytest.raises(ValueError, match="gateway"):
        ServeConfig(audit="flag")
    with pytest.raises(ValueError, match="WIDTHxHEIGHT"):
        ServeConfig(model="tiny:sd", sizes=["16by16"])
    with pytest.raises(ValueError, match="extra"):
        ServeConfig(polices=["default"])  # type: ignore[call-arg]


def test_gateway_has_no_generation(client: TestClient) -> None:
    message = _error(client.post("/v1/images/generations", json={"prompt": "a cat"}, headers=AUTH), 404, "no_model")
    assert "--model" in message
    assert client.get("/readyz").json()["mode"] == "gateway"


def test_unknown_route_and_method(client: TestClient) -> None:
    _error(client.get("/nope"), 404, "not_found")
    _error(client.get("/v1/check", headers=AUTH), 405, "method_not_allowed")


def test_metrics(client: TestClient) -> None:
    client.post("/v1/check", json={"prompt": "a sign that says fuck"}, headers=AUTH)
    client.post("/v1/check", json={"prompt": "x", "policy": "nope"}, headers=AUTH)
    response = client.get("/metrics", headers=AUTH)
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'safetext_requests_total{endpoint="/v1/check",method="POST",status="404"}' in text
    assert 'safetext_decisions_total{policy="default",action="rewrite"}' in text
    assert 'safetext_request_duration_seconds_bucket{endpoint="/v1/check",le="+Inf"}' in text
    assert "# TYPE safetext_request_duration_seconds histogram" in text


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_real_server_process(tmp_path: Path) -> None:
    port = _free_port()
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN, encoding="utf-8")
    exe = Path(sys.executable).with_name("safetext")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from safetext.cli import app; app()"]
    proc = subprocess.Popen(
        [*cmd, "serve", "--port", str(port), "--token-file", str(token_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "NO_PROXY": "127.0.0.1"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "server exited"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not answer /healthz within 60 s"
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/readyz").status_code == 200
            body = http.post("/v1/check", json={"prompt": "a sign that says fuck"}, headers=AUTH).json()
            assert body["decisions"][0]["sanitized_prompt"] == "a sign that says heck"
            assert http.post("/v1/check", json={"prompt": "x"}).status_code == 401
            assert "safetext_requests_total" in http.get("/metrics", headers=AUTH).text
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
            raise
    assert proc.returncode is not None


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from safetext.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["serve", "--token", "a", "--token-file", str(tmp_path / "t")])
    assert result.exit_code == 2
    result = runner.invoke(app, ["serve", "--token-file", str(tmp_path / "missing")])
    assert result.exit_code == 2
    result = runner.invoke(app, ["serve", "--audit", "flag"])  # gateway mode has no generation
    assert result.exit_code == 2 and "--model" in result.output
    result = runner.invoke(app, ["serve", "--model", str(tmp_path / "no-such-model")])
    assert result.exit_code == 2 and "--model" in result.output


def test_cli_gateway_mode_loads_no_torch() -> None:
    code = (
        "import sys, uvicorn\n"
        "seen = {}\n"
        "uvicorn.run = lambda app, **kw: seen.update(app=app, **kw)\n"
        "from typer.testing import CliRunner\n"
        "from safetext.cli import app\n"
        "result = CliRunner().invoke(app, ['serve', '--model', 'none', '--policy', 'strict', '--port', '8123'])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert seen['port'] == 8123 and seen['app'].state.generation is None\n"
        "print('torch' in sys.modules, 'ray' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False False"
