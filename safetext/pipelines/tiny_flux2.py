"""Tiny random-weight FLUX.2 pipelines (``Flux2KleinPipeline``, ``Flux2Pipeline``), built from configs, offline.

FLUX.2 [klein] encodes a prompt with a Qwen3 causal language model inside its chat template
(one user turn, the generation prompt, thinking off), padded to ``max_sequence_length``, and
feeds the transformer the hidden states of layers 9, 18 and 27 side by side. The tiny build
keeps that path real:

* the byte-level Qwen2 tokenizer of :func:`~safetext.pipelines.tiny_qwen.tiny_qwen_tokenizer`
  with merges for the template's words, ``<think>``/``</think>`` as added tokens, and a chat
  template that renders a conversation as Qwen3's does for the pipeline's arguments;
* a ``Qwen3ForCausalLM`` with 27 layers 16 wide, so the pipeline's default
  ``text_encoder_out_layers=(9, 18, 27)`` exist (the text is 48 wide);
* ``AutoencoderKLFlux2`` with 2x spatial downsampling and 4 latent channels (16 after the
  pipeline's 2x2 patchify), and a ``Flux2Transformer2DModel`` with 2 double-stream and 2
  single-stream blocks, no guidance embedding (the pipeline passes ``guidance=None``).

``is_distilled`` is False, as for the base model: with ``guidance_scale > 1`` the pipeline calls
the transformer a second time per step with the empty negative prompt.

The tiny ``Flux2Pipeline`` (FLUX.2 [dev], :func:`build_tiny_flux2_dev`) encodes with a
``Mistral3ForConditionalGeneration`` (30 text layers 16 wide for the default layers 10, 20
and 30, a 1-layer Pixtral vision tower the pipeline never feeds) inside a system-prompt
conversation padded to ``max_sequence_length``. The released "tokenizer" is a
``PixtralProcessor``, which needs torchvision; the pipeline calls only its
``apply_chat_template``, so the tiny build passes a byte-level fast tokenizer (merges for the
words of the pipeline's system message, Mistral's control tokens) with a chat template that
renders the pipeline's multi-part messages as ``[SYSTEM_PROMPT]...[/SYSTEM_PROMPT][INST]...[/INST]``.
Its transformer embeds guidance (guidance-distilled: one transformer call per step).
"""

from __future__ import annotations

import re

from diffusers import (
    AutoencoderKLFlux2,
    FlowMatchEulerDiscreteScheduler,
    Flux2KleinPipeline,
    Flux2Pipeline,
    Flux2Transformer2DModel,
)
from diffusers.pipelines.flux2.system_messages import SYSTEM_MESSAGE
from transformers import (
    Mistral3Config,
    Mistral3ForConditionalGeneration,
    PreTrainedTokenizerFast,
    Qwen2Tokenizer,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from safetext.pipelines.tiny_qwen import tiny_qwen_tokenizer

#: Qwen3's conversation format for the messages ``Flux2KleinPipeline`` builds (string contents),
#: with ``add_generation_prompt`` and ``enable_thinking`` as in Qwen3's own template.
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and not enable_thinking -%}{{ '<think>\\n\\n</think>\\n\\n' }}{%- endif -%}"
    "{%- endif -%}"
)

#: Mistral's conversation format for the messages ``Flux2Pipeline`` builds (each content a list of
#: ``{"type": "text", "text": ...}`` parts, or a string).
MISTRAL_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}{%- set text = message['content'] -%}"
    "{%- else -%}"
    "{%- set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join('') -%}"
    "{%- endif -%}"
    "{%- if message['role'] == 'system' -%}{{ '[SYSTEM_PROMPT]' + text + '[/SYSTEM_PROMPT]' }}"
    "{%- elif message['role'] == 'user' -%}{{ '[INST]' + text + '[/INST]' }}"
    "{%- else -%}{{ text + eos_token }}{%- endif -%}"
    "{%- endfor -%}"
)

#: Mistral control tokens the chat template and the Pixtral vision path name.
MISTRAL_SPECIAL_TOKENS: tuple[str, ...] = (
    "[INST]",
    "[/INST]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[IMG]",
    "[IMG_BREAK]",
    "[IMG_END]",
)

#: Latent channels of the tiny VAE; the pipeline patchifies them 2x2 into the transformer's 16.
FLUX2_LATENT_CHANNELS = 4

#: Hidden layers of the tiny Qwen3: the klein pipeline stacks hidden states 9, 18 and 27.
QWEN3_LAYERS = 27

#: Text layers of the tiny Mistral3: the dev pipeline stacks hidden states 10, 20 and 30.
MISTRAL3_LAYERS = 30

#: Width of both tiny text encoders; the transformer reads three layers side by side.
TEXT_WIDTH = 16


def tiny_qwen3_tokenizer() -> Qwen2Tokenizer:
    """The byte-level Qwen2 tokenizer with Qwen3's thinking tokens and the chat template above."""
    tokenizer = tiny_qwen_tokenizer("<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\nthink\n")
    tokenizer.add_tokens(["<think>", "</think>"])
    tokenizer.chat_template = QWEN3_CHAT_TEMPLATE
    return tokenizer


def tiny_mistral_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE: one token per byte, merges that make each word of the pipeline's system
    message one token, Mistral's control tokens, and the chat template above."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    merges: list[tuple[str, str]] = []
    for word in dict.fromkeys(re.findall(r" ?[A-Za-z]+", SYSTEM_MESSAGE)):
        word = word.replace(" ", "\u0120")  # byte-level BPE writes a leading space as U+0120
        for i in range(1, len(word)):
            if word[: i + 1] not in vocab:
                vocab[word[: i + 1]] = len(vocab)
                merges.append((word[:i], word[i]))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(MISTRAL_SPECIAL_TOKENS)})
    tokenizer.chat_template = MISTRAL_CHAT_TEMPLATE
    return tokenizer


def _qwen3_text_encoder(tokenizer: Qwen2Tokenizer) -> Qwen3ForCausalLM:
    end_of_text, end_of_turn = tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>"])
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_WIDTH,
        intermediate_size=2 * TEXT_WIDTH,
        num_hidden_layers=QWEN3_LAYERS,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=2048,
        bos_token_id=end_of_text,
        eos_token_id=end_of_turn,
        pad_token_id=end_of_text,
        tie_word_embeddings=True,
    )
    return Qwen3ForCausalLM(config)


def _mistral3_text_encoder(tokenizer: PreTrainedTokenizerFast) -> Mistral3ForConditionalGeneration:
    config = Mistral3Config(
        text_config={
            "model_type": "mistral",
            "vocab_size": len(tokenizer),
            "hidden_size": TEXT_WIDTH,
            "intermediate_size": 2 * TEXT_WIDTH,
            "num_hidden_layers": MISTRAL3_LAYERS,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "max_position_embeddings": 2048,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "model_type": "pixtral",
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "head_dim": 8,
            "image_size": 32,
            "patch_size": 16,
        },
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        spatial_merge_size=1,
    )
    return Mistral3ForConditionalGeneration(config)


def _vae() -> AutoencoderKLFlux2:
    return AutoencoderKLFlux2(
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=FLUX2_LATENT_CHANNELS,
        norm_num_groups=4,
        sample_size=32,
    )


def _transformer(guidance_embeds: bool) -> Flux2Transformer2DModel:
    return Flux2Transformer2DModel(
        patch_size=1,
        in_channels=4 * FLUX2_LATENT_CHANNELS,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=3 * TEXT_WIDTH,
        timestep_guidance_channels=16,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=guidance_embeds,
    )


def build_tiny_flux2_klein() -> Flux2KleinPipeline:
    """The tiny FLUX.2 [klein] pipeline (weights from the caller's torch RNG)."""
    tokenizer = tiny_qwen3_tokenizer()
    return Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(),
        text_encoder=_qwen3_text_encoder(tokenizer),
        tokenizer=tokenizer,
        transformer=_transformer(guidance_embeds=False),
    )


def build_tiny_flux2_dev() -> Flux2Pipeline:
    """The tiny FLUX.2 [dev] pipeline (weights from the caller's torch RNG)."""
    tokenizer = tiny_mistral_tokenizer()
    return Flux2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(),
        text_encoder=_mistral3_text_encoder(tokenizer),
        tokenizer=tokenizer,
        transformer=_transformer(guidance_embeds=True),
    )
