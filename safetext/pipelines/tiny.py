"""Tiny random-weight diffusers pipelines, built from configs, fully offline.

They exist so that injection, the guard, layer search and benchmarks can be tested on the
real diffusers pipeline classes (``StableDiffusionPipeline``, ``StableDiffusionXLPipeline``,
``IFPipeline``, ``StableDiffusion3Pipeline``, ``FluxPipeline``, ``PixArtSigmaPipeline``,
``SanaPipeline``, ``QwenImagePipeline``: see :mod:`safetext.pipelines.tiny_qwen`,
``ZImagePipeline`` and ``Lumina2Pipeline``: see :mod:`safetext.pipelines.tiny_single`,
``Flux2KleinPipeline`` and ``Flux2Pipeline``: see :mod:`safetext.pipelines.tiny_flux2`,
``HiDreamImagePipeline``: see :mod:`safetext.pipelines.tiny_hidream`)
without a network or a GPU.
The weights are random, so the images are noise; what matters is that the code paths,
tensor layouts and module names are the real ones.

Tokenizers are built in memory: a byte-level CLIP BPE with no merges (one token per
character), a T5 unigram model over single characters, and a Gemma BPE with no merges
(single characters plus byte fallback). Nothing is downloaded.

The PixArt-Sigma and Sana transformers have ``sample_size`` values the pipelines' resolution
binning accepts, so a call with the pipeline's defaults runs (PixArt: 256x256 pixels; Sana:
512x512, resized to 1024x1024). Tests pass ``use_resolution_binning=False`` and a small
``height``/``width`` to stay fast. Their caption widths differ from the model widths (as in
the released models), so the text their cross-attention reads is not the text encoder's.

Example::

    from safetext.pipelines import build_tiny_pipeline
    pipe = build_tiny_pipeline("sdxl", seed=0)
    image = pipe('A sign that says "hello"', num_inference_steps=4).images[0]
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

import torch
from diffusers import (
    AutoencoderDC,
    AutoencoderKL,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    IFPipeline,
    PixArtSigmaPipeline,
    PixArtTransformer2DModel,
    SanaPipeline,
    SanaTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    Gemma2Config,
    Gemma2Model,
    GemmaTokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from safetext.pipelines.tiny_flux2 import build_tiny_flux2_dev, build_tiny_flux2_klein
from safetext.pipelines.tiny_hidream import build_tiny_hidream
from safetext.pipelines.tiny_qwen import build_tiny_qwen_image
from safetext.pipelines.tiny_single import build_tiny_lumina2, build_tiny_z_image

#: Kinds accepted by :func:`build_tiny_pipeline`.
TINY_KINDS: tuple[str, ...] = (
    "sd", "sdxl", "if", "sd3", "flux", "pixart-sigma", "sana", "qwen-image", "z-image", "lumina2", "flux2", "flux2-dev",
    "hidream",
)

#: Token budget of the tiny CLIP tokenizers. One token per character, so prompts of up
#: to ~30 characters are encoded without truncation.
CLIP_MAX_LENGTH = 48

# --------------------------------------------------------------------------- tokenizers


def tiny_clip_tokenizer(max_length: int = CLIP_MAX_LENGTH) -> CLIPTokenizer:
    """A CLIP byte-level BPE tokenizer with no merges: every character is one token."""
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab: dict[str, int] = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for char in alphabet:
            vocab[char + suffix] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def tiny_t5_tokenizer(max_length: int = 512) -> T5Tokenizer:
    """A T5 unigram tokenizer over single characters (with and without the word marker)."""
    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    chars = string.ascii_letters + string.digits + string.punctuation
    pieces += [(c, -5.0) for c in chars] + [("\u2581" + c, -5.0) for c in chars]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)


def tiny_gemma_tokenizer() -> GemmaTokenizer:
    """A Gemma BPE tokenizer with no merges: one token per printable ASCII character, bytes otherwise.

    It adds ``<bos>`` like the released Gemma tokenizers, so Sana's token selection (the first
    token, then the last ``max_sequence_length - 1``) picks the same kind of tokens.
    """
    vocab: dict[str, int] = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for char in ["\u2581", "\n", *(string.ascii_letters + string.digits + string.punctuation)]:
        vocab.setdefault(char, len(vocab))
    for byte in range(256):  # byte fallback for every other character
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    return GemmaTokenizer(vocab=vocab, merges=[], add_bos_token=True)


# --------------------------------------------------------------------------- text encoders


def _clip_config(vocab_size: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=CLIP_MAX_LENGTH,
        projection_dim=32,
        hidden_act="gelu",
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def _t5_encoder(vocab_size: int, d_model: int) -> T5EncoderModel:
    config = T5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_ff=2 * d_model,
        d_kv=8,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config)


def _gemma2_encoder(vocab_size: int, hidden_size: int) -> Gemma2Model:
    # One attention head and no logit soft-capping: Sana's default instruction makes prompts
    # ~1,400 tokens long with the one-character tokenizer, and eager attention is quadratic.
    config = Gemma2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=16,
        query_pre_attn_scalar=16,
        max_position_embeddings=2048,
        attn_logit_softcapping=None,
        final_logit_softcapping=None,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        attn_implementation="eager",  # Gemma2 has no SDPA path in transformers 5
    )
    return Gemma2Model(config)


def _vae(latent_channels: int = 4, blocks: int = 2, **extra: Any) -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        block_out_channels=(8,) * blocks,
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=8,
        sample_size=16,
        **extra,
    )


# --------------------------------------------------------------------------- pipelines


def _euler() -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1, timestep_spacing="leading"
    )


def _sd() -> DiffusionPipeline:
    tokenizer = tiny_clip_tokenizer()
    text_encoder = CLIPTextModel(_clip_config(len(tokenizer)))
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    return StableDiffusionPipeline(
        vae=_vae(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=_euler(),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )


def _sdxl() -> DiffusionPipeline:
    tokenizer, tokenizer_2 = tiny_clip_tokenizer(), tiny_clip_tokenizer()
    text_encoder = CLIPTextModel(_clip_config(len(tokenizer)))
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config(len(tokenizer_2)))
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,
        cross_attention_dim=64,
        norm_num_groups=8,
    )
    return StableDiffusionXLPipeline(
        vae=_vae(),
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=unet,
        scheduler=_euler(),
        add_watermarker=False,
    )


def _if() -> DiffusionPipeline:
    tokenizer = tiny_t5_tokenizer()
    text_encoder = _t5_encoder(len(tokenizer), d_model=32)
    # Same block types as IF-I-XL (SimpleCrossAttn blocks, added-KV attention, text_proj).
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=3,
        out_channels=6,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        cross_attention_dim=32,
        encoder_hid_dim=32,
        encoder_hid_dim_type="text_proj",
        attention_head_dim=8,
        addition_embed_type="text",
        addition_embed_type_num_heads=2,
        cross_attention_norm="group_norm",
        resnet_time_scale_shift="scale_shift",
        act_fn="gelu",
    )
    scheduler = DDPMScheduler(
        beta_schedule="squaredcos_cap_v2",
        variance_type="learned_range",
        thresholding=True,
        dynamic_thresholding_ratio=0.95,
        sample_max_value=1.5,
        clip_sample=True,
        clip_sample_range=1.0,
    )
    return IFPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        watermarker=None,
        requires_safety_checker=False,
    )


def _sd3() -> DiffusionPipeline:
    tokenizer, tokenizer_2, tokenizer_3 = tiny_clip_tokenizer(), tiny_clip_tokenizer(), tiny_t5_tokenizer()
    text_encoder = CLIPTextModelWithProjection(_clip_config(len(tokenizer)))
    text_encoder_2 = CLIPTextModelWithProjection(_clip_config(len(tokenizer_2)))
    # CLIP embeddings (2 x 32) are zero-padded to the T5 width, so T5 must be >= 64 wide.
    text_encoder_3 = _t5_encoder(len(tokenizer_3), d_model=64)
    transformer = SD3Transformer2DModel(
        sample_size=8,
        patch_size=1,
        in_channels=4,
        num_layers=4,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=64,
        caption_projection_dim=32,
        pooled_projection_dim=64,
        out_channels=4,
        pos_embed_max_size=16,
    )
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(shift_factor=0.0609, scaling_factor=1.5035, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )


def _flux() -> DiffusionPipeline:
    tokenizer, tokenizer_2 = tiny_clip_tokenizer(), tiny_t5_tokenizer()
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,  # as FLUX.1-dev: guidance-distilled, no CFG rows
        axes_dims_rope=(4, 4, 8),
    )
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(shift_factor=0.0, scaling_factor=1.0),
        text_encoder=CLIPTextModel(_clip_config(len(tokenizer))),
        tokenizer=tokenizer,
        text_encoder_2=_t5_encoder(len(tokenizer_2), d_model=32),
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


def _pixart_sigma() -> DiffusionPipeline:
    tokenizer = tiny_t5_tokenizer()
    # PixArt-Sigma's layout: T5 text (32 wide here) -> caption_projection -> 16-wide attn2 keys/values;
    # learned sigma (out_channels = 2 x latent channels); a VAE with 8x downsampling.
    transformer = PixArtTransformer2DModel(
        sample_size=32,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=2,
        caption_channels=32,
        cross_attention_dim=16,
        in_channels=4,
        out_channels=8,
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )
    return PixArtSigmaPipeline(
        tokenizer=tokenizer,
        text_encoder=_t5_encoder(len(tokenizer), d_model=32),
        vae=_vae(blocks=4, scaling_factor=0.13025),
        transformer=transformer,
        scheduler=DPMSolverMultistepScheduler(),
    )


def _sana() -> DiffusionPipeline:
    tokenizer = tiny_gemma_tokenizer()
    # Sana's layout: Gemma2 text (32 wide) -> caption_projection -> caption_norm -> 16-wide attn2
    # keys/values; a deep-compression autoencoder with 32x downsampling (six stages).
    transformer = SanaTransformer2DModel(
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_cross_attention_heads=2,
        cross_attention_head_dim=8,
        cross_attention_dim=16,
        caption_channels=32,
        sample_size=16,
    )
    stages = 6
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        encoder_block_types=("ResBlock",) * stages,
        decoder_block_types=("ResBlock",) * stages,
        encoder_block_out_channels=(8,) * stages,
        decoder_block_out_channels=(8,) * stages,
        encoder_qkv_multiscales=((),) * stages,
        decoder_qkv_multiscales=((),) * stages,
        encoder_layers_per_block=(1,) * stages,
        decoder_layers_per_block=(1,) * stages,
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    )
    return SanaPipeline(
        tokenizer=tokenizer,
        text_encoder=_gemma2_encoder(len(tokenizer), hidden_size=32),
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )


_BUILDERS: dict[str, Callable[[], DiffusionPipeline]] = {
    "sd": _sd,
    "sdxl": _sdxl,
    "if": _if,
    "sd3": _sd3,
    "flux": _flux,
    "pixart-sigma": _pixart_sigma,
    "sana": _sana,
    "qwen-image": build_tiny_qwen_image,
    "z-image": build_tiny_z_image,
    "lumina2": build_tiny_lumina2,
    "flux2": build_tiny_flux2_klein,
    "flux2-dev": build_tiny_flux2_dev,
    "hidream": build_tiny_hidream,
}


def build_tiny_pipeline(kind: str, seed: int = 0) -> DiffusionPipeline:
    """Build a tiny random-weight pipeline of the given kind (see :data:`TINY_KINDS`).

    The same ``(kind, seed)`` always gives the same weights. The global torch RNG of the
    caller is left untouched. All models are in eval mode, float32, on the CPU, and the
    progress bar is disabled.
    """
    try:
        builder = _BUILDERS[kind]
    except KeyError:
        raise ValueError(f"unknown tiny pipeline kind {kind!r}; choose one of {', '.join(TINY_KINDS)}") from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = builder()
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe
