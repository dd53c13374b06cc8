"""Host-side helpers of the backends. No Triton import: vimamba.ops and the mamba_ssm backend use them too."""
import os

import torch

_POISON = False  # tests: fill outputs with NaN before the kernels run, so unwritten elements show


def _interpreting() -> bool:
    """Whether Triton's interpreter runs the kernels (TRITON_INTERPRET set): on CPU tensors, tiny blocks."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _next_pow2(x: int) -> int:
    return 1 << max(0, (int(x) - 1).bit_length())


def _out_like(x, dtype=None, shape=None):
    """An output in x's layout (`torch.empty_like`), or a new contiguous one of `shape`."""
    dtype = x.dtype if dtype is None else dtype
    out = torch.empty_like(x, dtype=dtype) if shape is None else torch.empty(shape, device=x.device, dtype=dtype)
    if _POISON:
        out.fill_(float("nan"))
    return out
