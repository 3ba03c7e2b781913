"""What to inject where: :class:`InjectionConfig`, which is also the preset file format.

A preset file is one YAML mapping with the fields of :class:`InjectionConfig`::

    name: sdxl-base-1.0
    modules:                      # diffusers module names, relative to the denoiser
      - up_blocks.0.attentions.2.transformer_blocks.1.attn2
    start: 0.08                   # first patched step, as a fraction of num_inference_steps
    source: Staniszewski et al., ICLR 2025, Table 1
    notes: free text
    match:                        # optional: lets preset="auto" recognise the model
      pipelines: [StableDiffusionXLPipeline]
      component: unet
      config: {cross_attention_dim: 2048, transformer_layers_per_block: [1, 2, 10]}

The same format is used by the presets shipped in ``safetext/inject/presets/``, by a
``safetext_preset.yaml`` placed in a model folder, and by ``safetext localize`` output.
This module imports no torch, so presets can be read and written anywhere.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from safetext.errors import PresetError


class PresetMatch(BaseModel):
    """How ``preset="auto"`` recognises the model a preset was localized on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pipelines: list[str] = Field(description="Pipeline class names the preset applies to.")
    component: Literal["unet", "transformer"] = "unet"
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="Keys that must equal the component's config (lists and tuples compare equal).",
    )


class InjectionConfig(BaseModel):
    """Which attention modules get the benign prompt's text K/V, and from which step.

    Both the keys and the values of the text are swapped, as in the paper. ``start`` is a
    fraction so one preset serves any step count: the first patched step is
    ``start_step(num_steps)``. The paper's SDXL preset starts at step 4 of 50, i.e.
    ``start=0.08``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    modules: list[str] = Field(min_length=1, description="Attention module names inside the denoiser, e.g. '...attn2'.")
    start: float = Field(default=0.0, ge=0.0, lt=1.0)
    source: str = ""
    name: str | None = None
    notes: str = ""
    match: PresetMatch | None = None

    @model_validator(mode="before")
    @classmethod
    def _legacy_swap(cls, data: Any) -> Any:
        """Older preset files carry ``swap: kv``, the only swap there is; anything else is refused."""
        if isinstance(data, dict) and "swap" in data:
            data = dict(data)
            if data.pop("swap") != "kv":
                raise ValueError("swap: only 'kv' (keys and values) is supported; remove the field")
        return data

    @field_validator("modules")
    @classmethod
    def _unique(cls, modules: list[str]) -> list[str]:
        if len(set(modules)) != len(modules):
            raise ValueError("module names must be unique")
        if any(not m.strip() for m in modules):
            raise ValueError("module names must be non-empty")
        return modules

    def start_step(self, num_steps: int) -> int:
        """The first patched step index (0-based) for a run of ``num_steps`` steps.

        ``round(start * num_steps)``, clamped to the last step so a rewrite is never a
        silent no-op (rounding 0.08 * 50 gives 4, as in the paper).
        """
        if num_steps < 1:
            raise ValueError("num_steps must be >= 1")
        return min(int(math.floor(self.start * num_steps + 0.5)), num_steps - 1)

    # ------------------------------------------------------------------ files

    @classmethod
    def from_yaml(cls, path: str | Path) -> InjectionConfig:
        """Read a preset file; errors name the file and the offending field."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise PresetError(f"cannot read preset {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise PresetError(f"preset {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise PresetError(f"preset {path} must be a YAML mapping with at least 'modules'")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise PresetError(f"invalid preset {path}:\n{exc}") from exc

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Serialise as a preset file (written to ``path`` when given); returns the text."""
        data = self.model_dump(mode="json", exclude_none=True)
        if not data.get("notes"):
            data.pop("notes", None)
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_modules(cls, modules: list[str], *, start: float = 0.0) -> InjectionConfig:
        """A config from a plain list of module names (patching from step 0 by default)."""
        return cls(modules=list(modules), start=start, source="module list given by the caller")
