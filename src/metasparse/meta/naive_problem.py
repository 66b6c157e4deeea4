"""The naive per-signal MAML loop for any meta-problem: the oracle and baseline of the fast paths.

``metasparse.meta.reference`` covers MAML on all weights with a scalar inner lr; this loop runs a
problem's own hooks (``init_fast``, ``step_size``, ``loss``, ``regulariser``), so it also covers
MetaSGD, modulations and gates. One signal at a time, ``torch.autograd.grad(create_graph=True)``:
the way most MAML code is written.
"""

from __future__ import annotations

import torch

from metasparse.meta.problems.base import MetaProblem

Meta = dict[str, dict[str, torch.Tensor]]


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
