"""Checkpoints: one reader for every file vimamba and the official repositories write, the family's
`checkpoint_filter_fn`, and a strict load; everything that loads weights goes through here.
Torch files are read with `weights_only=True`; pickled foreign objects (configs, message hubs) are rebuilt as
`OrderedDict`s, so reading never runs the writer's code.
"""
import argparse
import collections
import contextlib
import os
import pickle
import re
import struct
import sys
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from .registry import model_module

__all__ = [
    'CheckpointError', 'CheckpointMismatchError', 'safe_unpickling', 'read_checkpoint',
    'unwrap_state_dict', 'checkpoint_filter_for', 'fit_state_dict', 'load_checkpoint', 'load_pretrained',
    'prepare_pretrained',
]

# State-dict containers: timm, DeiT-style (Vim, VMamba), MobileMamba, BasicSR, mmengine, DeepSpeed.
EMA_KEYS = ('state_dict_ema', 'model_ema', 'net_E', 'params_ema')
PLAIN_KEYS = ('state_dict', 'model', 'net', 'module', 'params')
# Key prefixes of wrappers around a whole network: DDP / torch.compile, our Restorer (`generator.`) and change nets.
_WRAPPER_PREFIXES = ('module.', '_orig_mod.', 'generator.', 'net.')


class CheckpointError(ValueError):
    """A file that is not a checkpoint vimamba can read, or one that holds no state dict."""


class CheckpointMismatchError(CheckpointError):
    """A state dict that does not fit the model: `missing`, `unexpected` and `mismatched` (shape) keys."""

    def __init__(self, model_name: str, missing: Sequence[str] = (), unexpected: Sequence[str] = (),
                 mismatched: Sequence[str] = (), hint: str = ''):
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)
        lines = [f'checkpoint does not fit {model_name}' + (f' ({hint})' if hint else '') + ':']
        if self.missing:
            lines.append(f"  missing keys ({len(self.missing)}): {', '.join(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected keys ({len(self.unexpected)}): {', '.join(self.unexpected)}")
        if self.mismatched:
            lines.append(f"  shape mismatches ({len(self.mismatched)}): {', '.join(self.mismatched)}")
        super().__init__('\n'.join(lines))


# ---------------------------------------------------------------------------------------------------------
# Reading

# Pickled names rebuilt as OrderedDicts (metadata, never weights).
_STAND_INS = (
    'yacs.config.CfgNode',
    'mmengine.config.config.ConfigDict',
    'mmengine.logging.history_buffer.HistoryBuffer',
)


def _stand_in_getattr(obj: Any, name: str) -> str:
    """A placeholder string for a pickled reference to a stand-in's method (mmengine's HistoryBuffer)."""
    if obj is collections.OrderedDict and isinstance(name, str):
        return f'<pickled method {name}>'
    raise pickle.UnpicklingError(f'getattr({obj!r}, {name!r}) is not allowed in a checkpoint')


def _numpy_globals() -> List[Any]:
    core = getattr(np, '_core', None) or np.core
    multiarray = core.multiarray
    found: List[Any] = [np.ndarray, np.dtype]
    found += sorted({type(np.dtype(c)) for c in np.typecodes['All'] if c not in 'OV'} - {np.dtype}, key=str)
    # numpy 1 writes `numpy.core.multiarray.*`, numpy 2 `numpy._core.multiarray.*`: both names, one function
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        found += [(multiarray._reconstruct, f'{module}._reconstruct'), (multiarray.scalar, f'{module}.scalar')]
    return found


def allowed_globals() -> List[Any]:
    """What `weights_only` unpickling may rebuild besides tensors and builtins (torch's own list)."""
    return ([argparse.Namespace] + _numpy_globals() + [(collections.OrderedDict, name) for name in _STAND_INS]
            + [(_stand_in_getattr, '__builtin__.getattr'), (_stand_in_getattr, 'builtins.getattr')])


@contextlib.contextmanager
def safe_unpickling() -> Iterator[None]:
    """Allow `allowed_globals()` inside the block; the process' own safe globals are left as they were."""
    have = set(map(repr, torch.serialization.get_safe_globals()))
    extra = [g for g in allowed_globals() if repr(g) not in have]
    with torch.serialization.safe_globals(extra):
        yield


def _is_safetensors(head: bytes, size: int) -> bool:
    # 8-byte little-endian header length, then the JSON header
    return len(head) >= 9 and head[8:9] == b'{' and 8 + struct.unpack('<Q', head[:8])[0] <= size


def read_checkpoint(path: str, arg: str = 'checkpoint') -> Any:
    """The object saved in `path` (safetensors or torch), read without running pickled code.
    Raises `CheckpointError` naming `arg` for a missing, empty, corrupt, foreign or unsafe file."""
    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        raise CheckpointError(f'{arg}: {path!r} is not a file')
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(f'{arg}: {path!r} is empty (0 bytes), not a checkpoint')
    with open(path, 'rb') as f:
        head = f.read(16)
    if _is_safetensors(head, size):
        from safetensors.torch import load_file
        try:
            return load_file(path, device='cpu')
        except Exception as e:  # noqa: BLE001  safetensors raises its own error types
            raise CheckpointError(f'{arg}: {path!r} is not a readable safetensors file: {e}') from None
    # zip archives are torch >= 1.6 files; a pickle protocol mark starts the legacy format
    if not (head[:4] == b'PK\x03\x04' or head[:1] == b'\x80'):
        raise CheckpointError(f'{arg}: {path!r} is not a checkpoint: neither a torch file nor safetensors '
                              f'(it starts with {head[:8]!r})')
    try:
        with safe_unpickling():
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        unsupported = re.search(r'GLOBAL ([\w.]+)', str(e))
        if unsupported:
            raise CheckpointError(
                f'{arg}: {path!r} pickles a {unsupported.group(1)} object, which is not one of the types vimamba '
                f'reads from checkpoints (tensors, containers, numpy, argparse / yacs / mmengine configs); it is not '
                f'unpickled. Save the tensors alone (torch.save(model.state_dict(), ...) or safetensors)') from None
        raise CheckpointError(f'{arg}: {path!r} is not a checkpoint (corrupt torch file: {_first_line(e)})') from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, struct.error) as e:
        raise CheckpointError(f'{arg}: {path!r} is not a checkpoint (truncated or corrupt torch file: '
                              f'{_first_line(e)})') from None


def _first_line(e: BaseException) -> str:
    # torch wraps the unpickler's own message in advice about weights_only that does not apply here
    cause = re.search(r'WeightsUnpickler error:\s*(\S[^\n]*)', str(e))
    lines = [cause.group(1)] if cause else str(e).strip().splitlines()
    return f'{type(e).__name__}: {lines[0].split(". ")[0]}' if lines else type(e).__name__


def _strip_wrapper_prefix(state_dict: Dict[str, Any]) -> Dict[str, Any]:
    keys = list(state_dict)
    for prefix in _WRAPPER_PREFIXES:
        if keys and all(k.startswith(prefix) for k in keys):
            return _strip_wrapper_prefix({k[len(prefix):]: v for k, v in state_dict.items()})
    return state_dict


def unwrap_state_dict(checkpoint: Any, prefer_ema: bool = False, require_ema: bool = False,
                      arg: str = 'checkpoint') -> Dict[str, torch.Tensor]:
    """The state dict inside a checkpoint (`EMA_KEYS` first with `prefer_ema`, only with `require_ema`), with a
    wrapper prefix every key shares removed."""
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{arg}: holds a {type(checkpoint).__name__}, not a state dict')
    keys = EMA_KEYS if require_ema else (EMA_KEYS + PLAIN_KEYS if prefer_ema else PLAIN_KEYS + EMA_KEYS)
    for key in keys:
        if isinstance(checkpoint.get(key), dict) and checkpoint[key]:
            return _strip_wrapper_prefix(dict(checkpoint[key]))
    if require_ema:
        raise CheckpointError(f'{arg}: has no EMA weights (looked for {list(EMA_KEYS)}); '
                              f'top-level keys: {sorted(map(str, checkpoint))[:20]}')
    if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        return _strip_wrapper_prefix(dict(checkpoint))
    raise CheckpointError(f'{arg}: no state dict found (looked for {list(keys)} and a mapping of names to '
                          f'tensors); top-level keys: {sorted(map(str, checkpoint))[:20]}')


# ---------------------------------------------------------------------------------------------------------
# Fitting a model

def checkpoint_filter_for(model: nn.Module) -> Callable[..., Dict[str, torch.Tensor]]:
    """The family's `checkpoint_filter_fn(state_dict, model, strict=True)`, next to the model's class."""
    module = model_module(model)
    filter_fn = getattr(sys.modules.get(module), 'checkpoint_filter_fn', None)
    if filter_fn is None:
        raise CheckpointError(f'{type(model).__name__} (module {module}) has no '
                              f'checkpoint_filter_fn: not a vimamba model')
    return filter_fn


def _cfg_names(model: nn.Module, key: str, default: Optional[str] = None) -> tuple:
    names = (getattr(model, 'pretrained_cfg', None) or {}).get(key) or default or ()
    return (names,) if isinstance(names, str) else tuple(names)


def fit_state_dict(state_dict: Dict[str, torch.Tensor], model: nn.Module, strict: bool = True,
                   hint: str = '') -> Dict[str, torch.Tensor]:
    """The last step of every `checkpoint_filter_fn`: `state_dict` checked against `model`.
    `strict=True` raises `CheckpointMismatchError` (classifier and first conv may differ: timm adapts them);
    `strict=False` keeps the entries that fit by name and shape."""
    expected = model.state_dict()
    heads = tuple(n + '.' for n in _cfg_names(model, 'classifier', 'head'))
    adapted = heads + tuple(n + '.weight' for n in _cfg_names(model, 'first_conv'))
    if not any(k.startswith(heads) for k in expected):
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(heads)}
    mismatched = [k for k, v in state_dict.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    if not strict:
        return {k: v for k, v in state_dict.items() if k in expected and k not in mismatched}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(k for k in mismatched if not k.startswith(adapted))
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(
            type(model).__name__, missing, unexpected,
            [f'{k} {tuple(state_dict[k].shape)} vs {tuple(expected[k].shape)}' for k in mismatched], hint)
    return state_dict


def load_checkpoint(model: nn.Module, checkpoint: Any, strict: bool = True, use_ema: bool = False,
                    arg: str = 'checkpoint') -> Any:
    """Load `checkpoint` (a path or a read object) into `model` through its family's filter.
    `use_ema` requires EMA weights, else the family's choice applies. Returns `load_state_dict`'s result."""
    if not isinstance(checkpoint, dict):
        checkpoint = read_checkpoint(checkpoint, arg)
    if use_ema:
        checkpoint = unwrap_state_dict(checkpoint, require_ema=True, arg=arg)
    state_dict = checkpoint_filter_for(model)(checkpoint, model, strict=strict)
    return model.load_state_dict(state_dict, strict=strict)


# ---------------------------------------------------------------------------------------------------------
# timm's pretrained=True

def load_pretrained(model: nn.Module, path: str) -> None:
    """timm's `custom_load` hook: `path` read here, then timm's own loader (filter and adaptation)."""
    from timm.models import load_pretrained as timm_load_pretrained

    cfg = dict(model.pretrained_cfg, custom_load=False, state_dict=read_checkpoint(path, 'pretrained weights'))
    in_chans = getattr(model, 'in_chans', None) or (cfg.get('input_size') or (3,))[0]
    num_classes = getattr(model, 'num_classes', cfg.get('num_classes'))
    timm_load_pretrained(model, cfg, num_classes=num_classes, in_chans=in_chans,
                         filter_fn=checkpoint_filter_for(model), strict=True)


class PretrainedMixin:
    """Gives a model class the `load_pretrained(path)` method timm's `custom_load` calls."""

    def load_pretrained(self, path: str) -> None:
        load_pretrained(self, path)


_SOURCE_KEYS = ('state_dict', 'file', 'url', 'hf_hub_id')


def prepare_pretrained(variant: str, pretrained: bool, kwargs: Dict[str, Any]) -> None:
    """Before a `pretrained=True` build: route `pretrained_cfg_overlay` sources through `load_pretrained`, and
    raise a clear error when the cfg names no weights timm can fetch."""
    if not pretrained:
        return
    from timm.models import resolve_pretrained_cfg

    overlay = kwargs.get('pretrained_cfg_overlay')
    if overlay and any(overlay.get(k) for k in ('file', 'url', 'hf_hub_id')) and 'custom_load' not in overlay:
        kwargs['pretrained_cfg_overlay'] = dict(overlay, custom_load='hf' if overlay.get('hf_hub_filename') or
                                                not overlay.get('hf_hub_id') else False)
    cfg = resolve_pretrained_cfg(variant, pretrained_cfg=kwargs.get('pretrained_cfg'),
                                 pretrained_cfg_overlay=kwargs.get('pretrained_cfg_overlay')).to_dict()
    if any(cfg.get(k) for k in _SOURCE_KEYS):
        return
    name = f"{variant}.{cfg['tag']}" if cfg.get('tag') else variant
    notes = [n.rstrip('.') for n in cfg.get('notes') or ()]
    load = (f"timm.create_model({name!r}, pretrained=True, pretrained_cfg_overlay=dict(file=PATH)) loads it through "
            f"the family's checkpoint filter (or convert it once: python tools/convert.py PATH OUT.safetensors "
            f"--model {variant})")
    if any('://' in n for n in notes):
        raise RuntimeError(f"{name}: pretrained=True: the official weights are on a page timm cannot download from "
                           f"({'; '.join(notes)}). Download the file, then {load}")
    raise RuntimeError(f"{name}: pretrained=True: no official weights are published "
                       f"({'; '.join(notes + [cfg.get('origin_url') or ''])}). For weights of your own, {load}")
