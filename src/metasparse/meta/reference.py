"""A plain reference implementation of the MAML meta-gradient: a Python loop over signals with
``torch.autograd.grad(create_graph=True)``, the way most MAML code (and the official
Meta-SparseINR code) is written. It is the naive baseline of ``metasparse bench`` and the oracle
that tests compare the batched engine with.
"""

from __future__ import annotations

import torch

from metasparse.meta.problems.base import WeightsProblem


def naive_meta_gradient(problem: WeightsProblem, theta: dict[str, torch.Tensor], coords, targets, steps: int,
                        inner_lr: float):
    """Second-order MAML meta-gradient of the mean post-adaptation loss, one signal at a time."""
    leaves = {k: v.detach().requires_grad_(True) for k, v in theta.items()}
    total = 0.0
    losses = []
    for target in targets:
        fast = dict(leaves)
        for _ in range(steps):
            loss = problem.loss(fast, {}, coords, target)
            grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
            fast = {k: v - inner_lr * g for (k, v), g in zip(fast.items(), grads)}
        outer = problem.loss(fast, {}, coords, target)
        losses.append(outer.detach())
        total = total + outer / len(targets)
    grads = torch.autograd.grad(total, list(leaves.values()))
    return dict(zip(leaves.keys(), grads)), torch.stack(losses)
