"""AtrousMamba backbone and the VSS block: parameter counts, the atrous scans the blocks really run, rate clipping
and its errors, VMamba checkpoint loading. The timm contract itself is in test_timm_contract.py."""
import pytest
import torch
import timm

import vimamba  # noqa: F401  registers the models
from vimamba import ops
from vimamba.checkpoint import CheckpointMismatchError
from vimamba.layers.vss import VMambaSelectiveScan2d, VSSBlock
from vimamba.models.atrousmamba import checkpoint_filter_fn
from vimamba.scans import (
    AtrousPhaseOuterScan, AtrousWindowRateScan, MultiRateAtrousScan, atrous_phase_outer_order, atrous_window_order,
    effective_atrous_rate, get_pattern)

# VMamba v2 parameter counts measured on the official code: AWVSS has VMamba's shapes.
SPEC_PARAMS = {
    'atrousmamba_tiny': 30_705_832,
    'atrousmamba_small': 50_147_752,
    'atrousmamba_base': 88_557_800,
    'atrousmamba_tiny_s1l8': 30_249_064,
    'atrousmamba_small_s1l20': 49_012_840,
    'atrousmamba_base_s1l20': 86_614_504,
}


@pytest.mark.parametrize('name', sorted(SPEC_PARAMS))
def test_parameter_count_equals_vmamba(name):
    with torch.device('meta'):
        model = timm.create_model(name, device='meta')
    assert sum(p.numel() for p in model.parameters()) == SPEC_PARAMS[name]
    assert [i['reduction'] for i in model.feature_info] == [4, 8, 16, 32]


def test_rates_cycle_over_blocks():
    with torch.device('meta'):
        model = timm.create_model('atrousmamba_tiny', device='meta')
        per_stage = timm.create_model(
            'test_atrousmamba', device='meta', depths=(3, 2, 1, 1), atrous_rates=((1, 3), (2,), (1,), (5,)))
    rates = [[b.mixer.pattern.rate for b in s.blocks] for s in model.stages]
    assert rates == [[1, 2], [1, 2], [1, 2, 4, 1, 2], [1, 2]]
    assert {b.mixer.pattern.window for s in model.stages for b in s.blocks} == {8}
    assert [[b.mixer.pattern.rate for b in s.blocks] for s in per_stage.stages] == [[1, 3, 1], [2, 2], [1], [5]]
    with pytest.raises(ValueError, match='atrous_rates'):
        timm.create_model('test_atrousmamba', atrous_rates=((1, 2), (1,)))
    with pytest.raises(ValueError, match='rate_overflow'):
        timm.create_model('test_atrousmamba', rate_overflow='pad')


def test_effective_rate_clips_to_grid():
    # Proposed: r * w <= max(H, W), largest such r, never below 1.
    assert effective_atrous_rate(56, 56, 8, 4) == 4
    assert effective_atrous_rate(28, 28, 8, 4) == 3
    assert effective_atrous_rate(14, 10, 8, 2) == 1
    assert effective_atrous_rate(7, 7, 8, 2) == 1
    assert effective_atrous_rate(8, 40, 8, 4) == 4  # the longer side counts (the (H, 2W) decoder grids)
    with pytest.raises(ValueError, match=r'rate=2 x window=8 .* 7x7 grid'):
        effective_atrous_rate(7, 7, 8, 2, 'error')


def test_model_runs_the_atrous_orders(scan_calls):
    """Every block hands the op the 'atrous_window' order of its own (clipped) rate for the grid it sees."""
    model = timm.create_model('test_atrousmamba', num_classes=0).eval()  # window 4, rates (1, 2)
    with torch.no_grad():
        model(torch.randn(1, 3, 64, 64))
    seen = [order.index for _, order in scan_calls]
    # Grids 16, 8, 4, 2; stage 0 has two blocks (rates 1, 2), the others one (rate 1).
    expected = [(16, 1), (16, 2), (8, 1), (4, 1), (2, 1)]
    assert len(seen) == len(expected)
    for index, (side, rate) in zip(seen, expected):
        ref = get_pattern('atrous_window', window=4, rate=rate).order(side, side).index
        torch.testing.assert_close(index, ref, rtol=0, atol=0)
    # Rate 2 on a 16x16 grid, window 4: step 1 of the first window is 2 columns to the right.
    assert seen[1][0, :3].tolist() == [0, 2, 4]


def test_rate_overflow_error_names_grid_window_rate():
    model = timm.create_model('test_atrousmamba', rate_overflow='error', num_classes=0).eval()
    with pytest.raises(ValueError, match=r'rate=1 x window=4 spans 4 cells, more than the 2x2 grid'):
        with torch.no_grad():
            model(torch.randn(1, 3, 64, 64))
    with torch.no_grad():  # a large enough input fits every stage: 128 px -> grids 32, 16, 8, 4
        assert model(torch.randn(1, 3, 128, 128)).shape == (1, 128)
    with pytest.raises(ValueError, match='window'):
        AtrousWindowRateScan(window=0)


def test_mixer_reads_through_the_index():
    """The mixer equals scanning permuted copies of the tokens one direction at a time and scattering back."""
    torch.manual_seed(0)
    mixer = VMambaSelectiveScan2d(8, d_state=2, scan=get_pattern('atrous_window', window=2, rate=2)).eval()
    with torch.no_grad():
        mixer.A_log.add_(0.3 * torch.randn_like(mixer.A_log))
    x = torch.randn(2, 8, 6, 5)
    with torch.no_grad():
        out = mixer(x)
        # The same computation with explicit gathers.
        h, w = x.shape[-2:]
        order = mixer.pattern.order(h, w)
        t = mixer.act(mixer.dwconv(mixer.in_proj(x))).flatten(2)
        total = torch.zeros_like(t)
        for k in range(4):
            idx = order.index[k]
            u = t[..., idx]
            dbl = torch.einsum('bdl,cd->bcl', u, mixer.x_proj_weight[k])
            dt, B, C = torch.split(dbl, [mixer.dt_rank, mixer.d_state, mixer.d_state], dim=1)
            delta = torch.einsum('brl,dr->bdl', dt, mixer.dt_proj_weight[k])
            d_in = mixer.d_inner
            y = ops.selective_scan(
                u, delta, -torch.exp(mixer.A_log[k * d_in:(k + 1) * d_in]), B, C,
                D=mixer.D[k * d_in:(k + 1) * d_in], delta_bias=mixer.dt_proj_bias[k], delta_softplus=True)
            total[..., idx] += y
        ref = mixer.out_proj(mixer.out_norm(total.reshape(2, -1, h, w)))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_gated_form_and_init():
    noz = VSSBlock(32, scan='cross')
    gated = VSSBlock(32, scan='cross', gate=True)
    extra = sum(p.numel() for p in gated.parameters()) - sum(p.numel() for p in noz.parameters())
    assert extra == 32 * 64  # in_proj gives 2 * Di channels instead of Di
    assert gated(torch.randn(1, 32, 5, 7)).shape == (1, 32, 5, 7)
    mixer = noz.mixer
    # init v0: A = -(1..N) per channel and direction, D = 1, softplus(dt bias) in [1e-3, 0.1].
    torch.testing.assert_close(mixer.A_log, torch.zeros_like(mixer.A_log))  # N = 1 -> log 1
    assert torch.equal(mixer.D, torch.ones_like(mixer.D))
    dt = torch.nn.functional.softplus(mixer.dt_proj_bias)
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001
    assert mixer.dt_proj_weight.abs().max() <= mixer.dt_rank ** -0.5


def _to_vmamba_names(state_dict, num_stages=4):
    """Our names -> VMamba v2's (Linear weights flattened to 2-D), as a released checkpoint has them."""
    stem = {'conv1': '0', 'norm1': '2', 'conv2': '5', 'norm2': '7'}
    mixer = {'dwconv': 'conv2d', 'A_log': 'A_logs', 'D': 'Ds', 'dt_proj_weight': 'dt_projs_weight',
             'dt_proj_bias': 'dt_projs_bias'}
    out = {}
    for key, value in state_dict.items():
        p = key.split('.')
        if p[0] == 'stem':
            p = ['patch_embed', stem[p[1]]] + p[2:]
        elif p[0] in ('norm', 'head'):
            p = ['classifier', p[0]] + p[1:]
        elif p[2] == 'downsample':
            p = ['layers', str(int(p[1]) - 1), 'downsample', {'conv': '1', 'norm': '3'}[p[3]]] + p[4:]
        else:
            if p[4] == 'mixer':
                p[4] = 'op'
                p[5] = mixer.get(p[5], p[5])
            p = ['layers', p[1]] + p[2:]
        if value.dim() == 4 and value.shape[-2:] == (1, 1) and 'conv2d' not in p:
            value = value.flatten(1)
        out['.'.join(p)] = value
    return out


def test_vmamba_checkpoint_loads():
    src = timm.create_model('test_atrousmamba', num_classes=10).eval()
    vmamba_sd = _to_vmamba_names(src.state_dict())
    assert 'layers.0.blocks.1.op.x_proj_weight' in vmamba_sd and 'layers.0.downsample.1.weight' in vmamba_sd
    dst = timm.create_model('test_atrousmamba', num_classes=10).eval()
    dst.load_state_dict(checkpoint_filter_fn({'model': vmamba_sd}, dst))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x))

    del vmamba_sd['layers.0.blocks.0.op.Ds']
    vmamba_sd['outnorm0.weight'] = torch.ones(16)  # ChangeMamba encoder norms: dropped, not an error
    with pytest.raises(CheckpointMismatchError, match=r'missing keys \(1\): stages\.0\.blocks\.0\.mixer\.D'):
        checkpoint_filter_fn(vmamba_sd, dst)
    # ChangeMamba's tiny encoder is shallower than VMamba-T: non-strict keeps what matches.
    shallow = timm.create_model('test_atrousmamba', depths=(1, 1, 1, 1), num_classes=10)
    kept = checkpoint_filter_fn(vmamba_sd, shallow, strict=False)
    assert 'stages.0.blocks.0.norm.weight' in kept and not any(k.startswith('stages.0.blocks.1') for k in kept)


def test_input_sizes():
    model = timm.create_model('test_atrousmamba', num_classes=0).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 70, 50)).shape == (1, 128)  # odd grids: clipped border blocks
    fixed = timm.create_model('test_atrousmamba', dynamic_img_size=False).eval()
    with pytest.raises(ValueError, match=r'img_size=\(64, 64\)'):
        fixed(torch.randn(1, 3, 96, 96))
    fixed.set_input_size(96)
    with torch.no_grad():
        assert fixed(torch.randn(1, 3, 96, 96)).shape == (1, 1000)


def test_timm_pretrained_path_with_a_vmamba_file(tmp_path):
    """`create_model(pretrained=True, pretrained_cfg_overlay=dict(file=...))` reads a VMamba-format file, also with
    another class count (fresh head) and num_classes=0."""
    src = timm.create_model('test_atrousmamba').eval()
    path = str(tmp_path / 'vmamba.pth')
    torch.save({'model': _to_vmamba_names(src.state_dict()), 'epoch': 3}, path)
    x = torch.randn(1, 3, 64, 64)
    for kwargs in (dict(), dict(num_classes=5), dict(num_classes=0)):
        model = timm.create_model('test_atrousmamba', pretrained=True, pretrained_cfg_overlay=dict(file=path),
                                  **kwargs).eval()
        with torch.no_grad():
            torch.testing.assert_close(model.forward_features(x), src.forward_features(x))


def test_phase_outer_alternative():
    """Alternative (a): dilation phases outermost over the whole image, each phase cut into windows."""
    # 8x8, w=2, r=2: phase (0, 0) is rows/cols {0, 2, 4, 6}; its first window is (0,0) (0,2) (2,0) (2,2), then (0,4)...
    assert atrous_phase_outer_order(8, 8, 2, 2)[:8].tolist() == [0, 2, 16, 18, 4, 6, 20, 22]
    assert atrous_window_order(8, 8, 2, 2)[:8].tolist() == [0, 2, 16, 18, 1, 3, 17, 19]  # window-outer differs
    for h in range(1, 11):
        for w in range(1, 11):
            for window in (1, 2, 3, 8):
                for rate in (1, 2, 3):
                    order = atrous_phase_outer_order(h, w, window, rate)
                    assert torch.equal(order.sort().values, torch.arange(h * w))
                    if rate == 1:
                        assert torch.equal(order, atrous_window_order(h, w, window, 1))
    scan = AtrousPhaseOuterScan(window=2, rate=2).order(6, 4)
    torch.testing.assert_close(scan.index[2], scan.index[0].flip(0))
    with torch.device('meta'):
        model = timm.create_model('test_atrousmamba', device='meta', atrous_order='phase')
    assert isinstance(model.stages[0].blocks[1].mixer.pattern.pattern_for(16, 16), AtrousPhaseOuterScan)
    with pytest.raises(ValueError, match='atrous_order'):
        timm.create_model('test_atrousmamba', atrous_order='diagonal')


def test_parallel_rates_alternative():
    """Alternative (b): all rates in every block, one shared weight set, outputs averaged."""
    torch.manual_seed(0)
    multi = VMambaSelectiveScan2d(8, d_state=2, scan=MultiRateAtrousScan(window=2, rates=(1, 2, 3)),
                                  shared_groups=3)
    with torch.no_grad():
        multi.A_log.add_(0.3 * torch.randn_like(multi.A_log))
    x = torch.randn(2, 8, 6, 7)  # 7 columns: rate 3 is clipped to 3 (2 * 3 <= 7), all three rates differ
    expected = 0
    for rate in (1, 2, 3):
        single = VMambaSelectiveScan2d(8, d_state=2, scan=AtrousWindowRateScan(window=2, rate=rate))
        single.load_state_dict(multi.state_dict())
        expected = expected + _scan_only(single, x)
    # The average is taken before the out-norm, so compare the scan outputs themselves.
    torch.testing.assert_close(_scan_only(multi, x), expected / 3, rtol=1e-5, atol=1e-6)
    with torch.device('meta'):
        cycle = timm.create_model('atrousmamba_tiny', device='meta')
        parallel = timm.create_model('atrousmamba_tiny', device='meta', atrous_mode='parallel')
    assert sum(p.numel() for p in cycle.parameters()) == sum(p.numel() for p in parallel.parameters())
    pattern = parallel.stages[2].blocks[0].mixer.pattern
    assert pattern.rates == (1, 2, 4) and pattern.order(14, 14).index.shape == (12, 196)
    with pytest.raises(ValueError, match='shared_groups'):
        VMambaSelectiveScan2d(8, scan='cross', shared_groups=3)
    with pytest.raises(ValueError, match='atrous_mode'):
        timm.create_model('test_atrousmamba', atrous_mode='aspp')


def _scan_only(mixer, x):
    """The mixer's summed (averaged) scan output before the out-norm: swap the norm and projection for identity."""
    norm, proj = mixer.out_norm, mixer.out_proj
    mixer.out_norm, mixer.out_proj = torch.nn.Identity(), torch.nn.Identity()
    try:
        with torch.no_grad():
            return mixer(x)
    finally:
        mixer.out_norm, mixer.out_proj = norm, proj
