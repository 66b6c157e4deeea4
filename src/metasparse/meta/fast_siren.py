"""A CPU-fast MAML meta-gradient for SIREN meta-problems: the inner loop's gradient written out.

The engine's generic path gets the inner-loop gradient from ``torch.func.grad`` inside a ``vmap``
and differentiates through it again: a double-backward graph of small per-signal operations. Here:

- the inner gradient of the SIREN's MSE (backpropagation through ``sin(w0 (W h + b + s))``) is one
  batched computation for all signals (``siren_grad``): where θ is shared (modulations, or before
  the first inner step) a layer is one matmul over all signals' pixels, else a batched matmul;
- its backward is written by hand: the gradient map's Jacobian is the Hessian, which is symmetric,
  so the vector-Jacobian product that the outer backward needs is a Hessian-vector product, one
  tangent pass forward and back through the stored activations (Pearlmutter 1994); sin and cos are
  computed once per layer and reused, and the adjoints of a shared first forward pass are summed
  over the signals before going through it;
- the parameter-space part of the inner loop (w0 scaling, masks, gates, MetaSGD rates, latent map,
  updates) stays ordinary autograd on small tensors, so one first-order ``autograd.grad`` gives the
  full second-order meta-gradient.

``compile=True`` instead traces the same inner loop written with plain differentiable operations
through ``torch.compile`` (inductor fuses the element-wise work; worth it for long runs).

Supported: ``WeightsProblem`` (masks, scalar lr or MetaSGD), ``ModulationProblem`` (shifts, or a
latent mapped to shifts) and ``GatedModulationProblem`` (MSCN Eq. 10: hard-concrete gates, nested
budgets, L0 regulariser), each with a SIREN and the MSE loss, under MAML or FOMAML.
``make_fast_meta_gradient`` is a drop-in for ``engine.make_meta_gradient`` (same signature and
result) and returns ``None`` for anything else.
"""

from __future__ import annotations

import torch

from metasparse.meta.problems.base import MetaProblem, ModulationProblem, WeightsProblem
from metasparse.meta.problems.gated import GatedModulationProblem

Meta = dict[str, dict[str, torch.Tensor]]


# ------------------------------------------------------------------------------ which problems


def _problem_kind(problem: MetaProblem) -> str | None:
    model = getattr(problem, "model", None)
    if model is None or model.config.kind != "siren":
        return None
    if type(problem).loss is not MetaProblem.loss:
        return None
    if type(problem) is WeightsProblem:
        return "weights"
    if type(problem) in (ModulationProblem, GatedModulationProblem):
        return "modulations"
    return None


def supports(problem: MetaProblem, config=None) -> bool:
    """Whether the fast path computes this problem's meta-gradient (``config``: a ``MetaConfig``)."""
    if _problem_kind(problem) is None:
        return False
    return config is None or config.algorithm in ("maml", "fomaml")


# ------------------------------------------------------------------------------ the SIREN


class _Net:
    """The layer structure of a SIREN ``CoordinateNetwork`` with its effective (w0-scaled) weights.

    A weight is ``(out, in)`` when all signals share it and ``(B, out, in)`` when each has its own;
    a bias is ``(out,)`` or ``(B, out)``. Activations are ``(B, P, width)``.
    """

    def __init__(self, model):
        self.model = model
        self.last = model.num_layers - 1
        self.w0 = [model.w0_of(i) for i in range(self.last)]
        self.width = model.config.width
        self.offset = model.config.output_offset

    @staticmethod
    def linear(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """``h W^T + b`` for ``h`` (P, in) or (B, P, in)."""
        if w.dim() == 2 and b.dim() == 1:
            if h.dim() == 2:
                return torch.addmm(b, h, w.T)
            bsz, p, d = h.shape
            return torch.addmm(b, h.reshape(bsz * p, d), w.T).reshape(bsz, p, -1)
        if w.dim() == 2:  # shared weight, per-signal bias
            if h.dim() == 2:
                return (h @ w.T).unsqueeze(0) + b.unsqueeze(1)
            bsz, p, d = h.shape
            return (h.reshape(bsz * p, d) @ w.T).reshape(bsz, p, -1) + b.unsqueeze(1)
        bias = b.unsqueeze(1) if b.dim() == 2 else b
        if h.dim() == 2:
            h = h.expand(w.shape[0], *h.shape)
        return torch.baddbmm(bias, h, w.transpose(1, 2))

    @staticmethod
    def input_grad(delta: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``δ W``: (B, P, out) x weight → (B, P, in)."""
        if w.dim() == 2:
            bsz, p, d = delta.shape
            return (delta.reshape(bsz * p, d) @ w).reshape(bsz, p, -1)
        return torch.bmm(delta, w)

    @staticmethod
    def weight_grad(delta: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Per-signal ``δ^T h``: (B, out, in)."""
        if h.dim() == 2:
            return torch.matmul(delta.transpose(1, 2), h)
        return torch.bmm(delta.transpose(1, 2), h)

    def forward(self, weights: list[torch.Tensor], biases: list[torch.Tensor], coords: torch.Tensor):
        """Effective weights/biases (w0 folded in) → activations, cosines and the output."""
        hs, cs = [coords], []
        h = coords
        for i in range(self.last):
            pre = self.linear(h, weights[i], biases[i])
            h, c = torch.sin(pre), torch.cos(pre)
            hs.append(h)
            cs.append(c)
        out = self.linear(h, weights[self.last], biases[self.last])
        if self.offset:
            out = out + self.offset
        return hs, cs, out

    def backward(self, weights, hs, cs, d_out, want_weight_grads: bool):
        """Gradients of the loss w.r.t. the pre-activation biases of every layer (B, out), and
        with ``want_weight_grads`` w.r.t. the effective weights (B, out, in)."""
        bias_grads: list[torch.Tensor] = [None] * (self.last + 1)  # type: ignore[list-item]
        weight_grads: list[torch.Tensor | None] = [None] * (self.last + 1)
        bias_grads[self.last] = d_out.sum(1)
        if want_weight_grads:
            weight_grads[self.last] = self.weight_grad(d_out, hs[self.last])
        g_h = self.input_grad(d_out, weights[self.last])
        for i in range(self.last - 1, -1, -1):
            delta = g_h * cs[i]
            bias_grads[i] = delta.sum(1)
            if want_weight_grads:
                weight_grads[i] = self.weight_grad(delta, hs[i])
            if i > 0:
                g_h = self.input_grad(delta, weights[i])
        return bias_grads, weight_grads


def _mse_parts(out: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-signal MSE (B,) and its gradient w.r.t. the output."""
    residual = out - targets
    per_point = residual[0].numel()
    losses = residual.square().sum(dim=(1, 2)) / per_point
    return losses, residual * (2.0 / per_point)


# ------------------------------------------------------------------------------ hand-written second order
#
# ``siren_grad`` evaluates a SIREN's MSE gradient w.r.t. its effective weights and biases for a batch
# of signals, as one autograd node whose backward is written out. The gradient map's Jacobian is the
# Hessian, which is symmetric, so its vector-Jacobian product is a Hessian-vector product: one
# tangent pass forward and back through the stored activations (Pearlmutter 1994). That costs the
# same matmuls as autograd's double backward but about half the elementwise passes and a fraction
# of the operations. ``siren_loss`` is the plain forward with a hand-written backward.
#
# Shapes: a weight is (out, in) when shared by the batch, (B, out, in) when per signal; a bias (out,)
# or (B, out); activations (P, width) when shared (every signal has the same parameters, e.g. before
# the first inner step), else (B, P, width).


def _times_weight_t(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``x V^T``."""
    if v.dim() == 2:
        return (x.reshape(-1, x.shape[-1]) @ v.T).view(*x.shape[:-1], v.shape[0])
    if x.dim() == 2:
        return torch.matmul(x, v.transpose(1, 2))
    return torch.bmm(x, v.transpose(1, 2))


def _times_weight(x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``x V``."""
    if v.dim() == 2:
        return (x.reshape(-1, x.shape[-1]) @ v).view(*x.shape[:-1], v.shape[1])
    if x.dim() == 2:
        return torch.matmul(x, v)
    return torch.bmm(x, v)


def _linear(h: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``h V^T + b`` (a new tensor)."""
    if v.dim() == 2 and bias.dim() == 1:
        return torch.addmm(bias, h.reshape(-1, h.shape[-1]), v.T).view(*h.shape[:-1], v.shape[0])
    if v.dim() == 3 and h.dim() == 3:
        return torch.baddbmm(bias.unsqueeze(1) if bias.dim() == 2 else bias, h, v.transpose(1, 2))
    out = _times_weight_t(h, v)
    return out + (bias.unsqueeze(1) if bias.dim() == 2 else bias)


def _outer(a: torch.Tensor, b: torch.Tensor, shared: bool) -> torch.Tensor:
    """``Σ_p a^T b`` per signal (B, out, in), or summed over the signals too when ``shared``."""
    if not shared:
        if a.dim() == 3 and b.dim() == 3:
            return torch.bmm(a.transpose(1, 2), b)
        return torch.matmul(a.transpose(-1, -2), b)
    if a.dim() == 3 and b.dim() == 3:
        return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])
    if a.dim() == 3:
        return a.sum(0).T @ b
    if b.dim() == 3:
        return a.T @ b.sum(0)
    return a.T @ b


def _sin_cos(a, bias):
    if bias is not None:
        a = a.add_(bias) if torch.broadcast_shapes(a.shape, bias.shape) == a.shape else a + bias
    c = torch.cos(a)
    return a.sin_(), c


def _delta(g, c, h):
    delta = g * c
    return delta, (g * h if h is not None else None), delta.sum(1)


def _tangent_act(a_dot, bias_dot, c):
    if bias_dot is not None:
        rows = bias_dot.unsqueeze(1)  # constant over the points: broadcast, never copied
        a_dot = rows if a_dot is None else a_dot.add_(rows)
    return a_dot, c * a_dot  # (B, P, W) even where c is shared or ȧ constant over the points


def _tangent_delta(g_dot, c, gh, a_dot):
    if g_dot is None:
        delta_dot = -(gh * a_dot)
    else:
        delta_dot = g_dot.mul_(c)
        if a_dot is not None:
            delta_dot = delta_dot.addcmul_(gh, a_dot, value=-1.0)
    return delta_dot, delta_dot.sum(1)


def _bias_rows(bias):
    return bias.unsqueeze(1) if bias.dim() == 2 else bias


class _SirenForward:
    """One batched forward pass; keeps what the gradient and its tangent pass need."""

    def __init__(self, net: _Net, coords, targets, weights, biases):
        self.net = net
        last = net.last
        self.coords, self.weights = coords, weights
        hs, cs = [coords], []
        h = coords
        for i in range(last):
            w, b = weights[i], biases[i]
            if w.dim() == 3 and h.dim() == 3:
                a, bias = torch.baddbmm(_bias_rows(b), h, w.transpose(1, 2)), None
            else:
                a, bias = _times_weight_t(h, w), _bias_rows(b)
            h, c = _sin_cos(a, bias)
            hs.append(h)
            cs.append(c)
        out = _linear(h, weights[last], biases[last])
        if net.offset:
            out = out + net.offset
        residual = out - targets
        self.per_point = residual[0].numel()
        self.hs, self.cs, self.residual = hs, cs, residual

    def losses(self) -> torch.Tensor:
        return self.residual.square().sum(dim=(1, 2)) / self.per_point


def _backprop(fwd: _SirenForward, d_out: torch.Tensor, keep: bool):
    """Backpropagate ``d_out`` (B, P, C): per-layer ``δ`` (pre-activation gradients, output layer
    last), their sums over the points (the bias gradients) and, with ``keep``, ``g ⊙ h`` per hidden
    layer (the tangent pass needs it)."""
    last = fwd.net.last
    deltas: list[torch.Tensor] = [None] * (last + 1)  # type: ignore[list-item]
    sums: list[torch.Tensor] = [None] * (last + 1)  # type: ignore[list-item]
    gh: list[torch.Tensor] = [None] * last  # type: ignore[list-item]
    deltas[last], sums[last] = d_out, d_out.sum(1)
    g = _times_weight(d_out, fwd.weights[last])
    for i in range(last - 1, -1, -1):
        deltas[i], gh[i], sums[i] = _delta(g, fwd.cs[i], fwd.hs[i + 1] if keep else None)
        if i > 0:
            g = _times_weight(deltas[i], fwd.weights[i])
    return deltas, sums, gh


class _SirenGrad(torch.autograd.Function):
    """``(∂L/∂b_0 .. ∂L/∂b_L [, ∂L/∂W_0 .. ∂L/∂W_L])`` per signal, ``L`` the MSE of each signal,
    w.r.t. the effective (w0-scaled) biases and weights; backward = Hessian-vector product."""

    @staticmethod
    def forward(ctx, net, want_weight_grads, coords, targets, *params):
        ctx.set_materialize_grads(False)
        n = net.last + 1
        weights, biases = list(params[:n]), list(params[n:])
        fwd = _SirenForward(net, coords, targets, weights, biases)
        d_out = fwd.residual * (2.0 / fwd.per_point)
        deltas, sums, gh = _backprop(fwd, d_out, keep=True)
        outputs = list(sums)
        if want_weight_grads:
            outputs = outputs + [_outer(deltas[i], fwd.hs[i], shared=False) for i in range(n)]
        ctx.fwd, ctx.deltas, ctx.gh = fwd, deltas, gh
        ctx.shared_w = [w.dim() == 2 for w in weights]
        ctx.shared_b = [b.dim() == 1 for b in biases]
        ctx.n = n
        return tuple(outputs)

    @staticmethod
    def backward(ctx, *grads):
        fwd, deltas, gh, n = ctx.fwd, ctx.deltas, ctx.gh, ctx.n
        last = n - 1
        weights, hs, cs = fwd.weights, fwd.hs, fwd.cs
        bias_dots = list(grads[:n])
        weight_dots = list(grads[n:]) if len(grads) > n else [None] * n
        # Tangent forward pass: ȧ_i = ḣ_{i-1} W_i^T + h_{i-1} Ẇ_i^T + ḃ_i,  ḣ_i = cos(a_i) ȧ_i.
        a_dots: list[torch.Tensor | None] = []
        h_dots: list[torch.Tensor | None] = [None]
        h_dot = None
        for i in range(last + 1):
            a_dot = None
            if h_dot is not None:
                a_dot = _times_weight_t(h_dot, weights[i])
            if weight_dots[i] is not None:
                term = _times_weight_t(hs[i], weight_dots[i])
                a_dot = term if a_dot is None else a_dot.add_(term)
            if i < last:
                if a_dot is None and bias_dots[i] is None:
                    h_dot = None
                else:
                    a_dot, h_dot = _tangent_act(a_dot, bias_dots[i], cs[i])
                h_dots.append(h_dot)
            elif bias_dots[i] is not None:
                rows = bias_dots[i].unsqueeze(1)
                a_dot = rows.expand(-1, hs[0].shape[0], -1) if a_dot is None else a_dot.add_(rows)
            a_dots.append(a_dot)
        # Tangent backward pass: ġ_{L-1} = ḋ W_L + d Ẇ_L,  δ̇_i = ġ_i cos(a_i) - g_i h_i ȧ_i,
        # ġ_{i-1} = δ̇_i W_i + δ_i Ẇ_i; the products with h, ḣ give the Hessian-vector product.
        weight_bars: list[torch.Tensor | None] = [None] * n
        bias_bars: list[torch.Tensor | None] = [None] * n
        needs = ctx.needs_input_grad[4:]
        delta_dot = None if a_dots[last] is None else a_dots[last] * (2.0 / fwd.per_point)
        delta_dot_sum = None if delta_dot is None else delta_dot.sum(1)
        for i in range(last, -1, -1):
            if i < last:
                g_dot = None
                if delta_dot is not None:
                    g_dot = _times_weight(delta_dot, weights[i + 1])
                if weight_dots[i + 1] is not None:
                    term = _times_weight(deltas[i + 1], weight_dots[i + 1])
                    g_dot = term if g_dot is None else g_dot.add_(term)
                if g_dot is None and a_dots[i] is None:
                    delta_dot = delta_dot_sum = None
                else:
                    delta_dot, delta_dot_sum = _tangent_delta(g_dot, cs[i], gh[i], a_dots[i])
            if needs[i]:
                w_bar = None
                if delta_dot is not None:
                    w_bar = _outer(delta_dot, hs[i], ctx.shared_w[i])
                if h_dots[i] is not None:
                    term = _outer(deltas[i], h_dots[i], ctx.shared_w[i])
                    w_bar = term if w_bar is None else w_bar + term
                weight_bars[i] = w_bar
            if needs[n + i] and delta_dot_sum is not None:
                bias_bars[i] = delta_dot_sum.sum(0) if ctx.shared_b[i] else delta_dot_sum
        return (None, None, None, None, *weight_bars, *bias_bars)


class _SirenLoss(torch.autograd.Function):
    """Per-signal MSE (B,) of the batched forward, with a hand-written backward."""

    @staticmethod
    def forward(ctx, net, coords, targets, *params):
        n = net.last + 1
        fwd = _SirenForward(net, coords, targets, list(params[:n]), list(params[n:]))
        ctx.fwd, ctx.n = fwd, n
        ctx.shared_w = [w.dim() == 2 for w in params[:n]]
        ctx.shared_b = [b.dim() == 1 for b in params[n:]]
        return fwd.losses()

    @staticmethod
    def backward(ctx, loss_bar):
        fwd, n = ctx.fwd, ctx.n
        scale = loss_bar.view(-1, 1, 1) * (2.0 / fwd.per_point)
        deltas, sums, _ = _backprop(fwd, fwd.residual * scale, keep=False)
        needs = ctx.needs_input_grad[3:]
        weight_bars = [_outer(deltas[i], fwd.hs[i], ctx.shared_w[i]) if needs[i] else None for i in range(n)]
        bias_bars = [(sums[i].sum(0) if ctx.shared_b[i] else sums[i]) if needs[n + i] else None
                     for i in range(n)]
        return (None, None, None, *weight_bars, *bias_bars)


def siren_grad(net: _Net, coords, targets, weights, biases, want_weight_grads: bool):
    """Per-signal MSE gradients w.r.t. the effective biases (and weights): two lists (or one)."""
    out = _SirenGrad.apply(net, want_weight_grads, coords, targets, *weights, *biases)
    n = net.last + 1
    return list(out[:n]), (list(out[n:]) if want_weight_grads else None)


def siren_loss(net: _Net, coords, targets, weights, biases) -> torch.Tensor:
    return _SirenLoss.apply(net, coords, targets, *weights, *biases)


# ------------------------------------------------------------------------------ the inner loops
#
# Each core is a pure function of tensors (no problem object, no Python state that changes between
# calls), so ``torch.compile`` can trace it once; per-call randomness and budgets (hard-concrete
# gate samples, the top-k cut) are computed outside and come in as tensors.


def _modulation_core(net: _Net, steps: int, first_order: bool, manual: bool, weights_raw, biases_raw, gate,
                     latent_weight, latent_bias, step, code0, coords, targets) -> torch.Tensor:
    """Per-signal losses (B,) after ``steps`` MetaSGD/SGD steps on the shift modulations."""
    last, width = net.last, net.width
    weights = [w * net.w0[i] if i < last else w for i, w in enumerate(weights_raw)]

    def to_shifts(code):
        if latent_weight is not None:
            return code @ latent_weight.T + latent_bias
        return code * gate if gate is not None else code

    def to_code_grad(shift_grad):
        if latent_weight is not None:
            return shift_grad @ latent_weight
        return shift_grad * gate if gate is not None else shift_grad

    def biases_for(code):
        shifts = to_shifts(code).reshape(*code.shape[:-1], last, width)
        out = [net.w0[i] * (biases_raw[i] + shifts[..., i, :]) for i in range(last)]
        return out + [biases_raw[last]]

    # Every fit starts from the same code (``code0``, one vector), so the first forward pass is
    # computed once for the batch (activations (P, width)) and only broadcast against the targets;
    # autograd then sums the signals' adjoints before going back through it.
    code = code0
    for _ in range(steps):
        with torch.set_grad_enabled(torch.is_grad_enabled() and not first_order):
            if manual:
                bias_grads, _ = siren_grad(net, coords, targets, weights, biases_for(code), False)
            else:
                hs, cs, out = net.forward(weights, biases_for(code), coords)
                _, d_out = _mse_parts(out, targets)
                bias_grads, _ = net.backward(weights, hs, cs, d_out, want_weight_grads=False)
            # d loss / d s_i = w0_i Σ_p δ_i: the pre-activation bias gradient times the layer's w0.
            shift_grad = torch.cat([net.w0[i] * bias_grads[i] for i in range(last)], dim=-1)
            code_grad = to_code_grad(shift_grad)
        code = code - step * code_grad
    if manual:
        return siren_loss(net, coords, targets, weights, biases_for(code))
    _, _, out = net.forward(weights, biases_for(code), coords)
    losses, _ = _mse_parts(out, targets)
    return losses


def _weights_core(net: _Net, steps: int, first_order: bool, manual: bool, weights_raw, biases_raw,
                  weight_masks, bias_masks, weight_steps, bias_steps, coords, targets) -> torch.Tensor:
    """Per-signal losses (B,) after ``steps`` SGD/MetaSGD steps on all weights (MAML).

    ``*_masks`` hold a 0/1 tensor or ``None`` per layer; ``*_steps`` a float or a tensor of lrs.
    """
    last = net.last
    scale = [net.w0[i] if i < last else 1.0 for i in range(last + 1)]

    def effective(params, masks):
        out = []
        for i, (p, m) in enumerate(zip(params, masks)):
            if m is not None:
                p = p * m
            out.append(p * scale[i] if scale[i] != 1.0 else p)
        return out

    fast_w, fast_b = list(weights_raw), list(biases_raw)
    for _ in range(steps):
        with torch.set_grad_enabled(torch.is_grad_enabled() and not first_order):
            weights = effective(fast_w, weight_masks)
            # θ is shared before the first update, so that forward pass runs once for the batch.
            if manual:
                bias_grads, weight_grads = siren_grad(net, coords, targets, weights,
                                                      effective(fast_b, bias_masks), True)
            else:
                hs, cs, out = net.forward(weights, effective(fast_b, bias_masks), coords)
                _, d_out = _mse_parts(out, targets)
                bias_grads, weight_grads = net.backward(weights, hs, cs, d_out, want_weight_grads=True)
            grads_w, grads_b = [], []
            for i in range(last + 1):
                gw, gb = weight_grads[i], bias_grads[i]
                if scale[i] != 1.0:
                    gw, gb = gw * scale[i], gb * scale[i]
                if weight_masks[i] is not None:
                    gw = gw * weight_masks[i]
                if bias_masks[i] is not None:
                    gb = gb * bias_masks[i]
                grads_w.append(gw)
                grads_b.append(gb)
        fast_w = [p - lr * g for p, lr, g in zip(fast_w, weight_steps, grads_w)]
        fast_b = [p - lr * g for p, lr, g in zip(fast_b, bias_steps, grads_b)]
    if manual:
        weights, biases = effective(fast_w, weight_masks), effective(fast_b, bias_masks)
        return siren_loss(net, coords, targets, weights, biases)
    _, _, out = net.forward(effective(fast_w, weight_masks), effective(fast_b, bias_masks), coords)
    losses, _ = _mse_parts(out, targets)
    return losses


# ------------------------------------------------------------------------------ the API


class FastMetaGradient:
    """``f(meta, coords, targets, noise) -> (meta_grad, per_signal_losses)`` like the function
    ``engine.make_meta_gradient`` returns, for a problem that ``supports`` accepts.

    Eager (default): the inner gradients come from ``siren_grad`` (hand-written Hessian-vector
    product backward). ``compile``: the inner loop is the same computation written with plain
    differentiable operations, under ``torch.compile`` (compiled once per batch shape on first use,
    30-60 s on 2 CPU cores, then reused; inductor's cache makes later runs start in seconds).
    ``chunk_size`` splits the batch into groups of signals whose meta-gradients are summed (less
    memory for large batches).
    """

    def __init__(self, problem: MetaProblem, steps: int, first_order: bool = False,
                 chunk_size: int | None = None, compile: bool = False):
        kind = _problem_kind(problem)
        if kind is None:
            raise ValueError(f"the fast SIREN path does not support {type(problem).__name__}")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.problem, self.kind = problem, kind
        self.steps, self.first_order = steps, first_order
        self.chunk_size = chunk_size
        self.compile = compile
        self.net = _Net(problem.model)
        self._compiled = None

    # -- the differentiable prefix: what the cores take, as functions of the meta leaves ------------
    def _core_inputs(self, meta: Meta, noise) -> tuple[list, torch.Tensor | float]:
        problem, net = self.problem, self.net
        theta = meta["theta"]
        weights = [theta[f"layers.{i}.weight"] for i in range(net.last + 1)]
        biases = [theta[f"layers.{i}.bias"] for i in range(net.last + 1)]
        regulariser = problem.regulariser(meta, noise)
        if self.kind == "modulations":
            gate = problem.gates(meta, noise)["code"] if isinstance(problem, GatedModulationProblem) else None
            latent = meta.get("latent_map") if problem.latent_dim else None
            step = problem.step_size(meta, noise)["code"]
            code0 = problem.init_fast(meta)["code"]
            lw, lb = (latent["weight"], latent["bias"]) if latent is not None else (None, None)
            return [weights, biases, gate, lw, lb, step, code0], regulariser
        masks = problem.masks or {}
        step = problem.step_size(meta, noise)
        names_w = [f"layers.{i}.weight" for i in range(net.last + 1)]
        names_b = [f"layers.{i}.bias" for i in range(net.last + 1)]
        return [weights, biases, [masks.get(n) for n in names_w], [masks.get(n) for n in names_b],
                [step[n] for n in names_w], [step[n] for n in names_b]], regulariser

    def _core(self):
        net, steps, first_order = self.net, self.steps, self.first_order
        base = _modulation_core if self.kind == "modulations" else _weights_core
        manual = not self.compile

        def core(args, coords, targets):
            return base(net, steps, first_order, manual, *args, coords, targets)

        if manual:
            return core
        if self._compiled is None:
            self._compiled = torch.compile(core, dynamic=False)
        return self._compiled

    def __call__(self, meta: Meta, coords: torch.Tensor, targets: torch.Tensor, noise=None):
        leaves = {g: {k: v.detach().requires_grad_(True) for k, v in d.items()} for g, d in meta.items()}
        flat_leaves = [v for d in leaves.values() for v in d.values()]
        with torch.enable_grad():
            args, regulariser = self._core_inputs(leaves, noise)
            # Derived inputs (gates, clamped lrs) become leaves of the per-chunk graphs; their
            # gradients, summed over chunks, are carried back through the prefix once at the end.
            derived, proxies = [], []

            def proxy(t):
                if isinstance(t, torch.Tensor) and t.requires_grad and not t.is_leaf:
                    p = t.detach().requires_grad_(True)
                    derived.append(t)
                    proxies.append(p)
                    return p
                return t

            args = [[proxy(t) for t in a] if isinstance(a, list) else proxy(a) for a in args]
            inputs = [t for a in args for t in (a if isinstance(a, list) else [a])
                      if isinstance(t, torch.Tensor) and t.requires_grad]
            core = self._core()
            bsz = targets.shape[0]
            chunk = self.chunk_size or bsz
            totals = [torch.zeros_like(t) for t in inputs]
            losses = []
            for start in range(0, bsz, chunk):
                chunk_losses = core(args, coords, targets[start:start + chunk])
                grads = torch.autograd.grad(chunk_losses.sum() / bsz, inputs, allow_unused=True)
                for total, g in zip(totals, grads):
                    if g is not None:
                        total.add_(g)
                losses.append(chunk_losses.detach())
            grad_of = {id(t): g for t, g in zip(inputs, totals)}
            outputs = [t for t in derived]
            grad_outputs = [grad_of[id(p)] for p in proxies]
            if isinstance(regulariser, torch.Tensor) and regulariser.requires_grad:
                outputs.append(regulariser)
                grad_outputs.append(torch.ones_like(regulariser))
            prefix = dict.fromkeys(id(v) for v in flat_leaves)
            if outputs:
                for leaf, g in zip(flat_leaves, torch.autograd.grad(outputs, flat_leaves, grad_outputs,
                                                                     allow_unused=True)):
                    prefix[id(leaf)] = g
        out: Meta = {}
        for g, d in leaves.items():
            out[g] = {}
            for k, v in d.items():
                total = grad_of.get(id(v))
                extra = prefix[id(v)]
                if total is None:
                    total = torch.zeros_like(v)
                if extra is not None:
                    total = total + extra
                out[g][k] = total
        return out, torch.cat(losses)


def meta_gradient(problem: MetaProblem, meta: Meta, coords, targets, noise, steps: int,
                  first_order: bool = False, chunk_size: int | None = None) -> tuple[Meta, torch.Tensor]:
    """``(meta_grad, per_signal_losses)`` of ``mean_i L_i(adapted_i) + regulariser`` (one call)."""
    return FastMetaGradient(problem, steps, first_order, chunk_size)(meta, coords, targets, noise)


def make_fast_meta_gradient(problem: MetaProblem, config, chunk_size: int | None = None):
    """Drop-in for ``engine.make_meta_gradient`` (``f(meta, coords, targets, noise)``), or ``None``
    when the problem or algorithm is not supported (the caller keeps the engine). ``config.compile``
    compiles the inner loop."""
    if not supports(problem, config):
        return None
    return FastMetaGradient(problem, config.inner_steps, config.algorithm == "fomaml", chunk_size,
                            compile=bool(getattr(config, "compile", False)))
