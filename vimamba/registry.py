"""Which timm model names vimamba registered, the family of a model, and the keywords the families retired."""
import difflib
from typing import Any, Dict, Optional, Sequence, Union

import timm
import torch.nn as nn
from timm.models import model_entrypoint


def model_module(model: Union[str, nn.Module]) -> str:
    """The module that defines `model`: a name's entrypoint module, or an instance's class module."""
    return model_entrypoint(model).__module__ if isinstance(model, str) else type(model).__module__


def family_of(model: Union[str, nn.Module]) -> Optional[str]:
    """vimamba's family ('vim', 'mobilemamba', ...) of a model name or instance; None if not ours."""
    module = model_module(model)
    return module.rsplit('.', 1)[-1] if module.startswith('vimamba.models.') else None


def reject_retired_kwargs(variant: str, kwargs: Dict[str, Any], retired: Dict[str, str]) -> None:
    """A TypeError (as timm's for unknown keywords) for the first `kwargs` key `retired` lists, with its advice."""
    for key, instead in retired.items():
        if key in kwargs:
            raise TypeError(f'{variant}: keyword argument {key!r} is no longer accepted; {instead}')


def list_models(filter: str = '', include_test: bool = False) -> list[str]:
    """Names registered by vimamba's families (timm's `filter` syntax); `test_*` only with `include_test`."""
    import vimamba.models  # noqa: F401  registration is an import side effect

    names = [n for n in timm.list_models(filter) if family_of(n) is not None]
    return [n for n in names if include_test or not n.startswith('test_')]


def check_model_name(name: str, arg: str = '--model', names: Optional[Sequence[str]] = None,
                     kind: str = 'registered model') -> str:
    """`name` if timm has it (and `names` holds it); else a ValueError naming `arg` and the nearest names."""
    import vimamba.models  # noqa: F401

    if timm.is_model(name) and (names is None or name in names):
        return name
    pool = list(names) if names is not None else list_models(include_test=True)
    nearest = difflib.get_close_matches(str(name), pool, n=5, cutoff=0.5)
    family = str(name).split('_')[0] + '_'
    nearest.sort(key=lambda n: not n.startswith(family))  # the typed family first (vim_tinyy: vim_*, not vmamba_*)
    if names is None and not nearest:
        nearest = difflib.get_close_matches(str(name), timm.list_models(), n=5, cutoff=0.6)
    hint = f'nearest: {", ".join(nearest)}' if nearest else 'no close name'
    where = (f'accepted: {", ".join(names)}' if names is not None and len(names) <= 20
             else 'vimamba.list_models() lists vimamba\'s, timm.list_models() every timm model')
    raise ValueError(f'{arg} {name!r} is not a {kind}; {hint} ({where})')
