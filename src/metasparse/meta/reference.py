"""A plain reference implementation of the MAML meta-gradient: a Python loop over signals with
``torch.autograd.grad(create_graph=True)``, the way most MAML code (and the official
Meta-SparseINR code) is written. They are the naive baselines of ``metasparse bench`` and the oracles
that tests compare the batched engine and the fast SIREN path with: ``naive_meta_gradient`` for MAML on
all weights with a scalar inner lr, ``naive_problem_meta_gradient`` for any meta-problem through its own
hooks (``init_fast``, ``step_size``, ``loss``, ``regulariser``: MetaSGD, modulations, gates).
"""

from __future__ import annotations

import torch

from metasparse.meta.problems.base import MetaProblem, WeightsProblem

Meta = dict[str, dict[str, torch.Tensor]]


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


def naive_problem_meta_gradient(problem: MetaProblem, meta: Meta, coords: torch.Tensor, targets: torch.Tensor,
                                noise, steps: int, first_order: bool = False) -> tuple[Meta, torch.Tensor]:
    """Meta-gradient of ``mean_i L_i(adapted_i) + regulariser`` and the per-signal losses (B,)."""
    leaves = {g: {k: v.detach().requires_grad_(True) for k, v in d.items()} for g, d in meta.items()}
    step = problem.step_size(leaves, noise)
    total = problem.regulariser(leaves, noise)
    losses = []
    for target in targets:
        # A constant start (zero modulations) must still be differentiable for the inner gradient.
        fast = {k: v if v.requires_grad else v.clone().requires_grad_(True)
                for k, v in problem.init_fast(leaves).items()}
        for _ in range(steps):
            loss = problem.loss(fast, leaves, coords, target, noise)
            names = list(fast)
            grads = torch.autograd.grad(loss, [fast[k] for k in names], create_graph=not first_order)
            fast = {k: fast[k] - step[k] * g for k, g in zip(names, grads)}
        outer = problem.loss(fast, leaves, coords, target, noise)
        losses.append(outer.detach())
        total = total + outer / len(targets)
    flat = [v for d in leaves.values() for v in d.values()]
    grads = torch.autograd.grad(total, flat, allow_unused=True)
    out: Meta = {}
    it = iter(grads)
    for g, d in leaves.items():
        out[g] = {}
        for k, v in d.items():
            gk = next(it)
            out[g][k] = torch.zeros_like(v) if gk is None else gk
    return out, torch.stack(losses)
