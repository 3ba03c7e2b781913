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


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Content-safety middleware for text-to-image diffusion pipelines."""


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
