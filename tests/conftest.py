import pytest
import torch

from metasparse.data.signals import SignalSet, grid_coordinates


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _single_torch_thread():
    """One intra-op thread: on tensors this small, threading costs more than it saves, and when several
    test processes share the CPU, contended threads make it far slower. Tests of threading set their own."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Smooth random colour images, uint8 (n, size, size, 3): realistic enough to fit quickly."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    up = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    return (up.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


@pytest.fixture
def tiny_signals() -> SignalSet:
    values = smooth_images(6, 8)
    return SignalSet(values, grid_coordinates((8, 8)), 1 / 255, [f"s{i}" for i in range(6)])
