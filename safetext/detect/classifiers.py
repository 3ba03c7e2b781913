"""Whole-text toxicity classifiers behind one interface, with one registry keyed by name.

Backends register under a stable name (``profanity-check``, ``detoxify``) with a
keyword-only constructor, the way spaCy registers components. The same registry serves a
policy's ``classifier:`` block and the benchmark's OCR-text flag
(:mod:`safetext.metrics.toxicity`). Each backend imports its library inside its
constructor, so nothing heavy loads until someone asks for it. ``occlusion_spans`` turns
any whole-text score into word spans: a word is responsible when removing it drops the
score below the threshold.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from safetext.errors import ClassifierError


@runtime_checkable
class Classifier(Protocol):
    """Scores texts in [0, 1]; higher means more toxic."""

    name: str

    def score(self, texts: Sequence[str]) -> list[float]: ...


ClassifierFactory = Callable[..., Classifier]
"""A backend constructor: called with the backend's parameters as keyword arguments only."""

_REGISTRY: dict[str, ClassifierFactory] = {}


def register_classifier(name: str) -> Callable[[ClassifierFactory], ClassifierFactory]:
    """Decorator: make a backend constructible by name. A later registration replaces an earlier one."""

    def deco(factory: ClassifierFactory) -> ClassifierFactory:
        _REGISTRY[name] = factory
        return factory

    return deco


def available_classifiers() -> list[str]:
    """The registered backend names, sorted."""
    return sorted(_REGISTRY)


def create_classifier(name: str, **params: Any) -> Classifier:
    """Build a registered backend from keyword parameters.

    Raises :class:`ClassifierError` for an unknown name (listing the known ones), for
    parameters the backend does not take, and when the backend's library or files are missing.
    """
    factory = _REGISTRY.get(name)
    if factory is None:
        known = ", ".join(available_classifiers()) or "none"
        raise ClassifierError(f"unknown classifier backend {name!r}; known backends: {known}")
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some callables have no introspectable signature
        signature = None
    if signature is not None:
        try:
            signature.bind(**params)
        except TypeError as exc:
            raise ClassifierError(f"bad parameters for classifier {name!r}: {exc}") from None
    return factory(**params)


@register_classifier("profanity-check")
class ProfanityCheck:
    """alt-profanity-check: a bundled linear SVM on bag-of-words; offline, no torch."""

    name = "profanity-check"

    def __init__(self) -> None:
        try:
            from profanity_check import predict_prob
        except ImportError as exc:
            raise ClassifierError(
                "backend 'profanity-check' needs the alt-profanity-check package: pip install alt-profanity-check"
            ) from exc
        self._predict = predict_prob

    def score(self, texts: Sequence[str]) -> list[float]:
        """Probability of profanity per text, in one batch."""
        if not texts:
            return []
        return [float(p) for p in self._predict(list(texts))]


@register_classifier("detoxify")
class DetoxifyClassifier:
    """Detoxify, loaded only from a local checkpoint and a local Hugging Face config folder.

    Detoxify's own loader downloads checkpoints and configs from the hub; this wraps it with a
    loader that reads local files only and reuses Detoxify's ``predict``. ``label`` picks the
    output class to score (default ``toxicity``).
    """

    name = "detoxify"

    def __init__(self, *, checkpoint: str | os.PathLike[str], config_dir: str | os.PathLike[str], label: str = "toxicity", device: str = "cpu") -> None:
        ckpt, cfg = Path(checkpoint).expanduser(), Path(config_dir).expanduser()
        if not ckpt.is_file():
            raise ClassifierError(f"detoxify checkpoint not found: {ckpt}")
        if not (cfg / "config.json").is_file():
            raise ClassifierError(f"detoxify config folder must contain config.json: {cfg}")
        self.model, self.tokenizer, self.class_names = load_detoxify_local(ckpt, cfg, device=device)
        if label not in self.class_names:
            raise ClassifierError(f"label {label!r} not in checkpoint classes {self.class_names}")
        self.label = label
        self.device = device

    def predict(self, texts: Sequence[str]) -> dict[str, list[float]]:
        """All class scores, as Detoxify's ``predict`` returns them."""
        from detoxify import Detoxify

        runner = Detoxify.__new__(Detoxify)  # reuse predict() without its hub-bound __init__
        runner.model, runner.tokenizer, runner.class_names, runner.device = (self.model, self.tokenizer, self.class_names, self.device)
        out = runner.predict(list(texts))
        return {k: (v if isinstance(v, list) else [v]) for k, v in out.items()}

    def score(self, texts: Sequence[str]) -> list[float]:
        """The ``label`` class score per text."""
        if not texts:
            return []
        return [float(x) for x in self.predict(texts)[self.label]]


def load_detoxify_local(checkpoint: Path, config_dir: Path, *, device: str = "cpu") -> tuple[Any, Any, list[str]]:
    """Detoxify's ``load_checkpoint`` with every hub access replaced by local files."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise ClassifierError("backend 'detoxify' needs torch and transformers") from exc
    try:
        loaded = torch.load(str(checkpoint), map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign files
        raise ClassifierError(f"cannot read detoxify checkpoint {checkpoint}: {exc}") from None
    if not isinstance(loaded, dict) or "config" not in loaded or "state_dict" not in loaded:
        raise ClassifierError(f"{checkpoint} is not a detoxify checkpoint (needs 'config' and 'state_dict')")
    try:
        arch = loaded["config"]["arch"]["args"]
        classes = list(loaded["config"]["dataset"]["args"]["classes"])
        model_class = getattr(transformers, arch["model_name"])
        tokenizer_class = getattr(transformers, arch["tokenizer_name"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise ClassifierError(f"{checkpoint}: unsupported detoxify config ({exc})") from None
    renames = {"toxic": "toxicity", "identity_hate": "identity_attack", "severe_toxic": "severe_toxicity"}
    class_names = [renames.get(c, c) for c in classes]
    config = model_class.config_class.from_pretrained(str(config_dir), num_labels=int(arch["num_classes"]), local_files_only=True)
    model = model_class(config)
    missing, unexpected = model.load_state_dict(loaded["state_dict"], strict=False)
    if missing:
        raise ClassifierError(f"{checkpoint}: checkpoint does not match config; missing weights {missing[:5]}")
    tokenizer = tokenizer_class.from_pretrained(str(config_dir), local_files_only=True)
    model.to(device).eval()
    return model, tokenizer, class_names


_WORD = re.compile(r"\S+")
_SENTENCE = re.compile(r"[^.!?;\n]+")
WINDOW_WORDS = 12
"""Words in one classifier window. A bag-of-words score over a long prompt is diluted by
the scene description around a toxic word, so long sentences are scored in overlapping
windows of this many words (half a window apart)."""


def text_windows(text: str, scope: Sequence[tuple[int, int]] = ()) -> list[tuple[int, int]]:
    """``[start, end)`` slices of ``text`` a classifier scores separately; the max decides.

    The render scope (text the prompt asks to draw), each sentence, and windows of
    :data:`WINDOW_WORDS` words inside longer sentences. The whole text comes first.
    """
    out: list[tuple[int, int]] = [(0, len(text))]
    out += [(s, e) for s, e in scope if text[s:e].strip()]
    for sentence in _SENTENCE.finditer(text):
        words = [m.span() for m in _WORD.finditer(text, sentence.start(), sentence.end())]
        if not words:
            continue
        if len(words) <= WINDOW_WORDS:
            out.append((words[0][0], words[-1][1]))
            continue
        step = WINDOW_WORDS // 2
        for k in range(0, len(words) - step, step):
            chunk = words[k : k + WINDOW_WORDS]
            out.append((chunk[0][0], chunk[-1][1]))
    return list(dict.fromkeys(out))


def occlusion_spans(classifier: Classifier, text: str, *, threshold: float, base_score: float | None = None, max_words: int = 64) -> list[tuple[int, int, float]]:
    """Words whose removal drops the score: (start, end, drop) slices of ``text``.

    A word counts when removing it brings the score under ``threshold`` or removes at least
    half the excess over it. All occluded variants are scored in one batch.
    """
    words = []
    for m in _WORD.finditer(text):
        s, e = m.start(), m.end()
        while s < e and not text[s].isalnum():
            s += 1
        while e > s and not text[e - 1].isalnum():
            e -= 1
        if e > s:
            words.append((s, e))
        if len(words) >= max_words:
            break
    if not words:
        return []
    base = classifier.score([text])[0] if base_score is None else base_score
    if base < threshold:
        return []
    variants = [(text[:s] + text[e:]).strip() for s, e in words]
    scores = classifier.score(variants)
    excess = base - threshold
    out = []
    for (s, e), score in zip(words, scores):
        drop = base - score
        if score < threshold or (excess > 0 and drop >= excess / 2 and drop > 0.05):
            out.append((s, e, max(0.0, min(1.0, drop))))
    return out


__all__ = [
    "Classifier",
    "ClassifierError",
    "ClassifierFactory",
    "DetoxifyClassifier",
    "ProfanityCheck",
    "available_classifiers",
    "create_classifier",
    "load_detoxify_local",
    "occlusion_spans",
    "register_classifier",
    "text_windows",
]
