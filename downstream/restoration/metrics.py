"""PSNR / SSIM mmengine metrics averaged over images (SR: `crop_border=scale, test_y_channel=True`)."""
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.registry import METRICS

from .functional import psnr, ssim

__all__ = ['PSNR', 'SSIM']


class _ImageMetric(BaseMetric):
    default_prefix = ''  # plain 'PSNR' / 'SSIM' keys (CheckpointHook's save_best names them)
    metric = ''
    function = None

    def __init__(self, crop_border: int = 0, test_y_channel: bool = False, collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not isinstance(crop_border, int) or crop_border < 0:
            raise ValueError(f'{type(self).__name__}: crop_border must be an int >= 0, got {crop_border!r}')
        self.crop_border = crop_border
        self.test_y_channel = test_y_channel

    def process(self, data_batch: Any, data_samples: Sequence[Dict[str, Any]]) -> None:
        for sample in data_samples:
            pred, gt = sample['pred'].cpu(), sample['gt'].cpu()
            value = type(self).function(pred, gt, self.crop_border, self.test_y_channel)
            self.results.append(value)

    def compute_metrics(self, results: List[float]) -> Dict[str, float]:
        return {self.metric: float(np.mean(results))}


@METRICS.register_module()
class PSNR(_ImageMetric):
    """Mean PSNR (dB) over the images."""
    metric = 'PSNR'
    function = staticmethod(psnr)


@METRICS.register_module()
class SSIM(_ImageMetric):
    """Mean SSIM over the images."""
    metric = 'SSIM'
    function = staticmethod(ssim)
