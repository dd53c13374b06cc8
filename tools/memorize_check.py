#!/usr/bin/env python3
"""Training smoke check: every family memorises a fixed random batch within a step budget; exit status = failures.

    python tools/memorize_check.py                                   # all families, bf16 and fp16, auto backend
    python tools/memorize_check.py --backends triton,reference --dtypes bf16 --families atrousmamba
    python tools/memorize_check.py --test-models --dtypes fp32 --device cpu      # the CI-size models"""
import sys

import vimamba.models  # noqa: F401  registers the models with timm
from vimamba.classification import ConfigError
from vimamba.classification.memorize import memorize_main

if __name__ == '__main__':
    try:
        sys.exit(min(memorize_main(sys.argv[1:]), 125))
    except ConfigError as e:
        sys.exit(f'memorize_check.py: error: {e}')
