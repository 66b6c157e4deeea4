"""The typer application every verb module declares its command on, and the options before the verb.

Imports only typer at module level: ``metasparse --help`` must not pay for torch.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Meta-learned sparse implicit neural representations (Meta-SparseINR, MSCN) and a codec built on them.",
)


@app.callback()
def _global_options(
    threads: int | None = typer.Option(
        None, "--threads", min=1,
        help="CPU threads for torch (1 is often fastest on a busy or 2-core machine)",
    ),
) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


__all__ = ["app"]
