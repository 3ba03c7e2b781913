"""Double- and single-stream injection (FLUX, FLUX.2, Qwen-Image) through forward hooks on the text K/V projections.

The model's own attention processor runs unchanged; nothing of it is mirrored here. What
changes is what its projections return:

* a forward pre-hook on the transformer appends one row per rewritten image to the call:
  that image's latents, timestep and guidance (and, for per-row lists such as Qwen-Image's
  ``img_shapes``, one more entry), with the benign prompt's text and (FLUX) pooled
  embeddings. The benign rows evolve their own text stream through the blocks, as a
  separate benign pass would, seeing the original's current latents;
* double-stream modules (``transformer_blocks.N.attn``): forward hooks on ``add_k_proj``
  and ``add_v_proj`` give each rewritten row the benign row's text keys and values;
* single-stream modules (``single_transformer_blocks.N.attn``): the block joins text and
  image tokens into one sequence, text first, so hooks on ``to_k`` and ``to_v`` replace
  the first ``L`` positions (``L`` text tokens) of each rewritten row by the benign row's.
  FLUX.2's single-stream attention (``Flux2ParallelSelfAttention``) has no ``to_k``/``to_v``:
  one ``to_qkv_mlp_proj`` returns ``[Q | K | V | MLP input]`` per token (``inner_dim``
  columns each for Q, K, V), and its hook replaces only the K and V columns at the first
  ``L`` positions;
* a forward hook on the block of the last localized module drops the benign rows; later
  blocks and ``norm_out`` get ``temb`` (FLUX.2: the per-row modulation tensors it computes
  once before the blocks) trimmed by pre-hooks, so the pipeline sees its own batch size.

Norms on K (RMS qk-norm over each head) and the rotary embedding act per token after the
projection, and every row of a FLUX, FLUX.2 or Qwen-Image call shares the same text and
image positions (FLUX.2 reads only the first row of ``txt_ids``/``img_ids``, and its text is
padded to ``max_sequence_length``, so the benign text has the original's length), so
swapping the projection outputs equals swapping the final keys and values. FLUX.2's
modulation depends on the timestep and guidance only (no pooled text), which the benign rows
copy.

Qwen-Image masks its text (``encoder_hidden_states_mask``, None when every token is real)
and pads a batch to its longest prompt, so the benign and original texts can differ in
length. The pre-hook pads the shorter side with zero embeddings masked out, giving every
row ``L = max`` text tokens and a mask (ones for a call that had none). The text rotary
embedding is the slice ``[offset, offset + L)`` of a fixed table and the image one does
not depend on ``L``, so padding leaves every real token's position as it was. A key's mask
travels with it: a forward pre-hook on each localized ``attn`` module gives the rewritten
rows the benign row's mask there, while every other module keeps each row's own mask.
Masked keys get zero attention weight, so a rewritten row attends to the benign text
tokens exactly as the benign prompt's own pass does. Rows that are not rewritten keep their
tokens and shape when only the benign side is padded (a mask of ones adds 0 to their
attention scores; the tests check they stay bitwise equal to the unguarded call). When the
benign text is the longer one they are padded too, and then agree with the unguarded call
to float rounding (the tests allow 5e-6), not bitwise.

Numerics: the benign rows make every call up to the last localized block larger, so the
rows that are not rewritten are bitwise the unguarded call's only where BLAS computes a
row the same way in a batch with more rows; elsewhere they agree to float rounding. (SD3
runs its benign rows as a call of their own instead: see :mod:`safetext.inject.installer`.)

Which call is the prompt's: FLUX.1 is guidance-distilled, so a call has no unconditional
rows, and Qwen-Image's guidance is a separate call too. With ``true_cfg_scale > 1`` (and,
for Qwen-Image, a negative prompt) both pipelines call the transformer a second time per
step with the negative prompt; only the first call of each step is the prompt's, and
each later first call must receive the same text tensor as the first one did (otherwise
the call fails closed). FLUX.2 [dev] embeds guidance (one call per step); FLUX.2 [klein]
base models (``is_distilled`` off) with ``guidance_scale > 1`` call the transformer again
with the empty negative prompt after the prompt's call, which is left alone the same way.

FLUX.2's KV-cache path (``Flux2KleinKVPipeline``: ``Flux2KVAttnProcessor`` /
``Flux2KVParallelSelfAttnProcessor``, forward arguments ``kv_cache``, ``kv_cache_mode``,
``num_ref_tokens``) puts cached reference-image keys and values between the text and image
positions and gives reference tokens their own modulation; its processors are refused at
construction and those arguments on every transformer call of an injected pipeline call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from safetext.errors import InjectionError
from safetext.inject.processors import CallState, JointExtension, same_tensor


@dataclass(frozen=True)
class StreamLayout:
    """How one transformer class takes its text, as far as injection needs to know."""

    blocks: tuple[str, ...]  # ModuleLists of blocks, in forward order
    batch_args: tuple[str, ...]  # forward arguments with one row per image: copied for benign rows
    text_args: tuple[tuple[str, str], ...]  # (forward argument, EncodedText field) given the benign text
    processors: tuple[str, ...]  # processor classes known to use the separate K/V projections
    refused_args: tuple[str, ...]  # forward arguments that must be None (per-row residuals)
    text_mask_arg: str | None = None  # forward argument with the (batch, tokens) text mask
    list_args: tuple[str, ...] = ()  # forward arguments that are per-row lists (all rows alike)
    refused_config: tuple[str, ...] = ()  # config flags that must be off (a layout the hooks do not know)
    single_processors: tuple[str, ...] = ()  # processors of the single-stream list's modules, when not ``processors``
    packed_qkv: bool = False  # single-stream K/V are slices of one ``to_qkv_mlp_proj`` output (FLUX.2)


LAYOUTS: dict[str, StreamLayout] = {
    "FluxTransformer2DModel": StreamLayout(
        blocks=("transformer_blocks", "single_transformer_blocks"),
        batch_args=("hidden_states", "timestep", "guidance"),
        text_args=(("encoder_hidden_states", "embeds"), ("pooled_projections", "pooled")),
        processors=("FluxAttnProcessor",),
        refused_args=("controlnet_block_samples", "controlnet_single_block_samples"),
    ),
    # zero_cond_t doubles temb's rows (a zero-timestep copy for the reference image tokens), and
    # the 3D rotary embedding lays out positions differently; neither is the text-to-image layout.
    "QwenImageTransformer2DModel": StreamLayout(
        blocks=("transformer_blocks",),
        batch_args=("hidden_states", "timestep", "guidance", "additional_t_cond"),
        text_args=(("encoder_hidden_states", "embeds"),),
        processors=("QwenDoubleStreamAttnProcessor2_0",),
        refused_args=("controlnet_block_samples",),
        text_mask_arg="encoder_hidden_states_mask",
        list_args=("img_shapes",),
        refused_config=("zero_cond_t", "use_layer3d_rope"),
    ),
    # The KV-cache processors and forward arguments serve reference-image caching (FLUX.2 [klein] KV),
    # which changes what the text and image positions hold; only the plain processors are known.
    "Flux2Transformer2DModel": StreamLayout(
        blocks=("transformer_blocks", "single_transformer_blocks"),
        batch_args=("hidden_states", "timestep", "guidance"),
        text_args=(("encoder_hidden_states", "embeds"),),
        processors=("Flux2AttnProcessor",),
        refused_args=("kv_cache", "kv_cache_mode", "num_ref_tokens"),
        single_processors=("Flux2ParallelSelfAttnProcessor",),
        packed_qkv=True,
    ),
}


def layout_of(denoiser: torch.nn.Module) -> StreamLayout | None:
    """The stream layout of ``denoiser``, or None when it is not a stream (FLUX-style) model."""
    return LAYOUTS.get(type(denoiser).__name__)


def block_position(layout: StreamLayout, denoiser: torch.nn.Module, module: str) -> int:
    """``single_transformer_blocks.3.attn`` -> its block's index in the forward order of all blocks."""
    parts = module.split(".")
    offset = 0
    for name in layout.blocks:
        if len(parts) == 3 and parts[0] == name and parts[1].isdigit() and parts[2] == "attn":
            return offset + int(parts[1])
        offset += len(getattr(denoiser, name))
    raise InjectionError(f"module {module!r} is not '<block list>.<i>.attn' of {', '.join(layout.blocks)}")


def all_blocks(layout: StreamLayout, denoiser: torch.nn.Module) -> list[torch.nn.Module]:
    return [block for name in layout.blocks for block in getattr(denoiser, name)]


def check_stream_processors(layout: StreamLayout, denoiser: torch.nn.Module, modules: list[str]) -> None:
    """Refuse modules whose processor or projections the hooks do not know (at construction)."""
    config = getattr(denoiser, "config", {})
    for flag in layout.refused_config:
        if config.get(flag):
            raise InjectionError(
                f"{type(denoiser).__name__} has {flag}=True; safetext injects only into its text-to-image "
                f"layout ({flag} off)"
            )
    for name in modules:
        attn = denoiser.get_submodule(name)
        processor = type(getattr(attn, "processor", None)).__name__
        known = layout.processors
        if layout.single_processors and name.startswith(f"{layout.blocks[-1]}."):
            known = layout.single_processors
        if processor not in known:
            raise InjectionError(
                f"{name} ({type(attn).__name__}) of {type(denoiser).__name__} uses {processor}; safetext knows how "
                f"{', '.join(known)} reads text keys/values (remove IP-Adapter, KV-cache or custom processors)"
            )
        if getattr(attn, "fused_projections", False):
            raise InjectionError(
                f"{name} has fused QKV projections (fuse_qkv_projections); call unfuse_qkv_projections() "
                "before guarding, the injector swaps the separate text K/V projections"
            )


def _unset(value: Any) -> bool:
    """Whether a refused forward argument is absent: None, or a count of 0."""
    return value is None or (type(value) in (int, float) and value == 0)


def _pad_tokens(value: torch.Tensor, length: int) -> torch.Tensor:
    """``value`` (batch, tokens, ...) with zeros appended along the tokens up to ``length``."""
    missing = length - value.shape[1]
    if missing == 0:
        return value
    return torch.cat([value, value.new_zeros((value.shape[0], missing, *value.shape[2:]))], dim=1)


class StreamHooks:
    """Installs the hooks described in the module doc for one call; handles go to ``handles``."""

    def __init__(
        self,
        layout: StreamLayout,
        denoiser: torch.nn.Module,
        modules: list[str],
        kinds: dict[str, str],
        state: CallState,
        arguments: Any,
        advance_step: Any,
    ) -> None:
        self.layout = layout
        self.denoiser = denoiser
        self.modules = modules
        self.kinds = kinds
        self.state = state
        self.arguments = arguments
        self.advance_step = advance_step
        self.positions = {name: block_position(layout, denoiser, name) for name in modules}
        self.text_source: torch.Tensor | None = None
        self.calls_in_step = 0

    def install(self, handles: list[Any]) -> None:
        blocks = all_blocks(self.layout, self.denoiser)
        norm_out = getattr(self.denoiser, "norm_out", None)
        if norm_out is None:
            raise InjectionError(f"{type(self.denoiser).__name__} has no norm_out; cannot drop the benign rows")
        handles.append(self.denoiser.register_forward_pre_hook(self._extend, with_kwargs=True))
        for name in self.modules:
            attn = self.denoiser.get_submodule(name)
            if self.kinds[name] == "joint":
                projections = (attn.add_k_proj, "k"), (attn.add_v_proj, "v")
            elif self.layout.packed_qkv:
                projections = ((attn.to_qkv_mlp_proj, "kv"),)
            else:
                projections = (attn.to_k, "k"), (attn.to_v, "v")
            for projection, which in projections:
                hook = self._packed_hook(name, attn) if which == "kv" else self._swap_hook(name, which)
                handles.append(projection.register_forward_hook(hook))
            if self.layout.text_mask_arg is not None:
                handles.append(attn.register_forward_pre_hook(self._swap_mask, with_kwargs=True))
        last = max(self.positions.values())
        handles.append(blocks[last].register_forward_hook(self._drop_rows))
        for block in blocks[min(self.positions.values()) + 1 :]:
            handles.append(block.register_forward_pre_hook(self._trim_inputs, with_kwargs=True))
        handles.append(norm_out.register_forward_pre_hook(self._trim_inputs, with_kwargs=True))
        handles.append(self.denoiser.register_forward_hook(self._finish))

    # ------------------------------------------------------------------ hooks

    def _extend(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        state, arguments = self.state, self.arguments
        step = state.step
        self.advance_step(state, arguments.get(args, kwargs, "timestep"))
        self.calls_in_step = 0 if state.step != step else self.calls_in_step + 1
        state.extension = None
        call = arguments.as_kwargs(args, kwargs)
        for name in self.layout.refused_args:
            if not _unset(call.get(name)):
                raise InjectionError(
                    f"{type(module).__name__} was called with {name}; injection supports only its plain "
                    "text-to-image call (no ControlNet residuals, no KV caches)"
                )
        text = call.get("encoder_hidden_states")
        if self.calls_in_step > 0:
            return None  # the negative prompt's call under true CFG: left as it is
        if self.text_source is None:
            self.text_source = text
        elif not same_tensor(text, self.text_source):
            raise InjectionError(
                f"the first transformer call of step {state.step} did not receive the prompt's text states; "
                "the injector cannot tell which call is the prompt's"
            )
        if not state.active:
            return None
        hidden = call["hidden_states"]
        n = hidden.shape[0]
        targets = state.rows.to(hidden.device) + state.cond_offset(n)
        for name in self.layout.batch_args:
            value = call.get(name)
            if isinstance(value, torch.Tensor) and value.ndim > 0:
                if value.shape[0] != n:
                    raise InjectionError(f"{name} has {value.shape[0]} rows for a batch of {n}")
                call[name] = torch.cat([value, value.index_select(0, targets.to(value.device))])
        for name in self.layout.list_args:
            value = call.get(name)
            if value is None:
                continue
            if not isinstance(value, list) or not value or any(entry != value[0] for entry in value):
                raise InjectionError(f"{name} must be a list with the same entry for every row (got {value!r})")
            call[name] = list(value) + [value[0]] * len(targets)
        if self.layout.text_mask_arg is None:
            self._append_text(call, state)
        else:
            self._append_masked_text(call, state, self.layout.text_mask_arg)
        state.extension = JointExtension(
            n_orig=n,
            targets=targets,
            sources=torch.arange(n, n + len(targets), device=hidden.device),
            trim_after=max(self.positions.values()),
            text_len=call["encoder_hidden_states"].shape[1],
        )
        return (), call

    def _benign_rows(self, state: CallState, field: str, like: torch.Tensor) -> torch.Tensor:
        benign = getattr(state, "benign" if field == "embeds" else "benign_pooled")
        if benign is None:
            raise InjectionError(f"encode_prompt gave no {field} for the benign text")
        return benign.index_select(0, state.rows.to(benign.device)).to(like.device, like.dtype)

    def _append_text(self, call: dict[str, Any], state: CallState) -> None:
        """FLUX: the benign text (and pooled) rows, which have the call's shape per row."""
        for name, field in self.layout.text_args:
            value = call.get(name)
            if not isinstance(value, torch.Tensor):
                raise InjectionError(f"the transformer call has no {name} for the benign text")
            rows = self._benign_rows(state, field, value)
            if rows.shape[1:] != value.shape[1:]:
                raise InjectionError(
                    f"the benign {name} has shape {tuple(rows.shape[1:])} per row, the call's {tuple(value.shape[1:])}"
                )
            call[name] = torch.cat([value, rows])

    def _append_masked_text(self, call: dict[str, Any], state: CallState, mask_name: str) -> None:
        """Qwen-Image: the benign text rows and their mask, both sides padded to the longer text.

        A None mask means every token is real. The call keeps None only when no padding is
        added anywhere; otherwise every row gets a mask, 0 at its padding.
        """
        ((name, field),) = self.layout.text_args
        value = call.get(name)
        if not isinstance(value, torch.Tensor) or value.ndim != 3:
            raise InjectionError(f"the transformer call has no (batch, tokens, dim) {name} for the benign text")
        rows = self._benign_rows(state, field, value)
        if rows.shape[2] != value.shape[2]:
            raise InjectionError(f"the benign {name} is {rows.shape[2]} wide, the call's {value.shape[2]}")
        mask = call.get(mask_name)
        if mask is not None and (not isinstance(mask, torch.Tensor) or mask.shape != value.shape[:2]):
            raise InjectionError(f"{mask_name} must be a (batch, tokens) mask of {name}")
        benign_mask = state.benign_mask
        if benign_mask is not None:
            benign_mask = benign_mask.index_select(0, state.rows.to(benign_mask.device)).to(value.device)
            if benign_mask.shape != rows.shape[:2]:
                raise InjectionError(f"the benign text mask has shape {tuple(benign_mask.shape)}")
        length = max(value.shape[1], rows.shape[1])
        call[name] = torch.cat([_pad_tokens(value, length), _pad_tokens(rows, length)])
        if mask is None and benign_mask is None and value.shape[1] == rows.shape[1]:
            return
        dtype = mask.dtype if mask is not None else torch.long
        own = mask if mask is not None else value.new_ones(value.shape[:2], dtype=dtype)
        benign_own = benign_mask.to(dtype) if benign_mask is not None else value.new_ones(rows.shape[:2], dtype=dtype)
        call[mask_name] = torch.cat([_pad_tokens(own, length), _pad_tokens(benign_own, length)])

    def _swap_mask(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """At a localized module, each rewritten row's text mask is its benign row's (keys carry their mask)."""
        ext = self.state.extension
        name = self.layout.text_mask_arg
        if ext is None or ext.trimmed or name is None:
            return None
        if args:
            raise InjectionError(f"{type(module).__name__} was called with positional arguments; expected keywords")
        mask = kwargs.get(name)
        if mask is None:
            return None  # every row's text is all real tokens: nothing to carry
        n_ext = ext.n_ext
        if not isinstance(mask, torch.Tensor) or mask.ndim != 2 or mask.shape[0] != n_ext:
            raise InjectionError(f"{name} at a localized module is not a ({n_ext}, tokens) mask")
        targets, sources = ext.targets.to(mask.device), ext.sources.to(mask.device)
        return args, {**kwargs, name: mask.index_copy(0, targets, mask.index_select(0, sources))}

    def _swap_hook(self, name: str, which: str) -> Any:
        single = self.kinds[name] == "single"

        def hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> Any:
            ext = self.state.extension
            if ext is None or ext.trimmed:
                return None
            n_ext = ext.n_ext
            if output.shape[0] != n_ext:
                raise InjectionError(f"{name}.{which} projection got {output.shape[0]} rows, expected {n_ext}")
            ext.swapped.add((name, which))
            if not single:
                return output.index_copy(0, ext.targets, output.index_select(0, ext.sources))
            if output.shape[1] <= ext.text_len:
                raise InjectionError(f"{name} received {output.shape[1]} tokens; the text alone has {ext.text_len}")
            text = output[:, : ext.text_len]
            swapped = text.index_copy(0, ext.targets, text.index_select(0, ext.sources))
            return torch.cat([swapped, output[:, ext.text_len :]], dim=1)

        return hook

    def _packed_hook(self, name: str, attn: torch.nn.Module) -> Any:
        """FLUX.2 single stream: ``to_qkv_mlp_proj`` returns ``[Q | K | V | MLP in]`` per token; the
        rewritten rows get the benign row's K and V columns at the text positions, nothing else."""
        inner = attn.inner_dim
        width = 3 * inner + attn.mlp_hidden_dim * attn.mlp_mult_factor

        def hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> Any:
            ext = self.state.extension
            if ext is None or ext.trimmed:
                return None
            if output.ndim != 3 or output.shape[0] != ext.n_ext or output.shape[-1] != width:
                raise InjectionError(
                    f"{name}.to_qkv_mlp_proj returned shape {tuple(output.shape)}, expected ({ext.n_ext}, tokens, "
                    f"{width}) (a sharded or changed projection is not supported)"
                )
            if output.shape[1] <= ext.text_len:
                raise InjectionError(f"{name} received {output.shape[1]} tokens; the text alone has {ext.text_len}")
            text_kv = output[:, : ext.text_len, inner : 3 * inner]
            swapped = output.clone()
            swapped[:, : ext.text_len, inner : 3 * inner] = text_kv.index_copy(
                0, ext.targets, text_kv.index_select(0, ext.sources)
            )
            ext.swapped.update({(name, "k"), (name, "v")})
            return swapped

        return hook

    def _drop_rows(self, module: torch.nn.Module, args: Any, output: Any) -> Any:
        ext = self.state.extension
        if ext is None or ext.trimmed:
            return None
        ext.trimmed = True
        if isinstance(output, torch.Tensor):  # a FLUX.2 single-stream block returns the joined sequence
            return ext.trim(output)
        return tuple(ext.trim(x) for x in output)

    def _trim_inputs(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        ext = self.state.extension
        if ext is None or not ext.trimmed:
            return None
        return ext.trim_call(args, kwargs)

    def _finish(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        ext, self.state.extension = self.state.extension, None
        if ext is None:
            return
        if not ext.trimmed:
            raise InjectionError("the benign rows were not dropped after the last localized block")
        for name in self.modules:
            if {(name, "k"), (name, "v")} <= ext.swapped:
                self.state.record(name)
