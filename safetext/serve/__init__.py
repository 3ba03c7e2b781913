"""``safetext serve``: the policy check behind HTTP (gateway mode, no torch).

:func:`create_app` builds the one FastAPI app from a :class:`ServeConfig`, so tests run it
in-process and the CLI runs the same app under uvicorn.
"""

from safetext.serve.app import ServeConfig, ServeError, create_app

__all__ = ["ServeConfig", "ServeError", "create_app"]
