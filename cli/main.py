"""Entry point of the ``amoeba`` command: registers the subcommands and turns user errors into one line."""

from __future__ import annotations

import sys

import click
import typer

from cli.errors import user_error_types

app = typer.Typer(
    name="amoeba",
    help="Distributed regularized evolution for neural architecture search.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


_registered: list[bool] = []


def _register() -> None:
    # Each module adds its own commands; importing them here keeps this file the single root.
    # Once per process: main() called again (tests, embedding) must not register every command twice.
    if _registered:
        return
    _registered.append(True)
    from cli import bench, model_info
    from cli import latency as latency_command

    bench.register(app)
    latency_command.register(app)
    model_info.register(app)
    from cli import migrate

    migrate.register(app)
    from cli import experiment as experiment_command
    from cli import server as server_command
    from cli import worker as worker_command

    server_command.register(app)
    worker_command.register(app)
    experiment_command.register(app)
    from cli import replay as replay_command
    from cli import status as status_command
    from cli import up as up_command

    up_command.register(app)
    status_command.register(app)
    replay_command.register(app)
    from cli import deploy as deploy_command
    deploy_command.register(app)


def _click_exceptions(name: str) -> tuple[type[BaseException], ...]:
    """The click exception class ``name`` from click and from the copy newer Typer versions vendor."""
    modules = [click.exceptions]
    vendored = getattr(typer, "_click", None)
    if vendored is not None and hasattr(vendored, "exceptions"):
        modules.append(vendored.exceptions)
    return tuple(getattr(m, name) for m in modules if hasattr(m, name))


def main(argv: list[str] | None = None) -> None:
    _register()
    try:
        result = app(args=argv, standalone_mode=False, prog_name="amoeba")
    except _click_exceptions("NoArgsIsHelpError") as exc:
        # Bare `amoeba` or `amoeba GROUP`: show help, as users expect, and exit 0.
        ctx = getattr(exc, "ctx", None)
        print(ctx.get_help() if ctx else "", file=sys.stdout)
        sys.exit(0)
    except _click_exceptions("UsageError") as exc:
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx else ""
        print(f"amoeba: error: {exc.format_message()}{hint}", file=sys.stderr)  # type: ignore[attr-defined]
        sys.exit(2)
    except _click_exceptions("Abort"):
        print("amoeba: interrupted", file=sys.stderr)
        sys.exit(130)
    except _click_exceptions("Exit") as exc:
        sys.exit(getattr(exc, "exit_code", 0))
    except _click_exceptions("ClickException") as exc:
        print(f"amoeba: error: {exc.format_message()}", file=sys.stderr)  # type: ignore[attr-defined]
        sys.exit(getattr(exc, "exit_code", 1) or 1)
    except user_error_types() as exc:
        print(f"amoeba: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("amoeba: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
