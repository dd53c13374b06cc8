"""The command-line tools' answers to plain mistakes: one line naming the argument, before any model work."""
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
