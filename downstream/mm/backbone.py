"""`VimambaBackbone`: any vimamba timm model as an OpenMMLab backbone (mmseg and mmdet alike).

Keeps only the blocks / stages feeding the outputs (no unused parameters under DDP) and returns NCHW maps, for plain
families usually through a deconv feature pyramid (Vim's segmentation adapter, ViTDet's simple pyramid).
"""
import logging
import math
import re
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple, Union

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from timm.layers import LayerNorm2d
from timm.models import group_parameters

import vimamba  # noqa: F401  registers the models with timm
from vimamba.checkpoint import (
    CheckpointError, CheckpointMismatchError, checkpoint_filter_for, read_checkpoint, unwrap_state_dict)
from vimamba.registry import check_model_name, family_of

__all__ = ['VimambaBackbone', 'PLAIN_FAMILIES']

# timm modules (family files) whose models are plain: one token grid at one stride, blocks indexed 0..depth-1.
PLAIN_FAMILIES = ('vim', 'lbvim', 'shufflemamba')


def _family(model_name: str) -> str:
    check_model_name(model_name, 'model_name', vimamba.list_models(include_test=True), 'vimamba model')
    return family_of(model_name)


def _build_norm(norm_cfg: Dict[str, Any], channels: int) -> nn.Module:
    """BN / SyncBN / GN through mmcv's registry; 'LN2d' (or 'LN') as a channels-first LayerNorm."""
    cfg = dict(norm_cfg)
    kind = cfg.pop('type')
    if kind in ('LN', 'LN2d'):
        return LayerNorm2d(channels, **cfg)
    from mmcv.cnn import build_norm_layer
    return build_norm_layer(dict(type=kind, **cfg), channels)[1]


def _resample_op(scale: float, channels: int, norm_cfg: Dict[str, Any]) -> nn.Module:
    """x`scale` resolution: transposed convs up (x2 each, norm + GELU between), max-pool down."""
    if scale == 1:
        return nn.Identity()
    if scale < 1:
        return nn.MaxPool2d(kernel_size=round(1 / scale), stride=round(1 / scale))
    steps = round(math.log2(scale))
    layers: List[nn.Module] = []
    for i in range(steps):
        if i:
            layers += [_build_norm(norm_cfg, channels), nn.GELU()]
        layers.append(nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2))
    return nn.Sequential(*layers) if len(layers) > 1 else layers[0]


def _is_power_of_two_ratio(a: int, b: int) -> bool:
    ratio = a / b if a >= b else b / a
    return ratio == int(ratio) and int(ratio) & (int(ratio) - 1) == 0


@MODELS.register_module()
class VimambaBackbone(BaseModule):
    """A vimamba model as an mmseg / mmdet backbone.

    Args:
        model_name: a vimamba timm model (`vimamba.list_models()`; tiny `test_*` ones too).
        out_indices: blocks (plain families) or `feature_info` levels (hierarchical) whose maps are returned.
            Default: four evenly spaced blocks ending at the last (plain), every stage without the stem.
        img_size: position embedding size (plain families); default the pretraining size.
        frozen_stages: -1: none; 0: the stem (incl. position embedding, class / register tokens); k > 0: also the
            first k levels (plain: blocks up to out_indices[k - 1]). Frozen parts stay in eval mode.
        norm_eval: keep the model's BatchNorms in eval mode while training.
        pyramid: 'deconv' (transposed convs / identity / max-pool), 'none', 'auto' ('deconv' for plain families).
        pyramid_strides: output strides; map i goes to stride i when the counts match, else each stride comes from
            the finest map of stride >= it (upsampled) or, past the coarsest, from that one (max-pooled).
        pyramid_norm_cfg: the norm between two transposed convs ('BN', 'SyncBN', 'GN', 'LN2d').
        out_norm: a LayerNorm on every returned map before the pyramid (LBVim's and VMamba's `outnorm`).
        pretrained: a checkpoint (file or URL), short for `init_cfg=dict(type='Pretrained', checkpoint=...)`.
        init_cfg: `dict(type='Pretrained', checkpoint=PATH_OR_URL, prefix=None)` through the family's checkpoint
            filter (mm checkpoints: `prefix='backbone.model.'`); any missing or unexpected key errs.
    """

    def __init__(
            self,
            model_name: str,
            out_indices: Optional[Sequence[int]] = None,
            img_size: Optional[Union[int, Tuple[int, int]]] = None,
            drop_path_rate: float = 0.,
            frozen_stages: int = -1,
            norm_eval: bool = False,
            with_cp: bool = False,
            pyramid: str = 'auto',
            pyramid_strides: Sequence[int] = (4, 8, 16, 32),
            pyramid_norm_cfg: Optional[Dict[str, Any]] = None,
            out_norm: bool = False,
            model_kwargs: Optional[Dict[str, Any]] = None,
            pretrained: Optional[str] = None,
            init_cfg: Optional[Dict[str, Any]] = None,
    ):
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError(f'pretrained={pretrained!r} and init_cfg={init_cfg!r}: give one of the two')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        if init_cfg is not None and (not isinstance(init_cfg, dict) or init_cfg.get('type') != 'Pretrained'):
            raise ValueError(f"init_cfg: only dict(type='Pretrained', checkpoint=...) is accepted (the model "
                             f"initialises itself as its family does), got {init_cfg!r}")
        if pyramid not in ('auto', 'deconv', 'none'):
            raise ValueError(f"pyramid: expected 'auto', 'deconv' or 'none', got {pyramid!r}")
        super().__init__(init_cfg)
        self.model_name = model_name
        self.family = _family(model_name)
        self.plain = self.family in PLAIN_FAMILIES
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval

        kwargs = dict(model_kwargs or {})
        kwargs['drop_path_rate'] = drop_path_rate
        if self.plain:
            kwargs['dynamic_img_size'] = True
            if img_size is not None:
                kwargs['img_size'] = img_size
        elif img_size is not None:
            raise ValueError(f'img_size: only the plain families ({", ".join(PLAIN_FAMILIES)}) have a fixed '
                             f'input size; {model_name} ({self.family}) takes any size')
        self._model_kwargs = kwargs
        model = timm.create_model(model_name, pretrained=False, **kwargs)

        num_levels = len(model.feature_info)
        if out_indices is None:
            if self.plain:
                out_indices = [round(num_levels * (i + 1) / 4) - 1 for i in range(4)]
            else:  # every stage: the levels after the stem (MobileMamba's level 0 is its stem)
                stem = re.compile(self._stem_regex(model))
                out_indices = [i for i, f in enumerate(model.feature_info) if not stem.match(f['module'])]
        out_indices = tuple(int(i) for i in out_indices)
        bad = [i for i in out_indices if not -num_levels <= i < num_levels]
        if bad or not out_indices:
            raise ValueError(f'out_indices: {out_indices} for {model_name}, which has {num_levels} '
                             f'{"blocks" if self.plain else "feature levels"} (0..{num_levels - 1})')
        self.out_indices = tuple(i % num_levels for i in out_indices)
        self.feature_info = [model.feature_info[i] for i in self.out_indices]
        in_strides = [int(f['reduction']) for f in self.feature_info]
        in_channels = [int(f['num_chs']) for f in self.feature_info]

        model.prune_intermediate_layers(list(self.out_indices), prune_norm=True, prune_head=True)
        self.model = model
        if with_cp:
            self.model.set_grad_checkpointing(True)

        self.out_norms = nn.ModuleList(LayerNorm2d(c) for c in in_channels) if out_norm else None

        pyramid = ('deconv' if self.plain else 'none') if pyramid == 'auto' else pyramid
        self.pyramid_sources: Optional[List[int]] = None
        if pyramid == 'deconv':
            norm_cfg = pyramid_norm_cfg or dict(type='BN')
            strides = [int(s) for s in pyramid_strides]
            if len(strides) == len(in_strides):
                sources = list(range(len(strides)))
            else:
                sources = []
                # among maps of one stride the deepest one serves
                for t in strides:
                    coarser = [j for j, s in enumerate(in_strides) if s >= t]
                    sources.append(min(coarser, key=lambda j: (in_strides[j], -j)) if coarser
                                   else max(range(len(in_strides)), key=lambda j: (in_strides[j], j)))
                unused = sorted(set(range(len(in_strides))) - set(sources))
                if unused:
                    raise ValueError(
                        f'out_indices: the maps of {[self.out_indices[j] for j in unused]} feed no level of '
                        f'pyramid_strides {tuple(strides)} (map strides {in_strides}); give one index per '
                        f'stride, or one index for all')
            ops = []
            for t, j in zip(strides, sources):
                if not _is_power_of_two_ratio(in_strides[j], t):
                    raise ValueError(f'pyramid_strides: {t} cannot be reached from a stride-{in_strides[j]} map '
                                     f'by factors of 2 ({model_name}, out_indices {self.out_indices})')
                ops.append(_resample_op(in_strides[j] / t, in_channels[j], norm_cfg))
            self.pyramid = nn.ModuleList(ops)
            self.pyramid_sources = sources
            self.out_strides = strides
            self.out_channels = [in_channels[j] for j in sources]
        else:
            self.pyramid = None
            self.out_strides = in_strides
            self.out_channels = in_channels

        self._frozen_prefixes = self._frozen_module_prefixes()
        self._freeze()


    def _stem_regex(self, model: Optional[nn.Module] = None) -> str:
        return (self.model if model is None else model).group_matcher()['stem']

    def _frozen_module_prefixes(self) -> Tuple[str, ...]:
        """Names (inside `self.model`) of the modules / parameters that `frozen_stages` freezes, besides the stem."""
        k = self.frozen_stages
        if k <= 0:
            return ()
        if self.plain:
            if k > len(self.out_indices):
                raise ValueError(f'frozen_stages: {k} > the {len(self.out_indices)} output levels of {self.model_name}')
            last = self.out_indices[k - 1]
            return tuple(f'blocks.{i}.' for i in range(last + 1))
        stem = re.compile(self._stem_regex())
        levels = [f['module'] for f in self.model.feature_info if not stem.match(f['module'])]
        if k > len(levels):
            raise ValueError(f'frozen_stages: {k} > the {len(levels)} stages of {self.model_name}')
        return tuple(name + '.' for name in levels[:k])

    def _is_frozen(self, name: str) -> bool:
        if self.frozen_stages < 0:
            return False
        return bool(re.match(self._stem_regex(), name)) or name.startswith(self._frozen_prefixes)

    def _freeze(self) -> None:
        if self.frozen_stages < 0:
            return
        for name, param in self.model.named_parameters():
            if self._is_frozen(name):
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'VimambaBackbone':
        super().train(mode)
        if mode and self.frozen_stages >= 0:
            for name, module in self.model.named_modules():
                if name and self._is_frozen(name + '.'):
                    module.eval()
        if mode and self.norm_eval:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


    def init_weights(self) -> None:
        """Load `init_cfg`'s checkpoint (if any); never re-draw (marked initialised, so mmengine won't either)."""
        if self.init_cfg is not None:
            cfg = self.init_cfg
            self.load_pretrained(cfg['checkpoint'], prefix=cfg.get('prefix'))
        self._is_init = True

    def _reference_model(self) -> nn.Module:
        """The unpruned model with its classifier, on the meta device: the key set a checkpoint should have."""
        with torch.device('meta'):
            return timm.create_model(self.model_name, pretrained=False, **self._model_kwargs)

    def load_pretrained(self, checkpoint: str, prefix: Optional[str] = None) -> None:
        """Load `checkpoint` into the model; raise `CheckpointMismatchError` listing the keys on a mismatch."""
        raw = _read_checkpoint(checkpoint)
        reference = self._reference_model()
        if prefix:
            state = unwrap_state_dict(raw, arg='init_cfg.checkpoint')
            raw = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            if not raw:
                raise CheckpointError(f'init_cfg: no key of {checkpoint} starts with prefix {prefix!r}')
        own = self.model.state_dict()
        filter_fn = checkpoint_filter_for(reference)
        try:
            state = filter_fn(raw, reference, strict=True)
        except CheckpointMismatchError as e:
            # a backbone's own checkpoint (prefix=...) lacks what the backbone prunes: later blocks, norm, head
            if e.unexpected or e.mismatched or set(e.missing) & set(own):
                raise
            state = filter_fn(raw, reference, strict=False)
        skipped = sorted(k for k in state if k not in own)
        self.model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
        print_log(f'VimambaBackbone: loaded {len(own)} tensors of {self.model_name} from {checkpoint}'
                  + (f' ({len(skipped)} unused by the backbone: classifier, final norm, pruned blocks)'
                     if skipped else ''), logger='current', level=logging.INFO)


    def get_layer_depth(self, param_name: str) -> Tuple[int, int]:
        """(layer id, number of layers) from the timm `group_matcher`: 0 = stem; pyramid and out norms on top."""
        layer_map = self._layer_map()
        num_layers = max(layer_map.values()) + 1
        if param_name.startswith('model.'):
            return layer_map.get(param_name[len('model.'):], num_layers), num_layers
        return num_layers, num_layers

    def _layer_map(self) -> Dict[str, int]:
        if getattr(self, '_layer_map_cache', None) is None:
            self._layer_map_cache = group_parameters(self.model, self.model.group_matcher(coarse=False), reverse=True)
        return self._layer_map_cache

    def no_weight_decay(self) -> Set[str]:
        """The model's `no_weight_decay()` names or fnmatch patterns, relative to this module."""
        return {'model.' + n for n in self.model.no_weight_decay()}


    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad right / bottom so that the patch grid covers the whole image (plain families)."""
        if not self.plain:
            return x
        patch, stride = self.model.patch_embed.patch_size, self.model.patch_embed.stride
        pads = []
        for size, p, s in zip(x.shape[-2:], patch, stride):
            cover = p if size <= p else p + math.ceil((size - p) / s) * s
            pads.append(cover - size)
        if pads[0] or pads[1]:
            x = F.pad(x, (0, pads[1], 0, pads[0]))
        return x

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        maps = self.model.forward_intermediates(
            self._pad(x), indices=list(self.out_indices), stop_early=True, intermediates_only=True)
        if self.out_norms is not None:
            maps = [norm(m) for norm, m in zip(self.out_norms, maps)]
        if self.pyramid is None:
            return tuple(maps)
        return tuple(op(maps[j]) for op, j in zip(self.pyramid, self.pyramid_sources))


def _read_checkpoint(checkpoint: str) -> Dict[str, Any]:
    """A local file, or a URL downloaded once into torch hub's cache; read by vimamba's checkpoint reader."""
    if checkpoint.startswith(('http://', 'https://')):
        from timm.models._hub import download_cached_file
        checkpoint = download_cached_file(checkpoint, check_hash=False)
    return read_checkpoint(checkpoint, 'init_cfg.checkpoint')
