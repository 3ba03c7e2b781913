"""The lexicon matcher and compiler: obfuscations, innocent containers, spaCy-free fallback."""

from __future__ import annotations

import ast
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

import safetext.detect
from safetext.detect import spelling
from safetext.detect.inflect import expand, inflect
from safetext.detect.lexicon import CompiledLexicon, compile_lexicon, load_or_compile
from safetext.detect.matcher import Matcher
from safetext.detect.normalize import normalize
from safetext.detect.settings import LexiconSpec, NormalizeSettings, TermSpec
from safetext.policy import Normalization, PolicyEngine, load_policy
from safetext.policy.engine import lexicon_spec, normalize_settings


@pytest.fixture(scope="module")
def default_engine() -> PolicyEngine:
    return PolicyEngine("default")


@pytest.fixture(scope="module")
def matcher(default_engine: PolicyEngine) -> Matcher:
    return default_engine.matcher


@pytest.fixture(scope="module")
def core() -> Matcher:
    """Core terms only, so the tests do not depend on the shipped lexicon's growth."""
    spec = LexiconSpec(
        terms=(
            TermSpec("idiot", "insult", 2), TermSpec("kill", "violence", 2), TermSpec("shit", "profanity", 2),
            TermSpec("fuck", "profanity", 3, "substring"), TermSpec("kill yourself", "violence", 3),
        )
    )
    return Matcher(load_or_compile(spec))


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
        ("idoit", "idiot", "transposed"),  # two neighbouring letters swapped
        ("idoits", "idiot", "transposed"),
        ("shti", "shit", "transposed"),
        ("1doit", "idiot", "transposed"),  # leetspeak, then the swap
        ("xxfcukxx", "fuck", "transposed"),  # a swapped substring term inside a word
        ("mothefruck", "fuck", "transposed"),  # swapped across the substring term's edge
        ("iddoit", "idiot", "transposed"),  # stretched, then the swap
    ],
)
def test_obfuscations(core: Matcher, text: str, term: str, method: str) -> None:
    found = _found(core, text)
    assert any(t == term and m == method for _, t, m in found), found


@pytest.mark.parametrize(
    "text",
    ["scunthorpe", "cocktail", "assassin", "classic", "therapist", "shiitake", "essex", "snigger", "skillful",
     "hateful", "pen is", "heel", "conn", "dumbbell", "grassland",
     "b2b", "2024", "mp3", "hello!!!", "**bold**", "a.b.c", "u s a",
     "ares", "sith", "horse", "hoarse", "lotus", "carp", "form", "fletcher", "kutner",  # a real word or name one swap from a term
     "countdown", "discountmart", "aufrucken", "cunit", "shiite", "goodman", "pennisi", "dongning", "wanakah"],  # or a swap and a run
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
    lexicon = load_or_compile(lexicon_spec(policy), use_spacy=False)
    assert not lexicon.used_spacy
    assert list(tmp_path.glob("lexicon-*.json")), "compiled lexicon is cached on disk"
    engine = PolicyEngine(policy, use_spacy=False)
    assert engine.check('a sign that says "k1lling"').benign_prompt == 'a sign that says "helping"'
    assert engine.check("a classic cocktail in Scunthorpe").action.value == "allow"


def test_spacy_adds_pos_aware_and_irregular_forms() -> None:
    pytest.importorskip("spacy")
    lexicon = compile_lexicon(lexicon_spec(load_policy("default")))
    assert lexicon.used_spacy
    assert "idiots" in lexicon.forms and "idioting" not in lexicon.forms  # noun: plural only
    assert {"molesting", "molested", "molests"} <= set(lexicon.forms)
    assert lexicon.forms["kill"].mode == "exact" and lexicon.forms["killing"].category == "negative"  # killing is its own opt-in term
    assert "skill" in lexicon.known and "therapist" in lexicon.known


def test_spacy_tables_read_from_the_model_files_equal_spacy_load(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("spacy")
    from safetext.detect import english

    direct = english._build(*english._from_model_files())
    assert "idiot" in direct.pos and direct.irregular["mouse"] == {"mice": "s"}

    def unreadable() -> None:
        raise KeyError("lemma_index")

    monkeypatch.setattr(english, "_from_model_files", unreadable)  # another model layout: spacy.load reads the tables
    english.english_tables.cache_clear()
    try:
        assert english.english_tables() == direct
    finally:
        english.english_tables.cache_clear()


def test_cold_compile_imports_neither_spacy_nor_torch(tmp_path: Path) -> None:
    pytest.importorskip("spacy")
    code = (
        "import sys\nfrom safetext.policy import PolicyEngine\ne = PolicyEngine('testbed')\n"
        "print(e.lexicon.used_spacy, sorted(m for m in ('torch', 'spacy', 'thinc') if m in sys.modules))"
    )
    env = dict(os.environ, SAFETEXT_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=True)
    assert out.stdout.strip() == "True []"
    assert list(tmp_path.glob("lexicon-*.json"))  # it compiled, into the empty cache


def test_cache_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFETEXT_CACHE_DIR", str(tmp_path))
    policy = load_policy("testbed")
    spec = lexicon_spec(policy)
    first = load_or_compile(spec, use_spacy=False)
    (cache,) = tmp_path.glob("lexicon-*.json")
    mtime = cache.stat().st_mtime_ns
    assert load_or_compile(lexicon_spec(load_policy("testbed")), use_spacy=False) == first
    assert cache.stat().st_mtime_ns == mtime
    cache.write_text("{broken", encoding="utf-8")
    assert load_or_compile(spec, use_spacy=False) == first  # recompiled


def test_changed_policy_gets_a_new_cache_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFETEXT_CACHE_DIR", str(tmp_path / "cache"))
    base = tmp_path / "base.yaml"
    base.write_text(
        "categories:\n  insult: {targets: [angel]}\nterms:\n  insult:\n    blorf:\n", encoding="utf-8"
    )
    spec = lexicon_spec(load_policy(base))
    variants = {
        "term": "categories:\n  insult: {targets: [angel]}\nterms:\n  insult:\n    blorf:\n    zibble:\n",
        "severity": "categories:\n  insult: {targets: [angel], severity: high}\nterms:\n  insult:\n    blorf:\n",
        "allow": "categories:\n  insult: {targets: [angel]}\nterms:\n  insult:\n    blorf:\nallow: [blorfs]\n",
        "inflections": "normalization: {inflections: false}\n"
        "categories:\n  insult: {targets: [angel]}\nterms:\n  insult:\n    blorf:\n",
    }
    fingerprints = {spec.fingerprint()}
    for name, text in variants.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        fingerprints.add(lexicon_spec(load_policy(path)).fingerprint())
    assert len(fingerprints) == 1 + len(variants)
    first = load_or_compile(spec, use_spacy=False)
    assert "blorfs" in first.forms
    path = tmp_path / "term.yaml"
    second = load_or_compile(lexicon_spec(load_policy(path)), use_spacy=False)
    assert "zibble" in second.forms and "zibble" not in first.forms
    assert len(list((tmp_path / "cache").glob("lexicon-*.json"))) == 2
    # A change the compiler does not read (a rewrite target) keeps the spec and its cache entry.
    retarget = tmp_path / "retarget.yaml"
    retarget.write_text(base.read_text(encoding="utf-8").replace("angel", "friend"), encoding="utf-8")
    assert lexicon_spec(load_policy(retarget)).fingerprint() == spec.fingerprint()


def test_detection_runs_on_plain_settings_without_a_policy() -> None:
    spec = LexiconSpec(
        terms=(TermSpec("blorf", "insult", 2), TermSpec("zib", "insult", 1, "exact")),
        allow=("blorfington",),
    )
    lexicon = compile_lexicon(spec, use_spacy=False)
    matcher = Matcher(lexicon)
    hits = {(h.entry.term, h.method) for h in matcher.scan(normalize("blorfs, b.l.o.r.f and zibs near blorfington").text)}
    assert hits == {("blorf", "lexicon"), ("blorf", "split")}
    strict = Matcher(lexicon, NormalizeSettings(separators=False))
    assert {h.method for h in strict.scan("b.l.o.r.f blorf")} == {"lexicon"}


def test_allowed_phrases_hold_in_either_number_and_hyphenated() -> None:
    spec = LexiconSpec(terms=(TermSpec("blorf", "insult", 2),), allow=("green blorfs", "moby blorf"))
    lexicon = compile_lexicon(spec, use_spacy=False)
    assert {("green", "blorf"), ("green", "blorfs"), ("moby", "blorf"), ("moby", "blorfs")} <= set(lexicon.allow_phrases)
    matcher = Matcher(lexicon)
    for text in ("a green blorf", "two green blorfs", "moby-blorf", "MOBY-BLORF; or, the whale", "a moby blorf"):
        assert _found(matcher, text) == [], text
    assert [t for _, t, _ in _found(matcher, "a red blorf")] == ["blorf"]
    assert [t for _, t, _ in _found(matcher, "moby-blorf blorf")] == ["blorf"]  # the second one is no part of the phrase
    single = compile_lexicon(dataclasses.replace(spec, inflections=False), use_spacy=False)
    assert ("green", "blorf") not in single.allow_phrases


@pytest.mark.parametrize(("text", "term"), [("€unt", "cunt"), ("€0€k", "cock"), ("sh€it", "sheit")])
def test_euro_sign_reads_as_c_or_e(matcher: Matcher, text: str, term: str) -> None:
    assert term in {t for _, t, _ in _found(matcher, text)}


def test_normalize_settings_mirror_the_policy_block() -> None:
    fields = {f.name for f in dataclasses.fields(NormalizeSettings)}
    assert fields == set(Normalization.model_fields)
    assert normalize_settings(Normalization(leetspeak=False)) == NormalizeSettings(leetspeak=False)


def test_detect_imports_nothing_from_the_policy_layer() -> None:
    for path in Path(safetext.detect.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n == "safetext.policy" or n.startswith("safetext.policy.") for n in names), path.name


# ---- sound-alike spellings and phrases without spaces ------------------------------------------------


@pytest.fixture(scope="module")
def respelled() -> Matcher:
    spec = LexiconSpec(
        terms=(
            TermSpec("crunker", "insult", 2), TermSpec("fribs", "insult", 2), TermSpec("snick", "insult", 2),
            TermSpec("fish", "insult", 2), TermSpec("zib", "insult", 1), TermSpec("blat vonk", "insult", 2),
            TermSpec("zonk glorp", "insult", 2), TermSpec("glorp", "insult", 2), TermSpec("blorss", "insult", 2),
            TermSpec("plitch", "insult", 2), TermSpec("plitches", "insult", 2), TermSpec("gronock", "insult", 2),
            TermSpec("glurd", "insult", 2), TermSpec("zweef", "insult", 2), TermSpec("plit", "insult", 2),
            TermSpec("brotty", "insult", 2), TermSpec("quonk", "insult", 2), TermSpec("whoglet", "insult", 2), TermSpec("whorb", "insult", 2),
            TermSpec("sklore", "insult", 2), TermSpec("gruck", "insult", 2), TermSpec("zonka", "insult", 2),
            TermSpec("blosik", "insult", 2), TermSpec("frobbing", "insult", 2), TermSpec("flot", "insult", 2),
            TermSpec("grabbuke", "insult", 2), TermSpec("drunt", "insult", 2),
        )
    )
    return Matcher(load_or_compile(spec))


@pytest.mark.parametrize(
    ("written", "term"),
    [
        ("krunker", "crunker"),  # a hard c written k
        ("crunka", "crunker"),  # -er written -a
        ("crunkaz", "crunker"),
        ("phribs", "fribs"),  # f written ph
        ("snik", "snick"),  # ck written k
        ("snicky", "snick"),  # the -y adjective of a short term ...
        ("snickey", "snick"),  # ... also written -ey
        ("snickz", "snick"),  # a plural s written z
        ("plitchez", "plitches"),  # ... also when the plural is listed as a term of its own
        ("blorzz", "blorss"),  # a final ss written zz
        ("gronox", "gronock"),  # a plural -cks written x
        ("snikk", "snick"),  # ck written kk
        ("grook", "gruck"),  # -uck written -ook
        ("gronawk", "gronock"),  # -ock written -awk
        ("glerd", "glurd"),  # ur written er
        ("zweaf", "zweef"),  # ee written ea
        ("pleet", "plit"),  # a short i written ee ...
        ("plyt", "plit"),  # ... or y
        ("brotti", "brotty"),  # a final -y written -i, -ie or -ey
        ("brottie", "brotty"),
        ("brottey", "brotty"),
        ("kwonk", "quonk"),  # qu written kw
        ("hoglet", "whoglet"),  # a word-initial wh written h
        ("skloar", "sklore"),  # -ore written -oar or -oor
        ("skloor", "sklore"),
        ("zonkah", "zonka"),  # a final -a written -ah or -uh
        ("zonkuh", "zonka"),
        ("blozik", "blosik"),  # an s after a vowel written z
        ("frobbin", "frobbing"),  # the dropped g of a term listed in its -ing form
        ("floted", "flot"),  # the consonant an ending doubled, written once
        ("grabuke", "grabbuke"),  # a doubled consonant written once
        ("drvnt", "drunt"),  # u written v
        ("drxnt", "drunt"),  # the one vowel written x
        ("blatvonk", "blat vonk"),  # a phrase written without its space
        ("b.l.a.t.v.o.n.k", "blat vonk"),
    ],
)
def test_respelled_forms_are_found(respelled: Matcher, written: str, term: str) -> None:
    assert [t for _, t, _ in _found(respelled, f"a sign that says {written}")] == [term]


@pytest.mark.parametrize(
    ("written", "why"),
    [
        ("fishy", "a frequent English word is not a respelling"),
        ("phish", "a frequent English word is not a respelling"),
        ("zibz", "a severity-1 term is not respelled"),
        ("horb", "a word of a language a policy ships (German Horb) is not a respelling"),
    ],
)
def test_real_words_are_not_respellings(respelled: Matcher, written: str, why: str) -> None:
    assert _found(respelled, f"a sign that says {written}") == [], why
    assert written not in respelled.forms, why


@pytest.mark.parametrize(
    ("word", "written"),
    [("bastard", "bstrd"), ("asshole", "asshl"), ("dickhead", "dckhd"), ("bitch", None), ("idiot", None), ("twat", None)],
)
def test_disemvowelled_spellings_keep_a_first_vowel_and_need_five_letters(word: str, written: str | None) -> None:
    """A word of one vowel has its own rule ("btch"); "idt" and "twt" are too short to read."""
    assert spelling.disemvowelled(word) == written


def test_a_form_without_its_vowels_is_read_as_the_form_unless_wordfreq_lists_it() -> None:
    matcher = Matcher(load_or_compile(LexiconSpec(terms=(TermSpec("blatherpunk", "insult", 2), TermSpec("pisshat", "insult", 2)))))
    assert [(t, m) for _, t, m in _found(matcher, "a sign that says blthrpnk")] == [("blatherpunk", "vowelless")]
    assert "blthrpnk" not in matcher.forms  # looked up on its own, not compiled as a form
    assert _found(matcher, "a sign that says pssht") == []  # an interjection wordfreq lists
    assert "pssht" not in matcher.lex.vowelless


def test_a_respelling_that_is_an_accented_word_of_a_shipped_language_is_not_added() -> None:
    """The matcher folds accents, so "negres" is how it reads French "nègres": that word,
    not a respelling of "negress"."""
    matcher = Matcher(load_or_compile(LexiconSpec(terms=(TermSpec("negress", "slur", 3),))))
    assert "negres" not in matcher.forms
    assert _found(matcher, "a sign that says nègres") == []


def test_a_phrase_holding_a_term_is_joined_as_a_whole_word_only(respelled: Matcher) -> None:
    """ "zonkglorp" is the phrase as a whole word, never a piece of a glued word (the default
    policy's "f|u|c|k|m|e|a|t" stays "fuck" + "meat", not "fuck me" + "at": see test_detect_bypass)."""
    assert respelled.forms["zonkglorp"].mode == "exact"
    assert respelled.forms["blatvonk"].mode == "word"
    assert _found(respelled, "a sign that says zonkglorp") == [("zonkglorp", "zonk glorp", "lexicon")]
    assert respelled._segment("zonkglorpyou") is None  # the joined phrase is no piece beside a glue word


@pytest.mark.parametrize(
    ("written", "term"),
    [("l3itch", "bitch"), ("|3itch", "bitch"), ("masterb8", "masterbate")],
)
def test_leetspeak_groups(matcher: Matcher, written: str, term: str) -> None:
    assert term in [t for _, t, _ in _found(matcher, f"a sign that says {written}")]


# An acronym that is also a word (default: "sob", "fu") is read only as initials or in leetspeak.
INITIALS = [
    ('a sign that says "s.o.b."', 'a sign that says "a.b.c."'),
    ("a sign that says S O B", "a sign that says A B C"),
    ('a sign that says "S-O-B"', 'a sign that says "A-B-C"'),
    ("a sign that says S. O. B.", "a sign that says A. B. C."),
    ("a sign that says s0b", "a sign that says abc"),
    ("a t-shirt that says F.U.", "a t-shirt that says O.K."),
    ("a mug that says f u", "a mug that says o k"),
]
NOT_INITIALS = [
    "a woman begins to sob in the rain",
    "a sign that says SOB STORY",  # the word
    "a sign that says s o b e r",  # the letters begin a longer spelled word
    "kung fu panda poster",
    "Fu Manchu",
    "a portrait of Dr. F. U. Schmidt",  # a person's initials
    "a sign that says F U N",
]


@pytest.mark.parametrize(("prompt", "benign"), INITIALS)
def test_initials_terms_match_spelled_out(default_engine: PolicyEngine, prompt: str, benign: str) -> None:
    decision = default_engine.check(prompt)
    assert decision.action.value == "rewrite" and decision.benign_prompt == benign
    assert decision.spans[0].method == "initials"


@pytest.mark.parametrize("prompt", NOT_INITIALS)
def test_initials_terms_leave_the_word_alone(default_engine: PolicyEngine, prompt: str) -> None:
    assert default_engine.check(prompt).action.value == "allow"


def test_initials_terms_are_cached_and_honour_the_allow_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFETEXT_CACHE_DIR", str(tmp_path))
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\ncategories:\n  insult: {targets: [pal]}\nterms:\n  insult:\n    idiot: angel\n"
        "    pos: {targets: abc, match: initials}\n",
        encoding="utf-8",
    )
    spec = lexicon_spec(load_policy(str(path)))
    first = load_or_compile(spec, use_spacy=False)
    assert set(first.initials) == {"pos"} and "pos" not in first.forms
    assert load_or_compile(spec, use_spacy=False) == first  # read back from the cache file
    assert PolicyEngine(str(path), use_spacy=False).check('a sign that says "P.O.S."').benign_prompt == 'a sign that says "A.B.C."'
    path.write_text(path.read_text(encoding="utf-8") + "allow: [pos]\n", encoding="utf-8")
    with pytest.raises(Exception, match="allow entry 'pos' hides"):
        load_policy(str(path))


@pytest.mark.parametrize(
    ("prompt", "benign"),
    [("a sign that says idiot's", "a sign that says angel's"), ("a sign that says n1gg3r's", "a sign that says neighbor's"),
     ("a sign that says youidiot's", "a sign that says youangel's")],
)
def test_a_possessive_is_its_word_with_s(default_engine: PolicyEngine, prompt: str, benign: str) -> None:
    assert default_engine.check(prompt).benign_prompt == benign


def test_transpositions_read_forms_and_substring_terms_and_obey_the_allow_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A swap is read back to a term's written forms and inflections (also stretched), and to a
    substring term inside a longer word or across its edge, and to a respelling of five letters
    or more, and to two glued terms; never to a shorter respelling or to one glued term, and never where a real word has
    the swapped letters. It obeys the allow list and its
    switch."""
    monkeypatch.setenv("SAFETEXT_CACHE_DIR", str(tmp_path))
    spec = LexiconSpec(
        terms=(
            TermSpec("idiot", "insult", 2),
            TermSpec("freak", "insult", 2),
            TermSpec("dork", "insult", 1),
            TermSpec("fuck", "profanity", 3, "substring"),
            TermSpec("dick", "profanity", 2),
            TermSpec("porno", "sexual", 2),
        )
    )
    lexicon = load_or_compile(spec)
    assert {"idiot", "idiots", "dork", "fuck"} <= lexicon.swap_forms  # written forms and inflections
    assert "phreak" in lexicon.forms and "phreak" in lexicon.swap_forms  # a respelling long enough to anchor a swap
    assert "phuk" in lexicon.forms and "phuk" not in lexicon.swap_forms  # a short one swapped is too near other words
    assert CompiledLexicon.from_json(lexicon.to_json()).swap_forms == lexicon.swap_forms
    matcher = Matcher(lexicon)
    assert _found(matcher, "dokr") == [("dokr", "dork", "transposed")]
    assert _found(matcher, "fcuk") == [("fcuk", "fuck", "transposed")]
    assert _found(matcher, "motherfcuker") == [("fcuker", "fuck", "transposed")]  # a substring term inside a word, at its longest form
    assert _found(matcher, "mothefruck") == [("fruck", "fuck", "transposed")]  # across the term's edge, at the seam
    assert _found(matcher, "fucmke") == [("fucmk", "fuck", "transposed")]
    assert _found(matcher, "fucake") == []  # a vowel swapped in between two consonants is a syllable of its own
    assert CompiledLexicon.from_json(lexicon.to_json()).edge_swaps == lexicon.edge_swaps
    assert lexicon.edge_swaps["fruck"] == "rfuck" and "fluck" not in lexicon.edge_swaps  # German pflucken, zerpfluckt ...
    assert "aufrucken" in lexicon.swap_words  # the one real word that holds "fruck"
    assert _found(matcher, "iddoit") == [("iddoit", "idiot", "transposed")]  # stretched and swapped
    assert _found(matcher, "iditot") == []  # the run is one the swap makes, not the word's
    assert "porron" in lexicon.swap_words and _found(matcher, "porron") == []  # Spanish: not "porno" stretched and swapped
    assert _found(matcher, "bigidck") == []  # a glued term beside a glue word is not searched inside a swapped word
    assert _found(matcher, "idiotdcik") == [("dcik", "dick", "transposed"), ("idiot", "idiot", "transposed")]  # two terms glued
    assert _found(Matcher(lexicon, NormalizeSettings(transpositions=False)), "idoit") == []
    allowed = load_or_compile(dataclasses.replace(spec, allow=("idoit",)))
    assert _found(Matcher(allowed), "idoit") == []
    assert _found(Matcher(allowed), "iidot") == [("iidot", "idiot", "transposed")]


def test_transposed_word_is_rewritten_by_the_engine(default_engine: PolicyEngine) -> None:
    decision = default_engine.check('a shop sign that says "IDOIT"')
    assert decision.action.value == "rewrite"
    assert [s.method for s in decision.spans] == ["transposed"]
    assert "IDOIT" not in (decision.benign_prompt or "")
    assert default_engine.check('a statue of Ares in a park').action.value == "allow"


@pytest.mark.parametrize(("text", "term"), [("skaknz", "skank"), ("boboz", "boobs"), ("fuknig", "phuking")])
def test_a_swap_reads_back_to_a_respelling(matcher: Matcher, text: str, term: str) -> None:
    """"skaknz" is "skankz" (itself "skanks" respelled) with two letters swapped; "fuknig" is
    "fuking", a respelling of the policy's "phuking"."""
    found = _found(matcher, text)
    assert [(t, m) for _, t, m in found] == [(term, "transposed")], found


@pytest.mark.parametrize("text", ["carpin", "conon", "solor", "lubrza", "cuines", "bugres"])
def test_a_rare_word_one_swap_from_a_respelling_is_allowed(default_engine: PolicyEngine, text: str) -> None:
    """Rare words and places one swap from a respelling ("carpin": "crapin") stay words."""
    assert default_engine.check(f'a sign that says "{text.title()}"').action.value == "allow"


def test_respelled_swaps_leave_out_listed_words_and_repeats(default_engine: PolicyEngine) -> None:
    """wordfreq's listed words are swap words ("solor" is "sloor" swapped); a respelling that only
    changes a letter's repeats ("crapin") is no swap form."""
    lex = default_engine.matcher.lex
    assert {"solor", "lubrza"} <= lex.swap_words
    assert {"sloor", "lubraz", "skankz"} <= lex.swap_forms
    assert "crapin" in lex.forms and "crapin" not in lex.swap_forms


@pytest.mark.parametrize(("text", "term"), [("dlkc", "dick"), ("d1kc", "dick"), ("5hti", "shit")])
def test_a_swap_in_a_leet_spelling_is_read_back(matcher: Matcher, text: str, term: str) -> None:
    """l read as i ("dlkc"), or a digit read as a letter, then two letters swapped back."""
    found = _found(matcher, text)
    assert [(t, m) for _, t, m in found] == [(term, "transposed")], found


def test_real_words_are_not_leet_swaps(default_engine: PolicyEngine) -> None:
    """"flag" with its l read as i and two letters swapped is a form ("faig"): it stays a word."""
    assert "flag" in default_engine.matcher.lex.swap_words
    for word in ("flag", "flagged", "Flagy", "Klek"):
        assert default_engine.check(f'a sign that says "{word}"').action.value == "allow", word
