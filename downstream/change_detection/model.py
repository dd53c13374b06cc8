"""Siamese change-detection networks (plain PyTorch): AWMambaBCD and AWMambaSCD.

ChangeMamba's pipeline (docs/families.md#changemamba-change-detection-pipeline) on any vimamba backbone, with
PROPOSED decoder blocks scanning atrous windows (`decoder_scan='cross'` gives ChangeMamba's decoder). With VMamba
encoders the parameter counts are ChangeMamba's (tested: BCD-T 32,613,506, SCD-T 37,125,641).
Inputs are RGB in [0, 1], normalised with `mean` / `std` (ImageNet, as ChangeMamba).
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import LayerNorm2d
from timm.models._features import FeatureGetterNet

import vimamba  # noqa: F401  registers the backbones
from vimamba.layers.vss import VSSBlock
from vimamba.checkpoint import CheckpointError, load_checkpoint
from vimamba.scans import atrous_block_scans

__all__ = ['SiameseEncoder', 'ChangeDecoder', 'SemanticDecoder', 'BinaryChangeNet', 'SemanticChangeNet']


class SiameseEncoder(nn.Module):
    """One backbone (shared weights) over both dates; returns two lists of NCHW maps, shallow to deep.

    Args:
        model_name: Any vimamba (or timm) model with `forward_intermediates`.
        out_indices: Feature levels (an int = the last n).
        model_kwargs: Passed to `timm.create_model`.
        checkpoint / strict: Optional backbone checkpoint, through the family's filter (non-strict keeps what fits).
        out_norm: A LayerNorm per level (ChangeMamba's `outnorm{i}`).
        joint_batch: Both dates as one batch of 2B (BatchNorm backbones then share statistics) or two calls.
    """

    def __init__(self, model_name: str = 'atrousmamba_tiny', out_indices: Union[int, Sequence[int]] = 4,
                 model_kwargs: Optional[Dict[str, Any]] = None, checkpoint: Optional[str] = None,
                 strict: bool = True, out_norm: bool = True, joint_batch: bool = True):
        super().__init__()
        model = timm.create_model(model_name, **(model_kwargs or {}))
        if checkpoint:
            load_backbone_checkpoint(model, checkpoint, strict=strict)
        out_indices = out_indices if isinstance(out_indices, int) else tuple(out_indices)
        self.backbone = FeatureGetterNet(model, out_indices=out_indices, output_fmt='NCHW')
        self.channels: List[int] = self.backbone.feature_info.channels()
        self.reductions: List[int] = self.backbone.feature_info.reduction()
        self.out_norms = nn.ModuleList(
            [LayerNorm2d(c, eps=1e-5) for c in self.channels] if out_norm else [nn.Identity() for _ in self.channels])
        self.joint_batch = joint_batch

    def _levels(self, x: torch.Tensor) -> List[torch.Tensor]:
        return [norm(f) for norm, f in zip(self.out_norms, self.backbone(x))]

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
        if not self.joint_batch:
            return self._levels(x1), self._levels(x2)
        feats = self._levels(torch.cat([x1, x2], dim=0))
        return [f[:x1.shape[0]] for f in feats], [f[x1.shape[0]:] for f in feats]


def load_backbone_checkpoint(model: nn.Module, path: str, strict: bool = True) -> None:
    """Load a checkpoint through the family's filter; `strict=False` keeps what fits (raises when nothing does)."""
    result = load_checkpoint(model, path, strict=strict, arg='encoder.checkpoint')
    if len(result.missing_keys) == len(model.state_dict()):
        raise CheckpointError(f'encoder.checkpoint: no weight of {path!r} matches {type(model).__name__}')


class ProjectedVSS(nn.Module):
    """1x1 conv to `width`, then a VSS block (ChangeMamba's spatio-temporal decoder block)."""

    def __init__(self, in_chs: int, width: int, **block_kwargs):
        super().__init__()
        self.proj = nn.Conv2d(in_chs, width, 1)
        self.block = VSSBlock(width, **block_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.proj(x))


class ResBlock(nn.Module):
    """3x3 conv-BN-ReLU-3x3 conv-BN plus identity, then ReLU (the decoders' smoothing layer)."""

    def __init__(self, chs: int):
        super().__init__()
        self.conv1 = nn.Conv2d(chs, chs, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(chs)
        self.conv2 = nn.Conv2d(chs, chs, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(chs)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(y)) + x)


def _conv_bn_relu(in_chs: int, out_chs: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_chs, out_chs, 1), nn.BatchNorm2d(out_chs), nn.ReLU())


def _upsample_add(coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
    return F.interpolate(coarse, size=fine.shape[-2:], mode='bilinear', align_corners=False) + fine


class _DecoderBase(nn.Module):
    def __init__(self, num_blocks: int, width: int, drop_path: float, block_kwargs: Optional[Dict[str, Any]],
                 decoder_scan: str, window_size: int, decoder_atrous_rates: Sequence[int], rate_overflow: str,
                 atrous_order: str):
        super().__init__()
        self.width = width
        # Rates cycle over the decoder's VSS blocks in build order, as over one stage.
        self._scans = iter(atrous_block_scans(
            decoder_scan, (num_blocks,), window_size, tuple(decoder_atrous_rates), rate_overflow, atrous_order,
            owner=type(self).__name__, rates_arg='decoder_atrous_rates')[0])
        self._block_kwargs = dict(dict(d_state=1, ssm_ratio=2.0, mlp_ratio=4.0), **(block_kwargs or {}))
        self._drop_path = drop_path

    def _vss(self, in_chs: Optional[int] = None) -> nn.Module:
        kwargs = dict(self._block_kwargs, drop_path=self._drop_path, scan=next(self._scans))
        if in_chs is None:
            return VSSBlock(self.width, **kwargs)
        return ProjectedVSS(in_chs, self.width, **kwargs)


class ChangeDecoder(_DecoderBase):
    """ChangeMamba's change decoder over any number of levels.

    Per level, the dates are modelled channel-concatenated, column-interleaved and side by side (each a 1x1 conv
    + VSS block); the five maps are fused by a 1x1 conv-BN-ReLU, added to the upsampled coarser level, smoothed.

    Args:
        in_channels: Encoder channels per level, shallow to deep.
        width / drop_path: Decoder width / stochastic depth of its VSS blocks (ChangeMamba: 128 / 0.1).
        block_kwargs: VSS block options (ChangeMamba: the encoder's).
        decoder_scan, window_size, decoder_atrous_rates, rate_overflow, atrous_order: the blocks' scans
            (`vimamba.scans.atrous_block_scans`); 'atrous_window' is PROPOSED, 'cross' is ChangeMamba's.
    """

    def __init__(self, in_channels: Sequence[int], width: int = 128, drop_path: float = 0.1,
                 block_kwargs: Optional[Dict[str, Any]] = None, decoder_scan: str = 'atrous_window',
                 window_size: int = 8, decoder_atrous_rates: Sequence[int] = (1, 2, 4), rate_overflow: str = 'clip',
                 atrous_order: str = 'window'):
        levels = list(in_channels)
        super().__init__(3 * len(levels), width, drop_path, block_kwargs, decoder_scan, window_size,
                         decoder_atrous_rates, rate_overflow, atrous_order)
        # Built deepest level first, as the decoder runs.
        self.st_concat = nn.ModuleList([None] * len(levels))
        self.st_interleave = nn.ModuleList([None] * len(levels))
        self.st_side = nn.ModuleList([None] * len(levels))
        for i in reversed(range(len(levels))):
            self.st_concat[i] = self._vss(2 * levels[i])
            self.st_interleave[i] = self._vss(levels[i])
            self.st_side[i] = self._vss(levels[i])
        self.fuse = nn.ModuleList([_conv_bn_relu(5 * width, width) for _ in levels])
        self.smooth = nn.ModuleList([ResBlock(width) for _ in levels[:-1]])
        del self._scans

    def forward(self, feats1: Sequence[torch.Tensor], feats2: Sequence[torch.Tensor]) -> torch.Tensor:
        p = None
        for i in reversed(range(len(feats1))):
            a, b = feats1[i], feats2[i]
            width = a.shape[-1]
            p_concat = self.st_concat[i](torch.cat([a, b], dim=1))
            p_inter = self.st_interleave[i](torch.stack([a, b], dim=-1).flatten(-2))  # columns a0 b0 a1 b1 ...
            p_side = self.st_side[i](torch.cat([a, b], dim=-1))
            q = self.fuse[i](torch.cat([
                p_concat, p_inter[..., 0::2], p_inter[..., 1::2], p_side[..., :width], p_side[..., width:]], dim=1))
            p = q if p is None else self.smooth[i](_upsample_add(p, q))
        return p


class SemanticDecoder(_DecoderBase):
    """ChangeMamba's semantic decoder (one date): VSS on the deepest level, then per finer level a 1x1 conv-BN-ReLU,
    the upsampled coarser map added, a residual block and a VSS block; a last residual block."""

    def __init__(self, in_channels: Sequence[int], width: int = 128, drop_path: float = 0.1,
                 block_kwargs: Optional[Dict[str, Any]] = None, decoder_scan: str = 'atrous_window',
                 window_size: int = 8, decoder_atrous_rates: Sequence[int] = (1, 2, 4), rate_overflow: str = 'clip',
                 atrous_order: str = 'window'):
        levels = list(in_channels)
        super().__init__(len(levels), width, drop_path, block_kwargs, decoder_scan, window_size,
                         decoder_atrous_rates, rate_overflow, atrous_order)
        self.top = self._vss(levels[-1])
        self.lateral = nn.ModuleList([_conv_bn_relu(c, width) for c in levels[:-1]])
        self.smooth = nn.ModuleList([ResBlock(width) for _ in levels[:-1]])
        self.st = nn.ModuleList([None] * (len(levels) - 1))
        for i in reversed(range(len(levels) - 1)):
            self.st[i] = self._vss()
        self.final = ResBlock(width)
        del self._scans

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        p = self.top(feats[-1])
        for i in reversed(range(len(feats) - 1)):
            p = self.st[i](self.smooth[i](_upsample_add(p, self.lateral[i](feats[i]))))
        return self.final(p)


class _ChangeNetBase(nn.Module):
    def __init__(self, encoder: Optional[Dict[str, Any]], mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.encoder = SiameseEncoder(**(encoder or {}))
        self.register_buffer('mean', torch.tensor(mean).reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(std).reshape(1, -1, 1, 1), persistent=False)

    def _encode(self, img1: torch.Tensor, img2: torch.Tensor):
        if img1.shape != img2.shape:
            raise ValueError(f'{type(self).__name__}: the two dates differ in shape: {tuple(img1.shape)} vs '
                             f'{tuple(img2.shape)}')
        return self.encoder((img1 - self.mean) / self.std, (img2 - self.mean) / self.std)

    @staticmethod
    def _resize(logits: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.interpolate(logits, size=like.shape[-2:], mode='bilinear', align_corners=False)


class BinaryChangeNet(_ChangeNetBase):
    """AWMambaBCD: `forward(img1, img2)` -> change logits (B, 2, H, W) at the input size.

    encoder / decoder: `SiameseEncoder` / `ChangeDecoder` arguments; mean, std: normalisation of [0, 1] RGB inputs.
    """

    def __init__(self, encoder: Optional[Dict[str, Any]] = None, decoder: Optional[Dict[str, Any]] = None,
                 mean: Sequence[float] = IMAGENET_DEFAULT_MEAN, std: Sequence[float] = IMAGENET_DEFAULT_STD):
        super().__init__(encoder, mean, std)
        self.decoder = ChangeDecoder(self.encoder.channels, **(decoder or {}))
        self.change_head = nn.Conv2d(self.decoder.width, 2, 1)

    def forward(self, img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
        feats1, feats2 = self._encode(img1, img2)
        return self._resize(self.change_head(self.decoder(feats1, feats2)), img1)


class SemanticChangeNet(_ChangeNetBase):
    """AWMambaSCD: `forward(img1, img2)` -> change logits (B, 2, H, W), semantic logits per date (B, C, H, W).

    num_classes includes 'no change' (class 0; SECOND: 7); the rest as `BinaryChangeNet` (for all three decoders).
    """

    def __init__(self, num_classes: int = 7, encoder: Optional[Dict[str, Any]] = None,
                 decoder: Optional[Dict[str, Any]] = None, mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
                 std: Sequence[float] = IMAGENET_DEFAULT_STD):
        super().__init__(encoder, mean, std)
        if num_classes < 2:
            raise ValueError(f'SemanticChangeNet: num_classes={num_classes}; needs >= 2 (no change + classes)')
        self.num_classes = num_classes
        channels = self.encoder.channels
        self.decoder = ChangeDecoder(channels, **(decoder or {}))
        self.semantic_decoder1 = SemanticDecoder(channels, **(decoder or {}))
        self.semantic_decoder2 = SemanticDecoder(channels, **(decoder or {}))
        self.change_head = nn.Conv2d(self.decoder.width, 2, 1)
        self.semantic_head = nn.Conv2d(self.decoder.width, num_classes, 1)  # one classifier for both dates

    def forward(self, img1: torch.Tensor, img2: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats1, feats2 = self._encode(img1, img2)
        change = self.change_head(self.decoder(feats1, feats2))
        sem1 = self.semantic_head(self.semantic_decoder1(feats1))
        sem2 = self.semantic_head(self.semantic_decoder2(feats2))
        return self._resize(change, img1), self._resize(sem1, img1), self._resize(sem2, img1)
