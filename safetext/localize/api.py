"""``localize(pipe, pairs, ...)``: the whole search, from prompt pairs to a preset.

Steps: generate and read the baselines (A unpatched, B direct), run each requested
strategy through :func:`~safetext.localize.search.search` with an evaluator that patches
the pipeline and scores the images, and turn the answer into an
:class:`~safetext.inject.InjectionConfig` that ``Guard(preset=...)`` loads.

With ``strategies=("sweep", "group")`` the strategies share one cache of evaluated
configurations (the second one costs little pipeline time); each still counts every
configuration it asked for, so the run counts compare fairly. Time them separately
(``benchmarks/localize_bench.py`` does).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from safetext.errors import SafetextError
from safetext.inject import InjectionConfig, PresetMatch
from safetext.inject.sites import AttentionSite, attention_sites, denoiser_of
from safetext.localize.attribution import Attribution, AttributionUnsupported, attribute, attribution_steps, check_supported
from safetext.localize.pairs import PromptPair
from safetext.localize.runner import PatchRunner
from safetext.localize.scoring import Baselines, ConfigScore, Criteria, Scorer, WordReader, no_reader
from safetext.localize.search import STRATEGIES, Run, SearchResult, Strategy, run_search

#: Denoiser config keys copied into the preset's ``match`` (structure, not weights).
MATCH_KEYS = (
    "in_channels",
    "sample_size",
    "block_out_channels",
    "down_block_types",
    "mid_block_type",
    "up_block_types",
    "layers_per_block",
    "transformer_layers_per_block",
    "cross_attention_dim",
    "encoder_hid_dim",
    "attention_head_dim",
    "num_layers",
    "num_attention_heads",
    "joint_attention_dim",
    "caption_projection_dim",
    "patch_size",
)
ATTRIBUTION_POINTS = 5  # steps the attribution pass looks at, spread over the run
START_FRACTION = 0.2  # the start search covers the first 20% of the steps (the paper's starts: 0-8%)


class LocalizeError(SafetextError, ValueError):
    """The pipeline cannot be localized (no patchable text attention, bad settings)."""


def default_max_start(steps: int) -> int:
    """Latest start step the search tries: the first fifth of the run, at least step 1 when steps > 1."""
    return min(steps - 1, max(1, math.ceil(START_FRACTION * steps))) if steps > 1 else 0


@dataclass
class LocalizeResult:
    """Everything a report or preset needs from one ``localize`` call."""

    pipeline: str
    component: str
    steps: int
    seed: int
    pairs: list[PromptPair]
    sites: list[AttentionSite]
    baselines: Baselines
    results: dict[str, SearchResult]
    chosen: SearchResult
    preset: InjectionConfig
    criteria: Criteria
    max_start: int
    evaluated: dict[tuple[tuple[str, ...], int], ConfigScore]
    samples: dict[tuple[tuple[str, ...], int], list[Image.Image]]  # first pairs' images per configuration
    attribution: Attribution | None = None
    denoiser_params: int = 0
    calls: int = 0
    images: int = 0
    seconds: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def agree(self) -> bool | None:
        """Whether the strategies found the same modules (None with one strategy)."""
        found = {r.modules for r in self.results.values()}
        return None if len(self.results) < 2 else len(found) == 1

    def single(self, module: str) -> ConfigScore | None:
        """The single-layer score of ``module`` at start 0, if any strategy measured it."""
        return self.evaluated.get(((module,), 0))


def build_preset(
    pipe: Any,
    result: SearchResult,
    steps: int,
    *,
    name: str,
    source: str,
    notes: str = "",
) -> InjectionConfig:
    """The preset file for ``result``: modules, start as a fraction of the steps, and a ``match``."""
    component, denoiser = denoiser_of(pipe)
    config = dict(denoiser.config)
    match = {k: _listed(config[k]) for k in MATCH_KEYS if k in config and _plain(config[k])}
    return InjectionConfig(
        name=name,
        modules=list(result.modules),
        start=round(result.start_step / steps, 6),
        source=source,
        notes=notes,
        match=PresetMatch(pipelines=[type(pipe).__name__], component=component, config=match),  # type: ignore[arg-type]
    )


def _listed(value: Any) -> Any:
    """Tuples as lists, so the preset equals itself after a YAML round trip."""
    return [_listed(v) for v in value] if isinstance(value, (list, tuple)) else value


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def resolve_strategies(sites: Sequence[AttentionSite], strategies: Sequence[str]) -> tuple[Strategy, ...]:
    """Validate the requested strategies; ``auto`` becomes ``attribution`` where ``sites`` allow it, else ``group``.

    Duplicates go. Asking for ``attribution`` on a pipeline it cannot handle is an error.
    """
    try:
        check_supported(sites)
        supported, why = True, ""
    except AttributionUnsupported as exc:
        supported, why = False, str(exc)
    resolved: list[Strategy] = []
    for name in strategies:
        if name == "auto":
            name = "attribution" if supported else "group"
        elif name == "attribution" and not supported:
            raise LocalizeError(why)
        if name not in STRATEGIES:
            raise LocalizeError(f"unknown strategy {name!r}; choose from auto, {', '.join(STRATEGIES)}")
        if name not in resolved:
            resolved.append(name)  # type: ignore[arg-type]
    return tuple(resolved)


def localize(
    pipe: Any,
    pairs: Sequence[PromptPair],
    *,
    steps: int,
    seed: int = 0,
    strategies: Sequence[str] = ("auto",),
    criteria: Criteria = Criteria(),
    max_start: int | None = None,
    reader: WordReader = no_reader,
    batch_size: int = 8,
    call_kwargs: dict[str, Any] | None = None,
    name: str | None = None,
    keep_images: int = 3,
    on_run: Callable[[str, Run], None] | None = None,
    on_stage: Callable[[str, int | None], None] | None = None,
    attribution_points: int = ATTRIBUTION_POINTS,
) -> LocalizeResult:
    """Localize the text-rendering attention modules of ``pipe`` with activation patching.

    ``strategies``: ``auto`` (attribution where supported, else group), ``attribution``,
    ``group`` and/or ``sweep``. The attribution strategy records the denoiser's inputs at
    ``attribution_points`` steps of the baseline runs and ranks the modules by gradient.
    """
    if not strategies:
        raise LocalizeError("give at least one strategy")
    began = time.perf_counter()
    sites = attention_sites(pipe)
    if not sites:
        raise LocalizeError(
            f"{type(pipe).__name__} has no text attention module that safetext's injection engine can patch "
            "(it supports U-Net and DiT cross-attention, DeepFloyd IF added-KV attention, and the double- and "
            "single-stream attention of SD3 and FLUX)"
        )
    resolved = resolve_strategies(sites, strategies)
    record = attribution_steps(steps, attribution_points) if "attribution" in resolved else ()
    runner = PatchRunner(
        pipe, pairs, steps=steps, seed=seed, batch_size=batch_size, call_kwargs=call_kwargs, record_steps=record
    )
    max_start = default_max_start(steps) if max_start is None else min(max_start, steps - 1)
    scorer = Scorer(reader)
    if on_stage:
        on_stage("baselines: prompt A unpatched, prompt B direct", 2)
    words = [(p.word_a, p.word_b) for p in pairs]
    baselines = scorer.set_baselines(words, runner.unpatched(), runner.b_direct())
    attribution: Attribution | None = None
    if "attribution" in resolved:
        if on_stage:
            on_stage(f"attribution: one gradient pass at steps {', '.join(map(str, record))}", None)
        attribution = attribute(
            denoiser_of(pipe)[1], runner.sites, runner.recorded["a"], runner.recorded["b"], run_rows=runner.run_rows
        )

    evaluated: dict[tuple[tuple[str, ...], int], ConfigScore] = {}
    samples: dict[tuple[tuple[str, ...], int], list[Image.Image]] = {}

    def evaluate(modules: tuple[str, ...], start: int) -> ConfigScore:
        key = (modules, start)
        if key not in evaluated:
            images = runner.patched(modules, start)
            evaluated[key] = scorer.score(modules, start, images)
            samples[key] = images[:keep_images]
        return evaluated[key]

    results: dict[str, SearchResult] = {}
    for strategy in resolved:
        if on_stage:  # the sweep's size is known up to its growth steps; the group search's is not
            on_stage(f"{strategy} search", len(runner.candidates) + max_start if strategy == "sweep" else None)
        callback = (lambda run, s=strategy: on_run(s, run)) if on_run else None
        results[strategy] = run_search(
            strategy,
            runner.candidates,
            evaluate,
            criteria,
            max_start=max_start,
            on_run=callback,
            attribution=attribution.scores if attribution else None,
            attribution_cost=attribution.run_equivalents if attribution else 0.0,
        )
    chosen = results.get("sweep") or results[resolved[0]]
    label = "+".join(resolved)
    scored_by = "OCR" if baselines.ocr_usable else "pixels (OCR could not tell A from B direct)"
    preset = build_preset(
        pipe,
        chosen,
        steps,
        name=name or f"{type(pipe).__name__}-localized",
        source=(
            f"safetext localize: {chosen.strategy} search, {len(pairs)} pairs, {steps} steps, seed {seed}, "
            f"start step {chosen.start_step} of {steps}"
        ),
        notes=(
            f"text score {chosen.final.text_score:.3f} from {scored_by}, "
            f"B read {chosen.final.b_rate:.2f}, A read {chosen.final.a_rate:.2f}, masked SSIM {chosen.final.ssim_masked:.3f}; "
            f"strategies run: {label}"
            + ("" if chosen.accepted else "; WARNING: no set met the criteria, this is the best prefix found")
            + (
                f"; WARNING: weak signal, the model draws A and B almost alike (mean text-box difference "
                f"{baselines.pixel_contrast:.2f}/255) and OCR cannot read them"
                if baselines.weak_signal
                else ""
            )
        ),
    )
    return LocalizeResult(
        pipeline=type(pipe).__name__,
        component=denoiser_of(pipe)[0],
        steps=steps,
        seed=seed,
        pairs=list(pairs),
        sites=runner.sites,
        baselines=baselines,
        results=results,
        chosen=chosen,
        preset=preset,
        criteria=criteria,
        max_start=max_start,
        evaluated=evaluated,
        samples=samples,
        attribution=attribution,
        denoiser_params=sum(p.numel() for p in denoiser_of(pipe)[1].parameters()),
        calls=runner.calls,
        images=runner.images,
        seconds=time.perf_counter() - began,
        settings={"batch_size": batch_size, **{k: v for k, v in (call_kwargs or {}).items() if _plain(v)}},
    )
