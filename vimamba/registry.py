"""Which timm model names vimamba registered."""
import timm
from timm.models import model_entrypoint


def list_models(filter: str = '', include_test: bool = False) -> list[str]:
    """Names registered by vimamba's families (timm's `filter` wildcard syntax).

    The tiny `test_*` variants exist for the contract tests and are left out unless `include_test`.
    """
    import vimamba.models  # noqa: F401  registration is an import side effect

    names = [n for n in timm.list_models(filter) if model_entrypoint(n).__module__.startswith('vimamba.')]
    return [n for n in names if include_test or not n.startswith('test_')]
