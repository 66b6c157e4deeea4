"""Data-parallel meta-training and file sharding with ``torch.distributed``.

``metasparse train`` started by ``torchrun`` joins a process group (NCCL on GPUs, one GPU per
process at ``cuda:LOCAL_RANK``; gloo on CPU). Every rank draws the *same* global batch from the same
seeded generator and keeps only its contiguous slice, so the batch and gate-noise generators stay
identical on every rank without any communication and a resumed run is still bitwise per rank. The
meta-gradient of each slice is averaged across ranks before the (then identical) Adam step. Only
rank 0 writes files; the others wait at a barrier, so no rank ever reads a half-written checkpoint.

Without ``torchrun`` nothing here initialises anything and a run is exactly the single-process one.

``shard`` and ``skip_existing`` split file lists between ranks for commands that process many
independent files (``metasparse compress``); those need no process group at all.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import torch
import torch.distributed as dist

from metasparse.errors import ConfigError, MetasparseError
from metasparse.utils.device import rank_device

T = TypeVar("T")



class DistributedError(MetasparseError):
    """The process group could not be formed, or its ranks disagree about the run's state."""


@dataclass(frozen=True)
class World:
    """Where this process stands: ``backend`` is None outside a process group."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched() -> bool:
    """Whether a launcher (``torchrun``) started this process as one rank of a group."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None


def _timeout() -> timedelta:
    # Long enough for rank 0 to write a large checkpoint while the others wait at the barrier.
    minutes = _env_int("METASPARSE_DIST_TIMEOUT_MIN", 30)
    if minutes < 1:
        raise ConfigError("METASPARSE_DIST_TIMEOUT_MIN must be at least 1")
    return timedelta(minutes=minutes)


def env_world() -> tuple[int, int, int]:
    """``(RANK, WORLD_SIZE, LOCAL_RANK)`` as ``torchrun`` sets them; ``(0, 1, 0)`` outside it."""
    rank, size, local = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0)
    if size < 1 or not 0 <= rank < size:
        raise ConfigError(f"RANK={rank} and WORLD_SIZE={size} do not describe a process group")
    return rank, size, local


def world() -> World:
    """The initialised process group, or the one-process ``World()``."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0), dist.get_backend())


def is_main() -> bool:
    return world().is_main


def init_from_env(device: str = "auto") -> tuple[World, torch.device]:
    """Join the process group ``torchrun`` describes (a no-op without it); returns it and the rank's device."""
    if not launched():
        from metasparse.utils.device import resolve_device

        return World(), resolve_device(device)
    rank, size, local = env_world()
    dev = rank_device(device, local, size)
    if dist.is_initialized():
        return world(), dev
    if not dist.is_available():
        raise DistributedError("this PyTorch build has no torch.distributed support")
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    try:
        dist.init_process_group(backend, rank=rank, world_size=size, timeout=_timeout(),
                                device_id=dev if dev.type == "cuda" else None)
    except (RuntimeError, ValueError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DistributedError(f"rank {rank} of {size} could not join the {backend} process group ({first}); "
                               "check MASTER_ADDR/MASTER_PORT or torchrun's --rdzv_endpoint") from None
    return world(), dev


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _comm_device() -> torch.device:
    # NCCL only moves GPU tensors; gloo only CPU ones (for collectives on our small control tensors).
    return torch.device("cuda", torch.cuda.current_device()) if world().backend == "nccl" else torch.device("cpu")


def barrier() -> None:
    if world().distributed:
        dist.barrier()


def main_only(fn: Callable[..., T], *args, **kwargs) -> T | None:
    """Run ``fn`` on rank 0 only; every rank returns once it has finished (e.g. a file is complete)."""
    result = fn(*args, **kwargs) if is_main() else None
    barrier()
    return result


def batch_slice(batch_size: int, w: World | None = None) -> slice:
    """This rank's contiguous share of a global batch; the batch must split evenly."""
    w = w or world()
    if batch_size % w.size:
        raise ConfigError(f"meta.batch_size {batch_size} does not split evenly over {w.size} processes; "
                          f"use a multiple of {w.size} (e.g. --set meta.batch_size={w.size * -(-batch_size // w.size)})")
    per = batch_size // w.size
    return slice(w.rank * per, (w.rank + 1) * per)


def all_reduce_mean_(tensors: Sequence[torch.Tensor]) -> None:
    """Replace each tensor by its mean over ranks, in place, in one collective per dtype.

    With equal slices the mean over ranks of per-slice mean gradients is the gradient of the
    global-batch mean, so the step equals the single-process one up to float rounding.
    """
    w = world()
    if not w.distributed:
        return
    buckets: dict[tuple, list[torch.Tensor]] = {}
    for t in tensors:
        buckets.setdefault((t.dtype, t.device), []).append(t)
    for group in buckets.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat)
        flat.div_(w.size)
        offset = 0
        for t in group:
            n = t.numel()
            t.copy_(flat[offset:offset + n].view_as(t))
            offset += n


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Rank-ordered concatenation along dim 0 (ranks hold equal shapes): a global batch's per-signal values."""
    w = world()
    if not w.distributed:
        return t
    t = t.contiguous()
    parts = [torch.empty_like(t) for _ in range(w.size)]
    dist.all_gather(parts, t)
    return torch.cat(parts)


def agree(flag: bool) -> bool:
    """Rank 0's decision on every rank (e.g. a time budget that each clock would judge differently)."""
    w = world()
    if not w.distributed:
        return flag
    t = torch.tensor([1 if flag else 0], device=_comm_device())
    dist.broadcast(t, 0)
    return bool(t.item())


def check_same(values: Sequence[float], what: str) -> None:
    """Raise on every rank unless every rank holds the same ``values``."""
    w = world()
    if not w.distributed:
        return
    mine = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device())
    rows = all_gather_cat(mine.unsqueeze(0)).cpu()
    bad = [r for r in range(w.size) if not torch.equal(rows[r], rows[0])]
    if bad:
        raise DistributedError(f"ranks {bad} disagree with rank 0 on {what} ({rows[bad[0]].tolist()} vs "
                               f"{rows[0].tolist()}); every node must see the same run directory")


# -- many independent files --------------------------------------------------------------------
def shard(items: Sequence[T], rank: int | None = None, world: int | None = None) -> list[T]:
    """Rank ``rank``'s share of ``items`` out of ``world`` ranks: every ``world``-th item from ``rank``.

    Shares are disjoint and together hold every item once, provided every rank passes the same list
    in the same order (sort glob results). Interleaving rather than cutting into blocks spreads a
    sorted run of large files over the ranks. ``rank``/``world`` default to the process group, else to
    the ``RANK``/``WORLD_SIZE`` that ``torchrun`` sets, else to one process (all items).
    """
    if rank is None or world is None:
        w = _current()
        if w.distributed:
            env_rank, env_size = w.rank, w.size
        else:
            env_rank, env_size, _ = env_world()
        rank = env_rank if rank is None else rank
        world = env_size if world is None else world
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"rank {rank} is not one of {world} ranks")
    return list(items)[rank::world]


_current = world  # ``shard``'s argument named ``world`` hides the function inside it


def _output_of(job) -> Path:
    if isinstance(job, (tuple, list)):
        return Path(job[-1])
    return Path(job)


def skip_existing(
    jobs: Iterable[T],
    verifies: Callable[[Path], bool],
    output: Callable[[T], str | os.PathLike] = _output_of,
) -> tuple[list[T], list[T]]:
    """Split ``jobs`` into ``(to_do, skipped)``: skipped when the job's output is a file that ``verifies``.

    ``output(job)`` names the output (default: the job itself, or the last element of a
    ``(source, target)`` pair). An output that cannot be read or checked is done again rather than
    trusted, so a run killed mid-batch is completed by re-running it.
    """
    to_do: list[T] = []
    skipped: list[T] = []
    for job in jobs:
        path = Path(output(job))
        ok = False
        if path.is_file():
            try:
                ok = bool(verifies(path))
            except (OSError, MetasparseError):
                ok = False
        (skipped if ok else to_do).append(job)
    return to_do, skipped


# -- command line ------------------------------------------------------------------------------
def all_reduce_seconds(numel: int, repeats: int = 10, device: torch.device | None = None) -> float:
    """Median wall time of one all-reduce of ``numel`` float32 values (what one outer step sends)."""
    dev = device or _comm_device()
    buf = torch.ones(numel, device=dev)
    times = []
    for i in range(repeats + 2):
        barrier()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        dist.all_reduce(buf)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i >= 2:  # the first calls set up connections
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def dist_info(device: str = "auto", megabytes: float = 4.0) -> list[str]:
    """Join the process group of a torchrun launch, time one all-reduce of ``megabytes`` and leave it.

    Returns what to print (``metasparse dist-info``): on rank 0 one line per rank (host, device) and the
    timing; on the other ranks nothing; without torchrun one line saying so.
    """
    w, dev = init_from_env(device)
    if not w.distributed:
        return [f"one process on {dev} (not started by torchrun; see docs/distributed.md)"]
    me = [w.rank, w.local_rank, socket.gethostname(), str(dev)]
    everyone: list = [None] * w.size
    dist.all_gather_object(everyone, me)
    numel = int(megabytes * 2**20 / 4)
    seconds = all_reduce_seconds(numel)
    lines = []
    if w.is_main:
        lines = [f"rank {rank} (local {local}) on {host}: {d}" for rank, local, host, d in everyone]
        nbytes = numel * 4
        bus = 2 * (w.size - 1) / w.size * nbytes / seconds / 1e9
        lines.append(f"{w.size} process{'es' if w.size > 1 else ''}, {w.backend}: all-reduce of "
                     f"{nbytes / 2**20:.1f} MiB in {seconds * 1e3:.2f} ms (bus bandwidth {bus:.2f} GB/s)")
    shutdown()
    return lines
