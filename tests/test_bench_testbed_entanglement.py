"""benchmarks/testbed_entanglement.py: the attribute spans, partners and the relative difference it measures."""

from __future__ import annotations

import random

import pytest
from _bench_scripts import load_benchmark

torch = pytest.importorskip("torch")

from safetext.testbed import model as tb  # noqa: E402
from safetext.testbed.render import HELDOUT_COMBOS, SHAPE_WORDS, TEMPLATES, SignSpec, sample_spec  # noqa: E402


@pytest.fixture(scope="module")
def te():  # type: ignore[no-untyped-def]
    return load_benchmark("testbed_entanglement")


def test_attribute_span_points_at_the_attribute_word(te, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """For every template, the span covers exactly the tokens of the named word."""
    tokenizer = tb.build_tokenizer(tmp_path / "tok")
    for template in range(len(TEMPLATES)):
        spec = SignSpec("cocktail", "yellow", "banner", template=template)
        ids = tokenizer(spec.prompt()).input_ids
        for attribute, word in (("color", spec.color), ("shape", SHAPE_WORDS[spec.shape])):
            start, length = te.attribute_span(tokenizer, spec, attribute)
            assert ids[start : start + length] == tokenizer(word, add_special_tokens=False).input_ids


def test_attribute_partner_changes_the_first_attribute_and_never_makes_a_heldout_pair(te) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(5)
    specs = [sample_spec(rng, "train") for _ in range(400)]
    seen = set()
    for spec in specs:
        partner, attribute = te.attribute_partner(spec, rng)
        shape_first = TEMPLATES[spec.template].index("{shape}") < TEMPLATES[spec.template].index("{color}")
        assert attribute == ("color" if shape_first else "shape")
        assert getattr(partner, attribute) == getattr(spec, attribute)  # the second attribute is kept
        first = "shape" if shape_first else "color"
        assert getattr(partner, first) != getattr(spec, first)
        assert (partner.word, partner.template, partner.font) == (spec.word, spec.template, spec.font)
        assert (partner.color, partner.shape) not in HELDOUT_COMBOS
        seen.add(attribute)
    assert seen == {"color", "shape"}


def test_invariance_loss_compares_the_spans_and_ignores_dropped_rows(te) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    cond = torch.randn(3, 77, 16)
    partner = cond.clone()
    partner[0, 12:16] = cond[0, 10:14]  # the same states, two positions later
    spans = torch.tensor([[10, 12, 4], [5, 5, 3], [20, 30, 0]])
    partner[2] = torch.randn(77, 16)  # length 0: must not count
    assert te.invariance_loss(cond, partner, spans).item() == pytest.approx(0.0, abs=1e-7)

    partner[1, 6] += 3.0  # inside the second span
    loss = te.invariance_loss(cond, partner, spans)
    assert loss.item() > 0
    assert te.invariance_loss(10 * cond, 10 * partner, spans).item() == pytest.approx(loss.item(), rel=1e-5)
    partner[1, 9] += 100.0  # outside every span
    assert te.invariance_loss(cond, partner, spans).item() == pytest.approx(loss.item(), rel=1e-5)

    cond.requires_grad_(True)
    te.invariance_loss(cond, partner, spans).backward()
    assert cond.grad[1, 6].abs().sum() > 0 and cond.grad[1, 9].abs().sum() == 0


def test_invariance_pairs_line_up_with_their_spans(te, tmp_path) -> None:  # type: ignore[no-untyped-def]
    tokenizer = tb.build_tokenizer(tmp_path / "tok")
    rng = random.Random(2)
    specs = [sample_spec(rng, "train") for _ in range(8)]
    ids, spans = te.invariance_pairs(tokenizer, specs, [True] * 7 + [False], random.Random(3))
    assert ids.shape == (8, tokenizer.model_max_length) and spans.shape == (8, 3)
    assert spans[-1, 2] == 0 and bool((spans[:-1, 2] > 0).all())  # a row not kept has length 0
