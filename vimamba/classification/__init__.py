"""Image classification: training and evaluation built from timm's parts.

`tools/train_cls.py` and `tools/validate_cls.py` are thin wrappers over `train_main` and `validate_main`.
Recipes are YAML files of argument defaults (timm's argument-file style) under `configs/cls/`; any
command-line flag overrides the file. Everything works with any timm model; `import vimamba` registers ours.
"""
from .config import ConfigError, build_train_parser, build_validate_parser, parse_train_args, parse_validate_args
from .evaluate import evaluate, validate, validate_main
from .train import build_optimizer, train, train_main

__all__ = [
    'ConfigError', 'build_train_parser', 'build_validate_parser', 'parse_train_args', 'parse_validate_args',
    'evaluate', 'validate', 'validate_main', 'build_optimizer', 'train', 'train_main',
]
