"""Kernel modules loaded under Triton's interpreter, and kernels compiled for sm_90, for the CPU tests of the
Triton kernels.

`load(path)` imports kernels/<file>.py afresh, as a module of a separate package over the same folder, with
TRITON_INTERPRET=1 set while its @triton.jit functions (and those of the shared helper modules it imports) are
created, so they run on CPU tensors; the installed `vimamba.kernels.*` modules stay compiled.
"""
import importlib
import importlib.util
import os
import sys
from pathlib import Path

_PACKAGE = "_vimamba_kernels_interpreted"


def load(path: Path):
    path = Path(path)
    name = f"{_PACKAGE}.{path.stem}"
    module = sys.modules.get(name)
    if module is None:
        old = os.environ.get("TRITON_INTERPRET")
        os.environ["TRITON_INTERPRET"] = "1"
        try:
            if _PACKAGE not in sys.modules:
                spec = importlib.util.spec_from_file_location(_PACKAGE, path.parent / "__init__.py",
                                                              submodule_search_locations=[str(path.parent)])
                package = importlib.util.module_from_spec(spec)
                sys.modules[_PACKAGE] = package
                spec.loader.exec_module(package)
            module = importlib.import_module(name)
        finally:
            if old is None:
                del os.environ["TRITON_INTERPRET"]
            else:
                os.environ["TRITON_INTERPRET"] = old
    return module


def poison(module):
    """Make the kernel module `module` (and the modules sharing its `_common`) allocate outputs filled with NaN, so
    that an element a kernel never writes shows."""
    sys.modules[f"{module.__package__}._common"]._POISON = True


def compile_for_sm90(fn, types, constants, num_warps):
    """Compile a @triton.jit kernel for an H100 without a GPU (Triton's front end, LLVM and ptxas)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, compile as triton_compile

    names = fn.arg_names
    signature = {n: types.get(n, "constexpr") for n in names}
    constexprs = {(names.index(n),): v for n, v in constants.items()}
    return triton_compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", 90, 32),
                          options=dict(num_warps=num_warps))
