"""What the model will draw decides: tokenizer readings, Scunthorpe safety, classifier windows.

* A prompt is also checked as each of the pipeline's tokenizers reads it (encode, decode
  without special tokens, truncated at ``model_max_length``), so any spelling a tokenizer
  turns into a caught one is caught: property-style over many variants, for the testbed's
  letter-level CLIP tokenizer, a tiny CLIP and a tiny T5 tokenizer.
* A term inside a real word (wordfreq's list, built-in names and places) is no hit unless
  the term is ``match: substring``; obfuscations stay caught.
* The classifier scores the render scope and sentence-sized windows, so scene text does not
  dilute a toxic word's score.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest

from safetext.detect.classifiers import WINDOW_WORDS, text_windows
from safetext.detect.tokenized import TokenizerReadings, align, map_span, max_length, pipeline_tokenizers, read_as
from safetext.policy import Action, Decision, PolicyEngine
from safetext.policy.readings import check_with_readings

TESTBED_TOKENIZER = Path(__file__).resolve().parents[1] / "safetext" / "testbed" / "model" / "tokenizer"

INLINE = """\
version: 1
name: inline
categories:
  insult: {action: rewrite, targets: [friend]}
  profanity: {action: rewrite, targets: [heck]}
  sexual: {action: rewrite, targets: [flower]}
  slur: {action: rewrite, targets: [person]}
terms:
  insult:
    idiot: angel
    moron: tiger
    prat: pal
    raper: robber
  profanity:
    shit: cool
    shite: cool
    fuck: {targets: heck, match: substring}
    cunt: {targets: cat, match: substring}
    ass: hat
  sexual:
    cock: rooster
    dick: duck
    penis: pencil
    sex: love
  slur:
    jap: person
"""


def _engine(tmp_path_factory: pytest.TempPathFactory, body: str, name: str) -> PolicyEngine:
    path = tmp_path_factory.mktemp("policies") / f"{name}.yaml"
    path.write_text(body, encoding="utf-8")
    return PolicyEngine(path)


@pytest.fixture(scope="module")
def inline(tmp_path_factory: pytest.TempPathFactory) -> PolicyEngine:
    return _engine(tmp_path_factory, INLINE, "inline")


@pytest.fixture(scope="module")
def no_builtin(tmp_path_factory: pytest.TempPathFactory) -> PolicyEngine:
    return _engine(tmp_path_factory, INLINE + "builtin_names: false\n", "no_builtin")


# ---- tokenizer readings ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizers() -> dict[str, object]:
    transformers = pytest.importorskip("transformers")
    from safetext.pipelines.tiny import tiny_clip_tokenizer, tiny_t5_tokenizer

    testbed = transformers.AutoTokenizer.from_pretrained(str(TESTBED_TOKENIZER), local_files_only=True)
    return {"testbed": testbed, "tiny-clip": tiny_clip_tokenizer(), "tiny-t5": tiny_t5_tokenizer()}


def _ids(tokenizer: object, text: str) -> list[int]:
    limit = max_length(tokenizer)
    return list(tokenizer(text, truncation=limit is not None, max_length=limit)["input_ids"])  # type: ignore[operator]


def _guarded(engine: PolicyEngine, readings: TokenizerReadings, prompt: str) -> Decision:
    """What the Guard decides for ``prompt`` (Guard._decide_input without a pipeline)."""
    return check_with_readings(engine, prompt, readings(prompt), engine.check)


BASES = ["idiot", "moron", "shit"]
TEMPLATES = ['a sign that says "{}"', "{}", "a poster with {} written on it"]
# Characters a tokenizer may drop, lower-case or fold: Latin-1 letters and symbols, Greek and
# Cyrillic capitals, controls, format characters, a whitespace run.
INSERTS = ["  ", "\t", "\x00", "\x1b", "\u200b", "\u2063", "\ufe0f", "¢", "©", "®", "À", "Ç", "Ð", "ß", "ª", "µ", "×", "Σ", "Ї"]


def _variants(word: str) -> list[str]:
    out = {word.upper(), word.title(), "".join(c.upper() if i % 2 else c for i, c in enumerate(word))}
    for k in range(1, len(word)):
        for ins in INSERTS:
            out.add(word[:k] + ins + word[k:])
    for k, c in enumerate(word):
        out.add(word[:k] + c.upper() + word[k + 1 :])
    return sorted(out)


@pytest.mark.parametrize("name", ["testbed", "tiny-clip", "tiny-t5"])
def test_every_spelling_a_tokenizer_reads_as_a_caught_one_is_caught(tokenizers: dict[str, object], name: str) -> None:
    engine = PolicyEngine("default")
    tok = tokenizers[name]
    readings = TokenizerReadings([tok])
    same_ids = same_reading = 0
    missed = []
    for base, template in itertools.product(BASES, TEMPLATES):
        caught = template.format(base)
        assert engine.check(caught).action is Action.REWRITE
        ids, reading = _ids(tok, caught), read_as(tok, caught)
        for variant in _variants(base):
            prompt = template.format(variant)
            equal_ids = _ids(tok, prompt) == ids
            equal_reading = read_as(tok, prompt) == reading
            same_ids += equal_ids
            same_reading += equal_reading
            if (equal_ids or equal_reading) and _guarded(engine, readings, prompt).action is not Action.REWRITE:
                missed.append(prompt)
    assert missed == []
    assert same_reading > 0 and same_reading >= same_ids  # the property was exercised


@pytest.mark.parametrize(
    ("name", "prompt", "covers"),
    [
        ("testbed", 'a sign that says "idiÀot"', "idiÀot"),  # À is not in the testbed vocabulary: idi <unk> ot
        ("testbed", 'a sign that says "sh©it"', "sh©it"),
        ("tiny-t5", 'a sign that says "idi¢ot"', "idi¢ot"),
    ],
)
def test_a_spelling_only_the_tokenizer_reveals_is_rewritten_in_the_prompt(
    tokenizers: dict[str, object], name: str, prompt: str, covers: str
) -> None:
    engine = PolicyEngine("default")
    assert engine.check(prompt).action is Action.ALLOW  # the prompt alone leaks
    decision = _guarded(engine, TokenizerReadings([tokenizers[name]]), prompt)
    assert decision.action is Action.REWRITE, decision.reasons
    assert [s.text for s in decision.spans] == [covers]
    assert all(prompt[s.start : s.end] == s.text and s.method.startswith("tokenizer/") for s in decision.spans)
    assert decision.benign_prompt is not None and decision.benign_prompt.startswith('a sign that says "')
    assert covers not in decision.benign_prompt  # the benign prompt is the prompt's own rewrite


@pytest.mark.parametrize("prompt", ['a sign that says "IDIΣOT"', 'a sign that says "ΒDSΜ"', 'a sign that says "βdsμ"', 'A SIGN THAT SAYS "ASSՀՕLE"'])
def test_a_letter_read_by_its_other_case_is_caught_without_the_tokenizer(tokenizers: dict[str, object], prompt: str) -> None:
    """CLIP lower-cases: Σ is σ to it (read o), and ΒDSΜ and βdsμ are one input (Μ reads m,
    μ reads u). The engine reads both cases itself, so the prompt alone is caught and the
    lower-cased reading, which is the same input, is caught too."""
    engine = PolicyEngine("default")
    tok = tokenizers["tiny-clip"]
    assert engine.check(prompt).action is Action.REWRITE
    lowered = prompt.lower()
    assert _ids(tok, lowered) == _ids(tok, prompt)
    assert engine.check(lowered).action is Action.REWRITE


def test_readings_skip_what_reads_alike_and_are_cached(tokenizers: dict[str, object]) -> None:
    readings = TokenizerReadings([tokenizers["tiny-clip"], tokenizers["testbed"]])
    assert readings('A sign that says "hello"') == ()  # decoders add spaces and lower-case: the same text
    first = readings('a sign that says "idiÀot"')
    assert first == ('a sign that says " idiot "',)  # the tiny CLIP keeps À; the testbed drops it
    assert readings('a sign that says "idiÀot"') is first


def test_truncation_follows_model_max_length(tokenizers: dict[str, object]) -> None:
    tok = tokenizers["tiny-clip"]
    limit = max_length(tok)
    assert limit is not None
    long = "a calm lake " * 20 + 'a sign that says "idiot"'
    reading = read_as(tok, long)
    assert "idiot" not in reading and len(_ids(tok, long)) == limit
    engine = PolicyEngine("default")
    assert _guarded(engine, TokenizerReadings([tok]), long).action is Action.REWRITE  # the raw prompt still counts


def test_pipeline_tokenizers_are_found_once_each(tokenizers: dict[str, object]) -> None:
    clip, t5 = tokenizers["tiny-clip"], tokenizers["tiny-t5"]
    pipe = SimpleNamespace(tokenizer=clip, tokenizer_2=clip, tokenizer_3=t5, text_encoder=None)
    assert pipeline_tokenizers(pipe) == [clip, t5]
    assert pipeline_tokenizers(SimpleNamespace(tokenizer=None)) == []
    assert not TokenizerReadings([])


@pytest.mark.parametrize(
    ("raw", "reading", "start", "end", "expected"),
    [
        ("a sign idiÀot x", "a sign idiot x", 7, 12, "idiÀot"),
        ("IDI  OT", "idi ot", 0, 6, "IDI  OT"),
        ('"id" "iot"', '" id " " iot "', 2, 12, 'id" "iot'),
        ("id&#105;ot", "idiot", 0, 5, "id&#105;ot"),
    ],
)
def test_align_maps_a_reading_span_onto_the_prompt(raw: str, reading: str, start: int, end: int, expected: str) -> None:
    where = map_span(align(raw, reading), start, end)
    assert where is not None and raw[where[0] : where[1]] == expected


def test_a_reading_span_with_no_place_in_the_prompt_blocks() -> None:
    engine = PolicyEngine("default")
    decision = engine.check_readings("   ", ["idiot"])
    assert decision.action is Action.BLOCK and decision.benign_prompt is None
    assert any("tokenizer reading" in r for r in decision.reasons)


class _WordPolicy:
    """A policy without an engine: it rewrites prompts containing "idiot"."""

    def check(self, prompt: str) -> Decision:
        if "idiot" in prompt:
            return Decision(action=Action.REWRITE, prompt=prompt, benign_prompt=prompt.replace("idiot", "angel"), reasons=["idiot"])
        return Decision(action=Action.ALLOW, prompt=prompt)


def test_any_policy_object_gets_the_strictest_reading() -> None:
    policy = _WordPolicy()
    decision = check_with_readings(policy, "IDI_OT", ["idiot"], policy.check)
    assert decision.action is Action.REWRITE and decision.prompt == "IDI_OT" and decision.benign_prompt == "angel"
    assert decision.reasons == ["tokenizer reading 'idiot': idiot"]
    assert check_with_readings(policy, "a cat", ["a cat"], policy.check).action is Action.ALLOW


def test_guard_checks_the_tiny_pipelines_tokenizer_reading() -> None:
    from _inject_helpers import LOCALIZED, tiny

    from safetext import Guard

    pipe = tiny("sd3")
    guard = Guard(pipe, policy="default", preset=LOCALIZED["sd3"])
    own = guard.readings.tokenizers  # private copies of the pipeline's three tokenizers
    theirs = (pipe.tokenizer, pipe.tokenizer_2, pipe.tokenizer_3)
    assert len(own) == 3 and not any(a is b for a in own for b in theirs)
    assert sorted(type(t).__name__ for t in own) == sorted(type(t).__name__ for t in theirs)
    prompt = 'a sign that says "idi¢ot"'  # T5 reads ¢ as <unk>, which decodes to nothing
    assert PolicyEngine("default").check(prompt).action is Action.ALLOW
    (decision,) = guard.check(prompt)
    assert decision.action is Action.REWRITE and decision.spans[0].text == "idi¢ot"
    assert guard.check('a sign that says "hello"')[0].action is Action.ALLOW


@pytest.mark.slow
def test_testbed_guard_rewrites_a_spelling_only_its_tokenizer_reveals() -> None:
    import torch

    from safetext import Guard, testbed

    pipe = testbed.load()
    guard = Guard(pipe, policy="testbed", preset="auto")
    prompt = 'a sign that says "idiÀot"'
    assert guard.policy.check(prompt).action is Action.ALLOW  # formerly leaking
    result = guard(prompt, num_inference_steps=4, generator=torch.Generator().manual_seed(0), output_type="np")
    assert result.decision.action is Action.REWRITE and "idi" not in (result.decision.benign_prompt or "")
    assert result.images is not None and result.patched_layers


# ---- Scunthorpe ------------------------------------------------------------------------------

INNOCENT_WORDS = [
    "assess", "classic", "Scunthorpe", "cocktail", "Penistone", "C L A S S", "S C U N T H O R P E",
    "rapper", "Pratt", "Shiite", "Dick Van Dyke", "Hancock", "Essex", "Sussex", "Matsushita",
    "J A P A N", "A S S I S T A N T", "a photo of Chris Pratt", "the Shiite mosque", "R A P P E R",
]
CAUGHT = [
    ("youidiot", ["idiot"]), ("f.u.c.k", ["fuck"]), ("fuuuuck", ["fuck"]), ("sh1t", ["shit"]),
    ("I D I O T", ["idiot"]), ("idiotidiotidiot", ["idiot", "idiot", "idiot"]), ("youidiotyou", ["idiot"]),
]


@pytest.mark.parametrize("text", INNOCENT_WORDS)
@pytest.mark.parametrize("template", ["{}", 'a sign that says "{}"'])
def test_a_term_inside_a_real_word_is_no_hit(inline: PolicyEngine, text: str, template: str) -> None:
    decision = inline.check(template.format(text))
    assert decision.action is Action.ALLOW, decision.reasons


@pytest.mark.parametrize(("text", "terms"), CAUGHT)
def test_obfuscations_are_still_caught(inline: PolicyEngine, text: str, terms: list[str]) -> None:
    decision = inline.check(f'a sign that says "{text}"')
    assert [s.term for s in decision.spans] == terms and decision.action is Action.REWRITE


@pytest.mark.parametrize("text", ["Pratt", "Matsushita", "classic", "rapper", "J A P A N"])
def test_real_words_come_from_wordfreq_not_the_builtin_list(no_builtin: PolicyEngine, text: str) -> None:
    assert no_builtin.check(text).action is Action.ALLOW


@pytest.mark.parametrize(("text", "term"), [("Dick Van Dyke", "dick"), ("Scunthorpe", "cunt")])
def test_without_builtin_names_names_and_substring_terms_match(no_builtin: PolicyEngine, inline: PolicyEngine, text: str, term: str) -> None:
    assert inline.check(text).action is Action.ALLOW
    assert [s.term for s in no_builtin.check(text).spans] == [term]


def test_match_substring_says_a_term_counts_inside_real_words(tmp_path_factory: pytest.TempPathFactory) -> None:
    body = INLINE.replace("    ass: hat\n", "    ass: {targets: hat, match: substring}\n") + "builtin_names: false\n"
    engine = _engine(tmp_path_factory, body, "substring")
    assert [s.term for s in engine.check("classic").spans] == ["ass"]
    assert _engine(tmp_path_factory, INLINE + "builtin_names: false\n", "word").check("classic").action is Action.ALLOW


def test_default_policy_keeps_the_scunthorpe_cases() -> None:
    engine = PolicyEngine("default")
    for text in INNOCENT_WORDS:
        assert engine.check(text).action is Action.ALLOW, text
    for text, _terms in CAUGHT:
        assert engine.check(text).action is Action.REWRITE, text


# ---- classifier windows ----------------------------------------------------------------------

SCENE = (
    "a quiet harbour town at sunset, fishing boats resting on calm water, gulls circling above the old "
    "stone pier, warm golden light on the cobbled streets and painted wooden houses, soft clouds drifting "
    "over the distant green hills and lighthouse, "
)
CLASSIFIED = """\
version: 1
name: classified
categories:
  insult: {action: rewrite, targets: [friend]}
  toxicity: {action: rewrite, targets: [nice]}
terms:
  insult:
    moron: tiger
allow: [blorfland]
classifier: {backend: profanity-check, threshold: 0.85, category: toxicity}
"""


class _Diluted:
    """Toxic when "blorf" is one of at most 15 words: a bag-of-words score that dilutes."""

    name = "diluted"

    def score(self, texts: list[str]) -> list[float]:
        return [1.0 if any(w.strip('",.').lower().startswith("blorf") for w in t.split()) and len(t.split()) <= 15 else 0.1 for t in texts]


def test_text_windows_are_scope_sentences_and_word_windows() -> None:
    text = SCENE + 'a chalkboard sign that says "hello". A cat.'
    windows = text_windows(text, [(len(SCENE) + 29, len(SCENE) + 34)])
    assert windows[0] == (0, len(text)) and (len(SCENE) + 29, len(SCENE) + 34) in windows
    assert all(len(text[a:b].split()) <= WINDOW_WORDS for a, b in windows[1:])
    assert any(text[a:b] == "A cat" for a, b in windows)
    covered = set().union(*(range(a, b) for a, b in windows[1:]))
    assert all(i in covered for i, c in enumerate(text) if c.isalpha())


def test_scene_text_does_not_dilute_the_classifier(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("clf") / "classified.yaml"
    path.write_text(CLASSIFIED, encoding="utf-8")
    prompt = SCENE + 'a chalkboard sign that says "blorf"'
    clf = _Diluted()
    assert clf.score([prompt]) == [0.1]  # the whole prompt alone is diluted
    decision = PolicyEngine(path, classifier=clf).check(prompt)
    assert decision.action is Action.REWRITE
    assert [s.text for s in decision.spans] == ["blorf"] and decision.benign_prompt == SCENE + 'a chalkboard sign that says "nice"'


def test_profanity_check_fires_on_a_window_of_a_long_prompt(tmp_path_factory: pytest.TempPathFactory) -> None:
    profanity_check = pytest.importorskip("profanity_check")
    path = tmp_path_factory.mktemp("clf") / "classified.yaml"
    path.write_text(CLASSIFIED, encoding="utf-8")
    prompt = SCENE + 'a chalkboard sign that says "fuck"'
    assert profanity_check.predict_prob([prompt])[0] < 0.85  # diluted over the whole prompt
    decision = PolicyEngine(path).check(prompt)
    assert decision.action is Action.REWRITE and [s.text for s in decision.spans] == ["fuck"]
    assert PolicyEngine(path).check(SCENE).action is Action.ALLOW


def test_the_allow_list_holds_for_classifier_spans(tmp_path_factory: pytest.TempPathFactory) -> None:
    path = tmp_path_factory.mktemp("clf") / "classified.yaml"
    path.write_text(CLASSIFIED, encoding="utf-8")
    engine = PolicyEngine(path, classifier=_Diluted())
    assert engine.check('a sign that says "blorf"').action is Action.REWRITE
    allowed = engine.check('a sign that says "Blorfland"')  # the only responsible word is allowed
    assert allowed.action is Action.ALLOW and allowed.spans == []


def test_readings_leave_the_pipelines_tokenizer_settings_alone(tokenizers: dict[str, object]) -> None:
    """A fast tokenizer keeps truncation settings on its backend; the pipeline's own must not change."""
    from safetext.pipelines.tiny import tiny_clip_tokenizer

    tok = tiny_clip_tokenizer()
    backend = tok._tokenizer  # type: ignore[attr-defined]
    backend.no_truncation()
    readings = TokenizerReadings([tok])
    assert readings("a calm lake " * 20 + 'a sign that says "idiÀot"')
    assert backend.truncation is None
    assert readings.tokenizers[0]._tokenizer is not backend
