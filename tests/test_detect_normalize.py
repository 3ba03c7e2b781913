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
        ("a\x00b\x1fc", "abc"),  # control characters are dropped, as the text encoders drop them
        ("a\tb\nc", "a b c"),  # tab and line feed are whitespace
        ("idi  ot", "idi ot"),  # whitespace runs collapse: CLIP sees the same ids
        ("idi \u2003\t ot", "idi ot"),
        ("id&#105;ot", "idiot"),  # HTML entities are unescaped
        ("&lt;b&gt;", "<b>"),
        ("&amp;lt;", "<"),  # twice, as CLIP's cleaning does
        ("idi&ot", "idi&ot"),  # a bare ampersand stays
        ("“idiot”", '"idiot"'),  # curly quotes straightened
        ("idiօt", "idiot"),  # Armenian oh, from the UTS #39 table
        ("ᎥᎠᎥᎾᎢ", "idiot"),  # Cherokee
        ("ɗսmb", "dumb"),  # Latin hooked d, Armenian seh
        ("ƙill", "kill"),  # Latin-extended
        ("ǀdǀot", "|d|ot"),  # a caseless vertical stroke reads like "|" (i or l)
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


@pytest.mark.parametrize(
    ("text", "folded", "piece", "source"),
    [
        ("say id&#105;ot now", "say idiot now", "idiot", "id&#105;ot"),
        ("say &amp;#105;diot", "say idiot", "idiot", "&amp;#105;diot"),
        ("idi   ot!", "idi ot!", "idi ot", "idi   ot"),
        ("idi\x00\x00ot", "idiot", "idiot", "idi\x00\x00ot"),
        ("ｉｄ\u200b ｉｏｔ  x", "id iot x", "id iot", "ｉｄ\u200b ｉｏｔ"),
    ],
)
def test_offset_map_is_exact_through_canonicalisation(text: str, folded: str, piece: str, source: str) -> None:
    norm = normalize(text)
    assert norm.text == folded
    at = norm.text.index(piece)
    start, end = norm.span(at, at + len(piece))
    assert text[start:end] == source


def test_plain_ascii_keeps_the_identity_map() -> None:
    assert normalize("a sign that says idiot").starts is None
    assert normalize("a sign\tthat says idiot").text == "a sign that says idiot"
    assert normalize("two  spaces").starts is not None


def test_toggles_switch_folding_off() -> None:
    assert normalize("іdіot", unicode=False).text != "idiot"
    assert normalize("id\u200biot", invisible=False).text != "idiot"


def test_case_variants_read_both_cases_of_ambiguous_letters() -> None:
    from safetext.detect.normalize import case_variants

    assert case_variants("a plain ASCII prompt") == []
    assert case_variants("Ünïcödé but unambiguous") == []
    variants = case_variants('say "ΒDSΜ"')  # capital mu reads m, small mu reads u
    assert variants == ['say "ΒDSμ"']
    assert [normalize(v).text for v in variants] == ['say "bdsu"']
    assert [normalize(v).text for v in case_variants('say "βdsμ"')] == ['say "bdsm"']
    assert all(len(v) == len('say "ΒDSΜ"') for v in variants)  # offsets still index the prompt


def test_a_letter_without_a_reading_takes_its_other_case_s() -> None:
    assert normalize("ASSՀՕLE").text == "asshole"  # Armenian capital Ho reads as small ho: h
    assert normalize("ꭺꮪꮪꭼꮪ").text == "asses"  # Cherokee small letters read as their capitals
