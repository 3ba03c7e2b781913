"""The second testbed: a stock ``FluxPipeline`` that writes the first testbed's words on signs.

Same data, vocabulary and autoencoder as ``safetext.testbed``; a small double/single-stream
transformer instead of the U-Net, trained with FLUX's rectified-flow objective. See
``safetext/testbed/dit/README.md`` (the model card draft). No weights ship yet.
"""

from __future__ import annotations

from pathlib import Path

MODEL_DIR = Path(__file__).resolve().parent / "model"  # where trained weights would ship (none yet)


def model_dir() -> Path:
    """The folder of the shipped DiT weights; raises FileNotFoundError while none ship."""
    if not (MODEL_DIR / "model_index.json").is_file():
        raise FileNotFoundError(
            f"the DiT testbed has no weights at {MODEL_DIR}: train them with "
            f"python -m safetext.testbed.dit.train --out runs/dit --minutes 8 --export {MODEL_DIR}"
        )
    return MODEL_DIR
