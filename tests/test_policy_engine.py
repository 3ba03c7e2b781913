"""The engine end to end: obfuscated toxic prompts, innocent prompts, rewrite, decisions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import no_hang

from safetext.policy import Action, Decision, PolicyEngine
from safetext.testbed.vocab import INNOCENT, TOXIC_TO_BENIGN

PROMPTS = Path(__file__).resolve().parents[1] / "benchmarks" / "prompts"


def _toxic_table() -> list[tuple[str, str]]:
    """(prompt, obfuscated text the spans must cover) from the benchmark's toxic set."""
    lines = (PROMPTS / "policy_toxic.tsv").read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t")) for line in lines if line and not line.startswith("#")]  # type: ignore[misc]


TOXIC = _toxic_table()
INNOCENT_PROMPTS = [x for x in (PROMPTS / "policy_innocent.txt").read_text(encoding="utf-8").splitlines() if x.strip()]
TESTBED_TEMPLATES = [
    'a red sign that says "{w}"',
    "a blue banner reading {w}",
    'a green circle with the word "{w}"',
    'a yellow sign with black letters that says "{w}"',
    'an orange banner in serif font reading "{w}"',
]


@pytest.fixture(scope="module")
def default() -> PolicyEngine:
    return PolicyEngine("default")


@pytest.fixture(scope="module")
def testbed() -> PolicyEngine:
    return PolicyEngine("testbed")


@pytest.fixture(scope="module")
def strict() -> PolicyEngine:
    return PolicyEngine("strict", classifier=_NeverToxic())


def _opt_in(strict: PolicyEngine, prompt: str) -> bool:
    """True when the prompt's only toxic words are ordinary negative words (hate, killer) or
    clinical words (penis): the default policy's opt-in categories ``negative`` and ``mature``,
    which default allows and strict rewrites."""
    spans = strict.check(prompt).spans
    return bool(spans) and all(s.category in ("negative", "mature") for s in spans)


def _covered(decision: Decision, prompt: str, expected: str) -> bool:
    at = prompt.find(expected)
    assert at >= 0, f"table error: {expected!r} not in {prompt!r}"
    return all(
        any(s.start <= k < s.end for s in decision.spans) for k in range(at, at + len(expected)) if prompt[k].strip()
    )


def test_tables_are_big_enough() -> None:
    assert len(TOXIC) >= 150
    assert len(INNOCENT_PROMPTS) >= 150


@pytest.mark.parametrize(("prompt", "expected"), TOXIC, ids=[f"toxic{i}" for i in range(len(TOXIC))])
def test_obfuscated_toxic_prompt_is_caught_with_exact_offsets(
    default: PolicyEngine, strict: PolicyEngine, prompt: str, expected: str
) -> None:
    decision = default.check(prompt)
    if decision.action is Action.ALLOW and _opt_in(strict, prompt):
        decision = strict.check(prompt)
    assert decision.action is not Action.ALLOW
    assert _covered(decision, prompt, expected), [(s.start, s.end, s.text) for s in decision.spans]
    for span in decision.spans:
        assert prompt[span.start : span.end] == span.text
        assert span.end <= prompt.find(expected) + len(expected) + 2 or span.start >= prompt.find(expected) + len(expected)


@pytest.mark.parametrize("prompt", INNOCENT_PROMPTS, ids=[f"innocent{i}" for i in range(len(INNOCENT_PROMPTS))])
def test_innocent_prompt_is_allowed(default: PolicyEngine, prompt: str) -> None:
    decision = default.check(prompt)
    assert decision.action is Action.ALLOW, decision.reasons
    assert decision.benign_prompt is None


@pytest.mark.parametrize(("prompt", "expected"), TOXIC, ids=[f"idem{i}" for i in range(len(TOXIC))])
def test_rewrite_is_idempotent(default: PolicyEngine, prompt: str, expected: str) -> None:
    decision = default.check(prompt)
    if decision.action is Action.REWRITE:
        assert decision.benign_prompt is not None
        again = default.check(decision.benign_prompt)
        assert again.action is Action.ALLOW, (decision.benign_prompt, again.reasons)


@pytest.mark.parametrize("policy", ["default", "testbed"])
@pytest.mark.parametrize(("term", "target"), sorted(TOXIC_TO_BENIGN.items()))
def test_testbed_terms_rewrite_to_their_targets(
    policy: str, term: str, target: str, default: PolicyEngine, testbed: PolicyEngine, strict: PolicyEngine
) -> None:
    engine = default if policy == "default" else testbed
    if policy == "default" and _opt_in(strict, term):
        assert default.check(term).action is Action.ALLOW  # an opt-in negative word: allowed by default ...
        engine = strict  # ... and rewritten by strict
    for template in TESTBED_TEMPLATES:
        prompt = template.format(w=term)
        decision = engine.check(prompt)
        assert decision.action is Action.REWRITE, (prompt, decision.reasons)
        assert [prompt[s.start : s.end] for s in decision.spans] == [term]
        assert decision.spans[0].in_render_scope
        if policy == "testbed":
            assert decision.benign_prompt == template.format(w=target)
            assert decision.spans[0].target == target


@pytest.mark.parametrize("policy", ["default", "testbed"])
@pytest.mark.parametrize("word", INNOCENT)
def test_testbed_innocent_words_allowed(policy: str, word: str, default: PolicyEngine, testbed: PolicyEngine) -> None:
    engine = default if policy == "default" else testbed
    for template in TESTBED_TEMPLATES:
        assert engine.check(template.format(w=word)).action is Action.ALLOW


@pytest.mark.parametrize(
    ("prompt", "benign"),
    [
        ('a sign that says "IDIOT"', 'a sign that says "ANGEL"'),
        ('a sign that says "Idiot"', 'a sign that says "Angel"'),
        ('a sign that says "idiot"', 'a sign that says "angel"'),
        ("IDIOTS everywhere", "ANGELS everywhere"),
        ("Shitting spree over, Loser", "Joking spree over, Champ"),
        ('a banner reading "1D10T"', 'a banner reading "ANGEL"'),
        ("a sign that says UGLY and STUPID", "a sign that says CUTE and CLEVER"),
        ("she hated the haters", "she loved the lovers"),
    ],
)
def test_rewrite_keeps_case_and_inflection(testbed: PolicyEngine, prompt: str, benign: str) -> None:
    assert testbed.check(prompt).benign_prompt == benign


def test_rewrite_is_deterministic(default: PolicyEngine) -> None:
    prompt = 'a wall with "you stupid b1tch, go to hell" and "f u c k" painted on it'
    first = default.check(prompt)
    assert all(default.check(prompt) == first for _ in range(3))
    assert PolicyEngine("default").check(prompt) == first


def test_similar_length_target_is_preferred(default: PolicyEngine) -> None:
    # the insult category offers friend/buddy/pal/star; "twerp" has its own target
    decision = default.check('a sign that says "cretin"')
    assert decision.spans[0].target == "buddy"


def test_overlapping_spans_are_resolved(default: PolicyEngine) -> None:
    decision = default.check("kill yourself, you piece of shit")
    texts = [s.text for s in decision.spans]
    assert texts == ["kill yourself", "piece of shit"]
    assert decision.benign_prompt == "love yourself, you piece of cake"
    starts = [s.start for s in decision.spans]
    assert starts == sorted(starts)
    assert all(a.end <= b.start for a, b in zip(decision.spans, decision.spans[1:]))


def test_decision_is_json_serialisable_and_risk_bounded(default: PolicyEngine) -> None:
    for prompt, _ in TOXIC[:40]:
        decision = default.check(prompt)
        data = json.loads(decision.model_dump_json())
        assert data["action"] in {"allow", "rewrite", "block"}
        assert 0.0 <= decision.risk <= 1.0
        assert Decision.model_validate(data) == decision
    assert default.check("a calm lake").risk == 0.0


def test_rendered_text_is_riskier_than_description(default: PolicyEngine) -> None:
    rendered = default.check('a sign that says "idiot"')
    described = default.check("an idiot holding a sign")
    assert rendered.spans[0].in_render_scope and not described.spans[0].in_render_scope
    assert rendered.risk > described.risk


def test_strict_blocks_slurs_and_tenant_overrides() -> None:
    strict = PolicyEngine("strict", classifier=_NeverToxic())
    assert strict.check('a sign that says "f4ggot"').action is Action.BLOCK
    assert strict.check('a sign that says "idiot"').action is Action.REWRITE
    tenant = PolicyEngine("policies/tenants/example-tenant.yaml")
    assert tenant.check('a beer label that says "damn good"').action is Action.ALLOW
    assert tenant.check("a sign that says kill them").action is Action.BLOCK
    assert tenant.check('a label that says "Bitter Bastard Ale"').action is Action.ALLOW
    assert tenant.check('a sign that says "cheapskate"').benign_prompt == 'a sign that says "generous"'


class _NeverToxic:
    name = "never"

    def score(self, texts: list[str]) -> list[float]:
        return [0.0 for _ in texts]


@pytest.mark.parametrize(
    "prompt",
    ["", "\x00\x01\x02", "idiot\x00idiot", "\ud800 lone surrogate idiot", "\u200b" * 50, "😀" * 30 + " idiot"],
)
def test_odd_input_never_crashes(default: PolicyEngine, prompt: str) -> None:
    decision = default.check(prompt)
    for span in decision.spans:
        assert prompt[span.start : span.end] == span.text
    if "idiot" in prompt:
        assert decision.action is Action.REWRITE
    else:
        assert decision.action is Action.ALLOW


@pytest.mark.parametrize(
    "filler",
    # the last five reach the name rules and the case variants on every word
    ["idiot ", "a b c d ", "lorem ipsum dolor ", '"x ', "a" * 99, "The Tit. ", "Hahoe-dong ", "Dong-", "Dick Smith ", "ΒDSΜ μ "],
)
def test_100k_prompt_is_fast(default: PolicyEngine, filler: str) -> None:
    prompt = (filler * (100_000 // len(filler) + 1))[:100_000]
    with no_hang():  # the < 1 s goal is measured by benchmarks/policy_bench.py
        decision = default.check(prompt)
    assert decision.action in (Action.ALLOW, Action.REWRITE)


def test_too_long_prompt_is_blocked_without_analysis() -> None:
    from safetext.policy import load_policy

    policy = load_policy("default").model_copy(update={"max_chars": 10})
    decision = PolicyEngine(policy).check("a very long and harmless prompt")
    assert decision.action is Action.BLOCK and "characters" in decision.reasons[0]


def _run(code: str) -> str:
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=True)
    return out.stdout.strip()


def test_import_policy_loads_no_torch() -> None:
    code = (
        "import sys, safetext.policy, safetext.detect, safetext.rewrite\n"
        "print(sorted(m for m in ('torch','transformers','diffusers','spacy','thinc') if m in sys.modules))"
    )
    assert _run(code) == "[]"


def test_checking_with_a_cached_lexicon_loads_no_spacy(default: PolicyEngine) -> None:
    # the module fixture has compiled and cached the default lexicon
    code = (
        "import sys\nfrom safetext.policy import PolicyEngine\n"
        "d = PolicyEngine('default').check('a sign that says \"1d10t\"')\n"
        "print(d.action.value, sorted(m for m in ('torch','spacy','transformers') if m in sys.modules))"
    )
    assert _run(code) == "rewrite []"


def test_render_mode_checks_only_rendered_text(tmp_path) -> None:  # noqa: ANN001
    path = tmp_path / "render.yaml"
    path.write_text("extends: default\nscope:\n  mode: render\n", encoding="utf-8")
    engine = PolicyEngine(str(path))
    described = engine.check('an idiot holding a sign that says "hello"')
    assert described.action is Action.FLAG and described.spans[0].text == "idiot"  # reported, not acted on
    assert described.is_valid and described.sanitized_prompt == described.prompt
    assert engine.check('a sign that says "idiot"').action is Action.REWRITE
    assert engine.check("idiot").action is Action.REWRITE  # nothing to render: the whole prompt is in scope


def test_building_an_engine_leaves_the_garbage_collector_as_it_was() -> None:
    """The collector is paused while an engine is built, then restored, also after a failure."""
    import gc

    from safetext.errors import PolicyError

    assert gc.isenabled()
    PolicyEngine("default")
    assert gc.isenabled()
    with pytest.raises(PolicyError):
        PolicyEngine("no-such-policy-anywhere")
    assert gc.isenabled()
    gc.disable()
    try:
        PolicyEngine("default")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_passed_compiled_check_is_remembered_in_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks on the compiled lexicon run once per policy content and code; a changed policy runs them again."""
    import safetext.policy.checks as checks

    monkeypatch.setenv("SAFETEXT_CACHE_DIR", str(tmp_path))
    PolicyEngine("default")
    assert len(list(tmp_path.glob("checked-*"))) == 1
    calls: list[str] = []
    real = checks.compiled_problems
    monkeypatch.setattr(checks, "compiled_problems", lambda policy, matcher: calls.append("ran") or real(policy, matcher))
    PolicyEngine("default")
    assert calls == []
    policy = tmp_path / "p.yaml"
    policy.write_text("extends: default\nterms:\n  insult:\n    nitwit: ninny\n", encoding="utf-8")
    PolicyEngine(policy)
    assert calls == ["ran"] and len(list(tmp_path.glob("checked-*"))) == 2
