"""The lexicon matcher and compiler: obfuscations, innocent containers, spaCy-free fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from safetext.detect.inflect import expand, inflect
from safetext.detect.lexicon import compile_lexicon, load_or_compile
from safetext.detect.matcher import Matcher
from safetext.detect.normalize import normalize
from safetext.policy import PolicyEngine, load_policy
from safetext.policy.loader import policy_fingerprint


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return PolicyEngine("default").matcher


def _found(matcher: Matcher, text: str) -> list[tuple[str, str, str]]:
    norm = normalize(text).text
    return sorted((norm[h.start : h.end], h.entry.term, h.method) for h in matcher.scan(norm))


@pytest.mark.parametrize(
    ("text", "term", "method"),
    [
        ("idiot", "idiot", "lexicon"),
        ("idiots", "idiot", "lexicon"),
        ("1d10t", "idiot", "leetspeak"),
        ("ki11", "kill", "leetspeak"),  # 1 read as l
        ("k1ll", "kill", "leetspeak"),  # 1 read as i
        ("idiooot", "idiot", "repeat"),
        ("i.d.i.o.t", "idiot", "split"),
        ("i d i o t", "idiot", "split"),
        ("id iot", "idiot", "split"),
        ("sh*t", "shit", "masked"),
        ("youidiot", "idiot", "glued"),
        ("xxfuckxx", "fuck", "substring"),
        ("kill yourself", "kill yourself", "phrase"),
        ("killin", "kill", "lexicon"),
    ],
)
def test_obfuscations(matcher: Matcher, text: str, term: str, method: str) -> None:
    found = _found(matcher, text)
    assert any(t == term and m == method for _, t, m in found), found


@pytest.mark.parametrize(
    "text",
    ["scunthorpe", "cocktail", "assassin", "classic", "therapist", "shiitake", "essex", "snigger", "skillful",
     "hateful", "pen is", "heel", "conn", "dumbbell", "grassland",
     "b2b", "2024", "mp3", "hello!!!", "**bold**", "a.b.c", "u s a"],
)
def test_innocent_containers_do_not_match(matcher: Matcher, text: str) -> None:
    assert _found(matcher, text) == []


def test_inflection_rules() -> None:
    assert inflect("angel", "s") == "angels"
    assert inflect("help", "ing") == "helping"
    assert inflect("love", "ed") == "loved"
    assert inflect("stab", "ing") == "stabbing"
    assert inflect("queen", "in") == "queenin"
    assert inflect("bitch", "s") == "bitches"
    assert inflect("die", "ing") == "dying"
    assert "hater" in expand("hate", frozenset({"verb"}))
    assert "idioting" not in expand("idiot", frozenset({"noun"}))


def test_compile_without_spacy_still_detects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFETEXT_CACHE_DIR", str(tmp_path))
    policy = load_policy("testbed")
    lexicon = load_or_compile(policy, policy_fingerprint(policy), use_spacy=False)
    assert not lexicon.used_spacy
    assert list(tmp_path.glob("lexicon-*.json")), "compiled lexicon is cached on disk"
    engine = PolicyEngine(policy, use_spacy=False)
    assert engine.check('a sign that says "k1lling"').benign_prompt == 'a sign that says "helping"'
    assert engine.check("a classic cocktail in Scunthorpe").action.value == "allow"


def test_spacy_adds_pos_aware_and_irregular_forms() -> None:
    pytest.importorskip("spacy")
    lexicon = compile_lexicon(load_policy("default"))
    assert lexicon.used_spacy
    assert "idiots" in lexicon.forms and "idioting" not in lexicon.forms  # noun: plural only
    assert {"killing", "killed", "killer"} <= set(lexicon.forms)
    assert "skill" in lexicon.known and "therapist" in lexicon.known


def test_cache_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFETEXT_CACHE_DIR", str(tmp_path))
    policy = load_policy("testbed")
    first = load_or_compile(policy, policy_fingerprint(policy), use_spacy=False)
    (cache,) = tmp_path.glob("lexicon-*.json")
    mtime = cache.stat().st_mtime_ns
    assert load_or_compile(policy, policy_fingerprint(policy), use_spacy=False) == first
    assert cache.stat().st_mtime_ns == mtime
    cache.write_text("{broken", encoding="utf-8")
    assert load_or_compile(policy, policy_fingerprint(policy), use_spacy=False) == first  # recompiled
