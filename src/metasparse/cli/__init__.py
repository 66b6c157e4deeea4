"""The ``metasparse`` command line.

Every user-facing failure (bad data, wrong model file, bad option) is one line on stderr and a
non-zero exit: 1 for errors in the inputs, 2 for usage errors, 130 for Ctrl-C.

Each verb lives in its own module and declares its command on :data:`metasparse.cli.app.app`; they are
imported here by name. Their module tops import only typer, rich and the standard library, so that
``metasparse --help`` starts without torch; the work is imported inside each command.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from metasparse.cli import bench, codec, dist, evaluate, experiment, presets, train  # noqa: F401
from metasparse.cli.app import app
from metasparse.cli.console import console
from metasparse.errors import MetasparseError

# Verbs whose modules other packages' maintainers keep declare them through ``register(app)``.
for _verb_module in (bench, dist, experiment):
    _verb_module.register(app)

__all__ = ["app", "main"]


def _program_name() -> str:
    """What the usage line calls the program: ``python -m metasparse.cli`` when run that way."""
    started_as = sys.argv[0] if sys.argv else ""
    this_package = (Path(__file__).resolve(), Path(__file__).with_name("__main__.py").resolve())
    as_module = started_as.endswith(".py") and Path(started_as).resolve() in this_package
    return "python -m metasparse.cli" if as_module else "metasparse"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    # The command is run here rather than through ``app()``: in its non-standalone mode typer turns
    # Ctrl-C into a returned exit code, which would lose the message below.
    try:
        command = typer.main.get_command(app)
        with command.make_context(_program_name(), args) as ctx:
            command.invoke(ctx)
    except typer.Exit as e:  # --help, and commands that stop early on purpose
        sys.exit(e.exit_code)
    except (typer.Abort, EOFError):
        console.print("aborted")
        sys.exit(130)
    except typer.TyperException as e:  # usage errors (exit 2, with the usage line) and typer's own errors
        if hasattr(e, "show"):
            e.show()
        else:
            console.print(f"error: {e.format_message()}", markup=False, highlight=False)
        sys.exit(e.exit_code)
    except BrokenPipeError:  # `metasparse ... | head`: the reader left; nothing more to say to it
        # The recipe of Python's signal docs: the flush at exit would fail on the closed pipe again.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # a stdout without a file descriptor has nothing to flush there
            pass
        sys.exit(1)
    except KeyboardInterrupt:
        console.print("interrupted (the last checkpoint is kept; re-run the command to resume)")
        sys.exit(130)
    except (MetasparseError, FloatingPointError) as e:  # the user's data or settings; torch's own FP errors too
        console.print(f"error: {e}", markup=False, highlight=False)
        sys.exit(1)
    except Exception as e:  # a bug, not a user error: still one line, the traceback on request
        if _out_of_memory(e):
            first = (str(e).splitlines() or [type(e).__name__])[0]
            console.print(f"error: out of memory ({first}); use a smaller batch", markup=False, highlight=False)
            sys.exit(1)
        if os.environ.get("METASPARSE_DEBUG"):
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        console.print(f"internal error: {type(e).__name__}: {first} (set METASPARSE_DEBUG=1 for the traceback)",
                      markup=False, highlight=False)
        sys.exit(3)


def _out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is running out of memory, torch's kind included. torch is imported only when torch
    could have raised it (it is in ``sys.modules``), so that the error boundary costs nothing at start-up."""
    if isinstance(error, MemoryError):
        return True
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(error, torch.OutOfMemoryError)


if __name__ == "__main__":
    main()
