"""Install injection for one pipeline call, check it ran as configured, and restore.

:class:`Injection` is a context manager: on entry it encodes the benign prompts, swaps
the processors of the configured modules for :mod:`~safetext.inject.processors` bound to
a fresh :class:`~safetext.inject.processors.CallState`, and registers forward (pre-)hooks;
on exit it removes the hooks and puts the very same processor objects back.

Step gating: a forward pre-hook on the denoiser counts steps. A step is a run of denoiser
calls with one timestep, so the extra call of SD3's skip-layer guidance stays in its step
and no ``callback_on_step_end`` is needed: the user's callback is left alone.

SD3: before each patched transformer call, the same pre-hook runs a benign pass: the
transformer on the rewritten rows alone (their current latents and timestep, the benign
text and pooled embeddings, the call's other arguments). The localized processors record
the benign text K/V there, and the pass stops at the last localized block, which needs
nothing else. The pipeline's call then runs with its own batch, and its localized processors
give the rewritten rows the recorded K/V. This is the paper's separate benign pass, with the
original's latents at each step in place of a benign trajectory of its own.

FLUX and Qwen-Image (:mod:`~safetext.inject.streams`), Z-Image and Lumina2
(:mod:`~safetext.inject.unified`) and HiDream (:mod:`~safetext.inject.hidream`) keep their own
attention processors: forward hooks on the text K/V projections swap the benign rows' outputs
in, and no processor is replaced.

Projected cross-attention (PixArt, Sana): the attention reads the caption after the model's
own ``caption_projection`` (and Sana's ``caption_norm``). Forward hooks on those modules
check that each one receives what the one before it produced (the first one, the
denoiser's ``encoder_hidden_states``), and the last one's hook runs the same modules on the
text with the benign rows swapped in: the attention gets the benign text exactly as the
model would have projected it, computed where the model's weights are (after any offload
hook moved them). The processors check that the text they receive is that last module's
output, so a change in the model's text path fails the call instead of giving a wrong image.

Text masks (PixArt, Sana): the denoiser call's ``encoder_attention_mask`` gets the benign
prompt's mask in the rewritten rows, and only the patched modules use it (see
:meth:`~safetext.inject.processors.CallState.attention_mask_for`).

Numerics (U-Nets, SD3): every row that is not rewritten goes through the same operations, on a batch of
the same shape, as without injection, so it is bitwise the unguarded call's. SD3's benign
pass has as many rows as are rewritten; where that differs from the pipeline's batch (CFG),
BLAS may pick another kernel for it, so a benign text equal to the original gives the
unguarded image to float rounding (~1e-6) rather than bitwise; the tests check both cases.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from safetext.errors import InjectionError
from safetext.inject.config import InjectionConfig
from safetext.inject.encode import TEXT_INPUTS, call_default, encode_text
from safetext.inject.locking import pipeline_lock
from diffusers.models.attention_processor import JointAttnProcessor2_0

from safetext.inject.processors import (
    BenignKV,
    BenignPassDone,
    CallState,
    JointSwapProcessor,
    SwapProcessor,
    check_wrappable,
    same_tensor,
)
from safetext.inject.hidream import HiDreamHooks, check_hidream_processors, is_hidream
from safetext.inject.sites import attention_sites, denoiser_of, text_path
from safetext.inject.streams import StreamHooks, check_stream_processors, layout_of
from safetext.inject.unified import UnifiedHooks, check_unified_processors, is_unified


@dataclass
class InjectionReport:
    """What one injected call did (JSON-serialisable via :meth:`to_dict`)."""

    patched_layers: list[str]
    kind: str
    start_step: int
    num_steps: int
    steps_run: int
    injected_steps: dict[str, list[int]]
    rewritten_rows: list[int]
    encode_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def num_steps_of(pipe: Any, pipe_kwargs: dict[str, Any]) -> int:
    """How many denoising steps the coming call will run (explicit schedules win)."""
    for key in ("timesteps", "sigmas"):
        if pipe_kwargs.get(key) is not None:
            return len(pipe_kwargs[key])
    steps = pipe_kwargs.get("num_inference_steps", call_default(pipe, "num_inference_steps"))
    if not isinstance(steps, int) or steps < 1:
        raise InjectionError(f"cannot tell the number of inference steps (got {steps!r})")
    return steps


def _advance_step(state: CallState, timestep: Any) -> None:
    value = float(timestep.reshape(-1)[0]) if isinstance(timestep, torch.Tensor) else float(timestep)
    if state.last_timestep != value:
        state.step += 1
        state.last_timestep = value


def _block_index(module: str) -> int:
    """``transformer_blocks.<i>.attn`` -> i; the SD3 layout the row-dropping hooks rely on."""
    parts = module.split(".")
    if len(parts) != 3 or parts[0] != "transformer_blocks" or parts[2] != "attn" or not parts[1].isdigit():
        raise InjectionError(f"joint attention module {module!r} is not 'transformer_blocks.<i>.attn'")
    return int(parts[1])


class _Arguments:
    """Reads a forward call's arguments by name without ``Signature.bind`` (a hot path)."""

    def __init__(self, forward: Any) -> None:
        self.names = list(inspect.signature(forward).parameters)

    def get(self, args: tuple[Any, ...], kwargs: dict[str, Any], name: str) -> Any:
        if name in kwargs:
            return kwargs[name]
        index = self.names.index(name)
        return args[index] if index < len(args) else None

    def as_kwargs(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**dict(zip(self.names, args)), **kwargs}



def check_processors(pipe: Any, modules: list[str]) -> None:
    """Refuse, before any call, localized modules whose attention processor the injector cannot use.

    ``Guard`` calls this at construction, so an IP-Adapter, a custom processor or fused
    projections fail there, naming the module, and not at the first rewritten prompt.
    """
    denoiser = denoiser_of(pipe)[1]
    layout = layout_of(denoiser)
    if layout is not None:
        check_stream_processors(layout, denoiser, modules)
        return
    if is_unified(denoiser):
        attention_sites(denoiser)  # refuses unknown text paths
        check_unified_processors(denoiser, modules)
        return
    if is_hidream(denoiser):
        attention_sites(denoiser)  # refuses unknown text paths
        check_hidream_processors(denoiser, modules)
        return
    kinds = {site.name: site.kind for site in attention_sites(denoiser)}
    for name in modules:
        processor = getattr(denoiser.get_submodule(name), "processor", None)
        if kinds.get(name) == "joint":
            if type(processor) is not JointAttnProcessor2_0:
                raise InjectionError(
                    f"{name} uses {type(processor).__name__}; the SD3 injector mirrors JointAttnProcessor2_0 only"
                )
        elif name in kinds:
            check_wrappable(processor, name)


def prompt_list(value: Any, n: int, name: str) -> list[str] | None:
    """A text input as one string per prompt (None stays None); refuses a length mismatch."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise InjectionError(f"{name} must be a string or a list of strings")
    if len(value) != n:
        raise InjectionError(f"{name} has {len(value)} entries for {n} prompt(s); give one per prompt")
    return list(value)


class Injection:
    """Benign K/V in ``config.modules`` for one call of ``pipe``; use as a context manager.

    ``benign_prompts[i]`` is the benign text for ``prompts[i]``, or None to leave that
    prompt's text as it is. ``benign_inputs`` does the same for the other text inputs
    (``{"prompt_2": [...], "prompt_3": [...]}``), whose originals are read from
    ``pipe_kwargs``. A row is rewritten when any of its inputs has a benign text; rows of
    allowed prompts in a mixed batch are left untouched. The caller must hold
    :func:`~safetext.inject.locking.pipeline_lock` (``run_injected`` does) and should call
    :meth:`verify` after the pipeline returns: it raises :class:`InjectionError` unless
    every localized module was patched at every step from the start step on.
    """

    def __init__(
        self,
        pipe: Any,
        config: InjectionConfig,
        prompts: list[str],
        benign_prompts: list[str | None],
        pipe_kwargs: dict[str, Any],
        *,
        benign_inputs: dict[str, list[str | None]] | None = None,
    ) -> None:
        if len(prompts) != len(benign_prompts):
            raise InjectionError(f"{len(prompts)} prompts but {len(benign_prompts)} benign prompts")
        n = len(prompts)
        self.texts: dict[str, list[str]] = {"prompt": list(prompts)}
        self.benign: dict[str, list[str | None]] = {"prompt": list(benign_prompts)}
        for name in TEXT_INPUTS[1:]:
            original = prompt_list(pipe_kwargs.get(name), n, name)
            given = (benign_inputs or {}).get(name)
            if original is not None:
                self.texts[name] = original
                self.benign[name] = list(given) if given is not None else [None] * n
                if len(self.benign[name]) != n:
                    raise InjectionError(f"benign {name} has {len(self.benign[name])} entries for {n} prompt(s)")
            elif given is not None and any(b is not None for b in given):
                raise InjectionError(f"a benign {name} was given but the call has no {name}")
        self.pipe = pipe
        self.config = config
        self.prompts = prompts
        self.pipe_kwargs = pipe_kwargs
        self.component, self.denoiser = denoiser_of(pipe)
        self.state: CallState | None = None
        self.num_steps = num_steps_of(pipe, pipe_kwargs)
        self.kind = self._check_modules()
        self._originals: dict[str, Any] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self.encode_s = 0.0
        self.benign_layers: torch.Tensor | None = None

    def rewritten(self, i: int) -> bool:
        """Whether prompt ``i`` has a benign text in any of its inputs."""
        return any(benign[i] is not None for benign in self.benign.values())

    # ------------------------------------------------------------------ setup

    def _check_modules(self) -> str:
        sites = {site.name: site.kind for site in attention_sites(self.pipe)}  # refuses unknown text paths
        kinds = set()
        for name in self.config.modules:
            kind = sites.get(name)
            if kind is None:
                options = list(sites)
                shown = ", ".join(options[:6]) + (", ..." if len(options) > 6 else "")
                raise InjectionError(
                    f"{name!r} is not a text attention module of this {self.component} "
                    f"({len(options)} candidates: {shown}); the preset does not fit this model"
                )
            kinds.add(kind)
        self.module_kinds = {name: sites[name] for name in self.config.modules}
        self.layout = layout_of(self.denoiser)
        if self.layout is not None:
            check_stream_processors(self.layout, self.denoiser, list(self.config.modules))
            return "stream"  # double- and single-stream modules of one FLUX call may mix
        if is_unified(self.denoiser):
            check_unified_processors(self.denoiser, list(self.config.modules))
            return "unified"
        if is_hidream(self.denoiser):
            check_hidream_processors(self.denoiser, list(self.config.modules))
            return "hidream"  # double- and single-stream modules may mix
        if len(kinds) != 1:
            raise InjectionError(f"modules mix attention kinds {sorted(kinds)}")
        return kinds.pop()

    def _make_state(self) -> CallState:
        nipp = self.pipe_kwargs.get("num_images_per_prompt") or 1
        rows = [j for j in range(len(self.prompts) * nipp) if self.rewritten(j // nipp)]
        if not rows:
            raise InjectionError("no prompt to rewrite")
        texts = {
            name: [b if b is not None else o for o, b in zip(self.texts[name], self.benign[name])]
            for name in self.texts
        }
        start = time.perf_counter()
        encoded = encode_text(self.pipe, texts, self.pipe_kwargs)
        self.encode_s = time.perf_counter() - start
        self.benign_layers = encoded.layers  # HiDream's per-layer Llama states
        n_cond = len(self.prompts) * nipp
        if encoded.embeds.shape[0] != n_cond:
            raise InjectionError(f"benign encoding gave {encoded.embeds.shape[0]} rows, expected {n_cond}")
        needs_pooled = self.kind == "joint" or (
            self.layout is not None and any(field == "pooled" for _, field in self.layout.text_args)
        )
        if needs_pooled and encoded.pooled is None:
            raise InjectionError(f"{self.kind} attention needs pooled text embeddings; encode_prompt returned none")
        return CallState(
            start_step=self.config.start_step(self.num_steps),
            n_cond=n_cond,
            rows=torch.tensor(rows, dtype=torch.long, device=encoded.embeds.device),
            benign=encoded.embeds,
            benign_pooled=encoded.pooled,
            benign_mask=encoded.mask,
        )

    def __enter__(self) -> Injection:
        self.state = self._make_state()
        try:
            self._install()
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()

    def _install(self) -> None:
        state = self.state
        assert state is not None
        arguments = _Arguments(self.denoiser.forward)
        if self.layout is not None:  # FLUX: hooks on the text K/V projections, processors untouched
            hooks = StreamHooks(
                self.layout, self.denoiser, list(self.config.modules), self.module_kinds, state, arguments, _advance_step
            )
            hooks.install(self._handles)
            return
        if self.kind == "unified":  # Z-Image, Lumina2: hooks on the text K/V projections, processors untouched
            unified = UnifiedHooks(self.denoiser, list(self.config.modules), state, arguments, _advance_step)
            unified.install(self._handles)
            return
        if self.kind == "hidream":  # HiDream: hooks on the text K/V projections, processors untouched
            hidream = HiDreamHooks(
                self.denoiser, list(self.config.modules), state, self.benign_layers, arguments, _advance_step
            )
            hidream.install(self._handles)
            return
        for name in self.config.modules:
            module = self.denoiser.get_submodule(name)
            original = module.processor
            if self.kind == "joint":
                new: Any = JointSwapProcessor(original, name, _block_index(name), state)
            else:
                new = SwapProcessor(original, name, self.kind, state)
            self._originals[name] = original
            module.set_processor(new)
        if self.kind == "joint":
            self._install_joint_hooks(arguments)
        else:
            self._install_text_hooks(arguments)

    def _restore(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        problems = []
        for name, original in self._originals.items():
            module = self.denoiser.get_submodule(name)
            module.set_processor(original)
            if module.processor is not original:
                problems.append(name)
        self._originals.clear()
        if problems:
            raise InjectionError(f"could not restore the processors of {problems}")

    # ------------------------------------------------------------------ cross / added-KV hooks

    def _install_text_hooks(self, arguments: _Arguments) -> None:
        """Step counting and the mixed text (and mask) for cross, projected and added-KV attention."""
        state = self.state
        assert state is not None
        project = None
        if self.kind != "projected" and getattr(self.denoiser, "encoder_hid_proj", None) is not None:
            hid_type = self.denoiser.config.get("encoder_hid_dim_type")
            if hid_type != "text_proj":
                raise InjectionError(f"encoder_hid_dim_type={hid_type!r} is not supported (only text_proj)")
            denoiser = self.denoiser

            def project(x: torch.Tensor) -> torch.Tensor:
                return denoiser.process_encoder_hidden_states(x, {})

        takes_mask = "encoder_attention_mask" in arguments.names
        kind = self.kind

        def pre_hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            _advance_step(state, arguments.get(args, kwargs, "timestep"))
            state.raw = state.path_seen = state.path_out = None
            if not state.active:
                return
            raw = arguments.get(args, kwargs, "encoder_hidden_states")
            if not isinstance(raw, torch.Tensor):
                raise InjectionError("the denoiser was called without text encoder states")
            state.raw = raw
            targets = state.rows.to(raw.device) + state.cond_offset(raw.shape[0])
            _mix_mask(state, arguments.get(args, kwargs, "encoder_attention_mask") if takes_mask else None, targets, kind)
            if state.mixed_key == (id(raw), raw._version):
                return  # same text as the previous step: reuse
            mixed = raw.index_copy(0, targets, state.benign.index_select(0, state.rows).to(raw.device, raw.dtype))
            if kind == "projected":
                state.mixed_raw, state.mixed = mixed, None  # projected by the caption modules' hook
            else:
                state.mixed = project(mixed) if project is not None else mixed
            state.mixed_key = (id(raw), raw._version)
            state.mixed_source = raw  # keeps `raw` alive, so its id cannot be reused this call

        self._handles.append(self.denoiser.register_forward_pre_hook(pre_hook, with_kwargs=True))
        if kind == "projected":
            self._install_caption_hooks()

    def _install_caption_hooks(self) -> None:
        """Forward hooks on the caption modules (:func:`~safetext.inject.sites.text_path`)."""
        state = self.state
        assert state is not None
        names = text_path(self.denoiser)
        if not names:
            raise InjectionError(f"{type(self.denoiser).__name__} has no caption modules to project the benign text")
        modules = [self.denoiser.get_submodule(name) for name in names]

        def hook_for(i: int) -> Any:
            before = "the denoiser's encoder_hidden_states" if i == 0 else f"the output of {names[i - 1]}"

            def hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
                if state.projecting or not state.active:
                    return
                received = args[0] if args else next(iter(kwargs.values()), None)
                expected = state.raw if i == 0 else state.path_seen
                if not same_tensor(received, expected):
                    raise InjectionError(
                        f"{names[i]} of {type(self.denoiser).__name__} did not receive {before}; "
                        "the injector does not know this model's text path"
                    )
                state.path_seen = output
                if i < len(modules) - 1:
                    return
                if state.mixed is None:
                    state.projecting = True
                    try:
                        text = state.mixed_raw
                        for step in modules:
                            text = step(text)
                    finally:
                        state.projecting = False
                    if not isinstance(text, torch.Tensor) or text.shape != output.shape:
                        raise InjectionError(f"projecting the benign text through {', '.join(names)} gave a wrong shape")
                    state.mixed = text
                state.path_out = output

            return hook

        for i, module in enumerate(modules):
            self._handles.append(module.register_forward_hook(hook_for(i), with_kwargs=True))

    # ------------------------------------------------------------------ SD3 hooks

    def _install_joint_hooks(self, arguments: _Arguments) -> None:
        state = self.state
        assert state is not None
        if getattr(self.denoiser, "transformer_blocks", None) is None:
            raise InjectionError("joint attention injection needs a transformer with transformer_blocks")
        localized = [_block_index(name) for name in self.config.modules]

        def pre_hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if state.benign_kv is not None and state.benign_kv.recording:
                return  # the benign pass started below
            _advance_step(state, arguments.get(args, kwargs, "timestep"))
            state.benign_kv = None
            if not state.active:
                return
            call = arguments.as_kwargs(args, kwargs)
            if call.get("block_controlnet_hidden_states") is not None:
                # Residuals computed from the original text: a benign pass has none of its own.
                raise InjectionError(
                    "block_controlnet_hidden_states: SD3 injection supports text-to-image calls only "
                    "(no ControlNet residuals)"
                )
            skipped = set(call.get("skip_layers") or ())
            running = frozenset(i for i in localized if i not in skipped)
            if not running:
                return
            hidden = call["hidden_states"]
            targets = state.rows.to(hidden.device) + state.cond_offset(hidden.shape[0])
            passes = BenignKV(targets=targets, blocks=running)
            state.benign_kv = passes
            try:
                module(**_benign_call(call, state, targets))
            except BenignPassDone:
                pass
            else:
                raise InjectionError("the benign pass returned before its last localized block")
            finally:
                passes.recording = False
            if set(passes.kv) != running:
                raise InjectionError(f"the benign pass recorded text K/V at blocks {sorted(passes.kv)}, not {sorted(running)}")

        def post_hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            passes, state.benign_kv = state.benign_kv, None
            if passes is not None and passes.used != passes.blocks:
                raise InjectionError(
                    f"the benign text K/V were swapped in at blocks {sorted(passes.used)}, not {sorted(passes.blocks)}"
                )

        self._handles.append(self.denoiser.register_forward_pre_hook(pre_hook, with_kwargs=True))
        self._handles.append(self.denoiser.register_forward_hook(post_hook))

    # ------------------------------------------------------------------ after the call

    def verify(self) -> InjectionReport:
        """Fail closed unless every localized module was patched at every step from the start."""
        state = self.state
        if state is None:
            raise InjectionError("injection was never installed")
        steps_run = state.step + 1
        if steps_run <= state.start_step:
            raise InjectionError(
                f"the pipeline ran {steps_run} step(s); patching starts at step {state.start_step}, "
                "so nothing was patched"
            )
        expected = set(range(state.start_step, steps_run))
        for name in self.config.modules:
            got = state.injected.get(name, set())
            if got != expected:
                raise InjectionError(
                    f"{name} was patched at steps {sorted(got)}, expected {state.start_step}..{steps_run - 1}"
                )
        return self.report()

    def report(self) -> InjectionReport:
        state = self.state
        assert state is not None
        return InjectionReport(
            patched_layers=list(self.config.modules),
            kind=self.kind,
            start_step=state.start_step,
            num_steps=self.num_steps,
            steps_run=state.step + 1,
            injected_steps={name: sorted(state.injected.get(name, set())) for name in self.config.modules},
            rewritten_rows=state.rows.tolist(),
            encode_s=self.encode_s,
        )


def _benign_call(call: dict[str, Any], state: CallState, targets: torch.Tensor) -> dict[str, Any]:
    """SD3's transformer call for the benign pass: the rewritten rows with the benign text."""
    benign = dict(call, return_dict=False)
    benign["hidden_states"] = call["hidden_states"].index_select(0, targets)
    text, proj = call["encoder_hidden_states"], call["pooled_projections"]
    benign["encoder_hidden_states"] = state.benign.index_select(0, state.rows).to(text.device, text.dtype)
    pooled = state.benign_pooled
    assert pooled is not None
    benign["pooled_projections"] = pooled.index_select(0, state.rows).to(proj.device, proj.dtype)
    timestep = call["timestep"]
    if isinstance(timestep, torch.Tensor) and timestep.ndim > 0:
        benign["timestep"] = timestep.index_select(0, targets)
    return benign


def _mix_mask(state: CallState, mask: Any, targets: torch.Tensor, kind: str) -> None:
    """``state.mixed_mask``: the denoiser call's text mask with the benign mask in the rewrite rows."""
    if mask is None:
        state.call_mask = None
        return
    if kind not in ("cross", "projected"):
        raise InjectionError(f"{kind} attention with an encoder_attention_mask is not supported")
    if not isinstance(mask, torch.Tensor) or mask.ndim != 2:
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise InjectionError(f"the denoiser's encoder_attention_mask is {shape}; expected a (batch, tokens) mask")
    if state.benign_mask is None:
        raise InjectionError("the denoiser masks the text, but encode_prompt gave no mask for the benign text")
    state.call_mask = mask
    if state.mask_key == (id(mask), mask._version):
        return
    benign = state.benign_mask.index_select(0, state.rows).to(mask.device, mask.dtype)
    if benign.shape[1] != mask.shape[1]:
        raise InjectionError(f"the benign text mask has {benign.shape[1]} tokens, the call's {mask.shape[1]}")
    state.mixed_mask = mask.index_copy(0, targets, benign)
    state.mask_key, state.mask_source = (id(mask), mask._version), mask


def run_injected(
    pipe: Any,
    prompt: str | list[str],
    benign_prompt: str | list[str | None] | None,
    config: InjectionConfig,
    *,
    benign_inputs: dict[str, list[str | None]] | None = None,
    with_report: bool = False,
    timings: dict[str, float] | None = None,
    **pipe_kwargs: Any,
) -> Any:
    """Run ``pipe(prompt, **pipe_kwargs)`` with ``benign_prompt``'s text K/V in ``config.modules``.

    The one injected-call path of the guard, ``safetext localize`` and the benchmarks: the
    original prompt drives everything (queries, image stream, unconditional half, pooled
    embeddings); only the text-derived keys/values of the configured modules come from
    the benign texts, from ``config.start_step(num_inference_steps)`` on.

    * ``prompt`` / ``benign_prompt``: a string each, or lists of equal length. A None in
      the benign list leaves that prompt's images unpatched; all None runs the plain call.
    * ``benign_inputs``: benign texts for ``prompt_2`` / ``prompt_3`` (see :class:`Injection`).
    * ``pipe_kwargs`` go to the pipeline unchanged (generator, negative_prompt, prompt_2,
      num_images_per_prompt, callbacks, attention kwargs, output_type, ...). When they
      carry the original's precomputed ``prompt_embeds``, ``prompt`` is not passed to the
      pipeline and only names the texts of rows that are not rewritten.
    * ``with_report``: return ``(output, report)``; the report is None for a plain call.
    * ``timings``: filled with ``wait_s`` (for the pipeline lock), ``encode_s`` and ``generate_s``.

    Serialised per pipeline with :func:`~safetext.inject.locking.pipeline_lock`; the
    original processors are restored on return or error. Raises :class:`InjectionError`
    if the configured modules do not exist or were not patched at every step from the
    start step on.
    """
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if isinstance(benign_prompt, str) or benign_prompt is None:
        benign: list[str | None] = [benign_prompt] * len(prompts)
    else:
        benign = list(benign_prompt)
    # A copy of a prompt list: Z-Image's encode_prompt writes its chat-templated text into the list it gets.
    given = list(prompt) if isinstance(prompt, list) else prompt
    call = dict(pipe_kwargs) if pipe_kwargs.get("prompt_embeds") is not None else {"prompt": given, **pipe_kwargs}
    plain = all(b is None for b in benign) and not any(
        b is not None for values in (benign_inputs or {}).values() for b in values
    )
    times = timings if timings is not None else {}
    wait = time.perf_counter()
    report: InjectionReport | None = None
    with pipeline_lock(pipe):
        times["wait_s"] = time.perf_counter() - wait
        if plain:
            start = time.perf_counter()
            output = pipe(**call)
            times["generate_s"] = time.perf_counter() - start
        else:
            with Injection(pipe, config, prompts, benign, pipe_kwargs, benign_inputs=benign_inputs) as injection:
                start = time.perf_counter()
                output = pipe(**call)
                times["generate_s"] = time.perf_counter() - start
                report = injection.verify()
            times["encode_s"] = injection.encode_s
    return (output, report) if with_report else output
