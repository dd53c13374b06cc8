"""torch.compile sees every family as one graph: no graph breaks in inference or in a training step."""
import pytest
import timm
import torch

from vimamba.registry import list_models

TEST_MODELS = [n for n in list_models(include_test=True) if n.startswith('test_')]


def _input(model, batch=2):
    return torch.randn(batch, *model.pretrained_cfg['input_size'])


@pytest.mark.parametrize('mode', ['eval', 'train'])
@pytest.mark.parametrize('name', TEST_MODELS)
def test_no_graph_breaks(name, mode, one_thread):
    torch._dynamo.reset()
    model = getattr(timm.create_model(name), mode)()
    explained = torch._dynamo.explain(model)(_input(model))
    reasons = [b.reason.splitlines()[0] for b in explained.break_reasons]
    assert explained.graph_break_count == 0 and explained.graph_count == 1, reasons


@pytest.mark.parametrize('name', ['test_vim', 'test_lbvim'])
def test_compiled_training_step_matches_eager(name, one_thread):
    """AOTAutograd traces our ops' backward too: a fullgraph-compiled step gives eager's loss and gradients,
    and a second batch size reuses the graph with a dynamic batch instead of failing. LBVim's layers alternate
    between two scan orders: the graph names each order, holding no index tensor."""
    torch._dynamo.reset()
    model = timm.create_model(name, num_classes=5).train()
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    for batch in (2, 3):
        x = _input(model, batch)
        grads = []
        for m in (model, compiled):
            model.zero_grad(set_to_none=True)
            m(x).square().mean().backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
        for n in grads[0]:
            torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-4, atol=1e-6, msg=n)


@pytest.mark.gpu
@pytest.mark.parametrize('mode', ['default', 'reduce-overhead'])
@pytest.mark.parametrize('name', TEST_MODELS)
def test_compiled_matches_eager_gpu(name, mode, monkeypatch):
    """Inductor around the Triton kernels, and CUDA graphs: the same outputs and gradients as eager."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    # Inductor draws its own random numbers (drop path), and picks other TF32 conv algorithms than eager.
    model = timm.create_model(name, drop_path_rate=0.).cuda()
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    if hasattr(model, 'shuffle_rates'):  # random token shuffles draw differently under Inductor
        model.shuffle_rates = [0.] * len(model.shuffle_rates)
    x = _input(model, 4).cuda()
    compiled = torch.compile(model, mode=mode, fullgraph=True)
    with torch.no_grad():
        model.eval()
        want = model(x)
        for _ in range(3):  # CUDA graphs record on a later call than the first
            got = compiled(x).clone()
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)
    model.train()
    grads = []
    for m in (model, compiled):
        model.zero_grad(set_to_none=True)
        if mode == 'reduce-overhead':
            torch.compiler.cudagraph_mark_step_begin()
        m(x).float().square().mean().backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5)


def test_compiled_scan_order_is_a_graph_constant(one_thread):
    """The scan order reaches the graph through a plain int key (what dynamo takes on torch 2.11 too), also for a
    copy of the model whose original is gone."""
    import copy
    import gc
    torch._dynamo.reset()
    model = timm.create_model('test_lbvim').eval()
    twin = copy.deepcopy(model)
    del model
    gc.collect()
    x = _input(twin)
    torch.testing.assert_close(torch.compile(twin, backend='eager', fullgraph=True)(x), twin(x))


def test_compile_is_not_taken_for_export():
    """torch.compile takes the GridOrder path and torch.export the constant index (torch 2.11's dynamo answers True
    to torch.compiler.is_exporting() under torch.compile too)."""
    from vimamba.scans.base import _is_exporting

    class Probe(torch.nn.Module):
        def forward(self, x):
            return x + 1 if _is_exporting() else x - 1

    torch._dynamo.reset()
    assert torch.compile(Probe(), backend='eager', fullgraph=True)(torch.zeros(1)).item() == -1
    assert torch.export.export(Probe(), (torch.zeros(1),)).module()(torch.zeros(1)).item() == 1


@pytest.mark.gpu
@pytest.mark.parametrize('name', ['test_vim', 'test_atrousmamba'])
def test_cuda_graphs_before_any_eager_call_gpu(name):
    """The scan orders first reach the GPU inside CUDA-graph trees' warm-up (no eager call before): the cached
    index must not live in their private pool (they refuse live allocations that are not outputs)."""
    from vimamba.scans import clear_cache
    torch._dynamo.reset()
    clear_cache()
    model = timm.create_model(name).cuda().eval()
    x = _input(model, 4).cuda()
    compiled = torch.compile(model, mode='reduce-overhead', fullgraph=True)
    with torch.no_grad():
        for _ in range(3):
            got = compiled(x).clone()
        torch.testing.assert_close(got, model(x), rtol=1e-3, atol=1e-4)
