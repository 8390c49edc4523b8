"""Entry point of the ``amoeba`` command: registers the subcommands and turns every failure into one line.

An expected failure (any ``AmoebaError``, a usage error) is one line on stderr and a non-zero exit; an
unexpected one is a short line naming the file that holds its traceback. Every number a user gives is
finite (NaN and infinities are refused for every float option), and boolean flags show no value.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

# gRPC's C core logs connection trouble on stderr ahead of our own one-line error: keep it quiet unless
# the user asks for it (read when grpc is first imported).
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

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
#: The longest error line printed: messages may quote what the user gave (a 50 MB genome string).
MAX_ERROR_LINE = 500


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"amoeba {version('amoeba-nas')}")
        except PackageNotFoundError:
            print("amoeba (not installed as a package)")
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="print the version and exit"),
) -> None:
    """Distributed regularized evolution for neural architecture search."""


def _finite(original: Any) -> Any:
    """A float option's callback that refuses NaN and infinities (they pass float() and every range check)."""

    def check(ctx: Any, param: Any, value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            flag = next((o for o in getattr(param, "opts", ()) if o.startswith("--")), param.name)
            raise click.UsageError(f"{flag} must be a finite number, got {value}", ctx=ctx)
        return original(ctx, param, value) if original is not None else value

    return check


def _harden(command: Any) -> None:
    """Every float option finite; boolean flags without a metavar (they take no value)."""
    for param in command.params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is not None and descriptor.annotation is float:
            param.callback = _finite(param.callback)
    original_help = command.get_help_option

    def help_option(ctx: Any) -> Any:
        option = original_help(ctx)  # made afresh on every call, so fixed here rather than in params
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        _harden(sub)


def _cut(message: str) -> str:
    line = " ".join(message.split())
    return line if len(line) <= MAX_ERROR_LINE else line[:MAX_ERROR_LINE - 3] + "..."


def _crash_log(exc: BaseException) -> Path | None:
    """Write the traceback of an unexpected exception to a file; its path, or None when nothing is writable."""
    folder = Path(os.environ.get("AMOEBA_CACHE", Path.home() / ".cache" / "amoeba")) / "logs"
    for where in (folder, Path(tempfile.gettempdir())):
        try:
            where.mkdir(parents=True, exist_ok=True)
            path = where / f"amoeba-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
            path.write_text(f"amoeba {' '.join(sys.argv[1:])}\n\n" + "".join(traceback.format_exception(exc)))
            return path
        except OSError:
            continue
    return None


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
    from cli import scale as scale_command

    scale_command.register(app)
    from cli import lineage as lineage_command

    lineage_command.register(app)
    from cli import artifacts as artifacts_command

    artifacts_command.register(app)
    from cli import retrain as retrain_command

    retrain_command.register(app)
    from cli import export_model

    export_model.register(app)
    from cli import compare as compare_command

    compare_command.register(app)


def _click_exceptions(name: str) -> tuple[type[BaseException], ...]:
    """The click exception class ``name`` from click and from the copy newer Typer versions vendor."""
    modules = [click.exceptions]
    vendored = getattr(typer, "_click", None)
    if vendored is not None and hasattr(vendored, "exceptions"):
        modules.append(vendored.exceptions)
    return tuple(getattr(m, name) for m in modules if hasattr(m, name))


def main(argv: list[str] | None = None) -> None:
    _register()
    command = typer.main.get_command(app)
    _harden(command)
    try:
        result = command.main(args=argv, standalone_mode=False, prog_name="amoeba")
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
        print(f"amoeba: error: {_cut(str(exc))}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("amoeba: interrupted", file=sys.stderr)
        sys.exit(130)
    except RecursionError:
        print("amoeba: error: the input is nested too deeply to read", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        log = _crash_log(exc)
        where = f"; the traceback is in {log}" if log is not None else ""
        print(f"amoeba: internal error ({type(exc).__name__}: {_cut(str(exc))[:200]}){where}", file=sys.stderr)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
