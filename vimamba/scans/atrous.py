"""Atrous-window scans for AtrousMamba's AWVSS block and their rate schedule (docs/families.md#atrousmamba)."""
from dataclasses import dataclass
from typing import List, Sequence, Tuple, Union

import torch

from .base import ScanPattern, check_grid, check_int, from_transposed, get_pattern, register_pattern


def atrous_window_order(h: int, w: int, window: int, rate: int) -> torch.Tensor:
    """Raster indices (h*w,) in atrous-window order: blocks of span rate*window, inside each the rate x rate
    dilation phases, each a window of tokens; all in raster order, border blocks clipped."""
    span = rate * window
    i = torch.arange(h)[:, None]
    j = torch.arange(w)[None, :]
    block_i, phase_i, step_i = i // span, (i % span) % rate, (i % span) // rate
    block_j, phase_j, step_j = j // span, (j % span) % rate, (j % span) // rate
    blocks_per_row = -(-w // span)
    key = block_i * blocks_per_row + block_j
    key = (key * rate + phase_i) * rate + phase_j
    key = (key * window + step_i) * window + step_j
    return torch.argsort(key.flatten())


@register_pattern
@dataclass(frozen=True)
class AtrousWindowScan(ScanPattern):
    """Four atrous-window directions in VMamba's cross2d order (AWVSS loads VMamba checkpoints).
    Default window 8 divides 256-px crops' grids; rate 1 with window >= max(H, W) equals `cross`."""
    window: int = 8
    rate: int = 1

    name = "atrous_window"
    num_directions = 4

    def __post_init__(self):
        object.__setattr__(self, "window", check_int(type(self).__name__, "window", self.window, 1))
        object.__setattr__(self, "rate", check_int(type(self).__name__, "rate", self.rate, 1))

    def _index(self, h, w):
        rows_first = atrous_window_order(h, w, self.window, self.rate)
        columns_first = from_transposed(atrous_window_order(w, h, self.window, self.rate), h, w)
        return torch.stack([rows_first, columns_first, rows_first.flip(0), columns_first.flip(0)])


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def atrous_phase_outer_order(h: int, w: int, window: int, rate: int) -> torch.Tensor:
    """Raster indices (h*w,) in phase-outer atrous order: dilation phases first, each phase's sub-lattice cut
    into window x window windows; all in raster order, border windows clipped."""
    i = torch.arange(h)[:, None]
    j = torch.arange(w)[None, :]
    phase_i, phase_j = i % rate, j % rate
    a, b = i // rate, j // rate
    windows_per_col = _ceil_div(_ceil_div(h, rate), window)
    windows_per_row = _ceil_div(_ceil_div(w, rate), window)
    key = phase_i * rate + phase_j
    key = (key * windows_per_col + a // window) * windows_per_row + b // window
    key = (key * window + a % window) * window + b % window
    return torch.argsort(key.flatten())


@register_pattern
@dataclass(frozen=True)
class AtrousPhaseOuterScan(ScanPattern):
    """'atrous_window' with the dilation phases outermost (`atrous_phase_outer_order`)."""
    window: int = 8
    rate: int = 1

    name = "atrous_phase_outer"
    num_directions = 4

    def __post_init__(self):
        object.__setattr__(self, "window", check_int(type(self).__name__, "window", self.window, 1))
        object.__setattr__(self, "rate", check_int(type(self).__name__, "rate", self.rate, 1))

    def _index(self, h, w):
        rows_first = atrous_phase_outer_order(h, w, self.window, self.rate)
        columns_first = from_transposed(atrous_phase_outer_order(w, h, self.window, self.rate), h, w)
        return torch.stack([rows_first, columns_first, rows_first.flip(0), columns_first.flip(0)])


RATE_OVERFLOW = ("clip", "error")
ATROUS_ORDERS = ("window", "phase")
ATROUS_MODES = ("cycle", "parallel")


def effective_atrous_rate(height: int, width: int, window: int, rate: int, rate_overflow: str = "clip") -> int:
    """The rate an atrous window scan uses on a grid: 'clip' lowers it to the largest r >= 1 with r*w <= max(H, W);
    'error' raises when r*w > max(H, W)."""
    span = rate * window
    if span <= max(height, width):
        return rate
    if rate_overflow == "error":
        raise ValueError(
            f"atrous window scan: rate={rate} x window={window} spans {span} cells, more than the "
            f"{height}x{width} grid (needs rate * window <= max(H, W) = {max(height, width)}); use a smaller "
            f"rate or window, a larger input, or rate_overflow='clip'")
    return max(1, max(height, width) // window)


def _check_choice(owner: str, name: str, value, accepted: tuple) -> None:
    if value not in accepted:
        raise ValueError(f"{owner}: {name}={value!r}; accepted: {accepted}")


@register_pattern
@dataclass(frozen=True)
class AtrousWindowRateScan(ScanPattern):
    """'atrous_window' (or 'atrous_phase_outer') whose rate adapts to the grid it scans (`effective_atrous_rate`)."""
    window: int = 8
    rate: int = 1
    rate_overflow: str = "clip"
    order_mode: str = "window"

    name = "atrous_window_rate"
    num_directions = 4

    def __post_init__(self):
        owner = type(self).__name__
        object.__setattr__(self, "window", check_int(owner, "window", self.window, 1))
        object.__setattr__(self, "rate", check_int(owner, "rate", self.rate, 1))
        _check_choice(owner, "rate_overflow", self.rate_overflow, RATE_OVERFLOW)
        _check_choice(owner, "order_mode", self.order_mode, ATROUS_ORDERS)

    def pattern_for(self, height: int, width: int) -> ScanPattern:
        """The fixed-rate pattern this scan uses on a height x width grid."""
        height, width = check_grid(type(self).__name__, height, width)
        rate = effective_atrous_rate(height, width, self.window, self.rate, self.rate_overflow)
        if self.order_mode == "phase":
            return AtrousPhaseOuterScan(self.window, rate)
        return AtrousWindowScan(self.window, rate)

    def _index(self, h, w):
        return self.pattern_for(h, w)._index(h, w)


@register_pattern
@dataclass(frozen=True)
class MultiRateAtrousScan(ScanPattern):
    """ASPP-like: the four atrous directions at every rate of `rates`, rate after rate, each clipped to the grid;
    for a mixer with `shared_groups=len(rates)`, so the rates share VMamba's per-direction weights."""
    window: int = 8
    rates: Tuple[int, ...] = (1, 2, 4)
    rate_overflow: str = "clip"
    order_mode: str = "window"

    name = "atrous_window_multirate"

    def __post_init__(self):
        owner = type(self).__name__
        if isinstance(self.rates, int) or not self.rates:
            raise ValueError(f"{owner}: rates={self.rates!r}; accepted: a non-empty tuple of ints >= 1")
        object.__setattr__(self, "rates", tuple(check_int(owner, "rates", r, 1) for r in self.rates))
        AtrousWindowRateScan(self.window, 1, self.rate_overflow, self.order_mode)  # validates the rest

    @property
    def num_directions(self) -> int:
        return 4 * len(self.rates)

    @property
    def weight_groups(self) -> int:
        return len(self.rates)

    def _index(self, h, w):
        return torch.cat([
            AtrousWindowRateScan(self.window, r, self.rate_overflow, self.order_mode).pattern_for(h, w)._index(h, w)
            for r in self.rates])


def atrous_block_scans(
        scan: Union[str, ScanPattern],
        depths: Sequence[int],
        window: int = 8,
        rates: Union[Sequence[int], Sequence[Sequence[int]]] = (1, 2, 4),
        rate_overflow: str = "clip",
        order: str = "window",
        mode: str = "cycle",
        owner: str = "atrous_block_scans",
        rates_arg: str = "rates",
) -> List[List[ScanPattern]]:
    """Per-stage lists of block scan patterns. For 'atrous_window', `rates` (one sequence, or one per stage)
    cycle over the blocks (`mode='cycle'`) or are all scanned by every block (`mode='parallel'`)."""
    _check_choice(owner, "rate_overflow", rate_overflow, RATE_OVERFLOW)
    _check_choice(owner, "atrous_order", order, ATROUS_ORDERS)
    _check_choice(owner, "atrous_mode", mode, ATROUS_MODES)
    num_stages = len(depths)
    if scan != "atrous_window":
        pattern = get_pattern(scan)
        return [[pattern] * d for d in depths]
    rates = list(rates)
    if not rates:
        raise ValueError(f"{owner}: {rates_arg}=() is empty; give rates like (1, 2, 4) or one tuple per stage")
    if all(isinstance(r, (tuple, list)) for r in rates):
        if len(rates) != num_stages or any(len(r) == 0 for r in rates):
            raise ValueError(f"{owner}: {rates_arg}={tuple(map(tuple, rates))} needs one non-empty tuple per "
                             f"stage ({num_stages}, from depths={tuple(depths)}) or a single tuple for all stages")
        per_stage = [list(r) for r in rates]
    else:
        per_stage = [rates] * num_stages
    if mode == "parallel":
        return [[MultiRateAtrousScan(window, tuple(stage_rates), rate_overflow, order)] * d
                for d, stage_rates in zip(depths, per_stage)]
    return [[AtrousWindowRateScan(window, stage_rates[j % len(stage_rates)], rate_overflow, order) for j in range(d)]
            for d, stage_rates in zip(depths, per_stage)]
