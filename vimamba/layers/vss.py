"""VMamba's 2-D selective-scan mixer and VSS block, channel-first (VMamba's `ln2d` form).
`gate=False` is VMamba v2's "noz" form (`v05_noz`, ChangeMamba `v3noz`, all released v2 checkpoints)."""
from typing import Union

import torch
import torch.nn as nn
from timm.layers import DropPath, LayerNorm2d, Mlp, trunc_normal_

from vimamba.scans import ScanPattern

from .ss2d import SelectiveScan2dCore

__all__ = ['VMambaSelectiveScan2d', 'VSSBlock']


class VMambaSelectiveScan2d(SelectiveScan2dCore):
    """VMamba's SS2D with 1x1 conv projections and the "v0" init.

    Args:
        dim: Input and output channels.
        d_state: SSM state size N (VMamba v2: 1).
        ssm_ratio: Inner width Di = int(ssm_ratio * dim).
        dt_rank: Rank R of the dt projection; 'auto' = ceil(dim / 16) (from `dim`, not Di, as VMamba).
        d_conv: Depthwise conv kernel (< 2: no conv).
        conv_bias: Bias on the depthwise conv.
        gate: Gate the output with SiLU(z); False is the "noz" form.
        scan: A scan pattern or its name in `vimamba.scans`; VMamba: 'cross'.
        shared_groups: Groups of directions sharing one weight set (see `SelectiveScan2dCore.init_ssm`).
        dt_min, dt_max, dt_init_floor: Range of the initial step size.
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
        """"v0" for the SSM tensors, trunc-normal(0.02) for the projections."""
        self.reset_ssm_parameters()
        trunc_normal_(self.in_proj.weight, std=.02)
        trunc_normal_(self.out_proj.weight, std=.02)
        self.out_norm.reset_parameters()


class VSSBlock(nn.Module):
    """Pre-norm VMamba block: mixer then MLP residual branches (channel-first).

    Args:
        dim: Channels.
        drop_path: Stochastic depth of both branches.
        mlp_ratio: MLP hidden width ratio; 0 = no MLP branch.
        norm_eps: LayerNorm epsilon.
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
        """Norms at (1, 0), MLP trunc-normal(0.02) with zero bias."""
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
