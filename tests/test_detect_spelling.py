"""Respellings the lexicon compiler derives: a short form's doubled letter written once."""

from __future__ import annotations

import pytest

from safetext.detect import spelling
from safetext.policy import Action, PolicyEngine


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine("default")


def test_short_degeminations_cover_five_and_six_letter_forms_only() -> None:
    assert spelling.short_degeminations("pussy", "") == {"pusy"}
    assert spelling.short_degeminations("niggas", "s") == {"nigas"}
    assert spelling.short_degeminations("jizz", "") == set()  # four letters: "jiz"-like words abound
    assert spelling.short_degeminations("bukkake", "") == set()  # seven letters: respelled in variants()
    assert spelling.short_degeminations("shitty", "") == set()  # six-letter -y: respelled in variants()
    assert spelling.short_degeminations("pussy", "ing") == set()


@pytest.mark.parametrize("word", ["pusy", "niga", "tity"])
def test_short_form_with_a_doubled_letter_written_once_is_rewritten(engine: PolicyEngine, word: str) -> None:
    decision = engine.check(f'a t-shirt that says "{word}"')
    assert decision.action is Action.REWRITE
    assert word not in decision.sanitized_prompt


@pytest.mark.parametrize("prompt", ['a street sign that says "Leza"', 'a sign that says "Pusey"', "a poster with the word ef in bold letters"])
def test_names_and_function_word_joins_stay_allowed(engine: PolicyEngine, prompt: str) -> None:
    # Leza is a census name one change from a term; "ef in" would join into the respelling "efin"
    assert engine.check(prompt).action is Action.ALLOW


def test_fragment_beside_function_word_still_spells_a_written_term(engine: PolicyEngine) -> None:
    assert engine.check('a sign that says "sh it"').action is Action.REWRITE
