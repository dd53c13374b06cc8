#!/usr/bin/env python
"""Benchmark vimamba models next to timm baselines (params, FLOPs with the scan, throughput, peak memory, resolution
sweep); results.md / .json / PNG plots under --out. Logic in vimamba/benchmark.py."""
import sys

from vimamba.benchmark import main

if __name__ == '__main__':
    sys.exit(0 if main() is not None else 1)
