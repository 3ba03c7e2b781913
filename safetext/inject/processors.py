"""Attention processors that swap in the benign prompt's text keys/values.

Per-request data lives in a :class:`CallState` created for one pipeline call. The
processors hold a reference to it and are installed only for that call, under the
pipeline lock (see :mod:`safetext.inject.installer`), then the original processors are
put back.

Why not pass the state through ``cross_attention_kwargs`` / ``joint_attention_kwargs``?
``Attention.forward`` inspects each processor's signature and logs a warning for every
key it does not name, on every module and every step. A safetext key would reach all
70 unpatched modules of SDXL (3,500 warnings per 50-step image) and would be stripped
before reaching them anyway. Binding the state to processors that exist only for the call
keeps the user's kwargs dicts untouched, adds no warnings, and costs no concurrency: the
pipeline already keeps per-call state on ``self`` and must be serialised anyway.

Cross-attention and IF added-KV modules delegate to the module's original processor,
with only ``encoder_hidden_states`` replaced (rewrite rows = benign text, all other rows
the very same tensor values). Every row not rewritten therefore goes through exactly the
original computation. Where the denoiser masks the text (PixArt, Sana: padding tokens get a
-10000 bias), the rewrite rows get the benign prompt's mask with its text: when the token
counts differ, the benign prompt's padding is not where the original's is. Projected
cross-attention (PixArt, Sana) reads the caption after the model's own projection; its
processor checks that the text it receives is that projection's output. SD3's joint
processor mirrors ``JointAttnProcessor2_0``: in a benign pass of the rewritten rows it
records their text K/V, and in the pipeline's call it gives those K/V to the rewritten rows.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import (
    Attention,
    JointAttnProcessor2_0,
)

from safetext.errors import InjectionError

# Named arguments a wrapped processor may take. Anything else (IP-Adapter masks, custom
# extras) would be filtered out by diffusers before reaching our wrapper, so we refuse
# such processors instead of silently dropping their inputs.
_WRAPPABLE_PARAMS = {
    "self", "attn", "hidden_states", "encoder_hidden_states", "attention_mask", "temb", "args", "kwargs"
}


@dataclass
class JointExtension:
    """Benign rows appended to one FLUX, Qwen-Image, Z-Image, Lumina2 or HiDream transformer call."""

    n_orig: int  # batch size the pipeline passed
    targets: torch.Tensor  # rows of the original batch that get benign text K/V
    sources: torch.Tensor  # the appended benign rows, aligned with ``targets``
    trim_after: int  # index of the last localized block that runs in this call
    trimmed: bool = False
    text_len: int = 0  # text tokens at the front of a single-stream sequence (FLUX)
    swapped: set[tuple[str, str]] = field(default_factory=set)  # (module, "k" | "v") swapped this call (FLUX)

    @property
    def n_ext(self) -> int:
        """Rows of the extended call: the pipeline's rows and the benign rows after them."""
        return self.n_orig + len(self.sources)

    def trim(self, value: Any) -> Any:
        """``value`` without the benign rows when it is a per-row tensor of the extended call."""
        if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == self.n_ext:
            return value[: self.n_orig]
        return value

    def trim_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """A forward call's arguments without the benign rows (for the blocks after the last localized one)."""
        return tuple(self.trim(a) for a in args), {k: self.trim(v) for k, v in kwargs.items()}


@dataclass
class CallState:
    """Everything one guarded pipeline call needs; never shared between calls."""

    start_step: int
    n_cond: int  # conditional rows: prompts x num_images_per_prompt
    rows: torch.Tensor  # conditional row indices (0..n_cond-1) that are rewritten
    benign: torch.Tensor  # (n_cond, L, D): benign text for rewritten rows, original text elsewhere
    benign_pooled: torch.Tensor | None = None  # SD3 only
    step: int = -1
    last_timestep: float | None = None
    benign_mask: torch.Tensor | None = None  # (n_cond, L) token mask of `benign`, where the pipeline masks text
    mixed: torch.Tensor | None = None  # cross / added-KV: encoder states as the attention sees them
    mixed_key: tuple[int, int] | None = None  # (id, version) of the raw text states `mixed` came from
    mixed_source: torch.Tensor | None = None  # held so that id cannot be reused during the call
    # Projected cross-attention: the raw mixed text, and what the caption modules saw this denoiser call.
    mixed_raw: torch.Tensor | None = None
    raw: torch.Tensor | None = None  # this denoiser call's encoder_hidden_states
    path_seen: torch.Tensor | None = None  # output of the caption module that ran last
    path_out: torch.Tensor | None = None  # the model's projected text: what its attention must receive
    projecting: bool = False  # the caption modules are running on `mixed_raw` (their hooks stand aside)
    # Text masks: the denoiser call's (B, L) mask, it with the benign rows, and their bias form.
    call_mask: torch.Tensor | None = None
    mixed_mask: torch.Tensor | None = None
    mask_key: tuple[int, int] | None = None
    mask_source: torch.Tensor | None = None
    bias_key: tuple[int, int] | None = None
    bias_source: torch.Tensor | None = None
    mixed_bias: torch.Tensor | None = None
    extension: JointExtension | None = None  # FLUX, Qwen-Image, Z-Image, Lumina2, HiDream
    benign_kv: BenignKV | None = None  # SD3
    injected: dict[str, set[int]] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.step >= self.start_step

    def cond_offset(self, batch: int) -> int:
        """Index of the first conditional row: the unconditional half comes first under CFG."""
        if batch == self.n_cond:
            return 0
        if batch == 2 * self.n_cond:
            return self.n_cond
        raise InjectionError(
            f"denoiser batch of {batch} rows fits neither {self.n_cond} conditional rows nor CFG's {2 * self.n_cond}"
        )

    def record(self, module: str) -> None:
        self.injected.setdefault(module, set()).add(self.step)

    def attention_mask_for(self, received: torch.Tensor | None, module: str) -> torch.Tensor | None:
        """The mask a patched module uses: the one it received, with the rewrite rows' from the benign text.

        ``received`` must be the denoiser call's ``encoder_attention_mask`` in the bias form
        the denoisers build before their blocks; anything else is refused, not guessed at.
        """
        if self.call_mask is None:
            if received is not None:
                raise InjectionError(f"{module} received an attention mask, but the denoiser call has no text mask")
            return None
        if received is None:
            raise InjectionError(f"{module} received no attention mask, but the denoiser call masks the text")
        key = (id(received), received._version)
        if self.bias_key != key:
            assert self.mixed_mask is not None
            expected = mask_bias(self.call_mask, received.dtype)
            if expected.shape != received.shape or not torch.equal(expected, received):
                raise InjectionError(
                    f"the attention mask {module} received (shape {tuple(received.shape)}) is not the denoiser "
                    "call's encoder_attention_mask as a bias; cannot give the benign text its mask"
                )
            self.mixed_bias = mask_bias(self.mixed_mask, received.dtype)
            self.bias_key, self.bias_source = key, received
        return self.mixed_bias


def mask_bias(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A (B, L) keep-mask as the (B, 1, L) additive bias that U-Net, PixArt and Sana forwards make of it."""
    return ((1 - mask.to(dtype)) * -10000.0).unsqueeze(1)


def same_tensor(a: Any, b: Any) -> bool:
    """Whether ``a`` is ``b`` or a same-shaped view of its memory (``.view`` between modules)."""
    return (
        isinstance(a, torch.Tensor)
        and isinstance(b, torch.Tensor)
        and a.shape == b.shape
        and a.dtype == b.dtype
        and a.device == b.device
        and a.data_ptr() == b.data_ptr()
    )


def check_wrappable(processor: Any, module: str) -> None:
    """Refuse processors whose extra named inputs a wrapper would lose."""
    params = set(inspect.signature(processor.__call__).parameters)
    extra = params - _WRAPPABLE_PARAMS
    if extra:
        raise InjectionError(
            f"module {module} uses {type(processor).__name__}, which takes {sorted(extra)}; "
            "safetext can only wrap standard attention processors (remove IP-Adapter or custom processors)"
        )


def _heads(x: torch.Tensor, batch: int, heads: int, head_dim: int) -> torch.Tensor:
    return x.view(batch, -1, heads, head_dim).transpose(1, 2)


class SwapProcessor:
    """Cross-attention (plain or projected) / IF added-KV: the benign text replaces the original
    text for rewrite rows; with the benign mask where the text is masked."""

    def __init__(self, original: Any, module: str, kind: str, state: CallState) -> None:
        check_wrappable(original, module)
        self.original = original
        self.module = module
        self.kind = kind
        self.state = state
        self._accepts = set(inspect.signature(original.__call__).parameters)

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        extra = {k: v for k, v in kwargs.items() if k in self._accepts}
        if temb is not None:
            extra["temb"] = temb
        state = self.state
        if not state.active or encoder_hidden_states is None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **extra)
        mixed = state.mixed
        if mixed is None or mixed.shape != encoder_hidden_states.shape:
            raise InjectionError(
                f"{self.module} received text states of shape {tuple(encoder_hidden_states.shape)}, "
                f"expected {None if mixed is None else tuple(mixed.shape)}"
            )
        if self.kind == "projected" and not same_tensor(encoder_hidden_states, state.path_out):
            raise InjectionError(
                f"{self.module} received text states that are not its denoiser's projected caption; "
                "the injector does not know this model's text path"
            )
        if self.kind in ("cross", "projected"):
            attention_mask = state.attention_mask_for(attention_mask, self.module)
        state.record(self.module)
        return self.original(attn, hidden_states, mixed, attention_mask, *args, **extra)


class BenignPassDone(Exception):
    """Raised in SD3's benign pass once the last localized block's text K/V are recorded."""


@dataclass
class BenignKV:
    """SD3: the benign rows' text keys/values at each localized block, from their own pass.

    The benign pass runs the rewritten rows (their latents, the benign text and pooled
    embedding) through the transformer up to the last localized block, before the
    pipeline's call. The pipeline's call then keeps its own batch: its rows go through
    exactly the operations, on exactly the shapes, of an unguarded call.
    """

    targets: torch.Tensor  # rows of the pipeline's batch that read the benign text K/V
    blocks: frozenset[int]  # localized blocks that run in this call
    recording: bool = True  # the benign pass is running
    kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # block -> (K, V) after norms
    used: set[int] = field(default_factory=set)  # blocks whose swap ran in the pipeline's call

    @property
    def last(self) -> int:
        return max(self.blocks)


class JointSwapProcessor:
    """SD3 joint attention: rewrite rows take the text K/V the benign pass recorded here.

    The image stream and the text query stay the original's. Outside a patched call
    (before the start step, or a call that skips every localized block) it defers to the
    original processor unchanged. In the benign pass it records the text K/V; the last
    localized block needs nothing else, so it stops the pass there.
    """

    def __init__(self, original: Any, module: str, block: int, state: CallState) -> None:
        if type(original) is not JointAttnProcessor2_0:
            raise InjectionError(
                f"{module} uses {type(original).__name__}; the SD3 injector mirrors JointAttnProcessor2_0 only"
            )
        self.original = original
        self.module = module
        self.block = block
        self.state = state

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        passes = self.state.benign_kv
        if passes is None or encoder_hidden_states is None or self.block not in passes.blocks:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)
        batch = hidden_states.shape[0]
        text_key = attn.add_k_proj(encoder_hidden_states)
        head_dim = text_key.shape[-1] // attn.heads
        text_key = _heads(text_key, batch, attn.heads, head_dim)
        text_value = _heads(attn.add_v_proj(encoder_hidden_states), batch, attn.heads, head_dim)
        if attn.norm_added_k is not None:
            text_key = attn.norm_added_k(text_key)
        if passes.recording:
            if batch != len(passes.targets):
                raise InjectionError(f"{self.module} received {batch} rows in the benign pass, expected {len(passes.targets)}")
            passes.kv[self.block] = (text_key, text_value)
            if self.block == passes.last:
                raise BenignPassDone
            return _joint_attention(attn, hidden_states, encoder_hidden_states, text_key, text_value)
        benign = passes.kv.get(self.block)
        if benign is None:
            raise InjectionError(f"{self.module} has no benign text K/V for this call")
        # The swap itself: rewrite rows read the benign rows' text keys/values.
        text_key = text_key.index_copy(0, passes.targets, benign[0].to(text_key.dtype))
        text_value = text_value.index_copy(0, passes.targets, benign[1].to(text_value.dtype))
        self.state.record(self.module)
        passes.used.add(self.block)
        return _joint_attention(attn, hidden_states, encoder_hidden_states, text_key, text_value)


def _joint_attention(
    attn: Attention,
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    text_key: torch.Tensor,
    text_value: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``JointAttnProcessor2_0`` with the text K/V given: the same operations in the same order."""
    batch = hidden_states.shape[0]
    image_tokens = hidden_states.shape[1]
    query = attn.to_q(hidden_states)
    key = attn.to_k(hidden_states)
    value = attn.to_v(hidden_states)
    head_dim = key.shape[-1] // attn.heads
    query = _heads(query, batch, attn.heads, head_dim)
    key = _heads(key, batch, attn.heads, head_dim)
    value = _heads(value, batch, attn.heads, head_dim)
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    text_query = _heads(attn.add_q_proj(encoder_hidden_states), batch, attn.heads, head_dim)
    if attn.norm_added_q is not None:
        text_query = attn.norm_added_q(text_query)

    query = torch.cat([query, text_query], dim=2)
    key = torch.cat([key, text_key], dim=2)
    value = torch.cat([value, text_value], dim=2)
    hidden_states = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
    hidden_states = hidden_states.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim)
    hidden_states = hidden_states.to(query.dtype)

    hidden_states, encoder_hidden_states = hidden_states[:, :image_tokens], hidden_states[:, image_tokens:]
    if not attn.context_pre_only:
        encoder_hidden_states = attn.to_add_out(encoder_hidden_states)
    hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
    return hidden_states, encoder_hidden_states
