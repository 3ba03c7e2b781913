"""Checks of command-line values that run before any model is loaded.

Why: a mistake found after minutes of loading and generating (an ``--out`` that is a file,
a device the machine lacks) wastes the run. Each check raises :class:`ArgumentError`
naming the option; ``safetext.cli`` prints it as one ``error: ...`` line and exits 2
(``--verbose``: with its traceback). Only :func:`device` imports torch, so
``safetext check`` stays light.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetext.errors import SafetextError

if TYPE_CHECKING:  # pragma: no cover
    from safetext.pipelines.profile import ModelProfile

#: Largest seed a torch generator takes (``manual_seed`` wants 0 .. 2**64 - 1).
MAX_SEED = 2**64 - 1

DTYPES = ("auto", "float32", "float16", "bfloat16")


class ArgumentError(SafetextError, ValueError):
    """A command-line value that cannot work; the message starts with the option's name."""


def _bad(message: str, option: str) -> ArgumentError:
    return ArgumentError(f"{option}: {message}")


def seed(value: int, option: str = "--seed", *, count: int = 1) -> int:
    """``value`` .. ``value + count - 1`` must all be torch generator seeds."""
    if value < 0 or value + count - 1 > MAX_SEED:
        span = f" (and the {count - 1} after it)" if count > 1 else ""
        raise _bad(f"{value}{span} is outside 0..{MAX_SEED}, the range torch generators take", option)
    return value


def device(value: str | None, option: str = "--device") -> str | None:
    """A torch device string whose device is present (None: the command's default)."""
    if value is None:
        return None
    import torch

    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError, TypeError):
        raise _bad(f"{value!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps)", option) from None
    if dev.type == "cpu":
        return value
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise _bad(f"{value!r}: CUDA is not available here (torch.cuda.is_available() is False); use cpu", option)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise _bad(f"{value!r}: only {torch.cuda.device_count()} CUDA device(s) here", option)
        return value
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise _bad(f"{value!r}: MPS is not available here (torch.backends.mps.is_available() is False); use cpu", option)
        return value
    backend = getattr(torch, dev.type, None)
    available = getattr(backend, "is_available", None)
    if not callable(available) or not available():
        raise _bad(f"{value!r}: device type {dev.type!r} is not available here", option)
    return value


def dtype(value: str, option: str = "--dtype") -> str:
    """One of :data:`DTYPES`."""
    if value not in DTYPES:
        raise _bad(f"{value!r} is not one of {', '.join(DTYPES)}", option)
    return value


def _writable_ancestor(path: Path, option: str, shown: Path | None = None) -> None:
    """The deepest existing ancestor of ``path`` (or ``path``) must be a writable folder."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise _bad(f"cannot create {shown or path}: {probe} is a file, not a folder", option)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise _bad(f"cannot write to {probe} (permission denied)", option)


def out_dir(path: Path, option: str = "--out") -> Path:
    """An output folder: absent (it is created later) or an existing writable folder."""
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise _bad(f"{path} is a file, not a folder", option)
    _writable_ancestor(path, option)
    return path


def out_file(path: Path, option: str = "--out") -> Path:
    """An output file: not a folder, and its folder can be created or written."""
    path = path.expanduser()
    if path.is_dir():
        raise _bad(f"{path} is a folder; give a file name (e.g. {path / 'preset.yaml'})", option)
    _writable_ancestor(path.parent, option, shown=path)
    return path


def in_file(path: Path, option: str) -> Path:
    """An input file that exists and can be read."""
    path = path.expanduser()
    if not path.exists():
        raise _bad(f"{path} not found", option)
    if not path.is_file():
        raise _bad(f"{path} is not a file", option)
    if not os.access(path, os.R_OK):
        raise _bad(f"cannot read {path} (permission denied)", option)
    return path


def audit_mode(value: str | None, option: str = "--audit") -> str | None:
    """One of the audit modes (None: the policy's setting)."""
    from safetext.audit.config import AUDIT_MODES

    if value is not None and value not in AUDIT_MODES:
        raise _bad(f"{value!r} is not an audit mode; choose one of {', '.join(AUDIT_MODES)}", option)
    return value


def prompt(value: str, option: str = "PROMPT") -> str:
    """A prompt that is not empty or blank."""
    if not value.strip():
        raise _bad("the prompt is empty", option)
    return value


def model(value: str, option: str = "--model") -> ModelProfile | None:
    """Check a ``--model`` value without loading weights; its profile (None: a generic model)."""
    from safetext.errors import ModelProfileError, PipelineLoadError
    from safetext.pipelines.load import check_model
    from safetext.pipelines.profile import profile_for

    try:
        check_model(value)
        return profile_for(value)
    except (PipelineLoadError, ModelProfileError) as exc:
        raise _bad(str(exc), option) from None


def reader(value: str, profile: ModelProfile, option: str = "--ocr") -> Any:
    """The OCR word reader ``value`` names; ``auto`` is the profile's (its errors name the profile file)."""
    from safetext.localize.scoring import get_reader
    from safetext.pipelines.profile import is_import_path

    if value == "auto":
        if is_import_path(profile.reader):
            return profile.resolve("reader")
        try:
            return get_reader(profile.reader)
        except ValueError as exc:
            from safetext.errors import ModelProfileError

            raise ModelProfileError(f"{profile.source or 'model profile'}: reader: {exc}") from None
    try:
        return get_reader(value)
    except ValueError as exc:  # an unknown engine name or a bad import path
        raise _bad(str(exc), option) from None


def policy(value: str, option: str = "--policy") -> Any:
    """A ready ``PolicyEngine`` for ``value`` (a shipped name or a file)."""
    from safetext.errors import ClassifierError, PolicyError
    from safetext.policy import PolicyEngine

    try:
        return PolicyEngine(value)
    except PolicyError as exc:
        raise _bad("invalid policy: " + "; ".join(str(exc).splitlines()), option) from None
    except ClassifierError as exc:
        raise _bad(f"policy classifier unavailable: {exc}", option) from None


def preset(value: str, option: str = "--preset") -> str:
    """``auto``, a packaged preset name, or a preset file that parses (whether it fits the
    model is known only once the model is loaded)."""
    if value == "auto":
        return value
    from safetext.errors import PresetError
    from safetext.inject.config import InjectionConfig
    from safetext.inject.presets import builtin_presets

    path = Path(value).expanduser()
    if path.is_file():
        try:
            InjectionConfig.from_yaml(path)
        except PresetError as exc:
            raise _bad(str(exc), option) from None
        return value
    names = builtin_presets()
    if value not in names:
        raise _bad(f"no preset file or packaged preset named {value!r} (packaged: {', '.join(names)})", option)
    return value


def module_list(value: str, option: str = "--preset") -> str:
    """``auto`` or comma-separated module names (at least one)."""
    if not [m for m in value.split(",") if m.strip()]:
        raise _bad("give 'auto' or comma-separated module names", option)
    return value


def thresholds(path: Path | None, option: str = "--thresholds") -> Path | None:
    """A bench bounds file that exists and parses."""
    if path is None:
        return None
    import yaml

    from safetext.bench.gate import load_thresholds

    in_file(path, option)
    try:
        load_thresholds(path)
    except yaml.YAMLError as exc:
        raise _bad(f"{path}: invalid YAML: {getattr(exc, 'problem', None) or exc}", option) from None
    except (ValueError, AttributeError, TypeError) as exc:
        raise _bad(str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}", option) from None
    return path
