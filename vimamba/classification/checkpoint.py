"""Reading weights into a model: trainer checkpoints, official checkpoints (through the family's
`checkpoint_filter_fn`) and plain state dicts, with explicit fine-tuning switches for a new head and a
new resolution. Anything that does not fit without those switches is an error that names them."""
import math
from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.nn as nn

from timm.layers import resample_abs_pos_embed

from ..checkpoint import CheckpointError, CheckpointMismatchError, checkpoint_filter_for, read_checkpoint
from ..checkpoint import unwrap_state_dict as unwrap
from .config import ConfigError

def load_file(path: str, arg: str) -> Any:
    """`vimamba.checkpoint.read_checkpoint`, its errors as `ConfigError`s."""
    try:
        return read_checkpoint(path, arg)
    except CheckpointError as e:
        raise ConfigError(str(e)) from None


def unwrap_state_dict(checkpoint: Any, use_ema: bool, arg: str, prefer_ema: bool = False) -> Dict[str, torch.Tensor]:
    """The state dict inside a checkpoint container: its EMA weights with `use_ema` (an error if it has none),
    first if present with `prefer_ema`."""
    try:
        return unwrap(checkpoint, prefer_ema=prefer_ema, require_ema=use_ema, arg=arg)
    except CheckpointError as e:
        raise ConfigError(str(e)) from None


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
        state_dict: Dict[str, Any],
        model: nn.Module,
        arg: str,
        reset_head: bool = False,
        resize: bool = False,
        head_hint: str = 'to fine-tune with a new head pass --reset-head',
        size_hint: str = 'to fine-tune at the new size pass --resize-pos-embed',
) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """Make `state_dict` (or a checkpoint holding one) fit `model`; returns it and the head keys that were dropped.

    The family's `checkpoint_filter_fn` converts official names. A classifier of another class count needs
    `reset_head`; any other shape difference (position embeddings of another resolution or stride) needs
    `resize`: the filter resamples them (it knows where extra tokens sit), then a generic resample.
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

    # the explicit switches first, on the keys named as ours (official Vim files share pos_embed's name)
    view = unwrap_state_dict(state_dict, False, arg)
    check_heads(dict(view))
    check_sizes(view)
    try:
        state_dict = dict(checkpoint_filter_for(model)(state_dict, model, strict=True))
    except CheckpointMismatchError as e:
        raise ConfigError(f'{arg}: {e}' + (f'\n{size_hint}' if e.mismatched and not resize else '')) from None
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
                 resize: bool = False, prefer_ema: bool = False, **hints: str) -> Dict[str, Any]:
    """Load `path` into `model` strictly (apart from a dropped head). Returns the checkpoint's metadata.

    `use_ema` takes the checkpoint's EMA weights (an error if it has none), `prefer_ema` takes them when present;
    otherwise the family's filter chooses (the weights the official results were reported with).
    """
    checkpoint = load_file(path, arg)
    source = unwrap_state_dict(checkpoint, use_ema, f'{arg} {path!r}', prefer_ema) if use_ema or prefer_ema \
        else checkpoint
    state_dict, dropped = adapt_state_dict(source, model, f'{arg} {path!r}', reset_head, resize, **hints)
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
