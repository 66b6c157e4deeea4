import pytest
import torch


@pytest.fixture(autouse=True)
def _single_torch_thread():
    """Run on one intra-op thread: on tensors this small, threading costs more than it saves,
    and when several test processes share the CPU, contended threads make it far slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
