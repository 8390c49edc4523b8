"""Entry point of the ``amoeba`` command: registers the subcommands and turns user errors into one line."""

from __future__ import annotations

import sys

import typer

from cli.errors import user_error_types

app = typer.Typer(
    name="amoeba",
    help="Distributed regularized evolution for neural architecture search.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Each module adds its own commands; importing them here keeps this file the single root.
    from cli import bench

    bench.register(app)


def main(argv: list[str] | None = None) -> None:
    _register()
    try:
        app(args=argv, standalone_mode=True)
    except user_error_types() as exc:
        print(f"amoeba: error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
