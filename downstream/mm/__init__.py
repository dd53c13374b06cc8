"""OpenMMLab integration: every vimamba backbone in mmseg and mmdet configs.

Registers `VimambaBackbone` and `LayerDecayOptimWrapperConstructor` in mmengine's ROOT registries, whose children
mmseg's and mmdet's are, so neither package is imported. `import vimamba` never imports this module.
"""
from .backbone import PLAIN_FAMILIES, VimambaBackbone
from .optim import LayerDecayOptimWrapperConstructor

__all__ = ['VimambaBackbone', 'LayerDecayOptimWrapperConstructor', 'PLAIN_FAMILIES']
