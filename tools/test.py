"""Evaluate a checkpoint with any mmengine config into a JSON file (`vimamba.downstream.mm.runner.test_main`).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out metrics.json] [--cfg-options k=v ...]
    torchrun --nproc-per-node N tools/test.py CONFIG CHECKPOINT --launcher pytorch"""
from vimamba.downstream.mm.runner import test_main

if __name__ == '__main__':
    test_main()
