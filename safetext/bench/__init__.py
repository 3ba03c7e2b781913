"""The safety benchmark: methods side by side on the same seeds, scored by OCR, gated in CI.

``safetext bench`` (``safetext/cli/bench.py``) wraps :func:`run_bench`. The modules, in
the order data flows: prompts -> decide -> methods/generate -> evaluate -> shard (merge) ->
aggregate -> results/report/plots -> gate.
"""

from safetext.bench.prompts import SUITES, PromptItem, load_prompt_set
from safetext.bench.runner import GATE_FAILED, BenchConfig, BenchOutcome, run_bench

__all__ = ["GATE_FAILED", "SUITES", "BenchConfig", "BenchOutcome", "PromptItem", "load_prompt_set", "run_bench"]
