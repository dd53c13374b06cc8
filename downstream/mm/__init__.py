"""OpenMMLab integration: registers every vimamba backbone and the layer-decay constructor in mmengine's ROOT
registries (inherited by mmseg's and mmdet's, so neither is imported)."""
from .backbone import PLAIN_FAMILIES, VimambaBackbone
from .optim import LayerDecayOptimWrapperConstructor

__all__ = ['VimambaBackbone', 'LayerDecayOptimWrapperConstructor', 'PLAIN_FAMILIES']
