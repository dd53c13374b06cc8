#!/usr/bin/env python3
"""Train an image classifier (`vimamba.classification.train`); any flag overrides the recipe.

    [torchrun --nproc_per_node=N] tools/train_cls.py --config configs/cls/RECIPE.yaml --data-dir DIR [flags]"""
import sys

import vimamba.models  # noqa: F401  registers the models with timm
from vimamba.classification import ConfigError, train_main

if __name__ == '__main__':
    try:
        train_main(sys.argv[1:])
    except ConfigError as e:
        sys.exit(f'train_cls.py: error: {e}')
