"""Tiny random-weight ``ZImagePipeline`` and ``Lumina2Pipeline``, built from configs, fully offline.

Z-Image encodes each prompt with a Qwen3 language model inside a chat template, keeps the
second-to-last hidden states at the prompt's real tokens (one tensor per prompt, each its
own length) and joins them with the image tokens in one sequence in its main ``layers``.
The tiny build keeps that path real:

* the byte-level Qwen2 BPE of :mod:`safetext.pipelines.tiny_qwen` (one token per byte, merges
  for the words of the chat template) with a Qwen3-style chat template set in memory;
* a ``Qwen3Model`` with 2 layers, 32 wide (the pipeline reads ``hidden_states[-2]``);
* a 2-stage ``AutoencoderKL`` (``vae_scale_factor`` 2: a 32x32 image is 16x16 latents,
  64 image tokens of 2x2 patches) and a ``ZImageTransformer2DModel`` with one noise and one
  context refiner layer and two main ``layers``. Its first rotary axis is 256 long: caption
  positions and the image's first-axis position (caption length + 1) index it.

Lumina2 encodes ``system_prompt + " <Prompt Start> " + prompt`` with a Gemma2 model, padded to
``max_sequence_length`` with a mask, and joins each row's real caption tokens and its image
tokens (caption first) in its main ``layers``. The tiny build uses the one-character Gemma
tokenizer and 2-layer Gemma2 of :mod:`safetext.pipelines.tiny` (the default system prompt is
~200 tokens, within the default ``max_sequence_length`` of 256), a 4-stage ``AutoencoderKL``
(the pipeline assumes 8x downsampling: a 64x64 image is 8x8 latents, 16 image tokens) and a
``Lumina2Transformer2DModel`` with one refiner layer each and two main ``layers``; its first
rotary axis is 300 long, as the released model's (caption positions index it).
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    FlowMatchEulerDiscreteScheduler,
    Lumina2Pipeline,
    Lumina2Transformer2DModel,
    ZImagePipeline,
    ZImageTransformer2DModel,
)
from transformers import Qwen3Config, Qwen3Model

from safetext.pipelines.tiny_qwen import tiny_qwen_tokenizer

#: A Qwen3-style chat template: the user turn, then the assistant turn the pipeline asks for
#: (``add_generation_prompt``), with the empty think block Qwen3 adds when thinking is off.
ZIMAGE_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)

#: Latent channels of the tiny VAE (the transformer's ``in_channels``).
ZIMAGE_LATENT_CHANNELS = 4


def _qwen3_encoder(vocab_size: int, pad_token_id: int) -> Qwen3Model:
    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=2048,
        pad_token_id=pad_token_id,
    )
    return Qwen3Model(config)


def build_tiny_z_image() -> ZImagePipeline:
    """The tiny Z-Image pipeline (weights from the caller's torch RNG)."""
    tokenizer = tiny_qwen_tokenizer(ZIMAGE_CHAT_TEMPLATE)
    tokenizer.chat_template = ZIMAGE_CHAT_TEMPLATE
    tokenizer.pad_token = "<|endoftext|>"
    text_encoder = _qwen3_encoder(len(tokenizer), tokenizer.pad_token_id)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8,) * 2,
        layers_per_block=1,
        latent_channels=ZIMAGE_LATENT_CHANNELS,
        norm_num_groups=8,
        sample_size=16,
        shift_factor=0.0,
        scaling_factor=1.0,
    )
    transformer = ZImageTransformer2DModel(
        in_channels=ZIMAGE_LATENT_CHANNELS,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        cap_feat_dim=32,
        axes_dims=[4, 6, 6],
        axes_lens=[256, 32, 32],
    )
    return ZImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )


def build_tiny_lumina2() -> Lumina2Pipeline:
    """The tiny Lumina2 pipeline (weights from the caller's torch RNG)."""
    from safetext.pipelines.tiny import _gemma2_encoder, _vae, tiny_gemma_tokenizer

    tokenizer = tiny_gemma_tokenizer()
    transformer = Lumina2Transformer2DModel(
        sample_size=8,
        patch_size=2,
        in_channels=4,
        hidden_size=32,
        num_layers=2,
        num_refiner_layers=1,
        num_attention_heads=2,
        num_kv_heads=1,
        multiple_of=16,
        axes_dim_rope=(4, 6, 6),
        axes_lens=(300, 32, 32),
        cap_feat_dim=32,
    )
    return Lumina2Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(blocks=4, shift_factor=0.0, scaling_factor=1.0),
        text_encoder=_gemma2_encoder(len(tokenizer), hidden_size=32),
        tokenizer=tokenizer,
    )
