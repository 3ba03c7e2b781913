"""Unified-sequence injection (Z-Image, Lumina2) through forward hooks on the text K/V projections.

Both transformers refine the caption alone (``context_refiner``) and the image tokens alone
(``noise_refiner``), then join each row's caption and image tokens into one sequence for
their main ``layers`` and pad the batch to the longest row, masking that padding:

* Z-Image (``ZImageTransformer2DModel``) takes per-row lists ``x`` (one latent per image),
  ``t`` and ``cap_feats`` (one caption tensor per row, each its own length). It pads each
  caption and each image to a multiple of ``SEQ_MULTI_OF`` tokens (with pad tokens that are
  attended like real ones) and joins each row as ``[image, caption]``. Caption token ``k``
  has rotary position ``(k + 1, 0, 0)``; the image's first axis starts after the caption.
* Lumina2 (``Lumina2Transformer2DModel``) takes a padded ``encoder_hidden_states`` batch and
  its ``encoder_attention_mask``, and joins each row as ``[caption, image]``, keeping the
  caption's real tokens only. Caption token ``k`` has rotary position ``(k, 0, 0)``; the
  image's first axis is the caption length.

Only the main ``layers.N.<attention>`` modules read text and image together, so only they
are sites; the refiners run unchanged (a benign caption is refined in its own row).

* A forward pre-hook on the transformer appends one row per rewritten image: a copy of that
  image's latent and timestep, with the benign caption (Lumina2: both caption batches padded
  to the longer one, with masks). The benign rows run through every block with the batch,
  as a separate benign pass would (seeing the original's current latents), and a forward
  hook on the transformer drops them from its output.
* At each localized module, hooks on ``to_k`` and ``to_v`` give each rewritten row the benign
  row's caption outputs, placed at the row's own caption positions and, where the benign
  caption is longer, in the row's batch padding; a forward pre-hook on the module gives the
  row a mask of its image and those positions, and the benign caption's rotary entries
  there. The row's image keys/values and all its queries stay its own: it attends to its
  image and the benign caption exactly as the benign pass's image does (attention does not
  depend on the order of its keys). K's RMS norm and the rotary embedding act per token
  after the projection, and caption token ``k``'s rotary position is the same in every row,
  so swapping the projection outputs equals swapping the final keys.

Which call is the prompt's: Z-Image batches CFG in one call, prompts first and negative
prompts after them (a second call in a step fails the call); Lumina2 calls the transformer
a second time per step for the negative prompt, which is left alone.

The pre-hook derives each row's caption and image positions from the inputs; the first
localized module of every call checks them against what it receives (the sequence length,
the batch mask and the caption's rotary entries), so a change in diffusers' layout fails the
call instead of giving a wrong image. Z-Image's omni mode and ControlNet residuals are refused.

Numerics: the benign rows make every call larger, so the rows that are not rewritten are
bitwise the unguarded call's only where BLAS computes a row the same way in a batch with
more rows; elsewhere they agree to float rounding.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch

from safetext.errors import InjectionError
from safetext.inject.processors import CallState, same_tensor


@dataclass
class _Rows:
    """The benign rows of one transformer call and where each row's tokens sit in the sequence."""

    n_orig: int
    targets: list[int]  # rows that get benign text K/V
    sources: list[int]  # their benign rows, aligned with ``targets``
    text: list[tuple[int, int]]  # (start, tokens) of every row's caption in the joint sequence
    image: list[tuple[int, int]]  # (start, tokens) of every row's image
    checked: bool = False
    places: dict[int, torch.Tensor] = field(default_factory=dict)  # target row -> positions of the benign caption
    mask_in: Any = None  # the batch mask the localized modules receive, and its swapped form
    mask_out: torch.Tensor | None = None
    freqs_in: Any = None  # the rotary table they receive, and its swapped form
    freqs_out: torch.Tensor | None = None
    swapped: set[tuple[str, str]] = field(default_factory=set)

    @property
    def n_ext(self) -> int:
        return self.n_orig + len(self.sources)


def _padded(length: int, multiple: int) -> int:
    return length + (-length) % multiple


def _prefix_mask(lengths: list[int], tokens: int, device: torch.device) -> torch.Tensor:
    """(rows, tokens) bool mask, True at each row's first ``lengths[i]`` tokens."""
    return torch.arange(tokens, device=device)[None] < torch.tensor(lengths, device=device)[:, None]


class _Family:
    """How one transformer class lays out its call; subclasses per family."""

    processor: str
    attention: str  # name of the attention module inside a ``layers`` block
    rotary_arg: str  # keyword that carries the per-token rotary table to the attention
    step_arg: str  # forward argument with the timesteps
    one_call_per_step: bool  # True: CFG rows are in the one call; False: later calls are the negative's

    def prompt_text(self, call: dict[str, Any], n_cond: int) -> list[Any]:
        """The prompts' text tensors of a call: the same objects every step, or the call is not the prompt's."""
        raise NotImplementedError

    def extend(self, call: dict[str, Any], state: CallState, targets: list[int]) -> tuple[dict[str, Any], _Rows]:
        """The call with one benign row per target appended, and where every row's tokens will sit."""
        raise NotImplementedError

    def text_freqs(self, denoiser: torch.nn.Module, length: int, device: torch.device) -> torch.Tensor:
        """The rotary entries of caption tokens ``0..length-1`` (the same in every row), to check the layout."""
        raise NotImplementedError

    def trim(self, output: Any, n: int) -> Any:
        """The transformer's output without the benign rows, so the pipeline sees its own batch."""
        if isinstance(output, tuple):
            return (output[0][:n], *output[1:])
        sample = getattr(output, "sample", None)
        if sample is None:
            raise InjectionError(f"unexpected transformer output {type(output).__name__}")
        return type(output)(sample=sample[:n])


def _benign_rows(state: CallState, rows: list[int]) -> list[torch.Tensor]:
    """Each rewritten row's benign text at its own length (its real tokens)."""
    out = []
    for row in rows:
        embeds = state.benign[row]
        if state.benign_mask is not None:
            embeds = embeds[state.benign_mask[row].to(embeds.device).bool()]
        out.append(embeds)
    return out


class _ZImage(_Family):
    """Per-row lists; ``[image, caption]`` rows, both padded to multiples of ``SEQ_MULTI_OF``."""

    processor = "ZSingleStreamAttnProcessor"
    attention = "attention"
    rotary_arg = "freqs_cis"
    step_arg = "t"
    one_call_per_step = True

    def __init__(self, patch_size: int, f_patch_size: int) -> None:
        self.patch_size, self.f_patch_size = patch_size, f_patch_size  # forward's defaults

    def prompt_text(self, call: dict[str, Any], n_cond: int) -> list[Any]:
        captions = call.get("cap_feats")
        return list(captions[:n_cond]) if isinstance(captions, list) else [captions]

    def extend(self, call: dict[str, Any], state: CallState, targets: list[int]) -> tuple[dict[str, Any], _Rows]:
        from diffusers.models.transformers.transformer_z_image import SEQ_MULTI_OF

        latents, captions = call.get("x"), call.get("cap_feats")
        for name in ("controlnet_block_samples", "siglip_feats", "image_noise_mask"):
            if call.get(name) is not None:
                raise InjectionError(f"{name} is not supported with injection")
        if not isinstance(latents, list) or not isinstance(captions, list) or len(latents) != len(captions):
            raise InjectionError("the transformer call has no per-row lists x and cap_feats of one length")
        if any(not isinstance(item, torch.Tensor) or item.ndim not in (2, 4) for item in (*latents, *captions)):
            raise InjectionError("x and cap_feats must be lists of tensors (omni mode is not supported)")
        n = len(latents)
        timestep = call.get("t")
        if not isinstance(timestep, torch.Tensor) or timestep.shape != (n,):
            raise InjectionError(f"t must be a ({n},) tensor of timesteps")
        benign = []
        for row, embeds in zip(targets, _benign_rows(state, targets)):
            if captions[row].ndim != 2 or embeds.shape[1:] != captions[row].shape[1:]:
                raise InjectionError(
                    f"the benign caption has shape {tuple(embeds.shape)}, the call's {tuple(captions[row].shape)}"
                )
            benign.append(embeds.to(captions[row].device, captions[row].dtype))
        call["x"] = latents = latents + [latents[r] for r in targets]
        call["cap_feats"] = captions = captions + benign
        call["t"] = torch.cat([timestep, timestep[torch.tensor(targets, device=timestep.device)]])
        patch = int(call.get("patch_size", self.patch_size))
        f_patch = int(call.get("f_patch_size", self.f_patch_size))
        multiple = int(SEQ_MULTI_OF)
        text, image = [], []
        for latent, caption in zip(latents, captions):
            if latent.ndim != 4:
                raise InjectionError(f"a latent of x has shape {tuple(latent.shape)}; expected (C, F, H, W)")
            _, frames, height, width = latent.shape
            image_len = _padded((frames // f_patch) * (height // patch) * (width // patch), multiple)
            image.append((0, image_len))
            text.append((image_len, _padded(caption.shape[0], multiple)))
        return call, _Rows(n, targets, list(range(n, n + len(targets))), text, image)

    def text_freqs(self, denoiser: torch.nn.Module, length: int, device: torch.device) -> torch.Tensor:
        ids = torch.zeros(length, 3, dtype=torch.int32, device=device)
        ids[:, 0] = torch.arange(1, length + 1, device=device)
        return denoiser.rope_embedder(ids)

    def trim(self, output: Any, n: int) -> Any:
        if isinstance(output, tuple):
            return (list(output[0])[:n], *output[1:])
        return super().trim(output, n)


class _Lumina2(_Family):
    """A padded caption batch with its mask; ``[caption, image]`` rows of the caption's real tokens."""

    processor = "Lumina2AttnProcessor2_0"
    attention = "attn"
    rotary_arg = "image_rotary_emb"
    step_arg = "timestep"
    one_call_per_step = False

    def __init__(self, patch_size: int) -> None:
        self.patch_size = patch_size

    def prompt_text(self, call: dict[str, Any], n_cond: int) -> list[Any]:
        return [call.get("encoder_hidden_states")]

    def extend(self, call: dict[str, Any], state: CallState, targets: list[int]) -> tuple[dict[str, Any], _Rows]:
        hidden, timestep = call.get("hidden_states"), call.get("timestep")
        text, mask = call.get("encoder_hidden_states"), call.get("encoder_attention_mask")
        if not isinstance(hidden, torch.Tensor) or hidden.ndim != 4:
            raise InjectionError("the transformer call has no (batch, channels, height, width) hidden_states")
        n = hidden.shape[0]
        if not isinstance(text, torch.Tensor) or text.ndim != 3 or text.shape[0] != n:
            raise InjectionError(f"the transformer call has no ({n}, tokens, dim) encoder_hidden_states")
        if not isinstance(mask, torch.Tensor) or mask.shape != text.shape[:2]:
            raise InjectionError("encoder_attention_mask must be a (batch, tokens) mask of encoder_hidden_states")
        if not isinstance(timestep, torch.Tensor) or timestep.shape != (n,):
            raise InjectionError(f"timestep must be a ({n},) tensor")
        lengths = [int(v) for v in mask.sum(dim=1).tolist()]
        if not torch.equal(mask.bool(), _prefix_mask(lengths, mask.shape[1], mask.device)):
            raise InjectionError(
                "encoder_attention_mask is not right-padded; the model reads each caption's first tokens"
            )
        benign = [b.to(text.device, text.dtype) for b in _benign_rows(state, targets)]
        length = max([text.shape[1], *(b.shape[0] for b in benign)])
        rows = [torch.cat([text, text.new_zeros(n, length - text.shape[1], text.shape[2])], dim=1)]
        masks = [torch.cat([mask, mask.new_zeros(n, length - mask.shape[1])], dim=1)]
        for b in benign:
            if b.shape[1] != text.shape[2]:
                raise InjectionError(f"the benign text is {b.shape[1]} wide, the call's {text.shape[2]}")
            rows.append(torch.cat([b, b.new_zeros(length - b.shape[0], b.shape[1])])[None])
            masks.append((torch.arange(length, device=mask.device) < b.shape[0]).to(mask.dtype)[None])
        index = torch.tensor(targets, device=hidden.device)
        call["hidden_states"] = torch.cat([hidden, hidden.index_select(0, index)])
        call["timestep"] = torch.cat([timestep, timestep.index_select(0, index.to(timestep.device))])
        call["encoder_hidden_states"] = torch.cat(rows)
        call["encoder_attention_mask"] = torch.cat(masks)
        patch = self.patch_size
        image_len = (hidden.shape[2] // patch) * (hidden.shape[3] // patch)
        caption = lengths + [b.shape[0] for b in benign]
        spans = [(0, c) for c in caption]
        image = [(c, image_len) for c in caption]
        return call, _Rows(n, targets, list(range(n, n + len(targets))), spans, image)

    def text_freqs(self, denoiser: torch.nn.Module, length: int, device: torch.device) -> torch.Tensor:
        ids = torch.zeros(1, length, 3, dtype=torch.int32, device=device)
        ids[0, :, 0] = torch.arange(length, device=device)
        return denoiser.rope_embedder._get_freqs_cis(ids)[0]


def _family(denoiser: torch.nn.Module) -> _Family | None:
    name = type(denoiser).__name__
    if name == "ZImageTransformer2DModel":
        defaults = inspect.signature(type(denoiser).forward).parameters
        return _ZImage(int(defaults["patch_size"].default), int(defaults["f_patch_size"].default))
    if name == "Lumina2Transformer2DModel":
        return _Lumina2(int(denoiser.config.patch_size))
    return None


def is_unified(denoiser: torch.nn.Module) -> bool:
    """Whether ``denoiser`` joins caption and image per row in one masked sequence (Z-Image, Lumina2)."""
    return _family(denoiser) is not None


def _layer_index(family: _Family, module: str, n_layers: int) -> int:
    parts = module.split(".")
    if len(parts) != 3 or parts[0] != "layers" or not parts[1].isdigit() or parts[2] != family.attention:
        raise InjectionError(f"module {module!r} is not 'layers.<i>.{family.attention}'")
    if int(parts[1]) >= n_layers:
        raise InjectionError(f"module {module!r}: the model has {n_layers} layers")
    return int(parts[1])


def check_unified_processors(denoiser: torch.nn.Module, modules: list[str]) -> None:
    """Refuse modules whose processor or projections the hooks do not know (at construction)."""
    family = _family(denoiser)
    assert family is not None
    for name in modules:
        _layer_index(family, name, len(denoiser.layers))
        attn = denoiser.get_submodule(name)
        processor = type(getattr(attn, "processor", None)).__name__
        if processor != family.processor:
            raise InjectionError(
                f"{name} of {type(denoiser).__name__} uses {processor}; safetext knows how {family.processor} "
                "reads text keys/values (remove custom processors)"
            )
        if getattr(attn, "fused_projections", False):
            raise InjectionError(
                f"{name} has fused QKV projections (fuse_qkv_projections); call unfuse_qkv_projections() "
                "before guarding, the injector swaps the separate K/V projection outputs"
            )


class UnifiedHooks:
    """Installs the hooks described in the module doc for one call; handles go to ``handles``."""

    def __init__(
        self, denoiser: torch.nn.Module, modules: list[str], state: CallState, arguments: Any, advance_step: Any
    ) -> None:
        family = _family(denoiser)
        if family is None:
            raise InjectionError(f"{type(denoiser).__name__} is not a unified-sequence transformer")
        self.family = family
        self.denoiser = denoiser
        self.modules = modules
        self.state = state
        self.arguments = arguments
        self.advance_step = advance_step
        for name in modules:
            _layer_index(family, name, len(denoiser.layers))
        self.rows: _Rows | None = None
        self.text_source: list[Any] | None = None
        self.step_called = -2

    def install(self, handles: list[Any]) -> None:
        handles.append(self.denoiser.register_forward_pre_hook(self._extend, with_kwargs=True))
        for name in self.modules:
            attn = self.denoiser.get_submodule(name)
            handles.append(attn.register_forward_pre_hook(self._swap_inputs, with_kwargs=True))
            handles.append(attn.to_k.register_forward_hook(self._swap_hook(name, "k")))
            handles.append(attn.to_v.register_forward_hook(self._swap_hook(name, "v")))
        handles.append(self.denoiser.register_forward_hook(self._finish))

    # ------------------------------------------------------------------ transformer call

    def _extend(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        state, family = self.state, self.family
        call = self.arguments.as_kwargs(args, kwargs)
        self.rows = None
        self.advance_step(state, call.get(family.step_arg))
        if self.step_called == state.step:
            if family.one_call_per_step:
                raise InjectionError(
                    f"the transformer was called twice in step {state.step}; the injector knows one call per step"
                )
            return None  # the negative prompt's call under CFG: left as it is
        self.step_called = state.step
        text = family.prompt_text(call, state.n_cond)
        if self.text_source is None:
            self.text_source = text
        elif len(text) != len(self.text_source) or not all(same_tensor(a, b) for a, b in zip(text, self.text_source)):
            raise InjectionError(
                f"the first transformer call of step {state.step} did not receive the prompts' text states of "
                "the first step; the injector cannot tell which rows are the prompts'"
            )
        if not state.active:
            return None
        n = len(call["x"]) if "x" in call else call["hidden_states"].shape[0]
        if n not in (state.n_cond, 2 * state.n_cond) or (n != state.n_cond and not family.one_call_per_step):
            raise InjectionError(f"a transformer call of {n} rows does not fit {state.n_cond} prompts")
        call, self.rows = family.extend(call, state, state.rows.tolist())  # CFG rows: prompts first
        return (), call

    def _finish(self, module: torch.nn.Module, args: Any, output: Any) -> Any:
        rows, self.rows = self.rows, None
        if rows is None:
            return None
        for name in self.modules:
            if {(name, "k"), (name, "v")} <= rows.swapped:
                self.state.record(name)
        return self.family.trim(output, rows.n_orig)

    # ------------------------------------------------------------------ localized modules

    def _check_layout(self, rows: _Rows, hidden: Any, mask: Any, freqs: Any) -> None:
        """The sequence a localized module receives has each row's caption and image where derived."""
        ends = [max(t0 + tn, i0 + i_n) for (t0, tn), (i0, i_n) in zip(rows.text, rows.image)]
        if not isinstance(hidden, torch.Tensor) or hidden.ndim != 3 or hidden.shape[:2] != (rows.n_ext, max(ends)):
            shape = tuple(hidden.shape) if isinstance(hidden, torch.Tensor) else None
            raise InjectionError(
                f"a localized module received a sequence of shape {shape}; expected ({rows.n_ext}, {max(ends)}, ...) "
                "from the rows' caption and image lengths"
            )
        if mask is None:
            if len(set(ends)) != 1:
                raise InjectionError("rows of different lengths reached a localized module without a mask")
        else:
            expected = _prefix_mask(ends, hidden.shape[1], mask.device)
            if mask.shape != expected.shape or not torch.equal(mask.bool(), expected):
                raise InjectionError(
                    "the attention mask of a localized module is not the rows' caption and image lengths"
                )
        if not isinstance(freqs, torch.Tensor) or freqs.shape[:2] != hidden.shape[:2]:
            raise InjectionError("a localized module received no per-token rotary table")
        longest = max(length for _, length in rows.text)
        table = self.family.text_freqs(self.denoiser, longest, freqs.device).to(freqs.dtype)
        for i, (start, length) in enumerate(rows.text):
            if not torch.equal(freqs[i, start : start + length], table[:length]):
                raise InjectionError(f"row {i}'s caption is not at tokens {start}..{start + length} of the sequence")
        rows.checked = True

    def _placement(self, rows: _Rows, t: int, s: int, seq: int, device: torch.device) -> torch.Tensor:
        """Positions of row ``t`` that take the benign caption of row ``s``: its own caption's, then its padding."""
        image_start, image_len = rows.image[t]
        free = torch.ones(seq, dtype=torch.bool)
        free[image_start : image_start + image_len] = False
        text_start = rows.text[t][0]
        order = torch.cat([torch.arange(text_start, seq), torch.arange(0, text_start)])
        order = order[free[order]]
        need = rows.text[s][1]
        if len(order) < need:
            raise InjectionError(f"row {t} has no room for its benign caption of {need} tokens")
        return order[:need].to(device)

    def _swap_inputs(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Each rewritten row gets the mask of its image and benign caption, and the caption's rotary entries."""
        rows = self.rows
        if rows is None:
            return None
        if len(args) > 1:
            raise InjectionError(f"{type(module).__name__} was called with positional masks; expected keywords")
        hidden = args[0] if args else kwargs.get("hidden_states")
        mask, freqs = kwargs.get("attention_mask"), kwargs.get(self.family.rotary_arg)
        if not rows.checked:
            self._check_layout(rows, hidden, mask, freqs)
        if rows.mask_in is not mask or rows.freqs_in is not freqs:
            seq = hidden.shape[1]
            new_freqs = freqs.clone()
            if mask is None:
                new_mask = torch.ones(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
            else:
                new_mask = mask.bool().clone()
            for t, s in zip(rows.targets, rows.sources):
                places = self._placement(rows, t, s, seq, hidden.device)
                rows.places[t] = places
                start, length = rows.text[s]
                new_freqs[t, places] = freqs[s, start : start + length]
                image_start, image_len = rows.image[t]
                keep = torch.zeros(seq, dtype=torch.bool, device=hidden.device)
                keep[image_start : image_start + image_len] = True
                keep[places] = True
                new_mask[t] = keep
            rows.mask_in, rows.freqs_in, rows.freqs_out = mask, freqs, new_freqs
            rows.mask_out = None if mask is None and bool(new_mask.all()) else new_mask
        return args, {**kwargs, "attention_mask": rows.mask_out, self.family.rotary_arg: rows.freqs_out}

    def _swap_hook(self, name: str, which: str) -> Any:
        def hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> Any:
            rows = self.rows
            if rows is None:
                return None
            if output.shape[0] != rows.n_ext or not rows.checked:
                raise InjectionError(f"{name}.{which} projection got {output.shape[0]} rows, expected {rows.n_ext}")
            swapped = output.clone()
            for t, s in zip(rows.targets, rows.sources):
                start, length = rows.text[s]
                swapped[t, rows.places[t]] = output[s, start : start + length]
            rows.swapped.add((name, which))
            return swapped

        return hook
