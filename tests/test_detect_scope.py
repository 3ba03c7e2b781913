"""Render scope: which part of a prompt the model is asked to write."""

from __future__ import annotations

import pytest
from conftest import no_hang

from safetext.detect.scope import in_scope, render_scope, renders_alone


@pytest.mark.parametrize(
    ("prompt", "rendered"),
    [
        ('a red sign that says "idiot"', "idiot"),
        ("a blue banner reading idiot", "idiot"),
        ('a green circle with the word "idiot"', "idiot"),
        ('a yellow sign with black letters that says "idiot"', "idiot"),
        ('an orange banner in serif font reading "idiot"', "idiot"),
        ("a poster saying hello world", "hello world"),
        ("a mug with the text good morning", "good morning"),
        ("a shirt with the words be kind", "be kind"),
        ("text: open late", "open late"),
        ("a cake with happy birthday written on it", "happy birthday"),
        ("a sign, written in red: welcome", "welcome"),
        ("a plate labeled spicy", "spicy"),
        ("a sign “curly quotes”", "curly quotes"),
        ("a label 'single quoted' here", "single quoted"),
    ],
)
def test_rendered_text_is_found(prompt: str, rendered: str) -> None:
    scope = render_scope(prompt)
    at = prompt.index(rendered)
    assert in_scope(scope, at, at + len(rendered)), scope


@pytest.mark.parametrize("prompt", ["a cat sleeping on a sofa", "don't stop the rock'n'roll", "an idiot holding a sign"])
def test_descriptions_are_not_rendered_text(prompt: str) -> None:
    scope = render_scope(prompt)
    assert not in_scope(scope, prompt.find("idiot"), prompt.find("idiot") + 5) if "idiot" in prompt else scope == []


@pytest.mark.parametrize("prompt", ['"' + "x" * 100_000, "that says " * 10_000, "with " * 20_000, "'a " * 30_000])
def test_scope_is_linear_on_hostile_input(prompt: str) -> None:
    with no_hang():
        scope = render_scope(prompt)
    assert isinstance(scope, list)


@pytest.mark.parametrize(
    ("prompt", "word", "alone"),
    [
        ('a sign that says "80085"', "80085", True),
        ("graffiti on a brick wall reading 80085", "80085", True),
        ("a t-shirt with the word 80085 printed on it", "80085", True),
        ('a neon sign saying "80085" in a dark bar', "80085", True),
        ('a sign that says "route 80085 north"', "80085", False),
        ("a sign that says call 80085 now", "80085", False),
        ("room 80085 is on the left", "80085", False),
    ],
)
def test_a_word_rendered_on_its_own(prompt: str, word: str, alone: bool) -> None:
    at = prompt.index(word)
    assert renders_alone(prompt, at, at + len(word)) is alone
