"""Versioned prompt sets: ``benchmarks/prompts/<suite>_<version>.txt``, one prompt per line.

Line format: ``tags | key | prompt``. Tags select subsets (``testbed`` = only words the
testbed can draw). The key is the blocked term (toxic), ``-`` (innocent) or
``source -> target`` (edit). Keeping the expected term in the file, not in the policy,
means leakage is judged against ground truth even when the policy misses a prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SUITES: tuple[str, ...] = ("toxic", "innocent", "edit")
DEFAULT_VERSION = "v2"


@dataclass(frozen=True)
class PromptItem:
    """One benchmark prompt. ``term`` for toxic prompts; ``source``/``target`` for edit pairs."""

    suite: str
    index: int
    prompt: str
    tags: tuple[str, ...] = ()
    term: str | None = None
    source: str | None = None
    target: str | None = None

    @property
    def id(self) -> str:
        return f"{self.suite}-{self.index:03d}"


def prompts_dir() -> Path:
    """``benchmarks/prompts`` of the source tree (found from the package, not the working directory)."""
    return Path(__file__).resolve().parents[2] / "benchmarks" / "prompts"


def prompt_set_path(suite: str, version: str = DEFAULT_VERSION, folder: Path | None = None) -> Path:
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; choose one of {SUITES}")
    return (folder or prompts_dir()) / f"{suite}_{version}.txt"


def parse_line(suite: str, index: int, line: str, where: str = "") -> PromptItem:
    parts = [p.strip() for p in line.split("|", 2)]
    if len(parts) != 3 or not parts[2]:
        raise ValueError(f"{where}: expected 'tags | key | prompt', got {line!r}")
    tags = tuple(t.strip() for t in parts[0].split(",") if t.strip())
    key, prompt = parts[1], parts[2]
    if suite == "edit":
        if "->" not in key:
            raise ValueError(f"{where}: edit key must be 'source -> target', got {key!r}")
        source, target = (k.strip() for k in key.split("->", 1))
        return PromptItem(suite, index, prompt, tags, source=source, target=target)
    if suite == "toxic":
        if key in ("", "-"):
            raise ValueError(f"{where}: toxic prompts need the blocked term as key")
        return PromptItem(suite, index, prompt, tags, term=key)
    return PromptItem(suite, index, prompt, tags)


def load_prompt_set(path: Path, suite: str) -> list[PromptItem]:
    """Parse a prompt file; blank lines and ``#`` comments are skipped."""
    items: list[PromptItem] = []
    for lineno, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        text = raw.strip()
        if text and not text.startswith("#"):
            items.append(parse_line(suite, len(items), text, f"{path}:{lineno}"))
    return items


def select(items: list[PromptItem], *, tag: str | None = None, limit: int | None = None) -> list[PromptItem]:
    """The items carrying ``tag`` (all if None), the first ``limit`` of them. Files list diverse prompts first."""
    chosen = [it for it in items if tag is None or tag in it.tags]
    return chosen[:limit] if limit is not None else chosen
