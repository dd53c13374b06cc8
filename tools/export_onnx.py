"""Export a vimamba model to ONNX (torch.onnx.export, the dynamo exporter) and check it with onnxruntime.

    python tools/export_onnx.py MODEL OUT.onnx [--checkpoint FILE] [--img-size H] [--opset N]
        [--static-batch] [--no-check]

`import vimamba` lowers the custom ops to standard ONNX (vimamba/export.py; the scan becomes `Scan` nodes). Batch
dynamic unless `--static-batch`, image size fixed; the check prints onnxruntime's largest error relative to PyTorch's.
"""
import argparse
import sys
import time

import torch



def build_model(name: str, checkpoint=None, img_size=None) -> torch.nn.Module:
    import timm
    import vimamba  # noqa: F401  registers the models and the ONNX lowering

    kwargs = {} if img_size is None else {'img_size': img_size}
    if checkpoint:
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=checkpoint), **kwargs).eval()
    return timm.create_model(name, **kwargs).eval()


def check_onnx(model: torch.nn.Module, path: str, example: torch.Tensor) -> float:
    """Largest |onnxruntime - PyTorch| over the largest |PyTorch| output, on `example`."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    with torch.no_grad():
        ref = model(example)
    out = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: example.numpy()})[0])
    if out.shape != ref.shape:
        raise RuntimeError(f'{path}: onnxruntime gave shape {tuple(out.shape)}, PyTorch {tuple(ref.shape)}')
    return float((out - ref).abs().max() / ref.abs().max())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', help='a vimamba model name (vimamba.list_models())')
    p.add_argument('out', help='the .onnx file to write')
    p.add_argument('--checkpoint', default=None, help='weights: a file timm loads through the family checkpoint filter')
    p.add_argument('--img-size', type=int, default=None, help="square input size (default: the model's own)")
    p.add_argument('--opset', type=int, default=None, help="ONNX opset (default: torch.onnx's, 18 or later)")
    p.add_argument('--static-batch', action='store_true', help='fix the batch at 2 instead of leaving it dynamic')
    p.add_argument('--no-check', action='store_true', help='skip the onnxruntime check')
    args = p.parse_args(argv)

    from vimamba.export import export_onnx

    model = build_model(args.model, args.checkpoint, args.img_size)
    example = torch.randn((2,) + tuple(model.pretrained_cfg['input_size'][:1])
                          + ((args.img_size,) * 2 if args.img_size else tuple(model.pretrained_cfg['input_size'][1:])))
    start = time.perf_counter()
    program = export_onnx(model, example, args.out, dynamic_batch=not args.static_batch, opset_version=args.opset)
    opset = program.model.opset_imports.get('', None)
    print(f'{args.model}: wrote {args.out} (opset {opset}, input {tuple(example.shape[1:])}, batch '
          f'{"2" if args.static_batch else "dynamic"}) in {time.perf_counter() - start:.1f} s')
    if not args.no_check:
        error = check_onnx(model, args.out, example)
        print(f'onnxruntime vs PyTorch: max relative error {error:.2e}')
        if not error < 1e-4:
            sys.exit(f'{args.out}: onnxruntime differs from PyTorch by {error:.2e} (relative), above 1e-4')


if __name__ == '__main__':
    main()
