"""Which text in a prompt an edit changes, and the edited prompt.

The rendered text is found the way the policy finds it (:func:`safetext.detect.render_scope`):
quoted strings, and unquoted text after a render cue ("that says", "reading", "with the
text:") up to the end of its clause. Exactly one occurrence must be chosen, so an edit
never changes a word the user did not mean; anything else raises :class:`EditError`
naming the candidates. Pure string code: the CLI plans an edit before loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass

from safetext.detect.scope import render_scope
from safetext.errors import EditError

#: Opening quote -> closing quote, for the quoted forms ``render_scope`` recognises.
_QUOTE_PAIRS = {'"': '"', "“": "”", "„": "”", "«": "»", "‘": "’", "`": "`", "'": "'"}


@dataclass(frozen=True)
class TextSpan:
    """``prompt[start:end] == text``: one piece of text the prompt asks the model to render."""

    start: int
    end: int
    text: str


@dataclass(frozen=True)
class EditPlan:
    """The edit of one prompt: ``old_text`` at ``start:end`` becomes ``new_text``."""

    prompt: str
    edited_prompt: str
    old_text: str
    new_text: str  # as written into the edited prompt (case adapted, see match_case)
    start: int
    end: int


def rendered_texts(prompt: str) -> list[TextSpan]:
    """The pieces of ``prompt`` that it asks to render, in order, surrounding blanks trimmed."""
    spans = []
    for start, end in render_scope(prompt):
        text = prompt[start:end]
        lead = len(text) - len(text.lstrip())
        text = text.strip()
        if text:
            spans.append(TextSpan(start + lead, start + lead + len(text), text))
    return spans


def match_case(old: str, new: str) -> str:
    """``new`` in the case style of ``old`` when ``new`` is all lower case (a neutral spelling);
    any capital in ``new`` means the user chose its case, which is kept."""
    if new != new.lower() or not any(c.isalpha() for c in old):
        return new
    if old.isupper() and sum(c.isalpha() for c in old) > 1:
        return new.upper()
    if old.istitle():
        return " ".join(word[:1].upper() + word[1:] for word in new.split(" "))
    return new


def _occurrences(haystack: str, needle: str, offset: int = 0) -> list[int]:
    """Start indices of ``needle`` in ``haystack`` (case-insensitive), not inside a longer word."""
    low, key = haystack.casefold(), needle.casefold()
    if len(low) != len(haystack) or len(key) != len(needle):  # casefold changed lengths: compare as given
        low, key = haystack, needle
    found, i = [], low.find(key)
    while i >= 0:
        before = haystack[i - 1] if i > 0 else ""
        after = haystack[i + len(needle)] if i + len(needle) < len(haystack) else ""
        if not (needle[0].isalnum() and before.isalnum()) and not (needle[-1].isalnum() and after.isalnum()):
            found.append(offset + i)
        i = low.find(key, i + 1)
    return found


def _shown(texts: list[str]) -> str:
    return ", ".join(repr(t) for t in texts)


def find_old_text(prompt: str, replace: str | None = None) -> TextSpan:
    """The one occurrence of the text to change (see the module doc); :class:`EditError` otherwise."""
    spans = rendered_texts(prompt)
    if replace is None:
        if not spans:
            raise EditError(
                f"no rendered text found in {prompt!r}: quote the text to change "
                "(a sign that says \"open\") or name it with replace (CLI: --replace)"
            )
        if len(spans) > 1:
            raise EditError(f"the prompt renders {len(spans)} texts ({_shown([s.text for s in spans])}); choose one with replace (CLI: --replace)")
        return spans[0]
    if not isinstance(replace, str) or not replace.strip():
        raise EditError("replace must be a non-empty string")
    replace = replace.strip()
    inside = [i for s in spans for i in _occurrences(s.text, replace, s.start)]
    hits = inside or _occurrences(prompt, replace)
    if not hits:
        found = f" (its rendered text: {_shown([s.text for s in spans])})" if spans else ""
        raise EditError(f"{replace!r} does not occur in the prompt{found}")
    if len(hits) > 1:
        where = "rendered text" if inside else "prompt"
        raise EditError(f"{replace!r} occurs {len(hits)} times in the {where}; reword the prompt so the text to change occurs once")
    start = hits[0]
    return TextSpan(start, start + len(replace), prompt[start : start + len(replace)])


def _closing_quote(prompt: str, span: TextSpan) -> str | None:
    """The quote character that closes the quoted text holding ``span``, if it is quoted."""
    for start, end in render_scope(prompt):
        if start <= span.start and span.end <= end and start > 0:
            closing = _QUOTE_PAIRS.get(prompt[start - 1])
            if closing is not None and prompt[end : end + 1] == closing:
                return closing
    return None


def plan_edit(prompt: str, new_text: str, *, replace: str | None = None) -> EditPlan:
    """Plan the edit of ``prompt`` that renders ``new_text`` in place of its text (or of ``replace``)."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise EditError("the prompt is empty")
    if not isinstance(new_text, str) or not new_text.strip():
        raise EditError("the new text is empty")
    new_text = new_text.strip()
    if "\n" in new_text:
        raise EditError("the new text must be one line")
    span = find_old_text(prompt, replace)
    closing = _closing_quote(prompt, span)
    if closing is not None and closing in new_text:
        raise EditError(f"the new text {new_text!r} contains the quote {closing!r} that ends the text it replaces")
    written = match_case(span.text, new_text)
    edited = prompt[: span.start] + written + prompt[span.end :]
    if edited == prompt:
        raise EditError(f"the new text equals the old one ({span.text!r}); nothing to edit")
    return EditPlan(prompt, edited, span.text, written, span.start, span.end)
