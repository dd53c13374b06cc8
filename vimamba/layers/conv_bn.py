"""Conv / linear layers with BatchNorm whose `fuse()` folds them into one (`timm.models.reparameterize_model`)."""
import torch
import torch.nn as nn

__all__ = ['ConvBn2d', 'BnLinear', 'fold_bn_into_conv']


@torch.no_grad()
def fold_bn_into_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A conv with bias equal to `bn(conv(x))` in eval mode."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
        dilation=conv.dilation, groups=conv.groups, bias=True,
        device=conv.weight.device, dtype=conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    fused.bias.copy_(bias)
    return fused


class ConvBn2d(nn.Module):
    """Conv2d without bias, then BatchNorm2d with weight `bn_weight_init` (0: residual branch starts as identity)."""

    def __init__(
            self,
            in_chs: int,
            out_chs: int,
            kernel_size: int = 1,
            stride: int = 1,
            padding: int = 0,
            dilation: int = 1,
            groups: int = 1,
            bn_weight_init: float = 1.0,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.bn_weight_init = bn_weight_init
        self.conv = nn.Conv2d(in_chs, out_chs, kernel_size, stride, padding, dilation, groups, bias=False, **dd)
        self.bn = nn.BatchNorm2d(out_chs, **dd)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.conv.reset_parameters()
        self.bn.reset_parameters()
        nn.init.constant_(self.bn.weight, self.bn_weight_init)

    def fuse(self) -> nn.Conv2d:
        return fold_bn_into_conv(self.conv, self.bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class BnLinear(nn.Module):
    """BatchNorm1d then Linear (LeViT / EfficientViT / MobileMamba classifier), with optional dropout between."""

    def __init__(
            self,
            in_features: int,
            out_features: int,
            drop: float = 0.,
            std: float = 0.02,
            device=None,
            dtype=None,
    ):
        super().__init__()
        dd = {'device': device, 'dtype': dtype}
        self.std = std
        self.norm = nn.BatchNorm1d(in_features, **dd)
        self.drop = nn.Dropout(drop)
        self.fc = nn.Linear(in_features, out_features, **dd)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.norm.reset_parameters()
        nn.init.trunc_normal_(self.fc.weight, std=self.std)
        nn.init.zeros_(self.fc.bias)

    @torch.no_grad()
    def fuse(self) -> nn.Linear:
        bn, fc = self.norm, self.fc
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        shift = bn.bias - bn.running_mean * scale
        fused = nn.Linear(fc.in_features, fc.out_features, device=fc.weight.device, dtype=fc.weight.dtype)
        fused.weight.copy_(fc.weight * scale[None, :])
        fused.bias.copy_(fc.weight @ shift + fc.bias)
        return fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.norm(x)))
