"""vimamba: Vision Mamba backbones for timm and OpenMMLab.

Importing the package registers every model with timm, so `timm.create_model('vim_tiny_patch16_224')`
works after `import vimamba`. It also gives fvcore's `FlopCountAnalysis` and mmengine's `get_model_complexity_info`
handles for our ops (`vimamba.flops`). OpenMMLab integration lives in `vimamba.downstream` and is never imported here.
"""
__version__ = "0.1.0"

from . import models  # noqa: F401  registers every model with timm
from .flops import install_default_handles
from . import export  # noqa: F401  lowers the custom ops for torch.onnx.export
from .registry import list_models

install_default_handles()
