"""The policy engine: ``analyze`` finds spans, ``decide`` turns them into a :class:`Decision`.

Detection and action stay apart, as in Presidio's analyzer and anonymizer: ``analyze``
returns plain spans; ``decide`` applies the policy's actions and the rewrite operators. The
engine hands detection plain settings (:func:`lexicon_spec`, :func:`normalize_settings`), so
``safetext.detect`` never imports the policy format. The per-prompt path is pure Python; the
lexicon is compiled once per spec and cached on disk.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import itertools
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from safetext.detect.classifiers import Classifier, create_classifier, occlusion_spans, text_windows
from safetext.detect.inflect import inflect
from safetext.detect.lexicon import canonical_words, load_or_compile
from safetext.detect.matcher import Hit, Matcher
from safetext.detect.names import initials_partner, name_partner, particle_partners, proper_partner, split_partners
from safetext.detect.normalize import Normalized, case_variants, normalize
from safetext.detect.scope import in_scope, render_scope, renders_alone
from safetext.detect.settings import LexiconSpec, NormalizeSettings, TermSpec
from safetext.detect.tokenized import align, map_span
from safetext.policy.checks import check_compiled
from safetext.policy.decision import ACTION_SEVERITY, Action, Decision, Span
from safetext.policy.loader import load_policy, policy_fingerprint
from safetext.policy.schema import ACTION_RANK, SEVERITY_RANK, Normalization, Policy
from safetext.rewrite.operators import Edit, apply_operators, choose_target, keep_case, pick_non_overlapping, spell_like

# How sure each detection method is that the text really is the term.
METHOD_SCORE = {
    "lexicon": 1.0, "lemma": 0.95, "normalized": 0.95, "leetspeak": 0.9, "repeat": 0.9, "phrase": 1.0,
    "split": 0.85, "masked": 0.8, "glued": 0.8, "substring": 0.85, "digits": 0.8, "initials": 0.85, "transposed": 0.8,
    "vowelless": 0.8,
}
# Risk contributed by a span of each severity (1..4, capped after the render boost).
SEVERITY_RISK = {1: 0.35, 2: 0.6, 3: 0.85, 4: 1.0}
_MAX_REASONS = 50
_CACHED_CHARS = 2_000  # longest prompt whose spans are cached
_SPANS_CACHE_LIMIT = 8_192  # cached prompts; the cache is cleared when full


def normalize_settings(normalization: Normalization) -> NormalizeSettings:
    """The policy's ``normalization:`` block as the settings detection reads."""
    return NormalizeSettings(**normalization.model_dump())


def lexicon_spec(policy: Policy) -> LexiconSpec:
    """What the lexicon compiler needs from ``policy``: its enabled terms in file order,
    each with its resolved severity and match mode, the allow list and the inflection switch."""
    terms = []
    for category, term, spec in policy.term_items():
        cat = policy.categories[category]
        terms.append(TermSpec(term, category, SEVERITY_RANK[spec.severity or cat.severity], policy.match_mode(category, spec)))
    return LexiconSpec(tuple(terms), tuple(policy.allow), policy.normalization.inflections, policy.builtin_names)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cycle collector while an engine is built: building allocates hundreds of
    thousands of lasting objects, and collections triggered by them scan the whole heap
    again and again (a fifth of a cached load). It makes no cycles to collect."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class PolicyEngine:
    """Checks prompts against one policy. Build once, call ``check`` from many threads.

    ``fingerprint`` hashes the whole merged policy; ``settings`` and ``lexicon`` are the
    normalisation settings and compiled lexicon detection runs with.
    """

    def __init__(self, policy: Policy | str | Path = "default", *, classifier: Classifier | None = None, use_spacy: bool = True) -> None:
        with _gc_paused():
            self.policy = policy if isinstance(policy, Policy) else load_policy(policy)
            self.fingerprint = policy_fingerprint(self.policy)
            self.settings = normalize_settings(self.policy.normalization)
            self.lexicon = load_or_compile(lexicon_spec(self.policy), use_spacy=use_spacy)
            self.matcher = Matcher(self.lexicon, self.settings)
            check_compiled(self.policy, self.matcher, self.fingerprint, use_spacy=use_spacy)  # toxic targets, terms that never match
        self._classifier = classifier
        self._classifier_lock = threading.Lock()
        self._target_cache: dict[tuple[str, str, str, str, bool], str] = {}
        self._spans_cache: dict[str, tuple[Span, ...]] = {}
        # Categories allowed both in and out of rendered text: their hits never become spans.
        self._silent = frozenset(
            name for name, cat in self.policy.categories.items() if cat.action == "allow" and cat.effective_render_action == "allow"
        )
        # Categories whose terms may stand in a person's name ("Dick Smith") or, for
        # proper_nouns, any proper noun ("Knob Noster"): safetext.detect.names.
        cats = self.policy.categories.items() if self.policy.builtin_names else ()
        self._named = frozenset(name for name, cat in cats if cat.names or cat.proper_nouns)
        self._proper = frozenset(name for name, cat in cats if cat.proper_nouns)
        self._targets: dict[tuple[str, str], list[str]] = {}
        for category, term, spec in self.policy.term_items():
            self._targets[(category, " ".join(canonical_words(term)))] = list(spec.targets)

    @property
    def name(self) -> str:
        """The name decisions carry: the policy's ``name:``, else its file's stem."""
        return self.policy.name or (Path(self.policy.source).stem if self.policy.source else "policy")

    # ---- analyze ------------------------------------------------------------------------------

    def analyze(self, prompt: str) -> list[Span]:
        """Non-overlapping spans found in ``prompt``; offsets index the original string.

        Results for prompts up to :data:`_CACHED_CHARS` characters are cached: services see
        the same prompt again (several images per prompt, retries), and spans are immutable.
        """
        if not prompt or len(prompt) > self.policy.max_chars:
            return []
        if len(prompt) > _CACHED_CHARS:
            return self._analyze(prompt)
        cached = self._spans_cache.get(prompt)
        if cached is None:
            cached = tuple(self._analyze(prompt))
            if len(self._spans_cache) >= _SPANS_CACHE_LIMIT:
                self._spans_cache.clear()
            self._spans_cache[prompt] = cached
        return list(cached)

    def _analyze(self, prompt: str) -> list[Span]:
        norm = normalize(prompt, unicode=self.settings.unicode, invisible=self.settings.invisible)
        spans = self._lexicon_spans(prompt, norm)
        if self.settings.unicode:
            # the same input to an encoder that lower-cases, read another way (ΒDSΜ / βdsμ)
            for variant in case_variants(prompt):
                other = normalize(variant, unicode=True, invisible=self.settings.invisible)
                if other.text != norm.text:
                    spans += self._lexicon_spans(prompt, other)
        if self.policy.classifier is not None:
            spans += self._classifier_spans(prompt, norm, render_scope(norm.text), spans)
        return _resolve(spans) if spans else []

    def _lexicon_spans(self, prompt: str, norm: Normalized) -> list[Span]:
        """Spans of the lexicon matches in ``norm``, a canonical reading of ``prompt``."""
        hits = self.matcher.scan(norm.text)
        if hits and self._silent:
            hits = [h for h in hits if h.entry.category not in self._silent]
        if hits and self._named:
            hits = self._drop_names(prompt, norm, hits)
        if not hits:
            return []  # the render scope only qualifies spans, so most prompts never need it
        scope = render_scope(norm.text)
        spans = [self._span(prompt, norm, scope, hit) for hit in hits]
        return [s for s in spans if s is not None]

    def _drop_names(self, prompt: str, norm: Normalized, hits: list[Hit]) -> list[Hit]:
        """``hits`` without whole words that stand in a person's name (:meth:`_in_name`) and
        without terms read inside a name (:meth:`_inside_name`)."""
        where = [norm.span(h.start, h.end) for h in hits]
        toxic = _Intervals(where)
        return [hit for hit, (start, end) in zip(hits, where) if not self._named_hit(prompt, hit, start, end, toxic)]

    def _named_hit(self, prompt: str, hit: Hit, start: int, end: int, toxic: _Intervals) -> bool:
        if hit.method == "lexicon" and prompt[start:end].lower() == hit.form:
            return self._in_name(prompt, start, end, hit.entry.category, toxic)
        if hit.method == "initials":  # "F. U. Schmidt": a person's initials
            partner = initials_partner(prompt, start, end, self.lexicon.names)
            return partner is not None and not toxic.overlaps(*partner)
        return self._inside_name(prompt, start, end, toxic)

    def _inside_name(self, prompt: str, start: int, end: int, others: _Intervals) -> bool:
        """Is ``prompt[start:end]`` part of a longer or respelled word that is a name in a
        person's name ("Harold Spicher", "Mark Scroggs"), with its other half overlapping none
        of ``others``? The word is a name, not the term, so this holds for every category. A
        word that is itself a lexicon form, or that is obfuscated, is never such a name."""
        begin, stop = start, end
        while begin > 0 and prompt[begin - 1].isascii() and prompt[begin - 1].isalpha():
            begin -= 1
        while stop < len(prompt) and prompt[stop].isascii() and prompt[stop].isalpha():
            stop += 1
        word = prompt[begin:stop]
        if not (word.isascii() and word.isalpha()) or word.lower() in self.matcher.forms:
            return False
        partner = name_partner(prompt, begin, stop, self.lexicon.names, name_like=True)
        return partner is not None and not others.overlaps(*partner)

    def _in_name(self, prompt: str, start: int, end: int, category: str, others: Sequence[tuple[int, int]] | _Intervals = ()) -> bool:
        """Does the word ``prompt[start:end]`` of ``category`` stand in a person's name ("Dick
        Smith") whose other half overlaps none of ``others`` (the prompt's toxic words)? Or,
        in any category, join the parts of a place name ("Chorlton cum Hardy")?"""
        sets = self.lexicon.names
        parts = particle_partners(prompt, start, end, sets.frequent)
        if parts is not None:
            toxic = others if isinstance(others, _Intervals) else _Intervals(others)
            return not any(toxic.overlaps(*part) for part in parts)
        if category not in self._named:
            return False
        partner = name_partner(prompt, start, end, sets) if self.policy.categories[category].names else None
        if partner is None and category in self._proper:
            partner = proper_partner(prompt, start, end, sets) or self._split_word(prompt, start, end)
        if partner is None:
            return False
        toxic = others if isinstance(others, _Intervals) else _Intervals(others)
        return not toxic.overlaps(*partner)

    def _split_word(self, prompt: str, start: int, end: int) -> tuple[int, int] | None:
        """The neighbour that makes the word ``prompt[start:end]``, of an everyday sense, half of
        an innocent English word written in two ("door knob", "ear muffs", "hoe down"): the joined
        word holds no term ("knob head" joins into "knobhead", which is one)."""
        for a, b, joined in split_partners(prompt, start, end, self.lexicon.names):
            if not self.matcher.match_token(joined)[0]:
                return a, b
        return None

    def _span(self, prompt: str, norm: Normalized, scope: list[tuple[int, int]], hit: Hit) -> Span | None:
        start, end = norm.span(hit.start, hit.end)
        if end <= start:
            return None
        text = prompt[start:end]
        entry = hit.entry
        method = hit.method
        if method == "lexicon":
            if entry.ending:
                method = "lemma"
            if text.lower() != hit.form:
                method = "normalized"
        rendered = in_scope(scope, hit.start, hit.end)
        if method == "digits" and not (rendered and renders_alone(norm.text, hit.start, hit.end)):
            return None  # a number is a number unless the model is asked to draw it on its own
        category = self.policy.categories[entry.category]
        severity = min(4, entry.severity + (self.policy.scope.render_boost if rendered else 0))
        action = category.effective_render_action if rendered else category.action
        if self.policy.scope.mode == "render" and scope and not rendered:
            action = "flag" if ACTION_RANK[action] >= ACTION_RANK["flag"] else action
        if action == "allow":
            return None
        score = round(METHOD_SCORE.get(method, 0.8) * SEVERITY_RISK[severity], 4)
        # Plain construction: pydantic-core validates these few typed fields faster than
        # model_construct builds a model in Python (a 100k-character prompt can yield 20k spans).
        return Span(
            start=start,
            end=end,
            text=text,
            category=entry.category,
            term=entry.term,
            method=method,
            score=score,
            in_render_scope=rendered,
            action=_to_action(action),
            target=self._target(entry.term, entry.category, entry.ending, text, method) if action == "rewrite" else None,
        )

    def _target(self, term: str, category: str, ending: str, matched: str, method: str = "lexicon") -> str | None:
        key = (term, category, ending, matched, method == "initials")
        cached = self._target_cache.get(key)
        if cached is None:
            if len(self._target_cache) > 20_000:
                self._target_cache.clear()
            cached = self._choose(term, category, ending, matched)
            if method == "initials":  # "S.O.B" is rewritten as initials too: "A.B.C"
                cached = spell_like(matched, cached)
            self._target_cache[key] = cached
        return cached

    def _choose(self, term: str, category: str, ending: str, matched: str) -> str:
        cat = self.policy.categories[category]
        if cat.operator == "mask":
            return "".join("*" if not c.isspace() else c for c in matched)
        if cat.operator == "remove":
            return ""
        candidates = self._targets.get((category, term)) or list(cat.targets)
        base = choose_target(matched, candidates)
        if ending.startswith("1:"):  # a phrase whose first word was inflected: killing yourself
            head, _, rest = base.partition(" ")
            base = f"{inflect(head, ending[2:])} {rest}".strip()
        elif ending in ("s", "ing", "in", "ed", "er", "ers", "est"):
            base = inflect(base, ending)
        return keep_case(matched, base)

    def _classifier_spans(self, prompt: str, norm: Normalized, scope: list[tuple[int, int]], found: list[Span]) -> list[Span]:
        """Spans from the classifier, scored over windows (:func:`text_windows`): the render
        scope, each sentence and word windows of long ones, so scene text around a toxic word
        does not dilute its score. Occlusion locates the words in each window that fires."""
        config = self.policy.classifier
        assert config is not None
        clf = self._get_classifier()
        rendered_regions = [norm.span(s, e) for s, e in scope]
        if config.scope == "render" and scope:
            windows = [w for w in text_windows(prompt, rendered_regions)[1:] if any(a <= w[0] and w[1] <= b for a, b in rendered_regions)]
        else:
            windows = text_windows(prompt, rendered_regions)
        windows = [w for w in windows if prompt[w[0] : w[1]].strip()]
        if not windows:
            return []
        scores = clf.score([prompt[a:b] for a, b in windows])
        fired = sorted(((sc, w) for sc, w in zip(scores, windows) if sc >= config.threshold), key=lambda x: (-x[0], x[1][1] - x[1][0]))
        out: list[Span] = []
        explained = False  # a located word was on the allow list
        category = self.policy.categories[config.category]
        for score, (r_start, r_end) in fired:
            if not config.occlusion:
                break
            text = prompt[r_start:r_end]
            for s, e, _drop in occlusion_spans(clf, text, threshold=config.threshold, base_score=score):
                start, end = r_start + s, r_start + e
                if any(f.start < end and start < f.end for f in [*found, *out]):
                    continue
                if self.matcher.allowed(normalize(prompt[start:end]).text):
                    explained = True
                    continue
                rendered = any(a <= start < b for a, b in rendered_regions)
                action = category.effective_render_action if rendered else category.action
                if action == "allow":
                    continue
                word = prompt[start:end]
                out.append(
                    Span(
                        start=start, end=end, text=word, category=config.category, term=word.lower(),
                        method="classifier", score=round(min(1.0, score), 4), in_render_scope=rendered,
                        action=_to_action(action),
                        target=self._target(word.lower(), config.category, "", word) if action == "rewrite" and (category.targets or category.operator != "replace") else None,
                    )
                )
        if fired and not out and not explained and config.on_unlocated != "allow" and not found:
            score, (r_start, r_end) = fired[0]
            out.append(
                Span(
                    start=r_start, end=r_end, text=prompt[r_start:r_end], category=config.category, term="<classifier>",
                    method="classifier", score=round(min(1.0, score), 4), in_render_scope=bool(scope),
                    # with no located word there is nothing to rewrite, so rewrite flags
                    action=_to_action("block" if config.on_unlocated == "block" else "flag"),
                )
            )
        return out

    def _get_classifier(self) -> Classifier:
        with self._classifier_lock:
            if self._classifier is None:
                config = self.policy.classifier
                assert config is not None
                self._classifier = create_classifier(config.backend, **config.params)
            return self._classifier

    # ---- decide -------------------------------------------------------------------------------

    def decide(self, prompt: str, spans: list[Span]) -> Decision:
        """Turn spans into one action, a benign prompt and a risk score.

        The strictest span decides: block, else rewrite, else flag (generate as given and
        report), else allow. A category whose action is ``flag`` therefore flags the prompt.
        """
        if len(prompt) > self.policy.max_chars:
            return Decision(action=Action.BLOCK, prompt=prompt, risk=1.0, policy=self.name,
                            reasons=[f"prompt is {len(prompt)} characters; the policy allows {self.policy.max_chars}"])
        if not spans:
            return Decision(action=Action.ALLOW, prompt=prompt, policy=self.name)
        reasons = [
            f"{s.category}: {s.text!r} ({s.method}{', rendered' if s.in_render_scope else ''}) -> {s.action.value}"
            + (f" {s.target!r}" if s.target is not None and s.action is Action.REWRITE else "")
            for s in spans[:_MAX_REASONS]
        ]
        if len(spans) > _MAX_REASONS:
            reasons.append(f"... and {len(spans) - _MAX_REASONS} more spans")
        risk = max(s.score for s in spans)
        risk = min(1.0, risk + 0.05 * (len(spans) - 1))
        if any(s.action is Action.BLOCK for s in spans):
            return Decision(action=Action.BLOCK, prompt=prompt, spans=spans, risk=round(risk, 4), reasons=reasons, policy=self.name)
        rewrites = [s for s in spans if s.action is Action.REWRITE]
        if not rewrites:
            action = Action.FLAG if any(s.action is Action.FLAG for s in spans) else Action.ALLOW
            return Decision(action=action, prompt=prompt, spans=spans, risk=round(risk, 4), reasons=reasons, policy=self.name)
        edits = [Edit(s.start, s.end, "replace" if s.target else "remove", {"target": s.target, "keep_case": False} if s.target else {}) for s in rewrites]
        benign = apply_operators(prompt, edits)
        return Decision(action=Action.REWRITE, prompt=prompt, benign_prompt=benign, spans=spans, risk=round(risk, 4), reasons=reasons, policy=self.name)

    def check(self, prompt: str) -> Decision:
        """``decide(prompt, analyze(prompt))``."""
        return self.decide(prompt, self.analyze(prompt))

    def check_readings(self, prompt: str, readings: Sequence[str]) -> Decision:
        """Check ``prompt`` and other readings of it (what tokenizers make of it) as one prompt.

        Each reading's spans are mapped back onto ``prompt`` (:func:`safetext.detect.tokenized.align`),
        so the strictest finding over all readings decides and the benign prompt is still a
        rewrite of ``prompt``. A span that maps onto no character of ``prompt`` cannot be
        rewritten there: the prompt is then blocked when that span asks for more than a flag.
        """
        spans = self.analyze(prompt)
        raw = list(spans)
        raw_where = _Intervals((r.start, r.end) for r in raw)
        unmapped: list[Span] = []
        for reading in readings:
            found = self.analyze(reading)
            if not found:
                continue
            mapping = align(prompt, reading)
            for span in found:
                where = map_span(mapping, span.start, span.end)
                if where is None:
                    unmapped.append(span)
                    continue
                start, end = where
                if raw_where.overlaps(start, end):
                    continue  # the prompt's own span covers it
                if prompt[start:end].lower() == span.text.lower() and self._named and (
                    self._in_name(prompt, start, end, span.category, raw_where) or self._inside_name(prompt, start, end, raw_where)
                ):
                    continue  # a reading that lower-cases "Dick Smith" loses the capitals that make it a name
                spans.append(span.model_copy(update={"start": start, "end": end, "text": prompt[start:end], "method": f"tokenizer/{span.method}"}))
        decision = self.decide(prompt, _resolve(spans) if len(spans) > 1 else spans)
        if not unmapped:
            return decision
        worst = max((s.action for s in unmapped), key=ACTION_SEVERITY.__getitem__)
        action = Action.BLOCK if ACTION_SEVERITY[worst] >= ACTION_SEVERITY[Action.REWRITE] else worst
        if ACTION_SEVERITY[action] <= ACTION_SEVERITY[decision.action]:
            return decision
        reasons = [*decision.reasons, *(f"{s.category}: {s.text!r} in a tokenizer reading ({s.method}) -> {action.value}" for s in unmapped)]
        benign = None if action is Action.BLOCK else decision.benign_prompt
        return decision.model_copy(update={"action": action, "benign_prompt": benign, "risk": max(decision.risk, *(s.score for s in unmapped)), "reasons": reasons})

    def check_batch(self, prompts: Iterable[str]) -> list[Decision]:
        """One decision per prompt, in order; equal to ``[check(p) for p in prompts]``.

        A plain string is refused: iterating it would check each character.
        """
        if isinstance(prompts, str):
            raise TypeError("check_batch takes an iterable of prompts, not one string; use check()")
        return [self.check(prompt) for prompt in prompts]

    __call__ = check


_ACTIONS: dict[str, Action] = {a.value: a for a in Action}


def _to_action(action: str) -> Action:
    """A category action (allow, flag, rewrite, block) as the decision's action."""
    return _ACTIONS[action]


class _Intervals:
    """``[start, end)`` intervals that answer "does any overlap ``[a, b)``?" in O(log n), so
    a prompt with thousands of name-like hits stays linear."""

    __slots__ = ("_starts", "_max_end")

    def __init__(self, intervals: Iterable[tuple[int, int]]) -> None:
        ordered = sorted(intervals)
        self._starts = [a for a, _ in ordered]
        self._max_end = list(itertools.accumulate((b for _, b in ordered), max))

    def overlaps(self, a: int, b: int) -> bool:
        k = bisect.bisect_left(self._starts, b)  # intervals starting before b
        return k > 0 and self._max_end[k - 1] > a


def _resolve(spans: list[Span]) -> list[Span]:
    """Overlapping spans: keep the stricter action, then the longer span, then the higher score."""
    by_start = sorted(spans, key=lambda s: (s.start, s.end))
    if all(a.end <= b.start for a, b in zip(by_start, by_start[1:])):
        return by_start
    order = sorted(spans, key=lambda s: (-ACTION_SEVERITY[s.action], -(s.end - s.start), -s.score, s.start))
    return pick_non_overlapping(order, lambda s: (s.start, s.end))


__all__ = ["PolicyEngine", "lexicon_spec", "normalize_settings"]
