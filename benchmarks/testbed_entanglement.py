"""How much the testbed's text encoder ties one prompt attribute to the other.

    python benchmarks/testbed_entanglement.py                 # the shipped weights
    python benchmarks/testbed_entanglement.py --model runs/stage8-model

The text encoder is causal, so in "a white banner" the states of "banner" can also carry
"white". This measures it directly: the states of the *second*-named attribute word in a
prompt and in the same prompt with the first attribute changed, as a relative squared
difference (:func:`invariance_loss`: 0 = identical states, about 1 = unrelated ones).
Text encoder only, no images: it runs in seconds. The same difference, used as a training
loss, made the states invariant without fixing the held-out white banners
(safetext/testbed/HISTORY.md, stage 8); the trainer does not carry that loss.

Rows:

* training pairs: each training prompt against a partner whose first attribute names
  another *training* pair (:func:`attribute_partner`), so held-out pairs never appear;
* per colour: the shape word "banner" after that colour vs after "red", and the colour word
  after "banner" vs after "sign" (shape-first templates). The held-out pairs (white and
  purple banners) appear here as text only; nothing is trained on them.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import replace
from pathlib import Path

import torch

from safetext.testbed import load
from safetext.testbed.data import token_ids
from safetext.testbed.render import HELDOUT_COMBOS, SHAPE_WORDS, TEMPLATES, SignSpec, sample_spec
from safetext.testbed.vocab import SHAPES, SIGN_COLORS, WORDS

COLOR_FIRST, SHAPE_FIRST = 0, 7  # 'a {color} {shape} that says ...', 'a {shape} in {color} that says ...'


def attribute_partner(spec: SignSpec, rng: random.Random) -> tuple[SignSpec, str]:
    """The same training sign with its *first*-named attribute changed, and the name of the second.

    The partner is always a training pair, so held-out pairs stay unseen, even as text.
    """
    template = TEMPLATES[spec.template]
    if template.index("{shape}") < template.index("{color}"):
        shapes = [s for s in SHAPES if s != spec.shape and (spec.color, s) not in HELDOUT_COMBOS]
        return replace(spec, shape=rng.choice(shapes)), "color"
    colors = [c for c in SIGN_COLORS if c != spec.color and (c, spec.shape) not in HELDOUT_COMBOS]
    return replace(spec, color=rng.choice(colors)), "shape"


def attribute_span(tokenizer, spec: SignSpec, attribute: str) -> tuple[int, int]:
    """(first position, token count) of the ``attribute`` word ("color" or "shape") in the ids of ``spec.prompt()``."""
    template = TEMPLATES[spec.template]
    values = {"color": spec.color, "shape": SHAPE_WORDS[spec.shape]}
    prefix = template[: template.index("{" + attribute + "}")].format(**values)
    start = 1 + len(tokenizer(prefix, add_special_tokens=False).input_ids)  # 1: the start token
    return start, len(tokenizer(values[attribute], add_special_tokens=False).input_ids)


def pair_spans(tokenizer, specs: list[SignSpec], partners: list[SignSpec], attributes: list[str], keep: list[bool]) -> torch.Tensor:
    """(batch, 3) rows for :func:`invariance_loss`: the attribute's start in the prompt, its start
    in the partner, its length (0 where ``keep`` is false: that row does not count)."""
    rows = []
    for spec, partner, attribute, k in zip(specs, partners, attributes, keep):
        start, length = attribute_span(tokenizer, spec, attribute)
        rows.append((start, attribute_span(tokenizer, partner, attribute)[0], length if k else 0))
    return torch.tensor(rows, dtype=torch.long)


def invariance_pairs(tokenizer, specs: list[SignSpec], keep: list[bool], rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """Partner prompt ids (batch, 77) and their :func:`pair_spans`, partners by :func:`attribute_partner`."""
    partners, attributes = zip(*(attribute_partner(spec, rng) for spec in specs))
    return token_ids(tokenizer, [p.prompt() for p in partners]), pair_spans(tokenizer, specs, list(partners), list(attributes), keep)


def invariance_loss(cond: torch.Tensor, partner: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the second attribute's states in a prompt and its partner,
    relative to their mean squared size (so it cannot shrink by scaling the states down)."""
    spans = spans.to(cond.device)
    longest = max(1, int(spans[:, 2].max()))
    offsets = torch.arange(longest, device=cond.device)
    valid = offsets[None] < spans[:, 2:3]
    width = cond.shape[-1]

    def pick(states: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        index = (starts[:, None] + offsets[None]).clamp(max=states.shape[1] - 1)
        return states.float().gather(1, index[..., None].expand(-1, -1, width))

    a, b = pick(cond, spans[:, 0]), pick(partner, spans[:, 1])
    size = ((a.detach() ** 2 + b.detach() ** 2) / 2).sum(-1)[valid].mean().clamp(min=1e-8)
    diff = ((a - b) ** 2).sum(-1)[valid]
    return diff.mean() / size if diff.numel() else cond.sum() * 0.0


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
