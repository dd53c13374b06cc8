"""Image to token sequence with a patch size and a (possibly smaller) stride (Vim's "+" models: 16x16 every 8)."""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import register_notrace_function, to_2tuple

__all__ = ['PatchEmbed', 'check_image']


@register_notrace_function
def check_image(x: torch.Tensor, in_chans: int, weight: torch.Tensor, owner: str) -> torch.Tensor:
    """x unchanged, or an error when it is not a (B, in_chans, H, W) floating batch of `weight`'s dtype."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        what = f'shape {tuple(x.shape)}' if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f'{owner}: expected an image batch (B, {in_chans}, H, W), got {what}')
    if x.shape[1] != in_chans:
        hint = f' (a grayscale image: repeat it to {in_chans} channels, or build the model with in_chans=1)' \
            if x.shape[1] == 1 else ''
        raise ValueError(f'{owner}: input has {x.shape[1]} channels (shape {tuple(x.shape)}); '
                         f'this model takes in_chans={in_chans}{hint}')
    if not x.is_floating_point() or (x.dtype == torch.float64 and weight.dtype != torch.float64):
        hint = ', scaled to [0, 1]: x.float() / 255' if x.dtype == torch.uint8 else ''
        raise TypeError(f'{owner}: input has dtype {x.dtype}; this model takes floating images of its dtype '
                        f'{weight.dtype} (x.to({weight.dtype}){hint})')
    return x


class PatchEmbed(nn.Module):
    """Conv2d(k=patch_size, stride=stride) -> (B, H' * W', C) tokens in raster order."""

    def __init__(
            self,
            img_size: Union[int, Tuple[int, int]] = 224,
            patch_size: Union[int, Tuple[int, int]] = 16,
            stride: Optional[Union[int, Tuple[int, int]]] = None,
            in_chans: int = 3,
            embed_dim: int = 768,
            bias: bool = True,
            strict_img_size: bool = True,
            dynamic_img_pad: bool = False,
            device=None,
            dtype=None,
    ):
        super().__init__()
        self.patch_size = to_2tuple(patch_size)
        self.stride = to_2tuple(stride if stride is not None else patch_size)
        self.strict_img_size = strict_img_size
        self.dynamic_img_pad = dynamic_img_pad
        self.img_size, self.grid_size, self.num_patches = self._init_img_size(img_size)
        self.proj = nn.Conv2d(
            in_chans, embed_dim, kernel_size=self.patch_size, stride=self.stride, bias=bias,
            device=device, dtype=dtype)

    def _init_img_size(self, img_size):
        img_size = to_2tuple(img_size)
        grid_size = self.dynamic_feat_size(img_size)
        if grid_size[0] < 1 or grid_size[1] < 1:
            raise ValueError(f"img_size: {img_size} is smaller than the patch size {self.patch_size}")
        return img_size, grid_size, grid_size[0] * grid_size[1]

    def set_input_size(self, img_size: Union[int, Tuple[int, int]]) -> None:
        self.img_size, self.grid_size, self.num_patches = self._init_img_size(img_size)

    def feat_ratio(self, as_scalar: bool = True) -> Union[int, Tuple[int, int]]:
        return max(self.stride) if as_scalar else self.stride

    def dynamic_feat_size(self, img_size: Tuple[int, int]) -> Tuple[int, int]:
        """Token grid (H', W') of an image of `img_size`."""
        pad = self.padding(img_size)
        return ((img_size[0] + pad[0] - self.patch_size[0]) // self.stride[0] + 1,
                (img_size[1] + pad[1] - self.patch_size[1]) // self.stride[1] + 1)

    def padding(self, img_size: Tuple[int, int]) -> Tuple[int, int]:
        """(bottom, right) zero padding `dynamic_img_pad` adds: at least one patch, then whole strides."""
        if not self.dynamic_img_pad:
            return 0, 0
        return tuple(max(p - n, (p - n) % s) for n, p, s in zip(img_size, self.patch_size, self.stride))

    def _check_covered(self, height: int, width: int) -> None:
        for name, n, p, s in (('height', height, self.patch_size[0], self.stride[0]),
                              ('width', width, self.patch_size[1], self.stride[1])):
            if n < p or (n - p) % s:
                covered = f'a multiple of {p}' if p == s else f'{p} + a multiple of {s}'
                raise ValueError(f"PatchEmbed: input {name} {n} is not covered by patches of {p} with stride {s} "
                                 f"(it must be {covered}); build the model with "
                                 f"dynamic_img_pad=True to zero-pad it, or resize the input")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.strict_img_size:
            # Two asserts, not one `and`: under torch.fx the comparisons have no truth value.
            torch._assert(x.shape[-2] == self.img_size[0], f"Input height must be {self.img_size[0]} (img_size "
                          f"{self.img_size}); build the model with dynamic_img_size=True for other sizes")
            torch._assert(x.shape[-1] == self.img_size[1], f"Input width must be {self.img_size[1]} (img_size "
                          f"{self.img_size}); build the model with dynamic_img_size=True for other sizes")
        if self.dynamic_img_pad:
            pad_h, pad_w = self.padding(x.shape[-2:])
            x = F.pad(x, (0, pad_w, 0, pad_h))
        elif not self.strict_img_size:
            self._check_covered(x.shape[-2], x.shape[-1])
        return self.proj(x).flatten(2).transpose(1, 2)
