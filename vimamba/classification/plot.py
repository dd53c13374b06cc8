"""Training curves from a run's `log.jsonl` as one PNG (loss, accuracy, learning rate per epoch)."""
import json
import logging
import os
from typing import Dict, List

_logger = logging.getLogger('vimamba.classification')


def read_log(path: str) -> List[Dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_curves(log_path: str, png_path: str) -> bool:
    """Write the curves; returns False (with a log line) when there is nothing to plot or no matplotlib."""
    if not os.path.exists(log_path):
        return False
    records = read_log(log_path)
    if not records:
        return False
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        _logger.warning('matplotlib is not installed: no %s', png_path)
        return False

    def series(key):
        pts = [(r['epoch'], r[key]) for r in records if r.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for key, label in (('train_loss', 'train'), ('eval_loss', 'eval'), ('ema_eval_loss', 'eval (EMA)')):
        x, y = series(key)
        if x:
            axes[0].plot(x, y, marker='.', label=label)
    axes[0].set_title('loss')
    for key, label in (('top1', 'top-1'), ('top5', 'top-5'), ('ema_top1', 'top-1 (EMA)'), ('ema_top5', 'top-5 (EMA)')):
        x, y = series(key)
        if x:
            axes[1].plot(x, y, marker='.', label=label)
    axes[1].set_title('accuracy (%)')
    x, y = series('lr')
    axes[2].plot(x, y, marker='.')
    axes[2].set_title('learning rate')
    axes[2].set_yscale('log')
    for ax in axes:
        ax.set_xlabel('epoch')
        ax.grid(alpha=.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return True
