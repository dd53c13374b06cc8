"""State-space core of the 2-D selective-scan mixers (SS2D) of VMamba / AtrousMamba, MobileMamba and MaIR.
SSM parameters keep VMamba's names and shapes, so checkpoints and 1-D no-weight-decay rules match the official.
Difference from the official code: y is cast to the input dtype before out_norm ("oflex": after); same in fp32."""
import math
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from vimamba.scans import ScanPattern, get_pattern

from .mamba import init_mamba_ssm_, ssm_constants
from .scan import pattern_scan

__all__ = ['SelectiveScan2dCore']

# VMamba's SSM inits: "v0" is Mamba's; "v2" is A = -1, D = 1, dt weight and bias U[0, 0.1).
SSM_INITS = ('v0', 'v2')


class SelectiveScan2dCore(nn.Module):
    """in_proj -> [split z] -> dwconv + SiLU -> K-direction scan -> merge -> out_norm [* SiLU(z)] -> out_proj.
    Subclasses build the modules and call `init_ssm`; `channels_last`: (B, H, W, C) in and out, else (B, C, H, W)."""
    channels_last: bool = False

    def init_ssm(
            self,
            dim: int,
            d_inner: int,
            d_state: int,
            dt_rank: Union[int, str],
            scan: Union[str, ScanPattern],
            gated: bool,
            shared_groups: int = 1,
            init: str = 'v0',
            dt_min: float = 1e-3,
            dt_max: float = 0.1,
            dt_init_floor: float = 1e-4,
            device=None,
            dtype=None,
    ) -> None:
        """Declares the SSM parameters (uninitialised; `reset_ssm_parameters` fills them).

        Args:
            dim: The mixer's channels.
            d_inner: Inner width Di.
            d_state: SSM state size N.
            dt_rank: Rank R of the dt projection; 'auto' = ceil(dim / 16) (from `dim`, as VMamba).
            scan: A scan pattern or its name in `vimamba.scans`.
            gated: in_proj gives (x, z); the output is multiplied by SiLU(z).
            shared_groups: Groups of directions sharing one weight set, outputs averaged over groups.
            init: 'v0' or 'v2' (see `SSM_INITS`).
            dt_min, dt_max, dt_init_floor: Range of the initial step size ('v0').
        """
        owner = type(self).__name__
        if dt_rank != 'auto' and (isinstance(dt_rank, bool) or not isinstance(dt_rank, int) or dt_rank < 1):
            raise ValueError(f"{owner}: dt_rank={dt_rank!r}; accepted: 'auto' or an int >= 1")
        if init not in SSM_INITS:
            raise ValueError(f'{owner}: init={init!r}; accepted: {", ".join(map(repr, SSM_INITS))}')
        self.pattern = get_pattern(scan) if isinstance(scan, str) else scan
        if shared_groups < 1 or self.pattern.num_directions % shared_groups:
            raise ValueError(f'{owner}: shared_groups={shared_groups} must be >= 1 and divide the '
                             f'{self.pattern.num_directions} directions of {self.pattern}')
        self.shared_groups = shared_groups
        self.num_directions = num_dir = self.pattern.num_directions // shared_groups
        self.d_inner = d_inner
        self.d_state = d_state
        self.dt_rank = dt_rank = math.ceil(dim / 16) if dt_rank == 'auto' else dt_rank
        self.gated = gated
        self.ssm_init = init
        self.dt_range = (dt_min, dt_max, dt_init_floor)
        dd = {'device': device, 'dtype': dtype}
        self.x_proj_weight = nn.Parameter(torch.empty(num_dir, dt_rank + 2 * d_state, d_inner, **dd))
        self.dt_proj_weight = nn.Parameter(torch.empty(num_dir, d_inner, dt_rank, **dd))
        self.dt_proj_bias = nn.Parameter(torch.empty(num_dir, d_inner, **dd))
        self.A_log = nn.Parameter(torch.empty(num_dir * d_inner, d_state, **dd))
        self.D = nn.Parameter(torch.empty(num_dir * d_inner, **dd))

    @staticmethod
    def depthwise_conv(d_inner: int, d_conv: int, bias: bool, device=None, dtype=None) -> nn.Module:
        """The k x k depthwise conv before the scan (d_conv < 2: none)."""
        if d_conv < 2:
            return nn.Identity()
        return nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner, bias=bias,
                         device=device, dtype=dtype)

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        """The SSM parameters by the mixer's init; x_proj gets nn.Linear's default bound."""
        if self.A_log.is_meta:
            return
        bound = self.d_inner ** -0.5
        nn.init.uniform_(self.x_proj_weight, -bound, bound)
        if self.ssm_init == 'v2':
            nn.init.uniform_(self.dt_proj_weight, 0., 0.1)
            nn.init.uniform_(self.dt_proj_bias, 0., 0.1)
            nn.init.zeros_(self.A_log)
            nn.init.ones_(self.D)
        else:
            init_mamba_ssm_(self.A_log, self.D, self.dt_proj_weight, self.dt_proj_bias, self.dt_rank ** -0.5,
                            *self.dt_range)

    def scan_inputs(self, u: torch.Tensor):
        """u (b, Di, L) -> delta (b, K, Di, L), A (K, Di, N), B / C (b, K, N, L), D / delta_bias (K, Di).
        Projections run once in image order; a channels-last u gives channels-last outputs without a copy."""
        num_dir, rank_2n, d_inner = self.x_proj_weight.shape
        d_state = self.A_log.shape[-1]
        rank = rank_2n - 2 * d_state
        x_dbl = F.linear(u.transpose(1, 2), self.x_proj_weight.reshape(-1, d_inner))    # (b, L, K * (R + 2N))
        x_dbl = x_dbl.unflatten(-1, (num_dir, rank_2n)).transpose(1, 2)                  # (b, K, L, R + 2N)
        dts, B, C = torch.split(x_dbl, [rank, d_state, d_state], dim=-1)
        delta = torch.matmul(dts, self.dt_proj_weight.transpose(1, 2))                  # (b, K, L, Di)
        A, D, delta_bias = ssm_constants(self.A_log, self.D, self.dt_proj_bias)
        A, D = A.reshape(num_dir, d_inner, d_state), D.reshape(num_dir, d_inner)
        return delta.transpose(-1, -2), A, B.transpose(-1, -2), C.transpose(-1, -2), D, delta_bias

    def scan_directions(self, u: torch.Tensor, height: int, width: int, merge: Optional[str] = None) -> torch.Tensor:
        """u (b, Di, L) -> y (b, K, Di, L) in token order, or with `merge` ("sum" / "mean") (b, Di, L)."""
        delta, A, B, C, D, delta_bias = self.scan_inputs(u)
        groups = self.shared_groups
        if groups > 1:
            delta, B, C = [t.transpose(-1, -2).repeat(1, groups, 1, 1).transpose(-1, -2) for t in (delta, B, C)]
            A, D, delta_bias = A.repeat(groups, 1, 1), D.repeat(groups, 1), delta_bias.repeat(groups, 1)
        return pattern_scan(u, delta, A, B, C, D, delta_bias, self.pattern, height, width, merge)

    def scan_merged(self, u: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """u (b, Di, L) -> (b, Di, L): the sum of the directions (averaged over weight-sharing groups)."""
        y = self.scan_directions(u, height, width, 'sum')
        return y / self.shared_groups if self.shared_groups > 1 else y

    def ssm_output(self, x: torch.Tensor, z: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x (b, Di, H, W) channels_last -> scanned, merged, normalised, gated output in the mixer's layout."""
        batch, _, height, width = x.shape
        y = self.scan_merged(x.flatten(2), height, width)
        y = y.reshape(batch, self.d_inner, height, width)
        if self.channels_last:
            y = y.permute(0, 2, 3, 1)
        y = self.out_norm(y)
        # z first: the product keeps the input's layout
        return y if z is None else self.act(z) * y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.in_proj(x)
        z = None
        if self.gated:
            x, z = x.chunk(2, dim=-1 if self.channels_last else 1)
        # Dense before the permute: the other order trips torch.onnx.export with a dynamic batch.
        if self.channels_last:
            x = x.contiguous().permute(0, 3, 1, 2)
        else:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.act(self.dwconv(x))
        return self.out_proj(self.ssm_output(x, z))

    def extra_repr(self) -> str:
        return (f'd_inner={self.d_inner}, d_state={self.d_state}, dt_rank={self.dt_rank}, gate={self.gated}, '
                f'shared_groups={self.shared_groups}, init={self.ssm_init}, pattern={self.pattern}')
