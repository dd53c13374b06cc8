"""2-D selective scan mixer (SS2D) on channel-first maps, with Conv-BN projections.

The map is projected to an inner width Di = ssm_ratio * dim and split into a value path and a SiLU gate;
the value path goes through a depthwise conv and SiLU, then every direction k of a scan pattern runs an
S6 selective scan over the H*W tokens with its own token-wise projections (dt, B, C from `x_proj_weight[k]`,
dt expanded by `dt_proj_weight[k]`). The K outputs come back in token order, are summed, LayerNorm'd,
gated and projected back to `dim`.

This is the form MobileMamba uses inside its WTE-Mamba branch (VMamba's SS2D with forward type "v052d"):
1x1 Conv+BN in/out projections (fusable), d_state 1, the 'bidirectional' pattern (raster and reversed
raster) and the "v2" initialisation (A = -1, D = 1, dt weights and bias 0.1 * U[0, 1)). Parameter shapes
follow the official code (`A_log` (K*Di, N), `D` (K*Di,)) so that an optimiser that skips 1-D tensors
treats them the way the official recipe did. The scan is `vimamba.ops.selective_scan` reading through
the pattern's index map: no permuted copies of the activations are made.

Precision: the op accumulates in fp32 and returns y in the input dtype (the official "oflex" kernel
returns fp32 and casts after the LayerNorm); in fp32 the two agree exactly, under autocast y is rounded
to the compute dtype once before the norm.
"""
import math
from typing import Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import LayerNorm2d

from vimamba.scans import ScanPattern, get_pattern

from .conv_bn import ConvBn2d
from .scan import pattern_scan

__all__ = ['SelectiveScan2d', 'scan_inputs', 'sum_directions']


def sum_directions(y: torch.Tensor) -> torch.Tensor:
    """y (b, K, d, L) -> (b, d, L), summed over the (b, K, L, d) view: a channels-last y is read in place and the
    result is channels-last too (`reshape(b, d, H, W)` is then a channels_last map)."""
    return y.transpose(-1, -2).sum(dim=1).transpose(-1, -2)


def scan_inputs(u: torch.Tensor, mixer: nn.Module):
    """The scan's per-direction inputs from the SSM tensors of a 2-D mixer (`x_proj_weight` (K, R+2N, Di),
    `dt_proj_weight` (K, Di, R), `dt_proj_bias` (K, Di), `A_log` (K*Di, N), `D` (K*Di,), VMamba's shapes).

    u (b, Di, L) -> delta (b, K, Di, L), A (K, Di, N), B / C (b, K, N, L), D / delta_bias (K, Di), fp32 where the
    op accumulates. Token-wise projections commute with any token order, so they run once, in image order, for
    all directions; the op reads the tokens through each direction's index.

    Layout: u should be channels-last (`u.stride(-2) == 1`, e.g. the flattened output of a conv on a
    channels_last map); the projections then run as plain matmuls on (b, L, Di), and delta, B and C come back as
    channels-last views (`stride(-2) == 1`: memory (b, K, L, Di) and slices of x_dbl (b, L, K, R+2N)), the
    layout the scan kernels read fastest, without a copy.
    """
    num_dir, rank_2n, d_inner = mixer.x_proj_weight.shape
    d_state = mixer.A_log.shape[-1]
    rank = rank_2n - 2 * d_state
    x_dbl = F.linear(u.transpose(1, 2), mixer.x_proj_weight.reshape(-1, d_inner))    # (b, L, K * (R + 2N))
    x_dbl = x_dbl.unflatten(-1, (num_dir, rank_2n)).transpose(1, 2)                  # (b, K, L, R + 2N)
    dts, B, C = torch.split(x_dbl, [rank, d_state, d_state], dim=-1)
    delta = torch.matmul(dts, mixer.dt_proj_weight.transpose(1, 2))                  # (b, K, L, Di)
    A = -torch.exp(mixer.A_log.float()).reshape(num_dir, d_inner, d_state)
    D = mixer.D.float().reshape(num_dir, d_inner)
    delta_bias = mixer.dt_proj_bias.float().reshape(num_dir, d_inner)
    return delta.transpose(-1, -2), A, B.transpose(-1, -2), C.transpose(-1, -2), D, delta_bias


class SelectiveScan2d(nn.Module):
    """SS2D: in-proj (Conv-BN) -> dwconv + SiLU -> K-direction selective scan -> LayerNorm * SiLU(z) -> out-proj.

    Args:
        dim: Input and output channels.
        d_state: SSM state size N.
        ssm_ratio: Inner width Di = int(ssm_ratio * dim).
        dt_rank: Rank R of the dt projection; 'auto' = ceil(dim / 16) (from `dim`, not Di, as VMamba).
        d_conv: Depthwise conv kernel size (< 2: no conv).
        conv_bias: Bias on the depthwise conv.
        scan: Scan pattern name in `vimamba.scans` (or a pattern object); fixes K.
    """

    def __init__(
            self,
            dim: int,
            d_state: int = 1,
            ssm_ratio: float = 2.0,
            dt_rank: Union[int, str] = 'auto',
            d_conv: int = 3,
            conv_bias: bool = True,
            scan: Union[str, ScanPattern] = 'bidirectional',
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.pattern = get_pattern(scan) if isinstance(scan, str) else scan
        self.num_directions = num_dir = self.pattern.num_directions
        self.d_inner = d_inner = int(ssm_ratio * dim)
        self.d_state = d_state
        self.dt_rank = dt_rank = math.ceil(dim / 16) if dt_rank == 'auto' else int(dt_rank)

        self.in_proj = ConvBn2d(dim, d_inner * 2, **dd)
        self.act = nn.SiLU()
        if d_conv > 1:
            self.dwconv = nn.Conv2d(
                d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner, bias=conv_bias, **dd)
        else:
            self.dwconv = nn.Identity()
        # Per direction: token-wise projection to (dt, B, C), then dt from rank R up to Di channels.
        self.x_proj_weight = nn.Parameter(torch.empty(num_dir, dt_rank + 2 * d_state, d_inner, **dd))
        self.dt_proj_weight = nn.Parameter(torch.empty(num_dir, d_inner, dt_rank, **dd))
        self.dt_proj_bias = nn.Parameter(torch.empty(num_dir, d_inner, **dd))
        self.A_log = nn.Parameter(torch.empty(num_dir * d_inner, d_state, **dd))
        self.D = nn.Parameter(torch.empty(num_dir * d_inner, **dd))
        self.out_norm = LayerNorm2d(d_inner, eps=1e-5, **dd)
        self.out_proj = ConvBn2d(d_inner, dim, **dd)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """MobileMamba's "v2" init for the SSM tensors; PyTorch defaults elsewhere (as the official code)."""
        bound = self.d_inner ** -0.5  # nn.Linear's default init of each direction's x_proj
        nn.init.uniform_(self.x_proj_weight, -bound, bound)
        nn.init.uniform_(self.dt_proj_weight, 0., 0.1)
        nn.init.uniform_(self.dt_proj_bias, 0., 0.1)
        nn.init.zeros_(self.A_log)  # A = -exp(0) = -1
        nn.init.ones_(self.D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        x, z = self.in_proj(x).chunk(2, dim=1)
        z = self.act(z)
        # channels_last into the dwconv, so that u below is a channels-last view (see `scan_inputs`).
        x = self.act(self.dwconv(x.contiguous(memory_format=torch.channels_last)))

        u = x.flatten(2)
        delta, A, B, C, D, delta_bias = scan_inputs(u, self)
        y = sum_directions(pattern_scan(u, delta, A, B, C, D, delta_bias, self.pattern, height, width))
        # y is a channels_last map; z first, so the product (and out_proj) keeps the layout of the input.
        y = z * self.out_norm(y.reshape(batch, self.d_inner, height, width))
        return self.out_proj(y)
