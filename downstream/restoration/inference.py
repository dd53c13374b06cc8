"""Restore image files with a timm image-to-image model (the code behind `tools/restore.py`).

    python tools/restore.py IMAGE [IMAGE ...] --model mair_sr_x2 [--checkpoint FILE] [--tile N]
                            [--self-ensemble] [--device cuda] --out DIR

Each image is read as RGB in [0, 1], restored (tile by tile with `--tile`, the official protocol: about N px
tiles with a tenth of overlap), clamped, rounded to 8 bits and written to DIR/<name>.png. `--checkpoint` takes
an official BasicSR file or one of ours (converted by the model's `checkpoint_filter_fn`). Progress bars run
over the images and, when tiling, over the tiles of each image. Needs no mmengine.
"""
import argparse
import os
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from .datasets import load_image

__all__ = ['build_restorer', 'restore_files', 'main']


def build_restorer(model_name: str, checkpoint: Optional[str] = None, device: str = 'cpu') -> torch.nn.Module:
    """`timm.create_model(model_name)`, eval mode, on `device`; `checkpoint` loaded through the family's filter."""
    import timm
    import vimamba.models  # noqa: F401  registers the networks

    kwargs = dict(pretrained=True, pretrained_cfg_overlay=dict(file=checkpoint)) if checkpoint else {}
    if checkpoint and not osp.isfile(checkpoint):
        raise FileNotFoundError(f'--checkpoint: {checkpoint!r} is not a file')
    model = timm.create_model(model_name, **kwargs)
    return model.eval().to(device)


def _progress(total: int, desc: str, leave: bool = True):
    try:
        from tqdm import tqdm
    except ImportError:  # plain counter
        class _Bar:
            def __init__(self):
                self.n = 0

            def update(self, k=1):
                self.n += k
                print(f'{desc}: {self.n}/{total}', flush=True)

            def close(self):
                pass
        return _Bar()
    return tqdm(total=total, desc=desc, leave=leave)


@torch.no_grad()
def restore_files(model: torch.nn.Module, paths: Sequence[str], out_dir: str, tile: Optional[int] = None,
                  self_ensemble: bool = False, device: str = 'cpu') -> List[str]:
    """Restore every file of `paths` into `out_dir` (PNG); returns the written paths."""
    from vimamba.models.mair import forward_self_ensemble, forward_tiled

    os.makedirs(out_dir, exist_ok=True)
    scale = getattr(model, 'upscale', 1)
    written = []
    images = _progress(len(paths), 'images')
    for path in paths:
        lq = load_image(path)[None].to(device)
        if tile:
            tiles = None

            def run(x):
                nonlocal tiles

                def tick(done, total):
                    nonlocal tiles
                    if tiles is None:
                        tiles = _progress(total, f'tiles of {osp.basename(path)}', leave=False)
                    tiles.update(1)
                return forward_tiled(model, x, scale, tile, progress=tick)
        else:
            run = model
        out = forward_self_ensemble(run, lq) if self_ensemble else run(lq)
        if tile and tiles is not None:
            tiles.close()
        array = (out[0].clamp(0, 1) * 255.).round().byte().permute(1, 2, 0).cpu().numpy()
        target = osp.join(out_dir, osp.splitext(osp.basename(path))[0] + '.png')
        Image.fromarray(np.ascontiguousarray(array)).save(target)
        written.append(target)
        images.update(1)
    images.close()
    return written


def main(argv: Optional[Sequence[str]] = None) -> List[str]:
    parser = argparse.ArgumentParser(description='Restore images with a MaIR / MaIRUNet model.')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--model', default='mair_sr_x2', help='timm model name (default: mair_sr_x2)')
    parser.add_argument('--checkpoint', default=None, help='official BasicSR .pth or a converted state dict')
    parser.add_argument('--tile', type=int, default=None, help='restore in tiles of about N px (official: 200)')
    parser.add_argument('--self-ensemble', action='store_true', help='x8 flips / transposes (MaIR+)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--out', required=True, help='output folder')
    args = parser.parse_args(argv)
    missing = [p for p in args.images if not osp.isfile(p)]
    if missing:
        parser.error(f'images not found: {missing}')
    if args.tile is not None and args.tile < 1:
        parser.error(f'--tile must be >= 1, got {args.tile}')
    model = build_restorer(args.model, args.checkpoint, args.device)
    return restore_files(model, args.images, args.out, args.tile, args.self_ensemble, args.device)
