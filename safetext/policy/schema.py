"""The policy file format, defined once as pydantic models.

Every model forbids unknown keys: a typo such as ``acton:`` must be an error, not a
silently ignored setting. ``safetext policy schema`` exports the JSON Schema for editors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, ValidationInfo, field_validator, model_validator

from safetext.audit.config import AuditConfig, LogConfig
from safetext.detect.classifiers import available_classifiers
from safetext.detect.lexicon import canonical_words
from safetext.detect.settings import MAX_INITIALS, MIN_INITIALS

CategoryAction = Literal["allow", "flag", "rewrite", "block"]
Severity = Literal["low", "medium", "high", "critical"]
MatchMode = Literal["word", "exact", "substring", "initials"]
Operator = Literal["replace", "mask", "remove"]

ACTION_RANK: dict[str, int] = {"allow": 0, "flag": 1, "rewrite": 2, "block": 3}
SEVERITY_RANK: dict[str, int] = {"low": 1, "medium": 2, "high": 3, "critical": 4}

MAX_WORD_CHARS = 100
"""Longest term, benign target or allow entry. They are words or short phrases, and the
lexicon compiler's work grows with the square of a term's length."""
Word = Annotated[str, StringConstraints(max_length=MAX_WORD_CHARS)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Normalization(_Strict):
    """Which obfuscations detection undoes. All on by default."""

    unicode: bool = Field(True, description="Fold confusables (Cyrillic, Greek), fullwidth forms and accents.")
    invisible: bool = Field(True, description="Drop zero-width characters and soft hyphens.")
    leetspeak: bool = Field(True, description="Read digits and symbols as letters: 1d10t, $hit, b!tch.")
    separators: bool = Field(True, description="Join letters split by spaces, dots, dashes or stars.")
    repeats: bool = Field(True, description="Collapse repeated letters: fuuuuck.")
    inflections: bool = Field(True, description="Match plurals, -ing, -ed, -er forms of each term.")
    glued: bool = Field(True, description="Find terms glued to another word: youidiot.")
    transpositions: bool = Field(
        True, description="Read a word with two neighbouring letters after the first swapped as the term: idoit, btich."
    )


class Scope(_Strict):
    """Which text is checked. Rendered text is always treated at least as strictly as the rest."""

    mode: Literal["all", "render"] = Field(
        "all",
        description="all: the whole prompt. render: only text the prompt asks the model to render "
        "(the whole prompt when it asks to render nothing).",
    )
    render_boost: int = Field(1, ge=0, le=3, description="Severity levels added to spans inside rendered text.")


class Category(_Strict):
    """A group of terms with one action and one default set of benign targets."""

    action: CategoryAction = "rewrite"
    render_action: CategoryAction | None = Field(
        None, description="Action for spans inside rendered text; must be at least as strict as action."
    )
    severity: Severity = "medium"
    targets: list[Word] = Field(default_factory=list, description="Default benign targets for terms without their own.")
    operator: Operator = Field("replace", description="replace with a target, mask with stars, or remove.")
    match: MatchMode = Field("word", description="Default matching mode for this category's terms.")
    names: bool = Field(
        False,
        description="Allow a term that is also a given name or surname where it stands in a person's name "
        "(Dick Smith, Philip Dick; safetext.detect.names).",
    )
    proper_nouns: bool = Field(
        False,
        description="Allow a capitalised term beside a capitalised, infrequent word (Tit Willow, Knob Noster): "
        "for words whose everyday sense is innocent.",
    )
    description: str | None = None

    @field_validator("targets", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("render_action", mode="after")
    @classmethod
    def _render_at_least_as_strict(cls, value: str | None, info: ValidationInfo) -> str | None:
        action = info.data.get("action")
        if value is not None and action is not None and ACTION_RANK[value] < ACTION_RANK[action]:
            raise ValueError(
                f"{value!r} is less strict than action {action!r}; rendered text must be treated at least as strictly"
            )
        return value

    @property
    def effective_render_action(self) -> str:
        return self.render_action or self.action


class Term(_Strict):
    """One lexicon entry. In YAML a bare string or list is shorthand for ``targets``."""

    targets: list[str] = Field(default_factory=list)  # length checked by Policy.problems, which knows the term
    match: MatchMode | None = Field(
        None,
        description="word (inflected and obfuscated forms), exact, substring (inside any word), or initials: an "
        "acronym that is also a word (sob) matches only as initials (s.o.b., S O B) or in leetspeak (s0b).",
    )
    severity: Severity | None = None
    enabled: bool = True

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, bool):
            return {"enabled": value}
        if isinstance(value, (str, list)):
            return {"targets": value}
        return value

    @field_validator("targets", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


TermValue = Term | str | list[str] | bool | None


class ClassifierConfig(_Strict):
    """An optional whole-text classifier. Spans come from occlusion (which words drop the score)."""

    backend: str = Field(description="A registered backend: profanity-check or detoxify.")
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    category: str = Field(description="Category given to the spans the classifier finds.")
    scope: Literal["all", "render"] = "all"
    occlusion: bool = True
    on_unlocated: CategoryAction = Field(
        "flag", description="Action when the classifier fires but occlusion finds no responsible word."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Passed to the backend's constructor.")


class Policy(_Strict):
    """A complete, merged policy."""

    version: Literal[1] = 1
    name: str | None = None
    description: str | None = None
    extends: list[str] = Field(default_factory=list, description="Policy files this one overrides, resolved relative to it.")
    normalization: Normalization = Field(default_factory=Normalization)
    scope: Scope = Field(default_factory=Scope)
    categories: dict[str, Category] = Field(default_factory=dict)
    terms: dict[str, dict[str, TermValue]] = Field(
        default_factory=dict, description="category -> term -> targets (string, list, mapping, false to disable)"
    )
    allow: list[Word] = Field(default_factory=list, description="Innocent words and phrases that never match.")
    builtin_names: bool = Field(
        True,
        description="Also allow safetext's built-in names and places (Dick Van Dyke, Penistone; safetext.detect.vocabulary), "
        "and the name and proper-noun rules of categories that set names or proper_nouns (safetext.detect.names).",
    )
    classifier: ClassifierConfig | None = None
    max_chars: int = Field(1_000_000, ge=1, description="Longer prompts are blocked without analysis.")
    audit: AuditConfig | None = Field(None, description="The post-generation OCR audit of guards built on this policy.")
    log: LogConfig | None = Field(None, description="The audit log of guards built on this policy.")
    _source: str | None = PrivateAttr(None)
    _files: list[str] = PrivateAttr(default_factory=list)
    # Field path -> (file, line) where the loader read it, so later checks can name the line.
    _locations: dict[tuple[str | int, ...], tuple[str, int]] = PrivateAttr(default_factory=dict)
    # Fingerprint of the content that passed the compiled-lexicon checks (safetext.policy.checks).
    _compiled_checked: str | None = PrivateAttr(None)

    @property
    def source(self) -> str | None:
        """The file this policy was loaded from, if any."""
        return self._source

    @field_validator("extends", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("terms", mode="after")
    @classmethod
    def _as_terms(cls, value: dict[str, dict[str, TermValue]]) -> dict[str, dict[str, TermValue]]:
        return {cat: {t: (v if isinstance(v, Term) else Term.model_validate(v)) for t, v in group.items()} for cat, group in value.items()}

    @model_validator(mode="after")
    def _semantics(self, info: ValidationInfo) -> Policy:
        if info.context and info.context.get("defer_semantics"):
            return self
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(f"{'.'.join(map(str, path))}: {msg}" for path, msg in problems))
        return self

    def match_mode(self, category: str, spec: Term) -> MatchMode:
        """How a term of ``category`` matches: its own ``match``, else its category's."""
        return spec.match or self.categories[category].match

    def term_items(self) -> list[tuple[str, str, Term]]:
        """(category, term, spec) for every enabled term, in file order."""
        out = []
        for cat, group in self.terms.items():
            for term, spec in group.items():
                assert isinstance(spec, Term)
                if spec.enabled:
                    out.append((cat, term, spec))
        return out

    def problems(self, written: Callable[[tuple[str | int, ...]], Any] | None = None) -> list[tuple[tuple[str | int, ...], str]]:
        """Cross-field errors as (path, message): unknown categories and classifier backends,
        terms without targets, and terms that cannot work (empty, duplicated, allowed).

        ``written`` sorts field paths in the order they were written (the loader passes
        file, then line), so a clash is reported where its second half was written: in the
        child policy, not in the parent it extends.
        """
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for cat, group in self.terms.items():
            category = self.categories.get(cat)
            if category is None:
                problems.append((("terms", cat), f"unknown category {cat!r}; declare it under categories"))
                continue
            for term, spec in group.items():
                assert isinstance(spec, Term)
                if not term.strip():
                    problems.append((("terms", cat, term), "empty term"))
                elif spec.enabled and category.operator == "replace" and not (spec.targets or category.targets):
                    problems.append(
                        (("terms", cat, term), "no benign target: give the term targets or its category default targets")
                    )
        problems += self._term_problems(written)
        if self.classifier is not None:
            if self.classifier.category not in self.categories:
                problems.append((("classifier", "category"), f"unknown category {self.classifier.category!r}"))
            known = available_classifiers()
            if self.classifier.backend not in known:
                problems.append(
                    (
                        ("classifier", "backend"),
                        f"unknown classifier backend {self.classifier.backend!r}; known backends: {', '.join(known) or 'none'}",
                    )
                )
        return problems

    def _term_problems(self, written: Callable[[tuple[str | int, ...]], Any] | None) -> list[tuple[tuple[str | int, ...], str]]:
        """Terms that can never match as written, or that another entry makes ambiguous.

        Terms are compared after the folding detection applies (case, accents, joiners), so
        ``Idiot`` and ``idiot`` are one term: in one category a child's ``Idiot: false``
        would silently fail to disable its parent's ``idiot``, and across categories the
        compiled lexicon keeps only one of them. A term equal to an allow entry is never
        detected; ``false`` is the way to turn a term off.
        """
        order = written or (lambda path: 0)
        problems: list[tuple[tuple[str | int, ...], str]] = []
        allowed: dict[str, int] = {}
        for i, entry in enumerate(self.allow):
            allowed.setdefault(" ".join(canonical_words(entry)), i)
        entries = [
            (cat, term, spec)
            for cat, group in self.terms.items()
            if cat in self.categories
            for term, spec in group.items()
            if isinstance(spec, Term) and term.strip()
        ]
        entries.sort(key=lambda e: order(("terms", e[0], e[1])))  # stable: file order without ``written``
        seen: dict[tuple[str, str], str] = {}  # (category, folded term) -> term
        enabled: dict[str, tuple[str, str]] = {}  # folded term -> (category, term)
        for cat, term, spec in entries:
            path: tuple[str | int, ...] = ("terms", cat, term)
            if len(term) > MAX_WORD_CHARS:
                problems.append((path, f"term is {len(term)} characters long; terms are at most {MAX_WORD_CHARS}"))
                continue
            long_targets = [i for i, target in enumerate(spec.targets) if len(target) > MAX_WORD_CHARS]
            if long_targets:
                i = long_targets[0]
                problems.append(
                    (path + ("targets", i), f"target is {len(spec.targets[i])} characters long; targets are at most {MAX_WORD_CHARS}")
                )
                continue
            key = " ".join(canonical_words(term))
            if not key:
                problems.append((path, f"term {term!r} has nothing left to match once joiners and spaces are dropped"))
                continue
            if (cat, key) in seen:
                other = seen[(cat, key)]
                problems.append(
                    (path, f"term {term!r} is the same term as {other!r} (terms match without case or accents); write it as {other!r}")
                )
                continue
            seen[(cat, key)] = term
            if self.match_mode(cat, spec) == "initials" and not (
                key.replace(" ", "").isalpha() and MIN_INITIALS <= len(key.replace(" ", "")) <= MAX_INITIALS
            ):
                problems.append((path, f"term {term!r} matches as initials, so it is {MIN_INITIALS} to {MAX_INITIALS} letters (an acronym such as 'sob')"))
                continue
            if not spec.enabled:
                continue
            if key in enabled:
                other_cat, other = enabled[key]
                problems.append(
                    (path, f"term {term!r} is also enabled as {other!r} in category {other_cat!r}; a term belongs to one category")
                )
                continue
            enabled[key] = (cat, term)
            if key in allowed:
                allow_path: tuple[str | int, ...] = ("allow", allowed[key])
                entry = self.allow[allowed[key]]
                if order(allow_path) > order(path):
                    problems.append(
                        (allow_path, f"allow entry {entry!r} hides the enabled term terms.{cat}.{term}, which could then never match; "
                         "disable the term with false instead")
                    )
                else:
                    problems.append(
                        (path, f"term {term!r} can never match: allow entry {entry!r} covers it; disable the term with false instead")
                    )
        return problems
