"""Evaluate a checkpoint with any mmengine config; the metrics go to a JSON file.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out metrics.json] [--cfg-options k=v ...]
    torchrun --nproc-per-node N tools/test.py CONFIG CHECKPOINT --launcher pytorch

The work lives in `vimamba.downstream.mm.runner.test_main`.
"""
from vimamba.downstream.mm.runner import test_main

if __name__ == '__main__':
    test_main()
