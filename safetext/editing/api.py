"""``edit``: change the text in a generated image and keep the rest of it.

::

    result = safetext.edit(pipe, 'a red sign that says "hello"', "pizza", seed=0, num_inference_steps=20)
    result.original_image, result.edited_image, result.edited_prompt, result.to_dict()

The guard's machinery, with the user's words as the benign prompt: the *original* prompt
is generated twice with the same noise, once as it is and once with the localized
attention layers (the preset) reading the edited prompt's text keys/values. Only what
those layers write, the rendered text, changes; everything the other layers draw from
the original prompt stays. Generating the edited prompt outright (prompt swap) would
redraw the whole image.

Torch and diffusers are imported on the first call, so ``import safetext.editing`` is light.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetext.editing.target import EditPlan, plan_edit
from safetext.errors import EditError
from safetext.pipelines.output import images_of

if TYPE_CHECKING:  # pragma: no cover
    from safetext.inject.config import InjectionConfig
    from safetext.inject.installer import InjectionReport

#: Seeds drawn when the caller gives none: torch generators take 0 .. 2**64 - 1.
_SEED_RANGE = 2**63


@dataclass
class EditResult:
    """What one edit produced (JSON report via :meth:`to_dict`, without the images).

    ``original_images`` and ``edited_images`` are what the pipeline returned (one per
    ``num_images_per_prompt``, PIL images by default); ``seed`` is None when the caller
    passed a generator.
    """

    original_images: Any
    edited_images: Any
    original_prompt: str
    edited_prompt: str
    old_text: str
    new_text: str
    patched_layers: list[str]
    seed: int | None
    preset: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    injection: InjectionReport | None = None  # what the injected call did

    @property
    def original_image(self) -> Any:
        """The first original image."""
        return self.original_images[0]

    @property
    def edited_image(self) -> Any:
        """The first edited image."""
        return self.edited_images[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "original_prompt": self.original_prompt,
            "edited_prompt": self.edited_prompt,
            "old_text": self.old_text,
            "new_text": self.new_text,
            "seed": self.seed,
            "preset": self.preset,
            "patched_layers": list(self.patched_layers),
            "injection": self.injection.to_dict() if self.injection is not None else None,
            "timings": dict(self.timings),
        }


def _twin_generators(generator: Any, seed: int | None) -> tuple[Any, Any, int | None]:
    """Two generators in the same state (one per call), and the seed when it is known.

    A given generator is copied, not advanced, so both calls start from the noise it would
    have given one call.
    """
    import torch

    if generator is not None and seed is not None:
        raise EditError("pass either seed or generator, not both")
    if generator is None:
        if seed is None:
            seed = random.SystemRandom().randrange(_SEED_RANGE)
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**64:
            raise EditError(f"seed must be an integer in 0..2**64-1, not {seed!r}")
        return torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed), seed

    def copy(g: Any) -> Any:
        if not isinstance(g, torch.Generator):
            raise EditError(f"generator must be a torch.Generator or a list of them, not {type(g).__name__}")
        twin = torch.Generator(device=g.device)
        twin.set_state(g.get_state())
        return twin

    if isinstance(generator, (list, tuple)):
        return [copy(g) for g in generator], [copy(g) for g in generator], None
    return copy(generator), copy(generator), None


def _edited_inputs(plan: EditPlan, pipe_kwargs: dict[str, Any]) -> dict[str, list[str | None]] | None:
    """The edited ``prompt_2`` / ``prompt_3`` (SDXL, SD3) where they hold the old text too, so no
    text encoder keeps reading it."""
    from safetext.inject.encode import TEXT_INPUTS

    edited: dict[str, list[str | None]] = {}
    for name in TEXT_INPUTS[1:]:
        value = pipe_kwargs.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise EditError(f"{name} must be one string (an edit renders one prompt)")
        try:
            edited[name] = [plan_edit(value, plan.new_text, replace=plan.old_text).edited_prompt]
        except EditError:  # this input does not hold the old text: left as it is
            edited[name] = [None]
    return edited or None


def edit(
    pipe: Any,
    prompt: str,
    new_text: str,
    *,
    replace: str | None = None,
    preset: str | Path | list[str] | InjectionConfig = "auto",
    seed: int | None = None,
    **pipe_kwargs: Any,
) -> EditResult:
    """Render ``new_text`` in place of the text of ``prompt`` (or of ``replace``), keeping the rest.

    * ``replace``: the text to change when the prompt renders several, or when it is not
      quoted nor after a render cue. It must occur once (:class:`EditError` otherwise).
    * ``preset``: anything :func:`safetext.inject.resolve_preset` accepts.
    * ``seed`` or a ``generator`` in ``pipe_kwargs``: the noise both calls share (a random
      seed, reported in the result, when neither is given).
    * ``pipe_kwargs``: passed to both pipeline calls (steps, guidance scale, output type ...).

    Raises :class:`EditError` for an edit that cannot be made, and the errors of
    :func:`safetext.inject.run_injected` (``PresetError``, ``InjectionError``) when
    injection does not fit or did not run as configured.
    """
    from safetext.inject.encode import precomputed_text_args
    from safetext.inject.installer import run_injected
    from safetext.inject.presets import resolve_preset

    start = time.perf_counter()
    plan = plan_edit(prompt, new_text, replace=replace)
    embeds = precomputed_text_args(pipe_kwargs)
    if embeds:
        raise EditError(f"{embeds} cannot be edited; pass the text as prompt (and prompt_2 / prompt_3)")
    config = resolve_preset(pipe, preset)
    first, second, seed = _twin_generators(pipe_kwargs.pop("generator", None), seed)
    benign_inputs = _edited_inputs(plan, pipe_kwargs)

    original_timings: dict[str, float] = {}
    original = run_injected(pipe, prompt, None, config, timings=original_timings, generator=first, **pipe_kwargs)
    edited_timings: dict[str, float] = {}
    output, report = run_injected(
        pipe,
        prompt,
        plan.edited_prompt,
        config,
        benign_inputs=benign_inputs,
        with_report=True,
        timings=edited_timings,
        generator=second,
        **pipe_kwargs,
    )
    timings = {
        "original_s": original_timings.get("generate_s", 0.0),
        "edited_s": edited_timings.get("generate_s", 0.0),
        "encode_s": edited_timings.get("encode_s", 0.0),
        "total_s": time.perf_counter() - start,
    }
    return EditResult(
        original_images=images_of(original),
        edited_images=images_of(output),
        original_prompt=prompt,
        edited_prompt=plan.edited_prompt,
        old_text=plan.old_text,
        new_text=plan.new_text,
        patched_layers=report.patched_layers if report is not None else list(config.modules),
        seed=seed,
        preset=config.name or config.source,
        timings=timings,
        injection=report,
    )
