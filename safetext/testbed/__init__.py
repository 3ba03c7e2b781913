"""The testbed: a small text-rendering diffusion model that ships with safetext.

It writes single words on coloured signs well enough for Tesseract to read them, so the
whole chain (policy, rewrite, injection, OCR-measured leakage and fidelity) can be proven
offline on a CPU. See ``safetext/testbed/README.md`` (the model card).

What general code needs to know about it (generation defaults, OCR reader, localization
pairs, policy, prompt tag) lives in one place, the model profile
``model/safetext_model.yaml``; :func:`profile` and :func:`generation_defaults` read it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from diffusers import StableDiffusionPipeline

    from safetext.pipelines.profile import ModelProfile

MODEL_DIR = Path(__file__).resolve().parent / "model"
REQUIRED = ("model_index.json", "unet", "vae", "text_encoder", "tokenizer", "scheduler")


def model_dir() -> Path:
    """The folder of the shipped weights; raises if the package was installed without them."""
    missing = [name for name in REQUIRED if not (MODEL_DIR / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"the testbed model is incomplete at {MODEL_DIR} (missing: {', '.join(missing)}). "
            "Reinstall safetext, or train it: python -m safetext.testbed.train --out runs/testbed "
            f"--export {MODEL_DIR}"
        )
    return MODEL_DIR


def load(
    device: str | None = None, *, folder: str | Path | None = None, progress: bool = False, **kwargs: Any
) -> StableDiffusionPipeline:
    """A ready ``StableDiffusionPipeline`` over the shipped weights (or a testbed export in
    ``folder``, e.g. freshly trained ones), loaded offline in float32.

    The weights are stored in float16 to keep the package small; CPUs run float32 faster.
    """
    import torch
    from diffusers import StableDiffusionPipeline

    from safetext.pipelines.load import loading_bars

    if "torch_dtype" in kwargs:  # diffusers' old name for it
        kwargs["dtype"] = kwargs.pop("torch_dtype")
    kwargs.setdefault("dtype", torch.float32)
    with loading_bars():
        pipe = StableDiffusionPipeline.from_pretrained(str(folder or model_dir()), local_files_only=True, **kwargs)
    if device:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=not progress)
    return pipe


@lru_cache(maxsize=1)
def profile() -> ModelProfile:
    """The shipped model's profile (``model/safetext_model.yaml``); readable without the weights."""
    from safetext.errors import ModelProfileError
    from safetext.pipelines.profile import MODEL_PROFILE_FILE, load_profile

    found = load_profile(MODEL_DIR)
    if found is None:
        raise ModelProfileError(f"the testbed's model profile is missing: {MODEL_DIR / MODEL_PROFILE_FILE}")
    return found


def generation_defaults() -> dict[str, Any]:
    """The step count and guidance scale the testbed was evaluated at (a fresh dict)."""
    return dict(profile().generation)
