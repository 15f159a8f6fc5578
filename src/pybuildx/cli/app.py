"""Root of the ``ci-build`` command and the single boundary that maps errors to exit codes.

Command modules are imported here but must keep their heavy imports (grpc, kubernetes, docker,
cryptography) inside the command functions, so that ``ci-build --help`` stays fast.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import Any

import typer
import typer.core

from pybuildx import __version__
from pybuildx.errors import PybuildxError, redact

# Each module defines ``register(app: typer.Typer) -> None``.
COMMAND_MODULES: tuple[str, ...] = ("certs", "build", "builder")


class _Interrupted(Exception):
    """A KeyboardInterrupt (or the pipeline's SIGTERM/SIGHUP subclass) that left a command.

    Typer turns KeyboardInterrupt into a silent exit 130; wrapping it lets ``main`` say why.
    """

    def __init__(self, cause: KeyboardInterrupt) -> None:
        super().__init__(str(cause))
        # The pipeline raises Terminated("SIGTERM"); a plain Ctrl-C carries no name.
        name = str(cause.args[0]) if cause.args else "SIGINT"
        self.signal_name = name if name.startswith("SIG") else "SIGINT"


class _Group(typer.core.TyperGroup):
    def invoke(self, ctx: Any) -> Any:  # Typer's vendored click.Context
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise _Interrupted(exc) from None


app = typer.Typer(
    cls=_Group,
    name="ci-build",
    help="Bootstrap BuildKit builders and run (multi-platform) container builds on them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"ci-build {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version."
    ),
    debug: bool = typer.Option(
        False, "--debug", "-D", envvar="PYBUILDX_DEBUG", help="Show tracebacks for errors."
    ),
) -> None:
    if debug:
        os.environ["PYBUILDX_DEBUG"] = "1"


for _name in COMMAND_MODULES:
    importlib.import_module(f"pybuildx.cli.{_name}").register(app)


def _debug_enabled(argv: list[str]) -> bool:
    return "--debug" in argv or "-D" in argv or os.environ.get("PYBUILDX_DEBUG") == "1"


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``ci-build``: run the command, print expected errors as one line."""
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="ci-build", standalone_mode=True)
    except PybuildxError as exc:
        if _debug_enabled(args):
            raise
        print(exc.render(), file=sys.stderr)
        sys.exit(exc.exit_code)
    except (_Interrupted, KeyboardInterrupt) as exc:
        name = exc.signal_name if isinstance(exc, _Interrupted) else "SIGINT"
        if name == "SIGINT":
            print("error: interrupted", file=sys.stderr)
        else:
            print(f"error: terminated by {name}", file=sys.stderr)
        sys.exit(128 + int(signal.Signals[name]))
    except Exception as exc:  # a bug: say so in one line unless --debug asks for the traceback
        if _debug_enabled(args):
            raise
        message = redact(f"{type(exc).__name__}: {exc}")
        print(f"error: internal error: {message}", file=sys.stderr)
        print("hint: run again with --debug for the traceback, and report it", file=sys.stderr)
        sys.exit(1)
