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


def test_compiled_training_step_matches_eager(one_thread):
    """AOTAutograd traces our ops' backward too: a fullgraph-compiled step gives eager's loss and gradients,
    and a second batch size reuses the graph with a dynamic batch instead of failing."""
    torch._dynamo.reset()
    model = timm.create_model('test_vim', num_classes=5).train()
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
