"""mmengine parts: change detectors, BCD / SCD metrics, dataset registration.

Batches (`collate_fn=dict(type='default_collate')`) are dicts that `BaseModel` passes to `forward` as keywords.
"""
from typing import Any, Dict, List, Optional, Sequence

import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, METRICS, MODELS
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from .datasets import BinaryChangeDataset, SemanticChangeDataset
from .functional import (
    bcd_loss, binary_change_metrics, confusion_matrix, scd_loss, semantic_change_hist, semantic_change_metrics)
from .inference import slide_inference
from .model import BinaryChangeNet, SemanticChangeNet

__all__ = ['BinaryChangeDetector', 'SemanticChangeDetector', 'BinaryChangeMetric', 'SemanticChangeMetric']

DATASETS.register_module(module=BinaryChangeDataset)
DATASETS.register_module(module=SemanticChangeDataset)

_TEST_MODES = ('whole', 'slide')


class _ChangeDetector(BaseModel):
    def __init__(self, net: torch.nn.Module, test_cfg: Optional[Dict[str, Any]], data_preprocessor, init_cfg):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.net = net
        self.test_cfg = dict(dict(mode='whole'), **(test_cfg or {}))
        mode = self.test_cfg['mode']
        if mode not in _TEST_MODES:
            raise ValueError(f'{type(self).__name__}: test_cfg mode={mode!r}; accepted: {_TEST_MODES}')
        if mode == 'slide' and 'crop_size' not in self.test_cfg:
            raise ValueError(f"{type(self).__name__}: test_cfg mode='slide' needs crop_size (and optionally stride)")

    def _infer(self, img1: torch.Tensor, img2: torch.Tensor):
        if self.test_cfg['mode'] == 'slide':
            return slide_inference(self.net, img1, img2, self.test_cfg['crop_size'], self.test_cfg.get('stride'))
        return self.net(img1, img2)


@MODELS.register_module()
class BinaryChangeDetector(_ChangeDetector):
    """AWMambaBCD for the mmengine Runner: loss CE + `lovasz_weight` * Lovasz-softmax (ChangeMamba's).

    Args:
        encoder / decoder / mean / std: `BinaryChangeNet` arguments.
        test_cfg: dict(mode='whole') or dict(mode='slide', crop_size=..., stride=...).
    """

    def __init__(self, encoder: Optional[Dict[str, Any]] = None, decoder: Optional[Dict[str, Any]] = None,
                 mean: Sequence[float] = IMAGENET_DEFAULT_MEAN, std: Sequence[float] = IMAGENET_DEFAULT_STD,
                 lovasz_weight: float = 0.75, ignore_index: int = 255, test_cfg: Optional[Dict[str, Any]] = None,
                 data_preprocessor: Optional[Dict[str, Any]] = None, init_cfg: Optional[Dict[str, Any]] = None):
        super().__init__(BinaryChangeNet(encoder, decoder, mean, std), test_cfg, data_preprocessor, init_cfg)
        self.lovasz_weight = lovasz_weight
        self.ignore_index = ignore_index

    def forward(self, img1: torch.Tensor, img2: torch.Tensor, label: Optional[torch.Tensor] = None,
                name: Optional[List[str]] = None, mode: str = 'tensor', **kwargs):
        if mode == 'loss':
            return bcd_loss(self.net(img1, img2), label, self.lovasz_weight, self.ignore_index)
        if mode == 'predict':
            pred = self._infer(img1, img2).argmax(dim=1)
            names = name if name is not None else [None] * len(pred)
            labels = label if label is not None else [None] * len(pred)
            return [dict(pred=p, label=t, name=n) for p, t, n in zip(pred, labels, names)]
        if mode == 'tensor':
            return self.net(img1, img2)
        raise ValueError(f"BinaryChangeDetector: mode={mode!r}; accepted: 'loss', 'predict', 'tensor'")


@MODELS.register_module()
class SemanticChangeDetector(_ChangeDetector):
    """AWMambaSCD for the mmengine Runner: ChangeMamba's SCD loss; `num_classes` includes no change (SECOND 7)."""

    def __init__(self, num_classes: int = 7, encoder: Optional[Dict[str, Any]] = None,
                 decoder: Optional[Dict[str, Any]] = None, mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
                 std: Sequence[float] = IMAGENET_DEFAULT_STD, lovasz_weight: float = 0.75, ignore_index: int = 255,
                 test_cfg: Optional[Dict[str, Any]] = None, data_preprocessor: Optional[Dict[str, Any]] = None,
                 init_cfg: Optional[Dict[str, Any]] = None):
        super().__init__(SemanticChangeNet(num_classes, encoder, decoder, mean, std), test_cfg, data_preprocessor,
                         init_cfg)
        self.lovasz_weight = lovasz_weight
        self.ignore_index = ignore_index

    def forward(self, img1: torch.Tensor, img2: torch.Tensor, label: Optional[torch.Tensor] = None,
                label1: Optional[torch.Tensor] = None, label2: Optional[torch.Tensor] = None,
                name: Optional[List[str]] = None, mode: str = 'tensor', **kwargs):
        if mode == 'loss':
            change, sem1, sem2 = self.net(img1, img2)
            return scd_loss(change, sem1, sem2, label, label1, label2, self.lovasz_weight, self.ignore_index)
        if mode == 'predict':
            change, sem1, sem2 = (o.argmax(dim=1) for o in self._infer(img1, img2))
            out = []
            for i in range(len(change)):
                sample = dict(pred=change[i], pred1=sem1[i] * change[i], pred2=sem2[i] * change[i],
                              name=name[i] if name is not None else None)
                if label is not None:
                    sample.update(label=label[i], label1=label1[i], label2=label2[i])
                out.append(sample)
            return out
        if mode == 'tensor':
            return self.net(img1, img2)
        raise ValueError(f"SemanticChangeDetector: mode={mode!r}; accepted: 'loss', 'predict', 'tensor'")


@METRICS.register_module()
class BinaryChangeMetric(BaseMetric):
    """Precision, Recall, F1, IoU (change class), OA and Kappa from one confusion matrix over the whole set."""

    def __init__(self, ignore_index: int = 255, collect_device: str = 'cpu', prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.ignore_index = ignore_index

    def process(self, data_batch: Any, data_samples: Sequence[Dict[str, Any]]) -> None:
        for sample in data_samples:
            self.results.append(confusion_matrix(sample['pred'], sample['label'], 2, self.ignore_index))

    def compute_metrics(self, results: List[torch.Tensor]) -> Dict[str, float]:
        return binary_change_metrics(torch.stack(results).sum(0))


@METRICS.register_module()
class SemanticChangeMetric(BaseMetric):
    """`semantic_change_metrics` of one SCD matrix over the set; mode: see `functional.semantic_change_hist`."""

    def __init__(self, num_classes: int = 7, mode: str = 'per_date', ignore_index: int = 255,
                 collect_device: str = 'cpu', prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if mode not in ('per_date', 'from_to'):
            raise ValueError(f"SemanticChangeMetric: mode={mode!r}; accepted: 'per_date', 'from_to'")
        self.num_classes = num_classes
        self.mode = mode
        self.ignore_index = ignore_index

    def process(self, data_batch: Any, data_samples: Sequence[Dict[str, Any]]) -> None:
        for s in data_samples:
            self.results.append(semantic_change_hist(
                s['pred'], s['pred1'], s['pred2'], s['label'], s['label1'], s['label2'], self.num_classes,
                self.mode, self.ignore_index))

    def compute_metrics(self, results: List[torch.Tensor]) -> Dict[str, float]:
        return semantic_change_metrics(torch.stack(results).sum(0))
