"""Rewrite operators: case keeping, target choice, mask, remove, overlaps."""

from __future__ import annotations

import pytest

from safetext.rewrite import Edit, apply_operators, choose_target, keep_case, resolve_overlaps
from safetext.rewrite.operators import OPERATORS, spell_like


@pytest.mark.parametrize(
    ("source", "target", "out"),
    [
        ("IDIOT", "angel", "ANGEL"),
        ("Idiot", "angel", "Angel"),
        ("idiot", "Angel", "angel"),
        ("iDiOt", "angel", "aNgEl"),
        ("1D10T", "angel", "ANGEL"),
        ("$hit", "cool", "cool"),
        ("Sh1t", "cool", "Cool"),
        ("KILL YOURSELF", "love yourself", "LOVE YOURSELF"),
        ("I", "angel", "Angel"),
        ("123", "angel", "angel"),
        ("BaStArD", "brother", "BrOtHeR"),
    ],
)
def test_keep_case(source: str, target: str, out: str) -> None:
    assert keep_case(source, target) == out


@pytest.mark.parametrize(
    ("source", "target", "out"),
    [
        ("S.O.B", "abc", "A.B.C"),
        ("s o b", "abc", "a b c"),
        ("S. O. B", "abc", "A. B. C"),
        ("s0b", "abc", "abc"),
        ("F-U", "ok", "O-K"),
        ("S.O.B", "friend", "FRIEND"),  # another length: only the case is kept
    ],
)
def test_spell_like_keeps_the_initials_layout(source: str, target: str, out: str) -> None:
    assert spell_like(source, target) == out


def test_choose_target_prefers_similar_length_then_order() -> None:
    assert choose_target("cretin", ["friend", "buddy", "pal"]) == "friend"
    assert choose_target("jerk", ["friend", "buddy", "pal"]) == "buddy"
    assert choose_target("oaf", ["friend", "pal", "ace"]) == "pal"
    assert choose_target("i d i o t", ["angel", "friend"]) == "angel"
    with pytest.raises(ValueError):
        choose_target("x", [])


def test_operators_validate_and_operate() -> None:
    assert OPERATORS["replace"].operate("Idiot", {"target": "angel"}) == "Angel"
    assert OPERATORS["mask"].operate("id iot", {}) == "** ***"
    assert OPERATORS["mask"].operate("idiot", {"char": "#"}) == "#####"
    assert OPERATORS["remove"].operate("idiot", {}) == ""
    with pytest.raises(ValueError):
        OPERATORS["replace"].validate({})
    with pytest.raises(ValueError):
        OPERATORS["mask"].validate({"char": "##"})


def test_apply_operators_resolves_overlaps_and_tidies_removals() -> None:
    text = "you stupid idiot, go away"
    edits = [
        Edit(4, 10, "replace", {"target": "clever"}),
        Edit(4, 16, "replace", {"target": "kind soul"}, priority=0),
        Edit(11, 16, "replace", {"target": "angel"}),
    ]
    assert [(e.start, e.end) for e in resolve_overlaps(edits)] == [(4, 16)]
    assert apply_operators(text, edits) == "you kind soul, go away"
    assert apply_operators(text, [Edit(4, 10, "remove", {})]) == "you idiot, go away"
    assert apply_operators(text, [Edit(11, 16, "remove", {})]) == "you stupid, go away"
    with pytest.raises(ValueError, match="unknown operator"):
        apply_operators(text, [Edit(0, 3, "hash", {})])


def test_many_edits_are_linear() -> None:
    text = "idiot " * 20_000
    edits = [Edit(i * 6, i * 6 + 5, "replace", {"target": "angel"}) for i in range(20_000)]
    assert apply_operators(text, edits) == "angel " * 20_000
