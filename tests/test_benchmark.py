"""The benchmark tool: FLOP handles against the scan formula and torch's FlopCounterMode, the timing and
OOM logic, and a default-like run on tiny models that writes its files. CPU only, a minute or so."""
import json
from pathlib import Path

import pytest
import timm
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import vimamba  # noqa: F401  registers the models
from vimamba import benchmark
from vimamba.ops import selective_scan_flops

ROOT = Path(__file__).resolve().parents[1]

fvcore = pytest.importorskip('fvcore.nn')


class _RecordScans(TorchDispatchMode):
    """Shapes of every vimamba::selective_scan call: (batch, K, d, L), N, D given, z given."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.vimamba.selective_scan.default:
            u, A, D, z = args[0], args[2], args[5], args[6]
            self.calls.append((tuple(u.shape), A.shape[-1], D is not None, z is not None))
        return func(*args, **(kwargs or {}))


def _tiny(name):
    model = timm.create_model(name).eval()
    return model, torch.randn(1, *model.pretrained_cfg['input_size'])


@pytest.mark.parametrize('name', ['test_vim', 'test_lbvim', 'test_mobilemamba', 'test_mair'])
def test_fvcore_scan_handle_matches_formula(name):
    model, x = _tiny(name)
    flops = benchmark.count_flops(model, x, 'fvcore')
    with torch.no_grad(), _RecordScans() as rec:
        model(x)
    assert rec.calls, f'{name} made no selective_scan call'
    expected = sum(selective_scan_flops(*shape, N, has_D, has_z) for shape, N, has_D, has_z in rec.calls)
    assert flops.scan == expected == flops.by_operator['selective_scan']
    assert flops.source == 'fvcore'
    # Nothing but elementwise ops left uncounted (a matmul-like op missing a handle would show here).
    assert set(flops.skipped) <= benchmark.ELEMENTWISE_OPS, set(flops.skipped) - benchmark.ELEMENTWISE_OPS


def test_vim_scan_flops_by_hand():
    # test_vim: 4 layers, one bidirectional call each (K 2), d = 2 * 32, L = 7 * 7 + cls = 50, N = 8, D skip.
    model, x = _tiny('test_vim')
    flops = benchmark.count_flops(model, x, 'fvcore')
    assert flops.scan == 4 * (9 * 2 * 64 * 50 * 8 + 2 * 64 * 50)


@pytest.mark.parametrize('name', ['test_vim', 'test_shufflemamba_reg', 'test_vit'])
def test_fvcore_agrees_with_flop_counter_mode(name):
    """The jit handles (scan, attention) against torch.utils.flop_counter with the formula vimamba.ops
    registers: same scan count, same matmul/conv/attention total once FlopCounterMode's 2 FLOPs per MAC
    are halved (fvcore also counts norms, which FlopCounterMode does not)."""
    model, x = _tiny(name)
    a = benchmark.count_flops(model, x, 'fvcore')
    b = benchmark.flop_counter_macs(model, x)
    assert a.scan == b.scan
    norms = sum(v for k, v in a.by_operator.items() if 'norm' in k)
    assert a.total - norms == b.total
    if name == 'test_vit':
        assert a.by_operator['scaled_dot_product_attention'] > 0


FAMILY_MODELS = ['test_vim', 'test_lbvim', 'test_shufflemamba_reg', 'test_mobilemamba', 'test_mair',
                 'test_atrousmamba']


@pytest.mark.parametrize('name', FAMILY_MODELS)
def test_plain_fvcore_and_mmengine_count_our_ops(name):
    """After `import vimamba`, FlopCountAnalysis and mmengine's get_model_complexity_info called as their users
    call them (no handles passed) give the benchmark's count: the scan and the causal conv are not dropped."""
    model, x = _tiny(name)
    ours = benchmark.count_flops(model, x, 'fvcore')
    with torch.no_grad():
        plain = fvcore.FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        assert plain.total() == ours.total
    assert plain.by_operator()['selective_scan'] == ours.scan > 0
    assert not [op for op in plain.unsupported_ops() if op.startswith('vimamba::')]
    analysis = pytest.importorskip('mmengine.analysis')
    info = analysis.get_model_complexity_info(model, inputs=(x,), show_table=False, show_arch=False)
    assert info['flops'] == ours.total


def test_import_fills_the_counters_tables_without_importing_them():
    """fvcore and mmengine are not imported by `import vimamba`; their default tables get our handles when they
    are imported later (or at once when they were imported first), keeping handles already there."""
    import subprocess
    import sys
    eager = ("import sys, warnings\n"
             "warnings.simplefilter('error')\n"
             "import vimamba\n"
             "assert not {'fvcore.nn', 'mmengine.analysis'} & set(sys.modules), 'imported eagerly'\n")
    code = (
        "import warnings; warnings.simplefilter('ignore')\n"
        "import vimamba\n"
        "from fvcore.nn.flop_count import _DEFAULT_SUPPORTED_OPS as t\n"
        "from vimamba.ops import selective_scan_flop_jit\n"
        "assert t['vimamba::selective_scan'] is selective_scan_flop_jit and t['vimamba::add_rms_norm'] is None\n"
        "assert t['aten::_convolution'].__module__.startswith('fvcore')\n"
        "try:\n"
        "    from mmengine.analysis.complexity_analysis import _DEFAULT_SUPPORTED_FLOP_OPS as m\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    assert 'vimamba::causal_conv1d' in m\n")
    subprocess.run([sys.executable, '-c', eager + code], check=True, cwd=ROOT)
    # Imported before vimamba (here: by this file): filled at once.
    flop_count = sys.modules['fvcore.nn.flop_count']  # the module (fvcore.nn.flop_count is also a function)
    from vimamba.flops import install_default_handles
    saved = dict(flop_count._DEFAULT_SUPPORTED_OPS)
    try:
        del flop_count._DEFAULT_SUPPORTED_OPS['vimamba::selective_scan']
        install_default_handles()
        assert flop_count._DEFAULT_SUPPORTED_OPS == saved
    finally:
        flop_count._DEFAULT_SUPPORTED_OPS.clear()
        flop_count._DEFAULT_SUPPORTED_OPS.update(saved)


def test_time_step_counts_and_stops():
    calls = []
    times = benchmark.time_step(lambda: calls.append(1), torch.device('cpu'), warmup=2, iters=5)
    assert len(times) == 5 and len(calls) == 7 and all(t >= 0 for t in times)
    times = benchmark.time_step(lambda: None, torch.device('cpu'), warmup=0, iters=100, max_time=0.0)
    assert len(times) == 1


def test_cpu_rows_are_timed_three_times_with_their_spread_and_threads(tmp_path):
    """A model slower than --max-time used to be timed once: now at least 3 runs, min / median / max reported,
    and the thread count stated with the device."""
    results = benchmark.main(['--models', 'test_vim', '--no-baselines', '--device', 'cpu', '--threads', '1',
                              '--iters', '10', '--max-time', '0', '--no-flops', '--out', str(tmp_path),
                              '--no-progress'])
    (r,) = results
    assert r.infer_iters == 3
    assert 0 < r.infer_ms_min <= r.infer_ms <= r.infer_ms_max
    text = (tmp_path / 'results.md').read_text()
    assert '1 torch threads' in text and 'median [min-max]' in text and 'at least 3 even past --max-time 0 s' in text
    row = next(line for line in text.splitlines() if line.startswith('| test_vim '))
    assert f'[{r.infer_ms_min:,.1f}-{r.infer_ms_max:,.1f}]' in row and '| 3 |' in row
    assert json.loads((tmp_path / 'results.json').read_text())['environment']['threads'] == 1
    with pytest.raises(SystemExit):
        benchmark.main(['--models', 'test_vim', '--threads', '0', '--out', str(tmp_path)])


def test_throughput_plot_labels_stay_apart_inside_the_axes_with_a_legend():
    from matplotlib.text import Text
    rows = [('vim_tiny', 'vim', False, 1.82, 2.9), ('lbvim_tiny', 'lbvim', False, 1.44, 3.2),
            ('shufflemamba_tiny_reg12', 'shufflemamba', False, 1.92, 2.7), ('mobilemamba_t2', 'mobilemamba', False,
            0.253, 27.0), ('atrousmamba_tiny', 'atrousmamba', False, 4.86, 2.6), ('mair_light_t_x2', 'mair', False,
            3.69, 0.7), ('deit_tiny', 'deit', True, 1.26, 34.0), ('deit_small', 'deit', True, 4.61, 11.8),
            ('swin_tiny', 'swin', True, 4.51, 9.5), ('resnet50', 'resnet', True, 4.11, 9.8)]
    results = [benchmark.Result(name, family, baseline, None, False, img_size=(64, 64) if 'mair' in name else
                                (224, 224), batch_size=1, gflops=g, infer_img_s=rate)
               for name, family, baseline, g, rate in rows]
    fig = benchmark.throughput_figure({'device': 'cpu', 'device_type': 'cpu', 'threads': 2}, results)
    ax = fig.axes[0]
    fig.canvas.draw()  # places the annotations' texts; their boxes below leave the leader lines out
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    labels = {t.get_text(): Text.get_window_extent(t, renderer) for t in ax.texts}
    assert set(labels) == {name + (' (64x64)' if 'mair' in name else '') for name, *_ in rows}
    boxes = list(labels.values())
    for i, a in enumerate(boxes):
        assert inside.x0 <= a.x0 and a.x1 <= inside.x1 and inside.y0 <= a.y0 and a.y1 <= inside.y1
        assert not any(a.overlaps(b) for b in boxes[i + 1:])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert 'timm baseline' in legend and 'vimamba: vim' in legend and 'input not 224x224 (size in the label)' in legend
    assert '2 torch threads' in ax.get_title()


def test_oom_halves_the_batch_in_the_table_and_is_reported_in_the_sweep(monkeypatch):
    def fake_measure(job, batch, settings, result):
        if batch > 2:
            raise torch.cuda.OutOfMemoryError('CUDA out of memory. Tried to allocate 2 GiB')
        result.batch_size = batch

    monkeypatch.setattr(benchmark, '_measure', fake_measure)
    settings = benchmark.Settings(device=torch.device('cpu'))
    result = benchmark.run_job(benchmark.Job('test_vim', 'vim', False, None, 8, 'auto'), settings)
    assert result.status == 'ok' and result.batch_size == 2
    assert result.notes == ['OOM at batch 8', 'OOM at batch 4']
    result = benchmark.run_job(benchmark.Job('test_vim', 'vim', False, 512, 8, 'auto', sweep=True), settings)
    assert result.status == 'OOM' and result.batch_size == 8


def test_default_like_run_writes_its_files(tmp_path):
    out = tmp_path / 'bench'
    results = benchmark.main(['--models', 'test_vim', 'test_mobilemamba', 'test_vit', '--iters', '2',
                              '--sweep', '32', '64', '--sweep-models', 'test_vim', 'test_vit',
                              '--out', str(out), '--no-progress'])
    assert [r.status for r in results] == ['ok'] * 7
    for name in ('results.md', 'results.json', 'throughput_vs_flops.png', 'resolution_sweep.png'):
        assert (out / name).stat().st_size > 0, name
    data = json.loads((out / 'results.json').read_text())
    table = [r for r in data['results'] if not r['sweep']]
    assert [r['model'] for r in table] == ['test_vim', 'test_mobilemamba', 'test_vit']
    assert all(r['gflops'] > 0 and r['infer_img_s'] > 0 for r in table)
    assert table[0]['scan_gflops'] > 0 and table[0]['backend'] == 'reference'
    assert table[2]['baseline'] and table[2]['backend'] is None
    assert sorted(r['img_size'][0] for r in data['results'] if r['sweep']) == [32, 32, 64, 64]
    text = (out / 'results.md').read_text()
    assert '| test_vim |' in text and 'Resolution sweep' in text

    # --replot rebuilds the markdown and plots from the JSON alone (how a GPU run's JSON is rendered).
    again = tmp_path / 'replot'
    benchmark.main(['--replot', str(out / 'results.json'), '--out', str(again)])
    assert (again / 'results.md').read_text() == text
    assert (again / 'resolution_sweep.png').exists()


def test_training_step_and_bf16(tmp_path):
    results = benchmark.main(['--models', 'test_lbvim', '--bench', 'both', '--amp', '--iters', '1',
                              '--no-flops', '--out', str(tmp_path), '--no-progress'])
    (r,) = results
    assert r.status == 'ok', r.status
    assert r.dtype == 'bf16' and r.train_img_s > 0 and r.infer_img_s > 0 and r.gflops is None


def test_unknown_model_and_bad_backend_are_usage_errors(tmp_path):
    with pytest.raises(SystemExit):
        benchmark.main(['--models', 'no_such_model_xyz', '--out', str(tmp_path)])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            benchmark.main(['--models', 'test_vim', '--backend', 'mamba_ssm', '--out', str(tmp_path)])


def test_several_backends_give_one_row_each(tmp_path):
    results = benchmark.main(['--models', 'test_vim', '--backend', 'reference', 'auto', '--iters', '1',
                              '--no-flops', '--out', str(tmp_path), '--no-progress'])
    assert [r.label for r in results] == ['test_vim [reference]', 'test_vim [auto]']
    assert all(r.status == 'ok' for r in results)


# Official figures (GMACs per image, the papers' fvcore convention): MobileMamba's README, Vim's paper, VMamba's
# assets/performance.md.
@pytest.mark.parametrize('name,img_size,official', [('mobilemamba_t2', 192, 0.255), ('mobilemamba_b1', 256, 1.080),
                                                    ('vim_tiny_patch16_224', 224, 1.82),
                                                    ('vmamba_tiny_s2l5', 224, 4.9)])
def test_flops_within_two_percent_of_the_official_figures(name, img_size, official):
    model = timm.utils.reparameterize_model(timm.create_model(name).eval())
    flops = benchmark.count_flops(model, torch.randn(1, 3, img_size, img_size))
    assert flops.scan > 0
    assert abs(flops.total / 1e9 - official) / official < 0.02, flops.total


def test_host_overhead_counts_what_a_gpu_step_issues(tmp_path):
    """tools/host_overhead.py runs the Triton host code with launches stubbed (its own process: the interpreter
    must be on before triton is imported): Vim's test model issues its ops and one launch per op forward."""
    import json
    import subprocess
    import sys
    out = tmp_path / 'host.json'
    run = subprocess.run([sys.executable, str(ROOT / 'tools' / 'host_overhead.py'), '--models', 'test_vim',
                          '--size', '32', '--repeats', '1', '--out', str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    row = json.loads(out.read_text())['rows'][0]
    blocks = len(timm.create_model('test_vim').blocks)
    assert row['custom_ops'] == row['launches'] == 4 * blocks and row['aten_ops'] > 0 and row['host_ms'] > 0
    bad = subprocess.run([sys.executable, str(ROOT / 'tools' / 'host_overhead.py'), '--models', 'vim_tinyy'],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--models 'vim_tinyy' is not a registered model" in bad.stderr


def test_profile_model_splits_time_by_group(tmp_path):
    """tools/profile_model.py charges each operator's self time to one group; the scan gets everything that
    runs inside the op (here the reference backend's PyTorch ops)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('profile_model', ROOT / 'tools' / 'profile_model.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    groups, total = tool.main(['--model', 'test_vim', '--device', 'cpu', '--warmup', '1', '--iters', '1',
                               '--out', str(tmp_path)])
    assert groups['selective_scan'] > 0 and groups.get('matmul', 0) > 0
    assert abs(sum(groups.values()) - total) < 1e-6 * total
    assert 'selective_scan' in (tmp_path / 'profile.md').read_text()
    assert tool.group_of('aten::addmm') == 'matmul' and tool.group_of('aten::native_layer_norm') == 'norm'
