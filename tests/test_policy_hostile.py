"""Hostile policy files: each is refused with one error naming its file, line and field, in
bounded time and memory, by ``PolicyEngine``, ``safetext policy validate`` and ``Guard``."""

from __future__ import annotations

import re
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import no_hang
from typer.testing import CliRunner

from safetext.cli import app
from safetext.errors import GuardError, PolicyError
from safetext.guard import Guard
from safetext.policy import Policy, PolicyEngine, checks, load_policy, policies_dir
from safetext.policy.checks import check_compiled
from safetext.policy.loader import MAX_EXTENDS_DEPTH, MAX_EXTENDS_FILES, MAX_POLICY_BYTES, MAX_YAML_ALIASES, MAX_YAML_NODES
from safetext.policy.schema import MAX_WORD_CHARS

runner = CliRunner()

# Lines 1-7; appended lines start at 8.
BASE = """\
version: 1
categories:
  insult: {targets: [friend]}
  mean: {targets: [pal]}
terms:
  insult:
    idiot: angel
"""
CHILD = "extends: default\nterms:\n  insult:\n"  # a term appended here is on line 4


def _bomb() -> str:
    """Billion laughs: nine levels of nine aliases, 9^9 strings once expanded."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for parent, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [{', '.join([f'*{parent}'] * 9)}]")
    return "\n".join(lines) + "\n"


def _growing_aliases(levels: int) -> str:
    """Each anchor wraps the previous one in a list: depth grows by one per alias."""
    lines = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Case:
    """One hostile file ``bad.yaml`` (plus helper files) and what its error must say."""

    id: str
    text: str
    where: str  # "bad.yaml:LINE", or another file's name and line
    field: str  # dotted field path the error names ("" when it is about the whole file)
    words: str
    extra: dict[str, str] = field(default_factory=dict)
    compiled: bool = False  # found on the compiled lexicon (safetext.policy.checks), not by the loader


CASES = [
    # 1. YAML alias and anchor bombs
    Case("billion-laughs", _bomb(), "bad.yaml:6", "", f"more than {MAX_YAML_NODES} YAML nodes"),
    Case("alias-count", "a: &a x\nb: [" + ", ".join(["*a"] * (MAX_YAML_ALIASES + 1)) + "]\n", "bad.yaml:2", "", f"more than {MAX_YAML_ALIASES} aliases"),
    Case("self-alias-list", "a: &a [*a]\n", "bad.yaml:1", "", "inside its own anchor"),
    Case("self-alias-mapping", "terms: &t\n  insult: *t\n", "bad.yaml:2", "", "inside its own anchor"),
    Case("alias-depth", _growing_aliases(40), "bad.yaml:31", "", "nested deeper than 32 levels once aliases are expanded"),
    Case("literal-depth", "terms: " + "[" * 40 + "]" * 40 + "\n", "bad.yaml:1", "", "nested deeper than 32 levels"),
    Case("undefined-alias", BASE + "allow: [*nowhere]\n", "bad.yaml:8", "", "names no earlier anchor"),
    # 2. size and extends limits
    Case("oversize", "terms: {}\n" + "#" * MAX_POLICY_BYTES + "\n", "bad.yaml", "", "larger than 5 MB"),
    Case("self-extends", "extends: bad.yaml\nterms: {}\n", "bad.yaml:1", "extends.0", "circular extends: "),
    Case("extends-cycle", "extends: a.yaml\n", "b.yaml:1", "extends.0", "circular extends: ", {"a.yaml": "extends: b.yaml\n", "b.yaml": "extends: a.yaml\n"}),
    Case(
        "extends-chain",
        "extends: c1.yaml\n",
        f"c{MAX_EXTENDS_DEPTH - 1}.yaml:1",
        "extends.0",
        f"extends chain longer than {MAX_EXTENDS_DEPTH} files",
        {f"c{i}.yaml": f"extends: c{i + 1}.yaml\n" for i in range(1, 12)} | {"c12.yaml": "terms: {}\n"},
    ),
    Case(
        "extends-fan-out",
        "extends: [" + ", ".join(["p.yaml"] * (MAX_EXTENDS_FILES + 1)) + "]\n",
        "bad.yaml:1",
        f"extends.{MAX_EXTENDS_FILES - 1}",
        f"more than {MAX_EXTENDS_FILES} files",
        {"p.yaml": "terms: {}\n"},
    ),
    # 3. benign targets the policy itself detects
    Case("toxic-target", CHILD + "    idiot: fuck\n", "bad.yaml:4", "terms.insult.idiot", "benign target 'fuck' of 'idiot' is itself detected", compiled=True),
    Case("toxic-target-list", CHILD + "    idiot: [pal, f.u.c.k]\n", "bad.yaml:4", "terms.insult.idiot.1", "'f.u.c.k' of 'idiot' is itself detected", compiled=True),
    Case("toxic-target-mapping", CHILD + "    idiot: {targets: [pal, sh1t]}\n", "bad.yaml:4", "terms.insult.idiot.targets.1", "'sh1t' of 'idiot' is itself detected", compiled=True),
    Case("toxic-category-target", "extends: default\ncategories:\n  insult:\n    targets: [pal, bitch]\n", "bad.yaml:4", "categories.insult.targets.1", "'bitch' is itself detected", compiled=True),
    # 4. empty policies
    Case("empty-file", "", "bad.yaml:1", "terms", "write terms: {}"),
    Case("no-terms", "version: 1\ncategories:\n  insult: {targets: [pal]}\n", "bad.yaml:1", "terms", "must list terms"),
    Case("empty-parent", "extends: p.yaml\n", "p.yaml:1", "terms", "must list terms", {"p.yaml": "# nothing here\n"}),
    # 5. YAML 1.1 booleans and nulls where words are meant
    Case("value-no", BASE + "    moron: no\n", "bad.yaml:8", "terms.insult.moron", "write false to disable the term, or quote it"),
    Case("value-off", BASE + "    moron: off\n", "bad.yaml:8", "terms.insult.moron", 'quote it for the word: "off"'),
    Case("value-y", BASE + "    moron: y\n", "bad.yaml:8", "terms.insult.moron", "read by YAML as a boolean"),
    Case("value-tilde", BASE + "    moron: ~\n", "bad.yaml:8", "terms.insult.moron", "read by YAML as null"),
    Case("key-no", BASE + "    no: pal\n", "bad.yaml:8", "terms.insult", "key 'no' is read by YAML as a boolean"),
    Case("key-null", BASE + "    ~: pal\n", "bad.yaml:8", "terms.insult", "key '~' is read by YAML as null"),
    Case("target-yes", BASE + "    moron: [yes, pal]\n", "bad.yaml:8", "terms.insult.moron.0", "'yes' is read by YAML as a boolean"),
    Case("allow-on", BASE + "allow: [on]\n", "bad.yaml:8", "allow.0", "quote it"),
    Case("category-target-false", BASE.replace("[friend]", "[friend, false]"), "bad.yaml:3", "categories.insult.targets.1", "quote it"),
    # 6. terms that can never match, and duplicates by case
    Case("punctuation-term", BASE + "    '***': pal\n", "bad.yaml:8", "terms.insult.***", "can never match", compiled=True),
    Case("joiners-term", BASE + "    '-.-': pal\n", "bad.yaml:8", "terms.insult.-.-", "nothing left to match"),
    Case("allowed-term", BASE + "allow: [idiot]\n", "bad.yaml:8", "allow.0", "hides the enabled term terms.insult.idiot"),
    Case("allowed-plural", BASE + "    morons: pal\nallow: [moron]\n", "bad.yaml:9", "allow.0", "hides the enabled term terms.insult.morons", compiled=True),
    Case("allowed-in-parent-term", "extends: default\nallow: [as]\n", "bad.yaml:2", "allow.", "hides the enabled term terms.profanity.ass", compiled=True),
    Case(
        "allowed-before-term",
        "version: 1\ncategories:\n  insult: {targets: [friend]}\nallow: [moron]\nterms:\n  insult:\n    morons: pal\n",
        "bad.yaml:7",
        "terms.insult.morons",
        "the allow list hides it",
        compiled=True,
    ),
    Case("duplicate-case", BASE + "    Idiot: pal\n", "bad.yaml:8", "terms.insult.Idiot", "same term as 'idiot'"),
    Case("duplicate-accent", BASE + "    ídiot: pal\n", "bad.yaml:8", "terms.insult.ídiot", "same term as 'idiot'"),
    Case("duplicate-across", BASE + "  mean:\n    IDIOT: pal\n", "bad.yaml:9", "terms.mean.IDIOT", "also enabled as 'idiot' in category 'insult'"),
    Case("child-disables-wrong-case", CHILD + "    Idiot: false\n", "bad.yaml:4", "terms.insult.Idiot", "write it as 'idiot'"),
    Case("initials-too-long", BASE + "    son of a gun: {targets: pal, match: initials}\n", "bad.yaml:8", "terms.insult.son of a gun", "2 to 8 letters"),
    Case("initials-not-letters", BASE + "    s0b: {targets: abc, match: initials}\n", "bad.yaml:8", "terms.insult.s0b", "matches as initials"),
    Case("initials-one-letter", BASE + "    x: {targets: o, match: initials}\n", "bad.yaml:8", "terms.insult.x", "2 to 8 letters"),
    Case("long-term", BASE + "    ? " + "ab" * 2000 + "\n    : pal\n", "bad.yaml:8", "terms.insult.abab", f"terms are at most {MAX_WORD_CHARS}"),
    Case("long-target", BASE + "    moron: [pal, " + "x" * 500 + "]\n", "bad.yaml:8", "terms.insult.moron.targets.1", f"targets are at most {MAX_WORD_CHARS}"),
    Case("long-allow", BASE + "allow: [" + "x" * 500 + "]\n", "bad.yaml:8", "allow.0", f"at most {MAX_WORD_CHARS} characters"),
    # 7. unknown classifier backend
    Case("unknown-backend", BASE + "classifier:\n  backend: nope\n  category: insult\n", "bad.yaml:9", "classifier.backend", "unknown classifier backend 'nope'; known backends:"),
]


class _NoPipe:
    """Stands in for a pipeline: the policy is loaded (and refused) before the pipe is read."""


def _by_engine(path: Path) -> str:
    with pytest.raises(PolicyError) as info:
        PolicyEngine(str(path))
    return str(info.value)


def _by_validate(path: Path) -> str:
    result = runner.invoke(app, ["policy", "validate", str(path)])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: invalid policy: "), result.stderr
    return lines[0]


def _by_guard(path: Path) -> str:
    with pytest.raises(GuardError) as info:
        Guard(_NoPipe(), policy=str(path))
    assert isinstance(info.value.__cause__, PolicyError)
    return str(info.value)


ENTRY_POINTS: dict[str, Callable[[Path], str]] = {"engine": _by_engine, "validate": _by_validate, "guard": _by_guard}

TOXIC_IN_CODE = {
    "categories": {"insult": {"targets": ["friend"]}, "profanity": {"targets": ["heck"]}},
    "terms": {"insult": {"idiot": "fuck"}, "profanity": {"fuck": "heck"}},
}


def _engine_runs_compiled_checks() -> bool:
    """Whether ``PolicyEngine.__init__`` calls ``check_compiled`` on the matcher it builds
    (the one call engine.py needs); until it does, only ``policy validate`` runs those checks."""
    try:
        PolicyEngine(Policy.model_validate(TOXIC_IN_CODE), use_spacy=False)
    except PolicyError:
        return True
    return False


_PENDING = pytest.mark.xfail(
    not _engine_runs_compiled_checks(),
    reason="PolicyEngine.__init__ does not call safetext.policy.checks.check_compiled yet",
    strict=True,
)
PARAMS = [
    pytest.param(case, entry, id=f"{case.id}-{entry}", marks=[_PENDING] if case.compiled and entry != "validate" else [])
    for case in CASES
    for entry in ENTRY_POINTS
]


@pytest.mark.parametrize(("case", "entry"), PARAMS)
def test_hostile_policy_is_refused_naming_file_line_and_field(tmp_path: Path, case: Case, entry: str) -> None:
    for name, text in case.extra.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    path = tmp_path / "bad.yaml"
    path.write_text(case.text, encoding="utf-8")
    start = time.perf_counter()
    with no_hang(60):
        message = ENTRY_POINTS[entry](path)
    elapsed = time.perf_counter() - start
    assert re.search(rf"{re.escape(case.where)}(:\d+)?: ", message), message
    assert case.field in message and case.words in message, message
    assert "Traceback" not in message and "RecursionError" not in message
    if case.id.startswith(("billion", "alias", "self-alias", "oversize", "extends")):
        assert elapsed < 5, f"{case.id} took {elapsed:.1f} s"


def test_billion_laughs_is_refused_in_little_memory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(), encoding="utf-8")
    assert len(path.read_bytes()) < 500
    tracemalloc.start()
    try:
        with pytest.raises(PolicyError, match="YAML nodes once aliases are expanded"):
            load_policy(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


@pytest.mark.parametrize(
    ("text", "check"),
    [
        (BASE + "    moron: false\n", lambda p: [t for _, t, _ in p.term_items()] == ["idiot"]),
        (BASE + "    moron: true\n", lambda p: p.terms["insult"]["moron"].enabled),
        (BASE + "    moron: 'no'\n", lambda p: p.terms["insult"]["moron"].targets == ["no"]),
        (BASE + '    "y": "n"\n', lambda p: p.terms["insult"]["y"].targets == ["n"]),
        (BASE + "    moron: !!str no\n", lambda p: p.terms["insult"]["moron"].targets == ["no"]),
        (BASE + "    moron:\n", lambda p: p.terms["insult"]["moron"].targets == []),
        (BASE + "    moron: {targets: pal, enabled: false}\n", lambda p: not p.terms["insult"]["moron"].enabled),
        (BASE + "normalization:\n  leetspeak: no\n", lambda p: p.normalization.leetspeak is False),
        (BASE + "allow: [idiots]\n", lambda p: p.allow == ["idiots"]),
        (BASE + "    Moron: pal\n", lambda p: "Moron" in p.terms["insult"]),
        ("terms: {}\n", lambda p: p.terms == {}),
        ("x: &x angel\nterms: {}\n", None),
    ],
    ids=["false-disables", "true-enables", "quoted-no", "quoted-y-n", "tagged-no", "empty-uses-category", "enabled-false",
         "boolean-field", "plural-allow", "capitalised-term", "explicit-empty-terms", "one-alias-definition"],
)
def test_what_must_keep_loading(tmp_path: Path, text: str, check: Callable[[Policy], bool] | None) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(text, encoding="utf-8")
    if check is None:
        with pytest.raises(PolicyError, match="unknown key 'x'"):  # aliases are fine; the key is not
            load_policy(path)
        return
    policy = load_policy(path)
    assert check(policy)
    assert PolicyEngine(policy).policy is policy


def test_aliases_within_the_limits_expand(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "version: 1\ncategories:\n  insult: {targets: &kind [friend, pal]}\n  mean: {targets: *kind}\n"
        "terms:\n  insult:\n    idiot: angel\n",
        encoding="utf-8",
    )
    policy = load_policy(path)
    assert policy.categories["mean"].targets == ["friend", "pal"]


@pytest.mark.parametrize("path", sorted(policies_dir().rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_policy_loads_and_builds_an_engine(path: Path) -> None:
    engine = PolicyEngine(str(path))
    check_compiled(engine.policy, engine.matcher, engine.fingerprint)
    assert engine.policy.term_items() and engine.policy._compiled_checked == engine.fingerprint


def test_policy_built_in_code_is_checked_too() -> None:
    data = TOXIC_IN_CODE
    policy = Policy.model_validate(data)  # the schema cannot compile a lexicon
    with pytest.raises(PolicyError, match=r"terms\.insult\.idiot: benign target 'fuck' of 'idiot' is itself detected"):
        check_compiled(policy)
    with pytest.raises(ValueError, match="unknown classifier backend 'nope'"):
        Policy.model_validate(data | {"classifier": {"backend": "nope", "category": "insult"}})
    with pytest.raises(ValueError, match="same term as 'idiot'"):
        Policy.model_validate({"categories": {"insult": {"targets": ["friend"]}}, "terms": {"insult": {"idiot": "pal", "IDIOT": "pal"}}})


def test_a_checked_policy_is_not_compiled_again(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = load_policy("testbed")
    engine = PolicyEngine(policy)
    check_compiled(policy, engine.matcher, engine.fingerprint)

    def refuse(_policy: Policy) -> None:
        raise AssertionError("the lexicon was compiled again for a policy that already passed")

    monkeypatch.setattr(checks, "build_matcher", refuse)
    check_compiled(policy)
    changed = policy.model_copy(update={"allow": [*policy.allow, "gosh"]})
    with pytest.raises(AssertionError, match="compiled again"):
        check_compiled(changed)
