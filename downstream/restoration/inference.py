"""Restore image files with a timm image-to-image model (the code behind `tools/restore.py`).

    python tools/restore.py IMAGE [IMAGE ...] --model mair_sr_x2 [--checkpoint FILE] [--tile N]
                            [--self-ensemble] [--device cuda] [--gt GT [GT ...]] --out DIR

Writes DIR/<name>.png (8 bits); `--gt` scores each output (PSNR / SSIM) beside the bicubic upscale (scale 1: input).
"""
import argparse
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

import torch

from ..common import IMAGE_EXTENSIONS, check_device, check_image_files, load_image, save_image

__all__ = ['build_restorer', 'restore_files', 'score_files', 'restoration_models', 'main']


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
        target = osp.join(out_dir, osp.splitext(osp.basename(path))[0] + '.png')
        save_image(out[0], target)
        written.append(target)
        images.update(1)
    images.close()
    return written


def restoration_models(include_test: bool = True) -> List[str]:
    """The image-to-image models (MaIR, MaIRUNet) among vimamba's."""
    import vimamba
    from vimamba.registry import family_of
    return [n for n in vimamba.list_models(include_test=include_test) if family_of(n) == 'mair']


def _check_model(name: str) -> int:
    """The output scale of restoration model `name` (built on the meta device); ValueError for other names."""
    import timm

    from vimamba.registry import check_model_name, model_module

    if timm.is_model(name) and name not in restoration_models():
        raise ValueError(f'--model {name!r} is not a restoration model (an image classifier / backbone of '
                         f'{model_module(name)}); restoration models: '
                         f'{", ".join(restoration_models(include_test=False))}')
    check_model_name(name, '--model', restoration_models(), 'restoration model')
    with torch.device('meta'):
        return getattr(timm.create_model(name), 'upscale', 1)


def _gt_paths(gt: Sequence[str], images: Sequence[str], scale_names: Sequence[str]) -> List[str]:
    """One ground-truth file per image: the files as given, or from one folder by name, stem or stem less `x<scale>`."""
    if len(gt) == 1 and osp.isdir(gt[0]):
        folder, found = gt[0], []
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
        by_stem = {osp.splitext(f)[0]: f for f in files}
        for path in images:
            stem = osp.splitext(osp.basename(path))[0]
            stems = [stem] + [stem[:-len(x)] for x in scale_names if stem.endswith(x)]
            match = next((by_stem[t] for t in stems if t in by_stem), None)
            if match is None:
                raise ValueError(f'--gt {folder!r}: no ground truth for {path!r} (looked for {stems} with any of '
                                 f'{", ".join(IMAGE_EXTENSIONS)})')
            found.append(osp.join(folder, match))
        return found
    if len(gt) != len(images):
        raise ValueError(f'--gt: give one file per image ({len(images)}) or one folder, got {len(gt)} paths')
    return list(gt)


def score_files(restored: Sequence[str], gt_paths: Sequence[str], inputs: Sequence[str],
                scale: int) -> List[Dict[str, float]]:
    """PSNR / SSIM of each restored file and of its bicubic baseline against the ground truth (mod-cropped)."""
    from .functional import imresize, psnr, ssim

    border, y_channel = (scale, True) if scale > 1 else (0, False)
    scores = []
    for out_path, gt_path, in_path in zip(restored, gt_paths, inputs):
        out, gt, lq = load_image(out_path), load_image(gt_path), load_image(in_path)
        baseline = (imresize(lq, scale) if scale > 1 else lq).clamp(0, 1)
        height, width = out.shape[-2:]
        gt = gt[..., :height, :width]
        row = dict(psnr=psnr(out, gt, border, y_channel), ssim=ssim(out, gt, border, y_channel),
                   baseline_psnr=psnr(baseline, gt, border, y_channel),
                   baseline_ssim=ssim(baseline, gt, border, y_channel))
        scores.append(row)
    return scores


def main(argv: Optional[Sequence[str]] = None) -> List[str]:
    parser = argparse.ArgumentParser(description='Restore images with a MaIR / MaIRUNet model.')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--model', default='mair_sr_x2', help='timm model name (default: mair_sr_x2)')
    parser.add_argument('--checkpoint', default=None, help='official BasicSR .pth or a converted state dict '
                                                          '(without it the network has random weights)')
    parser.add_argument('--tile', type=int, default=None, help='restore in tiles of about N px (official: 200)')
    parser.add_argument('--self-ensemble', action='store_true', help='x8 flips / transposes (MaIR+)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--gt', nargs='+', default=None, metavar='GT',
                        help='ground truth: one file per image, or a folder with files of the same names; '
                             'prints PSNR / SSIM beside the bicubic baseline')
    parser.add_argument('--out', required=True, help='output folder (created)')
    args = parser.parse_args(argv)
    try:
        sizes = check_image_files(args.images, 'images')
        scale = _check_model(args.model)
        if args.tile is not None and args.tile < 1:
            raise ValueError(f'--tile must be >= 1, got {args.tile}')
        if args.checkpoint and not osp.isfile(args.checkpoint):
            raise ValueError(f'--checkpoint {args.checkpoint!r} is not a file')
        if osp.exists(args.out) and not osp.isdir(args.out):
            raise ValueError(f'--out {args.out!r} is a file; give a folder')
        check_device(args.device)
        gt_paths = _gt_paths(args.gt, args.images, ('x2', 'x3', 'x4', 'x8')) if args.gt else None
        for path, (w, h), gt_path, (gw, gh) in zip(args.images, sizes, gt_paths or [],
                                                   check_image_files(gt_paths or [], '--gt')):
            if not (0 <= gw - scale * w < scale and 0 <= gh - scale * h < scale):
                raise ValueError(f'--gt {gt_path!r} is {gw}x{gh} but {args.model} restores {path!r} ({w}x{h}) '
                                 f'to {scale * w}x{scale * h}')
    except ValueError as e:
        parser.error(str(e))
    if not args.checkpoint:
        print(f'{parser.prog}: warning: no --checkpoint: {args.model} runs with random weights and its output is '
              f'not a restoration; give the official weights or a checkpoint trained with tools/train.py',
              file=sys.stderr)
    model = build_restorer(args.model, args.checkpoint, args.device)
    written = restore_files(model, args.images, args.out, args.tile, args.self_ensemble, args.device)
    scores = score_files(written, gt_paths, args.images, scale) if gt_paths else [None] * len(written)
    baseline = 'bicubic' if scale > 1 else 'input'
    for src, dst, row in zip(args.images, written, scores):
        line = f'{src} -> {dst}'
        if row is not None:
            line += (f': PSNR {row["psnr"]:.2f} dB, SSIM {row["ssim"]:.4f} ({baseline}: '
                     f'{row["baseline_psnr"]:.2f} dB, {row["baseline_ssim"]:.4f})')
        print(line)
    if gt_paths and len(scores) > 1:
        mean = {k: sum(r[k] for r in scores) / len(scores) for k in scores[0]}
        print(f'mean of {len(scores)}: PSNR {mean["psnr"]:.2f} dB, SSIM {mean["ssim"]:.4f} ({baseline}: '
              f'{mean["baseline_psnr"]:.2f} dB, {mean["baseline_ssim"]:.4f})')
    return written
