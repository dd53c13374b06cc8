"""The `mamba_ssm` backend: the selective scan the way the official codes call it, for side-by-side runs.

One `selective_scan_fn` (mamba_ssm's CUDA extension) per direction on a gathered copy, scattered back to token
order; interface of kernels/selective_scan_reference.py, backward by autograd. No `local_window` (LBMamba's fork).
"""
import importlib
from typing import Optional, Tuple

import torch

from ._common import _out_like

__all__ = ["selective_scan_fwd", "selective_scan_bwd", "available"]

_fn = None


def _scan_fn():
    global _fn
    if _fn is None:
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
        except Exception as e:  # ImportError, or the CUDA extension failing to load
            raise ImportError(
                "the 'mamba_ssm' selective-scan backend needs the mamba_ssm package with its CUDA "
                f"extension (pip install mamba-ssm); importing it failed: {type(e).__name__}: {e}") from e
        # recent mamba-ssm imports without its Mamba-1 scan extension, which it builds only on request
        try:
            importlib.import_module("selective_scan_cuda")
        except Exception as e:
            raise ImportError(
                "the 'mamba_ssm' selective-scan backend needs mamba_ssm's Mamba-1 CUDA extension "
                "`selective_scan_cuda`, which this mamba_ssm install lacks (recent releases build it only on "
                f"request): reinstall mamba-ssm with it built; importing it failed: {type(e).__name__}: {e}") from e
        _fn = selective_scan_fn
    return _fn


def available() -> bool:
    try:
        _scan_fn()
    except ImportError:
        return False
    return True


def _no_window(local_window: int) -> None:
    if local_window:
        raise NotImplementedError(
            f"the 'mamba_ssm' backend has no local_window (LBMamba's locally bi-directional scan, "
            f"got local_window={local_window}): mamba_ssm's selective_scan_fn computes the plain scan only. "
            "Use backend='triton' (CUDA) or backend='reference'.")


def _gather(x: Optional[torch.Tensor], k: int, index: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """Direction k of x (b, K, c, L) in scan order, as a contiguous (b, c, L) copy."""
    if x is None:
        return None
    xk = x[:, k]
    if index is None:
        return xk.contiguous()
    return xk.index_select(-1, index[k]).contiguous()


def _scatter_into(out: torch.Tensor, k: int, yk: torch.Tensor, index: Optional[torch.Tensor]) -> None:
    """out[:, k, :, index[k, t]] = yk[:, :, t]."""
    if index is None:
        out[:, k] = yk
    else:
        out[:, k].index_copy_(-1, index[k], yk)


def _direction(u, delta, A, B, C, D, z, delta_bias, delta_softplus, index, k, return_last_state):
    fn = _scan_fn()
    res = fn(_gather(u, k, index), _gather(delta, k, index), A[k].contiguous(),
             _gather(B, k, index), _gather(C, k, index),
             None if D is None else D[k].contiguous(),
             _gather(z, k, index),
             None if delta_bias is None else delta_bias[k].contiguous(),
             delta_softplus=delta_softplus, return_last_state=return_last_state)
    return res


def selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus: bool,
                       index: Optional[torch.Tensor], local_window: int) -> Tuple[torch.Tensor, torch.Tensor]:
    _no_window(local_window)
    b, K, d, L = u.shape
    y = _out_like(u)
    last = _out_like(u, torch.float32, (b, K, d, A.shape[-1]))
    with torch.no_grad():
        for k in range(K):
            yk, lk = _direction(u, delta, A, B, C, D, z, delta_bias, delta_softplus, index, k, True)
            _scatter_into(y, k, yk.to(u.dtype), index)
            last[:, k] = lk.float()
    return y, last


def selective_scan_bwd(dy, u, delta, A, B, C, D, z, delta_bias, delta_softplus: bool,
                       index: Optional[torch.Tensor], local_window: int):
    _no_window(local_window)
    b, K, d, L = u.shape
    inputs = (u, delta, A, B, C, D, z, delta_bias)
    grads = [None if t is None else _out_like(t) for t in inputs]
    for k in range(K):
        with torch.enable_grad():
            leaves = [None if t is None else t.detach().requires_grad_(True) for t in inputs]
            yk = _direction(*leaves, delta_softplus, index, k, False)
            present = [t for t in leaves if t is not None]
            gk = iter(torch.autograd.grad(yk, present, _gather(dy, k, index).to(yk.dtype), allow_unused=True))
        for i, leaf in enumerate(leaves):
            if leaf is None:
                continue
            g = next(gk)
            if g is None:
                g = torch.zeros_like(leaf)
            if i in (2, 5, 7):  # A, D, delta_bias: (K, d[, N]); only row k gets a gradient here
                grads[i][k] = g[k]
            else:
                grads[i][:, k] = g[:, k]
    return tuple(grads)
