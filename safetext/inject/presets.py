"""Find the injection preset for a pipeline.

``resolve_preset(pipe, preset)`` accepts:

* ``"auto"``: first a ``safetext_preset.yaml`` in the pipeline's local model folder (a
  model can ship its own localization), then the packaged presets whose ``match`` fits
  the pipeline class and denoiser config. Anything else raises
  :class:`UnsupportedArchitectureError`, which names ``safetext localize`` (PixArt, Sana,
  FLUX, SD3.5: injection works, no layers are measured) or says why safetext cannot inject at all.
* a packaged preset name (``"sdxl-base-1.0"``, ``"sd3-medium"``, ``"if-i-xl-v1.0"``);
* a path to a preset YAML file;
* a list of module names (patched from step 0);
* an :class:`~safetext.inject.config.InjectionConfig`.
"""

from __future__ import annotations


from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from safetext.errors import InjectionError, PresetError, UnsupportedArchitectureError
from safetext.inject.config import InjectionConfig, PresetMatch

#: File name a model folder may carry to declare its own localized layers.
MODEL_PRESET_FILE = "safetext_preset.yaml"

LOCALIZE_HINT = (
    "Localize its text-rendering layers with `safetext localize --model PATH` and pass the "
    "preset it writes (preset='path/to/preset.yaml'), or pass preset=[module names]."
)


def builtin_presets() -> dict[str, InjectionConfig]:
    """The presets packaged in ``safetext/inject/presets``, by name."""
    found: dict[str, InjectionConfig] = {}
    folder = resources.files("safetext.inject") / "presets"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            with resources.as_file(entry) as path:
                config = InjectionConfig.from_yaml(path)
            found[config.name or entry.name.removesuffix(".yaml")] = config
    return found


def _norm(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return value


def matches(config: InjectionConfig | KnownArchitecture, pipe: Any) -> bool:
    """True when ``config.match`` fits the pipeline class and its denoiser config."""
    match = config.match
    if match is None or type(pipe).__name__ not in match.pipelines:
        return False
    component = getattr(pipe, match.component, None)
    model_config = getattr(component, "config", None)
    if model_config is None:
        return False
    return all(_norm(model_config.get(key)) == _norm(value) for key, value in match.config.items())


def model_folders(pipe: Any) -> list[Path]:
    """Local folders the pipeline (or its denoiser) was loaded from."""
    names: list[Any] = [getattr(pipe, "name_or_path", None)]
    config = getattr(pipe, "config", None)
    if config is not None:
        names.append(config.get("_name_or_path"))
    for component in ("unet", "transformer"):
        sub = getattr(getattr(pipe, component, None), "config", None)
        if sub is not None and sub.get("_name_or_path"):
            names.append(Path(str(sub.get("_name_or_path"))).parent)
    folders: list[Path] = []
    for name in names:
        if name and Path(str(name)).is_dir() and Path(str(name)) not in folders:
            folders.append(Path(str(name)))
    return folders


class KnownArchitecture(NamedTuple):
    """A model ``"auto"`` recognises (``match``, as in a preset) but has no measured layers for."""

    name: str
    notes: str
    match: PresetMatch


def _known(name: str, notes: str, **config: Any) -> KnownArchitecture:
    return KnownArchitecture(name, notes, PresetMatch(pipelines=["StableDiffusion3Pipeline"], component="transformer", config=config))


#: Architectures ``"auto"`` recognises but ships no measured preset for: it names them and
#: points to ``safetext localize`` instead of borrowing a preset of a different model.
KNOWN_UNMEASURED: tuple[KnownArchitecture, ...] = (
    _known(
        "SD3.5 large",
        "38 joint blocks of width 2432 with RMS qk-norm",
        num_layers=38, num_attention_heads=38, caption_projection_dim=2432, qk_norm="rms_norm",
    ),
    _known(
        "SD3.5 medium",
        "24 joint blocks with RMS qk-norm and dual attention in blocks 0-12",
        num_layers=24, num_attention_heads=24, caption_projection_dim=1536, qk_norm="rms_norm",
    ),
)


def auto_preset(pipe: Any) -> InjectionConfig:
    """The preset for ``pipe``: the model folder's own file first, then the packaged ones."""
    for folder in model_folders(pipe):
        if (folder / MODEL_PRESET_FILE).is_file():
            return InjectionConfig.from_yaml(folder / MODEL_PRESET_FILE)
    presets = builtin_presets()
    for config in presets.values():
        if matches(config, pipe):
            return config
    cls = type(pipe).__name__
    for known in KNOWN_UNMEASURED:
        if matches(known, pipe):
            raise UnsupportedArchitectureError(
                f"{cls} is {known.name}: no layer set has been measured for it, and the SD3-medium preset is not "
                f"reused (its architecture differs: {known.notes}). {LOCALIZE_HINT}"
            )
    _refuse_without_preset(pipe, cls)
    raise UnsupportedArchitectureError(
        f"no safetext preset matches {cls} (packaged presets: {', '.join(presets)}; none fits this "
        f"pipeline class and model config, and its folder has no {MODEL_PRESET_FILE}). {LOCALIZE_HINT}"
    )


def _refuse_without_preset(pipe: Any, cls: str) -> None:
    """Raise the specific reason a pipeline with no preset cannot be guarded by ``"auto"``, if known."""
    from safetext.inject.sites import attention_sites  # imports torch: only here

    try:
        sites = attention_sites(pipe)
    except TypeError:  # no unet/transformer component: the generic message applies
        return
    except InjectionError as exc:
        raise UnsupportedArchitectureError(f"{cls}: safetext cannot inject into this model: {exc}") from exc
    if any(site.kind == "single" for site in sites):
        joint = sum(site.kind == "joint" for site in sites)
        raise UnsupportedArchitectureError(
            f"{cls} has no measured preset: safetext can inject into its {joint} double-stream and "
            f"{len(sites) - joint} single-stream attention modules, but which of them render text has not been "
            f"localized for this model (no published work has localized FLUX's text layers). {LOCALIZE_HINT}"
        )
    if any(site.kind == "projected" for site in sites):
        raise UnsupportedArchitectureError(
            f"{cls} has no measured preset: safetext can inject into its {len(sites)} cross-attention modules "
            "(which read the caption after the model's own projection), but which of them render text has not "
            f"been localized for this model (the packaged presets cover SDXL, SD3 and DeepFloyd IF). {LOCALIZE_HINT}"
        )


def resolve_preset(pipe: Any, preset: str | Path | list[str] | tuple[str, ...] | InjectionConfig) -> InjectionConfig:
    """Turn any accepted ``preset`` value into an :class:`InjectionConfig` (see module doc)."""
    if isinstance(preset, InjectionConfig):
        return preset
    if isinstance(preset, (list, tuple)):
        return InjectionConfig.from_modules(list(preset))
    if preset == "auto":
        return auto_preset(pipe)
    path = Path(preset)
    if path.is_file():
        return InjectionConfig.from_yaml(path)
    presets = builtin_presets()
    if str(preset) in presets:
        return presets[str(preset)]
    raise PresetError(f"no preset file or packaged preset named {str(preset)!r} (packaged: {', '.join(presets)})")
