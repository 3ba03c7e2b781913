"""Edit distance. The strings are OCR lines (tens of characters), so plain dynamic programming is enough."""

from __future__ import annotations


def levenshtein(a: str, b: str) -> int:
    """Insertions, deletions and substitutions needed to turn ``a`` into ``b``."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def normalized_edit_distance(a: str, b: str) -> float:
    """Levenshtein over the longer length: 0 identical, 1 nothing in common. Two empty strings: 0."""
    longest = max(len(a), len(b))
    return levenshtein(a, b) / longest if longest else 0.0
