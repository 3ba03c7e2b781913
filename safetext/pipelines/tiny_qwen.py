"""A tiny random-weight ``QwenImagePipeline``, built from configs, fully offline.

Qwen-Image encodes prompts with a Qwen2.5-VL language model inside a chat template
(``<|im_start|>system ...<|im_end|>``), drops the template's first 34 tokens and pads the
batch to its longest prompt, returning a per-row text mask (None when every row is full).
The tiny build keeps that path real:

* a byte-level BPE tokenizer (one token per byte-level character, merges only for the words
  of the chat template, so its system part is 34 tokens as with the released tokenizer) plus
  the chat template's special tokens, as a ``Qwen2Tokenizer`` built in memory; its ids are
  below Qwen2.5-VL's image/video token ids, so the tiny model reads no image tokens;
* a ``Qwen2_5_VLForConditionalGeneration`` with a 2-layer, 32-wide text model and a 1-layer
  vision tower (the pipeline never feeds it pixels);
* ``AutoencoderKLQwenImage`` with 4 latent channels and 4x spatial downsampling, and a
  2-block ``QwenImageTransformer2DModel`` (``zero_cond_t`` off, as the text-to-image model).
"""

from __future__ import annotations

import re

import torch
from diffusers import (
    AutoencoderKLQwenImage,
    FlowMatchEulerDiscreteScheduler,
    QwenImagePipeline,
    QwenImageTransformer2DModel,
)
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer

#: Special tokens of Qwen2's vocabulary that the pipeline's chat template and padding use.
QWEN_SPECIAL_TOKENS: tuple[str, ...] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

#: Latent channels of the tiny VAE; the transformer reads 2x2 patches of them.
QWEN_LATENT_CHANNELS = 4


def tiny_qwen_tokenizer(template: str) -> Qwen2Tokenizer:
    """A Qwen2 byte-level BPE tokenizer: one token per byte, plus merges that make each word of
    ``template`` (the pipeline's chat template) one token, and the chat template's special tokens.

    With those merges the template's system part is 34 tokens, as with the released tokenizer,
    so the pipeline's ``prompt_template_encode_start_idx`` drops exactly it and the embeddings
    start at the prompt. Other words are split by the same merges wherever they apply.
    """
    from tokenizers import pre_tokenizers

    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    merges: list[tuple[str, str]] = []
    plain = template
    for special in QWEN_SPECIAL_TOKENS:
        plain = plain.replace(special, " ")
    for word in dict.fromkeys(re.findall(r" ?[A-Za-z]+", plain)):
        word = word.replace(" ", "\u0120")  # byte-level BPE writes a leading space as U+0120
        for i in range(1, len(word)):
            if word[: i + 1] not in vocab:
                vocab[word[: i + 1]] = len(vocab)
                merges.append((word[:i], word[i]))
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges)
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS)})
    return tokenizer


def _qwen_text_encoder(tokenizer: Qwen2Tokenizer) -> Qwen2_5_VLForConditionalGeneration:
    end_of_text, end_of_turn = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "bos_token_id": end_of_text,
            "eos_token_id": end_of_turn,
            "pad_token_id": end_of_text,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 2048,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": 32,
            "fullatt_block_indexes": [0],
        },
    )
    return Qwen2_5_VLForConditionalGeneration(config)


def build_tiny_qwen_image() -> QwenImagePipeline:
    """The tiny Qwen-Image pipeline (weights from the caller's torch RNG)."""
    # The chat template is an attribute the pipeline sets in __init__; read it from an empty one.
    tokenizer = tiny_qwen_tokenizer(QwenImagePipeline(None, None, None, None, None).prompt_template_encode)
    text_encoder = _qwen_text_encoder(tokenizer)
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=QWEN_LATENT_CHANNELS,
        dim_mult=[1, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * QWEN_LATENT_CHANNELS,
        latents_std=[1.0] * QWEN_LATENT_CHANNELS,
    )
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=4 * QWEN_LATENT_CHANNELS,
        out_channels=QWEN_LATENT_CHANNELS,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        axes_dims_rope=(4, 6, 6),
    )
    return QwenImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=vae,
        text_encoder=text_encoder.to(torch.float32),
        tokenizer=tokenizer,
        transformer=transformer,
    )
