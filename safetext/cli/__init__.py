"""The ``safetext`` command line. One module per command group; this file only assembles them.

Command modules import heavy libraries (torch, diffusers) inside their functions, so
``safetext check`` stays fast.

User mistakes never end in a traceback: :class:`_Commands` turns usage errors, every
:class:`~safetext.errors.SafetextError` and ``OSError`` on a user's path into one
``error: ...`` line on stderr and exit code 2 (``--verbose`` re-raises the last two, so
their traceback shows). Commands check their paths and options before loading a model
(:mod:`safetext.cli._validate`). Other exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from typer.core import TyperGroup

from safetext.errors import SafetextError

#: The click exceptions typer raises (recent typer vendors its own click; older typer uses click's).
_click_errors = sys.modules[typer.BadParameter.__module__]

#: Exit code of a user mistake (click's own code for usage errors).
USAGE_ERROR = 2
_VERBOSE = "safetext.verbose"


def user_error(exc: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or None for a bug (keep the traceback)."""
    if isinstance(exc, _click_errors.ClickException):
        message = exc.format_message()
        ctx = getattr(exc, "ctx", None)
        if isinstance(exc, _click_errors.UsageError) and ctx is not None:
            message += f" (see '{ctx.command_path} --help')"
    elif isinstance(exc, SafetextError):
        message = str(exc) or type(exc).__name__
    elif isinstance(exc, OSError) and exc.filename is not None:
        message = f"{exc.strerror or exc}: {exc.filename}"
    else:
        return None
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


class _Commands(TyperGroup):
    """The root group: runs a command and reports user errors as ``error: ...`` (exit 2)."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except _click_errors.NoArgsIsHelpError:
            raise
        except _click_errors.UsageError as exc:
            raise _report(exc) from None

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, _click_errors.NoArgsIsHelpError):
            raise
        except _click_errors.ClickException as exc:  # usage errors: never worth a traceback
            raise _report(exc) from None
        except Exception as exc:
            if ctx.meta.get(_VERBOSE) or user_error(exc) is None:
                raise
            raise _report(exc) from None


def _report(exc: BaseException) -> typer.Exit:
    typer.echo(f"error: {user_error(exc)}", err=True)
    return typer.Exit(USAGE_ERROR)


app = typer.Typer(
    name="safetext",
    cls=_Commands,
    help="Content-safety middleware for text-to-image diffusion pipelines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        from safetext import __version__

        typer.echo(f"safetext {__version__}")
        raise typer.Exit()


def _quiet_third_party() -> None:
    """Keep library notices (transformers' torchvision hints, diffusers' ``torch_dtype``
    deprecation, weight-loading bars) out of safetext's own output. Why: a newcomer running
    ``safetext demo`` should see the result table, not warnings they cannot act on.
    Environment values a user has set win; ``--verbose`` skips all of this."""
    import os
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"diffusers\.")


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    verbose: bool = typer.Option(
        False, "--verbose", help="Show the warnings and loading bars of diffusers and transformers, and tracebacks of errors."
    ),
) -> None:
    """Content-safety middleware for text-to-image diffusion pipelines."""
    ctx.meta[_VERBOSE] = verbose
    if not verbose:
        _quiet_third_party()


# Each module registers its commands on ``app`` when imported. A module that is not
# written yet is skipped, so the CLI works while the project grows.
for _name in ("check", "generate", "demo", "bench", "localize", "edit", "serve", "finetune"):
    try:
        importlib.import_module(f"safetext.cli.{_name}")
    except ModuleNotFoundError as exc:  # pragma: no cover - only while a module is absent
        if exc.name != f"safetext.cli.{_name}":
            raise


def main() -> None:  # pragma: no cover
    """Console entry point (``app`` itself is one too)."""
    app()
