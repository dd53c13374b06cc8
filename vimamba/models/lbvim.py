"""LBVim: Vision Mamba on the locally bi-directional Mamba scan (LBMamba)

Paper: `LBMamba: Locally Bi-directional Mamba` (TMLR) - https://arxiv.org/abs/2506.15976
Official code: https://github.com/cvlab-stonybrook/LBMamba
One scan per layer: the forward recurrence plus a reverse one within windows of W steps (the official kernel's rule),
on Vim's single-direction parameters; no class token. Difference from the official code: odd layers scan reversed
instead of flipping the sequence after every layer. The model class is `VisionMamba` (vim.py).
"""
from typing import Any, Dict

import torch
from timm.models import generate_default_cfgs, register_model

from ..checkpoint import fit_state_dict
from .vim import VisionMamba, _cfg as _vim_cfg, build_vim_variant, remap_official_state_dict

__all__ = []

_LBVIM_ARGS = dict(
    class_token=False, bimamba=False, local_window=None, alternate_direction=True, global_pool='avg')


def checkpoint_filter_fn(
        state_dict: Dict[str, Any], model: VisionMamba, strict: bool = True) -> Dict[str, torch.Tensor]:
    """Load official LBVim checkpoints (no `_b` parameters; LBVim-528's `head.0` pool and `head.1` classifier)."""
    return fit_state_dict(remap_official_state_dict(state_dict, model), model, strict)


_ORIGIN = dict(
    # The official repository has no license file.
    license='other',
    paper_ids='arXiv:2506.15976',
    paper_name='LBMamba: Locally Bi-directional Mamba',
    origin_url='https://github.com/cvlab-stonybrook/LBMamba',
    notes=('No official weights released (the README link is empty).',),
)


def _cfg(url: str = '', **kwargs) -> Dict[str, Any]:
    return _vim_cfg(url, **dict(_ORIGIN, **kwargs))


default_cfgs = generate_default_cfgs({
    'lbvim_tiny_patch16_224': _cfg(),
    'lbvim_300_patch16_224': _cfg(),
    'lbvim_small_patch16_224': _cfg(),
    'lbvim_528_patch16_224': _cfg(),
    'test_lbvim': _cfg(input_size=(3, 64, 64), license=None, notes=None),
})


def _create_lbvim(variant: str, pretrained: bool = False, **kwargs) -> VisionMamba:
    return build_vim_variant(variant, pretrained, checkpoint_filter_fn, **kwargs)


@register_model
def lbvim_tiny_patch16_224(pretrained: bool = False, **kwargs) -> VisionMamba:
    """LBVim-T: 6.42M params."""
    model_args = dict(patch_size=16, embed_dim=192, depth=24, **_LBVIM_ARGS)
    return _create_lbvim('lbvim_tiny_patch16_224', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def lbvim_300_patch16_224(pretrained: bool = False, **kwargs) -> VisionMamba:
    """LBVim-300 (width 300, matched to a Vim's throughput): 14.90M params."""
    model_args = dict(patch_size=16, embed_dim=300, depth=24, **_LBVIM_ARGS)
    return _create_lbvim('lbvim_300_patch16_224', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def lbvim_small_patch16_224(pretrained: bool = False, **kwargs) -> VisionMamba:
    """LBVim-S: 23.90M params."""
    model_args = dict(patch_size=16, embed_dim=384, depth=24, **_LBVIM_ARGS)
    return _create_lbvim('lbvim_small_patch16_224', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def lbvim_528_patch16_224(pretrained: bool = False, **kwargs) -> VisionMamba:
    """LBVim-528 with the latent attention-pool head (official `lbvim_528_patch16_224_atthead`): 44.82M params."""
    model_args = dict(patch_size=16, embed_dim=528, depth=24, **dict(_LBVIM_ARGS, global_pool='map'),
                      attn_pool_heads=6)
    return _create_lbvim('lbvim_528_patch16_224', pretrained=pretrained, **dict(model_args, **kwargs))


@register_model
def test_lbvim(pretrained: bool = False, **kwargs) -> VisionMamba:
    """Tiny LBVim for tests, with the attention-pool head (16 tokens -> window 4)."""
    model_args = dict(img_size=64, patch_size=16, embed_dim=32, depth=4, d_state=8,
                      **dict(_LBVIM_ARGS, global_pool='map'), attn_pool_heads=2)
    return _create_lbvim('test_lbvim', pretrained=pretrained, **dict(model_args, **kwargs))
