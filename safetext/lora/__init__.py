"""LoRA fine-tuning of only the attention layers that render text (``safetext finetune``).

:func:`finetune` (also ``safetext.finetune``) is the entry point; :mod:`.data` reads and checks the image folder,
:mod:`.targets` chooses the LoRA layers, :mod:`.objective` and :mod:`.train` run the
model's own objective with exact resume, :mod:`.save` writes the adapter and model card.
Names are imported lazily: reading and checking data needs neither torch nor diffusers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from safetext._lazy import lazy_attributes

_LAZY = {
    "finetune": ("safetext.lora.api", "finetune"),
    "FinetuneResult": ("safetext.lora.api", "FinetuneResult"),
    "load_examples": ("safetext.lora.data", "load_examples"),
    "write_examples": ("safetext.lora.data", "write_examples"),
    "Example": ("safetext.lora.data", "Example"),
    "select_targets": ("safetext.lora.targets", "select_targets"),
    "METHODS": ("safetext.lora.targets", "METHODS"),
}
__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from safetext.lora.api import FinetuneResult, finetune
    from safetext.lora.data import Example, load_examples, write_examples
    from safetext.lora.targets import METHODS, select_targets


__getattr__ = lazy_attributes(__name__, _LAZY)
