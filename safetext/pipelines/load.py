"""Load a diffusers pipeline from a local folder, with errors that say what is missing.

``from_pretrained`` on a half-copied folder fails deep inside a component loader with a
message about a config key. Checking ``model_index.json`` first lets us name the missing
components instead.

``--model`` values resolve here and only here (:func:`resolve_model`): a shipped name
(:data:`SHIPPED_MODELS`), a ``tiny:KIND`` spec (random weights, for code-path checks) or
a folder. Everything after loading asks the folder's model profile
(:mod:`safetext.pipelines.profile`), never the name.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetext.errors import PipelineLoadError

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

#: Names ``--model`` accepts besides folders: name -> ``"module:function"`` returning the folder.
SHIPPED_MODELS: dict[str, str] = {"testbed": "safetext.testbed:model_dir"}

#: Prefix of random-weight test pipelines: ``tiny:sd``, ``tiny:sdxl`` ... (see ``safetext.pipelines.tiny``).
TINY_PREFIX = "tiny:"


def is_tiny_spec(model: str | Path) -> bool:
    """True for ``tiny:KIND`` (a random-weight pipeline built in memory, no folder)."""
    return isinstance(model, str) and model.startswith(TINY_PREFIX)


def resolve_model(name_or_path: str | Path) -> Path:
    """The folder a ``--model`` value names: a shipped name, or a path (``~`` expanded).

    Raises :class:`PipelineLoadError` when the folder does not exist. ``tiny:`` specs have
    no folder; check :func:`is_tiny_spec` first.
    """
    if is_tiny_spec(name_or_path):
        raise PipelineLoadError(f"{name_or_path} is a random-weight test pipeline, not a folder")
    shipped = SHIPPED_MODELS.get(str(name_or_path))
    if shipped is not None:
        module, _, attr = shipped.partition(":")
        try:
            return Path(getattr(importlib.import_module(module), attr)())
        except FileNotFoundError as exc:  # the shipped weights are not installed
            raise PipelineLoadError(str(exc)) from exc
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        names = ", ".join(repr(n) for n in SHIPPED_MODELS)
        what = "is a file, not a model folder" if path.exists() else "not found"
        raise PipelineLoadError(f"model folder {what}: {path} (pass a local diffusers folder or one of {names})")
    return path


def check_model_folder(path: Path) -> None:
    """Raise :class:`PipelineLoadError` unless ``path`` holds a complete diffusers pipeline.

    Cheap (reads ``model_index.json`` only), so callers can run it before anything slow.
    """
    if not (path / "model_index.json").is_file():
        raise PipelineLoadError(
            f"{path} is not a diffusers pipeline folder: model_index.json is missing "
            "(save one with pipe.save_pretrained(folder))"
        )
    missing = missing_components(path)
    if missing:
        raise PipelineLoadError(f"incomplete model folder {path}: missing component(s) {', '.join(missing)}")


def check_model(model: str | Path) -> None:
    """Validate a ``--model`` value without loading weights (a ``tiny:`` spec: its kind)."""
    if is_tiny_spec(model):
        kind = str(model)[len(TINY_PREFIX) :]
        from safetext.pipelines.tiny import TINY_KINDS

        if kind not in TINY_KINDS:
            raise PipelineLoadError(f"unknown tiny pipeline kind {kind!r} in {model!r}; choose one of {', '.join(TINY_KINDS)}")
        return
    check_model_folder(resolve_model(model))


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
    index_file = path / "model_index.json"
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise PipelineLoadError(f"{index_file}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineLoadError(f"{index_file}: cannot read: {exc}") from None
    if not isinstance(index, dict):
        raise PipelineLoadError(f"{index_file}: expected a JSON object of component -> [library, class]")
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

    ``path_or_name`` is anything :func:`resolve_model` accepts (``"testbed"``: the small
    text-rendering model that ships with safetext), or ``tiny:KIND`` (random weights). A
    missing folder, a missing or corrupt ``model_index.json`` or missing component folders
    raise :class:`PipelineLoadError` naming what is wrong.

    ``dtype`` defaults to the profile's ``dtype``, else float32 on the CPU (half-precision
    weights do not run there) and the stored precision elsewhere.
    """
    import torch

    check_model(path_or_name)
    path = None if is_tiny_spec(path_or_name) else resolve_model(path_or_name)
    if dtype is None and path is not None:
        from safetext.pipelines.profile import load_profile

        profile = load_profile(path)
        if profile is not None and profile.dtype is not None:
            dtype = getattr(torch, profile.dtype)
    if dtype is None and (device is None or str(device) == "cpu"):
        dtype = torch.float32
    if path is None:
        from safetext.pipelines.tiny import build_tiny_pipeline

        return build_tiny_pipeline(str(path_or_name)[len(TINY_PREFIX) :]).to(device=device, dtype=dtype)
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
