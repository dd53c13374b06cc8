"""Remote-sensing change detection: siamese BCD / SCD models on any vimamba backbone, datasets, metrics.

Importing it (config `custom_imports`) registers the mmengine parts; the other modules need no mmengine."""
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
