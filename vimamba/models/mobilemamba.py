"""MobileMamba

MobileMamba: Lightweight Multi-Receptive Visual Mamba Network
- paper: https://arxiv.org/abs/2411.15941 (CVPR 2025)
- code: https://github.com/lewandofskee/MobileMamba (MIT license)
Three conv stages (strides 16 / 32 / 64) of residual blocks whose MRFFI mixer splits channels into a wavelet +
two-direction Mamba branch, a k x k depthwise branch and an identity part; `fuse()` folds every BatchNorm.

Differences from the official code, on purpose:
- The Haar filters are computed non-persistent buffers, not frozen parameters: in neither `parameters()` (official
  counts include them) nor the state dict; `checkpoint_filter_fn` checks the official ones and drops them.
- The scan reads tokens through the 'bidirectional' index map of `vimamba.scans` (no flipped copies).
- Modules are named for what they are; `checkpoint_filter_fn` maps the official names.
- `VimambaBackbone(frozen_stages=0)` freezes the stem (the official backbone indexes a nonexistent `blocks0`).
- The official CPU merge (`cross_merge_fwd`) mixes a batch's samples (a shape error); otherwise logits match to 3e-6.
Kept on purpose: the block's outer skip wraps an already-residual chain (identity counted twice).
"""
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union

import torch
import torch.nn as nn

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, LayerNorm2d, SqueezeExcite, calculate_drop_path_rates, get_device_dtype
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from vimamba.checkpoint import PretrainedMixin, prepare_pretrained, fit_state_dict, unwrap_state_dict
from vimamba.layers.conv_bn import BnLinear, ConvBn2d
from vimamba.layers.patch_embed import check_image
from vimamba.layers.pool import check_global_pool
from vimamba.layers.ss2d import SelectiveScan2dCore
from vimamba.scans import ScanPattern
from vimamba.scans.base import check_depths
from vimamba.layers.wavelet import WaveletConv, WaveletTransform2d
from vimamba.registry import reject_retired_kwargs

__all__ = ['MobileMamba', 'MobileMambaSelectiveScan2d']


def _round_to_16(n: int) -> int:
    """Nearest multiple of 16, ties rounded up (the official global-branch width rule)."""
    low = n // 16 * 16
    return low if n - low < 8 else low + 16


class Stem(nn.Module):
    """Four stride-2 3x3 Conv-BN layers with ReLU between: stride 16, widths C/8, C/4, C/2, C."""

    def __init__(self, in_chans: int, dim: int, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.conv1 = ConvBn2d(in_chans, dim // 8, 3, 2, 1, **dd)
        self.conv2 = ConvBn2d(dim // 8, dim // 4, 3, 2, 1, **dd)
        self.conv3 = ConvBn2d(dim // 4, dim // 2, 3, 2, 1, **dd)
        self.conv4 = ConvBn2d(dim // 2, dim, 3, 2, 1, **dd)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.conv1.conv if isinstance(self.conv1, ConvBn2d) else self.conv1  # fuse() leaves a Conv2d
        x = check_image(x, first.in_channels, first.weight, 'MobileMamba')
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.act(self.conv3(x))
        return self.conv4(x)


class ConvFfn(nn.Module):
    """1x1 Conv-BN -> ReLU -> 1x1 Conv-BN; the last BN starts at zero so the residual unit starts as identity."""

    def __init__(self, dim: int, hidden_dim: int, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.fc1 = ConvBn2d(dim, hidden_dim, **dd)
        self.act = nn.ReLU()
        self.fc2 = ConvBn2d(hidden_dim, dim, bn_weight_init=0., **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def _depthwise_3x3(dim: int, bn_weight_init: float = 1., **dd) -> ConvBn2d:
    return ConvBn2d(dim, dim, 3, 1, 1, groups=dim, bn_weight_init=bn_weight_init, **dd)


class DepthwiseConvBranch(nn.Module):
    """MRFFI local branch (MK-DeConv): k x k depthwise Conv-BN -> ReLU -> 1x1 depthwise Conv-BN."""

    def __init__(self, dim: int, kernel_size: int, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.conv_kxk = ConvBn2d(dim, dim, kernel_size, 1, kernel_size // 2, groups=dim, **dd)
        self.act = nn.ReLU()
        self.conv_1x1 = ConvBn2d(dim, dim, 1, groups=dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_1x1(self.act(self.conv_kxk(x)))


class MobileMambaSelectiveScan2d(SelectiveScan2dCore):
    """MobileMamba's SS2D (VMamba "v052d"): Conv-BN projections (folded by `fuse()`), K summed directions, "v2" init.

    Args:
        dim, d_state, ssm_ratio: Channels; SSM state size N; inner width Di = int(ssm_ratio * dim).
        dt_rank: dt projection rank; 'auto' = ceil(dim / 16) (from `dim`, not Di, as VMamba).
        d_conv, conv_bias, scan: Depthwise conv kernel (< 2: none) and bias; a `vimamba.scans` pattern (fixes K).
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
        d_inner = int(ssm_ratio * dim)
        self.in_proj = ConvBn2d(dim, d_inner * 2, **dd)
        self.act = nn.SiLU()
        self.dwconv = self.depthwise_conv(d_inner, d_conv, conv_bias, **dd)
        self.init_ssm(dim, d_inner, d_state, dt_rank, scan, gated=True, init='v2', **dd)
        self.out_norm = LayerNorm2d(d_inner, eps=1e-5, **dd)
        self.out_proj = ConvBn2d(d_inner, dim, **dd)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.reset_ssm_parameters()


class WaveletMambaBranch(nn.Module):
    """MRFFI global branch (WTE-Mamba): `ssm_scale * SS2D(x) + WaveletConv(x)`, both at full resolution."""

    def __init__(
            self,
            dim: int,
            kernel_size: int,
            ssm_ratio: float = 2.0,
            d_state: int = 1,
            wavelet: str = 'db1',
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.ssm = MobileMambaSelectiveScan2d(
            dim, d_state=d_state, ssm_ratio=ssm_ratio, scan='bidirectional', **dd)
        self.ssm_scale = nn.Parameter(torch.ones(1, dim, 1, 1, **dd))
        self.wavelet_conv = WaveletConv(dim, kernel_size, wavelet=wavelet, **dd)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.ssm_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ssm_scale * self.ssm(x) + self.wavelet_conv(x)


class MultiReceptiveFieldMixer(nn.Module):
    """MRFFI: round16(global_ratio * C) wavelet-Mamba, int(local_ratio * C) depthwise, identity rest; 1x1 conv mix."""

    def __init__(
            self,
            dim: int,
            global_ratio: float,
            local_ratio: float,
            kernel_size: int,
            ssm_ratio: float = 2.0,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.global_dim = _round_to_16(int(global_ratio * dim))
        local_dim = int(local_ratio * dim)
        self.local_dim = dim - self.global_dim if self.global_dim + local_dim > dim else local_dim
        self.identity_dim = dim - self.global_dim - self.local_dim
        self.global_branch = (
            WaveletMambaBranch(self.global_dim, kernel_size, ssm_ratio=ssm_ratio, **dd)
            if self.global_dim > 0 else nn.Identity())
        self.local_branch = (
            DepthwiseConvBranch(self.local_dim, kernel_size, **dd) if self.local_dim > 0 else nn.Identity())
        self.act = nn.ReLU()
        self.proj = ConvBn2d(dim, dim, bn_weight_init=0., **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_global, x_local, x_id = torch.split(x, [self.global_dim, self.local_dim, self.identity_dim], dim=1)
        x = torch.cat([self.global_branch(x_global), self.local_branch(x_local), x_id], dim=1)
        return self.proj(self.act(x))


class MobileMambaBlock(nn.Module):
    """Residual dw3x3 -> FFN -> MRFFI -> dw3x3 -> FFN in an outer drop-path skip (the identity twice, as official)."""

    def __init__(
            self,
            dim: int,
            global_ratio: float,
            local_ratio: float,
            kernel_size: int,
            ssm_ratio: float = 2.0,
            mlp_ratio: float = 2.0,
            drop_path: float = 0.,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.dw0 = _depthwise_3x3(dim, bn_weight_init=0., **dd)
        self.ffn0 = ConvFfn(dim, int(dim * mlp_ratio), **dd)
        self.mixer = MultiReceptiveFieldMixer(dim, global_ratio, local_ratio, kernel_size, ssm_ratio, **dd)
        self.dw1 = _depthwise_3x3(dim, bn_weight_init=0., **dd)
        self.ffn1 = ConvFfn(dim, int(dim * mlp_ratio), **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x + self.dw0(x)
        t = t + self.ffn0(t)
        t = t + self.mixer(t)
        t = t + self.dw1(t)
        t = t + self.ffn1(t)
        return x + self.drop_path(t)


class PatchMerging(nn.Module):
    """Inverted-residual stride-2 downsample: 1x1 expand x4 -> ReLU -> 3x3 dw s2 -> ReLU -> SE -> 1x1 project."""

    def __init__(self, dim: int, out_dim: int, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        hidden_dim = dim * 4
        self.conv_expand = ConvBn2d(dim, hidden_dim, **dd)
        self.act = nn.ReLU()
        self.conv_dw = ConvBn2d(hidden_dim, hidden_dim, 3, 2, 1, groups=hidden_dim, **dd)
        self.se = SqueezeExcite(hidden_dim, rd_ratio=0.25, **dd)
        self.conv_proj = ConvBn2d(hidden_dim, out_dim, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv_expand(x))
        x = self.act(self.conv_dw(x))
        return self.conv_proj(self.se(x))


class Downsample(nn.Module):
    """Residual dw3x3 + FFN at the input width, PatchMerging (stride 2), residual dw3x3 + FFN at the output width."""

    def __init__(self, dim: int, out_dim: int, mlp_ratio: float = 2.0, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.pre_dw = _depthwise_3x3(dim, **dd)
        self.pre_ffn = ConvFfn(dim, int(dim * mlp_ratio), **dd)
        self.merge = PatchMerging(dim, out_dim, **dd)
        self.post_dw = _depthwise_3x3(out_dim, **dd)
        self.post_ffn = ConvFfn(out_dim, int(out_dim * mlp_ratio), **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pre_dw(x)
        x = x + self.pre_ffn(x)
        x = self.merge(x)
        x = x + self.post_dw(x)
        return x + self.post_ffn(x)


class MobileMambaStage(nn.Module):
    def __init__(
            self,
            dim: int,
            out_dim: int,
            depth: int,
            global_ratio: float,
            local_ratio: float,
            kernel_size: int,
            ssm_ratio: float = 2.0,
            downsample: bool = True,
            drop_path: Sequence[float] = (),
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.grad_checkpointing = False
        self.downsample = Downsample(dim, out_dim, **dd) if downsample else nn.Identity()
        drop_path = list(drop_path) or [0.] * depth
        self.blocks = nn.Sequential(*[
            MobileMambaBlock(
                out_dim, global_ratio, local_ratio, kernel_size, ssm_ratio=ssm_ratio, drop_path=drop_path[i], **dd)
            for i in range(depth)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return x


class MobileMamba(PretrainedMixin, nn.Module):
    """MobileMamba classifier / backbone; features 0 = stem, 1..3 = stages, as the official backbone numbers them.

    Args:
        in_chans, num_classes, global_pool: Input channels; classes (0: none, `forward` pools); 'avg' or ''.
        embed_dim, depths: Width and number of blocks of each stage.
        global_ratio, local_ratio: Per stage, channel shares of the global and local branches.
        kernel_size, ssm_ratio: Per-stage kernel of the local branch and wavelet conv; selective-scan expansion.
        drop_rate, drop_path_rate: Dropout in the head (after its BatchNorm); stochastic depth, linear from 0.
    """

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            embed_dim: Sequence[int] = (192, 384, 448),
            depths: Sequence[int] = (1, 2, 2),
            global_ratio: Sequence[float] = (0.8, 0.7, 0.6),
            local_ratio: Sequence[float] = (0.2, 0.2, 0.3),
            kernel_size: Sequence[int] = (7, 5, 3),
            ssm_ratio: float = 2.0,
            drop_rate: float = 0.,
            drop_path_rate: float = 0.,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        depths = check_depths('MobileMamba', 'depths', depths)
        num_stages = len(embed_dim)
        for name, value in (('depths', depths), ('global_ratio', global_ratio), ('local_ratio', local_ratio),
                            ('kernel_size', kernel_size)):
            if len(value) != num_stages:
                raise ValueError(f'MobileMamba: {name}={tuple(value)} needs one entry per stage '
                                 f'({num_stages}, from embed_dim={tuple(embed_dim)})')
        check_global_pool('MobileMamba', global_pool, ('avg', ''), num_classes)
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.in_chans = in_chans
        self.embed_dim = tuple(embed_dim)
        self.drop_rate = drop_rate
        self.grad_checkpointing = False

        self.stem = Stem(in_chans, embed_dim[0], **dd)
        self.feature_info = [dict(num_chs=embed_dim[0], reduction=16, module='stem')]
        dpr = calculate_drop_path_rates(drop_path_rate, list(depths), stagewise=True)
        stages = []
        reduction = 16
        for i in range(num_stages):
            if i > 0:
                reduction *= 2
            stages.append(MobileMambaStage(
                embed_dim[max(i - 1, 0)],
                embed_dim[i],
                depths[i],
                global_ratio[i],
                local_ratio[i],
                kernel_size[i],
                ssm_ratio=ssm_ratio,
                downsample=i > 0,
                drop_path=dpr[i],
                **dd,
            ))
            self.feature_info.append(dict(num_chs=embed_dim[i], reduction=reduction, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = embed_dim[-1]
        self.head = BnLinear(self.num_features, num_classes, drop=drop_rate, **dd) if num_classes > 0 else nn.Identity()

    @torch.jit.ignore
    def init_weights(self) -> None:
        """Re-initialise every parameter and the wavelet filters; children first, so a parent's own init wins."""
        for m in reversed(list(self.modules())):
            if m is not self and hasattr(m, 'reset_parameters'):
                m.reset_parameters()
            if isinstance(m, WaveletTransform2d):
                m.init_non_persistent_buffers()

    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        # As every family; the official recipe decayed the 2-D A_logs (configs/cls/mobilemamba_*.yaml).
        return {'*.A_log', '*.D'}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(
            stem=r'^stem',
            blocks=r'^stages\.(\d+)' if coarse else [
                (r'^stages\.(\d+)\.downsample', (0,)),
                (r'^stages\.(\d+)\.blocks\.(\d+)', None),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.global_pool = check_global_pool(
            'MobileMamba', self.global_pool if global_pool is None else global_pool, ('avg', ''), num_classes)
        self.num_classes = num_classes
        dd = get_device_dtype(self)
        self.head = (
            BnLinear(self.num_features, num_classes, drop=self.drop_rate, **dd) if num_classes > 0 else nn.Identity())
        self.head.train(self.training)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = 'NCHW',
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """Forward features that returns intermediates.

        Args:
            x: Input image tensor.
            indices: Take last n levels (0 = stem, 1..3 = stages) if int, all if None, matching indices if sequence.
            norm: Ignored: the model has no final norm outside the classifier.
            stop_early: Stop iterating over stages when the last desired intermediate is hit.
            output_fmt: 'NCHW' or 'NHWC'.
            intermediates_only: Only return intermediate features.
        """
        if output_fmt not in ('NCHW', 'NHWC'):
            raise ValueError(f"MobileMamba: output_fmt={output_fmt!r}; accepted: 'NCHW', 'NHWC'")
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.stages) + 1, indices)

        x = self.stem(x)
        if 0 in take_indices:
            intermediates.append(x)
        if torch.jit.is_scripting() or not stop_early:
            stages = self.stages
        else:
            stages = self.stages[:max_index]
        for feat_idx, stage in enumerate(stages, start=1):
            x = stage(x)
            if feat_idx in take_indices:
                intermediates.append(x)
        if output_fmt == 'NHWC':
            intermediates = [y.permute(0, 2, 3, 1) for y in intermediates]

        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Prune stages (and the head) not needed for the given intermediates."""
        take_indices, max_index = feature_take_indices(len(self.stages) + 1, indices)
        prune_end = max_index < len(self.stages)
        self.stages = self.stages[:max_index]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'avg':
            x = x.mean((2, 3))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        return self.forward_head(x)

    @torch.no_grad()
    def fuse(self) -> 'MobileMamba':
        """Fold every BatchNorm into the conv / linear before it, in place; returns self (eval only)."""
        if self.training:
            raise RuntimeError('MobileMamba.fuse() folds running statistics: call model.eval() first')

        def fold(parent: nn.Module) -> None:
            for name, child in parent.named_children():
                if hasattr(child, 'fuse'):
                    setattr(parent, name, child.fuse())
                else:
                    fold(child)

        fold(self)
        return self


def _convert_official_key(key: str) -> str:
    """Official MobileMamba state-dict name -> this module's name."""
    parts = key.split('.')
    if parts[0] == 'patch_embed':  # Sequential(conv, relu, conv, relu, ...): convs at 0, 2, 4, 6
        parts[:2] = ['stem', f'conv{int(parts[1]) // 2 + 1}']
    elif parts[0] == 'head':
        parts[1] = {'bn': 'norm', 'l': 'fc'}[parts[1]]
    elif parts[0].startswith('blocks'):
        stage, index = int(parts[0][len('blocks'):]) - 1, int(parts[1])
        if stage == 0:
            parts[:2] = ['stages', '0', 'blocks', str(index)]
        elif index == 0:  # Sequential(Residual(dw3x3), Residual(FFN)) before the merge
            parts[:4] = ['stages', str(stage), 'downsample', ('pre_dw', 'pre_ffn')[int(parts[2])]]
        elif index == 1:
            parts[:2] = ['stages', str(stage), 'downsample', 'merge']
        elif index == 2:
            parts[:4] = ['stages', str(stage), 'downsample', ('post_dw', 'post_ffn')[int(parts[2])]]
        else:
            parts[:2] = ['stages', str(stage), 'blocks', str(index - 3)]
    key = '.'.join(parts)
    for old, new in (
            ('.m.attn.', '.'),  # Residual(.m) -> MobileMambaBlockWindow(.attn) -> MobileMambaModule
            ('.m.', '.'),
            ('.local_op.dwconv3x3.weight', '.local_branch.conv_kxk.conv.weight'),
            ('.local_op.bn1.', '.local_branch.conv_kxk.bn.'),
            ('.local_op.dwconv1x1.weight', '.local_branch.conv_1x1.conv.weight'),
            ('.local_op.bn2.', '.local_branch.conv_1x1.bn.'),
            ('.global_op.global_atten.', '.global_branch.ssm.'),
            ('.global_op.base_scale.weight', '.global_branch.ssm_scale'),
            ('.global_op.wavelet_convs.0.weight', '.global_branch.wavelet_conv.conv.weight'),
            ('.global_op.wavelet_scale.0.weight', '.global_branch.wavelet_conv.scale'),
            ('.proj.1.', '.proj.'),
            ('.pw1.', '.fc1.'),
            ('.pw2.', '.fc2.'),
            ('.merge.conv1.', '.merge.conv_expand.'),
            ('.merge.conv2.', '.merge.conv_dw.'),
            ('.merge.conv3.', '.merge.conv_proj.'),
            ('.ssm.conv2d.', '.ssm.dwconv.'),
            ('.ssm.Ds', '.ssm.D'),
            ('.ssm.A_logs', '.ssm.A_log'),
            ('.ssm.dt_projs_', '.ssm.dt_proj_'),
            ('.c.weight', '.conv.weight'),
    ):
        key = key.replace(old, new)
    return key


def checkpoint_filter_fn(
        state_dict: Dict[str, Any], model: MobileMamba, strict: bool = True) -> Dict[str, torch.Tensor]:
    """Convert an official MobileMamba checkpoint (`net_E`, the EMA weights reported, preferred) to our names.
    The fixed wavelet filters are checked against the Haar filters and dropped."""
    state_dict = unwrap_state_dict(state_dict, prefer_ema=True)
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise ValueError('checkpoint_filter_fn: the model is already fused; load into an unfused model, then fuse()')

    if 'stem.conv1.conv.weight' in state_dict:
        converted = dict(state_dict)
    else:
        converted = {}
        for key, value in state_dict.items():
            if key.endswith(('.wt_filter', '.iwt_filter')):
                channels = value.shape[0] // 4
                reference = WaveletTransform2d(channels, 'db1')
                ref = reference.dwt_filter if key.endswith('.wt_filter') else reference.idwt_filter
                if value.shape != ref.shape or not torch.allclose(value.float().cpu(), ref, atol=1e-6):
                    raise ValueError(f'checkpoint_filter_fn: {key} is not the Haar filter bank this model uses')
                continue
            if key.startswith('head_dist.'):
                raise KeyError(f'checkpoint_filter_fn: {key}: distilled-head checkpoints are not supported '
                               f'(the released MobileMamba weights have no distillation head)')
            converted[_convert_official_key(key)] = value
    if isinstance(model.head, nn.Identity):
        converted = {k: v for k, v in converted.items() if not k.startswith('head.')}
    return fit_state_dict(converted, model, strict)


def _cfg(url: str = '', **kwargs) -> Dict[str, Any]:
    return {
        'url': url,
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (4, 4),
        'crop_pct': 0.875, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.conv1.conv', 'classifier': 'head.fc',
        'license': 'mit',
        'paper_ids': 'arXiv:2411.15941',
        'paper_name': 'MobileMamba: Lightweight Multi-Receptive Visual Mamba Network',
        'origin_url': 'https://github.com/lewandofskee/MobileMamba',
        'custom_load': 'hf',  # every source (file, url, Hugging Face) is read by vimamba.checkpoint
        **kwargs,
    }


# Official weights: Google Drive (not fetchable by timm); pass the file as `pretrained_cfg_overlay=dict(file=path)`.
_DRIVE = 'https://drive.google.com/file/d/{}/view'
_T2 = dict(input_size=(3, 192, 192), pool_size=(3, 3))
_S6 = dict(input_size=(3, 224, 224), pool_size=(4, 4))
_B1 = dict(input_size=(3, 256, 256), pool_size=(4, 4))
_B2 = dict(input_size=(3, 384, 384), pool_size=(6, 6))
_B4 = dict(input_size=(3, 512, 512), pool_size=(8, 8))
_KD = 'trained 1000 epochs with soft distillation from a TResNet-L-v2 teacher'

default_cfgs = generate_default_cfgs({
    'mobilemamba_t2.in1k': _cfg(**_T2, notes=(_DRIVE.format('1LXh5wjVEUu5Kj1foclC9zmlKsy7JpMQ-'),)),
    'mobilemamba_t2.kd_in1k': _cfg(**_T2, notes=(_DRIVE.format('14UUeEeN62a1jo5qit-m0yChQnNU8JWQG'), _KD)),
    'mobilemamba_t4.in1k': _cfg(**_T2, notes=(_DRIVE.format('17-5Q93_cEhBYMDzWTq4sDcc4_c_ezwpd'),)),
    'mobilemamba_t4.kd_in1k': _cfg(**_T2, notes=(_DRIVE.format('12e1RKJEYDWVjOZuQLycjOUkA5PqCUnwu'), _KD)),
    'mobilemamba_s6.in1k': _cfg(**_S6, notes=(_DRIVE.format('13en_zNB2wuHmnHKZMUQDe4KizlaTCHbP'),)),
    'mobilemamba_s6.kd_in1k': _cfg(**_S6, notes=(_DRIVE.format('1ujVeWpoICjioRF0aB7PD1fadM4PGFRfl'), _KD)),
    'mobilemamba_b1.in1k': _cfg(**_B1, notes=(_DRIVE.format('1ODO1XM2luMfczbDLJxHrEl-ie7yUscAC'),)),
    'mobilemamba_b1.kd_in1k': _cfg(**_B1, notes=(_DRIVE.format('15rBhYky_f7jNSknXujuwQESaIkiTBAR1'), _KD)),
    'mobilemamba_b2.in1k': _cfg(**_B2, notes=(_DRIVE.format('1tJJZqeP09D_IAKKFuQtJQOYm4eNGjr1r'),)),
    'mobilemamba_b2.kd_in1k': _cfg(**_B2, notes=(_DRIVE.format('1KuleL6Fi84zkjIhkRFbR4lqGa2iu6bOp'), _KD)),
    'mobilemamba_b4.in1k': _cfg(**_B4, notes=(_DRIVE.format('1MiGLHSldK2JpbQEe-7VlmFsaCdugDnYR'),)),
    'mobilemamba_b4.kd_in1k': _cfg(**_B4, notes=(_DRIVE.format('1KevdesGm8Pb4fEbgZ5JY4FMy9IQgYbiZ'), _KD)),
    'test_mobilemamba.untrained': _cfg(input_size=(3, 128, 128), pool_size=(2, 2)),
})


_BACKBONE_OPTION = 'it is an option of vimamba.downstream.mm.VimambaBackbone, which wraps every family'
_RETIRED_KWARGS = {'depth': 'pass depths (blocks per stage)', 'frozen_stages': _BACKBONE_OPTION,
                   'norm_eval': _BACKBONE_OPTION}


_B_ARGS = dict(embed_dim=(200, 376, 448), depths=(2, 3, 2), drop_path_rate=0.03)


def _create_mobilemamba(variant: str, pretrained: bool = False, **kwargs) -> MobileMamba:
    reject_retired_kwargs(variant, kwargs, _RETIRED_KWARGS)
    out_indices = kwargs.pop('out_indices', (1, 2, 3))
    prepare_pretrained(variant, pretrained, kwargs)
    return build_model_with_cfg(
        MobileMamba,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=out_indices, feature_cls='getter'),
        **kwargs,
    )


@register_model
def mobilemamba_t2(pretrained: bool = False, **kwargs) -> MobileMamba:
    """MobileMamba-T2 @ 192: 8.81M params (official count 8.84M), 73.6 top-1 (EMA, 300 epochs), 76.9 with KD."""
    model_args = dict(embed_dim=(144, 272, 368), depths=(1, 2, 2))
    return _create_mobilemamba('mobilemamba_t2', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def mobilemamba_t4(pretrained: bool = False, **kwargs) -> MobileMamba:
    """MobileMamba-T4 @ 192: 14.14M params (official count 14.18M), 76.1 top-1, 78.9 with KD."""
    model_args = dict(embed_dim=(176, 368, 448), depths=(1, 2, 2))
    return _create_mobilemamba('mobilemamba_t4', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def mobilemamba_s6(pretrained: bool = False, **kwargs) -> MobileMamba:
    """MobileMamba-S6 @ 224: 15.00M params (official count 15.04M), 78.0 top-1, 80.7 with KD."""
    model_args = dict(embed_dim=(192, 384, 448), depths=(1, 2, 2))
    return _create_mobilemamba('mobilemamba_s6', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def mobilemamba_b1(pretrained: bool = False, **kwargs) -> MobileMamba:
    """MobileMamba-B1 @ 256: 17.07M params (official count 17.12M), 79.9 top-1, 82.2 with KD."""
    return _create_mobilemamba('mobilemamba_b1', pretrained=pretrained, **dict(_B_ARGS, **kwargs))


@register_model
def mobilemamba_b2(pretrained: bool = False, **kwargs) -> MobileMamba:
    """MobileMamba-B2 = B1 trained and evaluated @ 384: 81.6 top-1, 83.3 with KD."""
    return _create_mobilemamba('mobilemamba_b2', pretrained=pretrained, **dict(_B_ARGS, **kwargs))


@register_model
def mobilemamba_b4(pretrained: bool = False, **kwargs) -> MobileMamba:
    """MobileMamba-B4 = B1 trained and evaluated @ 512: 82.5 top-1, 83.6 with KD."""
    return _create_mobilemamba('mobilemamba_b4', pretrained=pretrained, **dict(_B_ARGS, **kwargs))


@register_model
def test_mobilemamba(pretrained: bool = False, **kwargs) -> MobileMamba:
    """Tiny MobileMamba for tests: every branch (global, local, identity) present in every stage."""
    model_args = dict(embed_dim=(48, 64, 96), depths=(1, 1, 1))
    return _create_mobilemamba('test_mobilemamba', pretrained=pretrained, **dict(model_args, **kwargs))
