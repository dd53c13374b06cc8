"""The restorer: an mmengine `BaseModel` around any timm image-to-image network (MaIR, MaIRUNet)."""
import random
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.logging import MessageHub, print_log
from mmengine.model import BaseModel
from mmengine.registry import MODELS

from vimamba.checkpoint import checkpoint_filter_for, load_checkpoint

from .functional import charbonnier_loss

__all__ = ['Restorer', 'L1Loss', 'CharbonnierLoss', 'unbatch_samples']


class L1Loss(nn.Module):
    """Mean absolute error, times `loss_weight`."""

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * torch.mean(torch.abs(pred - target))


class CharbonnierLoss(nn.Module):
    """mean(sqrt((pred - target)^2 + eps)), times `loss_weight` (BasicSR's eps 1e-12)."""

    def __init__(self, loss_weight: float = 1.0, eps: float = 1e-12):
        super().__init__()
        self.loss_weight = loss_weight
        self.eps = eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * charbonnier_loss(pred, target, self.eps)


def build_generator(cfg: Dict[str, Any]) -> nn.Module:
    """`dict(model_name='mair_sr_x2', **kwargs)` -> `timm.create_model(model_name, **kwargs)`."""
    import timm
    import vimamba.models  # noqa: F401  registers the networks with timm

    cfg = dict(cfg)
    name = cfg.pop('model_name', None)
    if name is None:
        raise ValueError(f'Restorer: generator needs model_name= (a timm model name such as "mair_sr_x2"), '
                         f'got {cfg}')
    return timm.create_model(name, **cfg)


def unbatch_samples(data_samples: Any, batch: int) -> List[Dict[str, Any]]:
    """One dict per image from a collated batch (a dict of lists or of stacked tensors, or a list of dicts)."""
    if data_samples is None:
        return [{} for _ in range(batch)]
    if isinstance(data_samples, Mapping):
        columns = {k: (list(v.unbind(0)) if isinstance(v, torch.Tensor) else list(v)) for k, v in data_samples.items()}
        return [{k: v[i] for k, v in columns.items()} for i in range(batch)]
    return [dict(s) for s in data_samples]


@MODELS.register_module()
class Restorer(BaseModel):
    """Image restoration model: generator + pixel loss.

    Args:
        generator: `dict(model_name=..., **timm_kwargs)`.
        pixel_loss: `dict(type='L1Loss' | 'CharbonnierLoss', loss_weight=1.0)`.
        scale: The task's scale; must equal the generator's `upscale`.
        init_checkpoint: Official (BasicSR) or our checkpoint loaded into the generator when built.
        init_strict: False skips entries whose shape differs (fine-tuning x3 / x4 from x2).
        train_cfg: Restormer options: `progressive=dict(iters, patch_sizes, batch_sizes)` (phase i: iters[i]
            iterations on a random batch_sizes[i] subset cropped to patch_sizes[i]); `mixup_beta=B` (p = 1/2).
        test_cfg: `tile_size` (official tiled inference; None: whole images), `self_ensemble` (x8).
    """

    def __init__(
            self,
            generator: Dict[str, Any],
            pixel_loss: Optional[Dict[str, Any]] = None,
            scale: Optional[int] = None,
            init_checkpoint: Optional[str] = None,
            init_strict: bool = True,
            train_cfg: Optional[Dict[str, Any]] = None,
            test_cfg: Optional[Dict[str, Any]] = None,
            data_preprocessor: Optional[Dict[str, Any]] = None,
            init_cfg: Optional[Dict[str, Any]] = None,
    ):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.generator = build_generator(generator)
        model_scale = getattr(self.generator, 'upscale', 1)
        if scale is not None and scale != model_scale:
            raise ValueError(f'Restorer: scale={scale} but the generator {generator.get("model_name")!r} upscales '
                             f'by {model_scale}; pick the x{scale} variant or set scale={model_scale}')
        self.scale = model_scale
        self.pixel_loss = MODELS.build(pixel_loss or dict(type='L1Loss'))
        self.init_checkpoint = init_checkpoint
        self.init_strict = init_strict
        self.train_cfg = dict(train_cfg or {})
        self.test_cfg = dict(test_cfg or {})
        progressive = self.train_cfg.get('progressive')
        if progressive is not None:
            lengths = {k: len(progressive.get(k, ())) for k in ('iters', 'patch_sizes', 'batch_sizes')}
            if len(set(lengths.values())) != 1 or not lengths['iters']:
                raise ValueError(f'Restorer: train_cfg.progressive needs iters, patch_sizes and batch_sizes of one '
                                 f'length >= 1, got lengths {lengths}')
        if init_checkpoint:
            self.load_generator(init_checkpoint, strict=init_strict)
        # `load_from` may name an official BasicSR file: convert it on load.
        self._register_load_state_dict_pre_hook(self._convert_official_checkpoint)

    def init_weights(self) -> None:
        """No-op: mmengine's default would re-initialise the generator and wipe `init_checkpoint`."""

    def _convert_official_checkpoint(self, state_dict, prefix, *args) -> None:
        official = None
        for key in ('params_ema', 'params'):
            if isinstance(state_dict.get(prefix + key), dict):
                official = state_dict.pop(prefix + key)
                break
        if official is None:
            return
        converted = checkpoint_filter_for(self.generator)(official, self.generator, strict=True)
        state_dict.update({f'{prefix}generator.{k}': v for k, v in converted.items()})

    def load_generator(self, path: str, strict: bool = True) -> None:
        """Load an official or converted checkpoint into the generator (through its family's filter)."""
        result = load_checkpoint(self.generator, path, strict=strict, arg='init_checkpoint')
        if not strict:
            print_log(f'Restorer: loaded {path} non-strictly; kept initial values for {sorted(result.missing_keys)}',
                      logger='current')

    def _phase(self) -> Optional[Dict[str, int]]:
        progressive = self.train_cfg.get('progressive')
        if progressive is None:
            return None
        current = MessageHub.get_current_instance().get_info('iter', 0)
        end = 0
        for iters, patch, batch in zip(progressive['iters'], progressive['patch_sizes'],
                                       progressive['batch_sizes']):
            end += iters
            if current < end:
                break
        return dict(patch_size=patch, batch_size=batch)

    def _training_batch(self, lq: torch.Tensor, gt: torch.Tensor):
        phase = self._phase()
        if phase is not None:
            if phase['batch_size'] < lq.shape[0]:
                keep = torch.randperm(lq.shape[0], device=lq.device)[:phase['batch_size']]
                lq, gt = lq[keep], gt[keep]
            size = phase['patch_size']
            lq_size = size // self.scale
            if lq_size < lq.shape[-2] or lq_size < lq.shape[-1]:
                top = random.randint(0, lq.shape[-2] - lq_size)
                left = random.randint(0, lq.shape[-1] - lq_size)
                lq = lq[..., top:top + lq_size, left:left + lq_size]
                gt = gt[..., top * self.scale:top * self.scale + size, left * self.scale:left * self.scale + size]
        beta = self.train_cfg.get('mixup_beta')
        if beta and lq.shape[0] > 1 and random.random() < 0.5:
            lam = float(torch.distributions.Beta(beta, beta).sample())
            perm = torch.randperm(lq.shape[0], device=lq.device)
            lq = lam * lq + (1 - lam) * lq[perm]
            gt = lam * gt + (1 - lam) * gt[perm]
        return lq, gt

    def _restore(self, lq: torch.Tensor) -> torch.Tensor:
        tile = self.test_cfg.get('tile_size')
        if self.test_cfg.get('self_ensemble', False):
            return self.generator.forward_self_ensemble(lq, tile_size=tile)
        if tile:
            return self.generator.forward_tiled(lq, tile_size=tile)
        return self.generator(lq)

    def forward(self, inputs: Union[torch.Tensor, Sequence[torch.Tensor]],
                data_samples: Optional[List[Dict[str, Any]]] = None, mode: str = 'tensor'):
        if mode == 'loss':
            lq = inputs if isinstance(inputs, torch.Tensor) else torch.stack(list(inputs))
            gt = torch.stack([s['gt'] for s in unbatch_samples(data_samples, lq.shape[0])]).to(lq)
            lq, gt = self._training_batch(lq, gt)
            return dict(loss_pix=self.pixel_loss(self.generator(lq), gt))
        if mode == 'predict':
            images = [inputs] if isinstance(inputs, torch.Tensor) and inputs.dim() == 3 else list(inputs)
            results = unbatch_samples(data_samples, len(images))
            for lq, sample in zip(images, results):
                with torch.no_grad():
                    sample['pred'] = self._restore(lq[None].float())[0].clamp(0, 1)
            return results
        if mode == 'tensor':
            lq = inputs if isinstance(inputs, torch.Tensor) else torch.stack(list(inputs))
            return self.generator(lq)
        raise ValueError(f'Restorer: mode={mode!r} is not supported; accepted: loss, predict, tensor')
