"""Deployment: torch.export of every family's test model (dynamic batch, run against eager), the plain-op forms of the
custom ops against the references, and ONNX export of one test model per family checked with onnxruntime."""
import pytest
import torch
import timm

import vimamba
from vimamba import export
from vimamba.kernels import add_rms_norm_reference, causal_conv1d_reference, selective_scan_reference
from vimamba.registry import list_models
from vimamba.scans import clear_cache, get_pattern

TEST_MODELS = [n for n in list_models(include_test=True) if n.startswith('test_')]
# One test model per family for the slower ONNX round trip.
ONNX_MODELS = ['test_vim', 'test_lbvim', 'test_shufflemamba_reg', 'test_mobilemamba', 'test_mair', 'test_atrousmamba']


def _model_and_input(name, batch):
    torch.manual_seed(0)
    model = timm.create_model(name).eval()
    return model, torch.randn((batch,) + tuple(model.pretrained_cfg['input_size']))


def _relative_error(out, ref):
    return float((out - ref).abs().max() / ref.abs().max())


@pytest.mark.parametrize('local_window', [0, 3])
def test_selective_scan_decomposition_matches_reference(local_window):
    torch.manual_seed(0)
    b, K, d, N, L = 2, 2, 5, 4, 11
    u, delta, z = (torch.randn(b, K, d, L, dtype=torch.float64) for _ in range(3))
    B, C = (torch.randn(b, K, N, L, dtype=torch.float64) for _ in range(2))
    A = -torch.rand(K, d, N, dtype=torch.float64) * 2
    D, delta_bias = torch.randn(K, d, dtype=torch.float64), torch.randn(K, d, dtype=torch.float64)
    index = torch.stack([torch.randperm(L) for _ in range(K)])
    want = selective_scan_reference.selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, True, index, local_window)
    got = export.selective_scan_decomposition(u, delta, A, B, C, D, z, delta_bias, index, True, local_window)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)
    # without the optional inputs and the order
    want = selective_scan_reference.selective_scan_fwd(u, delta, A, B, C, None, None, None, False, None, local_window)
    got = export.selective_scan_decomposition(u, delta, A, B, C, None, None, None, None, False, local_window)
    torch.testing.assert_close(got[0], want[0], rtol=1e-10, atol=1e-10)


def test_conv_and_norm_decompositions_match_references():
    torch.manual_seed(0)
    x = torch.randn(2, 9, 6, dtype=torch.float64)
    weight, bias = torch.randn(3, 6, 4, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    reverse = (False, True, False)
    want = causal_conv1d_reference.causal_conv1d_fwd(x, weight, bias, reverse, True)
    torch.testing.assert_close(export.causal_conv1d_decomposition(x, weight, bias, [0, 1, 0], True), want)
    want = causal_conv1d_reference.causal_conv1d_fwd(x, weight, None, reverse, False)
    torch.testing.assert_close(export.causal_conv1d_decomposition(x, weight, None, [0, 1, 0], False), want)
    hidden, residual, w = torch.randn(2, 5, 8), torch.randn(2, 5, 8), torch.randn(8)
    want = add_rms_norm_reference.add_rms_norm_fwd(hidden, residual, w, 1e-5, torch.float32, torch.float32)
    got = export.add_rms_norm_decomposition(hidden, residual, w, 1e-5, torch.float32, torch.float32)
    for g, t in zip(got, want):
        torch.testing.assert_close(g, t)


@pytest.mark.parametrize('name', TEST_MODELS)
def test_torch_export_dynamic_batch(name):
    """torch.export with a dynamic batch: the program keeps the custom ops and matches eager at other batches."""
    clear_cache()  # orders first built while torch.export traces must be real tensors for later eager calls
    model, x = _model_and_input(name, 2)
    program = export.export_program(model, x)
    targets = {str(n.target) for n in program.graph.nodes}
    assert 'vimamba.selective_scan.default' in targets
    module = program.module()
    for batch in (1, 3):
        xb = torch.randn((batch,) + x.shape[1:])
        with torch.no_grad():
            ref = model(xb)
            out = module(xb)
        assert type(ref) is torch.Tensor
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_run_decompositions_gives_standard_ops():
    model, x = _model_and_input('test_lbvim', 2)
    program = export.export_program(model, x).run_decompositions(export.decompositions())
    targets = {str(n.target) for n in program.graph.nodes}
    assert not any('vimamba' in t for t in targets) and any('scan' in t for t in targets)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=1e-5, atol=1e-5)


def test_export_program_checks_example():
    model, _ = _model_and_input('test_vim', 1)
    with pytest.raises(ValueError, match='example: expected an image batch'):
        export.export_program(model, torch.randn(3, 32, 32))


@pytest.mark.parametrize('name', ONNX_MODELS)
def test_onnx_export_runs_in_onnxruntime(name, tmp_path):
    """After `import vimamba`, plain torch.onnx.export writes standard ONNX (the scan as Scan nodes) with a dynamic
    batch, and onnxruntime matches PyTorch within 1e-4 relative."""
    onnx = pytest.importorskip('onnx')
    ort = pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    model, x = _model_and_input(name, 2)
    path = str(tmp_path / f'{name}.onnx')
    torch.onnx.export(model, (x,), path, input_names=['input'], output_names=['output'],
                      dynamic_shapes={'x': {0: torch.export.Dim('batch')}})
    graph = onnx.load(path)
    onnx.checker.check_model(graph)
    ops = {(n.domain, n.op_type) for n in graph.graph.node}
    assert ('', 'Scan') in ops
    assert {domain for domain, _ in ops} <= {'', 'ai.onnx'}, f'non-standard ops: {sorted(ops)}'
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    for batch in (1, 3):
        xb = torch.randn((batch,) + x.shape[1:])
        with torch.no_grad():
            ref = model(xb)
        out = torch.from_numpy(session.run(None, {'input': xb.numpy()})[0])
        assert out.shape == ref.shape
        assert _relative_error(out, ref) < 1e-4


def test_torchscript_onnx_exporter_refused(tmp_path):
    pytest.importorskip('onnx')
    model, x = _model_and_input('test_vim', 1)
    with pytest.raises(Exception, match='dynamo=True'):
        torch.onnx.export(model, (x,), str(tmp_path / 'm.onnx'), dynamo=False)


def _load_tool(name):
    import importlib.util
    import os
    import sys
    tools = os.path.join(os.path.dirname(__file__), '..', 'tools')
    sys.path.insert(0, tools)
    spec = importlib.util.spec_from_file_location(name, os.path.join(tools, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_export_tool_and_torch_free_classifier(tmp_path, capsys):
    """tools/export_onnx.py writes and checks a file; tools/onnx_classify.py classifies with it in a process that
    never imports torch or vimamba."""
    import json
    import subprocess
    import sys
    pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    path = str(tmp_path / 'test_vim.onnx')
    _load_tool('export_onnx').main(['test_vim', path])
    assert 'max relative error' in capsys.readouterr().out
    image = str(tmp_path / 'photo.png')
    from PIL import Image
    Image.fromarray((torch.rand(40, 50, 3) * 255).byte().numpy()).save(image)
    code = ("import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
            "assert 'torch' not in sys.modules and 'vimamba' not in sys.modules, 'imported torch'")
    tool = str(__import__('pathlib').Path(__file__).parent.parent / 'tools' / 'onnx_classify.py')
    out = subprocess.run([sys.executable, '-c', code, tool, path, image, '--input-size', '64', '--json'],
                         check=True, capture_output=True, text=True).stdout
    result = json.loads(out)
    assert len(result['top']) == 5 and len(result['logits']) == 1000


def test_deploy_demo_top5_matches(tmp_path, capsys):
    """The README's deploy path on scikit-image's chelsea photo: onnxruntime's top-5 equals PyTorch's."""
    pytest.importorskip('onnxruntime')
    pytest.importorskip('onnxscript')
    pytest.importorskip('skimage')
    _load_tool('deploy_demo').main(['--model', 'test_vim', '--out', str(tmp_path)])
    out = capsys.readouterr().out
    assert 'same top-5: True' in out and 'chelsea.png' in out
