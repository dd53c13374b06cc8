#!/usr/bin/env python
"""Benchmark the vimamba models next to timm baselines: parameters, FLOPs (selective scan included),
throughput, peak memory, optional resolution sweep; table on the terminal, results.md / results.json /
PNG plots under --out. `--help` for the options; the logic is in vimamba/benchmark.py."""
import sys

from vimamba.benchmark import main

if __name__ == '__main__':
    sys.exit(0 if main() is not None else 1)
