"""VMamba v2: the published VMamba image classifiers / backbones under their own names

VMamba: Visual State Space Model - https://arxiv.org/abs/2401.10166 (NeurIPS 2024)
- code: https://github.com/MzeroMiko/VMamba (MIT)

The model is `vimamba.models.atrousmamba.AtrousMamba` with `scan='cross'` (VMamba's four cross2d directions),
built by the same builder and loaded by the same `checkpoint_filter_fn`; see that module for the architecture and
the check against the official code. "s2": ssm_ratio 2, "s1": ssm_ratio 1; "lN": N blocks in the third stage.

| variant | C | depths | ssm_ratio | params | official params / GFLOPs / top-1 |
|---|---|---|---|---|---|
| vmamba_tiny_s2l5 | 96 | 2, 2, 5, 2 | 2 | 30,705,832 | 31M / 4.9 / 82.5 |
| vmamba_small_s2l15 | 96 | 2, 2, 15, 2 | 2 | 50,147,752 | 50M / 8.7 / 83.6 |
| vmamba_base_s2l15 | 128 | 2, 2, 15, 2 | 2 | 88,557,800 | 89M / 15.4 / 83.9 |
| vmamba_tiny_s1l8 | 96 | 2, 2, 8, 2 | 1 | 30,249,064 | 30M / 4.9 / 82.6 |
| vmamba_small_s1l20 | 96 | 2, 2, 20, 2 | 1 | 49,012,840 | 49M / 8.6 / 83.3 |
| vmamba_base_s1l20 | 128 | 2, 2, 20, 2 | 1 | 86,614,504 | 87M / 15.2 / 83.8 |

Official numbers: the ImageNet-1k table of the VMamba repository (assets/performance.md), 224x224; `.in1k` is the
checkpoint that table links (GitHub release assets, release tag '#v2cls').
"""
from typing import Any, Dict

from timm.models import generate_default_cfgs, register_model

from vimamba.models.atrousmamba import AtrousMamba, _cfg, checkpoint_filter_fn, create_atrousmamba, vmamba_cfg

__all__ = ['checkpoint_filter_fn']  # the AtrousMamba filter: VMamba's official layout is what it maps

_PAPER = dict(paper_ids='arXiv:2401.10166', paper_name='VMamba: Visual State Space Model')

# Our variant names -> the size keys of the VMamba release table.
_SIZES = {
    'vmamba_tiny_s2l5': 'tiny', 'vmamba_small_s2l15': 'small', 'vmamba_base_s2l15': 'base',
    'vmamba_tiny_s1l8': 'tiny_s1l8', 'vmamba_small_s1l20': 'small_s1l20', 'vmamba_base_s1l20': 'base_s1l20',
}

default_cfgs = generate_default_cfgs({
    **{f'{name}.in1k': vmamba_cfg(size, **_PAPER) for name, size in _SIZES.items()},
    'test_vmamba.untrained': _cfg(input_size=(3, 64, 64), pool_size=(2, 2), **_PAPER),
})


def _create(variant: str, pretrained: bool, model_args: Dict[str, Any], kwargs: Dict[str, Any]) -> AtrousMamba:
    return create_atrousmamba(variant, pretrained=pretrained, **dict(dict(model_args, scan='cross'), **kwargs))


@register_model
def vmamba_tiny_s2l5(pretrained: bool = False, **kwargs) -> AtrousMamba:
    """VMamba-T v2 (s2l5), 30.7M params."""
    model_args = dict(embed_dim=96, depths=(2, 2, 5, 2), ssm_ratio=2.0, drop_path_rate=0.2)
    return _create('vmamba_tiny_s2l5', pretrained, model_args, kwargs)


@register_model
def vmamba_small_s2l15(pretrained: bool = False, **kwargs) -> AtrousMamba:
    """VMamba-S v2 (s2l15), 50.1M params."""
    model_args = dict(embed_dim=96, depths=(2, 2, 15, 2), ssm_ratio=2.0, drop_path_rate=0.3)
    return _create('vmamba_small_s2l15', pretrained, model_args, kwargs)


@register_model
def vmamba_base_s2l15(pretrained: bool = False, **kwargs) -> AtrousMamba:
    """VMamba-B v2 (s2l15), 88.6M params."""
    model_args = dict(embed_dim=128, depths=(2, 2, 15, 2), ssm_ratio=2.0, drop_path_rate=0.6)
    return _create('vmamba_base_s2l15', pretrained, model_args, kwargs)


@register_model
def vmamba_tiny_s1l8(pretrained: bool = False, **kwargs) -> AtrousMamba:
    """VMamba-T v2 (s1l8), 30.2M params."""
    model_args = dict(embed_dim=96, depths=(2, 2, 8, 2), ssm_ratio=1.0, drop_path_rate=0.2)
    return _create('vmamba_tiny_s1l8', pretrained, model_args, kwargs)


@register_model
def vmamba_small_s1l20(pretrained: bool = False, **kwargs) -> AtrousMamba:
    """VMamba-S v2 (s1l20), 49.0M params."""
    model_args = dict(embed_dim=96, depths=(2, 2, 20, 2), ssm_ratio=1.0, drop_path_rate=0.3)
    return _create('vmamba_small_s1l20', pretrained, model_args, kwargs)


@register_model
def vmamba_base_s1l20(pretrained: bool = False, **kwargs) -> AtrousMamba:
    """VMamba-B v2 (s1l20), 86.6M params."""
    model_args = dict(embed_dim=128, depths=(2, 2, 20, 2), ssm_ratio=1.0, drop_path_rate=0.5)
    return _create('vmamba_base_s1l20', pretrained, model_args, kwargs)


@register_model
def test_vmamba(pretrained: bool = False, **kwargs) -> AtrousMamba:
    """Tiny VMamba for tests."""
    model_args = dict(embed_dim=16, depths=(2, 1, 1, 1), img_size=64)
    return _create('test_vmamba', pretrained, model_args, kwargs)
