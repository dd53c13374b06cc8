"""Restoration building blocks in plain PyTorch: degradations, paired augmentations, losses, metrics.

Images are float RGB tensors in [0, 1], (C, H, W) or (B, C, H, W). Metrics follow BasicSR's `calculate_psnr/ssim`:
8-bit quantised, `crop_border` dropped, optionally on BT.601 Y (16-235), in float64.
"""
import math
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ['imresize', 'bicubic_degrade', 'add_gaussian_noise', 'quantize', 'rgb_to_y', 'psnr', 'ssim',
           'paired_random_crop', 'paired_augment', 'charbonnier_loss']


# --- MATLAB bicubic resize

def _cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def _resize_matrix(in_len: int, out_len: int, scale: float, antialias: bool) -> torch.Tensor:
    """(out_len, in_len) float64 matrix M so that `out = M @ in` along one axis, as MATLAB's imresize."""
    width = 4.0
    shrink = scale < 1 and antialias
    if shrink:
        width /= scale  # widen the kernel to low-pass before subsampling
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    center = x / scale + 0.5 * (1 - 1 / scale)  # 1-based position in the input of each output pixel
    left = torch.floor(center - width / 2)
    taps = int(math.ceil(width)) + 2
    index = left[:, None] + torch.arange(taps, dtype=torch.float64)[None]  # 1-based
    dist = center[:, None] - index
    weight = scale * _cubic(dist * scale) if shrink else _cubic(dist)
    weight = weight / weight.sum(dim=1, keepdim=True)
    # Symmetric border (the edge pixel repeated), period 2 * in_len; 0-based.
    idx = (index - 1).long() % (2 * in_len)
    idx = torch.where(idx >= in_len, 2 * in_len - 1 - idx, idx)
    matrix = torch.zeros(out_len, in_len, dtype=torch.float64)
    matrix.scatter_add_(1, idx, weight)
    return matrix


def imresize(img: torch.Tensor, scale: float, antialias: bool = True) -> torch.Tensor:
    """MATLAB's antialiased bicubic `imresize` of (..., H, W) (the SR benchmarks' LR images); size ceil(scale * size),
    computed in float64, returned in the input's dtype, not clamped."""
    if scale <= 0:
        raise ValueError(f'imresize: scale must be > 0, got {scale!r}')
    height, width = img.shape[-2:]
    out_h, out_w = int(math.ceil(height * scale)), int(math.ceil(width * scale))
    rows = _resize_matrix(height, out_h, scale, antialias).to(img.device)
    cols = _resize_matrix(width, out_w, scale, antialias).to(img.device)
    out = rows @ img.to(torch.float64) @ cols.T
    return out.to(img.dtype)


def quantize(img: torch.Tensor) -> torch.Tensor:
    """Round [0, 1] values to the 256 levels of an 8-bit image (clamped), as saving a PNG does."""
    return (img.clamp(0, 1) * 255.).round() / 255.


def bicubic_degrade(gt: torch.Tensor, scale: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(lq, gt): gt cropped to a multiple of `scale` (top-left kept), lq its MATLAB bicubic downscale in 8 bits."""
    height, width = gt.shape[-2:]
    gt = gt[..., :height - height % scale, :width - width % scale]
    if gt.shape[-2] == 0 or gt.shape[-1] == 0:
        raise ValueError(f'bicubic_degrade: image of size {height}x{width} is smaller than scale={scale}')
    return quantize(imresize(gt, 1. / scale)), gt


def add_gaussian_noise(img: torch.Tensor, sigma: float, seed: Optional[int] = None,
                       rng: Optional[np.random.RandomState] = None) -> torch.Tensor:
    """img (C, H, W) RGB + N(0, (sigma / 255)^2), not clipped; with `seed`, the official evaluation's noise."""
    if sigma < 0:
        raise ValueError(f'add_gaussian_noise: sigma must be >= 0, got {sigma!r}')
    channels, height, width = img.shape
    gen = np.random.RandomState(seed) if seed is not None else (rng if rng is not None else np.random)
    noise = gen.normal(0., sigma / 255., (height, width, channels))[..., ::-1]  # BGR draw order -> RGB
    return (img.to(torch.float64) + torch.from_numpy(noise.transpose(2, 0, 1).copy())).to(img.dtype)


# --- Paired augmentations (`rng`: a torch.Generator or None)

def _randint(high: int, rng: Optional[torch.Generator]) -> int:
    return int(torch.randint(high, (1,), generator=rng)) if high > 0 else 0


def paired_random_crop(lq: torch.Tensor, gt: torch.Tensor, gt_size: int, scale: int,
                       rng: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The same random region of both: a `gt_size` GT patch and the `gt_size // scale` LQ patch under it."""
    if gt_size % scale:
        raise ValueError(f'paired_random_crop: gt_size={gt_size} must be a multiple of scale={scale}')
    lq_size = gt_size // scale
    lq_h, lq_w = lq.shape[-2:]
    gt_h, gt_w = gt.shape[-2:]
    if (gt_h, gt_w) != (lq_h * scale, lq_w * scale):
        raise ValueError(f'paired_random_crop: GT size {gt_h}x{gt_w} is not scale={scale} times the LQ size '
                         f'{lq_h}x{lq_w}')
    if lq_h < lq_size or lq_w < lq_size:
        raise ValueError(f'paired_random_crop: LQ image {lq_h}x{lq_w} is smaller than the patch {lq_size} '
                         f'(gt_size={gt_size}, scale={scale})')
    top, left = _randint(lq_h - lq_size + 1, rng), _randint(lq_w - lq_size + 1, rng)
    lq = lq[..., top:top + lq_size, left:left + lq_size]
    gt = gt[..., top * scale:(top + lq_size) * scale, left * scale:(left + lq_size) * scale]
    return lq, gt


def paired_augment(tensors: Sequence[torch.Tensor], hflip: bool = True, rotation: bool = True,
                   rng: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, ...]:
    """BasicSR's `augment`: the same random h-flip, v-flip and transpose (p = 0.5 each) on every tensor."""
    flip_w = hflip and bool(torch.rand(1, generator=rng) < 0.5)
    flip_h = rotation and bool(torch.rand(1, generator=rng) < 0.5)
    transpose = rotation and bool(torch.rand(1, generator=rng) < 0.5)
    out = []
    for t in tensors:
        if flip_w:
            t = t.flip(-1)
        if flip_h:
            t = t.flip(-2)
        if transpose:
            t = t.transpose(-2, -1)
        out.append(t.contiguous())
    return tuple(out)


# --- Losses and metrics

def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """mean(sqrt((pred - target)^2 + eps)): a smooth L1 (BasicSR's eps, used by the denoising recipes)."""
    return torch.sqrt((pred - target) ** 2 + eps).mean()


def rgb_to_y(img: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB on the 0-255 scale -> (..., 1, H, W) BT.601 luma on the 0-255 scale (16-235)."""
    weights = img.new_tensor([65.481, 128.553, 24.966]).view(3, 1, 1)
    return (img * weights).sum(dim=-3, keepdim=True) / 255. + 16.


def _prepare(pred: torch.Tensor, gt: torch.Tensor, crop_border: int, test_y_channel: bool,
             quantize_8bit: bool, owner: str) -> Tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != gt.shape:
        raise ValueError(f'{owner}: pred and gt must have the same shape, got {tuple(pred.shape)} and '
                         f'{tuple(gt.shape)}')
    if pred.dim() not in (3, 4):
        raise ValueError(f'{owner}: expected (C, H, W) or (B, C, H, W) images, got shape {tuple(pred.shape)}')
    if test_y_channel and pred.shape[-3] != 3:
        raise ValueError(f'{owner}: test_y_channel needs RGB images, got {pred.shape[-3]} channels')
    pred, gt = pred.detach().to(torch.float64), gt.detach().to(torch.float64)
    if quantize_8bit:
        pred, gt = quantize(pred), quantize(gt)
    pred, gt = pred * 255., gt * 255.
    if crop_border:
        pred = pred[..., crop_border:-crop_border, crop_border:-crop_border]
        gt = gt[..., crop_border:-crop_border, crop_border:-crop_border]
    if test_y_channel:
        # BasicSR converts through float32 on [0, 1]; the difference is below 1e-4 on the 0-255 scale.
        pred, gt = rgb_to_y(pred), rgb_to_y(gt)
    return pred, gt


def psnr(pred: torch.Tensor, gt: torch.Tensor, crop_border: int = 0, test_y_channel: bool = False,
         quantize_8bit: bool = True) -> float:
    """PSNR in dB of one image (or the mean squared error over a batch taken as one image); inf if equal."""
    pred, gt = _prepare(pred, gt, crop_border, test_y_channel, quantize_8bit, 'psnr')
    mse = torch.mean((pred - gt) ** 2).item()
    return float('inf') if mse == 0 else 10. * math.log10(255. ** 2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(pred: torch.Tensor, gt: torch.Tensor, crop_border: int = 0, test_y_channel: bool = False,
         quantize_8bit: bool = True) -> float:
    """SSIM (11x11 Gaussian window, sigma 1.5, valid region) of one image, mean over channels (and a batch)."""
    pred, gt = _prepare(pred, gt, crop_border, test_y_channel, quantize_8bit, 'ssim')
    if pred.dim() == 3:
        pred, gt = pred[None], gt[None]
    if min(pred.shape[-2:]) < 11:
        raise ValueError(f'ssim: images must be at least 11x11 after crop_border={crop_border}, '
                         f'got {tuple(pred.shape[-2:])}')
    channels = pred.shape[1]
    window = _gaussian_window().to(pred.device).expand(channels, 1, 11, 11)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(t):
        return F.conv2d(t, window, groups=channels)  # 'valid': the official [5:-5, 5:-5] crop

    mu1, mu2 = blur(pred), blur(gt)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    var1 = blur(pred * pred) - mu1_sq
    var2 = blur(gt * gt) - mu2_sq
    cov = blur(pred * gt) - mu12
    ssim_map = ((2 * mu12 + c1) * (2 * cov + c2)) / ((mu1_sq + mu2_sq + c1) * (var1 + var2 + c2))
    return ssim_map.mean(dim=(-2, -1)).mean().item()
