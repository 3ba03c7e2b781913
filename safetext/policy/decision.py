"""The typed result of checking one prompt.

Modelled on Presidio (spans with scores, kept apart from what is done with them) and
LLM Guard (a sanitized prompt, a validity flag and a risk score in one record).
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field


class Action(str, Enum):
    """What the guard does with a prompt.

    ``FLAG`` generates the prompt as given, like ``ALLOW``, and reports that the policy
    flagged it: a category (or classifier finding) whose action is ``flag`` asks for review,
    not for a change.
    """

    ALLOW = "allow"
    FLAG = "flag"
    REWRITE = "rewrite"
    BLOCK = "block"


#: Strictness of each action; the worst action of a prompt's spans decides the prompt.
ACTION_SEVERITY: dict[Action, int] = {Action.ALLOW: 0, Action.FLAG: 1, Action.REWRITE: 2, Action.BLOCK: 3}


class Span(BaseModel):
    """One detected toxic span. ``prompt[start:end] == text`` always holds for the original prompt."""

    model_config = ConfigDict(frozen=True)

    start: int = Field(ge=0)
    end: int = Field(ge=0)
    text: str
    category: str
    term: str
    method: str = Field(description="How it was found: lexicon, lemma, normalized, glued, classifier, ...")
    score: float = Field(ge=0.0, le=1.0)
    in_render_scope: bool = Field(default=False, description="True when the span lies in text the prompt asks the model to render.")
    action: Action = Action.REWRITE
    target: str | None = Field(default=None, description="The benign replacement chosen for this span, if rewritten.")


class Decision(BaseModel):
    """The policy engine's verdict on one prompt. JSON-serialisable via ``model_dump_json``."""

    action: Action
    prompt: str
    benign_prompt: str | None = Field(default=None, description="Set only when action is rewrite.")
    spans: list[Span] = Field(default_factory=list)
    risk: float = Field(ge=0.0, le=1.0, default=0.0)
    reasons: list[str] = Field(default_factory=list)
    policy: str | None = None

    @property
    def is_valid(self) -> bool:
        """LLM Guard's flag: True when the prompt may be generated as given (allow and flag).

        A flagged prompt is valid: the policy lets it through unchanged and only asks that it
        be reported, which :attr:`flagged` tells.
        """
        return self.action in (Action.ALLOW, Action.FLAG)

    @property
    def flagged(self) -> bool:
        """True when the decision or any of its spans is a flag, to be reported with the result."""
        return self.action is Action.FLAG or any(s.action is Action.FLAG for s in self.spans)

    @property
    def sanitized_prompt(self) -> str | None:
        """The prompt that is safe to render: the benign prompt on rewrite, the prompt on allow
        and flag, None on block."""
        if self.action is Action.REWRITE:
            return self.benign_prompt
        if self.action in (Action.ALLOW, Action.FLAG):
            return self.prompt
        return None
