"""Whole-image and sliding-window inference over large scenes, and the `tools/detect_changes.py` demo (no mmengine).
"""
import argparse
import os
import os.path as osp
import sys
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..common import check_device, check_image_files, load_image, save_label_map

from .datasets import SECOND_PALETTE

__all__ = ['slide_inference', 'detect_changes', 'build_change_net', 'main']

Outputs = Union[torch.Tensor, Tuple[torch.Tensor, ...]]


def _starts(length: int, crop: int, stride: int) -> List[int]:
    """Window starts covering [0, length): every `stride`, the last window flush with the end."""
    if length <= crop:
        return [0]
    starts = list(range(0, length - crop, stride))
    return starts + [length - crop]


@torch.no_grad()
def slide_inference(fn: Callable[[torch.Tensor, torch.Tensor], Outputs], img1: torch.Tensor, img2: torch.Tensor,
                    crop_size: int, stride: Optional[int] = None) -> Outputs:
    """Run `fn(img1_window, img2_window)` on overlapping windows, averaging softmax probabilities where they overlap.

    Returns log-probabilities shaped as `fn`'s output; small images are padded, `stride` defaults to half a window.
    """
    if crop_size < 1:
        raise ValueError(f'slide_inference: crop_size must be >= 1, got {crop_size}')
    stride = stride or max(1, crop_size // 2)
    if not 1 <= stride <= crop_size:
        raise ValueError(f'slide_inference: stride={stride} must be in [1, crop_size={crop_size}]')
    height, width = img1.shape[-2:]
    pad_h, pad_w = max(0, crop_size - height), max(0, crop_size - width)
    if pad_h or pad_w:
        mode = 'reflect' if pad_h < height and pad_w < width else 'replicate'
        img1 = F.pad(img1, (0, pad_w, 0, pad_h), mode=mode)
        img2 = F.pad(img2, (0, pad_w, 0, pad_h), mode=mode)
    full_h, full_w = img1.shape[-2:]
    sums: Optional[List[torch.Tensor]] = None
    count = img1.new_zeros(1, 1, full_h, full_w)
    single = True
    for top in _starts(full_h, crop_size, stride):
        for left in _starts(full_w, crop_size, stride):
            window = (..., slice(top, top + crop_size), slice(left, left + crop_size))
            out = fn(img1[window], img2[window])
            single = isinstance(out, torch.Tensor)
            outs = [out] if single else list(out)
            if sums is None:
                sums = [img1.new_zeros(o.shape[0], o.shape[1], full_h, full_w) for o in outs]
            for acc, o in zip(sums, outs):
                acc[window] += o.softmax(dim=1)
            count[window] += 1
    results = tuple((acc / count)[..., :height, :width].clamp_min(1e-12).log() for acc in sums)
    return results[0] if single else results


def build_change_net(task: str = 'bcd', checkpoint: Optional[str] = None, device: str = 'cpu', **kwargs):
    """A `BinaryChangeNet` ('bcd') or `SemanticChangeNet` ('scd'), weights from a Runner checkpoint or state dict."""
    from .model import BinaryChangeNet, SemanticChangeNet

    if task not in ('bcd', 'scd'):
        raise ValueError(f"build_change_net: task={task!r}; accepted: 'bcd', 'scd'")
    net = (BinaryChangeNet if task == 'bcd' else SemanticChangeNet)(**kwargs)
    if checkpoint:
        from vimamba.checkpoint import read_checkpoint, unwrap_state_dict

        state = unwrap_state_dict(read_checkpoint(checkpoint, '--checkpoint'), arg='--checkpoint')
        net.load_state_dict({k[len('net.'):] if k.startswith('net.') else k: v for k, v in state.items()})
    return net.to(device).eval()


def _net_args_from_config(path: str) -> Tuple[str, dict]:
    """(task, network kwargs) of the model in an mmengine config (needs mmengine to merge its `_base_` files)."""
    from mmengine.config import Config

    model = Config.fromfile(path).model.to_dict()
    kind = model.pop('type')
    tasks = {'BinaryChangeDetector': 'bcd', 'SemanticChangeDetector': 'scd'}
    if kind not in tasks:
        raise ValueError(f'detect_changes: config {path!r} builds {kind!r}; accepted: {sorted(tasks)}')
    for key in ('lovasz_weight', 'ignore_index', 'test_cfg', 'data_preprocessor', 'init_cfg'):
        model.pop(key, None)
    encoder = model.get('encoder') or {}
    encoder.pop('checkpoint', None)  # the trained weights replace the ImageNet initialisation
    return tasks[kind], model


@torch.no_grad()
def detect_changes(net: torch.nn.Module, img1: torch.Tensor, img2: torch.Tensor, crop_size: Optional[int] = 512,
                   stride: Optional[int] = None) -> Tuple[torch.Tensor, ...]:
    """Class maps of one image pair (3, H, W) in [0, 1]: (change,) or (change, semantic 1, semantic 2), the
    semantic maps masked to 0 (no change) where no change is predicted. `crop_size=None`: one whole pass."""
    device = next(net.parameters()).device
    a, b = img1[None].to(device), img2[None].to(device)
    outs = net(a, b) if crop_size is None else slide_inference(net, a, b, crop_size, stride)
    outs = (outs,) if isinstance(outs, torch.Tensor) else tuple(outs)
    maps = [o.argmax(dim=1)[0].cpu() for o in outs]
    if len(maps) == 3:
        maps[1] = maps[1] * maps[0]
        maps[2] = maps[2] * maps[0]
    return tuple(maps)


def main(argv: Optional[Sequence[str]] = None) -> List[str]:
    parser = argparse.ArgumentParser(
        description='Change map of an image pair (AWMambaBCD / AWMambaSCD) with sliding windows.')
    parser.add_argument('image1', help='date-1 image')
    parser.add_argument('image2', help='date-2 image (same size)')
    parser.add_argument('--out', required=True, help='change map PNG (0 / 255)')
    parser.add_argument('--task', choices=('bcd', 'scd'), default='bcd')
    parser.add_argument('--checkpoint', default=None, help='trained weights (mmengine checkpoint or state dict)')
    parser.add_argument('--config', default=None,
                        help='the training config: builds the same network (task, encoder, decoder, classes)')
    parser.add_argument('--encoder', default='atrousmamba_tiny', help='backbone name (without --config)')
    parser.add_argument('--num-classes', type=int, default=7, help='SCD classes incl. no change (without --config)')
    parser.add_argument('--crop-size', type=int, default=512, help='window side; 0 = whole image in one pass')
    parser.add_argument('--stride', type=int, default=None, help='window stride (default half a window)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args(argv)
    try:
        (w1, h1), (w2, h2) = check_image_files([args.image1, args.image2], 'images')
        if (w1, h1) != (w2, h2):
            raise ValueError(f'images: {args.image1!r} is {w1}x{h1}, {args.image2!r} is {w2}x{h2}; the two dates '
                             f'must be co-registered images of one size')
        if osp.isdir(args.out) or osp.splitext(args.out)[1].lower() not in Image.registered_extensions():
            raise ValueError(f'--out {args.out!r}: give an image file name (e.g. change.png)')
        if args.checkpoint and not osp.isfile(args.checkpoint):
            raise ValueError(f'--checkpoint {args.checkpoint!r} is not a file')
        if args.config and not osp.isfile(args.config):
            raise ValueError(f'--config {args.config!r} is not a file')
        if args.crop_size < 0 or (args.stride is not None and args.stride < 1):
            raise ValueError(f'--crop-size must be >= 0 and --stride >= 1, got {args.crop_size} and {args.stride}')
        check_device(args.device)
        if args.config:
            args.task, kwargs = _net_args_from_config(args.config)
            args.num_classes = kwargs.get('num_classes', args.num_classes)
        else:
            import vimamba
            from vimamba.registry import check_model_name
            check_model_name(args.encoder, '--encoder', vimamba.list_models(include_test=True), 'vimamba model')
            if args.num_classes < 2:
                raise ValueError(f'--num-classes must be >= 2 (no change + classes), got {args.num_classes}')
            kwargs = dict(encoder=dict(model_name=args.encoder))
            if args.task == 'scd':
                kwargs['num_classes'] = args.num_classes
    except ValueError as e:
        parser.error(str(e))
    if not args.checkpoint:
        print(f'{parser.prog}: warning: no --checkpoint: the change network has random weights and its map means '
              f'nothing; give a checkpoint trained with tools/train.py', file=sys.stderr)
    net = build_change_net(args.task, args.checkpoint, args.device, **kwargs)
    img1, img2 = load_image(args.image1), load_image(args.image2)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    maps = detect_changes(net, img1, img2, args.crop_size or None, args.stride)
    save_label_map(maps[0] * 255, args.out)
    written = [args.out]
    if len(maps) == 3:
        stem, _ = osp.splitext(args.out)
        # SECOND's colours; for other class counts white (no change) then fixed pseudo-random colours.
        palette = SECOND_PALETTE if args.num_classes == len(SECOND_PALETTE) else [(255, 255, 255)] + [
            tuple(int(v) for v in np.random.RandomState(c).randint(0, 256, 3)) for c in range(1, args.num_classes)]
        for date, index in ((1, maps[1]), (2, maps[2])):
            path = f'{stem}_semantic{date}.png'
            save_label_map(index, path, palette)
            written.append(path)
    for path in written:
        print(path)
    return written
