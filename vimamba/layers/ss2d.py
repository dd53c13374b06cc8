"""The state-space core of the 2-D selective-scan mixers (SS2D) of VMamba / AtrousMamba, MobileMamba and MaIR.

Each mixer projects the map to an inner width Di = ssm_ratio * dim (and, gated, a second Di channels z), runs a
depthwise conv and SiLU, then every direction k of a scan pattern runs an S6 selective scan over the H*W tokens
with its own token-wise projections (dt, B, C from `x_proj_weight[k]`, dt lifted to Di by `dt_proj_weight[k]`).
The K outputs come back in token order, are merged (summed; MaIR weighs them first), LayerNorm'd, gated by
SiLU(z) when the mixer has z, and projected back to `dim`.

`SelectiveScan2dCore` holds all of that but the projections, conv and norm, which each family's mixer builds:
`VMambaSelectiveScan2d` (layers/vss.py), `MobileMambaSelectiveScan2d` (models/mobilemamba.py) and
`MaIRSelectiveScan2d` (models/mair.py). The five SSM parameters sit on the mixer itself, with VMamba's names
and shapes (`x_proj_weight` (K, R+2N, Di), `dt_proj_weight` (K, Di, R), `dt_proj_bias` (K, Di), `A_log` (K*Di, N),
`D` (K*Di,)): the keys each family's checkpoints use, and the shapes an optimiser that skips 1-D tensors treats
as the official recipes did. The scan is `vimamba.ops.selective_scan` reading the tokens through the pattern's
index map: the token-wise projections run once, in image order, for all directions, and no permuted copies of
the activations are made.

Precision: the op accumulates in fp32 and returns y in the input dtype (VMamba's "oflex" kernel returns fp32 and
casts after the LayerNorm); in fp32 the two agree exactly, under autocast y is rounded to the compute dtype once
before the norm.
"""
import math
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from vimamba.scans import ScanPattern, get_pattern

from .mamba import init_mamba_ssm_, ssm_constants
from .scan import pattern_scan

__all__ = ['SelectiveScan2dCore']

# Initialisations of the SSM parameters, VMamba's names: "v0" is Mamba's (A = -[1..N], D = 1, dt weight
# U(±R^-0.5), dt bias softplus^-1 of a log-uniform step); "v2" is A = -1, D = 1, dt weight and bias U[0, 0.1).
SSM_INITS = ('v0', 'v2')


class SelectiveScan2dCore(nn.Module):
    """Base of the 2-D mixers: in_proj -> [split z] -> dwconv + SiLU -> K-direction selective scan -> merge ->
    out_norm [* SiLU(z)] -> out_proj.

    A subclass builds `in_proj` (Di or, gated, 2*Di channels), `act` (SiLU), `dwconv`, `out_norm` and `out_proj`
    and calls `init_ssm` where the SSM parameters sit in its registration order. `channels_last = True` makes the
    mixer map (B, H, W, C) to (B, H, W, C) (in_proj and out_proj then act on the last dim, out_norm on a
    (B, H, W, Di) tensor); otherwise it maps (B, C, H, W) to (B, C, H, W) and out_norm gets a (B, Di, H, W) map.
    """
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
            dim: The mixer's channels (sets dt_rank 'auto').
            d_inner: Inner width Di.
            d_state: SSM state size N.
            dt_rank: Rank R of the dt projection; 'auto' = ceil(dim / 16) (from `dim`, not Di, as VMamba).
            scan: A scan pattern (or its name in `vimamba.scans`) with any K.
            gated: in_proj gives (x, z) and the normalised output is multiplied by SiLU(z).
            shared_groups: The pattern's K directions are this many groups of K / shared_groups directions that
                share one set of per-direction weights, and their outputs are averaged over the groups (e.g. one
                cross2d-like set of 4 directions scanned at several atrous rates); 1 = every direction has its own.
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
        # Directions with their own weights; the pattern's K = num_directions * shared_groups.
        self.num_directions = num_dir = self.pattern.num_directions // shared_groups
        self.d_inner = d_inner
        self.d_state = d_state
        self.dt_rank = dt_rank = math.ceil(dim / 16) if dt_rank == 'auto' else dt_rank
        self.gated = gated
        self.ssm_init = init
        self.dt_range = (dt_min, dt_max, dt_init_floor)
        dd = {'device': device, 'dtype': dtype}
        # Per direction: token-wise projection to (dt, B, C), then dt from rank R up to Di channels.
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
        """The SSM parameters by the mixer's init; x_proj gets nn.Linear's default bound for each direction, as
        the official codes stack per-direction Linears."""
        if self.A_log.is_meta:
            return  # nothing to draw on the meta device
        bound = self.d_inner ** -0.5
        nn.init.uniform_(self.x_proj_weight, -bound, bound)
        if self.ssm_init == 'v2':
            nn.init.uniform_(self.dt_proj_weight, 0., 0.1)
            nn.init.uniform_(self.dt_proj_bias, 0., 0.1)
            nn.init.zeros_(self.A_log)  # A = -exp(0) = -1
            nn.init.ones_(self.D)
        else:
            init_mamba_ssm_(self.A_log, self.D, self.dt_proj_weight, self.dt_proj_bias, self.dt_rank ** -0.5,
                            *self.dt_range)

    def scan_inputs(self, u: torch.Tensor):
        """u (b, Di, L) -> delta (b, K, Di, L), A (K, Di, N), B / C (b, K, N, L), D / delta_bias (K, Di), fp32 (or
        wider) where the op accumulates. K is the directions with their own weights (`num_directions`).
        Token-wise projections commute with any token order, so they run once, in image order, for all
        directions; the op reads the tokens through each direction's index.

        Layout: u should be channels-last (`u.stride(-2) == 1`, e.g. the flattened output of a conv on a
        channels_last map); the projections then run as plain matmuls on (b, L, Di), and delta, B and C come back
        as channels-last views (`stride(-2) == 1`: memory (b, K, L, Di) and slices of x_dbl (b, L, K, R+2N)), the
        layout the scan kernels read fastest, without a copy.
        """
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
        """u (b, Di, L) channels-last -> y (b, K, Di, L) of the pattern's K directions in token order, or with
        `merge` ("sum" / "mean") their merge (b, Di, L), taken by the op in one pass."""
        delta, A, B, C, D, delta_bias = self.scan_inputs(u)
        groups = self.shared_groups
        if groups > 1:
            # Groups sharing weights read the same projections through different orders; repeated in the
            # channels-last layout (memory (b, K, L, .)), as the op reads it fastest.
            delta, B, C = [t.transpose(-1, -2).repeat(1, groups, 1, 1).transpose(-1, -2) for t in (delta, B, C)]
            A, D, delta_bias = A.repeat(groups, 1, 1), D.repeat(groups, 1), delta_bias.repeat(groups, 1)
        return pattern_scan(u, delta, A, B, C, D, delta_bias, self.pattern, height, width, merge)

    def scan_merged(self, u: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """u (b, Di, L) -> (b, Di, L): the sum of the directions (averaged over weight-sharing groups)."""
        y = self.scan_directions(u, height, width, 'sum')
        return y / self.shared_groups if self.shared_groups > 1 else y

    def ssm_output(self, x: torch.Tensor, z: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The scan of x (b, Di, H, W), a channels_last map, merged, normalised and gated by SiLU(z) (None: no
        gate), in the mixer's layout: what out_proj reads."""
        batch, _, height, width = x.shape
        y = self.scan_merged(x.flatten(2), height, width)
        y = y.reshape(batch, self.d_inner, height, width)  # a channels_last map: y is channels-last
        if self.channels_last:
            y = y.permute(0, 2, 3, 1)
        y = self.out_norm(y)
        # z first: the product keeps the layout of the input
        return y if z is None else self.act(z) * y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Through the module (hooks, LoRA-style wrappers and FLOP counters see it).
        x = self.in_proj(x)
        z = None
        if self.gated:
            x, z = x.chunk(2, dim=-1 if self.channels_last else 1)
        # A channels_last map into the dwconv, so that u is a channels-last view (see `scan_inputs`). A (B, H, W, Di)
        # x is made dense before the permute: the other order trips torch.onnx.export with a dynamic batch.
        if self.channels_last:
            x = x.contiguous().permute(0, 3, 1, 2)
        else:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.act(self.dwconv(x))
        return self.out_proj(self.ssm_output(x, z))

    def extra_repr(self) -> str:
        return (f'd_inner={self.d_inner}, d_state={self.d_state}, dt_rank={self.dt_rank}, gate={self.gated}, '
                f'shared_groups={self.shared_groups}, init={self.ssm_init}, pattern={self.pattern}')
