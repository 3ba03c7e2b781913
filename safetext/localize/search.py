"""Search strategies over the candidate attention modules: the paper's sweep, and group testing.

Both strategies see the model only through ``evaluate(modules, start_step) -> ConfigScore``
(one pipeline run over all pairs), so they can be tested against a synthetic oracle and
their run counts compared exactly.

**Target.** Rank single layers by how far patching each alone moves the text (text_score,
then the pixel shift, then forward order), then take the shortest prefix of that ranking
that moves the text while keeping fidelity (:class:`~safetext.localize.scoring.Criteria`).
That is the paper's procedure (single-layer sweep, then combinations of the best layers)
with the hand-picking made a rule.

* ``sweep`` measures every single layer (n runs), then grows the prefix.
* ``group`` finds the same ranking prefix best-first over groups of layers. Patching a
  group moves the text at least as much as patching any one of its members (more benign
  K/V never pulls the text back towards A), so a group's score bounds its members'. A
  heap holds measured groups by that bound; the top group is split (along the module
  tree, in two halves of similar size) and its halves measured; when a single layer
  reaches the top, no unmeasured layer can beat it, so it is the next layer of the
  sweep's ranking. Groups of layers that do not touch the text are measured once and
  never opened; groups of at most 4 open straight into their members. ``Criteria.margin``
  adds slack to group bounds against noise. It pays off when few of many layers matter
  (SDXL's 70: about a quarter of the sweep's runs on a synthetic oracle); with a handful
  of candidates of which several matter (the testbed: 3 of 7) it costs about as much as
  the sweep, since certifying a ranking then needs about one test per layer anyway.

**Start step.** For the chosen set, the latest of the first ``max_start`` steps from which
patching still moves the text as well as from step 0 (within ``start_tolerance``):
patching later keeps more of the unpatched image. The sweep tries every start; group
bisects, which assumes later starts never move the text more.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from safetext.localize.scoring import ConfigScore, Criteria

Evaluate = Callable[[tuple[str, ...], int], ConfigScore]
Phase = Literal["layers", "grow", "start"]
Strategy = Literal["sweep", "group"]
STRATEGIES: tuple[Strategy, ...] = ("sweep", "group")


@dataclass
class Run:
    """One configuration a strategy asked for, in order."""

    phase: Phase
    score: ConfigScore


class Ledger:
    """One strategy's evaluations: memoised by configuration and counted, so runs compare exactly."""

    def __init__(self, evaluate: Evaluate, candidates: Sequence[str], on_run: Callable[[Run], None] | None = None) -> None:
        self.evaluate = evaluate
        self.order = {name: i for i, name in enumerate(candidates)}
        self.on_run = on_run
        self.memo: dict[tuple[tuple[str, ...], int], ConfigScore] = {}
        self.runs: list[Run] = []

    def normalise(self, modules: Sequence[str]) -> tuple[str, ...]:
        unknown = [m for m in modules if m not in self.order]
        if unknown:
            raise ValueError(f"not candidate modules: {unknown}")
        return tuple(sorted(set(modules), key=self.order.__getitem__))

    def __call__(self, modules: Sequence[str], start: int, phase: Phase) -> ConfigScore:
        key = (self.normalise(modules), start)
        if key not in self.memo:
            self.memo[key] = self.evaluate(*key)
            run = Run(phase, self.memo[key])
            self.runs.append(run)
            if self.on_run is not None:
                self.on_run(run)
        return self.memo[key]

    def count(self, phase: Phase | None = None) -> int:
        return sum(1 for r in self.runs if phase is None or r.phase == phase)


@dataclass
class SearchResult:
    """What one strategy found and what it cost."""

    strategy: Strategy
    modules: tuple[str, ...]
    start_step: int
    accepted: bool  # False: no prefix met the criteria; ``modules`` is the best prefix found
    ranking: list[str]  # single layers in ranked order (group: only those it had to rank)
    final: ConfigScore  # the chosen set at the chosen start
    runs: list[Run] = field(default_factory=list)
    seconds: float = 0.0

    def run_counts(self) -> dict[str, int]:
        counts = {"layers": 0, "grow": 0, "start": 0}
        for run in self.runs:
            counts[run.phase] += 1
        counts["layer_search"] = counts["layers"] + counts["grow"]
        counts["total"] = len(self.runs)
        return counts

    def to_dict(self) -> dict[str, object]:
        return {
            "strategy": self.strategy,
            "modules": list(self.modules),
            "start_step": self.start_step,
            "accepted": self.accepted,
            "ranking": list(self.ranking),
            "runs": self.run_counts(),
            "seconds": round(self.seconds, 2),
            "final": self.final.to_dict(),
            "log": [{"phase": r.phase, **r.score.to_dict()} for r in self.runs],
        }


def rank_key(score: ConfigScore, index: int, slack: float = 0.0) -> tuple[float, float, int]:
    """Heap/sort key: higher text score first, then higher pixel shift, then forward order."""
    return (-(round(score.text_score, 4) + slack), -(round(score.toward_b, 4) + slack), index)


def split(group: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Two halves of ``group`` that follow the module tree (``up_blocks.0`` | ``up_blocks.1``).

    The group's names share a dotted prefix; the next name component partitions them into
    subtrees (kept in forward order). The cut between subtrees that best balances the two
    sides wins, so sibling blocks stay together and a flat list is bisected.
    """
    if len(group) < 2:
        raise ValueError("cannot split fewer than two modules")
    parts = [name.split(".") for name in group]
    depth = 0
    while all(len(p) > depth + 1 for p in parts) and len({p[depth] for p in parts}) == 1:
        depth += 1
    subtrees: dict[str, list[str]] = {}
    for name, p in zip(group, parts):
        subtrees.setdefault(p[depth] if len(p) > depth else name, []).append(name)
    blocks = list(subtrees.values())
    if len(blocks) == 1:  # names that do not nest (should not happen): plain bisection
        half = len(group) // 2
        return [group[:half], group[half:]]
    sizes = [len(b) for b in blocks]
    cut = min(range(1, len(blocks)), key=lambda c: abs(sum(sizes[:c]) - sum(sizes[c:])))
    return [tuple(m for b in blocks[:cut] for m in b), tuple(m for b in blocks[cut:] for m in b)]


def grow(layers: Iterator[str], ledger: Ledger, criteria: Criteria) -> tuple[tuple[str, ...], bool, ConfigScore]:
    """The shortest prefix of ``layers`` that the criteria accept (else the best prefix tried)."""
    chosen: list[str] = []
    tried: list[ConfigScore] = []
    for layer in layers:
        chosen.append(layer)
        score = ledger(chosen, 0, "grow")
        tried.append(score)
        if criteria.accepts(score):
            return score.modules, True, score
    if not tried:
        raise ValueError("no candidate modules")
    best = max(tried, key=lambda s: (criteria.faithful(s), round(s.text_score, 4), -len(s.modules)))
    return best.modules, False, best


def _keeps(score: ConfigScore, at_zero: ConfigScore, criteria: Criteria) -> bool:
    return criteria.accepts(score) and score.text_score >= at_zero.text_score - criteria.start_tolerance


def start_sweep(modules: tuple[str, ...], ledger: Ledger, criteria: Criteria, max_start: int) -> tuple[int, ConfigScore]:
    """Try every start in 0..max_start; the latest that keeps the text moved wins."""
    at_zero = ledger(modules, 0, "start")
    scores = {s: ledger(modules, s, "start") for s in range(1, max_start + 1)}
    kept = [s for s, score in scores.items() if _keeps(score, at_zero, criteria)]
    best = max(kept, default=0)
    return best, scores.get(best, at_zero)


def start_bisect(modules: tuple[str, ...], ledger: Ledger, criteria: Criteria, max_start: int) -> tuple[int, ConfigScore]:
    """Binary search for the latest start that keeps the text moved (assumes it is monotone)."""
    at_zero = ledger(modules, 0, "start")
    lo, hi = 0, max_start
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _keeps(ledger(modules, mid, "start"), at_zero, criteria):
            lo = mid
        else:
            hi = mid - 1
    return lo, ledger(modules, lo, "start")


def best_first(candidates: Sequence[str], ledger: Ledger, criteria: Criteria, leaf_size: int = 4) -> Iterator[str]:
    """Yield single layers in the sweep's ranking order, opening only groups that could hold the next one.

    A group of at most ``leaf_size`` modules opens straight into single modules: halving it
    would cost about as many runs as measuring its members, and more when both halves matter.
    """
    index = {name: i for i, name in enumerate(candidates)}
    if len(candidates) == 1:
        yield candidates[0]
        return
    heap: list[tuple[tuple[float, float, int], tuple[str, ...]]] = []

    def push(group: tuple[str, ...]) -> None:
        score = ledger(group, 0, "layers")
        slack = criteria.margin if len(group) > 1 else 0.0
        heapq.heappush(heap, (rank_key(score, index[group[0]], slack), group))

    for child in split(tuple(candidates)):
        push(child)
    while heap:
        _, group = heapq.heappop(heap)
        if len(group) == 1:
            yield group[0]
        else:
            for child in split(group) if len(group) > leaf_size else [(m,) for m in group]:
                push(child)


def run_search(
    strategy: Strategy,
    candidates: Sequence[str],
    evaluate: Evaluate,
    criteria: Criteria = Criteria(),
    *,
    max_start: int = 0,
    on_run: Callable[[Run], None] | None = None,
) -> SearchResult:
    """Run one strategy: rank layers, grow the smallest accepted prefix, then search the start step."""
    if not candidates:
        raise ValueError("no candidate modules to search")
    began = time.perf_counter()
    ledger = Ledger(evaluate, candidates, on_run)
    ranking: list[str] = []
    if strategy == "sweep":
        singles = [ledger((m,), 0, "layers") for m in candidates]
        order = sorted(range(len(candidates)), key=lambda i: rank_key(singles[i], i))
        ranking = [candidates[i] for i in order]
        layers: Iterator[str] = iter(ranking)
    elif strategy == "group":

        def recorded() -> Iterator[str]:
            for layer in best_first(candidates, ledger, criteria):
                ranking.append(layer)
                yield layer

        layers = recorded()
    else:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
    modules, accepted, final = grow(layers, ledger, criteria)
    start = 0
    if accepted and max_start > 0:
        pick_start = start_sweep if strategy == "sweep" else start_bisect
        start, final = pick_start(modules, ledger, criteria, max_start)
    return SearchResult(
        strategy=strategy,
        modules=modules,
        start_step=start,
        accepted=accepted,
        ranking=ranking,
        final=final,
        runs=list(ledger.runs),
        seconds=time.perf_counter() - began,
    )
