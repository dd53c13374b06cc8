"""MobileMamba: parameter counts, BN fusion, the Haar wavelet layers, official checkpoints, backbone behaviour.

The timm API contract (features_only, FX, meta builds, ...) is checked for `test_mobilemamba` by
tests/test_timm_contract.py; here only what is specific to this family.
"""
import copy
import math
import re

import numpy as np
import pytest
import timm
import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2

import vimamba  # noqa: F401  registers the models
from vimamba.checkpoint import CheckpointMismatchError
from vimamba.layers.wavelet import WaveletConv, WaveletTransform2d, wavelet_filters
from vimamba.models.mobilemamba import MobileMamba, checkpoint_filter_fn

# (params with the fixed Haar filters, trainable params) [measured on the official code]
SPEC_PARAMS = {
    'mobilemamba_t2': (8_836_890, 8_806_682),
    'mobilemamba_t4': (14_176_090, 14_137_690),
    'mobilemamba_s6': (15_036_632, 14_996_696),
    'mobilemamba_b1': (17_122_849, 17_070_625),
    'mobilemamba_b2': (17_122_849, 17_070_625),
    'mobilemamba_b4': (17_122_849, 17_070_625),
}
SPEC_IMG_SIZE = {'t2': 192, 't4': 192, 's6': 224, 'b1': 256, 'b2': 384, 'b4': 512}
B1_FUSED_PARAMS_WITH_FILTERS = 17_079_424  # official, BN folded (replace_batchnorm)
B1_OFFICIAL_KEYS = 707  # entries of the official B1 state dict


def _haar_filter_elements(model: nn.Module) -> int:
    return sum(m.num_filter_elements for m in model.modules() if isinstance(m, WaveletTransform2d))


def _num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomise_bn(model: nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, so folding is actually exercised."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)


# ---------------------------------------------------------------------------------------------------------
# Variants

@pytest.mark.parametrize('name', sorted(SPEC_PARAMS))
def test_param_counts_match_spec(name):
    total, trainable = SPEC_PARAMS[name]
    model = timm.create_model(name, device='meta')
    assert _num_params(model) == trainable
    assert _num_params(model) + _haar_filter_elements(model) == total
    assert all(p.requires_grad for p in model.parameters())
    # official image sizes, crop 0.875, bicubic, ImageNet mean/std, MIT, paper, code
    cfg = model.pretrained_cfg
    size = SPEC_IMG_SIZE[name.split('_')[1]]
    assert cfg['input_size'] == (3, size, size)
    assert cfg['pool_size'] == (math.ceil(size / 64),) * 2
    assert cfg['crop_pct'] == 0.875 and cfg['interpolation'] == 'bicubic'
    assert cfg['mean'] == timm.data.IMAGENET_DEFAULT_MEAN and cfg['std'] == timm.data.IMAGENET_DEFAULT_STD
    assert cfg['license'] == 'mit' and cfg['paper_ids'] == 'arXiv:2411.15941'
    assert cfg['origin_url'] == 'https://github.com/lewandofskee/MobileMamba'


def test_variant_tags():
    # 300-epoch and 1000-epoch + KD weights (Google Drive files, named in the cfg notes)
    for v in SPEC_IMG_SIZE:
        for tag in ('in1k', 'kd_in1k'):
            cfg = timm.models.get_pretrained_cfg(f'mobilemamba_{v}.{tag}')
            assert cfg is not None and cfg.notes[0].startswith('https://drive.google.com/')


def test_b1_fused_param_count_on_meta():
    model = timm.create_model('mobilemamba_b1', device='meta').eval()
    model.fuse()
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert _num_params(model) + _haar_filter_elements(model) == B1_FUSED_PARAMS_WITH_FILTERS


def test_channel_splits_match_spec():
    # official (C, global, local, identity) per stage, B1 and T2
    expected = {
        'mobilemamba_b1': [(200, 160, 40, 0), (376, 256, 75, 45), (448, 272, 134, 42)],
        'mobilemamba_t2': [(144, 112, 28, 4), (272, 192, 54, 26), (368, 224, 110, 34)],
    }
    for name, splits in expected.items():
        model = timm.create_model(name, device='meta')
        got = [(s.blocks[0].mixer.global_dim + s.blocks[0].mixer.local_dim + s.blocks[0].mixer.identity_dim,
                s.blocks[0].mixer.global_dim, s.blocks[0].mixer.local_dim, s.blocks[0].mixer.identity_dim)
               for s in model.stages]
        assert got == splits


# ---------------------------------------------------------------------------------------------------------
# The 2-direction SS2D against the recurrence of docs/ops.md, step by step in float64

def _ss2d_by_loop(m, x):
    b, _, h, w = x.shape
    x, z = m.in_proj(x).chunk(2, 1)
    z = nn.functional.silu(z)
    u = nn.functional.silu(m.dwconv(x)).flatten(2).double()
    length, di, n = h * w, m.d_inner, m.d_state
    y = torch.zeros(b, di, length, dtype=torch.float64)
    raster = torch.arange(length)
    for k, order in enumerate((raster, raster.flip(0))):  # direction 1 = reversed raster
        dbl = torch.einsum('cd,bdl->bcl', m.x_proj_weight[k].double(), u)
        dt, bm, cm = dbl.split([m.dt_rank, n, n], 1)
        dt = torch.einsum('dr,brl->bdl', m.dt_proj_weight[k].double(), dt) + m.dt_proj_bias[k].double()[:, None]
        dt = nn.functional.softplus(dt)
        a = -torch.exp(m.A_log.double().view(2, di, n)[k])
        d = m.D.double().view(2, di)[k]
        state = torch.zeros(b, di, n, dtype=torch.float64)
        for t in order.tolist():  # token t, in this direction's visiting order
            state = torch.exp(dt[:, :, t, None] * a) * state + dt[:, :, t, None] * bm[:, None, :, t] * u[:, :, t, None]
            y[:, :, t] += (state * cm[:, None, :, t]).sum(-1) + d * u[:, :, t]
    y = m.out_norm(y.float().view(b, di, h, w)) * z
    return m.out_proj(y)


def test_ss2d_matches_recurrence():
    from vimamba.models.mobilemamba import MobileMambaSelectiveScan2d
    m = MobileMambaSelectiveScan2d(16, d_state=1, ssm_ratio=2).eval()
    with torch.no_grad():  # move away from the symmetric init so directions and channels differ
        for p in (m.A_log, m.D, m.dt_proj_bias):
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(2, 16, 3, 5)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _ss2d_by_loop(m, x), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# BatchNorm folding

def test_fuse_matches_unfused():
    model = timm.create_model('test_mobilemamba').eval()
    _randomise_bn(model)
    x = torch.randn(2, 3, 80, 72)
    with torch.no_grad():
        ref = model(x)
        via_timm = timm.utils.reparameterize_model(model)  # deep copy
        via_fuse = copy.deepcopy(model).fuse()
        out_timm, out_fuse = via_timm(x), via_fuse(x)
    for fused in (via_timm, via_fuse):
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    assert (out_timm - ref).abs().max().item() < 1e-4
    assert (out_fuse - ref).abs().max().item() < 1e-4
    # BN folding removes two tensors per BN and adds one bias per conv / keeps the linear bias
    assert _num_params(via_fuse) < _num_params(model)


def test_fuse_refuses_training_mode():
    model = timm.create_model('test_mobilemamba', num_classes=0)
    with pytest.raises(RuntimeError, match='eval'):
        model.fuse()


# ---------------------------------------------------------------------------------------------------------
# Haar wavelet layers

@pytest.mark.parametrize('size', [(8, 8), (7, 9), (1, 1), (15, 4)])
def test_wavelet_perfect_inversion(size):
    wt = WaveletTransform2d(5, dtype=torch.float64)
    x = torch.randn(2, 5, *size, dtype=torch.float64)
    bands = wt(x)
    assert bands.shape == (2, 5, 4, math.ceil(size[0] / 2), math.ceil(size[1] / 2))
    assert torch.allclose(wt.inverse(bands, size), x, atol=1e-12)


def test_wavelet_bands_equal_pywavelets():
    pywt = pytest.importorskip('pywt')
    x = np.random.default_rng(0).standard_normal((6, 10))
    c_a, (c_h, c_v, c_d) = pywt.dwt2(x, 'db1')
    bands = WaveletTransform2d(1, dtype=torch.float64)(torch.from_numpy(x)[None, None])[0, 0].numpy()
    for band, ref in zip(bands, (c_a, c_h, c_v, c_d)):
        np.testing.assert_allclose(band, ref, atol=1e-12)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_haar_filters_computed_in_torch_equal_pywavelets(dtype):
    """The Haar taps are computed without pywavelets; they equal the filters built from pywt.Wavelet('db1')."""
    pywt = pytest.importorskip('pywt')
    w = pywt.Wavelet('db1')

    def outer(lo, hi):
        return torch.stack([lo[None] * lo[:, None], lo[None] * hi[:, None], hi[None] * lo[:, None],
                            hi[None] * hi[:, None]])[:, None]
    dec, rec = wavelet_filters('db1', dtype=dtype)
    assert torch.equal(dec, outer(torch.tensor(w.dec_lo[::-1], dtype=dtype), torch.tensor(w.dec_hi[::-1], dtype=dtype)))
    assert torch.equal(rec, outer(torch.tensor(w.rec_lo, dtype=dtype), torch.tensor(w.rec_hi, dtype=dtype)))


def test_mobilemamba_needs_no_pywavelets(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, 'pywt', None)  # import pywt -> ImportError
    model = timm.create_model('test_mobilemamba')
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    with pytest.raises(ImportError, match=r"wavelet='db2' needs pywavelets"):
        WaveletTransform2d(3, 'db2')


def test_wavelet_filters_are_fixed_buffers():
    conv = WaveletConv(3, kernel_size=5)
    names = {n for n, _ in conv.named_parameters()}
    assert names == {'conv.weight', 'scale'}
    assert set(conv.state_dict()) == {'conv.weight', 'scale'}
    assert conv.wavelet.dwt_filter.shape == (12, 1, 2, 2)
    assert torch.allclose(conv.wavelet.dwt_filter.abs(), torch.full((12, 1, 2, 2), 0.5))  # 1/sqrt(2)^2
    # a meta build materialised with to_empty() gets its filters back
    meta = timm.create_model('test_mobilemamba', device='meta')
    meta.to_empty(device='cpu')
    meta.init_weights()
    for m in meta.modules():
        if isinstance(m, WaveletTransform2d):
            assert torch.equal(m.dwt_filter, WaveletTransform2d(m.channels).dwt_filter)
            assert torch.equal(m.idwt_filter, WaveletTransform2d(m.channels).idwt_filter)


# ---------------------------------------------------------------------------------------------------------
# Training

def test_train_step_cpu():
    model = timm.create_model('test_mobilemamba', num_classes=10, drop_path_rate=0.1)
    model.train()
    optimizer = create_optimizer_v2(model, 'adamw', lr=1e-3, weight_decay=0.05)
    # 96 px: the last stage sees 2x2 tokens (at 1x1 the state never carries over and A gets no gradient)
    x, target = torch.randn(2, 3, 96, 96), torch.randint(0, 10, (2,))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    # Two steps: every residual branch ends in a BN with weight 0, so at the first step the layers
    # inside the branches get zero gradients; after one update they all learn.
    for _ in range(2):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), target)
        loss.backward()
        assert torch.isfinite(loss)
        no_grad = [n for n, p in model.named_parameters() if p.grad is None]
        assert not no_grad, f'parameters without gradient: {no_grad}'
        optimizer.step()
    unchanged = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged, f'parameters not updated: {unchanged}'


# ---------------------------------------------------------------------------------------------------------
# Official checkpoints: a synthetic state dict built in the official key names

def _official_state_dict(embed_dim, depths, num_classes=1000, kernels=(7, 5, 3),
                         global_ratio=(0.8, 0.7, 0.6), local_ratio=(0.2, 0.2, 0.3), fill=None):
    """Keys and shapes of the official MobileMamba state dict, written from the official layout, not from our model."""
    sd = {}
    fill = fill or (lambda shape: torch.randn(shape))

    def conv_bn(prefix, cin, cout, k=1, groups=1):
        sd[f'{prefix}.c.weight'] = fill((cout, cin // groups, k, k))
        for s in ('weight', 'bias', 'running_mean'):
            sd[f'{prefix}.bn.{s}'] = fill((cout,))
        sd[f'{prefix}.bn.running_var'] = fill((cout,)).abs() + 0.5
        sd[f'{prefix}.bn.num_batches_tracked'] = torch.tensor(0)

    def bn(prefix, c):
        for s in ('weight', 'bias', 'running_mean'):
            sd[f'{prefix}.{s}'] = fill((c,))
        sd[f'{prefix}.running_var'] = fill((c,)).abs() + 0.5
        sd[f'{prefix}.num_batches_tracked'] = torch.tensor(0)

    def dw_ffn(prefix_dw, prefix_ffn, c):
        conv_bn(f'{prefix_dw}.m', c, c, 3, groups=c)
        conv_bn(f'{prefix_ffn}.m.pw1', c, 2 * c)
        conv_bn(f'{prefix_ffn}.m.pw2', 2 * c, c)

    def haar(c):
        r = 2 ** -0.5  # pywt.Wavelet('db1').dec_lo / dec_hi, reversed
        lo, hi = torch.tensor([r, r]), torch.tensor([r, -r])
        f = torch.stack([lo[None] * lo[:, None], lo[None] * hi[:, None], hi[None] * lo[:, None],
                         hi[None] * hi[:, None]])[:, None]
        return f.repeat(c, 1, 1, 1)

    def block(prefix, c, gr, lr, k):
        dw_ffn(f'{prefix}.dw0', f'{prefix}.ffn0', c)
        dw_ffn(f'{prefix}.dw1', f'{prefix}.ffn1', c)
        n = int(gr * c)
        cg = n if n % 16 == 0 else (n // 16 * 16 if n % 16 < 8 else n // 16 * 16 + 16)
        cl = c - cg if cg + int(lr * c) > c else int(lr * c)
        attn = f'{prefix}.mixer.m.attn'
        if cl:
            sd[f'{attn}.local_op.dwconv3x3.weight'] = fill((cl, 1, k, k))
            bn(f'{attn}.local_op.bn1', cl)
            sd[f'{attn}.local_op.dwconv1x1.weight'] = fill((cl, 1, 1, 1))
            bn(f'{attn}.local_op.bn2', cl)
        g = f'{attn}.global_op'
        sd[f'{g}.wt_filter'] = haar(cg)
        sd[f'{g}.iwt_filter'] = haar(cg)
        sd[f'{g}.base_scale.weight'] = fill((1, cg, 1, 1))
        sd[f'{g}.wavelet_convs.0.weight'] = fill((4 * cg, 1, k, k))
        sd[f'{g}.wavelet_scale.0.weight'] = fill((1, 4 * cg, 1, 1))
        di, r = 2 * cg, math.ceil(cg / 16)
        a = f'{g}.global_atten'
        sd[f'{a}.x_proj_weight'] = fill((2, r + 2, di))
        sd[f'{a}.Ds'] = fill((2 * di,))
        sd[f'{a}.A_logs'] = fill((2 * di, 1))
        sd[f'{a}.dt_projs_weight'] = fill((2, di, r))
        sd[f'{a}.dt_projs_bias'] = fill((2, di))
        sd[f'{a}.out_norm.weight'] = fill((di,))
        sd[f'{a}.out_norm.bias'] = fill((di,))
        conv_bn(f'{a}.in_proj', cg, 2 * di)
        sd[f'{a}.conv2d.weight'] = fill((di, 1, 3, 3))
        sd[f'{a}.conv2d.bias'] = fill((di,))
        conv_bn(f'{a}.out_proj', di, cg)
        conv_bn(f'{attn}.proj.1', c, c)

    c0 = embed_dim[0]
    for i, (cin, cout) in enumerate([(3, c0 // 8), (c0 // 8, c0 // 4), (c0 // 4, c0 // 2), (c0 // 2, c0)]):
        conv_bn(f'patch_embed.{2 * i}', cin, cout, 3)
    for s, c in enumerate(embed_dim):
        name = f'blocks{s + 1}'
        offset = 0
        if s > 0:
            cin = embed_dim[s - 1]
            dw_ffn(f'{name}.0.0', f'{name}.0.1', cin)
            conv_bn(f'{name}.1.conv1', cin, 4 * cin)
            conv_bn(f'{name}.1.conv2', 4 * cin, 4 * cin, 3, groups=4 * cin)
            rd = cin  # make_divisible(4 * cin * 0.25, 8) for widths that are multiples of 8
            sd[f'{name}.1.se.fc1.weight'] = fill((rd, 4 * cin, 1, 1))
            sd[f'{name}.1.se.fc1.bias'] = fill((rd,))
            sd[f'{name}.1.se.fc2.weight'] = fill((4 * cin, rd, 1, 1))
            sd[f'{name}.1.se.fc2.bias'] = fill((4 * cin,))
            conv_bn(f'{name}.1.conv3', 4 * cin, c)
            dw_ffn(f'{name}.2.0', f'{name}.2.1', c)
            offset = 3
        for j in range(depths[s]):
            block(f'{name}.{j + offset}', c, global_ratio[s], local_ratio[s], kernels[s])
    bn('head.bn', embed_dim[-1])
    sd['head.l.weight'] = fill((num_classes, embed_dim[-1]))
    sd['head.l.bias'] = fill((num_classes,))
    return sd


def test_official_key_count_b1():
    sd = _official_state_dict((200, 376, 448), (2, 3, 2), fill=lambda shape: torch.empty(shape, device='meta'))
    assert len(sd) == B1_OFFICIAL_KEYS
    model = timm.create_model('mobilemamba_b1', device='meta')
    converted = checkpoint_filter_fn(sd, model)
    assert {k: tuple(v.shape) for k, v in converted.items()} == \
        {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_checkpoint_filter_loads_official_ema_weights():
    model = timm.create_model('test_mobilemamba', num_classes=10)
    small = lambda shape: 0.1 * torch.randn(shape)  # noqa: E731  (keeps the random network finite)
    ema = _official_state_dict(model.embed_dim, (1, 1, 1), num_classes=10, fill=small)
    raw = _official_state_dict(model.embed_dim, (1, 1, 1), num_classes=10, fill=small)
    converted = checkpoint_filter_fn({'net': raw, 'net_E': ema, 'epoch': 300}, model)
    model.load_state_dict(converted, strict=True)
    assert torch.equal(model.head.fc.weight, ema['head.l.weight'])
    assert torch.equal(model.stages[0].blocks[0].mixer.global_branch.ssm.A_log,
                       ema['blocks1.0.mixer.m.attn.global_op.global_atten.A_logs'])
    # the trainer's non-EMA weights when there is no EMA; a bare state dict as it is
    assert torch.equal(checkpoint_filter_fn({'net': raw}, model)['head.fc.bias'], raw['head.l.bias'])
    assert torch.equal(checkpoint_filter_fn(raw, model)['head.fc.bias'], raw['head.l.bias'])
    # a model without classifier drops the head weights
    headless = timm.create_model('test_mobilemamba', num_classes=0)
    headless.load_state_dict(checkpoint_filter_fn(ema, headless), strict=True)
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 3, 64, 64))).all()


def test_checkpoint_filter_through_create_model(tmp_path):
    ckpt = tmp_path / 'mobilemamba_test.pth'
    sd = _official_state_dict((48, 64, 96), (1, 1, 1))
    torch.save({'net_E': sd}, ckpt)
    model = timm.create_model('test_mobilemamba', pretrained=True, pretrained_cfg_overlay=dict(file=str(ckpt)))
    assert torch.equal(model.stem.conv1.conv.weight, sd['patch_embed.0.c.weight'])
    # timm drops the classifier for another num_classes and sums the first conv over RGB for in_chans=1
    other = timm.create_model('test_mobilemamba', pretrained=True, num_classes=5, in_chans=1,
                              pretrained_cfg_overlay=dict(file=str(ckpt)))
    assert torch.equal(other.head.norm.weight, sd['head.bn.weight'])
    assert other.stem.conv1.conv.weight.shape[1] == 1


def test_checkpoint_filter_is_strict():
    model = timm.create_model('test_mobilemamba', num_classes=10)
    sd = _official_state_dict(model.embed_dim, (1, 1, 1), num_classes=10)
    bad = dict(sd)
    del bad['blocks2.1.se.fc1.bias']
    bad['blocks1.0.mixer.m.attn.extra.weight'] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError) as err:
        checkpoint_filter_fn(bad, model)
    assert 'stages.1.downsample.merge.se.fc1.bias' in str(err.value)
    assert 'stages.0.blocks.0.mixer.extra.weight' in str(err.value)
    bad = dict(sd)
    bad['blocks1.0.mixer.m.attn.global_op.wt_filter'] = torch.zeros_like(bad['blocks1.0.mixer.m.attn.global_op.wt_filter'])
    with pytest.raises(ValueError, match='Haar'):
        checkpoint_filter_fn(bad, model)


# ---------------------------------------------------------------------------------------------------------
# Feature levels (backbone use goes through vimamba.downstream.mm.VimambaBackbone, tested in test_mm.py)

def test_feature_levels():
    model = timm.create_model('test_mobilemamba').eval()
    assert [f['reduction'] for f in model.feature_info] == [16, 16, 32, 64]
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        maps = model.forward_intermediates(x, indices=[1, 2, 3], stop_early=True, intermediates_only=True)
        features = timm.create_model('test_mobilemamba', features_only=True).eval()(x)
        stem_and_last = timm.create_model('test_mobilemamba', features_only=True, out_indices=(0, 3)).eval()(x)
    assert [tuple(m.shape) for m in maps] == [(1, 48, 4, 6), (1, 64, 2, 3), (1, 96, 1, 2)]
    assert [tuple(m.shape) for m in features] == [(1, 48, 4, 6), (1, 64, 2, 3), (1, 96, 1, 2)]
    assert [tuple(m.shape) for m in stem_and_last] == [(1, 48, 4, 6), (1, 96, 1, 2)]


@pytest.mark.parametrize('kwargs, message', [
    (dict(depth=(1, 1, 1)), "test_mobilemamba: keyword argument 'depth' is no longer accepted; pass depths"),
    (dict(frozen_stages=1), "test_mobilemamba: keyword argument 'frozen_stages' is no longer accepted; it is an "
                            "option of vimamba.downstream.mm.VimambaBackbone"),
    (dict(norm_eval=True), "test_mobilemamba: keyword argument 'norm_eval' is no longer accepted; it is an option "
                           "of vimamba.downstream.mm.VimambaBackbone"),
])
def test_retired_keywords_name_what_replaces_them(kwargs, message):
    with pytest.raises(TypeError, match=re.escape(message)):
        timm.create_model('test_mobilemamba', device='meta', **kwargs)
