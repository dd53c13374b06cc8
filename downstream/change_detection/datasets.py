"""Bi-temporal datasets in the standard folder layouts (no mmengine).

BCD (LEVIR-CD, WHU-CD, SYSU-CD cropped): `root/A/`, `root/B/` date images, `root/label/` masks (> 0 = change),
optional split list of names. SCD (SECOND `im1/ im2/ label1/ label2/`, Landsat-SCD): one semantic map per date,
class 0 = no change, colour labels mapped through `palette` (unknown colours -> 255, ignored).
Samples: `img1`, `img2` (3, H, W) float32 in [0, 1], `label` (H, W) int64 change mask (SCD: also `label1`,
`label2`), `name`; training crops / flips are drawn once per sample and applied to every tensor.
"""
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..common import IMAGE_EXTENSIONS, load_image

from .functional import paired_flip_rotate, paired_random_crop

__all__ = ['BinaryChangeDataset', 'SemanticChangeDataset', 'SECOND_PALETTE', 'SECOND_CLASSES', 'load_label']

# SECOND (Yang et al., TPAMI 2021): class index -> label colour.
SECOND_CLASSES = ('unchanged', 'water', 'ground', 'low vegetation', 'tree', 'building', 'playground')
SECOND_PALETTE = ((255, 255, 255), (0, 0, 255), (128, 128, 128), (0, 128, 0), (0, 255, 0), (128, 0, 0),
                  (255, 0, 0))


def load_label(path: str, palette: Optional[Sequence[Sequence[int]]] = None) -> torch.Tensor:
    """A label image as (H, W) int64: indices as stored, or RGB colours mapped through `palette` (unknown -> 255)."""
    with Image.open(path) as img:
        if palette is None:
            array = np.asarray(img if img.mode in ('L', 'P', 'I', 'I;16') else img.convert('L')).astype(np.int64)
        else:
            rgb = np.asarray(img.convert('RGB')).astype(np.int64)
            code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
            array = np.full(code.shape, 255, dtype=np.int64)
            for index, (r, g, b) in enumerate(palette):
                array[code == ((r << 16) | (g << 8) | b)] = index
    return torch.from_numpy(np.ascontiguousarray(array))


def _names(root: str, folder: str, split_file: Optional[str], owner: str) -> List[str]:
    """File names of `root/folder`, in the order of `split_file` when given (names with or without extension)."""
    directory = osp.join(root, folder)
    if not osp.isdir(directory):
        raise FileNotFoundError(f'{owner}: {directory!r} (data_root={root!r}, folder {folder!r}) is not a directory')
    files = sorted(f for f in os.listdir(directory) if f.lower().endswith(IMAGE_EXTENSIONS))
    if split_file is None:
        if not files:
            raise FileNotFoundError(f'{owner}: {directory!r} holds no image ({", ".join(IMAGE_EXTENSIONS)})')
        return files
    path = split_file if osp.isabs(split_file) else osp.join(root, split_file)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{owner}: split_file={split_file!r} not found (looked at {path!r})')
    by_stem = {osp.splitext(f)[0]: f for f in files}
    names = []
    with open(path) as fh:
        for line in fh:
            entry = line.strip()
            if not entry:
                continue
            name = entry if entry in files else by_stem.get(entry, by_stem.get(osp.splitext(entry)[0]))
            if name is None:
                raise FileNotFoundError(f'{owner}: {entry!r} of split_file={split_file!r} is not in {directory!r}')
            names.append(name)
    return names


def _find(root: str, folder: str, name: str, owner: str) -> str:
    """`root/folder/name`, or the file with the same stem and another image extension."""
    path = osp.join(root, folder, name)
    if osp.isfile(path):
        return path
    stem = osp.splitext(name)[0]
    for ext in IMAGE_EXTENSIONS:
        if osp.isfile(osp.join(root, folder, stem + ext)):
            return osp.join(root, folder, stem + ext)
    raise FileNotFoundError(f'{owner}: no {folder!r} file for {name!r} under {root!r}')


class _BiTemporalDataset(Dataset):
    label_keys: Sequence[str] = ('label',)

    def __init__(self, data_root: str, img_dirs: Sequence[str], split_file: Optional[str], crop_size: Optional[int],
                 hflip: bool, vflip: bool, rot90: bool, test_mode: bool, repeat: int, seed: Optional[int]):
        owner = type(self).__name__
        if len(img_dirs) != 2:
            raise ValueError(f'{owner}: img_dirs={tuple(img_dirs)} needs two folders (date 1, date 2)')
        if crop_size is not None and (not isinstance(crop_size, int) or crop_size < 1):
            raise ValueError(f'{owner}: crop_size must be None or an int >= 1, got {crop_size!r}')
        self.data_root = data_root
        self.img_dirs = tuple(img_dirs)
        self.names = _names(data_root, img_dirs[0], split_file, owner)
        self.test_mode = test_mode
        self.crop_size = None if test_mode else crop_size
        self.flips = (False, False, False) if test_mode else (hflip, vflip, rot90)
        self.repeat = max(1, int(repeat))
        self.rng = torch.Generator().manual_seed(seed) if seed is not None else None

    def __len__(self) -> int:
        return len(self.names) * self.repeat

    def _labels(self, name: str) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Dict[str, Any]:
        name = self.names[index % len(self.names)]
        owner = type(self).__name__
        img1 = load_image(_find(self.data_root, self.img_dirs[0], name, owner))
        img2 = load_image(_find(self.data_root, self.img_dirs[1], name, owner))
        labels = self._labels(name)
        keys = list(labels)
        tensors = [img1, img2] + [labels[k] for k in keys]
        if self.crop_size is not None:
            tensors = paired_random_crop(tensors, self.crop_size, self.rng)
        if any(self.flips):
            tensors = paired_flip_rotate(tensors, *self.flips, rng=self.rng)
        sample = dict(img1=tensors[0], img2=tensors[1], name=osp.splitext(name)[0])
        sample.update(zip(keys, tensors[2:]))
        return sample


class BinaryChangeDataset(_BiTemporalDataset):
    """Binary change pairs (LEVIR-CD, WHU-CD, SYSU-CD layout; SYSU-CD / ChangeMamba copies: pass their folder names).

    Args:
        data_root: Dataset split folder (e.g. data/LEVIR-CD/train).
        img_dirs / label_dir: Folders of the two dates / of the change masks.
        split_file: Optional list file (relative to data_root or absolute); default: every image of img_dirs[0].
        crop_size: Random crop side for training (None: whole images).
        hflip / vflip / rot90: Random training flips and 90-degree rotations.
        test_mode: No crop, no augmentation.
        repeat: Times the list is repeated per epoch.
        seed: Seed of the dataset's augmentation generator (None: torch's global one).
    """

    def __init__(self, data_root: str, img_dirs: Sequence[str] = ('A', 'B'), label_dir: str = 'label',
                 split_file: Optional[str] = None, crop_size: Optional[int] = None, hflip: bool = True,
                 vflip: bool = True, rot90: bool = True, test_mode: bool = False, repeat: int = 1,
                 seed: Optional[int] = None, metainfo: Optional[Dict[str, Any]] = None):
        super().__init__(data_root, img_dirs, split_file, crop_size, hflip, vflip, rot90, test_mode, repeat, seed)
        self.label_dir = label_dir
        self.metainfo = dict(classes=('unchanged', 'changed'), **(metainfo or {}))

    def _labels(self, name: str) -> Dict[str, torch.Tensor]:
        label = load_label(_find(self.data_root, self.label_dir, name, type(self).__name__))
        return dict(label=(label > 0).long())


class SemanticChangeDataset(_BiTemporalDataset):
    """Semantic change pairs (SECOND, Landsat-SCD); other args as `BinaryChangeDataset`.

    Args:
        img_dirs / label_dirs: Folders of the two dates / of their semantic maps.
        change_dir: Optional folder of change masks; default: change = (label1 != 0).
        palette: RGB colour per class (index 0 = no change) for colour-coded labels; None: index maps.
        classes: Class names, index 0 = no change (sets `metainfo['classes']`).
    """

    def __init__(self, data_root: str, img_dirs: Sequence[str] = ('im1', 'im2'),
                 label_dirs: Sequence[str] = ('label1', 'label2'), change_dir: Optional[str] = None,
                 palette: Optional[Sequence[Sequence[int]]] = SECOND_PALETTE,
                 classes: Sequence[str] = SECOND_CLASSES, split_file: Optional[str] = None,
                 crop_size: Optional[int] = None, hflip: bool = True, vflip: bool = True, rot90: bool = True,
                 test_mode: bool = False, repeat: int = 1, seed: Optional[int] = None,
                 metainfo: Optional[Dict[str, Any]] = None):
        super().__init__(data_root, img_dirs, split_file, crop_size, hflip, vflip, rot90, test_mode, repeat, seed)
        if len(label_dirs) != 2:
            raise ValueError(f'{type(self).__name__}: label_dirs={tuple(label_dirs)} needs two folders')
        if palette is not None and len(palette) != len(classes):
            raise ValueError(f'{type(self).__name__}: palette has {len(palette)} colours for {len(classes)} classes')
        self.label_dirs = tuple(label_dirs)
        self.change_dir = change_dir
        self.palette = [tuple(c) for c in palette] if palette is not None else None
        self.metainfo = dict(classes=tuple(classes), palette=self.palette, **(metainfo or {}))

    def _labels(self, name: str) -> Dict[str, torch.Tensor]:
        owner = type(self).__name__
        label1 = load_label(_find(self.data_root, self.label_dirs[0], name, owner), self.palette)
        label2 = load_label(_find(self.data_root, self.label_dirs[1], name, owner), self.palette)
        if self.change_dir is not None:
            change = (load_label(_find(self.data_root, self.change_dir, name, owner)) > 0).long()
        else:
            change = ((label1 != 0) & (label1 != 255)).long().masked_fill(label1 == 255, 255)
        return dict(label=change, label1=label1, label2=label2)
