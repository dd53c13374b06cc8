"""OpenMMLab integration: every vimamba backbone in mmseg and mmdet configs.

Configs load it with `custom_imports = dict(imports=['vimamba.downstream.mm'], allow_failed_imports=False)`.
It registers, in mmengine's ROOT registries (mmseg's and mmdet's are their children, so both find them without
this module importing either package):
- MODELS: `VimambaBackbone` (any vimamba model by name, feature pyramid for the plain families);
- OPTIM_WRAPPER_CONSTRUCTORS: `LayerDecayOptimWrapperConstructor` (layer-wise lr decay from the timm
  `group_matcher`, no weight decay on position embeddings, tokens, norms, A_log, D).
`import vimamba` never imports this module.
"""
from .backbone import PLAIN_FAMILIES, VimambaBackbone
from .optim import LayerDecayOptimWrapperConstructor

__all__ = ['VimambaBackbone', 'LayerDecayOptimWrapperConstructor', 'PLAIN_FAMILIES']
