"""tools/bench_downstream.py: the CPU smoke run (--tiny) writes every row with a time, as JSON and markdown."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / 'tools' / 'bench_downstream.py'


@pytest.fixture(scope='module')
def bench():
    spec = importlib.util.spec_from_file_location('bench_downstream', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_cpu_run_writes_every_row(bench, tmp_path, one_thread):
    rows = bench.main(['--tiny', '--device', 'cpu', '--warmup', '1', '--iters', '2', '--out', str(tmp_path)])
    data = json.loads((tmp_path / 'results.json').read_text())
    expected = {(c.name, bench.wxh(c.size)) for c in bench.cases('all', tiny=True)}
    assert {(r['name'], r['input']) for r in data['rows']} == expected
    assert len(data['rows']) == len(rows) == len(expected)  # one dtype (fp32), one backend (reference)
    for row in data['rows']:
        assert row['status'] == 'ok', row['error']
        assert row['backend'] == 'reference' and row['dtype'] == 'fp32'
        assert row['ms'] > 0 and row['iters'] == 2
    assert {'device', 'torch', 'triton'} <= set(data['environment'])
    assert data['settings']['command'].startswith('python tools/bench_downstream.py --tiny')
    assert data['settings']['date']

    md = (tmp_path / 'results.md').read_text()
    assert '| model | input | output |' in md and 'triton vs mamba_ssm' in md
    assert '## Restoration' in md and '## Change detection' in md
    for row in data['rows']:
        assert f'| {row["model"]} | {row["input"]} | {row["output"]} |' in md


def test_ratio_is_mamba_ssm_over_triton(bench):
    def row(backend, ms, dtype='fp32'):
        return bench.Row('change', 'M', 'm', '64x64', '64x64', dtype, backend, 1, ms=ms)

    rows = [row('triton', 10.0), row('mamba_ssm', 25.0), row('triton', 4.0, 'bf16'), row('reference', 1.0, 'bf16')]
    bench.add_ratios(rows)
    assert rows[0].ratio == pytest.approx(2.5)
    assert [r.ratio for r in rows[1:]] == [None, None, None]  # only triton rows with a mamba_ssm twin
    assert bench.table_row(rows[0])[-1] == '2.50x'


def test_failed_row_is_reported_not_raised(bench):
    """A backend that cannot run (triton on CPU tensors) gives an 'error' row; the run goes on."""
    model = torch.nn.Conv2d(3, 3, 1)
    r = bench.Row('restoration', 'M', 'm', '8x8', '8x8', 'fp32', 'triton', 1)

    def broken(*_):
        from vimamba import ops
        ops.resolve_backend(None, torch.device('cpu'))  # reads VIMAMBA_BACKEND=triton: needs CUDA

    model.forward = broken
    bench.measure(model, (torch.rand(1, 3, 8, 8),), r, torch.device('cpu'), warmup=0, iters=1, tile=0)
    assert r.status == 'error' and 'CUDA' in r.error and r.ms is None
    assert bench.table_row(r)[6] == 'error'
