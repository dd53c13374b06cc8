"""One deploy path end to end: export a classifier to ONNX, classify a photo with onnxruntime in a process without
torch or vimamba (tools/onnx_classify.py), and compare its top-5 with PyTorch's.

    python tools/deploy_demo.py [--model vim_tiny_patch16_224] [--checkpoint FILE] [--image chelsea] [--out DIR]

`--image`: a scikit-image sample (chelsea, astronaut, coffee, ...) or a file. Without `--checkpoint` the weights are
random (the top-5 means nothing, the comparison still holds). Exits non-zero if the top-5 or the logits (> 1e-4 rel.)
differ.
"""
import argparse
import json
import os
import subprocess
import sys

import torch

TOOLS = os.path.dirname(os.path.abspath(__file__))


def load_photo(image: str, out_dir: str) -> str:
    """A path to the photo: `image` itself if it is a file, else scikit-image's sample of that name saved as PNG."""
    if os.path.isfile(image):
        return image
    import skimage.data
    from PIL import Image

    loader = getattr(skimage.data, image, None)
    if loader is None or not callable(loader):
        raise ValueError(f"image: {image!r} is neither a file nor a scikit-image sample (e.g. 'chelsea', 'astronaut')")
    pixels = loader()
    if pixels.ndim != 3:
        raise ValueError(f"image: scikit-image's {image!r} is not an RGB photo (shape {pixels.shape})")
    path = os.path.join(out_dir, f'{image}.png')
    Image.fromarray(pixels[..., :3]).save(path)
    return path


def torch_logits(model: torch.nn.Module, path: str) -> torch.Tensor:
    """The model's logits for the photo through timm's eval transform."""
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    transform = create_transform(**resolve_data_config({}, model=model))
    with torch.no_grad():
        return model(transform(Image.open(path).convert('RGB'))[None])[0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default='vim_tiny_patch16_224')
    p.add_argument('--checkpoint', default=None, help='weights file (random weights without it)')
    p.add_argument('--image', default='chelsea', help='a scikit-image sample name or an image file')
    p.add_argument('--out', default='out/deploy', help='folder for the photo and the .onnx file')
    p.add_argument('--top', type=int, default=5)
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    from export_onnx import build_model
    from vimamba.export import export_onnx

    torch.manual_seed(0)
    model = build_model(args.model, args.checkpoint)
    cfg = model.pretrained_cfg
    if cfg.get('num_classes') is None:
        raise ValueError(f'model: {args.model} is not a classifier')
    onnx_path = os.path.join(args.out, f'{args.model}.onnx')
    export_onnx(model, torch.randn((2,) + tuple(cfg['input_size'])), onnx_path)
    photo = load_photo(args.image, args.out)

    ref = torch_logits(model, photo)
    command = [sys.executable, os.path.join(TOOLS, 'onnx_classify.py'), onnx_path, photo,
               '--input-size', str(cfg['input_size'][-1]), '--crop-pct', str(cfg['crop_pct']),
               '--mean', *map(str, cfg['mean']), '--std', *map(str, cfg['std']), '--top', str(args.top), '--json']
    result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    ort_logits = torch.tensor(result['logits'])
    torch_top = ref.topk(args.top).indices.tolist()

    from timm.data import ImageNetInfo
    info = ImageNetInfo()
    weights = args.checkpoint or 'random weights'
    print(f'{args.model} ({weights}) on {photo}: top-{args.top}')
    print(f'{"rank":>4}  {"PyTorch":>7}  {"ONNX Runtime":>12}  class (PyTorch)')
    for rank, (a, b) in enumerate(zip(torch_top, result['top']), 1):
        print(f'{rank:>4}  {a:>7}  {b:>12}  {info.index_to_description(a)}')
    error = float((ort_logits - ref).abs().max() / ref.abs().max())
    print(f'max relative logit error {error:.2e}; same top-{args.top}: {torch_top == result["top"]}')
    if torch_top != result['top'] or not error < 1e-4:
        sys.exit(1)


if __name__ == '__main__':
    main()
