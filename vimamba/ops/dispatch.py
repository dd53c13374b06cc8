"""What the ops share: backend tables and choice, the backend call with its "auto" fallback, tracing guards, checks."""
import contextlib
import functools
import importlib
import os
import warnings
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.fx
from torch import Tensor
from torch.utils._python_dispatch import _get_current_dispatch_mode

from ..kernels._common import _interpreting

BACKENDS = {
    "selective_scan": {
        "reference": "vimamba.kernels.selective_scan_reference",
        "triton": "vimamba.kernels.selective_scan",
        "mamba_ssm": "vimamba.kernels.mamba_ssm_backend",
    },
    "merge_gate": {
        "reference": "vimamba.kernels.merge_gate_reference",
        "triton": "vimamba.kernels.merge_gate",
    },
    "causal_conv1d": {
        "reference": "vimamba.kernels.causal_conv1d_reference",
        "triton": "vimamba.kernels.causal_conv1d",
    },
    "add_rms_norm": {
        "reference": "vimamba.kernels.add_rms_norm_reference",
        "triton": "vimamba.kernels.add_rms_norm",
    },
}
CHOICES = ("auto",) + tuple(BACKENDS["selective_scan"])
ENV_BACKEND = "VIMAMBA_BACKEND"
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_loaded = {}
_warned_fallback = set()


def load_backend(name: str, op: str):
    path = BACKENDS[op][name]
    module = _loaded.get(path)
    if module is None:
        try:
            module = importlib.import_module(path)
        except Exception as e:  # ImportError, or a kernel module failing at import time
            raise RuntimeError(
                f"{op} backend {name!r} is not available: importing {path} "
                f"failed with {type(e).__name__}: {e}") from e
        _loaded[path] = module
    return module


def available_backends() -> Tuple[str, ...]:
    """Backend names whose module imports here (tries each once)."""
    found = []
    for name in BACKENDS["selective_scan"]:
        try:
            load_backend(name, "selective_scan")
        except RuntimeError:
            continue
        found.append(name)
    return tuple(found)


def _check_backend_name(name: str, what: str, op: str) -> None:
    if name not in CHOICES:
        raise ValueError(f"{what}: unknown {op} backend {name!r}; expected one of {CHOICES}")


def backend_argument(backend, op: str) -> str:
    """The `backend` argument of a public op, checked: None means "auto"."""
    name = "auto" if backend is None else backend
    if not isinstance(name, str):
        raise TypeError(f"backend: expected a str in {CHOICES} or None, got {describe(backend)}")
    _check_backend_name(name, "backend", op)
    return name


def resolve_backend(backend: Optional[str], device: torch.device, op: str = "selective_scan") -> str:
    """The concrete backend of `op` for `backend` and tensors on `device` ("auto"/None: VIMAMBA_BACKEND, else
    triton on CUDA when its module imports, else reference)."""
    name = "auto" if backend is None else backend
    if name == "auto":
        name = os.environ.get(ENV_BACKEND, "auto") or "auto"
        _check_backend_name(name, f"environment variable {ENV_BACKEND}", op)
    if name not in BACKENDS[op]:
        # mamba_ssm brings only the scan: the other ops take "auto", so VIMAMBA_BACKEND=mamba_ssm runs a whole model
        name = "auto"
    if name == "auto":
        name = "reference"
        # ROCm: the Triton kernels use NVIDIA PTX inline assembly and assume 32-lane warps
        if device.type == "cuda" and not torch.version.hip:
            try:
                load_backend("triton", op)
                name = "triton"
            except RuntimeError:
                pass
    if name in ("triton", "mamba_ssm") and device.type != "cuda":
        # The Triton interpreter runs kernels on CPU tensors (CI); mamba_ssm is CUDA only.
        if not (name == "triton" and (_interpreting() or device.type == "meta")):
            raise ValueError(
                f"backend: {name!r} needs CUDA tensors, got tensors on {device}"
                + (" (set TRITON_INTERPRET=1 to run Triton kernels on CPU)" if name == "triton" else ""))
    return name


@contextlib.contextmanager
def _autograd_dispatch():
    """Re-enable autograd inside a custom-op implementation, for backwards that differentiate a recomputed forward."""
    keys = [getattr(torch._C.DispatchKey, k, None)
            for k in ("AutogradFunctionality", "AutogradOther", "AutogradNestedTensor")]
    guard = getattr(torch._C, "_SetExcludeDispatchKeyGuard", None)
    with contextlib.ExitStack() as stack:
        if guard is not None:
            for key in keys:
                if key is not None:
                    stack.enter_context(guard(key, False))
        with torch.enable_grad():
            yield


def _call(name: str, op: str, direction: str, args):
    # The Triton backwards are kernels only; the others differentiate a recomputed forward.
    with _autograd_dispatch() if direction == "bwd" and name != "triton" else contextlib.nullcontext():
        return getattr(load_backend(name, op), f"{op}_{direction}")(*args)


def run(op: str, direction: str, backend: str, *args):
    """`<op>_<direction>` of `backend` for args[0]'s device; under "auto", a NotImplementedError falls back to the
    reference with one warning per reason (the backward resolves as the forward did)."""
    name = resolve_backend(backend, args[0].device, op)
    try:
        return _call(name, op, direction, args)
    except NotImplementedError as e:
        explicit = backend != "auto" or os.environ.get(ENV_BACKEND, "auto") not in ("", "auto")
        if name == "reference" or explicit:
            raise
        if str(e) not in _warned_fallback:
            _warned_fallback.add(str(e))
            warnings.warn(f"{op}: backend {name!r} declined ({e}); using the reference backend", stacklevel=2)
        return _call("reference", op, direction, args)


_PLAIN_TENSORS = (Tensor, torch.nn.Parameter)


def direct_call(args: Sequence) -> bool:
    """Whether an op call may run its implementation straight: plain tensors off the meta device, and nothing
    compiling, tracing, intercepting or profiling (those need the registered op, its fake or its profiler event)."""
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or torch._C._autograd._profiler_enabled():
        return False
    if _get_current_dispatch_mode() is not None or torch._C._are_functorch_transforms_active():
        return False
    tensors = [a for a in args if isinstance(a, Tensor)]
    return all(type(t) in _PLAIN_TENSORS for t in tensors) and tensors[0].device.type != "meta"


class _Direct(torch.autograd.Function):
    """An `Op`'s implementation under its registered autograd formula, without the dispatcher."""

    @staticmethod
    def forward(ctx, op, *args):
        out = op.impl(*args)
        op.setup_context(ctx, args, out)
        ctx.op = op
        return out

    @staticmethod
    def backward(ctx, *grads):
        return (None,) + tuple(ctx.op.backward(ctx, *grads))


class Op:
    """Custom op `vimamba::<name>` whose eager calls (`direct_call`) run its implementation and autograd formula from
    Python: the dispatcher's custom-op wrapping costs the host more than the kernels' launches."""

    def __init__(self, name: str, impl: Callable):
        self.impl = impl
        self.custom = torch.library.custom_op(f"vimamba::{name}", impl, mutates_args=())
        self.overload = getattr(torch.ops.vimamba, name).default
        self.backward = self.setup_context = None

    def register_fake(self, fn: Callable) -> Callable:
        return self.custom.register_fake(fn)

    def register_autograd(self, backward: Callable, setup_context: Callable) -> None:
        self.custom.register_autograd(backward, setup_context=setup_context)
        self.backward, self.setup_context = backward, setup_context

    def __call__(self, *args):
        if not direct_call(args):
            return self.overload(*args)
        if torch.is_grad_enabled() and any(isinstance(a, Tensor) and a.requires_grad for a in args):
            # Without a formula (the backward ops, under create_graph) the registered op raises if differentiated.
            return self.overload(*args) if self.backward is None else _Direct.apply(self, *args)
        return self.impl(*args)


@functools.lru_cache(maxsize=512)
def _empty_like_strides(shape: Tuple[int, ...], stride: Tuple[int, ...]) -> Tuple[int, ...]:
    return torch.empty_like(torch.empty_strided(shape, stride, device="meta")).stride()


def in_layout_of(out: Tensor, like: Tensor) -> Tensor:
    """`out` with the strides of `torch.empty_like(like)`, the layout the fake implementations promise."""
    if out.stride() == _empty_like_strides(tuple(like.shape), like.stride()):
        return out
    return torch.empty_like(like, dtype=out.dtype).copy_(out)


def grad_outputs(grads: Sequence[Optional[Tensor]], inputs: Sequence[Optional[Tensor]]) -> Tuple[Tensor, ...]:
    """A backward op's outputs: gradients in their inputs' layouts, empty for an absent input (no optional outputs)."""
    return tuple(inputs[0].new_empty(0) if g is None else in_layout_of(g, t) for g, t in zip(grads, inputs))


def fake_grad_outputs(inputs: Sequence[Optional[Tensor]]) -> Tuple[Tensor, ...]:
    """`grad_outputs`' shapes, for a backward op's fake implementation."""
    return tuple(inputs[0].new_empty(0) if t is None else torch.empty_like(t) for t in inputs)


def present_grads(grads: Sequence[Tensor], inputs: Sequence[Optional[Tensor]]) -> Tuple[Optional[Tensor], ...]:
    """A backward op's outputs as autograd gradients: None for an absent input."""
    return tuple(None if t is None else g for g, t in zip(grads, inputs))


def fx_proxy(args: Sequence) -> Optional[torch.fx.Proxy]:
    """The first torch.fx.Proxy in args, or None; the op then records itself as a leaf (`fx.wrap` is per-module)."""
    return next((a for a in args if isinstance(a, torch.fx.Proxy)), None)


def checked(check: Callable, *args):
    """`check(*args)`, without the TracerWarnings its size comparisons raise under the FLOP counters' jit trace."""
    if not torch.jit.is_tracing():
        return check(*args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return check(*args)


def describe(t) -> str:
    if isinstance(t, Tensor):
        return f"tensor of shape {tuple(t.shape)} and dtype {t.dtype} on {t.device}"
    return f"{type(t).__name__} {t!r}"


def check_tensor(name: str, t, shape: Tuple[int, ...], shape_text: str, device: torch.device,
                 device_of: str = "u") -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name}: expected a tensor {shape_text}, got {describe(t)}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a floating tensor (float16, bfloat16, float32 or float64), "
                        f"got {describe(t)}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape_text} = {shape}, got {describe(t)}")
    if t.device != device:
        raise ValueError(f"{name}: expected a tensor on {device} (the device of {device_of}), got {describe(t)}")


def jit_sizes(value) -> Optional[List[int]]:
    """The sizes of a torch.jit graph value (a FLOP handle's input), None for an absent optional."""
    kind = value.type()
    return kind.sizes() if isinstance(kind, torch._C.TensorType) else None
