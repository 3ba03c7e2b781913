"""Search strategies over the candidate attention modules: the paper's sweep, group testing, attribution.

All strategies see the model only through ``evaluate(modules, start_step) -> ConfigScore``
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
* ``attribution`` takes its ranking from one gradient pass
  (:mod:`~safetext.localize.attribution`) instead of single-layer runs, predicts the set
  size as the shortest prefix holding ``Criteria.attribution_mass`` of the positive
  attribution, and then only *certifies* the boundary with real runs: the predicted prefix,
  then its neighbours (galloping, then bisection) until a prefix is accepted and the one
  before it is not. When the prediction is right or one off, that is two runs. It finds
  the sweep's set when the gradient ranks the layers that matter as the sweep does; the
  benchmark checks that on the testbed.

**Start step.** For the chosen set, the latest of the first ``max_start`` steps from which
patching still moves the text as well as from step 0 (within ``start_tolerance``):
patching later keeps more of the unpatched image. The sweep tries every start; the other
strategies try the latest start first and bisect below it when it fails (one run when the
latest start works), which assumes later starts never move the text more.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from safetext.localize.scoring import ConfigScore, Criteria

Evaluate = Callable[[tuple[str, ...], int], ConfigScore]
Phase = Literal["layers", "grow", "start"]
Strategy = Literal["sweep", "group", "attribution"]
STRATEGIES: tuple[Strategy, ...] = ("sweep", "group", "attribution")


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
    extra_runs: float = 0.0  # work besides patched runs (the attribution pass), in run-equivalents

    def run_counts(self) -> dict[str, float]:
        counts: dict[str, float] = {"layers": 0, "grow": 0, "start": 0}
        for run in self.runs:
            counts[run.phase] += 1
        counts["layer_search"] = counts["layers"] + counts["grow"]
        counts["total"] = len(self.runs)
        counts["attribution"] = round(self.extra_runs, 3)
        counts["cost"] = round(len(self.runs) + self.extra_runs, 3)
        return counts

    @property
    def cost(self) -> float:
        """Patched runs plus other work in run-equivalents: the unit the strategies compare in."""
        return len(self.runs) + self.extra_runs

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
    """The latest start that keeps the text moved: ``max_start`` first, else binary search below it.

    Assumes keeping is monotone (a later start never moves the text more).
    """
    at_zero = ledger(modules, 0, "start")
    latest = ledger(modules, max_start, "start")
    if _keeps(latest, at_zero, criteria):
        return max_start, latest
    lo, hi = 0, max_start - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _keeps(ledger(modules, mid, "start"), at_zero, criteria):
            lo = mid
        else:
            hi = mid - 1
    return lo, ledger(modules, lo, "start")


def attribution_ranking(candidates: Sequence[str], scores: Mapping[str, float]) -> list[str]:
    """Candidates by attribution score, highest first (forward order breaks ties)."""
    missing = [m for m in candidates if m not in scores]
    if missing:
        raise ValueError(f"no attribution score for {missing}")
    return sorted(candidates, key=lambda m: (-round(scores[m], 9), candidates.index(m)))


def predicted_size(ranking: Sequence[str], scores: Mapping[str, float], mass: float) -> int:
    """The shortest prefix of ``ranking`` holding ``mass`` of the positive attribution (1 if none is positive)."""
    positive = [max(0.0, scores[m]) for m in ranking]
    total = sum(positive)
    if total <= 0:
        return 1
    running = 0.0
    for k, value in enumerate(positive, 1):
        running += value
        if running >= mass * total - 1e-12:
            return k
    return len(ranking)


def _gallop() -> Iterator[int]:
    """Step sizes 1, 1, 2, 4, ...: two single steps first, since a guess is most often one off."""
    yield 1
    step = 1
    while True:
        yield step
        step *= 2


def certify(ranking: Sequence[str], guess: int, ledger: Ledger, criteria: Criteria) -> tuple[tuple[str, ...], bool, ConfigScore]:
    """The shortest accepted prefix of ``ranking``, searched outwards from a guessed length.

    Assumes a longer prefix never moves the text less, so the accepted lengths form a range:
    below it the text does not move enough, above it fidelity is lost. An accepted guess
    gallops down and bisects; a guess that moves too little gallops up; a
    guess that moves the text but loses fidelity scans the shorter prefixes in order.
    """
    n = len(ranking)
    if n == 0:
        raise ValueError("no candidate modules")
    tried: dict[int, ConfigScore] = {}

    def accepted(k: int) -> bool:
        tried[k] = ledger(ranking[:k], 0, "grow")
        return criteria.accepts(tried[k])

    def best() -> tuple[tuple[str, ...], bool, ConfigScore]:
        score = max(tried.values(), key=lambda s: (criteria.faithful(s), round(s.text_score, 4), -len(s.modules)))
        return score.modules, False, score

    guess = min(max(guess, 1), n)
    lo, hi = 0, guess  # lo: longest prefix known too weak (0: none); hi: shortest known accepted
    if accepted(guess):
        for step in _gallop():  # down
            if hi - lo <= 1:
                break
            k = max(lo + 1, hi - step)
            if not accepted(k):
                lo = k
                break
            hi = k
    elif criteria.moved(tried[guess]) and criteria.writes_b(tried[guess]):  # too many layers for fidelity
        for k in range(1, guess):
            if accepted(k):
                return tried[k].modules, True, tried[k]
        return best()
    else:
        lo = guess
        for step in _gallop():  # up
            k = min(n, lo + step)
            if accepted(k):
                hi = k
                break
            if k == n or not criteria.faithful(tried[k]):
                return best()
            lo = k
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if accepted(mid):
            hi = mid
        else:
            lo = mid
    return tried[hi].modules, True, tried[hi]


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
    attribution: Mapping[str, float] | None = None,
    attribution_cost: float = 0.0,
) -> SearchResult:
    """Run one strategy: rank layers, find the smallest accepted prefix, then search the start step.

    ``attribution`` (module -> score) is required by, and only used by, the ``attribution``
    strategy; ``attribution_cost`` is what computing it cost, in run-equivalents.
    """
    if not candidates:
        raise ValueError("no candidate modules to search")
    if strategy == "attribution" and attribution is None:
        raise ValueError("the attribution strategy needs attribution scores")
    began = time.perf_counter()
    ledger = Ledger(evaluate, candidates, on_run)
    ranking: list[str] = []
    if strategy == "attribution":
        assert attribution is not None
        ranking = attribution_ranking(list(candidates), attribution)
        guess = predicted_size(ranking, attribution, criteria.attribution_mass)
        modules, accepted, final = certify(ranking, guess, ledger, criteria)
    elif strategy == "sweep":
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
    if strategy != "attribution":
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
        extra_runs=attribution_cost if strategy == "attribution" else 0.0,
    )
