"""The training smoke check (tools/memorize_check.py) on the test-size models: every family memorises a fixed
batch on the CPU, and the check fails for a model that cannot learn."""
import pytest
import torch

import vimamba.models  # noqa: F401  registers the models
from vimamba.classification import ConfigError
from vimamba.classification.memorize import FAMILY_MODELS, TEST_MODELS, memorize, memorize_main

# Test-size models are narrow: a higher lr than the real check's 5e-4 memorises 4 images in a few tens of steps.
FAST = dict(batch_size=4, steps=40, warmup_steps=5, lr=3e-3, threshold=0.5, device='cpu')


@pytest.mark.parametrize('family', sorted(TEST_MODELS))
def test_family_memorises_a_batch(family, one_thread):
    name, size = TEST_MODELS[family]
    r = memorize(name, size, **FAST)
    assert r.passed, r.line()
    limit = r.threshold * (r.losses[0] if family == 'mair' else 1.)
    assert max(r.losses[-3:]) < limit <= r.losses[-4]  # stopped once three steps in a row were under the limit
    assert r.steps_to_pass == len(r.losses) - 1 < FAST['steps']


def test_check_fails_without_learning(one_thread):
    r = memorize('test_atrousmamba', 64, **dict(FAST, lr=0., steps=6))
    assert not r.passed and r.steps_to_pass is None and len(r.losses) == 6
    assert max(r.losses) - min(r.losses) < 1e-6  # nothing moved (drop path 0, no dropout)


def test_cli_and_errors(one_thread, tmp_path, capsys):
    assert set(FAMILY_MODELS) == set(TEST_MODELS)
    out = tmp_path / 'r.json'
    failed = memorize_main(['--test-models', '--families', 'atrousmamba', '--dtypes', 'fp32', '--device', 'cpu',
                            '--batch-size', '4', '--steps', '3', '--lr', '0', '--out', str(out)])
    assert failed == 1 and 'FAIL test_atrousmamba 64px b4 fp32 auto' in capsys.readouterr().out
    assert out.read_text().count('"losses"') == 1
    with pytest.raises(ConfigError, match='--families'):
        memorize_main(['--families', 'swin'])
    with pytest.raises(ConfigError, match="dtype='fp8'"):
        memorize('test_atrousmamba', 64, dtype='fp8')
    with pytest.raises(ConfigError, match='steps=0'):
        memorize('test_atrousmamba', 64, steps=0)
