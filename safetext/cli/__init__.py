"""The ``safetext`` command line. One module per command group; this file only assembles them.

Command modules import heavy libraries (torch, diffusers) inside their functions, so
``safetext check`` stays fast.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="safetext",
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
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
    verbose: bool = typer.Option(False, "--verbose", help="Show the warnings and loading bars of diffusers and transformers."),
) -> None:
    """Content-safety middleware for text-to-image diffusion pipelines."""
    if not verbose:
        _quiet_third_party()


# Each module registers its commands on ``app`` when imported. A module that is not
# written yet is skipped, so the CLI works while the project grows.
for _name in ("check", "generate", "demo", "bench", "localize"):
    try:
        importlib.import_module(f"safetext.cli.{_name}")
    except ModuleNotFoundError as exc:  # pragma: no cover - only while a module is absent
        if exc.name != f"safetext.cli.{_name}":
            raise


def main() -> None:  # pragma: no cover
    app()
