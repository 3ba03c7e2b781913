"""The search logic against synthetic oracles with known answers (no model runs)."""

from __future__ import annotations

import pytest

from safetext.localize.scoring import Criteria
from safetext.localize import synthetic
from safetext.localize.search import (
    Ledger,
    attribution_ranking,
    certify,
    grow,
    predicted_size,
    run_search,
    split,
    start_bisect,
    start_sweep,
)
from safetext.localize.synthetic import (
    SyntheticOracle,
    answer_effects,
    paper_sdxl_oracle,
    sdxl_like_modules,
)

TESTBED_LIKE = synthetic.testbed_like_modules()
SD3_LIKE = [f"transformer_blocks.{i}.attn" for i in range(24)]


def test_sdxl_like_has_the_papers_70_layers() -> None:
    names = sdxl_like_modules()
    assert len(names) == 70 and len(set(names)) == 70
    assert names.index("up_blocks.0.attentions.2.transformer_blocks.1.attn2") > names.index("mid_block.attentions.0.transformer_blocks.9.attn2")


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        (tuple(TESTBED_LIKE), (TESTBED_LIKE[:3], TESTBED_LIKE[3:])),  # down+mid | up
        (tuple(TESTBED_LIKE[3:]), (TESTBED_LIKE[3:5], TESTBED_LIKE[5:])),  # up_blocks.0 | up_blocks.1
        (tuple(TESTBED_LIKE[:3]), (TESTBED_LIKE[:2], TESTBED_LIKE[2:3])),  # down_blocks | mid_block
        (tuple(SD3_LIKE), (SD3_LIKE[:12], SD3_LIKE[12:])),  # a flat list is bisected
        (tuple(SD3_LIKE[:3]), (SD3_LIKE[:1], SD3_LIKE[1:3])),
        (("a.x", "b.x"), (["a.x"], ["b.x"])),
    ],
)
def test_split_follows_the_module_tree(group: tuple[str, ...], expected: tuple[list[str], list[str]]) -> None:
    left, right = split(group)
    assert (list(left), list(right)) == (list(expected[0]), list(expected[1]))


@pytest.mark.parametrize(
    ("candidates", "answer"),
    [
        (TESTBED_LIKE, TESTBED_LIKE[3:4]),
        (TESTBED_LIKE, TESTBED_LIKE[3:5]),
        (TESTBED_LIKE, [TESTBED_LIKE[4], TESTBED_LIKE[5]]),
        (TESTBED_LIKE, [TESTBED_LIKE[0], TESTBED_LIKE[6]]),
        (SD3_LIKE, SD3_LIKE[10:11]),
        (SD3_LIKE, [SD3_LIKE[9], SD3_LIKE[10], SD3_LIKE[17]]),
    ],
)
def test_every_strategy_finds_the_known_answer(candidates: list[str], answer: list[str]) -> None:
    effects = answer_effects(candidates, answer, effect={1: 0.9, 2: 0.6, 3: 0.45}[len(answer)])  # all needed
    found = {}
    for strategy in ("sweep", "group", "attribution"):
        oracle = SyntheticOracle(effects)
        attribution = oracle.attribution(candidates, noise=0.02, seed=len(answer))  # ranks the answer first
        result = run_search(strategy, candidates, oracle, Criteria(), max_start=4, attribution=attribution)
        assert result.accepted
        assert set(result.modules) == set(answer)
        assert result.start_step == 2  # the oracle keeps its effect through step 2
        found[strategy] = result
    assert found["group"].ranking == found["sweep"].ranking[: len(found["group"].ranking)]


def test_group_search_needs_a_third_of_the_sweeps_runs_at_sdxl_scale() -> None:
    counts = {}
    for strategy in ("sweep", "group"):
        oracle, candidates, answer = paper_sdxl_oracle()
        result = run_search(strategy, candidates, oracle, Criteria(), max_start=4)
        assert result.modules == answer and result.accepted
        assert len(oracle.calls) == result.run_counts()["total"]  # every run reached the model once
        counts[strategy] = result.run_counts()
    assert counts["sweep"]["layers"] == 70
    assert counts["group"]["layer_search"] * 3 <= counts["sweep"]["layer_search"]
    assert counts["group"]["total"] * 3 <= counts["sweep"]["total"]


def test_group_search_uses_fewer_runs_when_one_layer_controls_the_text() -> None:
    effects = answer_effects(TESTBED_LIKE, TESTBED_LIKE[3:4], effect=0.9)
    sweep = run_search("sweep", TESTBED_LIKE, SyntheticOracle(effects), Criteria(), max_start=4)
    group = run_search("group", TESTBED_LIKE, SyntheticOracle(effects), Criteria(), max_start=4)
    assert group.modules == sweep.modules
    assert group.run_counts()["total"] < sweep.run_counts()["total"]
    assert group.run_counts()["start"] < sweep.run_counts()["start"]  # bisection vs every start


def test_grow_falls_back_to_the_best_prefix_when_nothing_is_enough() -> None:
    effects = answer_effects(TESTBED_LIKE, TESTBED_LIKE[:2], effect=0.3)
    for strategy in ("sweep", "group"):
        result = run_search(strategy, TESTBED_LIKE, SyntheticOracle(effects), Criteria(), max_start=4)
        assert not result.accepted
        assert result.start_step == 0  # no start search without an accepted set
        assert set(TESTBED_LIKE[:2]) <= set(result.modules)


def test_fidelity_limits_the_set() -> None:
    effects = answer_effects(TESTBED_LIKE, TESTBED_LIKE[:3], effect=0.5)
    strict = Criteria(min_fidelity=0.985)  # each patched module costs 0.01 SSIM: at most one module
    result = run_search("sweep", TESTBED_LIKE, SyntheticOracle(effects), strict)
    assert not result.accepted


def test_ledger_memoises_and_normalises_order() -> None:
    oracle = SyntheticOracle({})
    ledger = Ledger(oracle, TESTBED_LIKE)
    ledger([TESTBED_LIKE[2], TESTBED_LIKE[0]], 0, "layers")
    ledger([TESTBED_LIKE[0], TESTBED_LIKE[2]], 0, "grow")
    assert len(oracle.calls) == 1 and ledger.count() == 1
    assert oracle.calls[0][0] == (TESTBED_LIKE[0], TESTBED_LIKE[2])
    with pytest.raises(ValueError, match="not candidate"):
        ledger(["nope"], 0, "layers")


@pytest.mark.parametrize("keep_until", [0, 1, 2, 3, 5])
def test_start_bisection_agrees_with_the_start_sweep(keep_until: int) -> None:
    modules = (TESTBED_LIKE[3],)
    oracle = SyntheticOracle({TESTBED_LIKE[3]: 0.95}, keep_until=keep_until)
    swept, _ = start_sweep(modules, Ledger(oracle, TESTBED_LIKE), Criteria(), max_start=5)
    bisected, _ = start_bisect(modules, Ledger(oracle, TESTBED_LIKE), Criteria(), max_start=5)
    assert swept == bisected == keep_until


def test_unknown_strategy_and_empty_candidates_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        run_search("random", TESTBED_LIKE, SyntheticOracle({}))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no candidate"):
        run_search("sweep", [], SyntheticOracle({}))
    with pytest.raises(ValueError, match="no candidate"):
        grow(iter([]), Ledger(SyntheticOracle({}), TESTBED_LIKE), Criteria())


def test_scaling_cases_group_search_pays_more_the_more_layers() -> None:
    from safetext.localize.synthetic import scaling_cases

    ratios = []
    for label, oracle, candidates, answer in scaling_cases():
        totals = {}
        for strategy in ("sweep", "group"):
            oracle.calls.clear()
            result = run_search(strategy, candidates, oracle, Criteria(), max_start=4)
            assert result.modules == answer, (label, strategy)
            totals[strategy] = result.run_counts()["total"]
        assert totals["group"] <= totals["sweep"], label
        ratios.append(totals["group"] / totals["sweep"])
    assert [len(c[2]) for c in scaling_cases()] == [7, 16, 70]
    assert ratios == sorted(ratios, reverse=True) and ratios[-1] <= 1 / 3


def _prefix_oracle(candidates: list[str], size: int) -> SyntheticOracle:
    """The first ``size`` candidates are all needed (0.45 each: 2 give 0.70, 3 give 0.83)."""
    return SyntheticOracle(answer_effects(candidates, candidates[:size], effect=0.45))


@pytest.mark.parametrize("guess", range(1, 8))
def test_certify_finds_the_shortest_accepted_prefix_from_any_guess(guess: int) -> None:
    oracle = _prefix_oracle(TESTBED_LIKE, 3)
    ledger = Ledger(oracle, TESTBED_LIKE)
    modules, accepted, final = certify(TESTBED_LIKE, guess, ledger, Criteria())
    assert accepted and modules == tuple(TESTBED_LIKE[:3])
    assert final.modules == modules
    runs = ledger.count()
    # right or one off: the prefix and its neighbour; two off: three runs; far off: bisection
    assert runs == {1: 3, 2: 2, 3: 2, 4: 3, 5: 5, 6: 5, 7: 6}[guess]


def test_certify_scans_down_when_the_guess_loses_fidelity() -> None:
    oracle = _prefix_oracle(TESTBED_LIKE, 2)
    oracle.effects = answer_effects(TESTBED_LIKE, TESTBED_LIKE[:2], effect=0.6)
    strict = Criteria(min_fidelity=0.975)  # 0.01 SSIM per module: at most 2 modules keep fidelity
    modules, accepted, _ = certify(TESTBED_LIKE, 5, Ledger(oracle, TESTBED_LIKE), strict)
    assert accepted and modules == tuple(TESTBED_LIKE[:2])


def test_certify_falls_back_to_the_best_prefix_tried() -> None:
    oracle = SyntheticOracle(answer_effects(TESTBED_LIKE, TESTBED_LIKE[:2], effect=0.3))
    modules, accepted, final = certify(TESTBED_LIKE, 1, Ledger(oracle, TESTBED_LIKE), Criteria())
    assert not accepted
    assert set(TESTBED_LIKE[:2]) <= set(modules) and final.text_score == pytest.approx(1 - 0.7 * 0.72)


def test_predicted_size_and_ranking() -> None:
    scores = {"a": 0.05, "b": -0.01, "c": 0.4, "d": 0.05}
    ranking = attribution_ranking(["a", "b", "c", "d"], scores)
    assert ranking == ["c", "a", "d", "b"]  # ties keep forward order
    assert predicted_size(ranking, scores, 0.8) == 1
    assert predicted_size(ranking, scores, 0.9) == 2
    assert predicted_size(ranking, scores, 1.0) == 3
    assert predicted_size(ranking, {k: -1.0 for k in scores}, 0.9) == 1
    with pytest.raises(ValueError, match="no attribution score"):
        attribution_ranking(["a", "e"], scores)
    with pytest.raises(ValueError, match="needs attribution scores"):
        run_search("attribution", TESTBED_LIKE, SyntheticOracle({}))


def test_attribution_strategy_cost_counts_the_gradient_pass() -> None:
    oracle = _prefix_oracle(TESTBED_LIKE, 3)
    result = run_search(
        "attribution", TESTBED_LIKE, oracle, Criteria(), max_start=4, attribution=oracle.attribution(TESTBED_LIKE), attribution_cost=0.5
    )
    counts = result.run_counts()
    assert counts["layers"] == 0 and counts["total"] == len(oracle.calls)
    assert counts["cost"] == counts["total"] + 0.5 == result.cost
