"""vimamba: Vision Mamba backbones for timm and OpenMMLab.
Importing it registers every model with timm and our ops' FLOP handles with fvcore and mmengine."""
__version__ = "0.1.0"

from . import models  # noqa: F401  registers every model with timm
from .flops import install_default_handles
from . import export  # noqa: F401  lowers the custom ops for torch.onnx.export
from .registry import list_models

install_default_handles()
