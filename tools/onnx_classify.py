"""Classify an image with an exported ONNX classifier, using only numpy, Pillow and onnxruntime (no torch, no vimamba).

    python tools/onnx_classify.py MODEL.onnx IMAGE --input-size 224 [--crop-pct 0.875] [--mean ...] [--std ...]
        [--top 5] [--threads 2] [--json]

Preprocessing is timm's eval transform (bicubic short-side resize to size / crop_pct, center crop, mean / std).
Prints the top classes (index and logit), or JSON with `--json` (read by tools/deploy_demo.py).
"""
import argparse
import json
import math

import numpy as np
import onnxruntime
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess(image: Image.Image, size: int, crop_pct: float = 0.875, mean=IMAGENET_MEAN, std=IMAGENET_STD
               ) -> np.ndarray:
    """(1, 3, size, size) float32 from a PIL image."""
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct: expected a value in (0, 1], got {crop_pct}")
    image = image.convert('RGB')
    scale = math.floor(size / crop_pct)
    w, h = image.size
    if w <= h:
        new_w, new_h = scale, int(scale * h / w)
    else:
        new_w, new_h = int(scale * w / h), scale
    image = image.resize((new_w, new_h), Image.BICUBIC)
    left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))
    image = image.crop((left, top, left + size, top + size))
    x = np.asarray(image, dtype=np.float32) / 255.0
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def classify(model_path: str, x: np.ndarray, top: int = 5, threads: int = 0):
    """(top class indices, their logits, all logits) of the ONNX model at `model_path` for input x."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(model_path, options, providers=['CPUExecutionProvider'])
    logits = session.run(None, {session.get_inputs()[0].name: x})[0][0]
    order = np.argsort(-logits)[:top]
    return order, logits[order], logits


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', help='the .onnx file')
    p.add_argument('image', help='an image file Pillow reads')
    p.add_argument('--input-size', type=int, required=True, help='the square input size the model was exported at')
    p.add_argument('--crop-pct', type=float, default=0.875)
    p.add_argument('--mean', type=float, nargs=3, default=IMAGENET_MEAN)
    p.add_argument('--std', type=float, nargs=3, default=IMAGENET_STD)
    p.add_argument('--top', type=int, default=5)
    p.add_argument('--threads', type=int, default=0, help='onnxruntime intra-op threads (0: its default)')
    p.add_argument('--json', action='store_true', help='print {"top": [...], "logits": [...]} as JSON')
    args = p.parse_args(argv)
    x = preprocess(Image.open(args.image), args.input_size, args.crop_pct, args.mean, args.std)
    order, values, logits = classify(args.model, x, args.top, args.threads)
    if args.json:
        print(json.dumps({'top': order.tolist(), 'logits': logits.tolist()}))
    else:
        for i, v in zip(order, values):
            print(f'{int(i):5d}  {float(v):.4f}')


if __name__ == '__main__':
    main()
