"""Scan patterns: index maps over token grids; `get_pattern(name).order(h, w, device)` gives a cached `ScanOrder`."""
from .base import ScanOrder, ScanPattern, clear_cache, get_pattern, list_patterns, register_pattern
from .basic import BidirectionalScan, CrossScan, RasterScan
from .local import LocallyBidirectionalScan, lbmamba_window
from .atrous import (
    AtrousPhaseOuterScan, AtrousWindowRateScan, AtrousWindowScan, MultiRateAtrousScan, atrous_block_scans,
    atrous_phase_outer_order, atrous_window_order, effective_atrous_rate,
)
from .nested import NestedSScan, nested_s_order
from .shuffle import ShuffleScan

__all__ = [
    "ScanOrder", "ScanPattern", "get_pattern", "list_patterns", "register_pattern", "clear_cache",
    "RasterScan", "BidirectionalScan", "CrossScan", "LocallyBidirectionalScan", "AtrousWindowScan",
    "AtrousPhaseOuterScan", "AtrousWindowRateScan", "MultiRateAtrousScan", "NestedSScan", "ShuffleScan",
    "lbmamba_window", "atrous_window_order", "atrous_phase_outer_order", "effective_atrous_rate",
    "atrous_block_scans", "nested_s_order",
]
