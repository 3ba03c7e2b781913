"""``safetext serve``: the policy check and guarded generation behind HTTP.

:func:`create_app` builds the one FastAPI app from a :class:`ServeConfig`, so tests run it
in-process, the CLI runs it under uvicorn and :mod:`safetext.serve.ray` runs it as a Ray
Serve deployment. Gateway mode (``model=None``) imports no torch.
"""

from safetext.serve.app import create_app
from safetext.serve.config import ServeConfig, ServeError

__all__ = ["ServeConfig", "ServeError", "create_app"]
