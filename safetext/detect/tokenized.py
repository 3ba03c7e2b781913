"""Read a prompt the way a pipeline's tokenizers read it, and map that reading back.

The model draws what its text encoder is given, and a tokenizer changes text before the
encoder sees it: characters outside its vocabulary become an unknown token that carries no
letter (a letter-level tokenizer reads ``idiÀot`` as ``idi`` ``<unk>`` ``ot``), it may
lower-case (``Σ`` to ``σ``), it cleans whitespace and drops what follows its
``model_max_length``. Encoding the prompt and decoding the ids (special tokens skipped)
gives that reading as text, which the policy can check like any prompt.

Tokenizers are duck-typed (``__call__`` returning ``input_ids``, and ``decode``), so this
module imports neither torch nor transformers.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from typing import Any

from safetext.detect.normalize import normalize

TOKENIZER_ATTRS = ("tokenizer", "tokenizer_2", "tokenizer_3", "tokenizer_4")
"""The pipeline attributes that hold its tokenizers (SD, SDXL, SD3 and HiDream name them so)."""
_LOOKAHEAD = 8  # raw characters a reading may have dropped between two of its characters
_CACHE_LIMIT = 4096
_MAX_LENGTH_LIMIT = 1_000_000  # transformers stores "no limit" as a huge integer
_PROBES = ('A sign that says "Hello,  World" 123', "ÀΣЇ ¢ idiot\x00 " * 8)  # a copy must decode these as the original does


def pipeline_tokenizers(pipe: Any) -> list[Any]:
    """The tokenizers ``pipe`` encodes prompts with, in attribute order, each once."""
    found: list[Any] = []
    for name in TOKENIZER_ATTRS:
        tok = getattr(pipe, name, None)
        if tok is not None and callable(tok) and hasattr(tok, "decode") and all(tok is not t for t in found):
            found.append(tok)
    return found


def max_length(tokenizer: Any) -> int | None:
    """The token budget the pipeline truncates at, or None when the tokenizer sets none."""
    value = getattr(tokenizer, "model_max_length", None)
    return value if isinstance(value, int) and 0 < value < _MAX_LENGTH_LIMIT else None


def read_as(tokenizer: Any, text: str) -> str:
    """``text`` encoded by ``tokenizer`` (truncated like the pipeline) and decoded without special tokens."""
    limit = max_length(tokenizer)
    if limit is None:
        ids = tokenizer(text)["input_ids"]
    else:
        ids = tokenizer(text, truncation=True, max_length=limit)["input_ids"]
    return str(tokenizer.decode(ids, skip_special_tokens=True))


class TokenizerReadings:
    """The distinct readings of a prompt by a fixed set of tokenizers, cached per prompt string.

    It encodes with its own copies of the tokenizers, one call at a time: a fast tokenizer
    keeps its truncation and padding settings on the shared backend, so encoding with the
    pipeline's own object while the pipeline encodes (policy checks run outside the
    pipeline's lock) could change the lengths the pipeline gets.
    """

    def __init__(self, tokenizers: Sequence[Any]) -> None:
        self.tokenizers = [_private_copy(t) for t in tokenizers]
        self._cache: dict[str, tuple[str, ...]] = {}
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self.tokenizers)

    def __call__(self, text: str) -> tuple[str, ...]:
        """Readings that differ from ``text`` once both are canonicalised (whitespace aside), in tokenizer order."""
        with self._lock:
            cached = self._cache.get(text)
        if cached is not None:
            return cached
        seen = {_key(text)}
        out: list[str] = []
        for tok in self.tokenizers:
            with self._encode_lock:
                reading = read_as(tok, text)
            key = _key(reading)
            if key not in seen:
                seen.add(key)
                out.append(reading)
        result = tuple(out)
        with self._lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[text] = result
        return result


def _private_copy(tokenizer: Any) -> Any:
    """``tokenizer`` with its own Rust backend (where the per-call settings live), or
    ``tokenizer`` itself when it has none (pure-Python tokenizers keep no per-call state).

    A shallow copy with the backend rebuilt from its JSON keeps everything else, such as a
    decoder set after construction, which ``copy.deepcopy`` loses.
    """
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is None or not hasattr(backend, "to_str") or not hasattr(type(backend), "from_str"):
        return tokenizer
    try:
        clone = copy.copy(tokenizer)
        clone._tokenizer = type(backend).from_str(backend.to_str())
        rewrap = getattr(clone, "_wrap_decode_method_backend_tokenizer", None)
        if callable(rewrap):  # CLIP wraps its backend's decode to turn "</w>" into spaces
            rewrap()
        # decoding keeps no settings, so the original may decode; encoding it would set its truncation
        ids = [clone(probe)["input_ids"] for probe in _PROBES]
        same = all(clone.decode(i, skip_special_tokens=True) == tokenizer.decode(i, skip_special_tokens=True) for i in ids)
    except Exception:  # noqa: BLE001 - an uncopyable backend is read as it is
        return tokenizer
    return clone if same else tokenizer


def _key(text: str) -> str:
    """What tells two readings apart: canonical text without whitespace, which decoders
    insert between tokens (CLIP decodes ``"idiot"`` as ``" idiot "``)."""
    return "".join(normalize(text).text.split())


def align(raw: str, reading: str) -> list[tuple[int, int] | None]:
    """For each character of ``reading``, the ``[start, end)`` slice of ``raw`` it reads, or None.

    Both texts are canonicalised (case, look-alikes, whitespace) and matched left to right:
    a reading character matches the next equal raw character within a short look-ahead
    (the tokenizer dropped what lies between), else it stands for the raw character in
    its place (the tokenizer changed it). Spaces a tokenizer inserts between tokens map
    to nothing.
    """
    a, b = normalize(raw), normalize(reading)
    out: list[tuple[int, int] | None] = [None] * len(reading)
    i, n = 0, len(a.text)
    letters = [(j, c) for j, c in enumerate(b.text) if c != " "]
    for q, (j, c) in enumerate(letters):
        while i < n and a.text[i] == " ":
            i += 1
        if i >= n:
            break
        following = letters[q + 1][1] if q + 1 < len(letters) else None
        if a.text[i] == c or (following is not None and a.text[i + 1 : i + 2] == following):
            hit = i  # the same character, or one the tokenizer changed (Σ read as σ)
        else:
            k = a.text.find(c, i, i + _LOOKAHEAD)
            hit = k if k >= 0 else i
        where = a.span(hit, hit + 1)
        b_start, b_end = b.span(j, j + 1)
        for pos in range(b_start, b_end):
            out[pos] = where
        i = hit + 1
    return out


def map_span(mapping: list[tuple[int, int] | None], start: int, end: int) -> tuple[int, int] | None:
    """The ``[start, end)`` slice of a reading as a slice of the raw text, or None when it reads nothing there."""
    points = [p for p in mapping[start:end] if p is not None]
    if not points:
        return None
    return min(p[0] for p in points), max(p[1] for p in points)


__all__ = ["TOKENIZER_ATTRS", "TokenizerReadings", "align", "map_span", "max_length", "pipeline_tokenizers", "read_as"]
