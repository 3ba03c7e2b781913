"""The testbed's components: stock diffusers/transformers classes with small configs.

The pipeline is a plain ``StableDiffusionPipeline``, so the guard runs the exact code
path that users of SD 1.x hit. The parts are small enough to train on a CPU:

* a letter-level ``CLIPTokenizer`` (every character is a token), so the model learns to
  spell: letters reach the U-Net one by one, and cross-attention can route the *k*-th
  letter to the *k*-th glyph slot of the left-aligned text;
* a 3-layer ``CLIPTextModel`` trained jointly with the denoiser;
* an ``AutoencoderKL`` with 4x down-sampling (64x256 RGB <-> 16x64 latents with 4 image
  channels and 2 position channels, see :func:`position_channels`);
* a ``UNet2DConditionModel`` with cross-attention (``attn2``) at 8x32 and 4x16 (7 modules).
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer

TOKENIZER_MAX_LENGTH = 77  # as CLIP; positions 64-76 are always padding (prompts are shorter)
SPELL_START = 64  # the padding positions whose outputs are trained to spell the word, one letter each
SPELL_SLOTS = 8  # the longest testbed word
IMAGE_CHANNELS = 4  # what the autoencoder encodes
POSITION_CHANNELS = 2  # fixed maps of the column, see position_channels()
LATENT_CHANNELS = IMAGE_CHANNELS + POSITION_CHANNELS
LATENT_SIZE = (16, 64)
WAVE_PERIOD = 9.0  # latent columns per period of the sine position channel: two letters (18 px each, 4 px per column)
# The model profile (safetext/pipelines/profile.py) the export writes beside the weights;
# its generation defaults are the step count and guidance the weights were evaluated at.
PROFILE_FILE = Path(__file__).resolve().parent / "model" / "safetext_model.yaml"
_GENERATION: dict[str, Any] = yaml.safe_load(PROFILE_FILE.read_text())["generation"]
DEFAULT_STEPS: int = _GENERATION["num_inference_steps"]
DEFAULT_GUIDANCE: float = _GENERATION["guidance_scale"]

VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 64),
    layers_per_block=1,
    latent_channels=LATENT_CHANNELS,
    norm_num_groups=8,
    sample_size=64,
    mid_block_add_attention=False,
)

UNET_CONFIG = dict(
    sample_size=LATENT_SIZE,
    in_channels=LATENT_CHANNELS,
    out_channels=LATENT_CHANNELS,
    # No attention at the full latent resolution (16x64): it would cost more than the rest.
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    block_out_channels=(48, 96, 160),
    layers_per_block=1,
    cross_attention_dim=128,
    attention_head_dim=4,  # diffusers' legacy name: the number of heads
    norm_num_groups=16,
)

TEXT_CONFIG = dict(
    hidden_size=128,
    intermediate_size=512,
    num_hidden_layers=3,
    num_attention_heads=4,
    max_position_embeddings=TOKENIZER_MAX_LENGTH,
    hidden_act="gelu",
    projection_dim=128,
)

SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_schedule="squaredcos_cap_v2",
    prediction_type="v_prediction",
    steps_offset=1,
)


def position_channels(height: int = LATENT_SIZE[0], width: int = LATENT_SIZE[1]) -> torch.Tensor:
    """The latent's 2 position channels: a ramp across the width and a sine of ``WAVE_PERIOD`` columns.

    A convolutional U-Net is translation-equivariant: it cannot tell the 1st letter slot from
    the 4th, so it cannot route letter *k* of the prompt to the *k*-th glyph. These fixed
    maps are part of every training latent (in the scaled latent space the U-Net sees), so
    the U-Net learns to generate them like any other content and reads them back as
    coordinates; the decoder gives them zero weight. Nothing outside the tensors changes:
    the pipeline stays a stock ``StableDiffusionPipeline`` whose latent has 6 channels.
    Returns a (1, 2, height, width) float tensor; each map has unit variance over the width.
    """
    import math

    import torch

    x = torch.arange(width, dtype=torch.float32)
    ramp = (x / (width - 1) * 2 - 1) * math.sqrt(3.0)
    wave = torch.sin(2 * math.pi * x / WAVE_PERIOD) * math.sqrt(2.0)
    maps = torch.stack([ramp, wave])[:, None, :].expand(2, height, width)
    return maps[None].contiguous()


def image_channels_only(z: torch.Tensor) -> torch.Tensor:
    """``z`` with its position channels zeroed: what the decoder is trained on (it gives them zero weight)."""
    import torch

    return torch.cat([z[:, :IMAGE_CHANNELS], torch.zeros_like(z[:, IMAGE_CHANNELS:])], 1)


def write_tokenizer(folder: Path) -> None:
    """Write a letter-level CLIP tokenizer (vocab.json + merges.txt, no merges) into ``folder``.

    Every character is a token, so a word reaches the text encoder letter by letter: the
    spelling slots (``SPELL_START``) can then hold letter *k* of the word, and any word
    outside the vocabulary (a typo, leetspeak) is spelled the same way.
    """
    folder.mkdir(parents=True, exist_ok=True)
    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1, "<|unk|>": 2}
    for ch in chars:
        for token in (ch, ch + "</w>"):
            vocab.setdefault(token, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab, indent=0))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": TOKENIZER_MAX_LENGTH,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|unk|>",
        "pad_token": "<|endoftext|>",
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1))


def build_tokenizer(folder: Path) -> CLIPTokenizer:
    """The testbed tokenizer, (re)written into ``folder`` (it is deterministic)."""
    from transformers import CLIPTokenizer

    write_tokenizer(folder)
    return CLIPTokenizer.from_pretrained(str(folder))


def build_components(tokenizer_dir: Path, seed: int = 0) -> dict[str, Any]:
    """Fresh, randomly initialised pipeline components (seeded), ready to train."""
    import torch
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(tokenizer_dir)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **TEXT_CONFIG,
    )
    vae = AutoencoderKL(**VAE_CONFIG)
    with torch.no_grad():  # the decoder ignores the position channels (position_channels())
        vae.post_quant_conv.weight[:, IMAGE_CHANNELS:] = 0
    return {
        "tokenizer": tokenizer,
        "text_encoder": CLIPTextModel(text_config),
        "vae": vae,
        "unet": UNet2DConditionModel(**UNET_CONFIG),
        "scheduler": DPMSolverMultistepScheduler(**SCHEDULER_CONFIG),
    }


def assemble_pipeline(components: dict[str, Any]) -> StableDiffusionPipeline:
    """A stock ``StableDiffusionPipeline`` without safety checker (the testbed draws signs only)."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        **components,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


# The guard's preset for the testbed: what `safetext localize --model testbed` found
# (benchmarks/localize_bench.py). The export copies it into the model folder as
# ``safetext_preset.yaml`` so that ``Guard(pipe, preset="auto")`` finds it.
PRESET_FILE = Path(__file__).resolve().with_name("preset.yaml")
