"""``safetext serve --model testbed`` as a real server process on a free loopback port, driven by
httpx: auth, every endpoint, limits, the guarded image read back by Tesseract, the 429 path,
client disconnects, and graceful shutdown on SIGTERM."""

from __future__ import annotations

import base64
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

pytestmark = pytest.mark.slow  # each server loads the testbed and generates for real

TOKEN = "proc-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
URL = "/v1/images/generations"


@dataclass
class Server:
    proc: subprocess.Popen
    base: str

    def client(self, timeout: float = 120) -> httpx.Client:
        return httpx.Client(base_url=self.base, headers=AUTH, timeout=timeout)

    def metric(self, name: str) -> float:
        text = httpx.get(f"{self.base}/metrics", headers=AUTH, timeout=10).text
        for line in text.splitlines():
            if line.split(" ")[0] == name:
                return float(line.rsplit(" ", 1)[1])
        return 0.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(tmp: Path, *options: str) -> Server:
    """Start ``safetext serve`` and wait until /readyz answers 200."""
    port = _free_port()
    token_file = tmp / "token"
    token_file.write_text(TOKEN, encoding="utf-8")
    exe = Path(sys.executable).with_name("safetext")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from safetext.cli import app; app()"]
    proc = subprocess.Popen(
        [*cmd, "serve", "--port", str(port), "--token-file", str(token_file), "--threads", "1", *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "NO_PROXY": "127.0.0.1", "OMP_NUM_THREADS": "1"},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read().decode() if proc.stderr else "server exited")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return Server(proc, base)
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server not ready within 180 s"
        time.sleep(0.2)


def stop_server(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("serve"), "--model", "testbed", "--policy", "testbed", "--policy", "strict",
        "--max-queue", "2", "--max-batch", "2", "--batch-window-ms", "50", "--max-body-bytes", "20000",
    )
    try:
        yield srv
    finally:
        stop_server(srv)


def _wait_for(condition, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_endpoints_and_auth(server: Server) -> None:
    with server.client() as http:
        assert httpx.get(f"{server.base}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{server.base}/readyz").json()
        assert ready["mode"] == "generation" and ready["sizes"] == ["256x64"] and ready["default_policy"] == "testbed"
        assert httpx.post(f"{server.base}{URL}", json={"prompt": "x"}).status_code == 401
        assert httpx.get(f"{server.base}/metrics").status_code == 401
        check = http.post("/v1/check", json={"prompt": 'a sign that says "idiot"'}).json()
        assert check["decisions"][0]["sanitized_prompt"] == 'a sign that says "angel"'
        body = http.post(URL, json={"prompt": 'a green circle that says "hello"', "steps": 4, "seed": 0}).json()
        assert body["safetext"]["decision"]["action"] == "allow" and len(body["data"]) == 1
        assert "safetext_generation_seconds_count" in http.get("/metrics").text


def test_blocked_prompt_is_a_content_policy_violation(server: Server) -> None:
    with server.client() as http:
        response = http.post(URL, json={"prompt": "a sign that says nigger", "policy": "strict", "steps": 4})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_policy_violation" and "data" not in response.json()


def test_limits(server: Server) -> None:
    with server.client() as http:
        assert http.post(URL, json={"prompt": "a" * 30000}).status_code == 413
        response = http.post(URL, json={"prompt": "x", "style": "vivid"})
        assert response.status_code == 422 and "style" in response.json()["error"]["message"]
        assert http.post(URL, json={"prompt": "x", "size": "1024x1024"}).json()["error"]["code"] == "unsupported_size"


def test_guarded_image_reads_the_benign_word(server: Server) -> None:
    from PIL import Image

    from safetext.testbed.quality import read_word

    with server.client() as http:
        body = http.post(URL, json={"prompt": 'a purple banner that says "idiot"', "seed": 0, "steps": 20}).json()
    assert body["safetext"]["decision"]["action"] == "rewrite" and body["safetext"]["patched_layers"]
    image = Image.open(io.BytesIO(base64.b64decode(body["data"][0]["b64_json"])))
    assert read_word(image) == "ANGEL"


def test_twice_the_queue_gets_200_or_429_and_none_is_lost(server: Server) -> None:
    capacity = 2 + 2  # --max-queue waiting plus one --max-batch running
    with server.client() as http, ThreadPoolExecutor(2 * capacity) as pool:
        bodies = [{"prompt": f'a red sign that says "word{i}"', "steps": 4, "seed": i} for i in range(2 * capacity)]
        responses = list(pool.map(lambda b: http.post(URL, json=b), bodies))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429} and 429 in statuses and statuses.count(200) >= 2, statuses
    for r in responses:
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1 and r.json()["error"]["code"] == "rate_limit_exceeded"
        else:
            assert len(r.json()["data"]) == 1


def test_a_client_that_disconnects_is_cancelled_before_its_generation(server: Server) -> None:
    before = server.metric('safetext_generations_dropped_total{reason="cancelled"}')
    with server.client() as http, ThreadPoolExecutor(1) as pool:
        busy = pool.submit(http.post, URL, json={"prompt": "a long one", "steps": 40, "seed": 1})
        _wait_for(lambda: server.metric("safetext_generations_running") >= 1)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.base}{URL}", json={"prompt": "impatient", "steps": 4, "n": 2}, headers=AUTH, timeout=0.5)
        _wait_for(lambda: server.metric('safetext_generations_dropped_total{reason="cancelled"}') == before + 1)
        assert busy.result(120).status_code == 200


def test_sigterm_drains_in_flight_requests(tmp_path: Path) -> None:
    srv = start_server(tmp_path, "--model", "testbed", "--max-batch", "1", "--batch-window-ms", "0")
    try:
        results: dict[str, httpx.Response] = {}

        def send(name: str, steps: int) -> None:
            with srv.client() as http:
                results[name] = http.post(URL, json={"prompt": f'a blue sign that says "{name}"', "steps": steps, "seed": 0})

        running = threading.Thread(target=send, args=("running", 40))
        running.start()
        _wait_for(lambda: srv.metric("safetext_generations_running") >= 1)
        queued = threading.Thread(target=send, args=("queued", 4))
        queued.start()
        _wait_for(lambda: srv.metric("safetext_queue_depth") >= 1)
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert running.is_alive(), "the in-flight request ended before the check of new connections"
        with pytest.raises(httpx.TransportError):  # no new connections while draining
            httpx.get(f"{srv.base}/healthz", timeout=2)
        running.join(120)
        queued.join(120)
        # uvicorn re-raises the signal once it has shut down gracefully: killed by SIGTERM, after draining.
        assert srv.proc.wait(timeout=60) in (0, -signal.SIGTERM)
        for name in ("running", "queued"):
            assert results[name].status_code == 200 and len(results[name].json()["data"]) == 1, name
    finally:
        stop_server(srv)
