"""Kernel modules loaded under Triton's interpreter, and kernels compiled for sm_90, for the CPU tests of the
Triton kernels.

`load(path)` executes kernels/<file>.py as a separate module with TRITON_INTERPRET=1 set while its @triton.jit
functions are created, so they run on CPU tensors; the installed `vimamba.kernels.*` modules stay compiled.
"""
import importlib.util
import os
from pathlib import Path

_loaded = {}


def load(path: Path):
    path = Path(path)
    module = _loaded.get(path)
    if module is None:
        old = os.environ.get("TRITON_INTERPRET")
        os.environ["TRITON_INTERPRET"] = "1"
        try:
            spec = importlib.util.spec_from_file_location(f"_vimamba_{path.stem}_interp", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        finally:
            if old is None:
                del os.environ["TRITON_INTERPRET"]
            else:
                os.environ["TRITON_INTERPRET"] = old
        _loaded[path] = module
    return module


def compile_for_sm90(fn, types, constants, num_warps):
    """Compile a @triton.jit kernel for an H100 without a GPU (Triton's front end, LLVM and ptxas)."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, compile as triton_compile

    names = fn.arg_names
    signature = {n: types.get(n, "constexpr") for n in names}
    constexprs = {(names.index(n),): v for n, v in constants.items()}
    return triton_compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", 90, 32),
                          options=dict(num_warps=num_warps))
