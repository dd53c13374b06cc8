"""Image restoration on mmengine: model, dataset, metrics registered on import (`functional` needs no mmengine)."""
from ..common import load_image
from .datasets import PairedImageDataset
from .functional import bicubic_degrade, imresize, psnr, ssim

try:
    import mmengine  # noqa: F401
except ImportError:  # the plain-PyTorch parts stay usable
    pass
else:
    from mmengine.registry import DATASETS

    from .metrics import PSNR, SSIM
    from .model import CharbonnierLoss, L1Loss, Restorer
    from mmengine.registry import MODELS

    DATASETS.register_module(module=PairedImageDataset)
    MODELS.register_module(module=L1Loss)
    MODELS.register_module(module=CharbonnierLoss)
