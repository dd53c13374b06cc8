"""FLOP handles for fvcore's and mmengine's jit counters: our custom ops and two aten ops they miss.
`import vimamba` adds them to the default tables (existing handles kept), without importing either package."""
import importlib.abc
import math
import sys
from typing import Callable, Dict, List, Optional

import torch

from . import ops

__all__ = ['FVCORE_HANDLES', 'ACTIVATION_HANDLES', 'sdpa_flop_jit', 'conv_mode_flop_jit', 'install_default_handles']


def _shape(value) -> Optional[List[int]]:
    kind = value.type()
    return kind.sizes() if isinstance(kind, torch._C.TensorType) else None


def sdpa_flop_jit(inputs, outputs) -> int:
    """Handle for `aten::scaled_dot_product_attention`: B*heads*Lq*Lk*(E + Ev) MACs (no causal discount)."""
    q, k, v = (_shape(t) for t in inputs[:3])
    batch = math.prod(q[:-2])
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def conv_mode_flop_jit(inputs, outputs) -> int:
    """Handle for `aten::_convolution_mode` (padding='same' / 'valid'), counted like any conv."""
    x, w, y = _shape(inputs[0]), _shape(inputs[1]), _shape(outputs[0])
    return x[0] * math.prod(w) * math.prod(y[2:])


def _output_size_jit(inputs, outputs) -> int:
    """Activations of an op: the elements of its output (the convention for convs and matmuls)."""
    return math.prod(_shape(outputs[0]))


FVCORE_HANDLES: Dict[str, Optional[Callable]] = {
    'vimamba::selective_scan': ops.selective_scan_flop_jit,
    'vimamba::causal_conv1d': ops.causal_conv1d_flop_jit,
    # The fused residual add + RMSNorm: elementwise, uncounted by convention like the aten ops it replaces.
    'vimamba::add_rms_norm': None,
    'vimamba::merge_gate': None,  # the directions' mean and the SiLU gate: elementwise as well
    'aten::scaled_dot_product_attention': sdpa_flop_jit,
    'aten::_convolution_mode': conv_mode_flop_jit,
    # A view like reshape (which the tables already ignore): no arithmetic, so no "skipped op" warning.
    'aten::unflatten': None,
}

ACTIVATION_HANDLES: Dict[str, Optional[Callable]] = {
    'vimamba::selective_scan': _output_size_jit,
    'vimamba::causal_conv1d': _output_size_jit,
    'vimamba::add_rms_norm': None,
    'vimamba::merge_gate': None,
}

# module -> (name of its default table, handles for it)
_TABLES = {
    'fvcore.nn.flop_count': (('_DEFAULT_SUPPORTED_OPS', FVCORE_HANDLES),),
    'fvcore.nn.activation_count': (('_DEFAULT_SUPPORTED_OPS', ACTIVATION_HANDLES),),
    'mmengine.analysis.complexity_analysis': (('_DEFAULT_SUPPORTED_FLOP_OPS', FVCORE_HANDLES),
                                              ('_DEFAULT_SUPPORTED_ACT_OPS', ACTIVATION_HANDLES)),
}


def _fill_tables(module) -> None:
    for table_name, handles in _TABLES[module.__name__]:
        table = getattr(module, table_name, None)
        if isinstance(table, dict):
            for op, handle in handles.items():
                table.setdefault(op, handle)


class _FillAfterExec(importlib.abc.Loader):
    """Wraps a module's loader: runs it, then puts our handles into the module's tables."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        _fill_tables(module)

    def __getattr__(self, name):
        return getattr(self.loader, name)


class _TableFinder(importlib.abc.MetaPathFinder):
    """Finds the counters' modules through the other finders and hands them back with `_FillAfterExec`."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in _TABLES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, 'find_spec'):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, 'exec_module'):
                    spec.loader = _FillAfterExec(spec.loader)
                return spec
        return None


def install_default_handles() -> None:
    """Fill the tables of the counters imported already; fill the others when they are imported (once)."""
    for name in _TABLES:
        if name in sys.modules:
            _fill_tables(sys.modules[name])
    if not any(isinstance(f, _TableFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TableFinder())
