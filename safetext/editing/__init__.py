"""Text editing: regenerate an image with different rendered text and the rest kept.

:func:`edit` runs the guard's injection with the user's edited prompt as the benign
prompt (:mod:`safetext.editing.api`); :func:`plan_edit` finds the text to change and
builds the edited prompt without a model (:mod:`safetext.editing.target`). The package
is named ``editing`` so that ``safetext.edit`` stays the function: a subpackage of that
name would replace it on ``safetext`` once imported.

Importing this package does not import torch.
"""

from __future__ import annotations

from safetext.editing.api import EditResult, edit
from safetext.editing.target import EditPlan, TextSpan, find_old_text, match_case, plan_edit, rendered_texts
from safetext.errors import EditError

__all__ = [
    "EditError",
    "EditPlan",
    "EditResult",
    "TextSpan",
    "edit",
    "find_old_text",
    "match_case",
    "plan_edit",
    "rendered_texts",
]
