"""Plain-PyTorch selective scan: the ground truth every other backend is tested against.

Runs on any device, in fp32 whatever the input dtype (fp64 inputs stay fp64, so gradcheck works).
The backend interface (shared with the Triton module) is two functions over normalised arguments:

    selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus, index, local_window)
        -> (y, last_state)
    selective_scan_bwd(dy, u, delta, A, B, C, D, z, delta_bias, delta_softplus, index, local_window)
        -> (du, ddelta, dA, dB, dC, dD, dz, ddelta_bias)

Shapes: u, delta, z (b, K, d, L); B, C (b, K, N, L); A (K, d, N); D, delta_bias (K, d); index (K, L)
long or None; D, z, delta_bias may be None. Everything is contiguous and in token order; direction k
visits token index[k, t] at step t. y is (b, K, d, L) in u's dtype and token order; last_state is the
forward state after the last scanned step, (b, K, d, N) fp32. The backward recomputes the forward with
autograd and differentiates it; the gradient of last_state is not part of the interface.

How the recurrence h_t = a_t * h_{t-1} + b_t is evaluated: `linear_scan`, a two-level chunked scan
vectorised over batch, K, d and N, with Python loops of about 2*sqrt(L) steps in all (16 + 13 at
L = 197). The LBMamba window-local reverse recurrence is the same scan run right to left over the
windows, all windows at once.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = ["selective_scan_fwd", "selective_scan_bwd", "linear_scan"]


def linear_scan(a: torch.Tensor, b: torch.Tensor, reverse: bool = False,
                chunk: Optional[int] = None) -> torch.Tensor:
    """Inclusive scan along dim -2 (time) of a, b (..., T, N), with a zero state outside:
    h_t = a_t * h_{t-1} + b_t, or with reverse=True h_t = a_t * h_{t+1} + b_t.

    Two levels: the sequence is cut into chunks of `chunk` steps (about sqrt(T), a power of two).
    Step i of every chunk is computed at once, giving the chunk-local state (zero state entering the
    chunk) and the decay accumulated since the chunk's entry; a short loop then carries the state
    across chunk boundaries, h = local state + accumulated decay * state entering the chunk. Only
    products of decays and sums: no exp of a cumulative log-decay, so nothing overflows that the
    plain recurrence would not.
    """
    steps = a.shape[-2]
    if steps == 0:
        return b
    if chunk is None:
        chunk = min(64, max(8, 1 << round(math.log2(steps) / 2)))
    chunk = min(chunk, steps)
    chunks = -(-steps // chunk)
    pad = chunks * chunk - steps
    # Padded steps are the identity element (a, b) = (1, 0); read in reverse they come first and
    # leave the zero state as it is.
    a = F.pad(a, (0, 0, 0, pad), value=1.0)
    b = F.pad(b, (0, 0, 0, pad), value=0.0)
    shape = a.shape[:-2] + (chunks, chunk, a.shape[-1])
    # unbind (not indexing) so that autograd does not build a full-size zero gradient per step.
    a_steps = list(a.reshape(shape).unbind(-2))
    b_steps = list(b.reshape(shape).unbind(-2))
    if reverse:
        a_steps.reverse()
        b_steps.reverse()
    decay, state = a_steps[0], b_steps[0]
    decays, states = [decay], [state]
    for a_i, b_i in zip(a_steps[1:], b_steps[1:]):
        state = a_i * state + b_i
        decay = a_i * decay
        decays.append(decay)
        states.append(state)
    if reverse:
        decays.reverse()
        states.reverse()
    h = torch.stack(states, -2)
    if chunks > 1:
        # State entering each chunk: a loop over chunks on (..., N) slices, in scan direction.
        chunk_decay, chunk_state = decay.unbind(-2), state.unbind(-2)
        entering = [None] * chunks
        carry = torch.zeros_like(chunk_state[0])
        for c in (reversed(range(chunks)) if reverse else range(chunks)):
            entering[c] = carry
            carry = chunk_decay[c] * carry + chunk_state[c]
        h = h + torch.stack(decays, -2) * torch.stack(entering, -2)[..., None, :]
    return h.reshape(a.shape)[..., :steps, :]


def _local_reverse_scan(a: torch.Tensor, b: torch.Tensor, window: int) -> torch.Tensor:
    """r_t = a_t * r_{t+1} + b_t inside each window of `window` steps (windows start at step 0), r = 0
    past a window's last step. a, b (..., L, N); the last window may be partial."""
    steps = a.shape[-2]
    windows = -(-steps // window)
    pad = windows * window - steps
    a = F.pad(a, (0, 0, 0, pad), value=1.0)
    b = F.pad(b, (0, 0, 0, pad), value=0.0)
    shape = a.shape[:-2] + (windows, window, a.shape[-1])
    r = linear_scan(a.reshape(shape), b.reshape(shape), reverse=True)
    return r.reshape(r.shape[:-3] + (windows * window, r.shape[-1]))[..., :steps, :]


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


def _forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus, index, local_window):
    # fp32 accumulation for half inputs; fp64 stays fp64 (gradcheck, test oracles).
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    dt = delta.to(acc)
    if delta_bias is not None:
        dt = dt + delta_bias.to(acc)[None, :, :, None]
    if delta_softplus:
        dt = F.softplus(dt)

    # Scan order from here on; (b, K, d, L, N) for the per-state quantities.
    dt_s = _gather_steps(dt, index)
    u_s = _gather_steps(u.to(acc), index)
    B_s = _gather_steps(B.to(acc), index)
    C_s = _gather_steps(C.to(acc), index)
    decay = torch.exp(dt_s[..., None] * A.to(acc)[None, :, :, None, :])
    inp = (dt_s * u_s)[..., None] * B_s.transpose(-1, -2)[:, :, None]

    h = linear_scan(decay, inp)
    if h.shape[-2] > 0:
        last_state = h[..., -1, :].float().contiguous()
    else:
        last_state = h.new_zeros(h.shape[:-2] + h.shape[-1:], dtype=torch.float32)
    if local_window > 0 and h.shape[-2] > 0:
        # LBMamba: add the window-local reverse recurrence and count the current input once.
        r = _local_reverse_scan(decay, inp, min(local_window, h.shape[-2]))
        h = h + r - inp
    y = torch.einsum("bkdln,bknl->bkdl", h, C_s)

    y = _scatter_steps(y, index)
    if D is not None:
        y = y + D.to(acc)[None, :, :, None] * u.to(acc)
    if z is not None:
        y = y * F.silu(z.to(acc))
    return y.to(u.dtype).contiguous(), last_state


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
    """Selective scan forward; see the module docstring for shapes. Returns (y, last_state)."""
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
    """Gradients of sum(dy * y) w.r.t. (u, delta, A, B, C, D, z, delta_bias), None for absent inputs.

    Recomputes the forward under autograd, so memory is that of one forward with its graph.
    """
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
