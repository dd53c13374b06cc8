"""vimamba: Vision Mamba backbones for timm and OpenMMLab.

Importing the package registers every model with timm, so `timm.create_model('vim_tiny_patch16_224')`
works after `import vimamba`. OpenMMLab integration lives in `vimamba.downstream` and is never imported here.
"""
__version__ = "0.1.0"

from .registry import list_models

from . import models  # noqa: E402,F401  registers every model with timm
