"""Prompt pairs: B is A with one word swapped for a similar-length, clearly different word."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from safetext.localize.pairs import (
    TEMPLATES,
    PromptFileError,
    make_pairs,
    pair_from_prompts,
    partner_ok,
    read_prompt_file,
)
from safetext.testbed.pairs import testbed_pairs as make_testbed_pairs


def _differs_only_in_the_word(a: str, b: str, word_a: str, word_b: str) -> bool:
    return a.replace(word_a, "{}", 1) == b.replace(word_b, "{}", 1)


@pytest.mark.parametrize("make", [lambda n, s: make_pairs(n, s), lambda n, s: make_testbed_pairs(n, s)])
def test_pairs_differ_only_in_a_similar_word(make) -> None:
    pairs = make(20, 3)
    assert len(pairs) == 20
    for p in pairs:
        assert _differs_only_in_the_word(p.a, p.b, p.word_a, p.word_b)
        assert partner_ok(p.word_a, p.word_b)
    assert make(20, 3) == pairs  # reproducible from the seed
    assert make(20, 4) != pairs


def test_generic_pairs_start_with_the_papers_template() -> None:
    pairs = make_pairs(len(TEMPLATES), 0)
    assert re.fullmatch(r'A sign that says "\w+"\.', pairs[0].a)
    assert len({p.a.replace(p.word_a, "") for p in pairs}) == len(TEMPLATES)


def test_testbed_pairs_use_its_vocabulary() -> None:
    from safetext.testbed.vocab import WORDS

    for p in make_testbed_pairs(10, 0):
        assert p.word_a in WORDS and p.word_b in WORDS


@pytest.mark.parametrize(
    ("a", "b", "ok"),
    [("angel", "tiger", True), ("idiot", "angel", True), ("hate", "mate", False), ("sale", "classic", False), ("open", "open", False)],
)
def test_partner_rules(a: str, b: str, ok: bool) -> None:
    assert partner_ok(a, b) is ok


def test_prompt_file(tmp_path: Path) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text(
        "# explicit pairs first\n"
        'A mug that says "hello"\tA mug that says "tiger"\n'
        'A poster reading "{word}" on a wall\n'
        "words: apple river house green\n"
    )
    pairs = read_prompt_file(path, 4, seed=0)
    assert len(pairs) == 4
    assert (pairs[0].word_a, pairs[0].word_b) == ("hello", "tiger")
    assert all(p.a.startswith("A poster reading") for p in pairs[1:])
    assert all(p.word_a in {"apple", "river", "house", "green"} for p in pairs[1:])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('A sign "cat dog"\tA sign "cow pig"\n', ":1: prompts must differ in exactly one word"),
        ("just a line\n", ":1: expected"),
        ("{word} and {word}\n", "exactly once"),
        ("# only comments\n", "holds no pairs"),
    ],
)
def test_prompt_file_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.txt"
    path.write_text(text)
    with pytest.raises(PromptFileError, match=re.escape(message)):
        read_prompt_file(path, 2)


def test_pair_from_prompts() -> None:
    pair = pair_from_prompts('A sign that says "idiot".', 'A sign that says "angel".')
    assert (pair.word_a, pair.word_b) == ("idiot", "angel")
