"""HiDream-I1 injection (``HiDreamImageTransformer2DModel``) through forward hooks on the text K/V projections.

HiDream's transformer takes the T5 states (``encoder_hidden_states_t5``, ``(batch, T, dim)``),
every Llama layer's states (``encoder_hidden_states_llama3``, ``(layers, batch, L, dim)``) and
the pooled CLIP embeddings. Each is projected by ``caption_projection``; the blocks see:

* double-stream blocks (``double_stream_blocks.N.block``, attention ``.attn1``): the text
  ``[carried, llama_N]``, where ``carried`` starts as ``[t5, llama_last]`` (``llama_last``: the
  projection of ``llama_layers[-1]``) and is the block's text output without its ``llama_N``
  part. The text has its own projections ``to_q_t``/``to_k_t``/``to_v_t``;
* single-stream blocks (``single_stream_blocks.N.block``, attention ``.attn1``): one sequence
  ``[image, carried, llama_M]`` per row, the image first (padded to ``max_seq`` tokens, with a
  mask, when the latent is not square), so the last ``T + 2L`` positions are the text.

The model's own attention processor runs unchanged; what changes is what its projections
return:

* a forward pre-hook on the transformer appends one row per rewritten image: that image's
  latents and timestep, the benign prompt's T5 row, its Llama rows (along the batch axis,
  dimension 1) and its pooled row. The benign rows evolve their own text stream through the
  blocks, as a separate benign pass would, seeing the original's current latents;
* double-stream modules: forward hooks on ``to_k_t`` and ``to_v_t`` give each rewritten row the
  benign row's outputs (all ``T + 2L`` text tokens);
* single-stream modules: forward hooks on ``to_k`` and ``to_v`` do the same at the text
  positions, the image positions keeping the row's own outputs;
* after the block of the last localized module, the later blocks and ``final_layer`` run on the
  pipeline's rows alone: pre-hooks drop the benign rows from their arguments and forward hooks
  pad their outputs back with zero rows, since the transformer's forward joins each block's
  output with the next Llama layer, whose batch still has the benign rows. A forward hook on
  the transformer drops those rows from its output.

Swapping the projection outputs equals swapping the final keys and values: K's RMS norm
(``k_rms_norm_t``, ``k_rms_norm``) acts per token, V has no norm, the image mask multiplies
single-stream keys by 1 at the text positions, and the rotary embedding of every text token
is the same (position 0 on every axis) in every row, as is each image position's. The
mixture-of-experts feed-forward (in eval mode) routes and computes every token on its own, so
the benign rows change no other row's value in exact arithmetic.

Numerics: the linears and the experts' matmuls run over rows x tokens, and CPU BLAS may pick a
kernel by that count, so a pipeline row can agree with the unguarded call to float rounding
(~5e-7 on the tiny model) rather than bitwise. The tests check which: bitwise with CFG
(4 rows become 5), rounding without it (2 rows become 3).

One call per step carries both CFG halves (negative prompts first); only the conditional
rows are rewritten. Calls with precomputed patches (``hidden_states_masks``, ``img_ids``,
``img_sizes``), which the pipeline never makes, are refused, as are processors other than
diffusers' ``HiDreamAttnProcessor``.
"""

from __future__ import annotations

from typing import Any

import torch

from safetext.errors import InjectionError
from safetext.inject.processors import CallState, JointExtension

#: The transformer class this module injects into.
HIDREAM_DENOISER = "HiDreamImageTransformer2DModel"

#: Block lists in forward order: (ModuleList name, kind of their attention).
_BLOCKS: tuple[tuple[str, str], ...] = (("double_stream_blocks", "joint"), ("single_stream_blocks", "single"))

#: Forward arguments that carry patches the pipeline computes inside the transformer.
_REFUSED_ARGS = ("hidden_states_masks", "img_ids", "img_sizes")


def is_hidream(denoiser: torch.nn.Module) -> bool:
    """Whether ``denoiser`` is HiDream's transformer (injected by :class:`HiDreamHooks`)."""
    return type(denoiser).__name__ == HIDREAM_DENOISER


def _all_blocks(denoiser: torch.nn.Module) -> list[torch.nn.Module]:
    return [block for name, _ in _BLOCKS for block in getattr(denoiser, name)]


def block_position(denoiser: torch.nn.Module, module: str) -> tuple[int, str]:
    """``single_stream_blocks.1.block.attn1`` -> (its block's index among all blocks in forward order, kind)."""
    parts = module.split(".")
    offset = 0
    for name, kind in _BLOCKS:
        blocks = getattr(denoiser, name)
        if len(parts) == 4 and parts[0] == name and parts[1].isdigit() and parts[2:] == ["block", "attn1"]:
            if int(parts[1]) < len(blocks):
                return offset + int(parts[1]), kind
        offset += len(blocks)
    raise InjectionError(
        f"module {module!r} of {HIDREAM_DENOISER} is not 'double_stream_blocks.<i>.block.attn1' "
        "or 'single_stream_blocks.<i>.block.attn1'"
    )


def check_hidream_processors(denoiser: torch.nn.Module, modules: list[str]) -> None:
    """Refuse modules whose processor or layout the hooks do not know (at construction)."""
    from diffusers.models.transformers.transformer_hidream_image import HiDreamAttnProcessor

    cls = type(denoiser).__name__
    for name in modules:
        _, kind = block_position(denoiser, name)
        attn = denoiser.get_submodule(name)
        processor = getattr(attn, "processor", None)
        if type(processor) is not HiDreamAttnProcessor:
            raise InjectionError(
                f"{name} of {cls} ({type(attn).__name__}) uses {type(processor).__name__}; safetext knows how "
                "HiDreamAttnProcessor reads text keys/values (remove custom processors)"
            )
        wanted = ("to_k_t", "to_v_t") if kind == "joint" else ("to_k", "to_v")
        if bool(getattr(attn, "single", False)) != (kind == "single") or not all(
            isinstance(getattr(attn, p, None), torch.nn.Module) for p in wanted
        ):
            raise InjectionError(
                f"{name} of {cls} ({type(attn).__name__}) has no {'/'.join(wanted)} projections for "
                f"{kind} attention; safetext does not know this layout"
            )
    if getattr(denoiser, "final_layer", None) is None:
        raise InjectionError(f"{cls} has no final_layer; cannot drop the benign rows")


def _pad_rows(value: Any, rows: int) -> Any:
    """``value`` with zero rows appended up to ``rows`` (the blocks after the last localized one)."""
    if not isinstance(value, torch.Tensor) or value.shape[0] == rows:
        return value
    return torch.cat([value, value.new_zeros((rows - value.shape[0], *value.shape[1:]))])


class HiDreamHooks:
    """Installs the hooks described in the module doc for one call; handles go to ``handles``.

    ``layers`` is the benign text's ``encoder_hidden_states_llama3`` (``(layers, n_cond, L, dim)``,
    the original text in rows that are not rewritten), as ``encode_prompt`` returned it.
    """

    def __init__(
        self,
        denoiser: torch.nn.Module,
        modules: list[str],
        state: CallState,
        layers: torch.Tensor | None,
        arguments: Any,
        advance_step: Any,
    ) -> None:
        if layers is None or layers.ndim != 4:
            raise InjectionError(f"{HIDREAM_DENOISER} needs the benign text's per-layer Llama states (layers, rows, L, dim)")
        if state.benign_pooled is None:
            raise InjectionError(f"{HIDREAM_DENOISER} needs the benign text's pooled embeddings")
        self.denoiser = denoiser
        self.modules = modules
        self.state = state
        self.layers = layers
        self.arguments = arguments
        self.advance_step = advance_step
        self.positions = {name: block_position(denoiser, name) for name in modules}
        self.image_len = 0

    def install(self, handles: list[Any]) -> None:
        denoiser = self.denoiser
        blocks = _all_blocks(denoiser)
        handles.append(denoiser.register_forward_pre_hook(self._extend, with_kwargs=True))
        for name, (_, kind) in self.positions.items():
            attn = denoiser.get_submodule(name)
            pairs = ((attn.to_k_t, "k"), (attn.to_v_t, "v")) if kind == "joint" else ((attn.to_k, "k"), (attn.to_v, "v"))
            for projection, which in pairs:
                handles.append(projection.register_forward_hook(self._swap_hook(name, kind, which)))
        last = max(position for position, _ in self.positions.values())
        handles.append(blocks[last].register_forward_hook(self._mark_trimmed))
        for module in [*blocks[last + 1 :], denoiser.final_layer]:
            handles.append(module.register_forward_pre_hook(self._trim_inputs, with_kwargs=True))
            handles.append(module.register_forward_hook(self._pad_outputs))
        handles.append(denoiser.register_forward_hook(self._finish))

    # ------------------------------------------------------------------ hooks

    def _extend(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        state, arguments = self.state, self.arguments
        self.advance_step(state, arguments.get(args, kwargs, "timesteps"))
        state.extension = None
        if not state.active:
            return None
        call = arguments.as_kwargs(args, kwargs)
        for name in _REFUSED_ARGS:
            if call.get(name) is not None:
                raise InjectionError(f"{HIDREAM_DENOISER} was called with {name}; injection supports the pipeline's call")
        hidden = call.get("hidden_states")
        if not isinstance(hidden, torch.Tensor) or hidden.ndim != 4:
            raise InjectionError(f"{HIDREAM_DENOISER} was not called with (batch, channels, height, width) latents")
        n = hidden.shape[0]
        targets = state.rows.to(hidden.device) + state.cond_offset(n)
        assert state.benign_pooled is not None  # checked in __init__
        texts = (  # (argument, its rank, its batch dimension, the benign rows' source)
            ("encoder_hidden_states_t5", 3, 0, state.benign),
            ("encoder_hidden_states_llama3", 4, 1, self.layers),
            ("pooled_embeds", 2, 0, state.benign_pooled),
        )
        for name, rank, dim, source in texts:
            own = call.get(name)
            if not isinstance(own, torch.Tensor) or own.ndim != rank or own.shape[dim] != n:
                shape = tuple(own.shape) if isinstance(own, torch.Tensor) else None
                raise InjectionError(f"{HIDREAM_DENOISER} got {name} of shape {shape} for {n} latents")
            benign = source.index_select(dim, state.rows.to(source.device)).to(own.device, own.dtype)
            if benign.shape[:dim] + benign.shape[dim + 1 :] != own.shape[:dim] + own.shape[dim + 1 :]:
                raise InjectionError(
                    f"the benign {name} has shape {tuple(benign.shape)}, the call's {tuple(own.shape)}; "
                    "the benign prompt was not encoded as the call's prompt"
                )
            call[name] = torch.cat([own, benign], dim=dim)
        call["hidden_states"] = torch.cat([hidden, hidden.index_select(0, targets)])
        timesteps = call.get("timesteps")
        if isinstance(timesteps, torch.Tensor) and timesteps.ndim > 0:
            if timesteps.shape[0] != n:
                raise InjectionError(f"timesteps has {timesteps.shape[0]} rows for a batch of {n}")
            call["timesteps"] = torch.cat([timesteps, timesteps.index_select(0, targets.to(timesteps.device))])
        # The forward patchifies a square latent to (h/p)(w/p) tokens, any other to max_seq (padded).
        patch, (height, width) = int(self.denoiser.config.patch_size), hidden.shape[-2:]
        self.image_len = (height // patch) * (width // patch) if height == width else int(self.denoiser.max_seq)
        t5_len, llama_len = call["encoder_hidden_states_t5"].shape[1], call["encoder_hidden_states_llama3"].shape[2]
        state.extension = JointExtension(
            n_orig=n,
            targets=targets,
            sources=torch.arange(n, n + len(targets), device=hidden.device),
            trim_after=max(position for position, _ in self.positions.values()),
            text_len=t5_len + 2 * llama_len,  # [t5, llama_last, llama_N]
        )
        return (), call

    def _swap_hook(self, name: str, kind: str, which: str) -> Any:
        def hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> Any:
            ext = self.state.extension
            if ext is None or ext.trimmed:
                return None
            start = 0 if kind == "joint" else self.image_len
            if output.ndim != 3 or output.shape[0] != ext.n_ext or output.shape[1] != start + ext.text_len:
                raise InjectionError(
                    f"{name}.{'to_k' if which == 'k' else 'to_v'}{'_t' if kind == 'joint' else ''} gave shape "
                    f"{tuple(output.shape)}, expected ({ext.n_ext}, {start + ext.text_len}, ...) "
                    f"({start} image and {ext.text_len} text tokens)"
                )
            ext.swapped.add((name, which))
            text = output[:, start:]
            swapped = text.index_copy(0, ext.targets, text.index_select(0, ext.sources))
            return swapped if start == 0 else torch.cat([output[:, :start], swapped], dim=1)

        return hook

    def _mark_trimmed(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        ext = self.state.extension
        if ext is not None:
            ext.trimmed = True

    def _trim_inputs(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        ext = self.state.extension
        if ext is None or not ext.trimmed:
            return None
        return ext.trim_call(args, kwargs)

    def _pad_outputs(self, module: torch.nn.Module, args: Any, output: Any) -> Any:
        ext = self.state.extension
        if ext is None or not ext.trimmed:
            return None
        if isinstance(output, tuple):
            return tuple(_pad_rows(x, ext.n_ext) for x in output)
        return _pad_rows(output, ext.n_ext)

    def _finish(self, module: torch.nn.Module, args: Any, output: Any) -> Any:
        ext, self.state.extension = self.state.extension, None
        if ext is None:
            return None
        if not ext.trimmed:
            raise InjectionError("the benign rows were not dropped after the last localized block")
        for name in self.modules:
            if {(name, "k"), (name, "v")} <= ext.swapped:
                self.state.record(name)
        sample = output[0] if isinstance(output, tuple) else getattr(output, "sample", None)
        if not isinstance(sample, torch.Tensor) or sample.shape[0] != ext.n_ext:
            raise InjectionError(f"{HIDREAM_DENOISER} returned no sample of {ext.n_ext} rows to drop the benign rows from")
        if isinstance(output, tuple):
            return (sample[: ext.n_orig], *output[1:])
        return type(output)(sample=sample[: ext.n_orig])
