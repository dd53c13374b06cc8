#!/usr/bin/env python3
"""Top-1/top-5 and images/s: `tools/validate_cls.py MODEL --data DIR [--checkpoint FILE] [--results-file F]`.

Eval transform: the model's pretrained_cfg unless overridden; official checkpoints load through the family's filter."""
import sys

import vimamba.models  # noqa: F401  registers the models with timm
from vimamba.classification import ConfigError, validate_main

if __name__ == '__main__':
    try:
        validate_main(sys.argv[1:])
    except ConfigError as e:
        sys.exit(f'validate_cls.py: error: {e}')
