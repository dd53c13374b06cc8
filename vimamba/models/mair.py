"""MaIR and MaIRUNet

MaIR: A Locality- and Continuity-Preserving Mamba for Image Restoration
- paper: https://arxiv.org/abs/2412.20066 (CVPR 2025)
- code: https://github.com/XLearning-SCU/2025-CVPR-MaIR (no license file)
SwinIR-shaped MaIR and Restormer-shaped MaIRUNet on one block, whose mixer scans four nested S-shaped paths weighed by
Sequence Shuffle Attention. RGB in [0, 1] in and out (unclamped); MaIR runs at any size (stripes clipped at the
border, as official), MaIRUNet reflect-pads to a multiple of 8; `forward_tiled` follows the official test.

Differences from the official code, on purpose:
- One `selective_scan` call (K = 4) reads the `nested_s` order (no copies); token-wise x_proj / dt_proj run once.
- Modules are named for what they are; `checkpoint_filter_fn` maps the BasicSR names and refuses other variants.
- Scan orders are cached per grid on any device (the official MaIRUNet rebuilds them per forward, GPU only).
Kept on purpose: mixer-only DropPath, LayerNorm eps 1e-5, unshifted MaIRUNet stripes, raster order for a shift > width.
"""
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint
from timm.layers import DropPath, Mlp, register_notrace_function, register_notrace_module
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from vimamba.checkpoint import PretrainedMixin, prepare_pretrained, fit_state_dict, unwrap_state_dict
from vimamba.layers.patch_embed import check_image
from vimamba.layers.ss2d import SelectiveScan2dCore
from vimamba.scans import get_pattern
from vimamba.scans.base import check_depths
from vimamba.registry import reject_retired_kwargs

__all__ = ['MaIR', 'MaIRUNet', 'MaIRBlock', 'MaIRSelectiveScan2d', 'SequenceShuffleGate', 'checkpoint_filter_fn',
           'forward_tiled', 'forward_self_ensemble', 'channel_shuffle', 'channel_rearrange']

# DIV2K mean RGB, subtracted by the official SR / denoising networks (and by SwinIR before them).
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
_UPSAMPLERS = ('pixelshuffle', 'pixelshuffledirect', None)


def channel_shuffle(pooled: torch.Tensor) -> torch.Tensor:
    """(B, K, D) direction-major -> (B, D*K) with the K directions of each channel side by side."""
    return pooled.transpose(1, 2).reshape(pooled.shape[0], -1)


def channel_rearrange(gate: torch.Tensor, num_directions: int) -> torch.Tensor:
    """Inverse of `channel_shuffle`: (B, D*K) channel-major -> (B, K, D)."""
    return gate.reshape(gate.shape[0], -1, num_directions).transpose(1, 2)


class SequenceShuffleGate(nn.Module):
    """Sequence Shuffle Attention: a sigmoid gate per (direction, channel), a 4x4 mix per channel of pooled outputs."""

    def __init__(self, d_inner: int, num_directions: int = 4, device=None, dtype=None):
        super().__init__()
        self.num_directions = num_directions
        # Grouped 1x1 conv kept as a Conv2d so the official `gating.1` weight (K*D, K, 1, 1) loads unchanged.
        self.conv = nn.Conv2d(
            num_directions * d_inner, num_directions * d_inner, 1, groups=d_inner, device=device, dtype=dtype)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """y (B, K, D, L) -> gate (B, K, D)."""
        pooled = channel_shuffle(y.mean(dim=-1))
        gate = torch.sigmoid(F.conv2d(pooled[..., None, None], self.conv.weight, self.conv.bias,
                                      groups=self.conv.groups))
        return channel_rearrange(gate.flatten(1), self.num_directions)


@register_notrace_module  # FX leaf: the scan order depends on the concrete grid size
class MaIRSelectiveScan2d(SelectiveScan2dCore):
    """MaIR's mixer (official VMM): 4-direction NSS scan, SSA-weighted sum, gated by SiLU(z); channel-last.

    Args:
        dim, d_state, ssm_ratio: Channels C, SSM state size N, inner width D = int(ssm_ratio * C).
        scan_len, shift: NSS stripe width and offset (MaIR's odd blocks: scan_len // 2).
    """
    channels_last = True

    def __init__(
            self,
            dim: int,
            d_state: int = 16,
            ssm_ratio: float = 2.0,
            scan_len: int = 8,
            shift: int = 0,
            d_conv: int = 3,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        d_inner = int(ssm_ratio * dim)
        self.scan_len = scan_len
        self.shift = shift

        self.in_proj = nn.Linear(dim, 2 * d_inner, bias=False, **dd)
        self.dwconv = nn.Conv2d(d_inner, d_inner, d_conv, padding=(d_conv - 1) // 2, groups=d_inner, **dd)
        self.act = nn.SiLU()
        self.init_ssm(dim, d_inner, d_state, 'auto', get_pattern('nested_s', scan_len=scan_len, shift=shift),
                      gated=True, init='v0', **dd)
        self.gate = SequenceShuffleGate(d_inner, self.num_directions, **dd)
        self.out_norm = nn.LayerNorm(d_inner, **dd)
        self.out_proj = nn.Linear(d_inner, dim, bias=False, **dd)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The SSM tensors; the Linear / LayerNorm init is the model's (`MaIR.init_weights`)."""
        self.reset_ssm_parameters()

    def scan_merged(self, u: torch.Tensor, height: int, width: int) -> torch.Tensor:
        # The weights pool y itself, so the op returns all K outputs; y is read as (B, K, L, D), its memory layout.
        y = self.scan_directions(u, height, width)
        return torch.einsum('bkld,bkd->bld', y.transpose(-1, -2), self.gate(y).to(y.dtype)).transpose(1, 2)


class MaIRBlock(nn.Module):
    """Residual Mamba Block: `x = s1 * x + DropPath(mixer(LN(x)))`, `x = s2 * x + MLP(LN(x))` (channel-last)."""

    def __init__(
            self,
            dim: int,
            d_state: int = 16,
            ssm_ratio: float = 2.0,
            mlp_ratio: float = 2.0,
            scan_len: int = 8,
            shift: int = 0,
            drop_path: float = 0.,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.norm1 = nn.LayerNorm(dim, **dd)
        self.mixer = MaIRSelectiveScan2d(dim, d_state, ssm_ratio, scan_len, shift, **dd)
        self.drop_path = DropPath(drop_path) if drop_path > 0. else nn.Identity()
        self.skip_scale = nn.Parameter(torch.ones(dim, **dd))
        self.norm2 = nn.LayerNorm(dim, **dd)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), **dd)
        self.skip_scale2 = nn.Parameter(torch.ones(dim, **dd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.skip_scale + self.drop_path(self.mixer(self.norm1(x)))
        return x * self.skip_scale2 + self.mlp(self.norm2(x))


def _run_blocks(blocks: nn.ModuleList, x: torch.Tensor, grad_checkpointing: bool) -> torch.Tensor:
    for block in blocks:
        if grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting():
            x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
        else:
            x = block(x)
    return x


class ResidualMambaGroup(nn.Module):
    """Blocks (stripes unshifted on even blocks, shifted by scan_len // 2 on odd ones), a 3x3 conv, a skip."""

    def __init__(
            self,
            dim: int,
            depth: int,
            d_state: int,
            ssm_ratio: float,
            mlp_ratio: float,
            scan_len: int,
            drop_path: Sequence[float],
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.grad_checkpointing = False
        self.blocks = nn.ModuleList([
            MaIRBlock(dim, d_state, ssm_ratio, mlp_ratio, scan_len, 0 if i % 2 == 0 else scan_len // 2,
                      drop_path[i], **dd)
            for i in range(depth)])
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _run_blocks(self.blocks, x, self.grad_checkpointing)
        return self.conv(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1) + x


class MaIR(PretrainedMixin, nn.Module):
    """MaIR for super-resolution (`upscale` 2, 3, 4) and denoising (`upscale` 1, `upsampler` None).

    Args:
        in_chans: Image channels (the DIV2K mean is subtracted only for 3, as official).
        embed_dim, depths: Width C; blocks per residual group.
        d_state, ssm_ratio, mlp_ratio, scan_len: SSM state size N; mixer and MLP width ratios; NSS stripe width.
        upscale, upsampler: 2-4 with 'pixelshuffle' (classical SR) / 'pixelshuffledirect' (light SR); 1 with None.
        img_range, num_feat: Multiplier applied after the mean subtraction; width of the pixel-shuffle tail.
        drop_path_rate: Stochastic depth, linear from 0 over all blocks.
    """

    def __init__(
            self,
            upscale: int = 2,
            in_chans: int = 3,
            embed_dim: int = 60,
            depths: Sequence[int] = (6, 6, 6, 6),
            d_state: int = 16,
            ssm_ratio: float = 1.5,
            mlp_ratio: float = 2.0,
            scan_len: int = 8,
            upsampler: Optional[str] = 'pixelshuffledirect',
            img_range: float = 1.,
            drop_rate: float = 0.,
            drop_path_rate: float = 0.1,
            num_feat: int = 64,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        if upsampler not in _UPSAMPLERS:
            raise ValueError(f'MaIR: upsampler={upsampler!r} is not supported; accepted: {_UPSAMPLERS}')
        accepted = (1,) if upsampler is None else (2, 3, 4)
        if upscale not in accepted:
            raise ValueError(f'MaIR: upscale={upscale!r} is not supported with upsampler={upsampler!r}; '
                             f'accepted: {accepted}')
        self.in_chans = in_chans
        self.num_classes = 0
        self.upscale = upscale
        self.upsampler = upsampler
        self.img_range = img_range
        self.embed_dim = self.num_features = embed_dim
        self.scan_len = scan_len
        self.grad_checkpointing = False
        mean = DIV2K_RGB_MEAN if in_chans == 3 else (0.,) * in_chans
        self.register_buffer('mean', torch.tensor(mean, device=device).view(1, in_chans, 1, 1), persistent=False)

        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, padding=1, **dd)
        self.embed_norm = nn.LayerNorm(embed_dim, **dd)
        self.pos_drop = nn.Dropout(drop_rate)
        depths = check_depths('MaIR', 'depths', depths)
        total = sum(depths)
        # Linear from 0, as torch.linspace; plain Python so that a default-device context (meta) cannot catch it.
        dpr = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.groups = nn.ModuleList()
        for i, depth in enumerate(depths):
            start = sum(depths[:i])
            self.groups.append(ResidualMambaGroup(
                embed_dim, depth, d_state, ssm_ratio, mlp_ratio, scan_len, dpr[start:start + depth], **dd))
        self.norm = nn.LayerNorm(embed_dim, **dd)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, padding=1, **dd)

        if upsampler == 'pixelshuffle':
            self.conv_before_upsample = nn.Sequential(
                nn.Conv2d(embed_dim, num_feat, 3, padding=1, **dd), nn.LeakyReLU(inplace=True))
            stages = [2, 2] if upscale == 4 else [upscale]
            layers = []
            for s in stages:
                layers += [nn.Conv2d(num_feat, s * s * num_feat, 3, padding=1, **dd), nn.PixelShuffle(s)]
            self.upsample = nn.Sequential(*layers)
            self.conv_last = nn.Conv2d(num_feat, in_chans, 3, padding=1, **dd)
        elif upsampler == 'pixelshuffledirect':
            self.upsample = nn.Sequential(
                nn.Conv2d(embed_dim, upscale * upscale * in_chans, 3, padding=1, **dd), nn.PixelShuffle(upscale))
        else:
            self.conv_last = nn.Conv2d(embed_dim, in_chans, 3, padding=1, **dd)

        if device is None or torch.device(device).type != 'meta':
            self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Official init: Linear trunc-normal(0.02) with zero bias, LayerNorm (1, 0), convs PyTorch default."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, MaIRSelectiveScan2d):
                m.reset_parameters()

    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        return {n for n, _ in self.named_parameters() if n.endswith(('.A_log', '.D'))}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        return dict(
            stem=r'^conv_first|^embed_norm',
            blocks=r'^groups\.(\d+)' if coarse else [
                (r'^groups\.(\d+)\.blocks\.(\d+)', None),
                (r'^groups\.(\d+)\.conv', (99999,)),
                (r'^norm|^conv_after_body', (99999,)),
            ],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable
        for group in self.groups:
            group.grad_checkpointing = enable

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Shallow features (B, C, H, W) after `conv_first` -> deep features (B, C, H, W), before the long skip."""
        x = self.pos_drop(self.embed_norm(x.permute(0, 2, 3, 1)))
        for group in self.groups:
            x = group(x)
        return self.norm(x).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, C, H, W) in [0, 1] -> restored image (B, C, upscale * H, upscale * W)."""
        x = check_image(x, self.in_chans, self.conv_first.weight, type(self).__name__)
        mean = self.mean.to(x.dtype)
        x = (x - mean) * self.img_range
        shallow = self.conv_first(x)
        res = self.conv_after_body(self.forward_features(shallow)) + shallow
        if self.upsampler == 'pixelshuffle':
            out = self.conv_last(self.upsample(self.conv_before_upsample(res)))
        elif self.upsampler == 'pixelshuffledirect':
            out = self.upsample(res)
        else:
            out = x + self.conv_last(res)
        return out / self.img_range + mean

    def forward_tiled(self, x: torch.Tensor, tile_size: int = 200) -> torch.Tensor:
        """`forward` tile by tile with the official split and overlap (see `forward_tiled`)."""
        return forward_tiled(self, x, self.upscale, tile_size)

    def forward_self_ensemble(self, x: torch.Tensor, tile_size: Optional[int] = None) -> torch.Tensor:
        """MaIR+: the mean of the outputs over the eight flips / transposes (tiled when `tile_size` is set)."""
        fn = self if tile_size is None else (lambda t: forward_tiled(self, t, self.upscale, tile_size))
        return forward_self_ensemble(fn, x)


class MaIRUNet(PretrainedMixin, nn.Module):
    """MaIRUNet: Restormer's four-level encoder-decoder with MaIR blocks (real denoising, deblurring, dehazing).
    Level l: width embed_dim * 2^l, d_state base_d_state * 2^l; `flp_ratio` MLPs in encoder level 1 only."""

    def __init__(
            self,
            in_chans: int = 3,
            out_chans: int = 3,
            embed_dim: int = 48,
            depths: Sequence[int] = (4, 6, 6, 8),
            num_refinement_blocks: int = 4,
            ssm_ratio: float = 2.0,
            flp_ratio: float = 4.0,
            mlp_ratio: float = 1.5,
            scan_len: int = 4,
            base_d_state: int = 4,
            drop_path_rate: float = 0.,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        depths = check_depths('MaIRUNet', 'depths', depths)
        if len(depths) != 4:
            raise ValueError(f'MaIRUNet: depths must have 4 entries (three encoder levels and the latent), '
                             f'got {tuple(depths)!r}')
        if out_chans != in_chans:
            raise ValueError(f'MaIRUNet: the output is a residual on the input, so out_chans must equal '
                             f'in_chans={in_chans}, got out_chans={out_chans}')
        self.in_chans = in_chans
        self.num_classes = 0
        self.upscale = 1
        self.scan_len = scan_len
        self.num_features = 2 * embed_dim
        self.grad_checkpointing = False

        def level(width: int, d_state: int, depth: int, ratio: float) -> nn.ModuleList:
            return nn.ModuleList([
                MaIRBlock(width, d_state, ssm_ratio, ratio, scan_len, 0, drop_path_rate, **dd) for _ in range(depth)])

        def down(width: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(width, width // 2, 3, padding=1, bias=False, **dd), nn.PixelUnshuffle(2))

        def up(width: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(width, width * 2, 3, padding=1, bias=False, **dd), nn.PixelShuffle(2))

        n = base_d_state
        self.patch_embed = nn.Conv2d(in_chans, embed_dim, 3, padding=1, bias=False, **dd)
        self.encoder_level1 = level(embed_dim, n, depths[0], flp_ratio)
        self.down1_2 = down(embed_dim)
        self.encoder_level2 = level(embed_dim * 2, n * 2, depths[1], mlp_ratio)
        self.down2_3 = down(embed_dim * 2)
        self.encoder_level3 = level(embed_dim * 4, n * 4, depths[2], mlp_ratio)
        self.down3_4 = down(embed_dim * 4)
        self.latent = level(embed_dim * 8, n * 8, depths[3], mlp_ratio)
        self.up4_3 = up(embed_dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(embed_dim * 8, embed_dim * 4, 1, bias=False, **dd)
        self.decoder_level3 = level(embed_dim * 4, n * 4, depths[2], mlp_ratio)
        self.up3_2 = up(embed_dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(embed_dim * 4, embed_dim * 2, 1, bias=False, **dd)
        self.decoder_level2 = level(embed_dim * 2, n * 2, depths[1], mlp_ratio)
        self.up2_1 = up(embed_dim * 2)
        self.decoder_level1 = level(embed_dim * 2, n * 2, depths[0], mlp_ratio)
        self.refinement = level(embed_dim * 2, n * 2, num_refinement_blocks, mlp_ratio)
        self.output = nn.Conv2d(embed_dim * 2, out_chans, 3, padding=1, bias=False, **dd)

        if device is None or torch.device(device).type != 'meta':
            self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """As the official MaIRUNet: PyTorch defaults everywhere, Mamba's init for the SSM tensors."""
        for m in self.modules():
            if isinstance(m, MaIRSelectiveScan2d):
                m.reset_parameters()

    @torch.jit.ignore
    def no_weight_decay(self) -> Set[str]:
        return {n for n, _ in self.named_parameters() if n.endswith(('.A_log', '.D'))}

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, Any]:
        levels = ('encoder_level1', 'down1_2', 'encoder_level2', 'down2_3', 'encoder_level3', 'down3_4',
                  'latent', 'up4_3|reduce_chan_level3', 'decoder_level3', 'up3_2|reduce_chan_level2',
                  'decoder_level2', 'up2_1', 'decoder_level1', 'refinement', 'output')
        return dict(stem=r'^patch_embed', blocks=[(rf'^(?:{name})\.', (i,)) for i, name in enumerate(levels)])

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def _level(self, blocks: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
        return _run_blocks(blocks, x, self.grad_checkpointing)

    @staticmethod
    def _conv(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Apply a channel-first module to channel-last tokens."""
        return module(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, C, H, W) with H, W multiples of 8 -> decoder features (B, 2 * dim, H, W)."""
        enc1 = self._level(self.encoder_level1, self.patch_embed(x).permute(0, 2, 3, 1))
        enc2 = self._level(self.encoder_level2, self._conv(self.down1_2, enc1))
        enc3 = self._level(self.encoder_level3, self._conv(self.down2_3, enc2))
        latent = self._level(self.latent, self._conv(self.down3_4, enc3))
        dec3 = self._conv(self.reduce_chan_level3, torch.cat([self._conv(self.up4_3, latent), enc3], dim=-1))
        dec3 = self._level(self.decoder_level3, dec3)
        dec2 = self._conv(self.reduce_chan_level2, torch.cat([self._conv(self.up3_2, dec3), enc2], dim=-1))
        dec2 = self._level(self.decoder_level2, dec2)
        dec1 = self._level(self.decoder_level1, torch.cat([self._conv(self.up2_1, dec2), enc1], dim=-1))
        return self._level(self.refinement, dec1).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image (B, C, H, W) in [0, 1], any size -> restored image of the same size."""
        x = check_image(x, self.in_chans, self.patch_embed.weight, type(self).__name__)
        padded = pad_to_multiple(x, 8)
        return crop_like(self.output(self.forward_features(padded)) + padded, x)

    def forward_tiled(self, x: torch.Tensor, tile_size: int = 200) -> torch.Tensor:
        return forward_tiled(self, x, 1, tile_size)

    def forward_self_ensemble(self, x: torch.Tensor, tile_size: Optional[int] = None) -> torch.Tensor:
        fn = self if tile_size is None else (lambda t: forward_tiled(self, t, 1, tile_size))
        return forward_self_ensemble(fn, x)


@register_notrace_function  # FX leaf (public name: FX wraps no private one): the padding depends on the size
def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad (bottom / right) to a multiple of `multiple`: reflect as the official test, replicate when too small."""
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if not (pad_h or pad_w):
        return x
    mode = 'reflect' if pad_h < height and pad_w < width else 'replicate'
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


@register_notrace_function
def crop_like(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return x[..., :reference.shape[-2], :reference.shape[-1]]


def _tile_slices(size: int, parts: int) -> Tuple[int, int, List[Tuple[slice, slice]]]:
    """(tile, shave, [(input slice, output slice within the tile's result)]) along one axis of a padded size."""
    tile = size // parts
    shave = tile // 10
    slices = []
    for i in range(parts):
        start = i * tile - (shave if i > 0 else 0)
        stop = (i + 1) * tile + (shave if i < parts - 1 else 0)
        keep = 0 if i == 0 else shave
        slices.append((slice(start, stop), slice(keep, keep + tile)))
    return tile, shave, slices


@torch.no_grad()
def forward_tiled(
        model: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        scale: int,
        tile_size: int = 200,
        progress: Optional[Callable[[int, int], None]] = None,
) -> torch.Tensor:
    """Restore `x` tile by tile as the official test: `size // tile_size + 1` reflect-padded parts per side, each run
    with a tenth of a part of overlap, centres kept; `progress(done, total)` is called after each tile."""
    if tile_size < 1:
        raise ValueError(f'forward_tiled: tile_size must be an int >= 1, got {tile_size!r}')
    _, _, height, width = x.shape
    parts_h, parts_w = height // tile_size + 1, width // tile_size + 1
    pad_h, pad_w = (-height) % parts_h, (-width) % parts_w
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode='reflect')
    tile_h, _, rows = _tile_slices(x.shape[-2], parts_h)
    tile_w, _, cols = _tile_slices(x.shape[-1], parts_w)
    out = None
    total, done = len(rows) * len(cols), 0
    for i, (rows_in, rows_keep) in enumerate(rows):
        for j, (cols_in, cols_keep) in enumerate(cols):
            y = model(x[..., rows_in, cols_in])
            if out is None:
                out = y.new_zeros(y.shape[:2] + (x.shape[-2] * scale, x.shape[-1] * scale))
            keep_r = slice(rows_keep.start * scale, rows_keep.stop * scale)
            keep_c = slice(cols_keep.start * scale, cols_keep.stop * scale)
            out[..., i * tile_h * scale:(i + 1) * tile_h * scale, j * tile_w * scale:(j + 1) * tile_w * scale] = \
                y[..., keep_r, keep_c]
            done += 1
            if progress is not None:
                progress(done, total)
    return out[..., :height * scale, :width * scale]


def forward_self_ensemble(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """x8 self-ensemble (MaIR+): mean of `model` over four flips x {-, transpose}, each output mapped back."""
    outputs = []
    for transpose in (False, True):
        for flips in ((), (-2,), (-1,), (-2, -1)):
            t = x.flip(flips) if flips else x
            t = t.transpose(-2, -1) if transpose else t
            y = model(t)
            y = y.transpose(-2, -1) if transpose else y
            outputs.append(y.flip(flips) if flips else y)
    return torch.stack(outputs).mean(dim=0)


_KEY_RENAMES = (
    ('patch_embed.norm.', 'embed_norm.'),
    ('.residual_group.blocks.', '.blocks.'),
    ('.self_attention.', '.mixer.'),
    ('.ln_1.', '.norm1.'),
    ('.ln_2.', '.norm2.'),
    ('.conv_blk.', '.mlp.'),
    ('.mixer.conv2d.', '.mixer.dwconv.'),
    ('.mixer.dt_projs_', '.mixer.dt_proj_'),
    ('.mixer.A_logs', '.mixer.A_log'),
    ('.mixer.Ds', '.mixer.D'),
    ('.mixer.gating.gating.1.', '.mixer.gate.conv.'),
    ('patch_embed.proj.', 'patch_embed.'),
    ('.body.', '.'),
)


def _convert_official_key(key: str) -> str:
    if key.startswith('layers.'):
        key = 'groups.' + key[len('layers.'):]
    for old, new in _KEY_RENAMES:
        key = key.replace(old, new)
    return key


def _describe_checkpoint(state_dict: Dict[str, torch.Tensor]) -> str:
    """A short guess at what a converted state dict holds, to name the variant a mismatch comes from."""
    parts = []
    first = state_dict.get('conv_first.weight', state_dict.get('patch_embed.weight'))
    if first is not None:
        parts.append(f'width {first.shape[0]}')
    a_logs = [v for k, v in state_dict.items() if k.endswith('.A_log')]
    if a_logs:
        parts.append(f'{len(a_logs)} blocks, d_state {a_logs[0].shape[1]}')
    if 'upsample.0.weight' in state_dict:
        out = state_dict['upsample.0.weight'].shape[0]
        tail = 'pixelshuffle' if 'conv_last.weight' in state_dict else 'pixelshuffledirect'
        scale = 4 if 'upsample.2.weight' in state_dict else round(math.sqrt(
            out / (state_dict['conv_last.weight'].shape[1] if tail == 'pixelshuffle' else 3)))
        parts.append(f'{tail} tail, scale {scale}')
    elif 'conv_last.weight' in state_dict:
        parts.append('denoising tail (scale 1)')
    return ', '.join(parts) or 'unrecognised layout'


def checkpoint_filter_fn(
        state_dict: Dict[str, Any], model: nn.Module, strict: bool = True) -> Dict[str, torch.Tensor]:
    """Convert an official MaIR / MaIRUNet BasicSR checkpoint (`params_ema` preferred) to this model's names.
    Another variant's is refused; `strict=False` drops mismatching entries (x3 / x4 fine-tuned from x2, as official)."""
    converted = {_convert_official_key(k): v for k, v in unwrap_state_dict(state_dict, prefer_ema=True).items()}
    expected = model.state_dict()
    hint = f'the checkpoint is {_describe_checkpoint(converted)}, the model {_describe_checkpoint(expected)}'
    return fit_state_dict(converted, model, strict, hint=hint)


def _cfg(url: str = '', **kwargs) -> Dict[str, Any]:
    return {
        'url': url,
        # num_classes None: timm passes no classifier size; the models take [0, 1] RGB and normalise inside.
        'num_classes': None, 'input_size': (3, 64, 64), 'crop_pct': 1.0, 'interpolation': 'bicubic',
        'mean': (0., 0., 0.), 'std': (1., 1., 1.),
        'first_conv': 'conv_first',
        'license': 'unknown',
        'paper_ids': 'arXiv:2412.20066',
        'paper_name': 'MaIR: A Locality- and Continuity-Preserving Mamba for Image Restoration',
        'origin_url': 'https://github.com/XLearning-SCU/2025-CVPR-MaIR',
        'custom_load': 'hf',  # every source (file, url, Hugging Face) is read by vimamba.checkpoint
        **kwargs,
    }


# Official weights: Google Drive (not fetchable by timm); pass the .pth as `pretrained_cfg_overlay=dict(file=path)`.
_DRIVE = 'https://drive.google.com/drive/folders/1YYmIVTyynLg-Kfu-mviq24WdVkJu-S3M'


def _sr(file: str, scale: int, data: str, **kwargs) -> Dict[str, Any]:
    return _cfg(notes=(f'{_DRIVE} ({file})', f'trained on {data}, x{scale} bicubic'), **kwargs)


_UNET = dict(input_size=(3, 128, 128), first_conv='patch_embed')

default_cfgs = generate_default_cfgs({
    'mair_sr_x2.df2k': _sr('MaIR_SR_x2.pth', 2, 'DF2K'),
    'mair_sr_x3.df2k': _sr('MaIR_SR_x3.pth', 3, 'DF2K'),
    'mair_sr_x4.df2k': _sr('MaIR_SR_x4.pth', 4, 'DF2K'),
    'mair_light_s_x2.div2k': _sr('MaIR_S_lightSR_x2.pth', 2, 'DIV2K'),
    'mair_light_s_x3.div2k': _sr('MaIR_S_lightSR_x3.pth', 3, 'DIV2K'),
    'mair_light_s_x4.div2k': _sr('MaIR_S_lightSR_x4.pth', 4, 'DIV2K'),
    'mair_light_t_x2.div2k': _sr('MaIR_T_lightSR_x2.pth', 2, 'DIV2K'),
    'mair_light_t_x3.div2k': _sr('MaIR_T_lightSR_x3.pth', 3, 'DIV2K'),
    'mair_light_t_x4.div2k': _sr('MaIR_T_lightSR_x4.pth', 4, 'DIV2K'),
    'mair_cdn.dfwb_sigma15': _cfg(input_size=(3, 128, 128), notes=(f'{_DRIVE} (MaIR_CDN_s15.pth)',)),
    'mair_cdn.dfwb_sigma25': _cfg(input_size=(3, 128, 128), notes=(f'{_DRIVE} (MaIR_CDN_s25.pth)',)),
    'mair_cdn.dfwb_sigma50': _cfg(input_size=(3, 128, 128), notes=(f'{_DRIVE} (MaIR_CDN_s50.pth)',)),
    'mairunet_dehaze.reside_its': _cfg(**_UNET, notes=(f'{_DRIVE} (MaIR_DH_ITS.pth)',)),
    'mairunet_dehaze.reside_ots': _cfg(**_UNET, notes=(f'{_DRIVE} (MaIR_DH_OTS.pth)',)),
    'mairunet_dehaze.reside_6k': _cfg(**_UNET, notes=(f'{_DRIVE} (RESIDE-6K)',)),
    'mairunet_realdn.sidd': _cfg(**_UNET, notes=(f'{_DRIVE} (SIDD)',)),
    'mairunet_deblur.gopro': _cfg(**_UNET, notes=(f'{_DRIVE} (GoPro)',)),
    'test_mair.untrained': _cfg(input_size=(3, 24, 24)),
})


def _create(cls, variant: str, pretrained: bool = False, **kwargs) -> nn.Module:
    if kwargs.pop('features_only', False):
        raise ValueError(f'{variant}: features_only is not supported: {cls.__name__} is an image-to-image network '
                         f'at full resolution; use forward_features for its deep features')
    if cls is MaIRUNet:
        reject_retired_kwargs(variant, kwargs, {'dim': 'pass embed_dim (the width of the first level)'})
    prepare_pretrained(variant, pretrained, kwargs)
    return build_model_with_cfg(cls, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn, **kwargs)


def _mair(variant: str, pretrained: bool, model_args: Dict[str, Any], kwargs: Dict[str, Any]) -> MaIR:
    return _create(MaIR, variant, pretrained, **dict(model_args, **kwargs))


_SR = dict(embed_dim=180, depths=(6,) * 6, d_state=16, ssm_ratio=2.0, mlp_ratio=2.5, scan_len=8,
           upsampler='pixelshuffle')
_LIGHT_S = dict(embed_dim=60, depths=(6,) * 4, d_state=16, ssm_ratio=1.4, mlp_ratio=1.6, scan_len=4,
                upsampler='pixelshuffledirect')
_LIGHT_T = dict(embed_dim=60, depths=(6,) * 4, d_state=1, ssm_ratio=1.1, mlp_ratio=1.6, scan_len=8,
                upsampler='pixelshuffledirect')


@register_model
def mair_sr_x2(pretrained: bool = False, **kwargs) -> MaIR:
    """MaIR classical SR x2 (DF2K): 19.44M params."""
    return _mair('mair_sr_x2', pretrained, dict(_SR, upscale=2), kwargs)


@register_model
def mair_sr_x3(pretrained: bool = False, **kwargs) -> MaIR:
    """MaIR classical SR x3 (DF2K, fine-tuned from x2): 19.63M params."""
    return _mair('mair_sr_x3', pretrained, dict(_SR, upscale=3), kwargs)


@register_model
def mair_sr_x4(pretrained: bool = False, **kwargs) -> MaIR:
    """MaIR classical SR x4 (DF2K, fine-tuned from x2): 19.59M params."""
    return _mair('mair_sr_x4', pretrained, dict(_SR, upscale=4), kwargs)


@register_model
def mair_light_s_x2(pretrained: bool = False, **kwargs) -> MaIR:
    """MaIR-S lightweight SR x2 (DIV2K): 1.35M params."""
    return _mair('mair_light_s_x2', pretrained, dict(_LIGHT_S, upscale=2), kwargs)


@register_model
def mair_light_s_x3(pretrained: bool = False, **kwargs) -> MaIR:
    """MaIR-S lightweight SR x3 (DIV2K): 1.36M params."""
    return _mair('mair_light_s_x3', pretrained, dict(_LIGHT_S, upscale=3), kwargs)


@register_model
def mair_light_s_x4(pretrained: bool = False, **kwargs) -> MaIR:
    """MaIR-S lightweight SR x4 (DIV2K): 1.37M params."""
    return _mair('mair_light_s_x4', pretrained, dict(_LIGHT_S, upscale=4), kwargs)


@register_model
def mair_light_t_x2(pretrained: bool = False, **kwargs) -> MaIR:
    """MaIR-T lightweight SR x2 (DIV2K, d_state 1): 0.88M params."""
    return _mair('mair_light_t_x2', pretrained, dict(_LIGHT_T, upscale=2), kwargs)


@register_model
def mair_light_t_x3(pretrained: bool = False, **kwargs) -> MaIR:
    """MaIR-T lightweight SR x3 (DIV2K, d_state 1): 0.89M params."""
    return _mair('mair_light_t_x3', pretrained, dict(_LIGHT_T, upscale=3), kwargs)


@register_model
def mair_light_t_x4(pretrained: bool = False, **kwargs) -> MaIR:
    """MaIR-T lightweight SR x4 (DIV2K, d_state 1): 0.90M params."""
    return _mair('mair_light_t_x4', pretrained, dict(_LIGHT_T, upscale=4), kwargs)


@register_model
def mair_cdn(pretrained: bool = False, **kwargs) -> MaIR:
    """MaIR colour Gaussian denoising (DFWB; one checkpoint per sigma 15 / 25 / 50): 14.09M params."""
    model_args = dict(upscale=1, embed_dim=180, depths=(6,) * 6, d_state=16, ssm_ratio=1.3, mlp_ratio=2.0,
                      scan_len=4, upsampler=None)
    return _mair('mair_cdn', pretrained, model_args, kwargs)


@register_model
def mairunet_dehaze(pretrained: bool = False, **kwargs) -> MaIRUNet:
    """MaIRUNet for dehazing (RESIDE ITS / OTS / 6K): 3.40M params."""
    model_args = dict(embed_dim=24, depths=(2, 2, 3, 4), num_refinement_blocks=2, ssm_ratio=1.2, flp_ratio=2.0,
                      mlp_ratio=2.0, scan_len=8)
    return _create(MaIRUNet, 'mairunet_dehaze', pretrained, **dict(model_args, **kwargs))


_UNET_LARGE = dict(embed_dim=48, depths=(4, 6, 6, 8), num_refinement_blocks=4, ssm_ratio=2.0, flp_ratio=4.0,
                   mlp_ratio=1.5, scan_len=4)


@register_model
def mairunet_realdn(pretrained: bool = False, **kwargs) -> MaIRUNet:
    """MaIRUNet for real denoising (SIDD): 26.29M params."""
    return _create(MaIRUNet, 'mairunet_realdn', pretrained, **dict(_UNET_LARGE, **kwargs))


@register_model
def mairunet_deblur(pretrained: bool = False, **kwargs) -> MaIRUNet:
    """MaIRUNet for motion deblurring (GoPro): 26.29M params (the real-denoising network)."""
    return _create(MaIRUNet, 'mairunet_deblur', pretrained, **dict(_UNET_LARGE, **kwargs))


@register_model
def test_mair(pretrained: bool = False, **kwargs) -> MaIR:
    """Tiny MaIR for tests: x2 light-SR tail, one group of two blocks (unshifted and shifted stripes)."""
    model_args = dict(upscale=2, embed_dim=16, depths=(2,), d_state=2, ssm_ratio=1.0, mlp_ratio=2.0,
                      scan_len=4, upsampler='pixelshuffledirect', drop_path_rate=0.)
    return _mair('test_mair', pretrained, model_args, kwargs)
