"""Datasets and loaders: timm's `create_dataset` / `create_loader` / `create_transform`, with input checks."""
import os
from typing import Any, Dict, Iterator, Optional

import torch
import torch.utils.data

from timm.data import create_dataset, create_loader, create_transform
from timm.data.readers.reader_image_folder import find_images_and_targets

from .config import ConfigError

try:  # the extensions timm's folder reader accepts
    from timm.data.readers.img_extensions import get_img_extensions
    _IMG_EXTENSIONS = tuple(sorted(get_img_extensions()))
except ImportError:  # pragma: no cover
    _IMG_EXTENSIONS = ('.jpeg', '.jpg', '.png')

_TRAIN_NAMES = ('train', 'training')
_EVAL_NAMES = ('validation', 'val', 'valid', 'eval', 'evaluation')


def is_folder_dataset(name: str) -> bool:
    return name in ('', 'folder', 'imagefolder', 'image_folder')


def split_folder(root: str, split: str, arg: str) -> str:
    """The folder of `split` under `root` (timm's split synonyms), or a clear error."""
    name = split.split('[')[0]
    candidates = [name]
    if name in _TRAIN_NAMES:
        candidates += [n for n in _TRAIN_NAMES if n != name]
    elif name in _EVAL_NAMES:
        candidates += [n for n in _EVAL_NAMES if n != name]
    for c in candidates:
        path = os.path.join(root, c)
        if os.path.isdir(path):
            return path
    raise ConfigError(
        f'--data-dir {root!r} has no {name!r} split folder (looked for {candidates}); expected the ImageNet '
        f'layout DIR/<split>/<class>/<image>, or name the split with {arg}')


def check_data_dir(root: Optional[str], dataset: str) -> None:
    if not root:
        raise ConfigError('--data-dir is required (the dataset root)')
    if is_folder_dataset(dataset) and not os.path.isdir(root):
        raise ConfigError(f'--data-dir {root!r}: no such directory')


def build_dataset(args, split: str, arg: str, training: bool) -> torch.utils.data.Dataset:
    """A timm dataset for `split`; image folders are checked for classes and images first."""
    root = args.data_dir
    if is_folder_dataset(args.dataset):
        folder = split_folder(root, split, arg)
        try:
            samples, class_to_idx = find_images_and_targets(folder, types=_IMG_EXTENSIONS)
        except OSError as e:
            raise ConfigError(f'--data-dir {root!r}: cannot read {folder!r}: {e}') from e
        if not samples:
            raise ConfigError(
                f'--data-dir {root!r}: no images under {folder!r} (expected <class>/<image> with extensions '
                f'{", ".join(_IMG_EXTENSIONS)})')
        return create_dataset('', root=folder, split=split, is_training=training, class_map=args.class_map,
                              search_split=False)
    try:
        return create_dataset(args.dataset, root=root, split=split, is_training=training,
                              class_map=args.class_map, download=args.dataset_download,
                              batch_size=args.batch_size, seed=args.seed if hasattr(args, 'seed') else 42)
    except (FileNotFoundError, RuntimeError, AssertionError) as e:
        raise ConfigError(f'--dataset {args.dataset!r} --data-dir {root!r} split {split!r}: {e}') from e


def dataset_num_classes(dataset) -> Optional[int]:
    reader = getattr(dataset, 'reader', None)
    class_to_idx = getattr(reader, 'class_to_idx', None)
    if class_to_idx:
        return len(class_to_idx)
    classes = getattr(dataset, 'classes', None)
    return len(classes) if classes else None


def build_train_loader(args, dataset, data_config: Dict[str, Any], mixup_active: bool, distributed: bool,
                       device: torch.device):
    """timm's create_loader with the recipe's augmentations. Normalisation and random erasing happen
    in the loader workers (no CUDA prefetcher), so the same code path runs on CPU and GPU."""
    aug_repeats = args.aug_repeats if distributed else 0
    loader = create_loader(
        dataset,
        input_size=data_config['input_size'],
        batch_size=args.batch_size,
        is_training=True,
        no_aug=args.no_aug,
        re_prob=args.reprob,
        re_mode=args.remode,
        re_count=args.recount,
        scale=tuple(args.scale),
        ratio=tuple(args.ratio),
        hflip=args.hflip,
        color_jitter=args.color_jitter,
        auto_augment=args.aa,
        num_aug_repeats=aug_repeats,
        interpolation=args.train_interpolation,
        mean=data_config['mean'],
        std=data_config['std'],
        num_workers=args.workers,
        distributed=distributed,
        pin_memory=args.pin_mem,
        device=device,
        use_prefetcher=False,
        persistent_workers=args.workers > 0,
    )
    if len(loader) == 0:
        raise ConfigError(
            f'--batch-size {args.batch_size}: the {args.train_split!r} split ({len(dataset)} images) gives no full '
            f'batch per process' + (' with repeated augmentation (--aug-repeats keeps a multiple of 256 images)'
                                    if aug_repeats else ''))
    return loader


class ShardSampler(torch.utils.data.Sampler):
    """Every `world_size`-th index from `rank`: each image evaluated exactly once over all processes
    (no padding, unlike DistributedSampler), so summed counts give the exact accuracy."""

    def __init__(self, num_samples: int, rank: int, world_size: int):
        self.indices = list(range(rank, num_samples, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_eval_loader(dataset, data_config: Dict[str, Any], batch_size: int, workers: int, rank: int = 0,
                      world_size: int = 1, pin_memory: bool = False):
    """Eval transform of the resolved data config (input size, crop_pct, crop_mode, interpolation,
    mean/std), sharded without padding."""
    dataset.transform = create_transform(
        data_config['input_size'], is_training=False, interpolation=data_config['interpolation'],
        mean=data_config['mean'], std=data_config['std'], crop_pct=data_config['crop_pct'],
        crop_mode=data_config.get('crop_mode', 'center'))
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset), rank, world_size),
        num_workers=workers, pin_memory=pin_memory, drop_last=False)
