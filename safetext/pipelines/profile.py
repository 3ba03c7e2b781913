"""Model profiles: what general code needs to know about one model, read from its folder.

A model folder (next to ``model_index.json``) may carry ``safetext_model.yaml``::

    name: safetext-testbed              # reports, and the default name of localized presets
    generation: {num_inference_steps: 20, guidance_scale: 4.0}   # call defaults
    dtype: float32                      # precision when the caller names none
    policy: testbed                     # the policy benchmarks and the demo default to
    reader: safetext.testbed.quality:read_words   # OCR: an engine name or "pkg.module:function"
    pairs: safetext.testbed.pairs:testbed_pairs   # (n, seed) -> list[PromptPair] for localize
    prompt_tag: testbed                 # the tag `safetext bench` keeps by default

Every field is optional. Why a file rather than code: the CLI, the benchmarks and the
localizer treat every model alike and ask the profile, so a new model needs a folder, not
a patch to safetext. A folder without the file is a generic model (:data:`GENERIC`):
generation defaults from the pipeline's own ``__call__``, Tesseract, the generic prompt
pairs, the ``default`` policy, every prompt.

Nothing here imports torch.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from safetext.errors import ModelProfileError

#: File name of a model folder's profile.
MODEL_PROFILE_FILE = "safetext_model.yaml"

_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_ENGINE_NAME = re.compile(r"^[a-z][a-z0-9_-]*$")

Scalar = Union[bool, int, float, str, None]


class ModelProfile(BaseModel):
    """One model's defaults. Unset fields mean "as for a generic model"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, description="Model name for reports and localized presets.")
    generation: dict[str, Scalar] = Field(default_factory=dict, description="Pipeline call defaults.")
    dtype: Literal["float32", "float16", "bfloat16"] | None = Field(
        None, description="Precision to load in when the caller names none (default: float32 on CPU, stored elsewhere)."
    )
    policy: str = Field("default", description="Policy name or file benchmarks and the demo default to.")
    reader: str = Field("tesseract", description="OCR engine name, 'none', or 'pkg.module:function'.")
    pairs: str = Field("safetext.localize.pairs:make_pairs", description="'pkg.module:function' (n, seed) -> pairs.")
    prompt_tag: str | None = Field(None, description="Prompt-set tag `safetext bench` keeps by default.")

    _source: Path | None = PrivateAttr(None)

    @field_validator("generation")
    @classmethod
    def _keyword_names(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        bad = [key for key in value if not key.isidentifier()]
        if bad:
            raise ValueError(f"keys must be pipeline keyword names, not {bad}")
        return value

    @field_validator("reader")
    @classmethod
    def _reader_form(cls, value: str) -> str:
        if not (_IMPORT_PATH.match(value) or _ENGINE_NAME.match(value)):
            raise ValueError(f"expected an OCR engine name or 'pkg.module:function', not {value!r}")
        return value

    @field_validator("pairs")
    @classmethod
    def _pairs_form(cls, value: str) -> str:
        if not _IMPORT_PATH.match(value):
            raise ValueError(f"expected 'pkg.module:function', not {value!r}")
        return value

    @property
    def source(self) -> Path | None:
        """The file this profile was read from (None for :data:`GENERIC`)."""
        return self._source

    def resolve(self, field: str) -> Any:
        """The object named by an import-path field (``reader`` or ``pairs``), imported now."""
        value = getattr(self, field)
        where = f"{self._source or 'model profile'}: {field}"
        return import_object(value, where=where)


#: The profile of a model folder without ``safetext_model.yaml``.
GENERIC = ModelProfile()


def is_import_path(value: str) -> bool:
    """True for ``"pkg.module:attr"`` strings."""
    return bool(_IMPORT_PATH.match(value))


def import_object(path: str, *, where: str = "import path") -> Any:
    """The object ``"pkg.module:attr"`` names; :class:`ModelProfileError` naming ``where`` if it fails."""
    if not _IMPORT_PATH.match(path):
        raise ModelProfileError(f"{where}: expected 'pkg.module:function', not {path!r}")
    module_name, _, attr = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelProfileError(f"{where}: cannot import {module_name!r} ({exc})") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelProfileError(f"{where}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def load_profile(folder: str | Path) -> ModelProfile | None:
    """The profile in ``folder``, or None when the folder has no ``safetext_model.yaml``."""
    path = Path(folder) / MODEL_PROFILE_FILE
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelProfileError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ModelProfileError(f"{path}{line}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ModelProfileError(f"{path}: a model profile must be a YAML mapping")
    try:
        profile = ModelProfile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<top>'}: {e['msg']}" for e in exc.errors())
        raise ModelProfileError(f"{path}: {problems}") from None
    profile._source = path
    return profile


def profile_of(pipe: Any) -> ModelProfile | None:
    """The profile in the folder ``pipe`` was loaded from, or None (a generic model)."""
    from safetext.inject.presets import model_folders

    for folder in model_folders(pipe):
        found = load_profile(folder)
        if found is not None:
            return found
    return None


def profile_for(model: str | Path) -> ModelProfile | None:
    """The profile of a ``--model`` value: a shipped name or a folder (None for ``tiny:`` specs).

    Raises :class:`~safetext.errors.PipelineLoadError` for a name that is neither.
    """
    from safetext.pipelines.load import is_tiny_spec, resolve_model

    if is_tiny_spec(model):
        return None
    return load_profile(resolve_model(model))
