"""VMamba's 2-D selective-scan mixer and visual state-space (VSS) block, channel-first.

The mixer is the 2-D SSM core (`SelectiveScan2dCore`, layers/ss2d.py) with 1x1 conv projections: a K-direction
selective scan (K = 4 for VMamba's cross2d and AtrousMamba's atrous windows) whose outputs are summed,
LayerNorm'd and projected back to `dim`.

Two forms, as VMamba's forward types name them:
- "noz" (`gate=False`, VMamba v2 `v05_noz`, ChangeMamba `v3noz`, every released VMamba v2 checkpoint):
  in_proj gives Di channels, no gate: `out_proj(out_norm(scan(silu(dwconv(in_proj(x))))))`.
- gated (`gate=True`, VMamba v2 `v05` / MobileMamba's form): in_proj gives 2*Di channels split into (x, z) and
  the normalised scan output is multiplied by SiLU(z).
"v05" (grouped 1x1 conv1d projections) and "v3" (einsum) are the same maths; here the projections run once in
image order for all directions (they are token-wise) and `vimamba.ops.selective_scan` reads the tokens through
each direction's index, so no permuted copies of the activations are made.

Layout: channel-first (B, C, H, W), in/out projections and the MLP as 1x1 convs, LayerNorm over channels, which
is VMamba's `ln2d` form (its `Linear2d`); the channel-last `ln` form of ChangeMamba is the same maths.
Initialisation is VMamba's "v0" (Mamba's): A = -(1..N), D = 1, dt weights U(+-R^-0.5), dt bias softplus^-1 of a
log-uniform step in [dt_min, dt_max], x_proj nn.Linear's default; 1x1 projections and MLP trunc-normal(0.02)
with zero bias, as VMamba's model-level `_init_weights` leaves them.
"""
from typing import Union

import torch
import torch.nn as nn
from timm.layers import DropPath, LayerNorm2d, Mlp, trunc_normal_

from vimamba.scans import ScanPattern

from .ss2d import SelectiveScan2dCore

__all__ = ['VMambaSelectiveScan2d', 'VSSBlock']


class VMambaSelectiveScan2d(SelectiveScan2dCore):
    """VMamba's SS2D: 1x1 conv in-proj -> dwconv + SiLU -> K-direction selective scan (summed) -> LayerNorm
    [* SiLU(z)] -> 1x1 conv out-proj (`SelectiveScan2dCore`), VMamba's "v0" init.

    Args:
        dim: Input and output channels.
        d_state: SSM state size N (VMamba v2: 1).
        ssm_ratio: Inner width Di = int(ssm_ratio * dim).
        dt_rank: Rank R of the dt projection; 'auto' = ceil(dim / 16) (from `dim`, not Di, as VMamba).
        d_conv: Depthwise conv kernel (< 2: no conv, SiLU only).
        conv_bias: Bias on the depthwise conv (VMamba v2 configs: False).
        gate: False = the "noz" form (no z branch); True = gate the output with SiLU(z).
        scan: A scan pattern (or its name in `vimamba.scans`) with any K; VMamba: 'cross'.
        shared_groups: The pattern's K directions are this many groups of K / shared_groups directions that share
            one set of per-direction weights, and their outputs are averaged over the groups (e.g. one cross2d-like
            set of 4 directions scanned at several atrous rates); 1 = every direction has its own weights.
        dt_min, dt_max, dt_init_floor: Range of the initial step size (Mamba's init).
    """

    def __init__(
            self,
            dim: int,
            d_state: int = 1,
            ssm_ratio: float = 2.0,
            dt_rank: Union[int, str] = 'auto',
            d_conv: int = 3,
            conv_bias: bool = False,
            gate: bool = False,
            scan: Union[str, ScanPattern] = 'cross',
            shared_groups: int = 1,
            dt_min: float = 1e-3,
            dt_max: float = 0.1,
            dt_init_floor: float = 1e-4,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        d_inner = int(ssm_ratio * dim)
        self.in_proj = nn.Conv2d(dim, d_inner * (2 if gate else 1), 1, bias=False, **dd)
        self.act = nn.SiLU()
        self.dwconv = self.depthwise_conv(d_inner, d_conv, conv_bias, **dd)
        self.init_ssm(dim, d_inner, d_state, dt_rank, scan, gated=gate, shared_groups=shared_groups, init='v0',
                      dt_min=dt_min, dt_max=dt_max, dt_init_floor=dt_init_floor, **dd)
        self.out_norm = LayerNorm2d(d_inner, eps=1e-5, **dd)
        self.out_proj = nn.Conv2d(d_inner, dim, 1, bias=False, **dd)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """VMamba init "v0" for the SSM tensors, trunc-normal(0.02) for the 1x1 projections."""
        self.reset_ssm_parameters()
        trunc_normal_(self.in_proj.weight, std=.02)
        trunc_normal_(self.out_proj.weight, std=.02)
        self.out_norm.reset_parameters()


class VSSBlock(nn.Module):
    """Pre-norm VMamba block: `x + drop_path(mixer(norm(x)))`, then `x + drop_path(mlp(norm2(x)))` (channel-first).

    Args:
        dim: Channels.
        drop_path: Stochastic depth of both residual branches (VMamba uses one rate for both).
        mlp_ratio: MLP hidden width = int(dim * mlp_ratio) (GELU); 0 = no MLP branch.
        norm_eps: LayerNorm epsilon (VMamba: nn.LayerNorm's 1e-5).
        The rest is passed to `VMambaSelectiveScan2d`.
    """

    def __init__(
            self,
            dim: int,
            drop_path: float = 0.,
            d_state: int = 1,
            ssm_ratio: float = 2.0,
            dt_rank: Union[int, str] = 'auto',
            d_conv: int = 3,
            conv_bias: bool = False,
            gate: bool = False,
            scan: Union[str, ScanPattern] = 'cross',
            shared_groups: int = 1,
            mlp_ratio: float = 4.0,
            norm_eps: float = 1e-5,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.norm = LayerNorm2d(dim, eps=norm_eps, **dd)
        self.mixer = VMambaSelectiveScan2d(
            dim, d_state=d_state, ssm_ratio=ssm_ratio, dt_rank=dt_rank, d_conv=d_conv, conv_bias=conv_bias,
            gate=gate, scan=scan, shared_groups=shared_groups, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        if mlp_ratio > 0:
            self.norm2 = LayerNorm2d(dim, eps=norm_eps, **dd)
            self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, use_conv=True, **dd)
        else:
            self.norm2 = self.mlp = None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Norms at (1, 0), MLP trunc-normal(0.02) with zero bias (the mixer resets itself)."""
        self.norm.reset_parameters()
        if self.mlp is not None:
            self.norm2.reset_parameters()
            for fc in (self.mlp.fc1, self.mlp.fc2):
                trunc_normal_(fc.weight, std=.02)
                nn.init.zeros_(fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.mixer(self.norm(x)))
        if self.mlp is not None:
            x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x
