"""The DiT testbed's components: a stock ``FluxPipeline`` with small configs.

* ``tokenizer``/``text_encoder``: the first testbed's letter-level ``CLIPTokenizer`` and a
  small ``CLIPTextModel``; FLUX reads only its pooled output (the modulation vector);
* ``tokenizer_2``/``text_encoder_2``: a letter-level T5 unigram tokenizer over the same
  alphabet and a small ``T5EncoderModel``; its states are the text stream the double- and
  single-stream blocks attend to, so the spelling slots (:data:`SPELL_START`) live here;
* ``vae``: the first testbed's trained ``AutoencoderKL`` (6 latent channels: 4 image + 2
  position channels, 4x down-sampling), reused as it is, so ``in_channels`` = 6 x 4 = 24;
* ``transformer``: a ``FluxTransformer2DModel`` with 3 double- and 6 single-stream blocks,
  no guidance embedding (CFG-free sampling; training drops 10% of prompts, so true CFG
  with ``negative_prompt=""`` is also available);
* ``scheduler``: ``FlowMatchEulerDiscreteScheduler`` with a static shift (:data:`SHIFT`).
"""

from __future__ import annotations

import string
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetext.testbed import model as tb

if TYPE_CHECKING:  # pragma: no cover
    from diffusers import AutoencoderKL, FluxPipeline
    from transformers import T5Tokenizer

# The T5 sequence: prompt letters, </s>, padding. The spelling slots are its last
# SPELL_SLOTS positions; T5 has no absolute positions, so slots at the sequence end are told
# apart by their exact relative distance to it (T5's exact buckets reach 8 per direction).
SPELL_START = tb.SPELL_START
SPELL_SLOTS = tb.SPELL_SLOTS
T5_MAX_LENGTH = SPELL_START + SPELL_SLOTS  # the pipeline's max_sequence_length (the profile sets it)
HEIGHT, WIDTH = 64, 256  # the signs of safetext.testbed.render: 16x64 latents, 8x32 = 256 packed tokens
SHIFT = 3.0  # sigma shift of training and sampling (SD3's): most steps at high noise, where the prompt decides the letters
DEFAULT_STEPS = 20
ALPHABET = string.ascii_lowercase + string.digits + string.punctuation  # the first testbed tokenizer's characters
VAE_FOLDER = tb.PROFILE_FILE.parent  # the first testbed's shipped model folder (its vae/)


@dataclass(frozen=True)
class Sizes:
    """Widths and depths of the trained parts; :data:`FULL` is the testbed, :data:`TINY` a smoke-test size."""

    dim_heads: int = 4  # transformer heads
    head_dim: int = 48  # transformer head width (inner width 192)
    double: int = 3  # double-stream blocks (transformer_blocks)
    single: int = 6  # single-stream blocks (single_transformer_blocks)
    rope: tuple[int, int, int] = (8, 20, 20)  # rotary dims of the (0, row, column) ids; sum = head_dim
    text_width: int = 128  # CLIP and T5 width (joint_attention_dim, pooled_projection_dim)
    clip_layers: int = 3
    t5_layers: int = 3


FULL = Sizes()
TINY = Sizes(dim_heads=2, head_dim=16, double=1, single=1, rope=(4, 6, 6), text_width=32, clip_layers=1, t5_layers=1)

SCHEDULER_CONFIG: dict[str, Any] = dict(num_train_timesteps=1000, shift=SHIFT, use_dynamic_shifting=False)

# The export's safetext_model.yaml (safetext/pipelines/profile.py). height/width: FluxPipeline
# defaults to 512x512; max_sequence_length: the T5 length the spelling slots were trained at;
# guidance_scale is ignored by a transformer without guidance embedding and set to say so.
PROFILE: dict[str, Any] = {
    "name": "safetext-testbed-dit",
    "generation": {
        "num_inference_steps": DEFAULT_STEPS,
        "guidance_scale": 1.0,
        "height": HEIGHT,
        "width": WIDTH,
        "max_sequence_length": T5_MAX_LENGTH,
    },
    "dtype": "float32",
    "policy": "testbed",
    "reader": "safetext.testbed.quality:read_words",
    "pairs": "safetext.testbed.pairs:testbed_pairs",
    "prompt_tag": "testbed",
}


def t5_tokenizer() -> T5Tokenizer:
    """A T5 unigram tokenizer over single characters of :data:`ALPHABET` (with and without the
    word marker), built in memory: every letter is a token, as for the CLIP tokenizer."""
    from transformers import T5Tokenizer

    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -5.0) for c in ALPHABET] + [("\u2581" + c, -5.0) for c in ALPHABET]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=T5_MAX_LENGTH)


def load_vae(folder: Path = VAE_FOLDER) -> AutoencoderKL:
    """The first testbed's autoencoder (float32) with ``shift_factor`` 0.0, which FluxPipeline needs set.

    Its decoder gives the 2 position channels zero weight, so FluxPipeline can decode the
    whole 6-channel latent the transformer writes.
    """
    import torch
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(folder / "vae", dtype=torch.float32, local_files_only=True)
    vae.register_to_config(shift_factor=0.0)
    return vae.eval()


def build_components(seed: int = 0, tokenizer_dir: Path | None = None, sizes: Sizes = FULL, vae_folder: Path = VAE_FOLDER) -> dict[str, Any]:
    """Fresh, seeded components of the FluxPipeline; only the autoencoder is trained (loaded).

    ``tokenizer_dir`` is where the CLIP tokenizer files are written (a temporary folder if None).
    """
    import tempfile

    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    if sum(sizes.rope) != sizes.head_dim:
        raise ValueError(f"rope dims {sizes.rope} must sum to head_dim {sizes.head_dim}")
    if tokenizer_dir is None:
        tokenizer_dir = Path(tempfile.mkdtemp(prefix="safetext-dit-tok-"))
    torch.manual_seed(seed)
    tokenizer, tokenizer_2 = tb.build_tokenizer(tokenizer_dir), t5_tokenizer()
    w = sizes.text_width
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=w,
            intermediate_size=4 * w,
            num_hidden_layers=sizes.clip_layers,
            num_attention_heads=4,
            max_position_embeddings=tb.TOKENIZER_MAX_LENGTH,
            hidden_act="gelu",
            projection_dim=w,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2),
            d_model=w,
            d_ff=4 * w,
            d_kv=w // 4,
            num_layers=sizes.t5_layers,
            num_heads=4,
            feed_forward_proj="gated-gelu",  # as FLUX's T5 v1.1
            dropout_rate=0.0,  # no randomness outside the trainer's seeded draws
            pad_token_id=tokenizer_2.pad_token_id,
            eos_token_id=tokenizer_2.eos_token_id,
        )
    )
    vae = load_vae(vae_folder)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4 * vae.config.latent_channels,  # FLUX packs 2x2 latent patches into one token
        num_layers=sizes.double,
        num_single_layers=sizes.single,
        attention_head_dim=sizes.head_dim,
        num_attention_heads=sizes.dim_heads,
        joint_attention_dim=w,
        pooled_projection_dim=w,
        guidance_embeds=False,
        axes_dims_rope=sizes.rope,
    )
    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG),
        "vae": vae,
        "text_encoder": clip,
        "tokenizer": tokenizer,
        "text_encoder_2": t5,
        "tokenizer_2": tokenizer_2,
        "transformer": transformer,
    }


def build_pipeline(components: dict[str, Any] | None = None, seed: int = 0, sizes: Sizes = FULL) -> FluxPipeline:
    """A stock ``FluxPipeline`` over ``components`` (fresh ones from :func:`build_components` if None)."""
    from diffusers import FluxPipeline

    return FluxPipeline(**(components if components is not None else build_components(seed, sizes=sizes)))


def sizes_dict(sizes: Sizes) -> dict[str, Any]:
    """``sizes`` as JSON-ready values (``training.json``)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(sizes).items()}


def parameter_counts(components: dict[str, Any]) -> dict[str, int]:
    """Parameters per module component."""
    import torch

    return {k: sum(p.numel() for p in v.parameters()) for k, v in components.items() if isinstance(v, torch.nn.Module)}
