"""The testbed: a small text-rendering diffusion model that ships with safetext.

It writes single words on coloured signs well enough for Tesseract to read them, so the
whole chain (policy, rewrite, injection, OCR-measured leakage and fidelity) can be proven
offline on a CPU. See ``safetext/testbed/README.md`` (the model card).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from diffusers import StableDiffusionPipeline

MODEL_DIR = Path(__file__).resolve().parent / "model"
DEFAULT_STEPS = 20
DEFAULT_GUIDANCE = 4.0
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


def generation_defaults() -> dict[str, Any]:
    """The step count and guidance scale the testbed was evaluated at."""
    return {"num_inference_steps": DEFAULT_STEPS, "guidance_scale": DEFAULT_GUIDANCE}
