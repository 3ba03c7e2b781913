"""Prompt pairs (A, B) for activation patching: the same prompt with one rendered word swapped.

The paper patched ``A sign that says "<word>".`` with a random second word. Pairs here
differ only in the word (so every other token, and the layout it drives, is shared) and
the two words have similar lengths (so the text box is comparable) and share few letters
(so OCR can tell which one was drawn). A model whose profile names its own ``pairs``
function (``safetext_model.yaml``) gets pairs in its vocabulary and prompt style instead:
a small model only spells the words it was trained on.

A prompts file (``--prompts FILE``) holds, one per line (lines starting with ``#`` are comments):

* ``prompt A<TAB>prompt B``: an explicit pair; the two must differ in exactly one word;
  explicit pairs are used as given, then templates fill up to ``--pairs``;
* a template with ``{word}``: replaces the built-in templates;
* ``words: w1 w2 ...``: replaces the built-in word list.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from safetext.errors import SafetextError
from safetext.metrics.edit import normalized_edit_distance

#: Scene templates: the paper's plain sign first, then richer scenes with other render cues.
TEMPLATES: tuple[str, ...] = (
    'A sign that says "{word}".',
    'A storefront with a large sign that says "{word}".',
    'A white T-shirt with the word "{word}" printed on the chest.',
    'A street banner reading "{word}" over a busy road.',
    'A neon sign spelling "{word}" on a brick wall.',
    'A chalkboard menu in a cafe with the text "{word}".',
    'A coffee mug with "{word}" written on it, on a wooden table.',
)

#: Plain benign words, 4-7 letters, that text-capable models usually spell.
WORDS: tuple[str, ...] = (
    "apple", "river", "house", "green", "music", "happy", "water", "light", "dream", "tiger",
    "pizza", "coffee", "garden", "planet", "smile", "cloud", "ocean", "forest", "silver", "window",
    "bread", "candle", "rocket", "summer", "winter", "market", "travel", "sunset", "bakery", "guitar",
    "yellow", "purple", "orange", "castle", "bridge", "jungle", "mirror", "flower", "pencil", "paper",
    "stone", "horse", "lemon", "mango", "piano", "table", "chair", "beach", "night", "magic",
)

MAX_LENGTH_GAP = 1  # letters: "similar lengths"
MIN_WORD_DISTANCE = 0.5  # normalised edit distance: OCR must be able to tell A from B


class PromptFileError(SafetextError, ValueError):
    """A prompts file line cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class PromptPair:
    """Prompt A renders ``word_a``; prompt B is A with that word replaced by ``word_b``."""

    a: str
    b: str
    word_a: str
    word_b: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def partner_ok(word_a: str, word_b: str) -> bool:
    """True when ``word_b`` is a fair replacement for ``word_a``: similar length, different letters."""
    return (
        word_a.lower() != word_b.lower()
        and abs(len(word_a) - len(word_b)) <= MAX_LENGTH_GAP
        and normalized_edit_distance(word_a.lower(), word_b.lower()) >= MIN_WORD_DISTANCE
    )


def make_pairs(
    n: int,
    seed: int = 0,
    *,
    templates: Sequence[str] = TEMPLATES,
    words: Sequence[str] = WORDS,
) -> list[PromptPair]:
    """``n`` pairs: template i mod len(templates), random word A, a random fair partner B."""
    if n < 1:
        raise ValueError("n must be >= 1")
    bad = [t for t in templates if t.count("{word}") != 1]
    if bad:
        raise ValueError(f"templates must contain '{{word}}' exactly once: {bad}")
    rng = random.Random(seed)
    pairs: list[PromptPair] = []
    for i in range(n):
        template = templates[i % len(templates)]
        word_a, word_b = word_pair(rng, words)
        pairs.append(PromptPair(template.format(word=word_a), template.format(word=word_b), word_a, word_b))
    return pairs


def word_pair(rng: random.Random, words: Sequence[str]) -> tuple[str, str]:
    """A random word and a random fair partner for it (:func:`partner_ok`), both from ``words``."""
    for _ in range(100):
        word_a = rng.choice(list(words))
        partners = [w for w in words if partner_ok(word_a, w)]
        if partners:
            return word_a, rng.choice(partners)
    raise ValueError(f"no two words in {list(words)[:8]}... have similar lengths and different letters")


_WORD = re.compile(r"[A-Za-z0-9']+")


def pair_from_prompts(a: str, b: str) -> PromptPair:
    """An explicit pair; the prompts must differ in exactly one word (that word is what OCR checks)."""
    ta, tb = _WORD.findall(a), _WORD.findall(b)
    diff = [(x, y) for x, y in zip(ta, tb) if x != y]
    if len(ta) != len(tb) or len(diff) != 1:
        raise ValueError(f"prompts must differ in exactly one word: {a!r} vs {b!r}")
    return PromptPair(a, b, diff[0][0], diff[0][1])


def read_prompt_file(path: str | Path, n: int, seed: int = 0) -> list[PromptPair]:
    """Pairs from a prompts file (see the module doc): explicit pairs first, then template pairs up to ``n``."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise PromptFileError(f"cannot read prompts file {path}: {exc}") from exc
    explicit: list[PromptPair] = []
    templates: list[str] = []
    words: list[str] = []
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{lineno}"
        if line.lower().startswith("words:"):
            words.extend(line.split(":", 1)[1].split())
        elif "\t" in raw:
            a, _, b = raw.strip().partition("\t")
            try:
                explicit.append(pair_from_prompts(a.strip(), b.strip()))
            except ValueError as exc:
                raise PromptFileError(f"{where}: {exc}") from exc
        elif "{word}" in line:
            if line.count("{word}") != 1:
                raise PromptFileError(f"{where}: a template must contain {{word}} exactly once")
            templates.append(line)
        else:
            raise PromptFileError(f"{where}: expected 'prompt A<TAB>prompt B', a template with {{word}}, or 'words: ...'")
    if not explicit and not templates and not words:
        raise PromptFileError(f"{path} holds no pairs, templates or words")
    if len(explicit) >= n or not (templates or words):
        return explicit[:n]
    try:
        generated = make_pairs(n - len(explicit), seed, templates=templates or TEMPLATES, words=words or WORDS)
    except ValueError as exc:
        raise PromptFileError(f"{path}: {exc}") from exc
    return explicit + generated
