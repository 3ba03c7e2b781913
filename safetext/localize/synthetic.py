"""A synthetic patching oracle with a known answer, to test and measure the search logic.

No model runs: each module has an effect in [0, 1] and a set's text score combines its
members' effects as independent chances (``1 - prod(1 - e)``), which is monotone, as the
group search assumes. Starting later scales the score down after ``keep_until`` steps.
``sdxl_like_modules()`` spells the 70 cross-attention modules of SDXL base in forward
order, so the run counts of the strategies can be compared at the paper's scale.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from safetext.localize.scoring import ConfigScore


def sdxl_like_modules() -> list[str]:
    """The 70 ``attn2`` module names of SDXL base 1.0's U-Net, in forward order."""
    layout = [
        ("down_blocks.1", 2, 2),
        ("down_blocks.2", 2, 10),
        ("mid_block", 1, 10),
        ("up_blocks.0", 3, 10),
        ("up_blocks.1", 3, 2),
    ]
    return [
        f"{block}.attentions.{a}.transformer_blocks.{t}.attn2"
        for block, attentions, depth in layout
        for a in range(attentions)
        for t in range(depth)
    ]


@dataclass
class SyntheticOracle:
    """``oracle(modules, start)`` -> ConfigScore; counts its calls."""

    effects: Mapping[str, float]
    n_pairs: int = 8
    fidelity_cost: float = 0.01  # masked SSIM lost per patched module
    keep_until: int = 2  # starts after this step lose half the effect
    calls: list[tuple[tuple[str, ...], int]] = field(default_factory=list)

    def __call__(self, modules: tuple[str, ...], start: int) -> ConfigScore:
        self.calls.append((tuple(modules), start))
        miss = 1.0
        for name in modules:
            miss *= 1.0 - self.effects.get(name, 0.0)
        score = (1.0 - miss) * (1.0 if start <= self.keep_until else 0.5)
        return ConfigScore(
            modules=tuple(modules),
            start_step=start,
            n_pairs=self.n_pairs,
            text_score=score,
            b_rate=score,
            a_rate=1.0 - score,
            sim_b=score,
            sim_a=1.0 - score,
            toward_b=score,
            ssim_masked=1.0 - self.fidelity_cost * len(modules),
        )


    def attribution(self, candidates: Sequence[str], noise: float = 0.0, seed: int = 0) -> dict[str, float]:
        """A stand-in for the gradient pass: each module's effect, plus uniform noise of +-``noise``.

        Why: the attribution strategy's run count depends only on the ranking and the first
        guess, so the oracle's own effects (optionally blurred) test and measure it.
        """
        rng = random.Random(seed)
        return {m: self.effects.get(m, 0.0) + rng.uniform(-noise, noise) for m in candidates}


def sd15_like_modules() -> list[str]:
    """The 16 ``attn2`` module names of an SD 1.x/2.x U-Net, in forward order."""
    down = [f"down_blocks.{b}.attentions.{a}.transformer_blocks.0.attn2" for b in range(3) for a in range(2)]
    up = [f"up_blocks.{b}.attentions.{a}.transformer_blocks.0.attn2" for b in range(1, 4) for a in range(3)]
    return down + ["mid_block.attentions.0.transformer_blocks.0.attn2"] + up


def testbed_like_modules() -> list[str]:
    """The 7 ``attn2`` module names of the safetext testbed's U-Net, in forward order."""
    return [
        "down_blocks.1.attentions.0.transformer_blocks.0.attn2",
        "down_blocks.2.attentions.0.transformer_blocks.0.attn2",
        "mid_block.attentions.0.transformer_blocks.0.attn2",
        "up_blocks.0.attentions.0.transformer_blocks.0.attn2",
        "up_blocks.0.attentions.1.transformer_blocks.0.attn2",
        "up_blocks.1.attentions.0.transformer_blocks.0.attn2",
        "up_blocks.1.attentions.1.transformer_blocks.0.attn2",
    ]


def scaling_cases() -> list[tuple[str, SyntheticOracle, list[str], tuple[str, ...]]]:
    """Oracles of growing size, each with a known answer: (label, oracle, candidates, answer).

    Why: whether group testing pays depends on how many candidates there are per layer that
    matters, so the benchmark reports run counts at the testbed's, SD 1.5's and SDXL's scale.
    """
    cases = []
    for label, candidates, answer in (
        ("testbed-shaped, 7 layers, 2 matter", testbed_like_modules(), (4, 6)),
        ("SD 1.5-shaped, 16 layers, 2 matter", sd15_like_modules(), (10, 11)),
    ):
        chosen = tuple(candidates[i] for i in answer)
        cases.append((label, SyntheticOracle(answer_effects(candidates, chosen, effect=0.6)), candidates, chosen))
    oracle, candidates, chosen = paper_sdxl_oracle()
    cases.append(("SDXL-shaped, 70 layers, the paper's 3", oracle, candidates, chosen))
    return cases


def paper_sdxl_oracle(n_pairs: int = 8) -> tuple[SyntheticOracle, list[str], tuple[str, ...]]:
    """SDXL-shaped oracle whose answer is the paper's three layers; returns (oracle, candidates, answer)."""
    candidates = sdxl_like_modules()
    answer = tuple(f"up_blocks.0.attentions.2.transformer_blocks.{t}.attn2" for t in (1, 2, 3))
    effects: dict[str, float] = {name: 0.0 for name in candidates}
    effects.update({answer[0]: 0.5, answer[1]: 0.45, answer[2]: 0.4})  # 2 layers: 0.73, 3: 0.84
    effects["up_blocks.0.attentions.1.transformer_blocks.9.attn2"] = 0.1  # a weak neighbour
    effects["mid_block.attentions.0.transformer_blocks.4.attn2"] = 0.05
    return SyntheticOracle(effects, n_pairs=n_pairs), candidates, answer


def answer_effects(candidates: Sequence[str], answer: Sequence[str], effect: float = 0.6) -> dict[str, float]:
    """Effects where only ``answer`` moves the text (``effect`` each, slightly decreasing)."""
    effects = {name: 0.0 for name in candidates}
    for i, name in enumerate(answer):
        effects[name] = effect - 0.02 * i
    return effects
