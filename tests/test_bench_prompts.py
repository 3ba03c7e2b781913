"""The versioned prompt sets parse, and the testbed subsets stay inside the testbed's vocabulary."""

from __future__ import annotations

import re

import pytest

from safetext.bench.decide import PairPolicy, pair_decision
from safetext.bench.methods import Plan, plan
from safetext.bench.prompts import SUITES, load_prompt_set, parse_line, prompt_set_path, select
from safetext.policy.decision import Action, Decision, Span
from safetext.testbed.vocab import TOXIC, WORDS

WORD_IN_PROMPT = re.compile(r'"([^"]+)"|(?:reading|text:) ([a-z0-9]+)')


@pytest.mark.parametrize("suite", SUITES)
def test_sets_parse_and_testbed_subset_is_in_vocabulary(suite: str) -> None:
    items = load_prompt_set(prompt_set_path(suite), suite)
    testbed = select(items, tag="testbed")
    assert len(testbed) >= 16 and len(items) > len(testbed)  # a testbed subset, and prompts for real models
    assert len({it.prompt for it in items}) == len(items)  # no duplicates
    for it in testbed:
        m = WORD_IN_PROMPT.search(it.prompt)
        assert m is not None, it.prompt
        assert (m.group(1) or m.group(2)) in WORDS, it.prompt
    if suite == "toxic":
        assert {it.term for it in items} <= set(TOXIC)
        assert {it.term for it in testbed} == set(TOXIC)
        assert any("obfuscated" in it.tags for it in items)
        assert {it.term for it in select(testbed, limit=len(TOXIC))} == set(TOXIC)  # --limit 16 covers every term
    if suite == "edit":
        assert all(it.source and it.target and it.source != it.target for it in items)


def test_parse_line_errors() -> None:
    with pytest.raises(ValueError, match="tags \\| key \\| prompt"):
        parse_line("toxic", 0, "just a prompt")
    with pytest.raises(ValueError, match="blocked term"):
        parse_line("toxic", 0, "testbed | - | a sign")
    with pytest.raises(ValueError, match="source -> target"):
        parse_line("edit", 0, "testbed | open | a sign")
    item = parse_line("edit", 3, "testbed, x | open -> exit | a red sign that says \"open\"")
    assert (item.id, item.tags, item.source, item.target) == ("edit-003", ("testbed", "x"), "open", "exit")


def test_pair_decision_rewrites_the_rendered_word() -> None:
    d = pair_decision('an open shop with a sign that says "OPEN"', "open", "exit")
    assert d.action is Action.REWRITE
    assert d.benign_prompt == 'an open shop with a sign that says "exit"'  # the last, rendered occurrence
    assert PairPolicy([]).decide("anything").action is Action.ALLOW
    with pytest.raises(ValueError, match="does not occur"):
        pair_decision("a sign", "open", "exit")


REWRITE = Decision(
    action=Action.REWRITE, prompt='a sign that says "idiot"', benign_prompt='a sign that says "angel"',
    spans=[Span(start=18, end=23, text="idiot", category="insult", term="idiot", method="lexicon", score=1.0, target="angel")],
)
ALLOW = Decision(action=Action.ALLOW, prompt='a sign that says "hello"')
BLOCK = Decision(action=Action.BLOCK, prompt="x", spans=REWRITE.spans)


@pytest.mark.parametrize(
    ("method", "decision", "expected"),
    [
        ("unguarded", REWRITE, Plan("call", REWRITE.prompt)),
        ("safetext", REWRITE, Plan("guard", REWRITE.prompt)),
        ("block", REWRITE, Plan("blocked")),
        ("prompt_swap", REWRITE, Plan("call", 'a sign that says "angel"')),
        ("negative_prompt", REWRITE, Plan("call", REWRITE.prompt, "idiot")),
        ("block", ALLOW, Plan("reuse")),
        ("prompt_swap", ALLOW, Plan("reuse")),
        ("negative_prompt", ALLOW, Plan("reuse")),
        ("safetext", ALLOW, Plan("guard", ALLOW.prompt)),
        ("prompt_swap", BLOCK, Plan("blocked")),
        ("negative_prompt", BLOCK, Plan("call", "x", "idiot")),
    ],
)
def test_method_plans(method: str, decision: Decision, expected: Plan) -> None:
    assert plan(method, decision.prompt, decision) == expected
