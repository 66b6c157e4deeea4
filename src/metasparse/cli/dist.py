"""``metasparse dist-info``: check a torchrun launch (ranks, hosts, devices, one timed all-reduce).

The work is :func:`metasparse.training.distributed.dist_info`, imported when the command runs, so
``metasparse --help`` starts without torch."""

from __future__ import annotations

import typer

from metasparse.cli.console import device_name, finite_positive, out


def register(app: typer.Typer) -> None:
    @app.command("dist-info")
    def dist_info(
        device: str = typer.Option("auto", "--device", callback=device_name, help="cpu, cuda or auto"),
        megabytes: float = typer.Option(4.0, "--megabytes", max=4096.0, callback=finite_positive,
                                        help="size of the timed all-reduce (at most 4096)"),
    ) -> None:
        """Check a torchrun launch: ranks, hosts and devices, and the time of one all-reduce."""
        from metasparse.training import distributed

        for line in distributed.dist_info(device, megabytes):
            out.print(line, markup=False, highlight=False)
