"""Pieces shared by training and validation: model creation, data config, devices, autocast."""
import contextlib
import logging
import os
import sys
from typing import Any, Dict, Optional

import torch
import torch.distributed as dist

import timm
from timm.data import resolve_data_config

from vimamba.registry import check_model_name

from .config import ConfigError

_logger = logging.getLogger('vimamba.classification')


def setup_logging(rank: int = 0) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                            format='%(asctime)s %(levelname)s %(message)s', datefmt='%H:%M:%S')


def known_model(name: Optional[str], arg: str = '--model') -> str:
    """Check `name` is registered with timm; the error suggests the nearest names."""
    import vimamba
    import vimamba.models  # noqa: F401  registration is an import side effect
    if not name:
        raise ConfigError(f'{arg} is required (a timm model name); vimamba models: {", ".join(vimamba.list_models())}')
    try:
        return check_model_name(name, arg)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def create_classifier(name: str, num_classes: Optional[int], img_size: Optional[int],
                      model_kwargs: Dict[str, Any], arg: str = '--model', **kwargs) -> torch.nn.Module:
    """timm.create_model, passing `img_size` to models that take one (fixed position embeddings)."""
    known_model(name, arg)
    kw = dict(model_kwargs or {})
    kw.update({k: v for k, v in kwargs.items() if v is not None})
    if num_classes is not None:
        kw['num_classes'] = num_classes
    if img_size is not None and 'img_size' not in kw:
        try:
            return timm.create_model(name, img_size=img_size, **kw)
        except TypeError as e:
            if 'img_size' not in str(e):
                raise ConfigError(f'{arg} {name!r}: bad model arguments {kw}: {e}') from e
            # resolution-agnostic model (no img_size argument): the data config alone sets the size
    try:
        return timm.create_model(name, **kw)
    except TypeError as e:
        raise ConfigError(f'{arg} {name!r}: bad model arguments {kw} (model_kwargs / --model-kwargs): {e}') from e


def data_config_for(args, model: torch.nn.Module) -> Dict[str, Any]:
    """The model's pretrained_cfg data settings with the arguments' overrides (timm's resolution order)."""
    overrides = {k: getattr(args, k, None) for k in ('input_size', 'img_size', 'crop_pct', 'mean', 'std')}
    overrides['interpolation'] = getattr(args, 'interpolation', '') or None
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return resolve_data_config(overrides, model=model)


def init_distributed(device_arg: Optional[str]):
    """(device, rank, world_size, local_rank) from torchrun's environment; nccl on CUDA, gloo on CPU."""
    world_size = int(os.environ.get('WORLD_SIZE', '1'))
    rank = int(os.environ.get('RANK', '0'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    if device_arg:
        device = torch.device(device_arg)
    else:
        device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if device.type == 'cuda' and device.index is None:
        device = torch.device('cuda', local_rank)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend='nccl' if device.type == 'cuda' else 'gloo')
    return device, rank, world_size, local_rank


def autocast(device: torch.device, enabled: bool, dtype: str):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, dtype))


def use_progress(flag: Optional[bool], rank: int) -> bool:
    if rank != 0:
        return False
    return sys.stderr.isatty() if flag is None else flag


def progress(iterable, enabled: bool, **kw):
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, dynamic_ncols=True, leave=False, **kw)
