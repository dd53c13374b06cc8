"""Image restoration on mmengine alone: `Restorer` model, `PairedImageDataset`, `PSNR` / `SSIM` metrics.

Configs import this module (`custom_imports=dict(imports=['vimamba.downstream.restoration'])`), which
registers the model and losses in mmengine's MODELS, the dataset in DATASETS and the metrics in METRICS.
`functional` and `datasets` need no mmengine (the `tools/restore.py` demo and the tests use them alone).
"""
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
