"""AtrousMamba: a hierarchical VMamba backbone whose blocks scan atrous windows (AWVSS)

AtrousMamaba (sic): An Atrous-Window Scanning Visual State Space Model for Remote Sensing Change Detection
- paper: https://arxiv.org/abs/2507.16172 (2025)
- code: none public; it builds on VMamba https://github.com/MzeroMiko/VMamba (MIT) and ChangeMamba
  https://github.com/ChenHongruixuan/MambaCD (Apache-2.0).
VMamba v2 whose four scan directions follow atrous windows (w x w tokens every r cells, r growing with depth). Only
the abstract is public, so these are PROPOSALS (docs/families.md#atrousmamba), each a constructor argument:
- AWVSS = VMamba's VSS block with only the scan swapped, so VMamba checkpoints load -> `scan` ('cross' = VMamba).
- Order: blocks, then dilation phases, then tokens; directions in VMamba's cross2d order -> 'atrous_window'.
- Window w = 8 (divides 256-px crops' grids) -> `window_size`; rates (1, 2, 4) cycling over a stage -> `atrous_rates`.
- A rate too large for the grid is clipped to the largest r with r*w <= max(H, W) -> `rate_overflow`.
- Alternatives: (a) phases outer (`atrous_order='phase'`); (b) all rates per block, averaged (`atrous_mode='parallel'`).
- Tiny / small / base = VMamba v2 T / S / B (s2); the "s1" variants are registered too.

Differences from VMamba's code, by design: the downsample opens the next stage (timm style); modules are named for
what they are; `checkpoint_filter_fn` maps VMamba's names and Linear weights. `scan='cross'` matches it to 3e-7 (fp32).
"""
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union

import torch
import torch.nn as nn
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import LayerNorm2d, calculate_drop_path_rates, get_device_dtype, to_2tuple, trunc_normal_
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices

from vimamba.checkpoint import PretrainedMixin, prepare_pretrained, fit_state_dict, unwrap_state_dict
from vimamba.layers.patch_embed import check_image
from vimamba.layers.pool import check_global_pool
from vimamba.layers.vss import VSSBlock
from vimamba.scans import ScanPattern, atrous_block_scans
from vimamba.scans.base import check_depths, check_int

__all__ = ['AtrousMamba', 'checkpoint_filter_fn', 'create_atrousmamba']

class Stem(nn.Module):
    """VMamba's "v2" patch embed: 3x3 s2 conv to C/2 -> LN -> GELU -> 3x3 s2 conv to C -> LN (stride 4)."""

    def __init__(self, in_chans: int, dim: int, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.conv1 = nn.Conv2d(in_chans, dim // 2, 3, 2, 1, **dd)
        self.norm1 = LayerNorm2d(dim // 2, eps=1e-5, **dd)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(dim // 2, dim, 3, 2, 1, **dd)
        self.norm2 = LayerNorm2d(dim, eps=1e-5, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.conv1(x)))
        return self.norm2(self.conv2(x))


class Downsample(nn.Module):
    """VMamba's "v3" downsample: 3x3 stride-2 conv -> LN."""

    def __init__(self, dim: int, out_dim: int, device=None, dtype=None):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.conv = nn.Conv2d(dim, out_dim, 3, 2, 1, **dd)
        self.norm = LayerNorm2d(out_dim, eps=1e-5, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class AtrousMambaStage(nn.Module):
    def __init__(
            self,
            dim: int,
            out_dim: int,
            scans: Sequence[ScanPattern],
            downsample: bool = True,
            drop_path: Sequence[float] = (),
            block_kwargs: Optional[Dict[str, Any]] = None,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.grad_checkpointing = False
        self.downsample = Downsample(dim, out_dim, **dd) if downsample else nn.Identity()
        drop_path = list(drop_path) or [0.] * len(scans)
        self.blocks = nn.Sequential(*[
            VSSBlock(out_dim, drop_path=drop_path[i], scan=scan, shared_groups=getattr(scan, 'weight_groups', 1),
                     **(block_kwargs or {}), **dd)
            for i, scan in enumerate(scans)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return x


class AtrousMamba(PretrainedMixin, nn.Module):
    """AtrousMamba (AWVSS) classifier / backbone (VMamba v2 with `scan='cross'`); features at strides 4 to 32.

    Args:
        in_chans, num_classes, global_pool: Input channels; classes (0: none, `forward` pools); 'avg' or ''.
        embed_dim, depths: Width of the first stage (doubling per stage) or of every stage; VSS blocks per stage.
        d_state, ssm_ratio, dt_rank: SSM state size, inner width ratio, dt rank ('auto' = ceil(width / 16)).
        d_conv, conv_bias: Mixer depthwise conv kernel and bias.
        gate, mlp_ratio: Gate the mixer output with SiLU(z) (False: VMamba v2's "noz"); MLP hidden width ratio.
        scan: A pattern of `vimamba.scans` ('atrous_window': AWVSS; 'cross': VMamba).
        window_size, atrous_rates: Window side w; rates per stage (one tuple for all stages, or one per stage).
        rate_overflow, atrous_order, atrous_mode: 'clip' / 'error'; 'window' / 'phase'; 'cycle' / 'parallel'.
        drop_rate, drop_path_rate: Dropout before the classifier; stochastic depth, linear from 0.
        img_size, dynamic_img_size: Nominal input size; accept any size (else only `img_size`).
    """

    def __init__(
            self,
            in_chans: int = 3,
            num_classes: int = 1000,
            global_pool: str = 'avg',
            embed_dim: Union[int, Sequence[int]] = 96,
            depths: Sequence[int] = (2, 2, 5, 2),
            d_state: int = 1,
            ssm_ratio: float = 2.0,
            dt_rank: Union[int, str] = 'auto',
            d_conv: int = 3,
            conv_bias: bool = False,
            gate: bool = False,
            mlp_ratio: float = 4.0,
            scan: str = 'atrous_window',
            window_size: int = 8,
            atrous_rates: Union[Sequence[int], Sequence[Sequence[int]]] = (1, 2, 4),
            rate_overflow: str = 'clip',
            atrous_order: str = 'window',
            atrous_mode: str = 'cycle',
            drop_rate: float = 0.,
            drop_path_rate: float = 0.1,
            img_size: Optional[Union[int, Tuple[int, int]]] = 224,
            dynamic_img_size: bool = True,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        depths = check_depths('AtrousMamba', 'depths', depths)
        num_stages = len(depths)
        dims = [embed_dim * 2 ** i for i in range(num_stages)] if isinstance(embed_dim, int) else list(embed_dim)
        if len(dims) != num_stages:
            raise ValueError(f'AtrousMamba: embed_dim={tuple(dims)} needs one width per stage '
                             f'({num_stages}, from depths={tuple(depths)})')
        check_global_pool('AtrousMamba', global_pool, ('avg', ''), num_classes)
        check_int('AtrousMamba', 'window_size', window_size, 1)
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.in_chans = in_chans
        self.embed_dim = tuple(dims)
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self.img_size = to_2tuple(img_size) if img_size is not None else None
        self.dynamic_img_size = dynamic_img_size
        if not dynamic_img_size and self.img_size is None:
            raise ValueError('AtrousMamba: dynamic_img_size=False needs an img_size to check inputs against')

        scans = atrous_block_scans(scan, depths, window_size, atrous_rates, rate_overflow, atrous_order, atrous_mode,
                                   owner='AtrousMamba', rates_arg='atrous_rates')
        block_kwargs = dict(
            d_state=d_state, ssm_ratio=ssm_ratio, dt_rank=dt_rank, d_conv=d_conv, conv_bias=conv_bias, gate=gate,
            mlp_ratio=mlp_ratio)
        self.stem = Stem(in_chans, dims[0], **dd)
        dpr = calculate_drop_path_rates(drop_path_rate, list(depths), stagewise=True)
        self.feature_info = []
        stages = []
        for i in range(num_stages):
            stages.append(AtrousMambaStage(
                dims[max(i - 1, 0)], dims[i], scans[i], downsample=i > 0, drop_path=dpr[i],
                block_kwargs=block_kwargs, **dd))
            self.feature_info.append(dict(num_chs=dims[i], reduction=4 * 2 ** i, module=f'stages.{i}'))
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = dims[-1]
        self.norm = LayerNorm2d(self.num_features, eps=1e-5, **dd)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self._init_head()

    def _init_head(self) -> None:
        if isinstance(self.head, nn.Linear):
            trunc_normal_(self.head.weight, std=.02)
            nn.init.zeros_(self.head.bias)

    @torch.jit.ignore
    def init_weights(self) -> None:
        """Re-initialise every parameter (e.g. after `to_empty()` of a meta build), children before parents."""
        for m in reversed(list(self.modules())):
            if m is not self and hasattr(m, 'reset_parameters'):
                m.reset_parameters()
        self._init_head()

    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        return {'*.A_log', '*.D'}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(
            stem=r'^stem',
            blocks=r'^stages\.(\d+)' if coarse else [
                (r'^stages\.(\d+)\.downsample', (0,)),
                (r'^stages\.(\d+)\.blocks\.(\d+)', None),
                (r'^norm', (99999,)),
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
            'AtrousMamba', self.global_pool if global_pool is None else global_pool, ('avg', ''), num_classes)
        self.num_classes = num_classes
        dd = get_device_dtype(self)
        self.head = nn.Linear(self.num_features, num_classes, **dd) if num_classes > 0 else nn.Identity()
        self._init_head()
        self.head.train(self.training)

    def set_input_size(self, img_size: Optional[Union[int, Tuple[int, int]]] = None) -> None:
        """Change the nominal input size (nothing to resample: the scan orders are built per grid)."""
        if img_size is not None:
            self.img_size = to_2tuple(img_size)

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        x = check_image(x, self.stem.conv1.in_channels, self.stem.conv1.weight, 'AtrousMamba')
        if not self.dynamic_img_size and tuple(x.shape[-2:]) != self.img_size:
            raise ValueError(f'AtrousMamba: input size {tuple(x.shape[-2:])} != img_size={self.img_size} with '
                             f'dynamic_img_size=False; pass dynamic_img_size=True or resize the input')
        return x

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
            indices: Take last n stages if int, all if None, select matching indices if sequence.
            norm: Apply the final norm to the last stage's intermediate.
            stop_early: Stop iterating over stages when the last desired intermediate is hit.
            output_fmt: 'NCHW' or 'NHWC'.
            intermediates_only: Only return intermediate features.
        """
        if output_fmt not in ('NCHW', 'NHWC'):
            raise ValueError(f"AtrousMamba: output_fmt={output_fmt!r}; accepted: 'NCHW', 'NHWC'")
        x = self._check_input(x)
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        last_idx = len(self.stages) - 1

        x = self.stem(x)
        if torch.jit.is_scripting() or not stop_early:
            stages = self.stages
        else:
            stages = self.stages[:max_index + 1]
        for feat_idx, stage in enumerate(stages):
            x = stage(x)
            if feat_idx in take_indices:
                x_inter = self.norm(x) if norm and feat_idx == last_idx else x
                intermediates.append(x_inter.permute(0, 2, 3, 1) if output_fmt == 'NHWC' else x_inter)

        if intermediates_only:
            return intermediates
        if feat_idx == last_idx:
            x = self.norm(x)
        return x, intermediates

    def prune_intermediate_layers(
            self,
            indices: Union[int, List[int]] = 1,
            prune_norm: bool = False,
            prune_head: bool = True,
    ) -> List[int]:
        """Prune stages (and the final norm and head) not needed for the given intermediates."""
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[:max_index + 1]
        if prune_end:
            self.num_features = self.head_hidden_size = self.feature_info[max_index]['num_chs']
        if prune_norm or prune_end:
            self.norm = nn.Identity()
        if prune_head or prune_end:
            self.reset_classifier(0, '')
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._check_input(x)
        x = self.stem(x)
        x = self.stages(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == 'avg':
            x = x.mean((2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        return self.forward_head(x)


# VMamba's Sequential indices -> our names; its downsample ends stage i, ours starts stage i + 1.
_VMAMBA_STEM = {'0': 'conv1', '2': 'norm1', '5': 'conv2', '7': 'norm2'}
_VMAMBA_MIXER = {
    'conv2d.': 'dwconv.', 'A_logs': 'A_log', 'Ds': 'D', 'dt_projs_weight': 'dt_proj_weight',
    'dt_projs_bias': 'dt_proj_bias',
}


def _convert_vmamba_key(key: str) -> Optional[str]:
    """One VMamba / ChangeMamba-encoder key in our names; None for ChangeMamba's per-level `outnorm*`."""
    parts = key.split('.')
    if parts[0] == 'patch_embed':
        return '.'.join(['stem', _VMAMBA_STEM.get(parts[1], parts[1])] + parts[2:])
    if parts[0] == 'classifier':
        return '.'.join(['norm' if parts[1] == 'norm' else 'head'] + parts[2:])
    if parts[0] == 'layers' and parts[2] == 'downsample':
        return '.'.join(['stages', str(int(parts[1]) + 1), 'downsample',
                         {'1': 'conv', '3': 'norm'}.get(parts[3], parts[3])] + parts[4:])
    if parts[0] == 'layers' and parts[2] == 'blocks':
        child, rest = parts[4], '.'.join(parts[5:])
        if child == 'op':
            child = 'mixer'
            for old, new in _VMAMBA_MIXER.items():
                if rest.startswith(old):
                    rest = new + rest[len(old):]
                    break
        return '.'.join(['stages', parts[1], 'blocks', parts[3], child] + ([rest] if rest else []))
    if parts[0].startswith('outnorm'):
        return None
    return key


def checkpoint_filter_fn(
        state_dict: Dict[str, Any],
        model: AtrousMamba,
        strict: bool = True,
) -> Dict[str, torch.Tensor]:
    """Convert a VMamba v2 or AtrousMamba checkpoint to `model`'s names, Linear weights as 1x1 convs.
    `strict=False` keeps only matching keys (e.g. ChangeMamba's tiny encoder from VMamba-T weights)."""
    state_dict = unwrap_state_dict(state_dict)
    expected = model.state_dict()
    converted = {}
    for key, value in state_dict.items():
        new_key = key if key in expected else _convert_vmamba_key(key)
        if new_key is None:
            continue
        if new_key in expected and value.dim() == 2 and expected[new_key].dim() == 4:
            value = value.reshape(expected[new_key].shape)
        converted[new_key] = value
    if isinstance(model.head, nn.Identity):
        converted = {k: v for k, v in converted.items() if not k.startswith('head.')}
    return fit_state_dict(converted, model, strict)


def _cfg(url: str = '', **kwargs) -> Dict[str, Any]:
    return {
        'url': url,
        'num_classes': 1000, 'input_size': (3, 224, 224), 'pool_size': (7, 7),
        'crop_pct': 0.875, 'interpolation': 'bicubic',
        'mean': IMAGENET_DEFAULT_MEAN, 'std': IMAGENET_DEFAULT_STD,
        'first_conv': 'stem.conv1', 'classifier': 'head',
        'license': 'mit',
        'paper_ids': 'arXiv:2507.16172',
        'paper_name': 'AtrousMamaba: An Atrous-Window Scanning Visual State Space Model for Remote Sensing '
                      'Change Detection',
        'origin_url': 'https://github.com/MzeroMiko/VMamba',
        'custom_load': 'hf',  # every source (file, url, Hugging Face) is read by vimamba.checkpoint
        **kwargs,
    }


# VMamba v2 ImageNet-1k release checkpoints (file, variant, top-1); the paper starts from them (no AtrousMamba weights).
VMAMBA_RELEASE = 'https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/'
VMAMBA_CHECKPOINTS = {
    'tiny': ('vssm_tiny_0230_ckpt_epoch_262.pth', 'T s2l5', 82.5),
    'small': ('vssm_small_0229_ckpt_epoch_222.pth', 'S s2l15', 83.6),
    'base': ('vssm_base_0229_ckpt_epoch_237.pth', 'B s2l15', 83.9),
    'tiny_s1l8': ('vssm1_tiny_0230s_ckpt_epoch_264.pth', 'T s1l8', 82.6),
    'small_s1l20': ('vssm1_small_0229s_ckpt_epoch_240.pth', 'S s1l20', 83.3),
    'base_s1l20': ('vssm1_base_0229s_ckpt_epoch_225.pth', 'B s1l20', 83.8),
}


def vmamba_cfg(size: str, **kwargs) -> Dict[str, Any]:
    filename, variant, top1 = VMAMBA_CHECKPOINTS[size]
    return _cfg(url=VMAMBA_RELEASE + filename, notes=(
        f'VMamba {variant} ImageNet-1k weights (top-1 {top1} with the cross scan, scan="cross")',), **kwargs)


default_cfgs = generate_default_cfgs({
    **{f'atrousmamba_{size}.vmamba_in1k': vmamba_cfg(size) for size in VMAMBA_CHECKPOINTS},
    'test_atrousmamba.untrained': _cfg(input_size=(3, 64, 64), pool_size=(2, 2)),
})


def create_atrousmamba(variant: str, pretrained: bool = False, **kwargs) -> AtrousMamba:
    """Build any variant on the AtrousMamba class (also the `vmamba_*` family) from its registered cfg."""
    prepare_pretrained(variant, pretrained, kwargs)
    return build_model_with_cfg(
        AtrousMamba,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), feature_cls='getter'),
        **kwargs,
    )


@register_model
def atrousmamba_tiny(pretrained: bool = False, **kwargs) -> AtrousMamba:
    """AtrousMamba-T: VMamba-T v2 (s2l5) with atrous-window scans, 30.7M params."""
    model_args = dict(embed_dim=96, depths=(2, 2, 5, 2), ssm_ratio=2.0, drop_path_rate=0.2)
    return create_atrousmamba('atrousmamba_tiny', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def atrousmamba_small(pretrained: bool = False, **kwargs) -> AtrousMamba:
    """AtrousMamba-S: VMamba-S v2 (s2l15) with atrous-window scans, 50.1M params."""
    model_args = dict(embed_dim=96, depths=(2, 2, 15, 2), ssm_ratio=2.0, drop_path_rate=0.3)
    return create_atrousmamba('atrousmamba_small', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def atrousmamba_base(pretrained: bool = False, **kwargs) -> AtrousMamba:
    """AtrousMamba-B: VMamba-B v2 (s2l15) with atrous-window scans, 88.6M params."""
    model_args = dict(embed_dim=128, depths=(2, 2, 15, 2), ssm_ratio=2.0, drop_path_rate=0.6)
    return create_atrousmamba('atrousmamba_base', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def atrousmamba_tiny_s1l8(pretrained: bool = False, **kwargs) -> AtrousMamba:
    """AtrousMamba-T s1l8: VMamba-T v2 (ssm_ratio 1, 8 blocks in stage 3) with atrous-window scans, 30.2M params."""
    model_args = dict(embed_dim=96, depths=(2, 2, 8, 2), ssm_ratio=1.0, drop_path_rate=0.2)
    return create_atrousmamba('atrousmamba_tiny_s1l8', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def atrousmamba_small_s1l20(pretrained: bool = False, **kwargs) -> AtrousMamba:
    """AtrousMamba-S s1l20: VMamba-S v2 (ssm_ratio 1) with atrous-window scans, 49.0M params."""
    model_args = dict(embed_dim=96, depths=(2, 2, 20, 2), ssm_ratio=1.0, drop_path_rate=0.3)
    return create_atrousmamba('atrousmamba_small_s1l20', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def atrousmamba_base_s1l20(pretrained: bool = False, **kwargs) -> AtrousMamba:
    """AtrousMamba-B s1l20: VMamba-B v2 (ssm_ratio 1) with atrous-window scans, 86.6M params."""
    model_args = dict(embed_dim=128, depths=(2, 2, 20, 2), ssm_ratio=1.0, drop_path_rate=0.5)
    return create_atrousmamba('atrousmamba_base_s1l20', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def test_atrousmamba(pretrained: bool = False, **kwargs) -> AtrousMamba:
    """Tiny AtrousMamba for tests: window 4, rates (1, 2) so both rates run on the 16x16 first stage."""
    model_args = dict(embed_dim=16, depths=(2, 1, 1, 1), window_size=4, atrous_rates=(1, 2), img_size=64)
    return create_atrousmamba('test_atrousmamba', pretrained=pretrained, **dict(model_args, **kwargs))
