"""What the wheel carries, how shipped names resolve, and the one error family."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import safetext
from safetext import errors

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    """Every folder of code or data under safetext/ and policies/ is a listed package, so
    setuptools ships it without warning that a data folder is absent from the list."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])

    def packages(root: Path, prefix: tuple[str, ...]) -> set[str]:
        return {
            ".".join(prefix + path.relative_to(root).parts)
            for path in [root, *root.rglob("*")]
            if path.is_dir() and path.name != "__pycache__" and any(p.is_file() for p in path.iterdir())
        }

    found = packages(ROOT / "safetext", ("safetext",)) | packages(ROOT / "policies", ("safetext", "policies"))
    assert found - listed == set(), "add these to [tool.setuptools] packages"
    assert "safetext.policies" in listed


def test_shipped_policies_resolve_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetext.policy import PolicyEngine, policies_dir, resolve_policy_path

    monkeypatch.chdir(tmp_path)
    assert not (tmp_path / "policies").exists()
    for name in ("default", "strict", "testbed", "tenants/example-tenant", "policies/default.yaml"):
        assert resolve_policy_path(name).parent.is_relative_to(policies_dir())
    assert PolicyEngine("default").check('a sign that says "idiot"').action.value == "rewrite"


def test_a_file_in_the_current_folder_wins_over_the_shipped_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetext.policy import resolve_policy_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "default.yaml").write_text("version: 1\nterms: {}\n")
    assert resolve_policy_path("default") == (tmp_path / "default.yaml").resolve()


def test_guard_with_the_default_policy_outside_the_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from _inject_helpers import LOCALIZED, tiny

    from safetext import Guard

    monkeypatch.chdir(tmp_path)
    guard = Guard(tiny("sd"), preset=LOCALIZED["sd"])
    assert guard.check('a sign that says "idiot"')[0].action.value == "rewrite"


def test_errors_share_one_base_and_are_exported_lightly() -> None:
    for name in ("GuardError", "PolicyError", "PresetError", "InjectionError", "PipelineLoadError"):
        cls = getattr(safetext, name)
        assert issubclass(cls, safetext.SafetextError), name
    assert issubclass(errors.UnsupportedArchitectureError, errors.PresetError)
    assert issubclass(errors.ClassifierError, errors.SafetextError)
    assert issubclass(errors.OCRUnavailableError, errors.SafetextError)
    from safetext.guard import GuardBlockedError
    from safetext.inject.processors import InjectionError
    from safetext.policy import PolicyError

    assert GuardBlockedError.__mro__[1] is errors.GuardError
    assert InjectionError is errors.InjectionError and PolicyError is errors.PolicyError
    code = "import sys, safetext; safetext.SafetextError; safetext.PolicyError; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_guard_construction_failures_are_guard_errors() -> None:
    from _inject_helpers import FakePolicy, tiny

    from safetext import Guard, GuardError

    with pytest.raises(GuardError, match="no preset file or packaged preset named 'nope'"):
        Guard(tiny("sd"), policy=FakePolicy(), preset="nope")
    with pytest.raises(GuardError, match="policy file not found"):
        Guard(tiny("sd"), policy="no-such-policy", preset=["up_blocks.1.attentions.0.transformer_blocks.0.attn2"])
    with pytest.raises(GuardError, match="policy must be"):
        Guard(tiny("sd"), policy=42, preset=["up_blocks.1.attentions.0.transformer_blocks.0.attn2"])
    with pytest.raises(GuardError, match="on_block"):
        Guard(tiny("sd"), policy=FakePolicy(), on_block="drop")  # type: ignore[arg-type]
