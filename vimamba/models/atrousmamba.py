"""AtrousMamba: a hierarchical VMamba backbone whose blocks scan atrous windows (AWVSS)

AtrousMamaba: An Atrous-Window Scanning Visual State Space Model for Remote Sensing Change Detection
(the arXiv title spells it so; the model is called AtrousMamba in the text)
- paper: https://arxiv.org/abs/2507.16172 (2025)
- code: none public. Reference code of the parts it builds on: VMamba https://github.com/MzeroMiko/VMamba
  (MIT), ChangeMamba https://github.com/ChenHongruixuan/MambaCD (Apache-2.0).

VMamba v2 with the scan swapped: a stride-4 conv stem, four stages at strides 4 / 8 / 16 / 32 with widths
C, 2C, 4C, 8C (3x3 stride-2 conv + LayerNorm between stages), pre-norm VSS blocks (selective-scan mixer + GELU
MLP), a final LayerNorm and a linear head. In each block the four scan directions follow atrous windows
instead of whole rows / columns: the grid is cut into blocks of r*w x r*w cells, each block holds r*r dilated
windows of w x w tokens taken every r cells, and consecutive tokens of a scan are r cells apart; the
directions are windows row-major, windows column-major and the reverse of each (`vimamba.scans`
'atrous_window'). The rate grows with depth, so the scan range widens gradually.

Only the paper's abstract is reachable, so the following are PROPOSALS (docs/families.md#atrousmamba), each a
constructor argument so that it can be changed when the paper's details are known:
- AWVSS = VMamba's VSS block unchanged except for the scan index maps; same parameters as VMamba, so VMamba
  ImageNet checkpoints load one to one (`checkpoint_filter_fn`) -> `scan='atrous_window'` (any pattern of
  `vimamba.scans` is accepted; 'cross' gives VMamba itself).
- The window order (blocks outer, dilation phases, tokens inside a window) with four directions in
  VMamba's cross2d order -> the 'atrous_window' pattern.
- Window size w = 8 (divides the 64 / 32 / 16 / 8 grids of 256-px crops) -> `window_size`.
- Rates per stage cycling over the blocks of a stage, default (1, 2, 4) in every stage, so the span grows
  with depth -> `atrous_rates` (one sequence for all stages, or one per stage).
- On a grid too small for a rate the rate is clipped to the largest r with r*w <= max(H, W) (at least 1) ->
  `rate_overflow='clip'`; `rate_overflow='error'` raises instead, naming the grid, window and rate.
- Blocks of span r*w outermost, dilation phases inside them -> `atrous_order='window'`; the alternative
  (a), dilation phases outermost over the whole image, each cut into windows, is `atrous_order='phase'`;
  alternative (b), all rates in every block (ASPP-like, shared weights, outputs averaged) is
  `atrous_mode='parallel'`.
- Tiny / small / base = VMamba v2 T / S / B ("s2": ssm_ratio 2, d_state 1, "noz" mixer, init v0); the "s1"
  VMamba variants (ssm_ratio 1, deeper third stage) are registered too.

| variant | C | depths | ssm_ratio | params (= VMamba v2) |
|---|---|---|---|---|
| atrousmamba_tiny | 96 | 2, 2, 5, 2 | 2 | 30,705,832 |
| atrousmamba_small | 96 | 2, 2, 15, 2 | 2 | 50,147,752 |
| atrousmamba_base | 128 | 2, 2, 15, 2 | 2 | 88,557,800 |
| atrousmamba_tiny_s1l8 | 96 | 2, 2, 8, 2 | 1 | 30,249,064 |
| atrousmamba_small_s1l20 | 96 | 2, 2, 20, 2 | 1 | 49,012,840 |
| atrousmamba_base_s1l20 | 128 | 2, 2, 20, 2 | 1 | 86,614,504 |

Differences from VMamba's code, by design: the downsample conv sits at the start of the next stage (timm
style; VMamba's `layers.i.downsample` ends stage i), modules are named for what they are (`stem`, `stages`,
`mixer`, `norm`, `head`); `checkpoint_filter_fn` maps VMamba's names and reshapes its Linear weights.
Checked against the official VMamba code (vmamba.py @2ed52ea, pure-PyTorch scan) with `scan='cross'` and
perturbed random weights: same logits (max abs diff 3e-7, fp32) for its channel-first ("ln2d") and channel-last
("ln") layouts, square and non-square inputs.
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
    """AtrousMamba (AWVSS) classifier / backbone; with `scan='cross'` it is VMamba v2.

    Feature levels (`feature_info`, `forward_intermediates`): 0..3 = stages at strides 4, 8, 16, 32.

    Args:
        in_chans: Input image channels.
        num_classes: Classifier outputs (0: no classifier, `forward` returns pooled features).
        global_pool: 'avg' or '' (no pooling; only with num_classes=0).
        embed_dim: Width of the first stage (an int; stage i has embed_dim * 2**i) or of every stage.
        depths: VSS blocks per stage.
        d_state: SSM state size N.
        ssm_ratio: Mixer inner width = ssm_ratio * stage width.
        dt_rank: dt projection rank ('auto' = ceil(width / 16)).
        d_conv: Mixer depthwise conv kernel.
        conv_bias: Bias on the mixer's depthwise conv.
        gate: Gate the mixer output with SiLU(z) (False = VMamba v2's "noz" form).
        mlp_ratio: MLP hidden width ratio.
        scan: 'atrous_window' (AWVSS, PROPOSED) or any other pattern of `vimamba.scans` ('cross' = VMamba).
        window_size: Atrous window side w (PROPOSED default 8).
        atrous_rates: Rates cycling over the blocks of each stage: one tuple for all stages, or one per stage
            (PROPOSED default (1, 2, 4)).
        rate_overflow: 'clip' (PROPOSED: largest r with r*w <= max(H, W)) or 'error' on grids too small for a rate.
        atrous_order: 'window' (PROPOSED: span blocks outer, dilation phases inside) or 'phase' (alternative
            (a): whole-image dilation phases outer, each cut into windows).
        atrous_mode: 'cycle' (PROPOSED: one rate per block, cycling) or 'parallel' (alternative (b): every
            block scans all its stage's rates with shared weights and averages them; same parameters).
        drop_rate: Dropout before the classifier.
        drop_path_rate: Stochastic depth, linear from 0 over all blocks.
        img_size: Nominal input size (the model works at any size; it sets the size `dynamic_img_size=False` checks).
        dynamic_img_size: Accept any input size (True: default; False: only `img_size`).
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
        # VMamba's optimiser skips A_logs and Ds (`_no_weight_decay` flags); D is 1-D and skipped anyway.
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


# VMamba state-dict names -> ours. Stem: Sequential(conv, -, LN, -, GELU, conv, -, LN); downsample "v3":
# Sequential(-, conv, -, LN) at the END of stage i (here: the start of stage i + 1).
_VMAMBA_STEM = {'0': 'conv1', '2': 'norm1', '5': 'conv2', '7': 'norm2'}
_VMAMBA_MIXER = {
    'conv2d.': 'dwconv.', 'A_logs': 'A_log', 'Ds': 'D', 'dt_projs_weight': 'dt_proj_weight',
    'dt_projs_bias': 'dt_proj_bias',
}


def _convert_vmamba_key(key: str) -> Optional[str]:
    """One VMamba / ChangeMamba-encoder key in our names; None for keys with no counterpart (outnorm*)."""
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
    if parts[0].startswith('outnorm'):  # ChangeMamba's Backbone_VSSM per-level norms: no counterpart here
        return None
    return key


def checkpoint_filter_fn(
        state_dict: Dict[str, Any],
        model: AtrousMamba,
        strict: bool = True,
) -> Dict[str, torch.Tensor]:
    """Convert a VMamba (v2, channel-first or -last) or AtrousMamba checkpoint to `model`'s names and shapes.

    Takes the official training checkpoints ({'model', 'model_ema', 'config', ...}: 'model', the weights VMamba's
    own loader takes), other containers, raw dicts and our own names. Linear weights (out, in) become 1x1 conv
    weights (out, in, 1, 1). `strict=False` keeps only matching keys (e.g. ChangeMamba's tiny encoder, depths
    (2, 2, 4, 2), from VMamba-T weights with depths (2, 2, 5, 2)).
    """
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
    if isinstance(model.head, nn.Identity):  # num_classes=0: the classifier weights have no target
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


# VMamba v2 ImageNet-1k checkpoints, GitHub release assets of MzeroMiko/VMamba (release tag '#v2cls'), per size:
# (file, variant, top-1 with the cross scan). `vmamba_*` loads them as `.in1k`; no AtrousMamba weights exist, and
# the paper starts from the VMamba weights of the same size, which `atrousmamba_*.vmamba_in1k` loads.
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
