"""Remote-sensing change detection: AWMambaBCD / AWMambaSCD (siamese AtrousMamba or any vimamba backbone),
bi-temporal datasets, BCD / SCD metrics.

Configs import this module (`custom_imports=dict(imports=['vimamba.downstream.change_detection'])`), which registers
`BinaryChangeDetector` / `SemanticChangeDetector` in mmengine's MODELS, the datasets in DATASETS and
`BinaryChangeMetric` / `SemanticChangeMetric` in METRICS. `functional`, `datasets`, `model` and `inference` need no
mmengine (the `tools/detect_changes.py` demo and most tests use them alone).
"""
from .datasets import SECOND_CLASSES, SECOND_PALETTE, BinaryChangeDataset, SemanticChangeDataset, load_label
from .functional import (
    bcd_loss, binary_change_metrics, confusion_matrix, lovasz_softmax, paired_flip_rotate, paired_random_crop,
    scd_loss, semantic_change_hist, semantic_change_metrics)
from .inference import detect_changes, slide_inference
from .model import BinaryChangeNet, ChangeDecoder, SemanticChangeNet, SemanticDecoder, SiameseEncoder

try:
    import mmengine  # noqa: F401
except ImportError:  # the plain-PyTorch parts stay usable
    pass
else:
    from .mm import BinaryChangeDetector, BinaryChangeMetric, SemanticChangeDetector, SemanticChangeMetric
