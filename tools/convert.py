"""Convert an official checkpoint into a safetensors file that timm loads for a vimamba model.

    python tools/convert.py SRC DST --model NAME [--ema] [--img-size H [W]]

SRC is the official file (a training checkpoint {'model', 'model_ema', 'args', ...} or a bare state dict, in the
official key names); DST the safetensors file to write. The model family's own `checkpoint_filter_fn` does the
renaming and position-embedding resize, and every key and shape is checked against the model before anything is
written, so a mismatch stops with the missing and unexpected keys listed. Then:

    timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay=dict(file=DST))

The model is built on the meta device, so converting a 340M-parameter checkpoint needs no second copy in memory.
"""
import argparse
import os
import sys
from typing import Any, Dict, Optional, Sequence

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))


class CheckpointMismatchError(ValueError):
    """The converted state dict does not fit the model: `missing`, `unexpected` and `mismatched` keys."""

    def __init__(self, model_name: str, missing, unexpected, mismatched):
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)
        lines = [f"checkpoint does not fit {model_name}:"]
        if self.missing:
            lines.append(f"  missing keys ({len(self.missing)}): {', '.join(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected keys ({len(self.unexpected)}): {', '.join(self.unexpected)}")
        if self.mismatched:
            lines.append(f"  shape mismatches ({len(self.mismatched)}): {', '.join(self.mismatched)}")
        super().__init__('\n'.join(lines))


def load_checkpoint(path: str) -> Dict[str, Any]:
    """torch.load with weights_only, allowing the argparse.Namespace the official main.py scripts pickle."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location='cpu', weights_only=True)


def _filter_fn(model_name: str):
    from timm.models import model_entrypoint
    module = sys.modules[model_entrypoint(model_name).__module__]
    if not hasattr(module, 'checkpoint_filter_fn'):
        raise ValueError(f"--model: {model_name} (module {module.__name__}) has no checkpoint_filter_fn to convert with")
    return module.checkpoint_filter_fn


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
        if not isinstance(checkpoint.get('model_ema'), dict):
            raise ValueError(f"--ema: the checkpoint has no 'model_ema' entry (keys: {sorted(checkpoint)[:10]})")
        checkpoint = checkpoint['model_ema']
    with torch.device('meta'):
        model = timm.create_model(model_name, pretrained=False, device='meta', **model_kwargs)
    state_dict = _filter_fn(model_name)(checkpoint, model)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [f'{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}' for k, v in expected.items()
                  if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(model_name, missing, unexpected, mismatched)
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
    parser.add_argument('--ema', action='store_true', help="convert the 'model_ema' weights instead of 'model'")
    parser.add_argument('--img-size', type=int, nargs='+', default=None,
                        help='build the model for this input size (H [W]); pos_embed is resized to it')
    args = parser.parse_args(argv)
    import vimamba
    from vimamba.registry import check_model_name
    try:
        check_model_name(args.model, '--model', vimamba.list_models(include_test=True), 'vimamba model')
        _filter_fn(args.model)
    except ValueError as e:
        parser.error(str(e))
    if not os.path.isfile(args.src):
        parser.error(f'src {args.src!r} is not a file')
    if not args.dst.endswith('.safetensors') or os.path.isdir(args.dst):
        parser.error(f'dst {args.dst!r}: give a file name ending in .safetensors (what timm loads it as)')
    if args.img_size and len(args.img_size) > 2:
        parser.error(f'--img-size takes H or H W, got {args.img_size}')
    kwargs = {}
    if args.img_size:
        kwargs['img_size'] = tuple(args.img_size) if len(args.img_size) == 2 else args.img_size[0]
    try:
        tensors = convert(args.src, args.dst, args.model, use_ema=args.ema, **kwargs)
    except (ValueError, KeyError) as e:  # a mismatch (the filter's or ours) or a missing EMA entry
        parser.exit(1, f'{parser.prog}: error: {e.args[0] if isinstance(e, KeyError) and e.args else e}\n')
    print(f'wrote {args.dst}: {len(tensors)} tensors, {sum(t.numel() for t in tensors.values()):,} parameters '
          f'for {args.model}')


if __name__ == '__main__':
    main()
