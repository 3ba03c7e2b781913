"""How much the testbed's text encoder ties one prompt attribute to the other.

    python benchmarks/testbed_entanglement.py                 # the shipped weights
    python benchmarks/testbed_entanglement.py --model runs/stage8-model

The text encoder is causal, so in "a white banner" the states of "banner" can also carry
"white". This measures it directly: the states of the *second*-named attribute word in a
prompt and in the same prompt with the first attribute changed, as a relative squared
difference (``safetext.testbed.train.invariance_loss``: 0 = identical states, about 1 =
unrelated ones). Text encoder only, no images: it runs in seconds.

Rows:

* training pairs: partners drawn as the trainer draws them (``attribute_partner``);
* per colour: the shape word "banner" after that colour vs after "red", and the colour word
  after "banner" vs after "sign" (shape-first templates). The held-out pairs (white and
  purple banners) appear here as text only; nothing is trained on them.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from safetext.testbed import load
from safetext.testbed.render import SignSpec, sample_spec
from safetext.testbed.train import invariance_loss, invariance_pairs, pair_spans, token_ids
from safetext.testbed.vocab import SIGN_COLORS, WORDS

COLOR_FIRST, SHAPE_FIRST = 0, 7  # 'a {color} {shape} that says ...', 'a {shape} in {color} that says ...'


def _states(pipe, prompts: list[str]) -> torch.Tensor:
    with torch.no_grad():
        return pipe.text_encoder(token_ids(pipe.tokenizer, prompts))[0]


def pair_difference(pipe, specs: list[SignSpec], partners: list[SignSpec], attribute: str) -> float:
    """Mean relative squared difference of ``attribute``'s word states between each spec and its partner."""
    spans = pair_spans(pipe.tokenizer, specs, partners, [attribute] * len(specs), [True] * len(specs))
    a = _states(pipe, [s.prompt() for s in specs])
    b = _states(pipe, [s.prompt() for s in partners])
    return float(invariance_loss(a, b, spans))


def measure(pipe, n: int = 256, seed: int = 0) -> dict:
    rng = random.Random(seed)
    specs = [sample_spec(rng, "train") for _ in range(n)]
    pair_ids, spans = invariance_pairs(pipe.tokenizer, specs, [True] * n, rng)
    with torch.no_grad():
        train_pairs = float(invariance_loss(_states(pipe, [s.prompt() for s in specs]), pipe.text_encoder(pair_ids)[0], spans))
    words = random.Random(seed).sample(list(WORDS), 12)
    per_color = {}
    for color in SIGN_COLORS:
        after_color = pair_difference(
            pipe,
            [SignSpec(w, color, "banner", template=COLOR_FIRST) for w in words],
            [SignSpec(w, "red", "banner", template=COLOR_FIRST) for w in words],
            "shape",
        )
        after_shape = pair_difference(
            pipe,
            [SignSpec(w, color, "banner", template=SHAPE_FIRST) for w in words],
            [SignSpec(w, color, "sign", template=SHAPE_FIRST) for w in words],
            "color",
        )
        per_color[color] = {"banner_after_color_vs_red": round(after_color, 4), "color_after_banner_vs_sign": round(after_shape, 4)}
    return {"training_pairs": round(train_pairs, 4), "per_color": per_color}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help="a testbed export folder (default: the shipped weights)")
    p.add_argument("--n", type=int, default=256, help="training pairs to draw")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    result = measure(load(folder=args.model), n=args.n)
    print(f"model: {args.model or 'shipped testbed'}")
    print(f"training pairs (second attribute's states, first attribute changed): {result['training_pairs']}")
    print("| colour | 'banner' after it vs after 'red' | it after 'banner' vs after 'sign' |")
    print("|---|---|---|")
    for color, row in result["per_color"].items():
        print(f"| {color} | {row['banner_after_color_vs_red']} | {row['color_after_banner_vs_sign']} |")


if __name__ == "__main__":
    main()
