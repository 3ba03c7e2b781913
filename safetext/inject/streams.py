"""Double- and single-stream injection (FLUX) through forward hooks on the text K/V projections.

The model's own attention processor runs unchanged; nothing of it is mirrored here. What
changes is what its projections return:

* a forward pre-hook on the transformer appends one row per rewritten image to the call:
  that image's latents, timestep and guidance, with the benign prompt's text and pooled
  embeddings. The benign rows evolve their own text stream through the blocks, as a
  separate benign pass would, seeing the original's current latents;
* double-stream modules (``transformer_blocks.N.attn``): forward hooks on ``add_k_proj``
  and ``add_v_proj`` give each rewritten row the benign row's text keys and values;
* single-stream modules (``single_transformer_blocks.N.attn``): the block joins text and
  image tokens into one sequence, text first, so hooks on ``to_k`` and ``to_v`` replace
  the first ``L`` positions (``L`` text tokens) of each rewritten row by the benign row's;
* a forward hook on the block of the last localized module drops the benign rows; later
  blocks and ``norm_out`` get ``temb`` trimmed by pre-hooks, so the pipeline sees its own
  batch size.

Norms on K (RMS qk-norm) and the rotary embedding act per token after the projection, and
every row of a FLUX call shares the same text and image positions, so swapping the
projection outputs equals swapping the final keys and values.

Which call is the prompt's: FLUX.1 is guidance-distilled, so a call has no unconditional
rows. With ``true_cfg_scale > 1`` the pipeline calls the transformer a second time per
step with the negative prompt; only the first call of each step is the prompt's, and
each later first call must receive the same text tensor as the first one did (otherwise
the call fails closed).
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


LAYOUTS: dict[str, StreamLayout] = {
    "FluxTransformer2DModel": StreamLayout(
        blocks=("transformer_blocks", "single_transformer_blocks"),
        batch_args=("hidden_states", "timestep", "guidance"),
        text_args=(("encoder_hidden_states", "embeds"), ("pooled_projections", "pooled")),
        processors=("FluxAttnProcessor",),
        refused_args=("controlnet_block_samples", "controlnet_single_block_samples"),
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
    for name in modules:
        attn = denoiser.get_submodule(name)
        processor = type(getattr(attn, "processor", None)).__name__
        if processor not in layout.processors:
            raise InjectionError(
                f"{name} of {type(denoiser).__name__} uses {processor}; safetext knows how "
                f"{', '.join(layout.processors)} reads text keys/values (remove IP-Adapter or custom processors)"
            )
        if getattr(attn, "fused_projections", False):
            raise InjectionError(
                f"{name} has fused QKV projections (fuse_qkv_projections); call unfuse_qkv_projections() "
                "before guarding, the injector swaps the separate text K/V projections"
            )


def _trim(value: Any, n_ext: int, n: int) -> Any:
    if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == n_ext:
        return value[:n]
    return value


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
            else:
                projections = (attn.to_k, "k"), (attn.to_v, "v")
            for projection, which in projections:
                handles.append(projection.register_forward_hook(self._swap_hook(name, which)))
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
        for name in self.layout.refused_args:
            if call.get(name) is not None:
                raise InjectionError(f"{name} (e.g. a ControlNet) is not supported with injection")
        hidden = call["hidden_states"]
        n = hidden.shape[0]
        targets = state.rows.to(hidden.device) + state.cond_offset(n)
        for name in self.layout.batch_args:
            value = call.get(name)
            if isinstance(value, torch.Tensor) and value.ndim > 0:
                if value.shape[0] != n:
                    raise InjectionError(f"{name} has {value.shape[0]} rows for a batch of {n}")
                call[name] = torch.cat([value, value.index_select(0, targets.to(value.device))])
        for name, field in self.layout.text_args:
            value, benign = call.get(name), getattr(state, "benign" if field == "embeds" else "benign_pooled")
            if not isinstance(value, torch.Tensor) or benign is None:
                raise InjectionError(f"the transformer call has no {name} for the benign text")
            rows = benign.index_select(0, state.rows.to(benign.device)).to(value.device, value.dtype)
            if rows.shape[1:] != value.shape[1:]:
                raise InjectionError(
                    f"the benign {name} has shape {tuple(rows.shape[1:])} per row, the call's {tuple(value.shape[1:])}"
                )
            call[name] = torch.cat([value, rows])
        state.extension = JointExtension(
            n_orig=n,
            targets=targets,
            sources=torch.arange(n, n + len(targets), device=hidden.device),
            trim_after=max(self.positions.values()),
            text_len=text.shape[1],
        )
        return (), call

    def _swap_hook(self, name: str, which: str) -> Any:
        single = self.kinds[name] == "single"

        def hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> Any:
            ext = self.state.extension
            if ext is None or ext.trimmed:
                return None
            n_ext = ext.n_orig + len(ext.sources)
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

    def _drop_rows(self, module: torch.nn.Module, args: Any, output: Any) -> Any:
        ext = self.state.extension
        if ext is None or ext.trimmed:
            return None
        ext.trimmed = True
        n_ext = ext.n_orig + len(ext.sources)
        return tuple(_trim(x, n_ext, ext.n_orig) for x in output)

    def _trim_inputs(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        ext = self.state.extension
        if ext is None or not ext.trimmed:
            return None
        n_ext = ext.n_orig + len(ext.sources)
        return (
            tuple(_trim(a, n_ext, ext.n_orig) for a in args),
            {k: _trim(v, n_ext, ext.n_orig) for k, v in kwargs.items()},
        )

    def _finish(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        ext, self.state.extension = self.state.extension, None
        if ext is None:
            return
        if not ext.trimmed:
            raise InjectionError("the benign rows were not dropped after the last localized block")
        for name in self.modules:
            if {(name, "k"), (name, "v")} <= ext.swapped:
                self.state.record(name)
