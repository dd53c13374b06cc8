import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """Tiny models on 2 busy cores: one thread is several times faster than two fighting for the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def scan_calls(monkeypatch):
    """(input shape, order) of every `vimamba.ops.selective_scan` call the test makes, in call order."""
    from vimamba import ops

    calls = []
    real = ops.selective_scan

    def spy(u, *args, order=None, **kwargs):
        calls.append((tuple(u.shape), order))
        return real(u, *args, order=order, **kwargs)

    monkeypatch.setattr(ops, 'selective_scan', spy)
    return calls
