"""Scan patterns: pure index maps over token grids (no kernels, no models)."""
from .base import ScanOrder
