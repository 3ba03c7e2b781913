"""A tiny random-weight ``HiDreamImagePipeline``, built from configs, fully offline.

HiDream-I1 reads four text encoders: two CLIP text models with projection (their pooled,
projected embeddings are concatenated into ``pooled_embeds``), T5 (``encoder_hidden_states_t5``)
and Llama 3.1 (every hidden layer but the embeddings, stacked into
``encoder_hidden_states_llama3`` of shape ``(layers, batch, tokens, dim)``). The tiny build keeps
that path real:

* CLIP tokenizers and models as the other tiny pipelines', with 218 positions: the pipeline
  pads CLIP prompts to ``min(max_sequence_length, 218)`` tokens (128 by default);
* a 4-layer ``LlamaForCausalLM`` with a byte-level BPE tokenizer with no merges (one token per
  byte-level character), which prepends ``<|begin_of_text|>`` as Llama 3's does; the pipeline
  pads with its end-of-text token;
* a ``HiDreamImageTransformer2DModel`` with 2 double-stream and 2 single-stream blocks, a
  mixture-of-experts feed-forward as in the released model (4 routed experts, 2 active), and
  ``llama_layers`` naming the tiny Llama's 4 layers, one per block.

The pipeline scales every request to an area of ``(default_sample_size * vae_scale_factor)^2``
pixels; the tiny build sets ``default_sample_size`` so that this is 16x16 pixels (an 8x8 latent,
16 image tokens). A non-square request keeps that area and is padded to the transformer's
``max_resolution`` (16 tokens), with a mask over the padding.
"""

from __future__ import annotations

from diffusers import FlowMatchEulerDiscreteScheduler, HiDreamImagePipeline, HiDreamImageTransformer2DModel
from transformers import (
    CLIPTextModelWithProjection,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

#: CLIP positions: HiDream pads its CLIP prompts to at most 218 tokens.
HIDREAM_CLIP_LENGTH = 218

#: Hidden layers of the tiny Llama: one per transformer block (2 double-stream + 2 single-stream).
HIDREAM_LLAMA_LAYERS = 4

#: ``pipe.default_sample_size`` of the tiny build (latent pixels per side).
HIDREAM_SAMPLE_SIZE = 8

_BEGIN, _END = "<|begin_of_text|>", "<|end_of_text|>"


def tiny_llama_tokenizer(max_length: int = 256) -> PreTrainedTokenizerFast:
    """A Llama-3-style byte-level BPE tokenizer with no merges, built in memory.

    Every byte-level character is one token; ``<|begin_of_text|>`` is prepended to each text
    and ``<|end_of_text|>`` is the end (and, set by the pipeline, padding) token.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = {_BEGIN: 0, _END: 1}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[char] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{_BEGIN} $A", pair=f"{_BEGIN} $A {_BEGIN} $B", special_tokens=[(_BEGIN, 0)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=_BEGIN, eos_token=_END, model_max_length=max_length
    )


def _llama(vocab_size: int) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=HIDREAM_LLAMA_LAYERS,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        attn_implementation="eager",  # the pipeline asks for output_attentions
    )
    return LlamaForCausalLM(config)


def _clip(vocab_size: int) -> CLIPTextModelWithProjection:
    from safetext.pipelines.tiny import _clip_config

    config = _clip_config(vocab_size)
    config.max_position_embeddings = HIDREAM_CLIP_LENGTH
    return CLIPTextModelWithProjection(config)


def build_tiny_hidream() -> HiDreamImagePipeline:
    """The tiny HiDream pipeline (weights from the caller's torch RNG)."""
    from safetext.pipelines.tiny import _t5_encoder, _vae, tiny_clip_tokenizer, tiny_t5_tokenizer

    tokenizer, tokenizer_2 = tiny_clip_tokenizer(HIDREAM_CLIP_LENGTH), tiny_clip_tokenizer(HIDREAM_CLIP_LENGTH)
    tokenizer_3, tokenizer_4 = tiny_t5_tokenizer(), tiny_llama_tokenizer()
    transformer = HiDreamImageTransformer2DModel(
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        caption_channels=[32, 16],  # T5 width, Llama width
        text_emb_dim=64,  # the two CLIP projections, 32 each
        num_routed_experts=4,
        num_activated_experts=2,
        axes_dims_rope=(4, 6, 6),
        max_resolution=(HIDREAM_SAMPLE_SIZE, HIDREAM_SAMPLE_SIZE),
        llama_layers=list(range(HIDREAM_LLAMA_LAYERS)),
    )
    pipe = HiDreamImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(shift_factor=0.0, scaling_factor=1.0),
        text_encoder=_clip(len(tokenizer)),
        tokenizer=tokenizer,
        text_encoder_2=_clip(len(tokenizer_2)),
        tokenizer_2=tokenizer_2,
        text_encoder_3=_t5_encoder(len(tokenizer_3), d_model=32),
        tokenizer_3=tokenizer_3,
        text_encoder_4=_llama(len(tokenizer_4)),
        tokenizer_4=tokenizer_4,
        transformer=transformer,
    )
    pipe.default_sample_size = HIDREAM_SAMPLE_SIZE
    return pipe
