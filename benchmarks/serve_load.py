"""Load on ``safetext serve`` over loopback: check latency, backpressure, dynamic batching.

Starts real server processes on free 127.0.0.1 ports (never another address) and drives
them with httpx. Every phase is bounded in request count and in time:

1. ``/v1/check`` at 32 concurrent clients (gateway mode): throughput and client-side
   latency percentiles (target p99 <= 10 ms), plus the server's own latency histogram.
2. Generation at 2x the queue capacity (testbed): every request must be 200 or 429, none
   lost, hung or 500.
3. Dynamic batching vs one at a time, 8 concurrent clients (testbed): images/s with
   ``--max-batch 8`` against ``--max-batch 1``.

The client and the server share the machine, so on a small CPU the client's own work is in
the latencies. ::

    python benchmarks/serve_load.py                    # testbed, 4 steps, ~2-3 min on 2 cores
    python benchmarks/serve_load.py --steps 8 --check-requests 8000

Writes ``benchmarks/results/serve_load.json`` and ``serve_load.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).resolve().parent / "results"
URL = "/v1/images/generations"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``safetext serve`` in a child process on a free loopback port."""

    def __init__(self, *options: str, ready_s: float = 180) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).with_name("safetext")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from safetext.cli import app; app()"]
        self.proc = subprocess.Popen(
            [*cmd, "serve", "--host", "127.0.0.1", "--port", str(self.port), *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "NO_PROXY": "127.0.0.1", "OMP_NUM_THREADS": "1"},
        )
        deadline = time.monotonic() + ready_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read().decode() if self.proc.stderr else "server exited")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server not ready within {ready_s} s")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _server_p99(metrics: str, endpoint: str) -> float | None:
    """Upper bound of the histogram bucket holding the server-side p99 (seconds)."""
    buckets: list[tuple[float, int]] = []
    for line in metrics.splitlines():
        prefix = f'safetext_request_duration_seconds_bucket{{endpoint="{endpoint}",le="'
        if line.startswith(prefix):
            bound = line[len(prefix) :].split('"', 1)[0]
            buckets.append((float("inf") if bound == "+Inf" else float(bound), int(float(line.rsplit(" ", 1)[1]))))
    if not buckets:
        return None
    total = buckets[-1][1]
    return next(bound for bound, count in buckets if count >= 0.99 * total)


class _Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol for JSON posts.

    Why not httpx here: at 32 concurrent clients its per-request cost on a small CPU is
    larger than the server's, so the client, not the server, would be measured.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, host: str, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, f"{host}:{port}")

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        return int(status_line.split()[1]), payload

    def close(self) -> None:
        self.writer.close()


async def _check_load(host: str, port: int, clients: int, requests: int, max_s: float) -> dict[str, Any]:
    prompts = ["a storefront with a sign that says hello", 'a red sign that says "idiot"', "a cat on a bicycle"]
    bodies = [json.dumps({"prompt": p}).encode() for p in prompts]
    latencies: list[float] = []
    errors = 0
    connections = [await _Connection.open(host, port) for _ in range(clients)]  # opened before timing
    per_client = requests // clients
    stop = time.monotonic() + max_s

    async def client(i: int) -> None:
        nonlocal errors
        for j in range(per_client):
            if time.monotonic() > stop:
                return
            began = time.perf_counter()
            status, payload = await connections[i].post("/v1/check", bodies[(i + j) % len(bodies)])
            latencies.append(time.perf_counter() - began)
            errors += status != 200 or b'"decisions"' not in payload

    began = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    wall = time.perf_counter() - began
    for connection in connections:
        connection.close()
    server_p99 = _server_p99(httpx.get(f"http://{host}:{port}/metrics", timeout=10).text, "/v1/check")
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "wall_s": round(wall, 3),
        "throughput_rps": round(len(latencies) / wall, 1),
        "p50_ms": round(1000 * _percentile(latencies, 0.50), 2),
        "p99_ms": round(1000 * _percentile(latencies, 0.99), 2),
        "server_p99_bucket_ms": None if server_p99 is None else round(1000 * server_p99, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def _generate(base: str, body: dict[str, Any], timeout: float) -> tuple[int, float, int]:
    began = time.perf_counter()
    try:
        response = httpx.post(f"{base}{URL}", json=body, timeout=timeout)
    except httpx.TimeoutException:
        return -1, time.perf_counter() - began, 0  # hung
    images = len(response.json().get("data", [])) if response.status_code == 200 else 0
    return response.status_code, time.perf_counter() - began, images


def _overload(model: str, steps: int, max_queue: int, max_batch: int, rounds: int) -> dict[str, Any]:
    capacity = max_queue + max_batch  # waiting plus one running batch
    sent = 2 * capacity
    statuses: list[int] = []
    with Server("--model", model, "--threads", "1", "--max-queue", str(max_queue), "--max-batch", str(max_batch)) as server:
        with ThreadPoolExecutor(sent) as pool:
            for r in range(rounds):
                bodies = [{"prompt": f'a red sign that says "w{r}x{i}"', "steps": steps, "seed": i} for i in range(sent)]
                statuses += [s for s, _, _ in pool.map(lambda b: _generate(server.base, b, 300), bodies)]
    counts = {str(code): statuses.count(code) for code in sorted(set(statuses))}
    return {
        "max_queue": max_queue,
        "max_batch": max_batch,
        "concurrent": sent,
        "rounds": rounds,
        "statuses": counts,
        "ok": set(statuses) <= {200, 429},
    }


def _batching(model: str, steps: int, clients: int, per_client: int, max_batch: int) -> dict[str, Any]:
    out: dict[str, Any] = {"clients": clients, "requests": clients * per_client, "steps": steps}
    for label, batch in (("one_at_a_time", 1), ("batched", max_batch)):
        options = ["--model", model, "--threads", "1", "--max-batch", str(batch), "--max-queue", str(2 * clients)]
        with Server(*options, "--batch-window-ms", "20") as server:
            _generate(server.base, {"prompt": "warm up", "steps": steps}, 300)

            def client(i: int) -> list[tuple[int, float, int]]:
                return [
                    _generate(server.base, {"prompt": f'a blue sign that says "c{i}r{j}"', "steps": steps, "seed": j}, 300)
                    for j in range(per_client)
                ]

            began = time.perf_counter()
            with ThreadPoolExecutor(clients) as pool:
                results = [r for rs in pool.map(client, range(clients)) for r in rs]
            wall = time.perf_counter() - began
            metrics = httpx.get(f"{server.base}/metrics", timeout=10).text
        calls = next((float(line.split()[1]) for line in metrics.splitlines() if line.startswith("safetext_batch_images_count")), 0.0)
        images = sum(n for _, _, n in results)
        out[label] = {
            "max_batch": batch,
            "statuses": sorted({s for s, _, _ in results}),
            "images": images,
            "wall_s": round(wall, 2),
            "images_per_s": round(images / wall, 3),
            "p50_latency_s": round(statistics.median(t for _, t, _ in results), 2),
            "pipeline_calls": int(calls) - 1,  # less the warm-up call
        }
    out["speedup"] = round(out["batched"]["images_per_s"] / out["one_at_a_time"]["images_per_s"], 2)
    return out


def _markdown(report: dict[str, Any]) -> str:
    c, o, b = report["check"], report["overload"], report["batching"]
    lines = [
        "# `safetext serve` under load (loopback)",
        "",
        f"Measured by `python benchmarks/serve_load.py` on {report['machine']}; client and server share the CPU. "
        f"Model: `{report['model']}`, {b['steps']} denoising steps, one torch thread per server.",
        "",
        "## `/v1/check`, gateway mode",
        "",
        "| clients | requests | errors | throughput | p50 | p99 | server p99 (bucket) |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {r['clients']} | {r['requests']} | {r['errors']} | {r['throughput_rps']} req/s | {r['p50_ms']} ms | "
            f"{r['p99_ms']} ms | <= {r['server_p99_bucket_ms']} ms |"
            for r in report["check_levels"]
        ),
        "",
        "Client: raw keep-alive HTTP/1.1 connections on asyncio, one per client, in one process.",
        "Server p99 is the upper bound of the server's own latency histogram bucket (inside the app).",
        f"1-minute load average during the {c['clients']}-client run: {c['load_avg_1m']}.",
        "",
        f"Target p99 <= 10 ms at {c['clients']} clients: {'met' if c['p99_ms'] <= 10 else 'not met'} "
        "(client-side, including the client's own time).",
        "",
        "## Generation at 2x the queue capacity",
        "",
        f"`--max-queue {o['max_queue']} --max-batch {o['max_batch']}`, {o['concurrent']} concurrent requests, "
        f"{o['rounds']} rounds: statuses {o['statuses']}. Only 200 or 429 (none lost, hung or 500): {'yes' if o['ok'] else 'NO'}.",
        "",
        f"## Dynamic batching, {b['clients']} concurrent clients, {b['requests']} requests",
        "",
        "| server | pipeline calls | images | wall | images/s | median latency |",
        "|---|---|---|---|---|---|",
    ]
    for label in ("one_at_a_time", "batched"):
        r = b[label]
        lines.append(
            f"| `--max-batch {r['max_batch']}` | {r['pipeline_calls']} | {r['images']} | {r['wall_s']} s | "
            f"{r['images_per_s']} | {r['p50_latency_s']} s |"
        )
    lines += ["", f"Batched over one at a time: {b['speedup']}x images/s.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="testbed")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--check-requests", type=int, default=3200)
    parser.add_argument("--check-clients", default="1,8,32", help="comma-separated concurrency levels (the last is the target's)")
    parser.add_argument("--max-s", type=float, default=60.0, help="time bound of the check phase")
    parser.add_argument("--per-client", type=int, default=3, help="generation requests per client in the batching phase")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    checks = []
    for clients in [int(c) for c in args.check_clients.split(",")]:
        with Server() as gateway:  # a fresh server per level, so each histogram is its own
            checks.append(asyncio.run(_check_load("127.0.0.1", gateway.port, clients, args.check_requests, args.max_s)))
        print("check", checks[-1], flush=True)
    check = checks[-1]
    overload = _overload(args.model, args.steps, max_queue=4, max_batch=2, rounds=2)
    print("overload", overload, flush=True)
    batching = _batching(args.model, args.steps, clients=8, per_client=args.per_client, max_batch=8)
    print("batching", batching, flush=True)
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        "model": args.model,
        "check": check,
        "check_levels": checks,
        "overload": overload,
        "batching": batching,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve_load.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "serve_load.md").write_text(_markdown(report))
    print(_markdown(report))
    if not overload["ok"] or check["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
