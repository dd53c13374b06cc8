"""Layer-wise lr decay (BEiT's `lr * rate ** (num_layers - layer_id)`) from the backbone's `get_layer_depth`.

No weight decay on `no_weight_decay()` and norms; biases decay (as the official configs); `custom_keys` on top.
Not reproduced: Vim's / LBVim's constructors match `blocks.N` in `layers.N` names, so their blocks got no decay.
"""
import fnmatch
import logging
from typing import Dict, List, Optional

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

__all__ = ['LayerDecayOptimWrapperConstructor']

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


def _is_norm(module: nn.Module) -> bool:
    # the class name catches vimamba's fp32 norm wrappers and timm's LayerNorm2d
    return isinstance(module, _NORM_TYPES) or 'norm' in type(module).__name__.lower()


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """`paramwise_cfg`: `layer_decay_rate` (1.0: none), `custom_keys`, `bias_decay_mult`, `backbone` (attribute)."""

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        # never empty: mmengine's constructor skips add_params (and so the no-decay rules) for an empty one
        paramwise_cfg = dict(paramwise_cfg or {})
        paramwise_cfg.setdefault('layer_decay_rate', 1.0)
        super().__init__(optim_wrapper_cfg, paramwise_cfg)

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', is_dcn_module=None) -> None:
        rate = float(self.paramwise_cfg.get('layer_decay_rate', 1.0))
        custom_keys: Dict[str, dict] = self.paramwise_cfg.get('custom_keys', {})
        sorted_keys = sorted(sorted(custom_keys), key=len, reverse=True)
        bias_decay_mult = self.paramwise_cfg.get('bias_decay_mult', None)
        backbone_attr = self.paramwise_cfg.get('backbone', 'backbone')
        backbone: Optional[nn.Module] = getattr(module, backbone_attr, None)
        if backbone is None or not hasattr(backbone, 'get_layer_depth'):
            raise TypeError(
                f'LayerDecayOptimWrapperConstructor: {type(module).__name__}.{backbone_attr} is '
                f'{type(backbone).__name__}, which has no get_layer_depth(); use type=\'VimambaBackbone\'')
        bb_prefix = backbone_attr + '.'
        no_decay = ([bb_prefix + p for p in sorted(backbone.no_weight_decay())]
                    if hasattr(backbone, 'no_weight_decay') else [])
        norm_params = {id(p) for m in module.modules() if _is_norm(m) for p in m.parameters(recurse=False)}
        num_layers = 0

        groups: Dict[tuple, dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            lr_mult = 1.0  # above the backbone: the top layer
            if name.startswith(bb_prefix):
                layer_id, num_layers = backbone.get_layer_depth(name[len(bb_prefix):])
                lr_mult = rate ** (num_layers - layer_id)
            decay_mult = 1.0
            if id(param) in norm_params or any(fnmatch.fnmatch(name, p) for p in no_decay):
                decay_mult = 0.0
            elif name.endswith('.bias') and bias_decay_mult is not None:
                decay_mult = float(bias_decay_mult)
            for key in sorted_keys:
                if key in name:
                    lr_mult *= custom_keys[key].get('lr_mult', 1.0)
                    decay_mult *= custom_keys[key].get('decay_mult', 1.0)
                    break
            group_key = (lr_mult, decay_mult)
            if group_key not in groups:
                group = {'params': [], 'lr': self.base_lr * lr_mult}
                if self.base_wd is not None:
                    group['weight_decay'] = self.base_wd * decay_mult
                groups[group_key] = group
            groups[group_key]['params'].append(param)
        params.extend(groups.values())
        summary = ', '.join(f'lr x{k[0]:.4g} wd x{k[1]:g}: {len(g["params"])}' for k, g in groups.items())
        print_log(f'LayerDecayOptimWrapperConstructor: rate {rate}, {num_layers} backbone layers; groups '
                  f'({len(groups)}): {summary}', logger='current', level=logging.INFO)
