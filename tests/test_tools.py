"""The command-line tools' answers to plain mistakes (one line naming the argument, before any model work), and the
kernel benchmark's columns computing the same thing."""
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('args, message', [
    (['--model', 'vim_tinyy'], "--model 'vim_tinyy' is not a registered model; nearest: vim_tiny_patch16_224"),
    (['--model', 'test_vim', '--device', 'nonsense'], "--device 'nonsense': "),
    (['--model', 'test_vim', '--iters', '0'], '--iters must be >= 1, got 0'),
    (['--model', 'test_vim', '--compile', 'fast'], "argument --compile: invalid choice: 'fast'"),
    (['--model', 'test_vim', '--out', str(ROOT / 'README.md')], f"--out {str(ROOT / 'README.md')!r} is a file"),
])
def test_profile_model_errors(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        _tool('profile_model').main(args)
    assert e.value.code == 2 and f'error: {message}' in capsys.readouterr().err


@pytest.mark.parametrize('args, message', [
    (['--shapes', 'vim_tt'], "--shapes: unknown ['vim_tt']"),
    (['--splits', '0,4'], "--splits: expected positive ints, got '0,4'"),
])
def test_bench_projections_errors(args, message, capsys, monkeypatch):
    tool = _tool('bench_projections')
    monkeypatch.setattr(tool.torch.cuda, 'is_available', lambda: True)  # the argument checks come first
    with pytest.raises(SystemExit) as e:
        tool.main(args)
    assert e.value.code == 2 and f'error: {message}' in capsys.readouterr().err


def test_bench_kernels_merged_column_matches_k_outputs():
    """The merged column (merge and gate in the op) against K gated outputs summed, with one gate for every
    direction: the same output and input gradients, so the two columns time the same function."""
    import torch
    from vimamba.scans.base import ScanOrder
    tool = _tool('bench_kernels')
    x = tool.make_inputs(2, 2, 8, 12, torch.float64, device='cpu', N=4)
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in dict(x, z=x['z'][:, 0]).items()}
    order = ScanOrder.from_index(tool.make_index('bidirectional', 2, 12, None, 'cpu'))
    xk = dict(leaves, z=leaves['z'][:, None].expand(-1, 2, -1, -1))
    y_k = tool.ours(xk, order, 0, 'reference')(xk)                       # (b, L, d)
    y_m = tool.ours(leaves, order, 0, 'reference', 'sum')(leaves)        # (b, d, L)
    torch.testing.assert_close(y_m, y_k.transpose(1, 2))
    dy = torch.randn_like(y_m)
    inputs = [leaves[k] for k in ('u', 'delta', 'B', 'C', 'z', 'delta_bias')]
    g_k = torch.autograd.grad(y_k, inputs, dy.transpose(1, 2))
    g_m = torch.autograd.grad(y_m, inputs, dy)
    for a, b in zip(g_m, g_k):
        torch.testing.assert_close(a, b)
