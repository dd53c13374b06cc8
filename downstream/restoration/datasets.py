"""Paired restoration datasets (LQ and GT folders, or GT degraded on the fly) for mmengine."""
import os
import os.path as osp
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..common import IMAGE_EXTENSIONS, load_image
from .functional import add_gaussian_noise, bicubic_degrade, paired_augment, paired_random_crop

__all__ = ['PairedImageDataset']

_DEGRADATIONS = ('bicubic', 'gaussian_noise')
_PAIRINGS = ('name', 'haze')


def _list_images(folder: str, owner: str, argument: str) -> List[str]:
    if not osp.isdir(folder):
        raise FileNotFoundError(f'{owner}: {argument}={folder!r} is not a directory')
    names = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise FileNotFoundError(f'{owner}: {argument}={folder!r} holds no image ({", ".join(IMAGE_EXTENSIONS)})')
    return names


class PairedImageDataset(Dataset):
    """LQ / GT pairs from folders, or GT images degraded on the fly; evaluation crops GT to `scale` x the LQ size.

    Args:
        gt_dir / lq_dir: Folders of ground-truth / degraded images (lq_dir None with a `degradation`).
        filename_tmpl: LQ file stem from the GT stem ('{}x2' for DIV2K); the extension may differ.
        pairing: 'name' (by `filename_tmpl`) or 'haze' (RESIDE: lq `<id>_<anything>.<ext>` -> gt `<id>.png`).
        scale: LQ -> GT scale factor.
        degradation: None, dict(type='bicubic') (MATLAB bicubic) or dict(type='gaussian_noise', sigma=S).
        gt_patch_size: Training patch size on the GT side; None returns whole images.
        use_hflip / use_rot: Paired random flips / 90-degree rotations (training only).
        repeat: Times the file list is repeated per epoch (BasicSR's dataset_enlarge_ratio).
        test_mode: Evaluation: no crop, no augmentation, noise seeded by `noise_seed` (0: the official noise).
    """

    def __init__(
            self,
            gt_dir: str,
            lq_dir: Optional[str] = None,
            filename_tmpl: str = '{}',
            pairing: str = 'name',
            scale: int = 1,
            degradation: Optional[Dict[str, Any]] = None,
            gt_patch_size: Optional[int] = None,
            use_hflip: bool = True,
            use_rot: bool = True,
            repeat: int = 1,
            test_mode: bool = False,
            noise_seed: int = 0,
            metainfo: Optional[Dict[str, Any]] = None,
    ):
        owner = type(self).__name__
        if pairing not in _PAIRINGS:
            raise ValueError(f'{owner}: pairing={pairing!r} is not supported; accepted: {_PAIRINGS}')
        if not isinstance(scale, int) or scale < 1:
            raise ValueError(f'{owner}: scale must be an int >= 1, got {scale!r}')
        degradation = dict(degradation) if degradation else None
        if degradation is not None:
            kind = degradation.get('type')
            if kind not in _DEGRADATIONS:
                raise ValueError(f'{owner}: degradation type {kind!r} is not supported; accepted: {_DEGRADATIONS}')
            if kind == 'bicubic' and (lq_dir is not None or scale < 2):
                raise ValueError(f'{owner}: degradation bicubic makes the LQ images from the GT images: it needs '
                                 f'lq_dir=None and scale >= 2, got lq_dir={lq_dir!r}, scale={scale}')
            if kind == 'gaussian_noise' and (lq_dir is not None or scale != 1 or degradation.get('sigma') is None):
                raise ValueError(f'{owner}: degradation gaussian_noise needs sigma=, lq_dir=None and scale=1, got '
                                 f'{degradation}, lq_dir={lq_dir!r}, scale={scale}')
        elif lq_dir is None:
            raise ValueError(f'{owner}: lq_dir is None and no degradation makes the LQ images; set lq_dir or '
                             f'degradation=dict(type="bicubic") / dict(type="gaussian_noise", sigma=...)')
        if gt_patch_size is not None and not test_mode and gt_patch_size % scale:
            raise ValueError(f'{owner}: gt_patch_size={gt_patch_size} must be a multiple of scale={scale}')

        self.gt_dir, self.lq_dir = gt_dir, lq_dir
        self.scale = scale
        self.degradation = degradation
        self.gt_patch_size = None if test_mode else gt_patch_size
        self.use_hflip, self.use_rot = use_hflip, use_rot
        self.repeat = max(1, int(repeat))
        self.test_mode = test_mode
        self.noise_seed = noise_seed
        self.metainfo = dict(metainfo or {}, scale=scale)
        self.samples = self._pair(filename_tmpl, pairing)

    def _pair(self, filename_tmpl: str, pairing: str) -> List[Dict[str, Optional[str]]]:
        owner = type(self).__name__
        if self.lq_dir is None:
            return [dict(gt_path=osp.join(self.gt_dir, n), lq_path=None)
                    for n in _list_images(self.gt_dir, owner, 'gt_dir')]
        lq_names = _list_images(self.lq_dir, owner, 'lq_dir')
        gt_names = _list_images(self.gt_dir, owner, 'gt_dir')
        samples, missing = [], []
        if pairing == 'haze':
            by_stem = {osp.splitext(n)[0]: n for n in gt_names}
            for name in lq_names:
                gt = by_stem.get(osp.splitext(name)[0].split('_')[0])
                (missing.append(name) if gt is None else
                 samples.append(dict(gt_path=osp.join(self.gt_dir, gt), lq_path=osp.join(self.lq_dir, name))))
        else:
            by_stem = {osp.splitext(n)[0]: n for n in lq_names}
            for name in gt_names:
                lq = by_stem.get(filename_tmpl.format(osp.splitext(name)[0]))
                (missing.append(name) if lq is None else
                 samples.append(dict(gt_path=osp.join(self.gt_dir, name), lq_path=osp.join(self.lq_dir, lq))))
        if missing:
            side = 'GT' if pairing == 'haze' else 'LQ'
            raise FileNotFoundError(
                f'{owner}: no {side} image for {len(missing)} files (first: {missing[:5]}) with pairing={pairing!r}, '
                f'filename_tmpl={filename_tmpl!r} between gt_dir={self.gt_dir!r} and lq_dir={self.lq_dir!r}')
        return samples

    def __len__(self) -> int:
        return len(self.samples) * self.repeat

    def __getitem__(self, index: int) -> Dict[str, Any]:
        sample = self.samples[index % len(self.samples)]
        gt = load_image(sample['gt_path'])
        kind = self.degradation['type'] if self.degradation else None
        if self.gt_patch_size is not None and kind == 'gaussian_noise':
            # i.i.d. noise: cropping first gives the same distribution for less work.
            gt, _ = self._crop(gt, gt)
        if kind == 'bicubic':
            lq, gt = bicubic_degrade(gt, self.scale)
        elif kind == 'gaussian_noise':
            seed = self.noise_seed if self.test_mode else None
            lq = add_gaussian_noise(gt, float(self.degradation['sigma']), seed=seed)
        else:
            lq = load_image(sample['lq_path'])
            if self.test_mode:
                gt = gt[:, :lq.shape[1] * self.scale, :lq.shape[2] * self.scale]
        if self.gt_patch_size is not None:
            if kind != 'gaussian_noise':
                lq, gt = self._crop(lq, gt)
            lq, gt = paired_augment((lq, gt), self.use_hflip, self.use_rot)
        name = osp.splitext(osp.basename(sample['lq_path'] or sample['gt_path']))[0]
        return dict(inputs=lq, data_samples=dict(
            gt=gt, name=name, gt_path=sample['gt_path'], lq_path=sample['lq_path'] or sample['gt_path']))

    def _crop(self, lq: torch.Tensor, gt: torch.Tensor):
        size = self.gt_patch_size
        if gt.shape[-1] < size or gt.shape[-2] < size:
            # Small images (RESIDE) are padded up to the patch, as the official dehazing loader does.
            pad_h, pad_w = max(0, size - gt.shape[-2]), max(0, size - gt.shape[-1])
            gt = F.pad(gt[None], (0, pad_w, 0, pad_h), mode='reflect')[0]
            lq_pad = (max(0, size // self.scale - lq.shape[-1]), max(0, size // self.scale - lq.shape[-2]))
            lq = F.pad(lq[None], (0, lq_pad[0], 0, lq_pad[1]), mode='reflect')[0]
        if lq is gt:
            return paired_random_crop(gt, gt, size, 1)
        return paired_random_crop(lq, gt, size, self.scale)
