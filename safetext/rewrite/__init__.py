"""Rewrite operators: replace (keeping case), mask and remove. Detection lives in ``safetext.detect``."""

from safetext.rewrite.operators import (
    OPERATORS,
    Edit,
    Mask,
    Remove,
    Replace,
    apply_operators,
    choose_target,
    keep_case,
    resolve_overlaps,
)

__all__ = [
    "OPERATORS",
    "Edit",
    "Mask",
    "Remove",
    "Replace",
    "apply_operators",
    "choose_target",
    "keep_case",
    "resolve_overlaps",
]
