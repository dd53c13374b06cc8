"""Change-detection maths (no mmengine): confusion matrices and metrics, ChangeMamba's losses, paired augmentations.

Confusion matrices are `hist[target, pred]`, one per run: every metric is a ratio of sums over the whole test set.
"""
import math
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = [
    'confusion_matrix', 'binary_change_metrics', 'semantic_change_metrics', 'semantic_change_hist',
    'cohen_kappa', 'lovasz_softmax', 'bcd_loss', 'scd_loss', 'paired_random_crop', 'paired_flip_rotate',
]


# --- Confusion matrix and metrics

def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: Optional[int] = 255) -> torch.Tensor:
    """(num_classes, num_classes) int64 counts `hist[target, pred]`; ignored / out-of-range targets are skipped."""
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    keep = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        keep &= target != ignore_index
    if ((pred[keep] < 0) | (pred[keep] >= num_classes)).any():
        raise ValueError(f'confusion_matrix: predictions outside [0, {num_classes}) for num_classes={num_classes}')
    index = target[keep] * num_classes + pred[keep]
    return torch.bincount(index, minlength=num_classes ** 2).reshape(num_classes, num_classes).cpu()


def _div(a: float, b: float) -> float:
    return a / b if b else 0.


def cohen_kappa(hist: torch.Tensor) -> float:
    """(po - pe) / (1 - pe), po = trace / total, pe = sum_c row_c * col_c / total^2 (0 for an empty matrix)."""
    hist = hist.double()
    total = hist.sum()
    if total == 0:
        return 0.
    po = hist.diag().sum() / total
    pe = (hist.sum(1) * hist.sum(0)).sum() / total ** 2
    return 0. if pe == 1 else float((po - pe) / (1 - pe))


def binary_change_metrics(hist: torch.Tensor) -> Dict[str, float]:
    """Precision, Recall, F1, IoU of the change class (index 1), OA and Kappa from a 2x2 matrix."""
    if hist.shape != (2, 2):
        raise ValueError(f'binary_change_metrics: hist must be 2x2 (rows = target), got {tuple(hist.shape)}')
    hist = hist.double()
    tn, fp, fn, tp = (float(v) for v in hist.reshape(-1))
    precision = _div(tp, tp + fp)
    recall = _div(tp, tp + fn)
    return dict(
        precision=precision,
        recall=recall,
        f1=_div(2 * precision * recall, precision + recall),
        iou=_div(tp, tp + fp + fn),
        oa=_div(tp + tn, tp + tn + fp + fn),
        kappa=cohen_kappa(hist),
    )


def semantic_change_hist(
        change_pred: torch.Tensor, sem_pred1: torch.Tensor, sem_pred2: torch.Tensor,
        change_target: torch.Tensor, sem_target1: torch.Tensor, sem_target2: torch.Tensor,
        num_classes: int, mode: str = 'per_date', ignore_index: Optional[int] = 255) -> torch.Tensor:
    """The SCD confusion matrix (class 0 = no change); semantic maps are zeroed where their change map says unchanged.

    mode 'per_date' (SECOND protocol): one `num_classes` matrix over both dates; 'from_to' (ChangeMamba's
    evaluation): 1 + (num_classes - 1)^2 classes, `(c1 - 1) * (num_classes - 1) + c2` for changed pixels.
    """
    changed_p = change_pred > 0
    changed_t = change_target > 0
    valid = torch.ones_like(changed_t)
    if ignore_index is not None:
        valid = (change_target != ignore_index) & (sem_target1 != ignore_index) & (sem_target2 != ignore_index)
    p1, p2 = sem_pred1.long() * changed_p, sem_pred2.long() * changed_p
    t1, t2 = sem_target1.long() * changed_t, sem_target2.long() * changed_t
    invalid = torch.full_like(t1, -1)
    if mode == 'per_date':
        t1, t2 = torch.where(valid, t1, invalid), torch.where(valid, t2, invalid)
        # Changed pixels whose semantic class is 0 cannot be scored as a change class: counted as no change.
        return (confusion_matrix(p1, t1, num_classes, None) + confusion_matrix(p2, t2, num_classes, None))
    if mode == 'from_to':
        n = num_classes - 1
        pred = torch.where(changed_p & (p1 > 0) & (p2 > 0), (p1 - 1) * n + p2, torch.zeros_like(p1))
        target = torch.where(changed_t & (t1 > 0) & (t2 > 0), (t1 - 1) * n + t2, torch.zeros_like(t1))
        return confusion_matrix(pred, torch.where(valid, target, invalid), 1 + n * n, None)
    raise ValueError(f"semantic_change_hist: mode={mode!r}; accepted: 'per_date', 'from_to'")


def semantic_change_metrics(hist: torch.Tensor) -> Dict[str, float]:
    """OA, mIoU (no change / change), SeK = Kappa_n0 * exp(IoU_change - 1) (Kappa_n0: kappa with hist[0, 0] = 0),
    F_scd (of SC_P / SC_R = sum_{c>=1} hist[c, c] / #predicted / #target changed) from an SCD matrix."""
    hist = hist.double()
    total = float(hist.sum())
    no_change = float(hist[0, 0])
    target_unchanged = float(hist[0].sum())
    pred_unchanged = float(hist[:, 0].sum())
    changed_both = float(hist[1:, 1:].sum())
    iou_unchanged = _div(no_change, target_unchanged + pred_unchanged - no_change)
    iou_change = _div(changed_both, total - no_change)
    hist_n0 = hist.clone()
    hist_n0[0, 0] = 0
    kappa_n0 = cohen_kappa(hist_n0)
    sc_tp = float(hist[1:, 1:].diag().sum())
    sc_precision = _div(sc_tp, total - pred_unchanged)
    sc_recall = _div(sc_tp, total - target_unchanged)
    return dict(
        oa=_div(float(hist.diag().sum()), total),
        miou=(iou_unchanged + iou_change) / 2,
        sek=kappa_n0 * math.exp(iou_change - 1),
        f_scd=_div(2 * sc_precision * sc_recall, sc_precision + sc_recall),
        kappa_n0=kappa_n0,
        iou_change=iou_change,
        sc_precision=sc_precision,
        sc_recall=sc_recall,
    )


# --- Losses

def _lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss w.r.t. sorted errors (Berman et al. 2018)."""
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1. - gt_sorted).cumsum(0)
    jaccard = 1. - intersection / union
    if gt_sorted.numel() > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return jaccard


def lovasz_softmax(probs: torch.Tensor, target: torch.Tensor, ignore_index: Optional[int] = 255,
                   classes: str = 'present') -> torch.Tensor:
    """Lovasz-softmax loss over the batch: probs (B, C, H, W) softmax outputs, target (B, H, W); `classes`:
    'present' (reference default, used by ChangeMamba) averages over classes in the target, 'all' over all."""
    num_classes = probs.shape[1]
    probs = probs.permute(0, 2, 3, 1).reshape(-1, num_classes)
    target = target.reshape(-1)
    if ignore_index is not None:
        keep = target != ignore_index
        probs, target = probs[keep], target[keep]
    if probs.numel() == 0:
        return probs.sum() * 0.
    losses = []
    for c in range(num_classes):
        fg = (target == c).to(probs.dtype)
        if classes == 'present' and fg.sum() == 0:
            continue
        errors = (fg - probs[:, c]).abs()
        errors_sorted, perm = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, _lovasz_grad(fg[perm])))
    if not losses:
        return probs.sum() * 0.
    return torch.stack(losses).mean()


def bcd_loss(logits: torch.Tensor, target: torch.Tensor, lovasz_weight: float = 0.75,
             ignore_index: int = 255) -> Dict[str, torch.Tensor]:
    """ChangeMamba's binary change loss: CE (ignore 255) + 0.75 * Lovasz-softmax."""
    return dict(
        loss_ce=F.cross_entropy(logits, target, ignore_index=ignore_index),
        loss_lovasz=lovasz_weight * lovasz_softmax(F.softmax(logits, dim=1), target, ignore_index),
    )


def scd_loss(change_logits: torch.Tensor, sem_logits1: torch.Tensor, sem_logits2: torch.Tensor,
             change_target: torch.Tensor, sem_target1: torch.Tensor, sem_target2: torch.Tensor,
             lovasz_weight: float = 0.75, ignore_index: int = 255) -> Dict[str, torch.Tensor]:
    """ChangeMamba's SCD loss: CE_cd + 0.5 (CE_1 + CE_2 + 0.5 MSE) + 0.75 (Lov_cd + 0.5 (Lov_1 + Lov_2)).

    Semantic terms ignore class 0; the MSE ties both dates' softmax maps on unchanged / ignored date-1 pixels,
    averaged over every element (masked ones as zeros), as the reference code does."""
    t1 = sem_target1.masked_fill(sem_target1 == 0, ignore_index)
    t2 = sem_target2.masked_fill(sem_target2 == 0, ignore_index)
    prob1, prob2 = F.softmax(sem_logits1, dim=1), F.softmax(sem_logits2, dim=1)
    same = (t1 == ignore_index).unsqueeze(1).to(prob1.dtype)
    return dict(
        loss_ce_cd=F.cross_entropy(change_logits, change_target, ignore_index=ignore_index),
        loss_ce_sem=0.5 * (F.cross_entropy(sem_logits1, t1, ignore_index=ignore_index)
                           + F.cross_entropy(sem_logits2, t2, ignore_index=ignore_index)),
        loss_consistency=0.25 * F.mse_loss(prob1 * same, prob2 * same),
        loss_lovasz_cd=lovasz_weight * lovasz_softmax(F.softmax(change_logits, dim=1), change_target, ignore_index),
        loss_lovasz_sem=0.5 * lovasz_weight * (lovasz_softmax(prob1, t1, ignore_index)
                                               + lovasz_softmax(prob2, t2, ignore_index)),
    )


# --- Augmentations applied identically to both dates and every label (rng: a torch.Generator or None)

def _randint(high: int, rng: Optional[torch.Generator]) -> int:
    return int(torch.randint(high, (1,), generator=rng)) if high > 0 else 0


def paired_random_crop(tensors: Sequence[torch.Tensor], size: int,
                       rng: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, ...]:
    """The same random `size` x `size` window of every tensor (..., H, W); all must share H and W."""
    sizes = {tuple(t.shape[-2:]) for t in tensors}
    if len(sizes) != 1:
        raise ValueError(f'paired_random_crop: the dates and labels must share one size, got {sorted(sizes)}')
    height, width = sizes.pop()
    if height < size or width < size:
        raise ValueError(f'paired_random_crop: images of {height}x{width} are smaller than crop size={size}')
    top, left = _randint(height - size + 1, rng), _randint(width - size + 1, rng)
    return tuple(t[..., top:top + size, left:left + size] for t in tensors)


def paired_flip_rotate(tensors: Sequence[torch.Tensor], hflip: bool = True, vflip: bool = True, rot90: bool = True,
                       rng: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, ...]:
    """ChangeMamba's augmentation: the same random h / v flips (p = 0.5) and k * 90 degree rotation on every tensor."""
    flip_w = hflip and bool(torch.rand(1, generator=rng) < 0.5)
    flip_h = vflip and bool(torch.rand(1, generator=rng) < 0.5)
    k = _randint(4, rng) if rot90 else 0
    out = []
    for t in tensors:
        if flip_w:
            t = t.flip(-1)
        if flip_h:
            t = t.flip(-2)
        if k:
            t = torch.rot90(t, k, dims=(-2, -1))
        out.append(t.contiguous())
    return tuple(out)
