"""vimamba: Vision Mamba backbones for timm and OpenMMLab.

Importing the package registers every model with timm, so `timm.create_model('vim_tiny_patch16_224')`
works after `import vimamba`. OpenMMLab integration lives in `vimamba.downstream` and is never imported here.
"""
__version__ = "0.1.0"

from . import models  # noqa: F401  registers every model with timm
from . import export  # noqa: F401  lowers the custom ops for torch.onnx.export
from .registry import list_models
