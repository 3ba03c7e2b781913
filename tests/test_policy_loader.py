"""Policy files: name resolution, extends, and errors that name file, line and field."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from safetext.policy import Policy, PolicyError, load_policy, policies_dir
from safetext.policy.loader import policy_fingerprint

MINIMAL = """\
version: 1
name: tiny
categories:
  insult:
    action: rewrite
    targets: [friend]
terms:
  insult:
    idiot: angel
    moron:
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["default", "default.yaml", "policies/default.yaml", "strict", "testbed", "tenants/example-tenant"])
def test_names_resolve_from_any_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.chdir(tmp_path)
    policy = load_policy(name)
    assert isinstance(policy, Policy) and policy.source and Path(policy.source).is_file()


def test_absolute_path_and_shipped_policies_are_valid() -> None:
    for path in sorted(policies_dir().rglob("*.yaml")):
        assert load_policy(path).categories


def test_default_lexicon_meets_the_brief() -> None:
    policy = load_policy("default")
    assert len(policy.term_items()) >= 300
    assert {"profanity", "insult", "sexual", "slur", "violence"} <= set(policy.categories)
    for category, term, spec in policy.term_items():
        assert spec.targets or policy.categories[category].targets, term
    assert "Source of the lexicon" in (policies_dir() / "default.yaml").read_text(encoding="utf-8")


def test_extends_resolves_relative_to_the_file_and_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "base/base.yaml", MINIMAL)
    child = _write(
        tmp_path,
        "child/child.yaml",
        "extends: ../base/base.yaml\nname: child\ncategories:\n  insult:\n    action: block\nterms:\n  insult:\n    idiot: false\nallow: [x]\n",
    )
    monkeypatch.chdir(tmp_path / "base")
    policy = load_policy(child)
    assert policy.name == "child"
    assert policy.categories["insult"].action == "block"
    assert policy.categories["insult"].targets == ["friend"]  # inherited field
    assert [t for _, t, _ in policy.term_items()] == ["moron"]
    assert policy.allow == ["x"]


def test_allow_lists_accumulate(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", MINIMAL + "allow: [one]\n")
    policy = load_policy(_write(tmp_path, "b.yaml", "extends: a.yaml\nallow: [two]\n"))
    assert policy.allow == ["one", "two"]


def _error(tmp_path: Path, text: str, name: str = "bad.yaml") -> PolicyError:
    path = _write(tmp_path, name, text)
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    return info.value


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        (MINIMAL + "colour: red\n", 11, "colour", "unknown key"),
        (MINIMAL.replace("    action: rewrite", "    acton: rewrite"), 5, "categories.insult.acton", "unknown key"),
        (MINIMAL.replace("action: rewrite", "action: destroy"), 5, "categories.insult.action", "rewrite"),
        (MINIMAL.replace("    idiot: angel", "    idiot: {targets: angel, mode: word}"), 9, "terms.insult.idiot.mode", "unknown key"),
        (MINIMAL.replace("version: 1", "version: 7"), 1, "version", "1"),
        (MINIMAL + "scope:\n  render_boost: 9\n", 12, "scope.render_boost", "less than or equal"),
        (MINIMAL + "normalization:\n  leetspeak: maybe\n", 12, "normalization.leetspeak", "boolean"),
        (MINIMAL.replace("terms:\n  insult:", "terms:\n  insults:"), 8, "terms.insults", "unknown category"),
        (MINIMAL.replace("    targets: [friend]\n", ""), 9, "terms.insult.moron", "no benign target"),
        (MINIMAL.replace("    action: rewrite", "    action: block\n    render_action: flag"), 6, "categories.insult.render_action", "less strict"),
        (MINIMAL + "classifier:\n  backend: profanity-check\n  category: nope\n", 13, "classifier.category", "unknown category"),
        (MINIMAL + "classifier:\n  backend: profanity-check\n", 11, "classifier.category", "required"),
        (MINIMAL.replace("    moron:\n", "    idiot: again\n"), 10, "terms.insult.idiot", "duplicate key"),
    ],
)
def test_schema_errors_name_file_line_and_field(tmp_path: Path, text: str, line: int, field: str, words: str) -> None:
    err = _error(tmp_path, text)
    message = str(err)
    assert f"bad.yaml:{line}" in message, message
    assert field in message, message
    assert words in message, message
    assert "Traceback" not in message


def test_error_in_parent_names_the_parent_file(tmp_path: Path) -> None:
    _write(tmp_path, "parent.yaml", MINIMAL.replace("action: rewrite", "action: nuke"))
    err = _error(tmp_path, "extends: parent.yaml\n", name="child.yaml")
    assert "parent.yaml:5" in str(err) and "categories.insult.action" in str(err)


def test_error_in_child_override_names_the_child(tmp_path: Path) -> None:
    _write(tmp_path, "parent.yaml", MINIMAL)
    err = _error(tmp_path, "extends: parent.yaml\ncategories:\n  insult:\n    severity: extreme\n", name="child.yaml")
    assert "child.yaml:4" in str(err) and "categories.insult.severity" in str(err)


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("categories: [unclosed\n", "invalid YAML"),
        ("- a\n- b\n", "must be a YAML mapping"),
        ("extends: missing.yaml\n", "not found"),
        ("extends: bad.yaml\n", "circular"),
        ("extends: 5\n", "extends"),
    ],
)
def test_broken_files_get_clear_errors(tmp_path: Path, text: str, expect: str) -> None:
    assert expect in str(_error(tmp_path, text))


def test_missing_policy_and_bad_encoding(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="not found"):
        load_policy(tmp_path / "nope.yaml")
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(PolicyError, match=r"latin1.yaml:1: file is not valid UTF-8"):
        load_policy(path)


def test_empty_file_is_refused_and_explicit_empty_terms_are_not(tmp_path: Path) -> None:
    err = _error(tmp_path, "", name="empty.yaml")
    assert "empty.yaml:1" in str(err) and "terms: {}" in str(err)
    policy = load_policy(_write(tmp_path, "explicit.yaml", "terms: {}\n"))
    assert policy.terms == {} and policy.categories == {}


def test_fingerprint_tracks_content(tmp_path: Path) -> None:
    a = load_policy(_write(tmp_path, "a.yaml", MINIMAL))
    b = load_policy(_write(tmp_path, "b.yaml", MINIMAL.replace("angel", "saint")))
    assert policy_fingerprint(a) != policy_fingerprint(b)
    assert policy_fingerprint(a) == policy_fingerprint(load_policy(tmp_path / "a.yaml"))


def test_json_schema_forbids_unknown_keys() -> None:
    schema = Policy.model_json_schema()
    json.dumps(schema)
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["Category"]["additionalProperties"] is False
    assert "extends" in schema["properties"]


def test_policy_constructed_in_code_is_validated() -> None:
    with pytest.raises(ValueError, match="unknown category"):
        Policy.model_validate({"terms": {"nope": {"x": "y"}}})
    assert os.sep  # keep imports used
