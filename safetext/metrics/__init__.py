"""Measuring what the guard does: leakage, benign-target success, fidelity, rates with intervals.

Pure functions on strings and PIL images; nothing here imports torch.
"""

from safetext.metrics.boxes import Box, box_mask, estimate_text_box, pad_box, union
from safetext.metrics.edit import levenshtein, normalized_edit_distance
from safetext.metrics.fidelity import PSNR_CAP, bitwise_equal, psnr, ssim
from safetext.metrics.leakage import FUZZY_THRESHOLD, LeakMatch, closest_term, exact_leak, fuzzy_leak, reads_target
from safetext.metrics.rates import Mean, Rate, wilson_interval
from safetext.metrics.text import joined, normalize_text, skeleton, tokens
from safetext.metrics.toxicity import ToxicityScorer, flagged, get_scorer, register_scorer

__all__ = [
    "Box",
    "FUZZY_THRESHOLD",
    "LeakMatch",
    "Mean",
    "PSNR_CAP",
    "Rate",
    "ToxicityScorer",
    "bitwise_equal",
    "box_mask",
    "closest_term",
    "estimate_text_box",
    "exact_leak",
    "flagged",
    "fuzzy_leak",
    "get_scorer",
    "joined",
    "levenshtein",
    "normalize_text",
    "normalized_edit_distance",
    "pad_box",
    "psnr",
    "reads_target",
    "register_scorer",
    "skeleton",
    "ssim",
    "tokens",
    "union",
    "wilson_interval",
]
