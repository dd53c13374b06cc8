"""Which timm model names vimamba registered."""
import difflib
from typing import Optional, Sequence

import timm
from timm.models import model_entrypoint


def list_models(filter: str = '', include_test: bool = False) -> list[str]:
    """Names registered by vimamba's families (timm's `filter` wildcard syntax).

    The tiny `test_*` variants exist for the contract tests and are left out unless `include_test`.
    """
    import vimamba.models  # noqa: F401  registration is an import side effect

    names = [n for n in timm.list_models(filter) if model_entrypoint(n).__module__.startswith('vimamba.')]
    return [n for n in names if include_test or not n.startswith('test_')]


def check_model_name(name: str, arg: str = '--model', names: Optional[Sequence[str]] = None,
                     kind: str = 'registered model') -> str:
    """`name` if timm has it (and it is in `names` when given); else a ValueError naming `arg`, the value and
    the nearest accepted names."""
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
