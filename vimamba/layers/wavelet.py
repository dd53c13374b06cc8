"""One-level 2-D DWT as fixed depthwise convs (Haar built in, others via pywavelets), and WTConv built on it."""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['WaveletTransform2d', 'WaveletConv', 'wavelet_filters']


def wavelet_filters(
        wavelet: str,
        device=None,
        dtype=None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """2-D analysis and synthesis filters (4, 1, k, k), bands LL, LH, HL, HH, of a pywavelets wavelet.
    Decomposition filters are reversed because conv2d correlates."""
    kw = dict(device=device, dtype=dtype if dtype is not None else torch.float32)
    if wavelet in ('db1', 'haar'):
        r = 2 ** -0.5
        dec_lo, dec_hi, rec_lo, rec_hi = (r, r), (-r, r), (r, r), (r, -r)
    else:
        try:
            import pywt
        except ImportError as e:
            raise ImportError(f"wavelet={wavelet!r} needs pywavelets (pip install pywavelets); 'db1' (Haar) "
                              f"does not") from e
        w = pywt.Wavelet(wavelet)
        dec_lo, dec_hi, rec_lo, rec_hi = w.dec_lo, w.dec_hi, w.rec_lo, w.rec_hi

    def outer(lo, hi):
        return torch.stack([
            lo[None, :] * lo[:, None],
            lo[None, :] * hi[:, None],
            hi[None, :] * lo[:, None],
            hi[None, :] * hi[:, None],
        ])[:, None]

    dec = outer(torch.tensor(dec_lo[::-1], **kw), torch.tensor(dec_hi[::-1], **kw))
    rec = outer(torch.tensor(rec_lo, **kw), torch.tensor(rec_hi, **kw))
    return dec, rec


class WaveletTransform2d(nn.Module):
    """Fixed one-level 2-D DWT: (B, C, H, W) -> (B, C, 4, ceil(H/2), ceil(W/2)); `inverse(bands, size)` undoes it.
    Exact for 'db1'; longer banks use zero padding as the official code, so borders do not reconstruct."""

    def __init__(
            self,
            channels: int,
            wavelet: str = 'db1',
            device=None,
            dtype=None,
    ):
        super().__init__()
        self.channels = channels
        self.wavelet = wavelet
        dec, rec = wavelet_filters(wavelet, device=device, dtype=dtype)
        self.filter_size = dec.shape[-1]
        # Non-persistent: the official checkpoints' `wt_filter` / `iwt_filter` are checked and dropped.
        self.register_buffer('dwt_filter', dec.repeat(channels, 1, 1, 1), persistent=False)
        self.register_buffer('idwt_filter', rec.repeat(channels, 1, 1, 1), persistent=False)

    def init_non_persistent_buffers(self) -> None:
        """Rebuild the filters in place (after `to_empty()` on a meta-built model)."""
        dec, rec = wavelet_filters(self.wavelet, device=self.dwt_filter.device, dtype=self.dwt_filter.dtype)
        with torch.no_grad():
            self.dwt_filter.copy_(dec.repeat(self.channels, 1, 1, 1))
            self.idwt_filter.copy_(rec.repeat(self.channels, 1, 1, 1))

    @property
    def num_filter_elements(self) -> int:
        """Elements of the fixed filters (the official code counts them as parameters)."""
        return self.dwt_filter.numel() + self.idwt_filter.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        # Unconditional so torch.fx traces it.
        x = F.pad(x, (0, w % 2, 0, h % 2))
        pad = self.filter_size // 2 - 1
        bands = F.conv2d(x, self.dwt_filter.to(x.dtype), stride=2, padding=pad, groups=c)
        return bands.reshape(b, c, 4, bands.shape[-2], bands.shape[-1])

    def inverse(self, bands: torch.Tensor, size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
        b, c, _, h_half, w_half = bands.shape
        pad = self.filter_size // 2 - 1
        x = F.conv_transpose2d(
            bands.reshape(b, c * 4, h_half, w_half), self.idwt_filter.to(bands.dtype),
            stride=2, padding=pad, groups=c)
        if size is not None:
            x = x[:, :, :size[0], :size[1]]
        return x

    def extra_repr(self) -> str:
        return f'{self.channels}, wavelet={self.wavelet!r}'


class WaveletConv(nn.Module):
    """One-level wavelet conv (Finder et al., ECCV 2024): DWT -> depthwise k x k on 4*C bands -> scale -> IDWT."""

    def __init__(
            self,
            channels: int,
            kernel_size: int = 5,
            wavelet: str = 'db1',
            init_scale: float = 0.1,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if kernel_size % 2 == 0:
            raise ValueError(f'WaveletConv: kernel_size={kernel_size}; only odd sizes keep the sub-band size')
        self.init_scale = init_scale
        self.wavelet = WaveletTransform2d(channels, wavelet, **dd)
        self.conv = nn.Conv2d(
            channels * 4, channels * 4, kernel_size, padding=kernel_size // 2, groups=channels * 4,
            bias=False, **dd)
        self.scale = nn.Parameter(torch.full((1, channels * 4, 1, 1), init_scale, **dd))

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()
        nn.init.constant_(self.scale, self.init_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bands = self.wavelet(x)
        b, c, _, h_half, w_half = bands.shape
        y = self.scale * self.conv(bands.reshape(b, c * 4, h_half, w_half))
        return self.wavelet.inverse(y.reshape(b, c, 4, h_half, w_half), (x.shape[-2], x.shape[-1]))
