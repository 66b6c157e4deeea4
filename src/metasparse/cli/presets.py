"""``metasparse presets``: the named run presets as a table."""

from __future__ import annotations

from rich.table import Table

from metasparse.cli.app import app
from metasparse.cli.console import out


@app.command()
def presets() -> None:
    """List the named run presets."""
    from metasparse.presets import list_presets

    found = list_presets()
    table = Table(title="presets (metasparse train PRESET)")
    # A name is what people copy into `metasparse train`: never fold or truncate it.
    table.add_column("name", style="bold", no_wrap=True, min_width=max(len(p.name) for p in found))
    table.add_column("model")
    table.add_column("problem", no_wrap=True)
    table.add_column("steps", justify="right", no_wrap=True)
    table.add_column("description")
    for p in found:
        m = p.model
        steps = p.train.steps + p.prune.rounds * p.prune.steps_per_round
        table.add_row(p.name, f"{m.kind} {m.depth}x{m.width} w0={m.w0:g}", p.problem.kind, f"{steps:,}", p.description)
    out.print(table)
