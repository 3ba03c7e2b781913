"""The same FastAPI app as a Ray Serve deployment: one app (and, with a model, one pipeline) per replica.

Ray is imported here only, inside the functions, so ``import safetext.serve`` never needs it.
Each replica builds its app with :func:`~safetext.serve.create_app` when it starts
(``__serve_build_asgi_app__``), so the model loads on the replica's own device and the
config travels as JSON, not as a pickled app. Ray's proxy routes HTTP requests across the
replicas; each replica keeps its own bounded queue, batches and 429s.

::

    python -m safetext.serve.ray --model none --num-replicas 2 --port 8000
    safetext serve --ray --model testbed --num-replicas 2 --num-gpus 1 --ray-address auto
    serve run safetext.serve.ray:build model=testbed num_replicas=2 num_gpus=1   # Ray's CLI
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from safetext.serve.config import ServeConfig

#: Name of the Ray Serve application and deployment.
APP_NAME = "safetext"


def deployment(
    config: ServeConfig,
    *,
    num_replicas: int = 1,
    ray_actor_options: dict[str, Any] | None = None,
    max_ongoing_requests: int | None = None,
) -> Any:
    """A bound Ray Serve application serving ``config`` on ``num_replicas`` replicas.

    ``ray_actor_options`` go to every replica actor (e.g. ``{"num_gpus": 1}``, ``{"num_cpus": 2}``).
    ``max_ongoing_requests`` defaults to the replica's queue plus one batch, so requests reach
    the app's own queue and its 429 instead of waiting unbounded in Ray's proxy.
    """
    from ray import serve

    ongoing = max_ongoing_requests or max(64, config.max_queue + config.max_batch)

    @serve.deployment(
        name=APP_NAME,
        num_replicas=num_replicas,
        ray_actor_options=dict(ray_actor_options or {}),
        max_ongoing_requests=ongoing,
    )
    @serve.ingress()
    class SafetextDeployment:
        """One replica: builds the app from the JSON config when Ray starts it."""

        def __init__(self, config_json: dict[str, Any]) -> None:
            self.config = ServeConfig.model_validate(config_json)

        def __serve_build_asgi_app__(self) -> Any:
            from safetext.serve.app import create_app

            return create_app(self.config)

    return SafetextDeployment.bind(config.model_dump(mode="json"))


def build(args: dict[str, str]) -> Any:
    """Application builder for Ray's own CLI and config files, e.g. on a running cluster::

        serve run safetext.serve.ray:build model=testbed num_replicas=2 num_gpus=1 max_batch=8

    ``model`` (``none`` for gateway mode), ``policy`` (comma-separated), ``num_replicas``,
    ``num_gpus`` and ``num_cpus`` (per replica) are read here; every other key is a
    :class:`ServeConfig` field (``token_file``, ``max_queue``, ``max_batch``, ``device`` ...).
    """
    options = dict(args)
    num_replicas = int(options.pop("num_replicas", 1))
    actor: dict[str, Any] = {"num_cpus": float(options.pop("num_cpus", 1))}
    gpus = float(options.pop("num_gpus", 0))
    if gpus:
        actor["num_gpus"] = gpus
    model = options.pop("model", "none")
    policies = options.pop("policy", "default").split(",")
    config = ServeConfig.model_validate({"model": None if model == "none" else model, "policies": policies, **options})
    return deployment(config, num_replicas=num_replicas, ray_actor_options=actor)


def run(
    config: ServeConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    num_replicas: int = 1,
    ray_actor_options: dict[str, Any] | None = None,
    address: str | None = None,
    num_cpus: int | None = None,
    blocking: bool = False,
) -> Any:
    """Start (or join, with ``address``) Ray, start Serve's HTTP proxy on ``host:port`` and deploy.

    Returns the deployment handle; ``blocking`` keeps the process alive until SIGINT or
    SIGTERM, then shuts Serve down.
    """
    import ray
    from ray import serve

    started = not ray.is_initialized()
    if started:
        kwargs: dict[str, Any] = {"include_dashboard": False}
        if address is not None:
            kwargs["address"] = address
        elif num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        ray.init(**kwargs)
    serve.start(http_options={"host": host, "port": port})
    handle = serve.run(
        deployment(config, num_replicas=num_replicas, ray_actor_options=ray_actor_options),
        name=APP_NAME,
        route_prefix="/",
    )
    if blocking:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        try:
            stop.wait()
        finally:
            serve.shutdown()  # replicas finish their in-flight requests, then stop
            if started:
                ray.shutdown()
    return handle


def main(argv: list[str] | None = None) -> None:
    """``python -m safetext.serve.ray``: the Ray deployment with the common options of ``safetext serve``."""
    parser = argparse.ArgumentParser(prog="python -m safetext.serve.ray", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="none", help="none (gateway), testbed, tiny:KIND or a model folder")
    parser.add_argument("--policy", action="append", help="policy to serve; repeat for more (the first is the default)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--token-file", default=None)
    parser.add_argument("--num-replicas", type=int, default=1)
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per replica")
    parser.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per replica")
    parser.add_argument("--address", default=None, help="Ray cluster address (e.g. auto); default: start a local Ray")
    parser.add_argument("--max-queue", type=int, default=16)
    parser.add_argument("--max-batch", type=int, default=4)
    args = parser.parse_args(argv)
    model = None if args.model == "none" else args.model
    config = ServeConfig(
        model=model,
        policies=args.policy or ["default"],
        token_file=args.token_file,
        max_queue=args.max_queue,
        max_batch=args.max_batch,
    )
    options: dict[str, Any] = {"num_cpus": args.num_cpus}
    if args.num_gpus:
        options["num_gpus"] = args.num_gpus
    run(
        config,
        host=args.host,
        port=args.port,
        num_replicas=args.num_replicas,
        ray_actor_options=options,
        address=args.address,
        blocking=True,
    )


if __name__ == "__main__":
    main()
