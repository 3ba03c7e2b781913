"""Load a diffusers pipeline from a local folder, with errors that say what is missing.

``from_pretrained`` on a half-copied folder fails deep inside a component loader with a
message about a config key. Checking ``model_index.json`` first lets us name the missing
components instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from diffusers import DiffusionPipeline

#: Files any one of which marks a component folder as present.
_COMPONENT_MARKERS = (
    "config.json",
    "scheduler_config.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "tokenizer.json",
    "vocab.json",
    "spiece.model",
)


class PipelineLoadError(RuntimeError):
    """A model folder is missing, incomplete or cannot be loaded."""


@contextmanager
def loading_bars() -> Iterator[None]:
    """diffusers' "Loading pipeline components" bar off while ``HF_HUB_DISABLE_PROGRESS_BARS`` is set.

    Why: the hub and transformers honour that variable, diffusers' loading bar does not, so
    ``safetext``'s quiet CLI (which sets it) still printed one bar per load.
    """
    from diffusers.utils import logging as diffusers_logging

    quiet = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "").strip().lower() in ("1", "true", "yes", "on")
    was = diffusers_logging.is_progress_bar_enabled()
    if quiet:
        diffusers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and was:
            diffusers_logging.enable_progress_bar()


def missing_components(path: Path) -> list[str]:
    """Names of the components that ``model_index.json`` lists but the folder lacks."""
    index = json.loads((path / "model_index.json").read_text())
    missing = []
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, list) or len(spec) != 2 or spec[0] is None:
            continue  # config entries and optional components saved as None
        folder = path / name
        if not folder.is_dir() or not any((folder / marker).exists() for marker in _COMPONENT_MARKERS):
            missing.append(name)
    return missing


def load_pipeline(
    path_or_name: str | Path,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> DiffusionPipeline:
    """Load a pipeline from a local diffusers folder, never from the network.

    ``"testbed"`` loads the small text-rendering model that ships with safetext
    (``safetext.testbed.load``). Any other value must be a folder written by
    ``save_pretrained``; a missing folder, a missing ``model_index.json`` or missing
    component folders raise :class:`PipelineLoadError` naming what is absent.

    ``dtype`` defaults to float32 on the CPU (half-precision weights do not run there) and
    to the stored precision elsewhere.
    """
    if dtype is None and (device is None or str(device) == "cpu"):
        import torch

        dtype = torch.float32
    if str(path_or_name) == "testbed":
        from safetext import testbed  # lazy: the lead's module, heavy imports

        pipe = testbed.load(device=str(device) if device is not None else None, dtype=dtype)
    else:
        path = Path(path_or_name).expanduser()
        if not path.is_dir():
            raise PipelineLoadError(f"model folder not found: {path} (pass a local diffusers folder or 'testbed')")
        if not (path / "model_index.json").is_file():
            raise PipelineLoadError(
                f"{path} is not a diffusers pipeline folder: model_index.json is missing "
                "(save one with pipe.save_pretrained(folder))"
            )
        missing = missing_components(path)
        if missing:
            raise PipelineLoadError(f"incomplete model folder {path}: missing component(s) {', '.join(missing)}")
        from diffusers import DiffusionPipeline

        kwargs: dict[str, Any] = {"local_files_only": True}
        if dtype is not None:
            kwargs["dtype"] = dtype
        try:
            with loading_bars():
                pipe = DiffusionPipeline.from_pretrained(str(path), **kwargs)
        except Exception as exc:  # noqa: BLE001 - re-raised with the folder named
            raise PipelineLoadError(f"could not load the pipeline in {path}: {exc}") from exc
        if device is not None:
            pipe = pipe.to(device)
    return pipe
