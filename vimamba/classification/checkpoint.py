"""Reading weights into a model: trainer checkpoints, official checkpoints (through the family's
`checkpoint_filter_fn`) and plain state dicts, with explicit fine-tuning switches for a new head and a
new resolution. Anything that does not fit without those switches is an error that names them."""
import argparse
import math
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from timm.layers import resample_abs_pos_embed
from timm.models import clean_state_dict

from .config import ConfigError

# containers used by the trainers these checkpoints come from: timm/ours (`state_dict[_ema]`),
# DeiT-style copies in the Vim family (`model[_ema]`), MobileMamba (`net` / `net_E`), mmengine (`state_dict`)
_EMA_KEYS = ('state_dict_ema', 'model_ema', 'net_E')
_PLAIN_KEYS = ('state_dict', 'model', 'net', 'module', 'params')


def load_file(path: str, arg: str) -> Any:
    if not path or not os.path.isfile(path):
        raise ConfigError(f'{arg} {path!r}: no such file')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file as load_safetensors
        return load_safetensors(path)
    try:
        # the saved training arguments are an argparse.Namespace: allow it, and nothing else, in the unpickler
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:  # noqa: BLE001  the message is what matters to the user
        raise ConfigError(f'{arg} {path!r}: cannot read it as a torch checkpoint: {e}') from e


def unwrap_state_dict(checkpoint: Any, use_ema: bool, arg: str, ema_optional: bool = False) -> Dict[str, torch.Tensor]:
    """The state dict inside a checkpoint container: the EMA weights when `use_ema` (an error if there are none,
    unless `ema_optional`, which falls back to the plain weights)."""
    if not isinstance(checkpoint, dict):
        raise ConfigError(f'{arg}: expected a dict checkpoint, got {type(checkpoint).__name__}')
    if use_ema and not ema_optional and not any(isinstance(checkpoint.get(k), dict) for k in _EMA_KEYS):
        raise ConfigError(f'{arg}: EMA weights were asked for but the checkpoint has none (looked for '
                          f'{list(_EMA_KEYS)}; top-level keys: {sorted(map(str, checkpoint))[:20]}); '
                          f'leave out the EMA switch to use its plain weights')
    keys = (_EMA_KEYS if use_ema else ()) + _PLAIN_KEYS
    for k in keys:
        if k in checkpoint and isinstance(checkpoint[k], dict):
            return clean_state_dict(checkpoint[k])
    if all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return clean_state_dict(checkpoint)
    raise ConfigError(f'{arg}: no state dict found (looked for {list(keys)} and a raw tensor mapping); '
                      f'top-level keys: {sorted(checkpoint)[:20]}')


def checkpoint_filter_for(model: nn.Module) -> Optional[Callable]:
    """The `checkpoint_filter_fn` next to the model's class, timm's convention for foreign checkpoints."""
    module = sys.modules.get(type(model).__module__)
    return getattr(module, 'checkpoint_filter_fn', None)


def _classifier_prefixes(model: nn.Module) -> Tuple[str, ...]:
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    cls = cfg.get('classifier') or 'head'
    names = (cls,) if isinstance(cls, str) else tuple(cls)
    return tuple(n + '.' for n in names)


def _is_head(key: str, prefixes: Sequence[str]) -> bool:
    return any(key.startswith(p) for p in prefixes)


def _mismatches(state_dict: Dict[str, torch.Tensor], own: Dict[str, torch.Tensor]) -> List[str]:
    return [k for k, v in state_dict.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]


def _resample_pos_embeds(state_dict: Dict[str, torch.Tensor], own: Dict[str, torch.Tensor], model: nn.Module):
    """Generic fallback after the family filter: absolute (1, prefix + H*W, D) embeddings, square grids."""
    grid = getattr(getattr(model, 'patch_embed', None), 'grid_size', None)
    prefix = 0 if getattr(model, 'no_embed_class', False) else getattr(model, 'num_prefix_tokens', 0)
    for k in _mismatches(state_dict, own):
        v = state_dict[k]
        if 'pos_embed' not in k or v.ndim != 3:
            continue
        new_tokens = own[k].shape[1] - prefix
        new_size = tuple(grid) if grid is not None else (int(math.isqrt(new_tokens)),) * 2
        if new_size[0] * new_size[1] != new_tokens:
            continue
        state_dict[k] = resample_abs_pos_embed(v, list(new_size), num_prefix_tokens=prefix)


def adapt_state_dict(
        state_dict: Dict[str, torch.Tensor],
        model: nn.Module,
        arg: str,
        reset_head: bool = False,
        resize: bool = False,
        head_hint: str = 'to fine-tune with a new head pass --reset-head',
        size_hint: str = 'to fine-tune at the new size pass --resize-pos-embed',
) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Make `state_dict` fit `model`; returns it and the head keys that were dropped.

    A classifier of another class count needs `reset_head`; any other shape difference (position
    embeddings of another resolution or stride) needs `resize`, which runs the family's
    `checkpoint_filter_fn` (it knows where extra tokens sit) and then a generic resample.
    """
    own = model.state_dict()
    heads = _classifier_prefixes(model)
    dropped: List[str] = []

    def check_heads(sd):
        bad = [k for k in _mismatches(sd, own) if _is_head(k, heads)]
        if bad and not reset_head:
            k = bad[0]
            raise ConfigError(
                f'{arg}: classifier {k!r} has shape {tuple(sd[k].shape)} but the model has {tuple(own[k].shape)} '
                f'(model num_classes={getattr(model, "num_classes", "?")}); {head_hint}')
        for k in [k for k in sd if _is_head(k, heads)] if bad else []:
            dropped.append(k)
            del sd[k]

    def check_sizes(sd):
        bad = [k for k in _mismatches(sd, own) if not _is_head(k, heads)]
        if bad and not resize:
            k = bad[0]
            raise ConfigError(
                f'{arg}: {k!r} has shape {tuple(sd[k].shape)} but the model has {tuple(own[k].shape)} '
                f'(trained at another resolution or stride?); {size_hint}')
        return bad

    state_dict = dict(state_dict)
    check_heads(state_dict)
    size_bad = check_sizes(state_dict)
    filter_fn = checkpoint_filter_for(model)
    foreign = set(state_dict) - set(own)
    if filter_fn is not None and (foreign or size_bad):
        try:
            state_dict = filter_fn(state_dict, model)
        except TypeError:
            state_dict = filter_fn(state_dict)
        state_dict = dict(state_dict)
        check_heads(state_dict)
    if resize:
        _resample_pos_embeds(state_dict, own, model)
    still = _mismatches(state_dict, own)
    if still:
        k = still[0]
        raise ConfigError(f'{arg}: {k!r} has shape {tuple(state_dict[k].shape)}, the model has '
                          f'{tuple(own[k].shape)}, and it cannot be resampled')
    return state_dict, dropped


def load_weights(model: nn.Module, path: str, arg: str, use_ema: bool = False, reset_head: bool = False,
                 resize: bool = False, ema_optional: bool = False, **hints: str) -> Dict[str, Any]:
    """Load `path` into `model` strictly (apart from a dropped head). Returns the checkpoint's metadata."""
    checkpoint = load_file(path, arg)
    state_dict = unwrap_state_dict(checkpoint, use_ema, f'{arg} {path!r}', ema_optional)
    state_dict, dropped = adapt_state_dict(state_dict, model, f'{arg} {path!r}', reset_head, resize, **hints)
    result = model.load_state_dict(state_dict, strict=False)
    missing = [k for k in result.missing_keys if k not in dropped]
    heads = _classifier_prefixes(model)
    if dropped:
        missing = [k for k in missing if not _is_head(k, heads)]
    if missing or result.unexpected_keys:
        raise ConfigError(
            f'{arg} {path!r} does not fit model {type(model).__name__}: missing keys {missing[:10]}'
            f'{" ..." if len(missing) > 10 else ""}, unexpected keys {result.unexpected_keys[:10]}'
            f'{" ..." if len(result.unexpected_keys) > 10 else ""}')
    meta = {k: v for k, v in checkpoint.items() if not isinstance(v, dict)} if isinstance(checkpoint, dict) else {}
    meta['dropped_head'] = dropped
    return meta
