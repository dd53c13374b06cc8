"""Image I/O and the device check shared by restoration and change detection (no mmengine)."""
import os.path as osp
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image

__all__ = ['IMAGE_EXTENSIONS', 'load_image', 'check_image_files', 'save_image', 'save_label_map', 'check_device']

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm')


def load_image(path: str) -> torch.Tensor:
    """An image file as a (3, H, W) float32 RGB tensor in [0, 1] (grayscale and palette files converted)."""
    with Image.open(path) as img:
        if img.mode in ('I;16', 'I;16B', 'I'):
            array = np.asarray(img, dtype=np.float32) / 65535.
            array = np.repeat(array[..., None], 3, axis=-1)
        else:
            array = np.asarray(img.convert('RGB'), dtype=np.float32) / 255.
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def check_image_files(paths: Sequence[str], arg: str) -> List[tuple]:
    """The (width, height) of each file from its header; ValueError naming `arg` for a missing or unreadable one."""
    sizes = []
    for path in paths:
        if not osp.isfile(path):
            raise ValueError(f'{arg}: {path!r} is not a file')
        try:
            with Image.open(path) as img:
                img.verify()
                sizes.append(img.size)
        except Exception as e:  # noqa: BLE001  PIL raises several types for a broken file
            raise ValueError(f'{arg}: {path!r} is not an image PIL can read ({type(e).__name__}: {e})') from None
    return sizes


def save_image(img: torch.Tensor, path: str) -> None:
    """A (3, H, W) image in [0, 1] (clamped) written as 8-bit RGB, rounded to the nearest level."""
    array = (img.clamp(0, 1) * 255.).round().byte().permute(1, 2, 0).cpu().numpy()
    Image.fromarray(np.ascontiguousarray(array)).save(path)


def save_label_map(index: Union[torch.Tensor, np.ndarray], path: str,
                   palette: Optional[Sequence[Sequence[int]]] = None) -> None:
    """An (H, W) map of values 0..255 written as 8-bit grey, or with `palette` (class -> RGB) as a palette image."""
    array = (index.cpu().numpy() if isinstance(index, torch.Tensor) else np.asarray(index)).astype(np.uint8)
    if palette is None:
        Image.fromarray(array).save(path)
        return
    img = Image.fromarray(array, mode='P')
    flat = [c for rgb in palette for c in rgb]
    img.putpalette(flat + [0] * (768 - len(flat)))
    img.save(path)


def check_device(value: str, arg: str = '--device') -> torch.device:
    """`value` as a torch.device that exists here; ValueError naming `arg` otherwise."""
    try:
        device = torch.device(value)
    except RuntimeError as e:
        raise ValueError(f'{arg} {value!r}: {e}') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'{arg} {value!r}: no CUDA device here; use {arg} cpu')
    return device
