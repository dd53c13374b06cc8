"""Convert an official checkpoint into a safetensors file that timm loads for a vimamba model.

    python tools/convert.py SRC DST --model NAME [--ema] [--num-classes N] [--img-size H [W]]

SRC: an official checkpoint or state dict, or one of our trainers' files (read without unpickling code). The family's
`checkpoint_filter_fn` renames and resizes; every key and shape is checked on a meta-device model before writing. Then:

    timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay=dict(file=DST))
    timm.create_model(NAME, pretrained=True, num_classes=N, pretrained_cfg_overlay=dict(file=DST, num_classes=N))
"""
import argparse
import os
from typing import Any, Dict, Optional, Sequence

import torch

from vimamba.checkpoint import (
    CheckpointError, CheckpointMismatchError, checkpoint_filter_for, read_checkpoint, unwrap_state_dict)


def load_checkpoint(path: str) -> Any:
    """The object saved in `path`, read by vimamba's checkpoint reader (weights only, no pickled code runs)."""
    return read_checkpoint(path, 'SRC')


def convert_state_dict(
        checkpoint: Dict[str, Any],
        model_name: str,
        use_ema: bool = False,
        **model_kwargs,
) -> Dict[str, torch.Tensor]:
    """The official `checkpoint` in the names and shapes of `model_name`; raises CheckpointMismatchError."""
    import timm
    import vimamba  # noqa: F401  registers the models

    if use_ema:
        checkpoint = unwrap_state_dict(checkpoint, require_ema=True, arg='--ema')
    with torch.device('meta'):
        model = timm.create_model(model_name, pretrained=False, device='meta', **model_kwargs)
    state_dict = checkpoint_filter_for(model)(checkpoint, model, strict=True)
    expected = model.state_dict()
    # the filter leaves a classifier of another class count to the loader; a converted file must fit as it is
    mismatched = [f'{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}' for k, v in expected.items()
                  if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if mismatched:
        raise CheckpointMismatchError(model_name, mismatched=mismatched,
                                      hint='a classifier of another class count needs --num-classes')
    return {k: state_dict[k] for k in expected}


def convert(src: str, dst: str, model_name: str, use_ema: bool = False, **model_kwargs) -> Dict[str, torch.Tensor]:
    """Convert `src` and write `dst` (safetensors). Returns the converted state dict."""
    from safetensors.torch import save_file

    state_dict = convert_state_dict(load_checkpoint(src), model_name, use_ema=use_ema, **model_kwargs)
    # safetensors refuses shared storage: every tensor gets its own contiguous copy.
    tensors = {k: v.detach().clone().contiguous() for k, v in state_dict.items()}
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    save_file(tensors, dst, metadata={'format': 'pt', 'model': model_name, 'source': os.path.basename(src)})
    return tensors


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('src', help='official checkpoint (.pth)')
    parser.add_argument('dst', help='safetensors file to write')
    parser.add_argument('--model', required=True, help='vimamba model name, e.g. vim_tiny_patch16_224')
    parser.add_argument('--ema', action='store_true',
                        help="convert the EMA weights ('model_ema', 'net_E', ...) of a training checkpoint")
    parser.add_argument('--num-classes', type=int, default=None,
                        help="the classifier's class count, for a fine-tuned classifier (default: the model's 1000)")
    parser.add_argument('--img-size', type=int, nargs='+', default=None,
                        help='build the model for this input size (H [W]); pos_embed is resized to it')
    args = parser.parse_args(argv)
    import vimamba
    from vimamba.registry import check_model_name
    try:
        check_model_name(args.model, '--model', vimamba.list_models(include_test=True), 'vimamba model')
    except ValueError as e:
        parser.error(str(e))
    if not os.path.isfile(args.src):
        parser.error(f'src {args.src!r} is not a file')
    if not args.dst.endswith('.safetensors') or os.path.isdir(args.dst):
        parser.error(f'dst {args.dst!r}: give a file name ending in .safetensors (what timm loads it as)')
    if args.img_size and len(args.img_size) > 2:
        parser.error(f'--img-size takes H or H W, got {args.img_size}')
    kwargs = {} if args.num_classes is None else dict(num_classes=args.num_classes)
    if args.img_size:
        kwargs['img_size'] = tuple(args.img_size) if len(args.img_size) == 2 else args.img_size[0]
    try:
        tensors = convert(args.src, args.dst, args.model, use_ema=args.ema, **kwargs)
    except CheckpointError as e:
        parser.exit(1, f'{parser.prog}: error: {e}\n')
    print(f'wrote {args.dst}: {len(tensors)} tensors, {sum(t.numel() for t in tensors.values()):,} parameters '
          f'for {args.model}')


if __name__ == '__main__':
    main()
