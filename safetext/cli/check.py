"""``safetext check`` and ``safetext policy validate|schema``.

Contract (relied on by later checks): with ``--json`` print one JSON object per input
prompt, one per line, in input order. Errors go to stderr with exit code 2; no tracebacks.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from safetext.cli import app

if TYPE_CHECKING:  # pragma: no cover
    from safetext.policy.schema import Policy

policy_app = typer.Typer(help="Validate policy files and export their JSON Schema.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")

_DEFAULT_POLICY = "default"


def _fail(message: str, code: int = 2) -> typer.Exit:
    """One ``error:`` line (a multi-line message is joined with '; ')."""
    one_line = "; ".join(line.strip() for line in message.splitlines() if line.strip())
    typer.echo(f"error: {one_line}", err=True)
    return typer.Exit(code)


def _read_prompts(path: Path) -> list[str]:
    """One prompt per line, strict UTF-8; every bad line is reported with its number."""
    if str(path) == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise _fail(f"prompt file not found: {path}") from None
        except OSError as exc:
            raise _fail(f"cannot read prompt file {path}: {exc.strerror}") from None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    prompts, bad = [], []
    for number, raw in enumerate(lines, start=1):
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            prompts.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            bad.append(f"{path}:{number}: invalid UTF-8 at byte {exc.start} of the line")
    if bad:
        more = f" (and {len(bad) - 20} more lines)" if len(bad) > 20 else ""
        raise _fail("prompt file is not valid UTF-8: " + "; ".join(bad[:20]) + more)
    return prompts


def _engine(policy: str):  # noqa: ANN202 - imported lazily for a fast --help
    from safetext.detect.classifiers import ClassifierError
    from safetext.policy import PolicyEngine, PolicyError

    try:
        return PolicyEngine(policy)
    except PolicyError as exc:
        raise _fail(f"invalid policy: {exc}") from None
    except ClassifierError as exc:
        raise _fail(f"policy classifier unavailable: {exc}") from None


@app.command()
def check(
    prompt: Annotated[Optional[str], typer.Argument(help="The prompt to check. Omit when using --file.")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", "-f", help="UTF-8 file with one prompt per line ('-' for stdin).")] = None,
    policy: Annotated[str, typer.Option("--policy", "-p", help="Policy name or YAML file.")] = _DEFAULT_POLICY,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per prompt per line.")] = False,
) -> None:
    """Check prompts against a policy: allow, rewrite (with a benign prompt) or block."""
    if (prompt is None) == (file is None):
        raise _fail("give exactly one of PROMPT or --file")
    if prompt is not None and not prompt.strip():
        raise _fail("the prompt is empty")
    prompts = [prompt] if prompt is not None else _read_prompts(file)  # type: ignore[arg-type]
    engine = _engine(policy)
    from safetext.detect.classifiers import ClassifierError

    try:
        decisions = []
        for text in prompts:
            decision = engine.check(text)
            if as_json:
                typer.echo(_json_line(decision))
            else:
                decisions.append(decision)
    except ClassifierError as exc:
        raise _fail(f"policy classifier failed: {exc}") from None
    if not as_json:
        _print_table(decisions, engine.name)


def _json_line(decision) -> str:  # noqa: ANN001
    data = decision.model_dump(mode="json")
    return json.dumps(data, ensure_ascii=False)


def _printable(text: str, limit: int = 120) -> str:
    """Escape control characters and shorten, so a hostile prompt cannot garble the terminal."""
    shown = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}" for c in text[:limit])
    return shown + ("…" if len(text) > limit else "")


def _print_table(decisions: list, policy_name: str) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    colours = {"allow": "green", "flag": "cyan", "rewrite": "yellow", "block": "red"}
    table = Table(title=f"safetext check (policy: {policy_name})", show_lines=True)
    table.add_column("action")
    table.add_column("risk", justify="right")
    table.add_column("prompt")
    table.add_column("benign prompt")
    table.add_column("spans")
    for d in decisions:
        spans = "\n".join(f"[{s.start}:{s.end}] {_printable(s.text, 40)} ({s.category}, {s.method})" for s in d.spans)
        table.add_row(
            Text(d.action.value, style=colours[d.action.value]),
            f"{d.risk:.2f}",
            Text(_printable(d.prompt)),
            Text(_printable(d.benign_prompt) if d.benign_prompt is not None else "—"),
            Text(spans or "—"),
        )
    Console().print(table)


@policy_app.command("validate")
def validate(
    file: Annotated[Path, typer.Argument(help="Policy YAML file (or a shipped policy name).")],
    show_near_misses: Annotated[
        bool, typer.Option("--near-misses", help="List benign targets one letter away from a blocked term.")
    ] = False,
) -> None:
    """Validate a policy file; errors name the file, line and field. Also checks that targets are benign.

    Exit codes: 1 when the policy does not validate, 2 when FILE is neither a file nor a shipped name.
    """
    from safetext.detect.classifiers import ClassifierError
    from safetext.policy import PolicyEngine, PolicyError, load_policy
    from safetext.policy.checks import check_compiled

    try:
        policy = load_policy(file)
    except PolicyError as exc:
        raise _fail(f"invalid policy: {exc}", 1 if file.is_file() else 2) from None
    try:
        engine = PolicyEngine(policy)
        check_compiled(policy, engine.matcher, engine.fingerprint)  # a no-op once the engine has run it
    except PolicyError as exc:
        raise _fail(f"invalid policy: {exc}", 1) from None
    # Targets the lexicon detects are refused above; this also asks the policy's classifier.
    problems = []
    try:
        for category, term, spec in policy.term_items():
            for target in spec.targets or policy.categories[category].targets:
                if engine.analyze(target):
                    problems.append(f"terms.{category}.{term}: benign target {target!r} is itself detected")
    except ClassifierError as exc:
        raise _fail(f"policy classifier unavailable: {exc}", 1) from None
    if problems:
        raise _fail("policy targets are not benign: " + "; ".join(problems), 1)
    close = near_misses(policy)
    if close and show_near_misses:
        typer.echo("\n".join(f"warning: {line}" for line in close), err=True)
    elif close:
        typer.echo(f"warning: {len(close)} benign targets are one letter from a blocked term (--near-misses lists them)", err=True)
    counts = {c: sum(1 for cat, _, _ in policy.term_items() if cat == c) for c in policy.categories}
    typer.echo(f"ok: {policy.source} ({len(policy.term_items())} terms: " + ", ".join(f"{c} {n}" for c, n in counts.items()) + ")")


def near_misses(policy: Policy) -> list[str]:
    """Benign targets one letter away from a term the policy acts on (e.g. mate / hate, books / boobs).

    Why: image models misdraw single letters, so such a target can come out as the blocked
    word itself (the testbed once wrote MATE as HATE). Listed, not refused: a look-alike
    target keeps the layout, and may still be the best choice. Terms of categories the
    policy allows (opt-in categories) are not counted, nor ``match: initials`` terms, which
    are blocked only when spelled out as initials.

    One-edit neighbours are found through an index of each term's one-deletion and
    one-wildcard forms, so the cost grows with the number of terms, not with their product.
    """
    acted = {c for c, cat in policy.categories.items() if cat.action != "allow"}
    # an initials term ("sob") is blocked only as initials: a target misdrawn as the word is not a leak
    terms = sorted({term.lower() for category, term, spec in policy.term_items() if category in acted and policy.match_mode(category, spec) != "initials"})
    wildcard: dict[str, set[str]] = {}  # term with one position blanked -> terms (substitutions)
    deleted: dict[str, set[str]] = {}  # term with one character removed -> terms (one longer)
    for term in terms:
        for i in range(len(term)):
            wildcard.setdefault(term[:i] + "\0" + term[i + 1 :], set()).add(term)
            deleted.setdefault(term[:i] + term[i + 1 :], set()).add(term)
    known = set(terms)
    cache: dict[str, list[str]] = {}

    def neighbours(low: str) -> list[str]:
        if low not in cache:
            close = set(deleted.get(low, ())) | ({low} & known)
            for i in range(len(low)):
                close |= wildcard.get(low[:i] + "\0" + low[i + 1 :], set())
                shorter = low[:i] + low[i + 1 :]
                if shorter in known:
                    close.add(shorter)
            cache[low] = sorted(close)
        return cache[low]

    out = []
    for category, term, spec in policy.term_items():
        for target in spec.targets or policy.categories[category].targets:
            close = neighbours(target.lower())
            if close:
                out.append(f"terms.{category}.{term}: benign target {target!r} is one letter from blocked {', '.join(map(repr, close))}")
    return out


@policy_app.command("schema")
def schema(
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print the policy JSON Schema (for editor validation of policy YAML)."""
    from safetext.policy.schema import Policy

    if output is not None:
        from safetext.cli._validate import out_file

        out_file(output, "--output")
    text = json.dumps(Policy.model_json_schema(), indent=2)
    if output is None:
        typer.echo(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
