"""Package attributes imported on first use (PEP 562), so the light imports stay light."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(module: str, table: Mapping[str, str | tuple[str, str]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``module``: each name of ``table`` is imported on first use
    from the module it names (``"pkg.mod"``, or ``("pkg.mod", "attr")`` for another name
    there) and kept in ``module``'s namespace, so later lookups cost nothing."""

    def __getattr__(name: str) -> Any:
        where = table.get(name)
        if where is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        source, attr = (where, name) if isinstance(where, str) else where
        value = getattr(importlib.import_module(source), attr)
        setattr(sys.modules[module], name, value)
        return value

    return __getattr__
