"""The mixers hand `vimamba.ops.selective_scan` channels-last inputs, the layout the scan kernels read fastest.

u, delta (batch, K, d, L) and B, C (batch, K, N, L) must have `stride(-2) == 1` (a token's channels contiguous):
transposed views of (batch, K, L, .) memory, made without copies (B and C are slices of one x_dbl; the 2-D mixers
pass one u expanded over K). Every call of the op is recorded through a wrapper around the public function.
"""
import pytest
import timm
import torch

from references import causal_depthwise_conv1d

import vimamba  # noqa: F401  (registers the models)
from vimamba import ops
from vimamba.layers.mamba import MambaMixer
from vimamba.models.mobilemamba import MobileMambaSelectiveScan2d
from vimamba.layers.vss import VMambaSelectiveScan2d
from vimamba.models.mair import MaIRSelectiveScan2d


@pytest.fixture
def scan_calls(monkeypatch):
    """Records (u, delta, B, C, z) of every selective_scan call made through `vimamba.ops`."""
    calls = []
    original = ops.selective_scan

    def recording(u, delta, A, B, C, D=None, z=None, *args, **kwargs):
        calls.append(dict(u=u, delta=delta, B=B, C=C, z=z))
        return original(u, delta, A, B, C, D, z, *args, **kwargs)

    monkeypatch.setattr(ops, 'selective_scan', recording)
    return calls


def _check_channels_last(calls, expanded_u: bool, shared_x_dbl: bool = True):
    assert calls, 'the op was not called'
    for call in calls:
        for name in ('u', 'delta', 'B', 'C', 'z'):
            t = call[name]
            if t is None:
                continue
            assert t.stride(-2) == 1, f'{name} {tuple(t.shape)} strides {t.stride()}: not channels-last'
        u = call['u']
        if expanded_u:
            assert u.stride(1) == 0, f'u {tuple(u.shape)} strides {u.stride()}: not one u expanded over K'
        # B and C: two slices of one x_dbl, not copies (weight-sharing direction groups repeat them).
        B, C = call['B'], call['C']
        if shared_x_dbl:
            assert B.untyped_storage().data_ptr() == C.untyped_storage().data_ptr()


@pytest.mark.parametrize('kwargs', [
    dict(), dict(bidirectional=False), dict(bidirectional=False, reverse=True),
    dict(bidirectional=False, local_window=None), dict(bidirectional=False, local_window=4, reverse=True)])
def test_mamba_mixer_hands_channels_last(scan_calls, kwargs):
    mixer = MambaMixer(16, **kwargs)
    y = mixer(torch.randn(2, 13, 16))
    assert y.shape == (2, 13, 16)
    _check_channels_last(scan_calls, expanded_u=False)
    u, delta, A, B, C, D, delta_bias, z = mixer.scan_inputs(torch.randn(2, 13, 16))
    # direction-major: (K, B, L, E) memory, each direction's (B * L, E) rows one matrix for the projections
    assert u.permute(1, 0, 3, 2).is_contiguous() and delta.permute(1, 0, 3, 2).is_contiguous()


def test_causal_conv_keeps_channels_last():
    conv = torch.nn.Conv1d(8, 8, 4, groups=8, padding=3)
    x = torch.randn(2, 11, 8).transpose(1, 2)  # (B, C, L), channels-last
    for reverse in (False, True):
        y = causal_depthwise_conv1d(x, conv, reverse)
        assert y.shape == (2, 8, 11) and y.stride(1) == 1
        expected = causal_depthwise_conv1d(x.contiguous(), conv, reverse)
        assert expected.stride(-1) == 1  # a contiguous x keeps the (B, C, L) layout
        torch.testing.assert_close(y, expected)


@pytest.mark.parametrize('channels_last_input', [False, True])
@pytest.mark.parametrize('make', [
    lambda: MobileMambaSelectiveScan2d(12),
    lambda: MobileMambaSelectiveScan2d(12, d_state=4, scan='cross', d_conv=1),
    lambda: VMambaSelectiveScan2d(12),
    lambda: VMambaSelectiveScan2d(12, d_state=4, gate=True),
    lambda: VMambaSelectiveScan2d(12, d_state=2, scan='cross', shared_groups=2),
], ids=['ss2d', 'ss2d_noconv', 'vss_noz', 'vss_gate', 'vss_shared'])
def test_2d_mixers_hand_channels_last(scan_calls, make, channels_last_input):
    mixer = make().eval()
    x = torch.randn(2, 12, 5, 7)
    if channels_last_input:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = mixer(x)
    assert y.shape == x.shape
    _check_channels_last(scan_calls, expanded_u=True, shared_x_dbl=getattr(mixer, 'shared_groups', 1) == 1)


def test_mair_mixer_hands_channels_last(scan_calls):
    mixer = MaIRSelectiveScan2d(12, d_state=4, scan_len=2)
    y = mixer(torch.randn(2, 6, 5, 12))
    assert y.shape == (2, 6, 5, 12)
    _check_channels_last(scan_calls, expanded_u=True)


@pytest.mark.parametrize('name, expanded_u', [
    ('test_vim', False), ('test_lbvim', False), ('test_shufflemamba', False), ('test_mobilemamba', True),
    ('test_atrousmamba', True), ('test_mair', True)])
def test_models_hand_channels_last(scan_calls, name, expanded_u):
    model = timm.create_model(name).eval()
    with torch.no_grad():
        model(torch.randn(1, *model.pretrained_cfg['input_size']))
    _check_channels_last(scan_calls, expanded_u, shared_x_dbl=name != 'test_atrousmamba')


@pytest.mark.parametrize('name', ['test_vim', 'test_mair'])
def test_in_proj_runs_through_its_module(name):
    """The layout work must not bypass `in_proj`: hooks, LoRA-style wrappers and per-module FLOP counts rely
    on the module being called."""
    model = timm.create_model(name).eval()
    mixers = [m for m in model.modules() if isinstance(m, (MambaMixer, MaIRSelectiveScan2d))]
    assert mixers
    seen = []
    for m in mixers:
        m.in_proj.register_forward_hook(lambda mod, args, out: seen.append(mod))
    size = model.pretrained_cfg['input_size'][1:]
    with torch.no_grad():
        model(torch.randn(1, 3, *size))
    assert len(seen) == len(mixers)
