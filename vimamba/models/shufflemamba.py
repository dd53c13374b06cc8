"""ShuffleMamba: Vision Mamba trained with Stochastic Layer-Wise Shuffle (SLWS)

Paper: `Stochastic Layer-Wise Shuffle: A Good Practice to Improve Vision Mamba Training` (ICML 2025)
    - https://arxiv.org/abs/2408.17081
Official code: https://github.com/huangzizheng01/ShuffleMamba
SLWS (training only): layer l permutes the sequence with probability shuffle_rate * l / (depth - 1), shared by the
batch, and restores both streams after the block. Backbones: Vim's stack with a head class token, or Mamba-Reg's
interleaved registers pooled through a Linear neck. The model class is `VisionMamba` (vim.py).
"""
from typing import Any, Dict

import torch
from timm.models import generate_default_cfgs, register_model

from ..checkpoint import fit_state_dict
from .vim import VisionMamba, _cfg as _vim_cfg, build_vim_variant, remap_official_state_dict

__all__ = []

_SHUFFLE_ARGS = dict(class_token=True, cls_position='head', weight_init='shufflemamba', shuffle_rate=0.1)
_REG_ARGS = dict(class_token=False, weight_init='vim', shuffle_rate=0.1)


def checkpoint_filter_fn(
        state_dict: Dict[str, Any], model: VisionMamba, strict: bool = True) -> Dict[str, torch.Tensor]:
    """Load official ShuffleMamba (head-cls pos_embed) or Mamba-Reg (`pos_embed_cls`, `neck`, `norm_neck`) weights."""
    return fit_state_dict(remap_official_state_dict(state_dict, model), model, strict)


_ORIGIN = dict(
    # The official repository has no license file.
    license='other',
    paper_ids='arXiv:2408.17081',
    paper_name='Stochastic Layer-Wise Shuffle: A Good Practice to Improve Vision Mamba Training',
    origin_url='https://github.com/huangzizheng01/ShuffleMamba',
    notes=('No official weights released yet (README to-do list).',),
)


def _cfg(url: str = '', **kwargs) -> Dict[str, Any]:
    return _vim_cfg(url, **dict(_ORIGIN, **kwargs))


default_cfgs = generate_default_cfgs({
    'shufflemamba_middle_patch16_224': _cfg(),
    'shufflemamba_base_patch16_224': _cfg(),
    'shufflemamba_large_patch16_224': _cfg(),
    'shufflemamba_large_d48_patch16_224': _cfg(),
    # The Reg recipe's last stage evaluates at crop 1.0.
    'shufflemamba_tiny_patch16_reg12_224': _cfg(crop_pct=1.0),
    'shufflemamba_small_patch16_reg12_224': _cfg(crop_pct=1.0),
    'shufflemamba_base_patch16_reg12_224': _cfg(crop_pct=1.0),
    'shufflemamba_large_patch16_reg16_224': _cfg(crop_pct=1.0),
    'test_shufflemamba': _cfg(input_size=(3, 64, 64), license=None, notes=None),
    'test_shufflemamba_reg': _cfg(input_size=(3, 64, 64), license=None, notes=None),
})


def _create_shufflemamba(variant: str, pretrained: bool = False, **kwargs) -> VisionMamba:
    return build_vim_variant(variant, pretrained, checkpoint_filter_fn, **kwargs)


@register_model
def shufflemamba_middle_patch16_224(pretrained: bool = False, **kwargs) -> VisionMamba:
    """ShuffleMamba-M (official `mambar_middle_patch16_224`): 576 x 32 layers, LayerNorm, 74.24M params."""
    model_args = dict(patch_size=16, embed_dim=576, depth=32, norm_layer='layernorm', **_SHUFFLE_ARGS)
    return _create_shufflemamba('shufflemamba_middle_patch16_224', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def shufflemamba_base_patch16_224(pretrained: bool = False, **kwargs) -> VisionMamba:
    """ShuffleMamba-B (official `mambar_base_patch16_224`, trained with shuffle_rate 0.5): 97.60M params."""
    model_args = dict(patch_size=16, embed_dim=768, depth=24, **dict(_SHUFFLE_ARGS, shuffle_rate=0.5))
    return _create_shufflemamba('shufflemamba_base_patch16_224', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def shufflemamba_large_patch16_224(pretrained: bool = False, **kwargs) -> VisionMamba:
    """ShuffleMamba-L, 40 layers (official `mambar_large_patch16_224_40`, the "~300M" model): 283.70M params."""
    model_args = dict(patch_size=16, embed_dim=1024, depth=40, **_SHUFFLE_ARGS)
    return _create_shufflemamba('shufflemamba_large_patch16_224', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def shufflemamba_large_d48_patch16_224(pretrained: bool = False, **kwargs) -> VisionMamba:
    """ShuffleMamba-L, 48 layers (official `mambar_large_patch16_224` of models_shuffle.py): 340.03M params."""
    model_args = dict(patch_size=16, embed_dim=1024, depth=48, **_SHUFFLE_ARGS)
    return _create_shufflemamba(
        'shufflemamba_large_d48_patch16_224', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def shufflemamba_tiny_patch16_reg12_224(pretrained: bool = False, **kwargs) -> VisionMamba:
    """ShuffleMamba-Reg-T (Mamba-Reg layout, 12 registers, no neck): 9.26M params."""
    model_args = dict(patch_size=16, embed_dim=192, depth=24, reg_tokens=12, reg_reduction=1, **_REG_ARGS)
    return _create_shufflemamba(
        'shufflemamba_tiny_patch16_reg12_224', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def shufflemamba_small_patch16_reg12_224(pretrained: bool = False, **kwargs) -> VisionMamba:
    """ShuffleMamba-Reg-S (12 registers, neck C/2): 27.80M params."""
    model_args = dict(patch_size=16, embed_dim=384, depth=24, reg_tokens=12, reg_reduction=2, **_REG_ARGS)
    return _create_shufflemamba(
        'shufflemamba_small_patch16_reg12_224', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def shufflemamba_base_patch16_reg12_224(pretrained: bool = False, **kwargs) -> VisionMamba:
    """ShuffleMamba-Reg-B (12 registers, neck C/4; trained with shuffle_rate 0.1): 99.30M params."""
    model_args = dict(patch_size=16, embed_dim=768, depth=24, reg_tokens=12, reg_reduction=4, **_REG_ARGS)
    return _create_shufflemamba(
        'shufflemamba_base_patch16_reg12_224', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def shufflemamba_large_patch16_reg16_224(pretrained: bool = False, **kwargs) -> VisionMamba:
    """ShuffleMamba-Reg-L (48 layers, 16 registers, neck C/8): 341.22M params."""
    model_args = dict(patch_size=16, embed_dim=1024, depth=48, reg_tokens=16, reg_reduction=8, **_REG_ARGS)
    return _create_shufflemamba(
        'shufflemamba_large_patch16_reg16_224', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def test_shufflemamba(pretrained: bool = False, **kwargs) -> VisionMamba:
    """Tiny ShuffleMamba for tests: head cls, LayerNorm, shuffle on."""
    model_args = dict(img_size=64, patch_size=16, embed_dim=32, depth=4, d_state=8, norm_layer='layernorm',
                      **dict(_SHUFFLE_ARGS, shuffle_rate=0.5))
    return _create_shufflemamba('test_shufflemamba', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def test_shufflemamba_reg(pretrained: bool = False, **kwargs) -> VisionMamba:
    """Tiny ShuffleMamba-Reg for tests: 3 interleaved registers with a neck, shuffle on."""
    model_args = dict(img_size=64, patch_size=16, embed_dim=32, depth=4, d_state=8, reg_tokens=3, reg_reduction=2,
                      **dict(_REG_ARGS, shuffle_rate=0.5))
    return _create_shufflemamba('test_shufflemamba_reg', pretrained=pretrained, **dict(model_args, **kwargs))
