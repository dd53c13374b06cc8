"""Mamba mixer (Vim's "bimamba v2") and pre-norm block of the plain Vim families (Vim, LBVim, ShuffleMamba).
Per-direction weights are stacked on a leading axis (official `_b` keys load into slice 1). Reversed directions
read the tokens through the scan order, with the conv flipped in time: no flipped copies."""
import math
from typing import Dict, List, Optional, Tuple, Type

import torch
import torch.nn as nn
from timm.layers import DropPath

from ..ops import add_rms_norm, causal_conv1d
from ..scans import get_pattern
from .norm import MambaRmsNorm, at_least_fp32, fuses_add_rms_norm
from .scan import pattern_scan

__all__ = ['MambaMixer', 'MambaBlock', 'DirectionWeights', 'direction_matmul', 'init_dt_bias_', 'init_mamba_ssm_',
           'row_splits', 'ssm_constants', 'stack_directions']


@torch.no_grad()
def init_dt_bias_(bias: torch.Tensor, dt_min: float = 1e-3, dt_max: float = 0.1, dt_init_floor: float = 1e-4):
    """softplus^-1 of a step size drawn log-uniformly in [dt_min, dt_max] (floored)."""
    dt = torch.exp(torch.rand_like(bias, dtype=torch.float32) * (math.log(dt_max) - math.log(dt_min))
                   + math.log(dt_min)).clamp(min=dt_init_floor)
    bias.copy_(dt + torch.log(-torch.expm1(-dt)))
    return bias


@torch.no_grad()
def init_mamba_ssm_(A_log: torch.Tensor, D: torch.Tensor, dt_weight: torch.Tensor, dt_bias: torch.Tensor,
                    dt_std: float, dt_min: float = 1e-3, dt_max: float = 0.1, dt_init_floor: float = 1e-4) -> None:
    """mamba-ssm's init ("v0"): dt weight U(±dt_std), then dt bias (RNG order matters), A = -[1..N], D = 1."""
    nn.init.uniform_(dt_weight, -dt_std, dt_std)
    init_dt_bias_(dt_bias, dt_min, dt_max, dt_init_floor)
    a = torch.arange(1, A_log.shape[-1] + 1, dtype=torch.float32, device=A_log.device)
    A_log.copy_(torch.log(a).expand_as(A_log))
    D.fill_(1.0)


def ssm_constants(A_log: torch.Tensor, D: torch.Tensor, dt_bias: torch.Tensor):
    """The op's (A, D, delta_bias), fp32 or wider (fp64 stays fp64 for gradient checks)."""
    return -torch.exp(at_least_fp32(A_log)), at_least_fp32(D), at_least_fp32(dt_bias)


def row_splits(rows: int, batch: int) -> int:
    """Batches to cut `rows` (batch x tokens) into for `direction_matmul`: a divisor of batch, about 1024 rows each."""
    splits = max(1, min(batch, rows // 1024))
    while batch % splits:
        splits -= 1
    return splits


def direction_matmul(x: torch.Tensor, weight: torch.Tensor, splits: int = 1) -> torch.Tensor:
    """x (K, M, I) @ weight (K, O, I)^T per direction -> (K, M, O), the M rows in `splits` batches (M % splits == 0):
    the weight gradient, a sum over M of small products, then fills the GPU instead of a few thread blocks."""
    if splits == 1:
        return torch.bmm(x, weight.transpose(1, 2))
    K, M, _ = x.shape
    out = torch.matmul(x.view(K, splits, M // splits, x.shape[-1]), weight.transpose(1, 2).unsqueeze(1))
    return out.view(K, M, -1)


class DirectionWeights(nn.Module):
    """Weight (K, *shape) and optional bias (K, shape[0]), one slice per scan direction; nn.Linear's default init."""

    def __init__(self, num_dir: int, shape: Tuple[int, ...], fan_in: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.fan_in = fan_in
        self.weight = nn.Parameter(torch.empty(num_dir, *shape, **dd))
        self.bias = nn.Parameter(torch.empty(num_dir, shape[0], **dd)) if bias else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        bound = self.fan_in ** -0.5
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return f'{tuple(self.weight.shape)}, bias={self.bias is not None}'


# Stacked parameter -> its per-direction key in official checkpoints; {s} is '' or '_b'.
_PER_DIRECTION_KEYS = {
    'conv1d.weight': 'conv1d{s}.weight', 'conv1d.bias': 'conv1d{s}.bias', 'x_proj.weight': 'x_proj{s}.weight',
    'dt_proj.weight': 'dt_proj{s}.weight', 'dt_proj.bias': 'dt_proj{s}.bias', 'A_log': 'A{s}_log', 'D': 'D{s}',
}


def stack_directions(state_dict: Dict[str, torch.Tensor], prefix: str, mixer: 'MambaMixer') -> Dict[str, List[str]]:
    """Stack official per-direction tensors (`conv1d_b.weight`, ...) in place; returns {stacked key: missing keys}."""
    incomplete = {}
    for name, template in _PER_DIRECTION_KEYS.items():
        module, _, leaf = name.rpartition('.')
        target = getattr(getattr(mixer, module) if module else mixer, leaf)
        key = prefix + name
        if target is None or (key in state_dict and state_dict[key].shape == target.shape):
            continue
        keys = [prefix + template.format(s=s) for s in mixer.suffixes]
        present = [k for k in keys if k in state_dict]
        found = [state_dict.pop(k) for k in present]
        if len(found) == len(keys):
            state_dict[key] = torch.stack([t.reshape(target.shape[1:]) for t in found])
        elif found:
            incomplete[key] = [k for k in keys if k not in present]
    return incomplete


def _report_incomplete_directions(mixer: 'MambaMixer', incompatible) -> None:
    for stacked, keys in getattr(mixer, '_incomplete_directions', {}).items():
        if stacked in incompatible.missing_keys:
            incompatible.missing_keys.remove(stacked)
        incompatible.missing_keys.extend(keys)
    mixer._incomplete_directions = {}


class MambaMixer(nn.Module):
    """Mamba token mixer over a (B, L, C) sequence, one or two scan directions.

    Args:
        dim: channels C of the block.
        d_state: state size N per channel.
        d_conv: depthwise conv kernel.
        ssm_ratio: inner width E = int(ssm_ratio * C).
        dt_rank: rank R of the step-size projection ('auto': ceil(C / 16)).
        bidirectional: Vim's bimamba v2 (forward and reversed scans with separate conv, x_proj, dt_proj, A, D).
        reverse: single direction scanning right to left.
        local_window: LBMamba's local bi-directional window; None: official rule by length (4 / 8 / 16), 0: none.
    """

    def __init__(
            self,
            dim: int,
            d_state: int = 16,
            d_conv: int = 4,
            ssm_ratio: float = 2.0,
            dt_rank='auto',
            bidirectional: bool = True,
            reverse: bool = False,
            local_window: Optional[int] = 0,
            dt_min: float = 1e-3,
            dt_max: float = 0.1,
            dt_init_floor: float = 1e-4,
            dt_scale: float = 1.0,
            conv_bias: bool = True,
            bias: bool = False,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if bidirectional and (reverse or local_window != 0):
            raise ValueError(f"bidirectional: the two-direction mixer has no reverse or local_window option, "
                             f"got reverse={reverse}, local_window={local_window}")
        self.dim = dim
        self.d_state = d_state
        self.d_inner = d_inner = int(ssm_ratio * dim)
        self.dt_rank = math.ceil(dim / 16) if dt_rank == 'auto' else int(dt_rank)
        self.bidirectional = bidirectional
        self.reverse = reverse
        self.local_window = local_window
        self.dt_min, self.dt_max, self.dt_init_floor, self.dt_scale = dt_min, dt_max, dt_init_floor, dt_scale
        self.suffixes = ('', '_b') if bidirectional else ('',)
        num_dir = len(self.suffixes)
        if bidirectional:
            self.pattern = get_pattern('bidirectional')
        elif local_window != 0:
            self.pattern = get_pattern('locally_bidirectional', window=local_window, reverse=reverse)
        else:
            self.pattern = get_pattern('raster', reverse=True) if reverse else None
        self.conv_reverse = tuple(reverse or k == 1 for k in range(num_dir))

        self.in_proj = nn.Linear(dim, 2 * d_inner, bias=bias, **dd)
        self.conv1d = DirectionWeights(num_dir, (d_inner, d_conv), d_conv, bias=conv_bias, **dd)
        self.x_proj = DirectionWeights(num_dir, (self.dt_rank + 2 * d_state, d_inner), d_inner, bias=False, **dd)
        self.dt_proj = DirectionWeights(num_dir, (d_inner, self.dt_rank), self.dt_rank, **dd)
        # A and D stay fp32 whatever the model dtype, as in mamba-ssm.
        self.A_log = nn.Parameter(torch.empty(num_dir, d_inner, d_state, device=device))
        self.D = nn.Parameter(torch.empty(num_dir, d_inner, device=device))
        self.out_proj = nn.Linear(d_inner, dim, bias=bias, **dd)
        self.reset_parameters(needs_reset=False)
        self.register_load_state_dict_post_hook(_report_incomplete_directions)

    def reset_parameters(self, needs_reset: bool = True) -> None:
        """mamba-ssm's init; the backward dt_proj keeps nn.Linear's default, as in Vim."""
        if needs_reset:
            for m in self.children():
                m.reset_parameters()
        init_mamba_ssm_(self.A_log, self.D, self.dt_proj.weight[0], self.dt_proj.bias[0],
                        self.dt_rank ** -0.5 * self.dt_scale, self.dt_min, self.dt_max, self.dt_init_floor)

    def _load_from_state_dict(self, state_dict, prefix, *args):
        self._incomplete_directions = stack_directions(state_dict, prefix, self)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def scan_inputs(self, x: torch.Tensor):
        """x (B, L, C) -> u, delta (B, K, E, L); A (K, E, N); B, C (B, K, N, L); D, delta_bias (K, E); z (B, L, E).
        u, delta, B, C are channels-last views (`stride(-2) == 1`), the layout the scan kernels read fastest."""
        x, z = self.in_proj(x).split(self.d_inner, dim=-1)
        u = causal_conv1d(x, self.conv1d.weight, self.conv1d.bias, reverse=self.conv_reverse, silu=True)
        batch, K, L, _ = u.shape
        # Rows split in eager training only: faster weight gradients, a slower forward; traced shapes stay free.
        split = isinstance(batch, int) and torch.is_grad_enabled() and self.x_proj.weight.requires_grad
        splits = row_splits(batch * L, batch) if split and not torch.compiler.is_compiling() else 1
        x_dbl = direction_matmul(u.transpose(0, 1).reshape(K, batch * L, -1), self.x_proj.weight, splits)
        dt, B, C = x_dbl.split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = direction_matmul(dt, self.dt_proj.weight, splits)                       # (K, B * L, E)
        A, D, delta_bias = ssm_constants(self.A_log, self.D, self.dt_proj.bias)

        def channels_last(t):  # (K, B * L, c) -> (B, K, c, L) view
            return t.unflatten(1, (batch, L)).permute(1, 0, 3, 2)
        return u.transpose(2, 3), channels_last(delta), A, channels_last(B), channels_last(C), D, delta_bias, z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, delta, A, B, C, D, delta_bias, z = self.scan_inputs(x)
        # Vim's "if_divide_out" mean; the gate is shared, so gating after the mean equals gate-then-average.
        y = pattern_scan(u, delta, A, B, C, D, delta_bias, self.pattern, 1, x.shape[1], 'mean', z.transpose(1, 2))
        return self.out_proj(y.transpose(1, 2))

    def extra_repr(self) -> str:
        return (f'dim={self.dim}, d_inner={self.d_inner}, d_state={self.d_state}, dt_rank={self.dt_rank}, '
                f'bidirectional={self.bidirectional}, reverse={self.reverse}, local_window={self.local_window}')


class MambaBlock(nn.Module):
    """Add -> Norm -> Mixer, carrying (hidden, residual) like mamba-ssm's Block (first block: residual=None).
    Drop path acts on the previous mixer's output; RMS norm without active drop path runs fused (`add_rms_norm`)."""

    def __init__(
            self,
            dim: int,
            norm_layer: Type[nn.Module] = MambaRmsNorm,
            norm_eps: float = 1e-5,
            drop_path: float = 0.,
            residual_in_fp32: bool = True,
            device=None,
            dtype=None,
            **mixer_kwargs,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.residual_in_fp32 = residual_in_fp32
        self.mixer = MambaMixer(dim, **mixer_kwargs, **dd)
        self.norm = norm_layer(dim, eps=norm_eps, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(
            self,
            hidden: torch.Tensor,
            residual: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        dtype = hidden.dtype if residual is None else torch.promote_types(residual.dtype, hidden.dtype)
        if self.residual_in_fp32:
            dtype = torch.promote_types(dtype, torch.float32)
        if self._fused_add_norm(dtype):
            normed, residual = add_rms_norm(hidden, residual, self.norm.weight, self.norm.eps, dtype, hidden.dtype)
            return self.mixer(normed), residual
        residual = hidden if residual is None else residual + self.drop_path(hidden)
        if self.residual_in_fp32:
            residual = at_least_fp32(residual)
        hidden = self.mixer(self.norm(residual).to(hidden.dtype))
        return hidden, residual

    def _fused_add_norm(self, dtype: torch.dtype = torch.float32) -> bool:
        """Whether forward fuses add and norm for a residual stream of `dtype`."""
        return fuses_add_rms_norm(self.norm, dtype) and (isinstance(self.drop_path, nn.Identity) or not self.training)
