"""Normalisation folds obfuscation and keeps an exact offset map to the original."""

from __future__ import annotations

import pytest

from safetext.detect.normalize import normalize


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("IDIOT", "idiot"),
        ("ｉｄｉｏｔ", "idiot"),  # fullwidth
        ("іdіоt", "idiot"),  # Cyrillic і, о
        ("ΚΙLL", "kill"),  # Greek capitals
        ("id\u200biot", "idiot"),  # zero-width space
        ("fu\u00adck", "fuck"),  # soft hyphen
        ("idíòt", "idiot"),  # accents
        ("e\u0301", "e"),  # combining accent
        ("𝐢𝐝𝐢𝐨𝐭", "idiot"),  # mathematical bold
        ("Ⓘⓓⓘⓞⓣ", "idiot"),  # circled
        ("a\x00b\x1fc", "a b c"),  # control chars split words
        ("ﬁne", "fine"),  # ligature expands to two characters
    ],
)
def test_folding(text: str, folded: str) -> None:
    assert normalize(text).text == folded


@pytest.mark.parametrize("text", ["plain ascii", "ｉｄ\u200bｉｏｔ!", "ﬁﬁ x", "a\u0301b\u0301", "😀 idiot", "\ud800x"])
def test_offset_map_points_into_the_original(text: str) -> None:
    norm = normalize(text)
    for i in range(len(norm.text)):
        start, end = norm.span(i, i + 1)
        assert 0 <= start < end <= len(text)
    start, end = norm.span(0, len(norm.text))
    assert text[start:end].strip() == text.strip() or end <= len(text)


def test_span_of_a_folded_word_covers_invisible_characters() -> None:
    text = "say ｉｄ\u200bｉｏｔ now"
    norm = normalize(text)
    at = norm.text.index("idiot")
    start, end = norm.span(at, at + 5)
    assert text[start:end] == "ｉｄ\u200bｉｏｔ"


def test_toggles_switch_folding_off() -> None:
    assert normalize("іdіot", unicode=False).text != "idiot"
    assert normalize("id\u200biot", invisible=False).text != "idiot"
