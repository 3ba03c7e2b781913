"""Policy checks that need the compiled lexicon, run before a policy is used.

A benign target is what the model is asked to draw instead of a toxic word, so a target the
policy itself detects (``idiot: fuck``) turns the guard into a way to draw that word. A term
the matcher does not find even in a prompt that is exactly the term looks like protection
and gives none. Both can only be judged on the lexicon compiled the way the engine compiles
it, so they run here rather than in the schema.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from safetext import detect
from safetext.detect.lexicon import cache_dir, canonical_words, compile_key, load_or_compile
from safetext.detect.matcher import Hit, Matcher
from safetext.detect.normalize import normalize
from safetext.errors import PolicyError
from safetext.policy.loader import Path_, _dotted, _locate, policy_fingerprint
from safetext.policy.schema import Policy

if TYPE_CHECKING:  # pragma: no cover
    from safetext.detect.settings import NormalizeSettings


def build_matcher(policy: Policy) -> Matcher:
    """The matcher the engine would build for ``policy`` (lexicon from the disk cache when possible)."""
    from safetext.policy.engine import lexicon_spec, normalize_settings  # engine imports the loader

    return Matcher(load_or_compile(lexicon_spec(policy)), normalize_settings(policy.normalization))


def _scan(matcher: Matcher, settings: NormalizeSettings, text: str) -> list[Hit]:
    return matcher.scan(normalize(text, unicode=settings.unicode, invisible=settings.invisible).text)


def _reads_as_itself(matcher: Matcher, key: str) -> bool:
    """A plain word that is its own term's form and is not allowed: scanning it alone finds
    the term (the matcher's first lookup), so the scan is skipped."""
    entry = matcher.forms.get(key)
    return entry is not None and entry.term == key and key.isalpha() and len(key) <= 64 and not matcher.allowed(key)


def compiled_problems(policy: Policy, matcher: Matcher) -> list[tuple[Path_, str]]:
    """(path, message) for targets the policy detects and terms it cannot detect."""
    settings = matcher.norm
    problems: list[tuple[Path_, str]] = []
    unallowed: Matcher | None = None
    for category, term, spec in policy.term_items():
        key = " ".join(canonical_words(term))
        # an acronym term is read only as initials: "s.o.b" is the prompt that holds it
        probe = ".".join(key.replace(" ", "")) if policy.match_mode(category, spec) == "initials" else key
        if not key or _reads_as_itself(matcher, key) or any(hit.entry.term == key for hit in _scan(matcher, settings, probe)):
            continue
        path: Path_ = ("terms", category, term)
        if unallowed is None:
            unallowed = Matcher(dataclasses.replace(matcher.lex, allow_words=frozenset(), allow_phrases=()), settings)
        if not any(hit.entry.term == key for hit in _scan(unallowed, settings, probe)):
            problems.append((path, f"term {term!r} can never match: the matcher does not read it as a word"))
            continue
        # Allow entries also cover their plurals ("as" hides "ass"), so a culprit is an entry the
        # term starts with. It is reported where it was written when that is after the term.
        folded = [" ".join(canonical_words(entry)) for entry in policy.allow]
        culprits = [i for i, word in enumerate(folded) if word and key.startswith(word)]
        where = max(culprits, key=lambda i: _written(policy, ("allow", i)), default=None)
        if where is None or _written(policy, ("allow", where)) < _written(policy, path):
            problems.append((path, f"term {term!r} can never match: the allow list hides it; disable the term with false instead"))
        else:
            problems.append(
                (
                    ("allow", where),
                    f"allow entry {policy.allow[where]!r} hides the enabled term terms.{category}.{term} (allow entries "
                    "also cover plurals), which could then never match; disable the term with false instead",
                )
            )

    detected: dict[str, str | None] = {}

    def toxic(target: str) -> str | None:
        """What ``target`` is detected as, or None when the policy leaves it alone everywhere."""
        if target not in detected:
            detected[target] = None
            for hit in _scan(matcher, settings, target):
                cat = policy.categories.get(hit.entry.category)
                if cat is None or cat.action != "allow" or cat.effective_render_action != "allow":
                    detected[target] = f"{hit.entry.term!r} in category {hit.entry.category!r}"
                    break
        return detected[target]

    for name, category_ in policy.categories.items():
        for i, target in enumerate(category_.targets):
            found = toxic(target)
            if found:
                problems.append((("categories", name, "targets", i), f"benign target {target!r} is itself detected as {found}"))
    for category, term, spec in policy.term_items():
        for i, target in enumerate(spec.targets):
            found = toxic(target)
            if found:
                path = _target_path(policy, category, term, i)
                problems.append((path, f"benign target {target!r} of {term!r} is itself detected as {found}"))
    return problems


def _written(policy: Policy, path: Path_) -> tuple[int, int]:
    """Sort key for where ``path`` was written: the file's place in the extends chain, then the line."""
    file, line = _locate(policy._locations, path, policy.source or "<policy>")
    files = policy._files
    return (files.index(file) if file in files else len(files)), line or 0


def _target_path(policy: Policy, category: str, term: str, index: int) -> Path_:
    """The most specific written path of a term's ``index``-th target: a mapping, a list or a string."""
    base: Path_ = ("terms", category, term)
    for path in (base + ("targets", index), base + ("targets",), base + (index,)):
        if path in policy._locations:
            return path
    return base


def check_compiled(policy: Policy, matcher: Matcher | None = None, fingerprint: str | None = None, *, use_spacy: bool = True) -> None:
    """Raise :class:`PolicyError`, naming file, line and field, when :func:`compiled_problems` finds any.

    ``PolicyEngine`` passes the matcher it built, its fingerprint and whether its lexicon used
    spaCy, so nothing is compiled twice; without a matcher one is built from the lexicon
    cache. Content that already passed is not checked again: a marker file beside the
    lexicon cache records a pass.
    """
    fingerprint = fingerprint or policy_fingerprint(policy)
    if policy._compiled_checked == fingerprint:
        return
    marker = cache_dir() / f"checked-{_marker_key(fingerprint, use_spacy)}"
    if marker.exists():
        policy._compiled_checked = fingerprint
        return
    problems = compiled_problems(policy, matcher if matcher is not None else build_matcher(policy))
    if problems:
        top = policy.source or "<policy>"
        raise PolicyError([(*_locate(policy._locations, path, top), _dotted(path), message) for path, message in problems])
    policy._compiled_checked = fingerprint
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:  # a read-only cache: the check runs again next time
        pass


def _marker_key(fingerprint: str, use_spacy: bool) -> str:
    """What a passed check depends on: the policy's content, how its lexicon was compiled (the
    compiler's version, data packages and spaCy) and the source of the detector and these
    checks, so a change to any of them runs the check again."""
    digest = hashlib.sha256(compile_key(fingerprint, use_spacy).encode())
    for package in (Path(__file__).parent, Path(detect.__file__).parent):
        for source in sorted(package.glob("*.py")):
            digest.update(source.read_bytes())
    return digest.hexdigest()[:32]


__all__ = ["build_matcher", "check_compiled", "compiled_problems"]
