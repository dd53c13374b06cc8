"""Plain-PyTorch selective scan: the ground truth every other backend is tested against.

    selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, index, local_window) -> (y, last_state)
    selective_scan_bwd(dy, u, delta, A, B, C, D, z, delta_bias, delta_softplus, index, local_window)
        -> (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias)
u, delta, z (b, K, d, L); B, C (b, K, N, L); A (K, d, N); D, delta_bias (K, d); D, z, delta_bias may be None;
index (K, L) long or None: direction k visits token index[k, t] at step t. Per direction in scan order, with
dt = delta + delta_bias (softplus-ed if delta_softplus): h_t = exp(dt_t A) h_(t-1) + dt_t u_t B_t and
y_t = (C_t h_t + D u_t) silu(z_t); local_window W adds r_t - dt_t u_t B_t to h_t, r the same recurrence run
backwards within windows of W steps. Token order in and out; last_state (b, K, d, N) fp32 gets no gradient.
fp32 math (fp64 stays fp64), backward by autograd; an fp32 / half forward without autograd runs `_forward_inference`.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = ["selective_scan_fwd", "selective_scan_bwd"]

_BLOCK = 16  # time steps per block of the inference path


def _scan_time_major(a: torch.Tensor, b: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """h_t = a_t * h_{t-1} + b_t (or h_{t+1} with reverse) along dim 0."""
    steps = a.shape[0]
    if steps == 0:
        return b
    # unbind (not indexing) so that autograd does not build a full-size zero gradient per step.
    a_steps, b_steps = a.unbind(0), b.unbind(0)
    states = [None] * steps
    state = None
    for t in (reversed(range(steps)) if reverse else range(steps)):
        state = b_steps[t] if state is None else torch.addcmul(b_steps[t], a_steps[t], state)
        states[t] = state
    return torch.stack(states, 0)


def _local_reverse_scan(a: torch.Tensor, b: torch.Tensor, window: int) -> torch.Tensor:
    """r_t = a_t * r_{t+1} + b_t inside each window of `window` steps from step 0; a, b time-major (L, ...)."""
    steps = a.shape[0]
    windows = -(-steps // window)
    pad = windows * window - steps
    if pad:
        # Padded steps are the identity (a, b) = (1, 0): they leave the reverse state at zero.
        a = torch.cat([a, a.new_ones((pad,) + a.shape[1:])])
        b = torch.cat([b, b.new_zeros((pad,) + b.shape[1:])])
    a = a.reshape((windows, window) + a.shape[1:]).transpose(0, 1).contiguous()
    b = b.reshape((windows, window) + b.shape[1:]).transpose(0, 1).contiguous()
    r = _scan_time_major(a, b, reverse=True)
    return r.transpose(0, 1).reshape((windows * window,) + r.shape[2:])[:steps]


def _gather_steps(x: torch.Tensor, index: Optional[torch.Tensor]) -> torch.Tensor:
    """Token order -> scan order along the last dim: out[b, k, :, t] = x[b, k, :, index[k, t]]."""
    if index is None:
        return x
    return x.gather(-1, index[None, :, None, :].expand(x.shape))


def _scatter_steps(x: torch.Tensor, index: Optional[torch.Tensor]) -> torch.Tensor:
    """Scan order -> token order: out[b, k, :, index[k, t]] = x[b, k, :, t]."""
    if index is None:
        return x
    inverse = torch.empty_like(index)
    inverse.scatter_(1, index, torch.arange(index.shape[1], device=index.device).expand_as(index))
    return _gather_steps(x, inverse)


def _delta(delta, delta_bias, delta_softplus, acc):
    dt = delta.to(acc)
    if delta_bias is not None:
        dt = dt + delta_bias.to(acc)[None, :, :, None]
    return F.softplus(dt) if delta_softplus else dt


def _output(y, u, D, z, acc):
    """The op's y from y (b, K, d, L) in token order: D skip, z gate, u's layout."""
    if D is not None:
        y = y + D.to(acc)[None, :, :, None] * u.to(acc)
    if z is not None:
        y = y * F.silu(z.to(acc))
    return torch.empty_like(u).copy_(y)


def _forward_inference(u, delta, A, B, C, D, z, delta_bias, delta_softplus, index, local_window):
    acc = torch.float32
    batch, K, d, steps = u.shape
    N = A.shape[-1]
    A2 = (A.to(acc) * math.log2(math.e)).transpose(-1, -2).contiguous()  # (K, N, d); exp(x) = exp2(x log2 e)
    window = min(local_window, steps)
    # Blocks of whole windows; per-block temporaries stay small enough that the allocator keeps them.
    block = window * max(1, _BLOCK // window) if window > 0 else _BLOCK
    out = torch.empty_like(u)
    carry = u.new_zeros((batch, K, N, d), dtype=acc)
    shape = (min(block, steps), batch, K, N, d)
    decay_buf, inp_buf = u.new_empty(shape, dtype=acc), u.new_empty(shape, dtype=acc)
    if window > 0:
        states_buf, reverse_buf = u.new_empty(shape, dtype=acc), u.new_empty(shape, dtype=acc)
    for start in range(0, steps, block):
        stop = min(start + block, steps)
        n = stop - start
        idx = None if index is None else index[None, :, None, start:stop]

        def take(x):  # (b, K, c, L) in token order -> this block's (n, b, K, c) in scan order
            x = x[..., start:stop] if idx is None else x.gather(-1, idx.expand(x.shape[:-1] + (n,)))
            return x.to(acc).permute(3, 0, 1, 2)

        dt = take(delta)
        if delta_bias is not None:
            dt = dt + delta_bias.to(acc)
        if delta_softplus:
            dt = F.softplus(dt)
        u_s = take(u)
        decay = torch.mul(dt[..., None, :], A2, out=decay_buf[:n])
        torch.exp2(decay, out=decay)
        inp = torch.mul((dt * u_s)[..., None, :], take(B)[..., None], out=inp_buf[:n])
        states = states_buf[:n].copy_(inp) if window > 0 else inp
        h_steps, decay_steps = states.unbind(0), decay.unbind(0)
        torch.addcmul(h_steps[0], decay_steps[0], carry, out=h_steps[0])
        for t in range(1, n):
            torch.addcmul(h_steps[t], decay_steps[t], h_steps[t - 1], out=h_steps[t])
        carry.copy_(h_steps[-1])  # the buffers are overwritten by the next block
        if window > 0:
            states.add_(_window_reverse(decay, inp, window, start, reverse_buf[:n])).sub_(inp)
        y = torch.einsum("tbknd,tbkn->tbkd", states, take(C))
        if D is not None:
            y = y.addcmul_(D.to(acc), u_s)
        if z is not None:
            y = y.mul_(F.silu(take(z)))
        y = y.permute(1, 2, 3, 0).to(u.dtype)
        if idx is None:
            out[..., start:stop] = y
        else:
            out.scatter_(-1, idx.expand(y.shape), y)
    return out, carry.transpose(-1, -2).contiguous()


def _window_reverse(decay: torch.Tensor, inp: torch.Tensor, window: int, offset: int, r: torch.Tensor
                    ) -> torch.Tensor:
    """r_t = decay_t * r_{t+1} + inp_t inside windows from step 0, into r, for a block starting at `offset`."""
    r_steps, decay_steps, inp_steps = r.unbind(0), decay.unbind(0), inp.unbind(0)
    for t in reversed(range(inp.shape[0])):
        if (offset + t + 1) % window == 0 or t == inp.shape[0] - 1:
            r_steps[t].copy_(inp_steps[t])
        else:
            torch.addcmul(inp_steps[t], decay_steps[t], r_steps[t + 1], out=r_steps[t])
    return r


def _forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, index, local_window):
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    if acc == torch.float32 and not torch.is_grad_enabled():
        return _forward_inference(u, delta, A, B, C, D, z, delta_bias, delta_softplus, index, local_window)
    dt = _delta(delta, delta_bias, delta_softplus, acc)

    # Scan order, time-major: every step of the loop reads one contiguous slice.
    def steps_first(x):
        return _gather_steps(x.to(acc), index).permute(3, 0, 1, 2).contiguous()

    dt_s, u_s, B_s, C_s = steps_first(dt), steps_first(u), steps_first(B), steps_first(C)
    decay = torch.exp(dt_s[..., None] * A.to(acc))
    inp = (dt_s * u_s)[..., None] * B_s[:, :, :, None, :]

    h = _scan_time_major(decay, inp)
    if h.shape[0] > 0:
        last_state = h[-1].float().clone()  # its own storage: the op's output must not alias h
    else:
        last_state = h.new_zeros(h.shape[1:], dtype=torch.float32)
    if local_window > 0 and h.shape[0] > 0:
        # LBMamba: add the window's reverse recurrence, counting the current input once
        r = _local_reverse_scan(decay, inp, min(local_window, h.shape[0]))
        h = h + r - inp
    y = (h * C_s[:, :, :, None, :]).sum(-1).permute(1, 2, 3, 0)

    return _output(_scatter_steps(y, index), u, D, z, acc), last_state


@torch.no_grad()
def selective_scan_fwd(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor],
    z: Optional[torch.Tensor],
    delta_bias: Optional[torch.Tensor],
    delta_softplus: bool,
    index: Optional[torch.Tensor],
    local_window: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    return _forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, index, local_window)


def selective_scan_bwd(
    dy: torch.Tensor,
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: Optional[torch.Tensor],
    z: Optional[torch.Tensor],
    delta_bias: Optional[torch.Tensor],
    delta_softplus: bool,
    index: Optional[torch.Tensor],
    local_window: int,
) -> Tuple[Optional[torch.Tensor], ...]:
    """Gradients of sum(dy * y) w.r.t. (u, delta, A, B, C, D, z, delta_bias), None for absent ones, by autograd."""
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    with torch.enable_grad():
        leaves = [None if t is None else t.detach().requires_grad_(True) for t in inputs]
        y, _ = _forward(*leaves, delta_softplus, index, local_window)
        present = [t for t in leaves if t is not None]
        grads = iter(torch.autograd.grad(y, present, dy.to(y.dtype), allow_unused=True))
    out = []
    for leaf in leaves:
        if leaf is None:
            out.append(None)
            continue
        g = next(grads)
        out.append(torch.zeros_like(leaf) if g is None else g)
    return tuple(out)
