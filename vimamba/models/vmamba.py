"""VMamba v2: the published VMamba image classifiers / backbones under their own names

VMamba: Visual State Space Model - https://arxiv.org/abs/2401.10166 (NeurIPS 2024)
- code: https://github.com/MzeroMiko/VMamba (MIT)
`AtrousMamba` with `scan='cross'` (see atrousmamba.py). "s2" / "s1": ssm_ratio 2 / 1; "lN": N blocks in stage 3.
`.in1k`: the checkpoints of VMamba's ImageNet-1k table (224 px), whose GFLOPs and top-1 the variants quote.
"""
from typing import Any, Dict

from timm.models import generate_default_cfgs, register_model

from vimamba.models.atrousmamba import AtrousMamba, _cfg, checkpoint_filter_fn, create_atrousmamba, vmamba_cfg

__all__ = ['checkpoint_filter_fn']

_PAPER = dict(paper_ids='arXiv:2401.10166', paper_name='VMamba: Visual State Space Model')

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
    """VMamba-T v2 (s2l5): 30.7M params, 4.9 GFLOPs, 82.5 top-1."""
    model_args = dict(embed_dim=96, depths=(2, 2, 5, 2), ssm_ratio=2.0, drop_path_rate=0.2)
    return _create('vmamba_tiny_s2l5', pretrained, model_args, kwargs)


@register_model
def vmamba_small_s2l15(pretrained: bool = False, **kwargs) -> AtrousMamba:
    """VMamba-S v2 (s2l15): 50.1M params, 8.7 GFLOPs, 83.6 top-1."""
    model_args = dict(embed_dim=96, depths=(2, 2, 15, 2), ssm_ratio=2.0, drop_path_rate=0.3)
    return _create('vmamba_small_s2l15', pretrained, model_args, kwargs)


@register_model
def vmamba_base_s2l15(pretrained: bool = False, **kwargs) -> AtrousMamba:
    """VMamba-B v2 (s2l15): 88.6M params, 15.4 GFLOPs, 83.9 top-1."""
    model_args = dict(embed_dim=128, depths=(2, 2, 15, 2), ssm_ratio=2.0, drop_path_rate=0.6)
    return _create('vmamba_base_s2l15', pretrained, model_args, kwargs)


@register_model
def vmamba_tiny_s1l8(pretrained: bool = False, **kwargs) -> AtrousMamba:
    """VMamba-T v2 (s1l8): 30.2M params, 4.9 GFLOPs, 82.6 top-1."""
    model_args = dict(embed_dim=96, depths=(2, 2, 8, 2), ssm_ratio=1.0, drop_path_rate=0.2)
    return _create('vmamba_tiny_s1l8', pretrained, model_args, kwargs)


@register_model
def vmamba_small_s1l20(pretrained: bool = False, **kwargs) -> AtrousMamba:
    """VMamba-S v2 (s1l20): 49.0M params, 8.6 GFLOPs, 83.3 top-1."""
    model_args = dict(embed_dim=96, depths=(2, 2, 20, 2), ssm_ratio=1.0, drop_path_rate=0.3)
    return _create('vmamba_small_s1l20', pretrained, model_args, kwargs)


@register_model
def vmamba_base_s1l20(pretrained: bool = False, **kwargs) -> AtrousMamba:
    """VMamba-B v2 (s1l20): 86.6M params, 15.2 GFLOPs, 83.8 top-1."""
    model_args = dict(embed_dim=128, depths=(2, 2, 20, 2), ssm_ratio=1.0, drop_path_rate=0.5)
    return _create('vmamba_base_s1l20', pretrained, model_args, kwargs)


@register_model
def test_vmamba(pretrained: bool = False, **kwargs) -> AtrousMamba:
    """Tiny VMamba for tests."""
    model_args = dict(embed_dim=16, depths=(2, 1, 1, 1), img_size=64)
    return _create('test_vmamba', pretrained, model_args, kwargs)
