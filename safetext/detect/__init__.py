"""Detection: normalisation with offset maps, render scope, the lexicon matcher and classifiers.

Detection takes plain settings (:mod:`safetext.detect.settings`) and imports nothing from
the policy layer. Nothing here imports torch, transformers or spaCy at import time.
"""

from safetext.detect.classifiers import (
    Classifier,
    ClassifierError,
    available_classifiers,
    create_classifier,
    occlusion_spans,
    register_classifier,
)
from safetext.detect.lexicon import CompiledLexicon, Entry, compile_lexicon, load_or_compile
from safetext.detect.matcher import Hit, Matcher
from safetext.detect.normalize import Normalized, normalize
from safetext.detect.scope import in_scope, render_scope
from safetext.detect.settings import LexiconSpec, NormalizeSettings, TermSpec

__all__ = [
    "Classifier",
    "ClassifierError",
    "CompiledLexicon",
    "Entry",
    "Hit",
    "LexiconSpec",
    "Matcher",
    "NormalizeSettings",
    "Normalized",
    "TermSpec",
    "available_classifiers",
    "compile_lexicon",
    "create_classifier",
    "in_scope",
    "load_or_compile",
    "normalize",
    "occlusion_spans",
    "register_classifier",
    "render_scope",
]
