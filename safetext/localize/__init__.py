"""``safetext localize``: find the attention modules that control rendered text, by activation patching.

Prompt pairs (A, B) differ in one rendered word. Patching B's text keys/values into a set
of modules while generating A moves the rendered word from A's to B's when those modules
control the text; OCR and masked SSIM score it (:mod:`~safetext.localize.scoring`). Three
strategies search the modules (:mod:`~safetext.localize.search`): the paper's exhaustive
single-layer ``sweep``, a best-first ``group`` search, and ``attribution``, which ranks
every module with one gradient pass (:mod:`~safetext.localize.attribution`) and spends
real runs only on certifying the answer. The answer is written as a preset file that
``Guard(preset=...)`` loads.

Public API: :func:`localize`, :class:`LocalizeResult`, :func:`write_report`,
:func:`make_pairs`, :func:`read_prompt_file`, :class:`PromptPair`,
:class:`Criteria`, :func:`run_search`. ``pairs``, ``scoring`` and ``search`` import no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from safetext._lazy import lazy_attributes

from safetext.localize.pairs import PromptPair, make_pairs, read_prompt_file
from safetext.localize.scoring import ConfigScore, Criteria
from safetext.localize.search import SearchResult, run_search

_LAZY = {
    "localize": "safetext.localize.api",
    "LocalizeResult": "safetext.localize.api",
    "write_report": "safetext.localize.report",
    "PatchRunner": "safetext.localize.runner",
}

__all__ = [
    "ConfigScore",
    "Criteria",
    "PromptPair",
    "SearchResult",
    "make_pairs",
    "read_prompt_file",
    "run_search",
    *_LAZY,
]

if TYPE_CHECKING:  # pragma: no cover
    from safetext.localize.api import LocalizeResult, localize
    from safetext.localize.report import write_report
    from safetext.localize.runner import PatchRunner


__getattr__ = lazy_attributes(__name__, _LAZY)
