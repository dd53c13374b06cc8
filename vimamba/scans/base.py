"""What every scan pattern returns (`ScanOrder`), the pattern base class, its cache and the name registry."""
import concurrent.futures
import functools
import itertools
import operator
import weakref
from dataclasses import dataclass, fields
from typing import ClassVar, Dict, List, NamedTuple, Optional, Type, Union

import torch
from torch.utils._python_dispatch import _disable_current_modes

DeviceLike = Union[torch.device, str, int, None]


@dataclass(frozen=True, eq=False)
class ScanOrder:
    """Token visiting order of K directions over L tokens: `index[k, t]` is the token direction k visits at step t.
    `local_window`: the LBMamba window for the op (0: plain). Cached and shared: never modify in place."""
    index: torch.Tensor
    inverse: torch.Tensor
    local_window: int = 0

    @property
    def num_directions(self) -> int:
        return self.index.shape[0]

    @property
    def length(self) -> int:
        return self.index.shape[1]

    @property
    def device(self) -> torch.device:
        return self.index.device

    def to(self, device: DeviceLike) -> "ScanOrder":
        return ScanOrder(self.index.to(device), self.inverse.to(device), self.local_window)

    @classmethod
    def from_index(cls, index: torch.Tensor, local_window: int = 0) -> "ScanOrder":
        """The order of `index` ((L,) or (K, L)), checked: the op trusts `ScanOrder` objects to be permutations."""
        index = torch.as_tensor(index)
        if index.is_floating_point() or index.is_complex() or index.dtype == torch.bool:
            raise TypeError(f"ScanOrder.from_index: index must be an integer tensor, got dtype {index.dtype}")
        if index.dim() not in (1, 2) or index.shape[-1] == 0:
            raise ValueError(f"ScanOrder.from_index: index must have shape (L,) or (K, L) with L >= 1, "
                             f"got shape {tuple(index.shape)}")
        local_window = check_int("ScanOrder.from_index", "local_window", local_window, 0)
        index = index.long()
        if index.dim() == 1:
            index = index[None]
        _check_permutation(index)
        return cls._from_permutation(index, local_window)

    @classmethod
    def _from_permutation(cls, index: torch.Tensor, local_window: int = 0) -> "ScanOrder":
        # Rows that are permutations by construction: no check, no host sync.
        return cls(index=index, inverse=inverse_permutation(index), local_window=local_window)


def inverse_permutation(index: torch.Tensor) -> torch.Tensor:
    """`inverse[k, index[k, t]] = t` for rows that are permutations (traceable: no host sync)."""
    steps = torch.arange(index.shape[-1], device=index.device).expand_as(index)
    return torch.empty_like(index).scatter_(-1, index, steps)


def _check_permutation(index: torch.Tensor) -> None:
    """A ValueError naming the first row of `index` (K, L) that is not a permutation of 0..L-1."""
    length = index.shape[1]
    rows = index.cpu()
    if rows.min() >= 0 and rows.max() < length:
        offsets = torch.arange(rows.shape[0])[:, None] * length
        if bool((torch.bincount((rows + offsets).flatten(), minlength=rows.numel()) == 1).all()):
            return
    for k, row in enumerate(rows):
        inside = (row >= 0) & (row < length)
        counts = torch.bincount(row[inside], minlength=length)
        problems = [(what, values) for what, values in (
            (f"outside 0..{length - 1}", row[~inside].unique().tolist()),
            ("never visited", (counts == 0).nonzero().flatten().tolist()),
            ("visited more than once", (counts > 1).nonzero().flatten().tolist())) if values]
        if problems:
            details = "; ".join(f"{what}: {values[:8]}" + (" ..." if len(values) > 8 else "")
                                for what, values in problems)
            raise ValueError(f"ScanOrder.from_index: index row {k} is not a permutation of 0..{length - 1} "
                             f"(tokens {details})")



def check_int(owner: str, name: str, value, minimum: int) -> int:
    # bool is an int subclass; `window=True` is a bug, not a window of 1.
    if isinstance(value, bool):
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}") from None
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}")
    return value


def check_depths(owner: str, name: str, depths) -> tuple:
    """Blocks per stage: ints >= 0, at least one block in all."""
    try:
        depths = tuple(depths)
    except TypeError:
        raise ValueError(f"{owner}: {name} must be a sequence of ints >= 0, got {depths!r}") from None
    for i, depth in enumerate(depths):
        check_int(owner, f"{name}[{i}]", depth, 0)
    if sum(depths) < 1:
        raise ValueError(f"{owner}: {name}={depths} builds a model with no blocks; give at least one block")
    return depths


def check_grid(owner: str, h, w) -> tuple:
    try:
        if isinstance(h, bool) or isinstance(w, bool):
            raise TypeError
        h, w = operator.index(h), operator.index(w)
    except TypeError:
        raise ValueError(f"{owner}: grid (h={h!r}, w={w!r}) is not valid; h and w must be ints >= 1") from None
    if h < 1 or w < 1:
        raise ValueError(f"{owner}: grid (h={h}, w={w}) is not valid; h and w must be ints >= 1")
    return h, w


def _normalise_device(device: DeviceLike) -> torch.device:
    if isinstance(device, torch.device) and (device.index is not None or device.type != "cuda"):
        return device
    device = torch.device("cpu") if device is None else torch.device(device)
    # "cuda" and "cuda:0" must hit the same cache entry.
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device



class ScanPattern:
    """Base of every pattern: a frozen dataclass of its parameters, with `name`, `num_directions` and
    `_index(h, w) -> (K, h*w) long` on the CPU (`_local_window(h, w)`: LBMamba's window, 0 by default)."""
    name: ClassVar[str]
    num_directions: ClassVar[int]

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        # Compiled graphs name the pattern by this number: dynamo passes only plain constants across.
        object.__setattr__(self, '_key', next(_KEYS))
        _BY_KEY[self._key] = self
        return self

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != '_key'}  # a copy gets its own key from __new__

    def order(self, h: int, w: int, device: DeviceLike = None, *, training: bool = False,
              generator: Optional[torch.Generator] = None) -> ScanOrder:
        """The cached `ScanOrder` of an h x w grid (tokens in raster order) on `device`; `training` and `generator`
        matter only to randomised patterns."""
        h, w = check_grid(type(self).__name__ + ".order", h, w)
        return _cached_order(self, h, w, _normalise_device(device))

    def op_order(self, h: int, w: int, device: DeviceLike = None) -> Union[ScanOrder, 'GridOrder', torch.Tensor]:
        """What a mixer hands the op as `order`: the `ScanOrder`; a `GridOrder` under torch.compile (no index tensor
        in the graph); under torch.export the index, a constant of the program."""
        if not torch.compiler.is_compiling():
            return self.order(h, w, device)
        if _is_exporting():
            return _constant_index(self._key, h, w, device)
        return GridOrder(self._key, h, w)

    def local_window(self, h: int, w: int) -> int:
        """The LBMamba window the op should use on an h x w grid (0: plain scan)."""
        return self._local_window(h, w)

    def _index(self, h: int, w: int) -> torch.Tensor:
        raise NotImplementedError

    def _local_window(self, h: int, w: int) -> int:
        return 0


@functools.lru_cache(maxsize=256)
def _cached_order(pattern: ScanPattern, h: int, w: int, device: torch.device) -> ScanOrder:
    # The cache outlives the call: no inference tensors (autograd refuses them later), no export's fake tensors.
    with torch.inference_mode(False), _disable_current_modes():
        if device.type == "cuda" and not torch.cuda.is_current_stream_capturing():
            return _copy_off_graph_pool(_cached_order(pattern, h, w, torch.device("cpu")), device)
        if device.type != "cpu":
            return _cached_order(pattern, h, w, torch.device("cpu")).to(device)
        index = pattern._index(h, w)
        return ScanOrder.from_index(index, local_window=pattern._local_window(h, w))


def _copy_off_graph_pool(order: ScanOrder, device: torch.device) -> ScanOrder:
    # CUDA-graph trees put the compiling thread's allocations in their private pool, where a cached tensor fails
    # their check; another thread allocates from the default pool.
    with concurrent.futures.ThreadPoolExecutor(1) as worker:
        return worker.submit(order.to, device).result()


_KEYS = itertools.count()
_BY_KEY: 'weakref.WeakValueDictionary[int, ScanPattern]' = weakref.WeakValueDictionary()


class GridOrder(NamedTuple):
    """The cached order of pattern `key` (`ScanPattern._key`) on a height x width grid, named rather than held."""
    key: int
    height: int
    width: int


def pattern_by_key(key: int) -> 'ScanPattern':
    return _BY_KEY[key]


def _is_exporting() -> bool:
    # Non-strict export only (torch 2.11's dynamo says True under torch.compile); strict export takes GridOrder.
    return torch.compiler.is_exporting() and not torch.compiler.is_dynamo_compiling()


@torch.compiler.assume_constant_result
def _constant_index(key: int, h: int, w: int, device: DeviceLike) -> torch.Tensor:
    return _BY_KEY[key].order(h, w, device).index


def clear_cache() -> None:
    """Drop every cached order (e.g. to free GPU memory after a resolution sweep)."""
    _cached_order.cache_clear()



_PATTERNS: Dict[str, Type[ScanPattern]] = {}


def register_pattern(cls: Type[ScanPattern]) -> Type[ScanPattern]:
    if cls.name in _PATTERNS:
        raise ValueError(f"scan pattern name {cls.name!r} is already registered by {_PATTERNS[cls.name].__name__}")
    _PATTERNS[cls.name] = cls
    return cls


def list_patterns() -> List[str]:
    """Names accepted by `get_pattern`, sorted."""
    return sorted(_PATTERNS)


def get_pattern(name: Union[str, ScanPattern], **params) -> ScanPattern:
    """Build the pattern registered as `name` (defaults: the official ones); a built pattern passes through."""
    if isinstance(name, ScanPattern):
        if params:
            raise TypeError(f"get_pattern: parameters {sorted(params)} given with an already built {name!r}")
        return name
    if name not in _PATTERNS:
        raise ValueError(f"get_pattern: unknown scan pattern name={name!r}; accepted: {', '.join(list_patterns())}")
    cls = _PATTERNS[name]
    accepted = [f.name for f in fields(cls)]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(f"get_pattern: scan pattern {name!r} got unknown parameters {unknown}; "
                        f"accepted: {accepted or 'none'}")
    return cls(**params)


def from_transposed(order: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Map an order built on the transposed (w x h) grid back to raster indices of the h x w grid."""
    return (order % h) * w + order // h
