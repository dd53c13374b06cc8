"""Vim / LBVim / ShuffleMamba: equivalences, token layouts, init, and official checkpoints.

Equivalences: bimamba v2 is two single-direction mixers on x and flip(x) sharing the
in / out projections; a reversed scan is the forward scan of the flipped sequence (LBVim's flips); LBMamba with a
window covering the sequence is a tied-parameter bidirectional scan minus the token counted twice, and with W = 1
plain Mamba; the layer shuffle is the identity in eval and puts every token back in training.
Official checkpoints are synthesised in the official key names (docs/families.md#vim), converted by tools/convert.py.
"""
import argparse
import importlib.util
import math
import os

import pytest
import torch
import torch.nn.functional as F
import timm
from timm.layers import resample_abs_pos_embed

from references import token_positions

import vimamba  # noqa: F401
from vimamba.checkpoint import CheckpointMismatchError
from vimamba.layers import MambaMixer, insert_tokens, resample_pos_embed, split_tokens
from vimamba.models.vim import layer_shuffle_order
from vimamba.ops import selective_scan
from vimamba.scans import get_pattern, lbmamba_window

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_convert():
    spec = importlib.util.spec_from_file_location('vimamba_convert', os.path.join(ROOT, 'tools', 'convert.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mixer(**kwargs):
    torch.manual_seed(0)
    mixer = MambaMixer(16, d_state=4, **kwargs).double()
    with torch.no_grad():  # a non-trivial backward dt bias (Vim's init leaves it at PyTorch's default)
        mixer.dt_proj.bias[1:].uniform_(-4, -2)
    return mixer


def _copy_direction(dst: MambaMixer, src: MambaMixer, suffix: str):
    """dst (one direction) <- src's shared projections and its `suffix` direction ('' or '_b')."""
    with torch.no_grad():
        dst.in_proj.weight.copy_(src.in_proj.weight)
        dst.out_proj.weight.copy_(src.out_proj.weight)
        k = 1 if suffix else 0
        for name in ('conv1d.weight', 'conv1d.bias', 'x_proj.weight', 'dt_proj.weight', 'dt_proj.bias', 'A_log', 'D'):
            dst.get_parameter(name).copy_(src.get_parameter(name)[k:k + 1])


# ---------------------------------------------------------------------------------------------------------------
# Mixer equivalences

@pytest.mark.parametrize('rows, batch, splits', [(256 * 197, 256, 32), (128 * 197, 128, 16), (8 * 4097, 8, 8),
                                                  (197, 1, 1), (6 * 300, 6, 1), (12 * 200, 12, 2)])
def test_row_splits_divide_the_batch(rows, batch, splits):
    from vimamba.layers.mamba import row_splits
    assert row_splits(rows, batch) == splits


def test_split_projection_matches_one_product():
    """`direction_matmul` with the rows in batches: the same product and gradients as one bmm per direction."""
    from vimamba.layers.mamba import direction_matmul
    x = torch.randn(2, 6 * 5, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 7, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, 30, 3, dtype=torch.float64)
    expected = torch.bmm(x, w.transpose(1, 2))
    ex, ew = torch.autograd.grad(expected, (x, w), grad)
    got = direction_matmul(x, w, 6)
    gx, gw = torch.autograd.grad(got, (x, w), grad)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(gx, ex)
    torch.testing.assert_close(gw, ew)


def test_bimamba_v2_is_two_single_direction_mixers():
    bi = _mixer(bidirectional=True)
    fwd, bwd = _mixer(bidirectional=False), _mixer(bidirectional=False)
    _copy_direction(fwd, bi, '')
    _copy_direction(bwd, bi, '_b')
    x = torch.randn(2, 21, 16, dtype=torch.float64)
    expected = (fwd(x) + bwd(x.flip(1)).flip(1)) / 2  # out_proj is linear without bias, so it commutes with /2
    torch.testing.assert_close(bi(x), expected)


@pytest.mark.parametrize('local_window', [0, None, 8])
def test_reversed_scan_is_flipped_forward_scan(local_window):
    """LBVim's odd layers: scanning right to left equals the official flip -> forward layer -> flip."""
    fwd = _mixer(bidirectional=False, local_window=local_window)
    rev = _mixer(bidirectional=False, local_window=local_window, reverse=True)
    rev.load_state_dict(fwd.state_dict())
    x = torch.randn(2, 21, 16, dtype=torch.float64)  # 21 tokens: the last window is partial
    torch.testing.assert_close(rev(x), fwd(x.flip(1)).flip(1))


def _lbm_reference(mixer: MambaMixer, x: torch.Tensor) -> torch.Tensor:
    """LBMamba with a window covering the sequence: the tied-parameter forward + full reverse scans of the same
    u, Δ, B, C (one op call, K = 2), minus the token counted twice (D u and Σ_n C_n Δ B_n u)."""
    u, delta, A, B, C, D, bias, z = mixer.scan_inputs(x)
    two = lambda t: torch.cat([t, t], dim=1)
    y = selective_scan(two(u), two(delta), torch.cat([A, A]), two(B), two(C), torch.cat([D, D]), None,
                       torch.cat([bias, bias]), True, order=get_pattern('bidirectional').order(1, x.shape[1]))
    dt = F.softplus(delta + bias[..., None])
    counted_twice = D[..., None] * u + dt * u * (B * C).sum(2, keepdim=True)
    y = (y[:, 0] + y[:, 1] - counted_twice[:, 0])
    return mixer.out_proj(y.transpose(1, 2) * F.silu(z))


def test_lbm_full_window_is_tied_bidirectional_minus_token():
    x = torch.randn(2, 13, 16, dtype=torch.float64)
    lbm = _mixer(bidirectional=False, local_window=16)  # W >= L
    torch.testing.assert_close(lbm(x), _lbm_reference(lbm, x))


def test_lbm_window_one_is_plain_mamba():
    x = torch.randn(2, 13, 16, dtype=torch.float64)
    lbm = _mixer(bidirectional=False, local_window=1)
    plain = _mixer(bidirectional=False)
    plain.load_state_dict(lbm.state_dict())
    torch.testing.assert_close(lbm(x), plain(x))


def test_lbvim_layers_alternate_and_follow_the_window_rule():
    model = timm.create_model('lbvim_tiny_patch16_224', device='meta')
    assert [blk.mixer.reverse for blk in model.blocks[:4]] == [False, True, False, True]
    assert all(blk.mixer.local_window is None and not blk.mixer.bidirectional for blk in model.blocks)
    assert lbmamba_window(196) == 8 and lbmamba_window(1024) == 16  # W = 8 at 224 px, not 16
    assert not any('_b' in n for n, _ in model.named_parameters())


# ---------------------------------------------------------------------------------------------------------------
# Layer shuffle

def test_layer_shuffle_order():
    x = torch.randn(2, 50, 8)
    index, inverse = layer_shuffle_order(x, 0.0)
    assert torch.equal(index, torch.arange(50)) and torch.equal(inverse, torch.arange(50))
    torch.manual_seed(1)
    index, inverse = layer_shuffle_order(x, 1.0)
    assert not torch.equal(index, torch.arange(50))
    assert torch.equal(index[inverse], torch.arange(50)) and torch.equal(x[:, index][:, inverse], x)


def test_shuffle_rates_are_linear_in_depth():
    model = timm.create_model('shufflemamba_base_patch16_224', device='meta')
    expected = torch.linspace(0, 0.5, 24).tolist()
    assert model.shuffle_rates == pytest.approx(expected)


def _shuffle_model(name='test_shufflemamba', **kwargs):
    torch.manual_seed(0)
    return timm.create_model(name, shuffle_rate=1.0, **kwargs)


@pytest.mark.parametrize('name', ['test_shufflemamba', 'test_shufflemamba_reg'])
def test_shuffle_is_identity_in_eval(name):
    model = _shuffle_model(name).eval()
    plain = timm.create_model(name, shuffle_rate=0.0).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain(x))


def _make_token_wise(model):
    """Every mixer sees one token at a time: conv taps on the current token only, A so negative that the state
    forgets everything between steps. Any misplaced token after a shuffle then shows in the output."""
    with torch.no_grad():
        for blk in model.blocks:
            mixer = blk.mixer
            mixer.conv1d.weight[..., :-1] = 0
            mixer.A_log.fill_(14.0)


@pytest.mark.parametrize('name', ['test_shufflemamba', 'test_shufflemamba_reg'])
def test_shuffle_restores_token_order_in_training(name):
    x = torch.randn(2, 3, 64, 64)
    model = _shuffle_model(name)
    with torch.no_grad():
        ref = model.eval()(x)
        shuffled = model.train()(x)
    assert not torch.allclose(shuffled, ref, atol=1e-4), 'the last layer (rate 1) must have shuffled'
    _make_token_wise(model)
    with torch.no_grad():
        ref = model.eval()(x)
        torch.manual_seed(3)
        out = model.train()(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# Token layouts and position embeddings

def test_middle_cls_position():
    assert token_positions('middle', 196, 1) == [98]
    assert token_positions('middle', 729, 1) == [364]
    model = timm.create_model('vim_tiny_patch16_stride8_224', device='meta')
    assert model.patch_embed.num_patches == 729 and model.pos_embed.shape[1] == 730


def test_register_positions():
    assert token_positions('interleaved', 196, 12) == list(range(15, 192, 16))
    assert token_positions('interleaved', 64, 12) == [4 + 5 * i for i in range(12)]


@pytest.mark.parametrize('layout,n', [('none', 0), ('head', 1), ('middle', 1), ('interleaved', 12), ('interleaved', 3)])
def test_insert_split_round_trip(layout, n):
    patches = torch.randn(2, 196, 4)
    tokens = torch.randn(2, n, 4) if n else None
    seq = insert_tokens(patches, tokens, layout)
    assert seq.shape[1] == 196 + n
    for i, pos in enumerate(token_positions(layout, 196, n)):
        assert torch.equal(seq[:, pos], tokens[:, i])
    back, back_tokens = split_tokens(seq, layout, n)
    assert torch.equal(back, patches)
    assert (back_tokens is None and tokens is None) or torch.equal(back_tokens, tokens)


def test_pos_embed_resize_keeps_the_middle_cls_slot():
    grid = torch.randn(1, 196, 8)
    cls = torch.full((1, 1, 8), 7.0)
    posemb = insert_tokens(grid, cls, 'middle')
    resized = resample_pos_embed(posemb, (16, 16), (14, 14), layout='middle', num_tokens=1)
    assert resized.shape == (1, 257, 8)
    assert torch.equal(resized[:, 128], cls[:, 0])
    expected = resample_abs_pos_embed(grid, [16, 16], [14, 14], num_prefix_tokens=0)
    torch.testing.assert_close(split_tokens(resized, 'middle', 1)[0], expected)


def test_dynamic_img_size_and_set_input_size():
    torch.manual_seed(0)
    fixed = timm.create_model('test_vim').eval()
    dynamic = timm.create_model('test_vim', dynamic_img_size=True).eval()
    dynamic.load_state_dict(fixed.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(dynamic(x), fixed(x))
        big = torch.randn(1, 3, 80, 96)
        out = dynamic(big)
        feats = dynamic.forward_intermediates(big, indices=1, intermediates_only=True)[0]
        assert feats.shape == (1, 32, 9, 11)
        fixed.set_input_size((80, 96))
        torch.testing.assert_close(fixed(big), out)
    with pytest.raises(Exception):
        timm.create_model('test_vim')(torch.randn(1, 3, 80, 80))


def test_dynamic_size_not_covered_by_the_patches_is_refused_or_padded():
    """A dynamic size the patches do not cover used to drop its border pixels silently (and an image smaller than
    one patch failed inside the position-embedding resize): refused by name, or zero-padded with
    dynamic_img_pad as timm's."""
    torch.manual_seed(0)
    model = timm.create_model('test_vim', dynamic_img_size=True).eval()  # patch 16, stride 8
    for size, name in (((68, 64), 'height 68'), ((64, 70), 'width 70'), ((8, 8), 'height 8')):
        with pytest.raises(ValueError, match=rf'input {name} is not covered by patches of 16 with stride 8 \(it '
                                             rf'must be 16 \+ a multiple of 8\).*dynamic_img_pad=True'):
            model(torch.randn(1, 3, *size))
    padded = timm.create_model('test_vim', dynamic_img_size=True, dynamic_img_pad=True).eval()
    padded.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 68, 70)
    with torch.no_grad():
        # The border pixels count: the result is the model on the zero-padded image, not on a crop.
        torch.testing.assert_close(padded(x), model(F.pad(x, (0, 2, 0, 4))))
        assert padded.forward_intermediates(x, indices=1, intermediates_only=True)[0].shape == (1, 32, 8, 8)
        assert padded(torch.randn(1, 3, 8, 8)).shape == (1, 1000)
    with pytest.raises(ValueError, match=r'input width 40 is not covered by patches of 16 with stride 16 \(it '
                                         r'must be a multiple of 16\)'):
        timm.create_model('test_lbvim', dynamic_img_size=True)(torch.randn(1, 3, 64, 40))


@pytest.mark.parametrize('name,kwargs,message', [
    ('test_vim', dict(depth=0), r'VisionMamba: depth must be an int >= 1, got 0'),
    ('test_lbvim', dict(depth=-2), r'VisionMamba: depth must be an int >= 1, got -2'),
    ('test_shufflemamba', dict(shuffle_rate=2.0), r'shuffle_rate: expected a probability in \[0, 1\].*got 2\.0'),
    ('test_shufflemamba_reg', dict(shuffle_rate=-0.1), r'shuffle_rate: .*got -0\.1'),
])
def test_bad_architecture_arguments(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        timm.create_model(name, device='meta', **kwargs)


def test_intermediates_sources_and_formats():
    """'mixer' taps the block's mixer output, 'residual' the stream after adding it: at the last block, with the
    final norm, that is forward_features without the class token. NLC and NCHW hold the same raster tokens."""
    torch.manual_seed(0)
    model = timm.create_model('test_vim', feature_source='residual').eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        last = model.forward_intermediates(x, indices=[3], norm=True, output_fmt='NLC', intermediates_only=True)[0]
        torch.testing.assert_close(last, split_tokens(model.forward_features(x), 'middle', 1)[0])
        nchw = model.forward_intermediates(x, indices=[1], intermediates_only=True)[0]
        nlc = model.forward_intermediates(x, indices=[1], output_fmt='NLC', intermediates_only=True)[0]
        torch.testing.assert_close(nchw.flatten(2).transpose(1, 2), nlc)
        model.feature_source = 'mixer'
        mixer_tap = model.forward_intermediates(x, indices=[1], output_fmt='NLC', intermediates_only=True)[0]
        assert not torch.allclose(mixer_tap, nlc)


# ---------------------------------------------------------------------------------------------------------------
# Initialisation and drop path

def test_drop_path_schedule():
    model = timm.create_model('test_vim', drop_path_rate=0.3, device='meta')
    probs = [getattr(blk.drop_path, 'drop_prob', 0.) for blk in model.blocks]
    assert probs == pytest.approx([0.0, 0.0, 0.1, 0.2])  # block i drops block i-1's mixer output
    assert model.drop_path.drop_prob == pytest.approx(0.3)


def test_vim_init():
    torch.manual_seed(0)
    model = timm.create_model('vim_tiny_patch16_224', depth=2)
    mixer = model.blocks[0].mixer
    dt = F.softplus(mixer.dt_proj.bias[0])
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6 and dt.min() < 2e-3 and dt.max() > 0.05
    assert torch.equal(mixer.dt_proj.bias[1], torch.zeros_like(mixer.dt_proj.bias[1]))
    assert mixer.A_log.dtype == torch.float32
    torch.testing.assert_close(-torch.exp(mixer.A_log[1, 0]), -torch.arange(1., 17.))
    assert torch.equal(mixer.D, torch.ones_like(mixer.D))
    bound = 1 / math.sqrt(mixer.d_inner) / math.sqrt(2)
    assert mixer.out_proj.weight.abs().max() <= bound and mixer.out_proj.weight.abs().max() > 0.9 * bound
    r = mixer.dt_rank ** -0.5
    assert mixer.dt_proj.weight[0].abs().max() <= r
    assert model.cls_token.abs().max() > 0 and torch.equal(model.head.bias, torch.zeros(1000))


def test_shufflemamba_init():
    torch.manual_seed(0)
    model = timm.create_model('shufflemamba_base_patch16_224', depth=2)
    mixer = model.blocks[0].mixer
    assert torch.equal(mixer.dt_proj.bias, torch.zeros_like(mixer.dt_proj.bias))  # Δ starts at ln 2 both ways
    assert torch.equal(model.cls_token, torch.zeros_like(model.cls_token))
    assert abs(mixer.in_proj.weight.std().item() - 0.02) < 1e-3
    assert abs(mixer.dt_proj.weight.std().item() - 0.02) < 2e-3


def test_init_weights_after_meta():
    with torch.device('meta'):
        model = timm.create_model('test_lbvim', device='meta')
    model.to_empty(device='cpu')
    model.init_weights()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    model(torch.randn(1, 3, 64, 64))


# ---------------------------------------------------------------------------------------------------------------
# Official checkpoints (synthesised in the official key names)

def _official_state_dict(D, depth, num_patches, N=8, bi=True, cls=None, norm='rms', regs=0, reduction=1,
                         attn_head=False, num_classes=1000):
    """Random tensors under the official names and shapes: cls None / 'token' (pos_embed slot) / registers."""
    g = torch.Generator().manual_seed(0)
    E, R = 2 * D, math.ceil(D / 16)
    t = lambda *shape: torch.randn(*shape, generator=g)
    sd = {'patch_embed.proj.weight': t(D, 3, 16, 16), 'patch_embed.proj.bias': t(D)}
    if cls == 'token':
        sd['cls_token'] = t(1, 1, D)
        sd['pos_embed'] = t(1, num_patches + 1, D)
    else:
        sd['pos_embed'] = t(1, num_patches, D)
    if regs:
        sd['cls_token'] = t(1, regs, D)
        sd['pos_embed_cls'] = t(1, regs, D)
    for i in range(depth):
        p = f'layers.{i}.'
        for s in ('', '_b') if bi else ('',):
            sd[p + ('mixer.A_log' if not s else 'mixer.A_b_log')] = t(E, N)
            sd[p + 'mixer.D' + s] = t(E)
            sd[p + f'mixer.conv1d{s}.weight'] = t(E, 1, 4)
            sd[p + f'mixer.conv1d{s}.bias'] = t(E)
            sd[p + f'mixer.x_proj{s}.weight'] = t(R + 2 * N, E)
            sd[p + f'mixer.dt_proj{s}.weight'] = t(E, R)
            sd[p + f'mixer.dt_proj{s}.bias'] = t(E)
        sd[p + 'mixer.in_proj.weight'] = t(2 * E, D)
        sd[p + 'mixer.out_proj.weight'] = t(D, E)
        sd[p + 'norm.weight'] = t(D)
        if norm == 'ln':
            sd[p + 'norm.bias'] = t(D)
    sd['norm_f.weight'] = t(D)
    if norm == 'ln':
        sd['norm_f.bias'] = t(D)
    if attn_head:
        sd.update({'head.0.latent': t(1, 1, D), 'head.0.kv.weight': t(2 * D, D), 'head.0.kv.bias': t(2 * D),
                   'head.0.post_norm.weight': t(D), 'head.0.post_norm.bias': t(D),
                   'head.1.weight': t(num_classes, D), 'head.1.bias': t(num_classes)})
    else:
        width = regs * (D // reduction) if regs else D
        if reduction > 1:
            sd['neck.weight'] = t(D // reduction, D)
            sd['norm_neck.weight'] = t(width)
        sd['head.weight'] = t(num_classes, width)
        sd['head.bias'] = t(num_classes)
    return sd


# (model, official layout) for each family's tiny variant: 64 px -> 16 patches (49 with stride 8).
OFFICIAL = {
    'test_vim': dict(D=32, depth=4, num_patches=49, cls='token'),
    'test_lbvim': dict(D=32, depth=4, num_patches=16, bi=False, attn_head=True),
    'test_shufflemamba': dict(D=32, depth=4, num_patches=16, cls='token', norm='ln'),
    'test_shufflemamba_reg': dict(D=32, depth=4, num_patches=16, regs=3, reduction=2),
}


def _save_official(tmp_path, name):
    sd = _official_state_dict(**OFFICIAL[name])
    path = str(tmp_path / f'{name}_official.pth')
    # The layout of the official main.py checkpoints, argparse.Namespace included.
    torch.save({'model': sd, 'model_ema': {k: v + 1 for k, v in sd.items()}, 'epoch': 299,
                'args': argparse.Namespace(model=name)}, path)
    return sd, path


@pytest.mark.parametrize('name', list(OFFICIAL))
def test_convert_official_checkpoint(tmp_path, name):
    convert = _load_convert()
    sd, src = _save_official(tmp_path, name)
    dst = str(tmp_path / f'{name}.safetensors')
    convert.convert(src, dst, name)
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=dst))
    ours = model.state_dict()
    # The backward direction's tensors are stacked with the forward ones: one key for both.
    assert len(ours) == len(sd) - sum(k.endswith(('_b.weight', '_b.bias', 'A_b_log', 'D_b')) for k in sd)
    # Spot-check the renames: blocks <- layers, norm <- norm_f, backward copies, heads, registers.
    torch.testing.assert_close(ours['blocks.3.mixer.x_proj.weight'][0], sd['layers.3.mixer.x_proj.weight'])
    torch.testing.assert_close(ours['norm.weight'], sd['norm_f.weight'])
    torch.testing.assert_close(ours['pos_embed'], sd['pos_embed'])
    if 'layers.2.mixer.A_b_log' in sd:
        torch.testing.assert_close(ours['blocks.2.mixer.A_log'][1], sd['layers.2.mixer.A_b_log'])
    if 'head.0.latent' in sd:
        torch.testing.assert_close(ours['attn_pool.norm.weight'], sd['head.0.post_norm.weight'])
        torch.testing.assert_close(ours['head.weight'], sd['head.1.weight'])
    if 'pos_embed_cls' in sd:
        torch.testing.assert_close(ours['reg_token'], sd['cls_token'])
        torch.testing.assert_close(ours['reg_pos_embed'], sd['pos_embed_cls'])
        torch.testing.assert_close(ours['fc_norm.weight'], sd['norm_neck.weight'])
    model.eval()(torch.randn(1, 3, 64, 64))

    # EMA weights on request; a new input size resizes pos_embed around the token slot.
    ema = convert.convert_state_dict(convert.load_checkpoint(src), name, use_ema=True)
    torch.testing.assert_close(ema['norm.weight'], sd['norm_f.weight'] + 1)
    bigger = timm.create_model(name, pretrained=True, img_size=96, pretrained_cfg_overlay=dict(file=dst))
    if OFFICIAL[name].get('cls') == 'token':
        layout = bigger.token_layout
        old_pos = token_positions(layout, OFFICIAL[name]['num_patches'], 1)[0]
        new_pos = token_positions(layout, bigger.patch_embed.num_patches, 1)[0]
        torch.testing.assert_close(bigger.pos_embed[0, new_pos], sd['pos_embed'][0, old_pos])


def test_convert_mismatch_lists_keys(tmp_path):
    convert = _load_convert()
    sd = _official_state_dict(**OFFICIAL['test_vim'])
    del sd['layers.1.mixer.conv1d_b.bias']
    sd['layers.0.mixer.extra.weight'] = torch.zeros(1)
    with pytest.raises(convert.CheckpointMismatchError) as err:
        convert.convert_state_dict(sd, 'test_vim')
    # The two directions' biases are one stacked tensor: missing as a whole when a direction lacks one.
    assert 'blocks.1.mixer.conv1d.bias' in str(err.value) and 'blocks.0.mixer.extra.weight' in str(err.value)
    assert err.value.missing == ['blocks.1.mixer.conv1d.bias']
    assert err.value.unexpected == ['blocks.0.mixer.extra.weight']
    # A Vim checkpoint is not an LBVim one: the backward-direction keys are unexpected there.
    with pytest.raises(convert.CheckpointMismatchError, match='unexpected keys'):
        convert.convert_state_dict(_official_state_dict(**OFFICIAL['test_vim']), 'test_lbvim')
    # timm's pretrained path reports the same.
    path = str(tmp_path / 'bad.pth')
    torch.save({'model': sd}, path)
    with pytest.raises(CheckpointMismatchError, match=r'missing keys \(1\): blocks.1.mixer.conv1d.bias'):
        timm.create_model('test_vim', pretrained=True, pretrained_cfg_overlay=dict(file=path))


def test_official_file_loads_directly(tmp_path):
    """timm's pretrained path reads the official .pth with vimamba's reader and its checkpoint_filter_fn: the
    'model' weights, as tools/convert.py and the Hugging Face source take them."""
    sd, src = _save_official(tmp_path, 'test_vim')
    model = timm.create_model('test_vim', pretrained=True, pretrained_cfg_overlay=dict(file=src))
    torch.testing.assert_close(model.blocks[0].mixer.D[1], sd['layers.0.mixer.D_b'])


def test_convert_cli(tmp_path, capsys):
    convert = _load_convert()
    _, src = _save_official(tmp_path, 'test_lbvim')
    dst = str(tmp_path / 'out.safetensors')
    convert.main([src, dst, '--model', 'test_lbvim'])
    assert os.path.exists(dst) and 'test_lbvim' in capsys.readouterr().out
    with pytest.raises(SystemExit):
        convert.main([src, dst, '--model', 'test_vim'])
    assert 'error: checkpoint does not fit VisionMamba:\n  missing keys' in capsys.readouterr().err



@pytest.mark.parametrize('args, message', [
    (['missing.pth', 'out.safetensors', '--model', 'test_lbvim'], "src 'missing.pth' is not a file"),
    (['SRC', 'out.pth', '--model', 'test_lbvim'], "dst 'out.pth': give a file name ending in .safetensors"),
    (['SRC', 'out.safetensors', '--model', 'lbvim_tiny'],
     "--model 'lbvim_tiny' is not a vimamba model; nearest: lbvim_tiny_patch16_224"),
    (['SRC', 'out.safetensors', '--model', 'test_lbvim', '--ema'], "--ema: has no EMA weights (looked for ['state_dict_ema', 'model_ema'"),
])
def test_convert_cli_errors_are_one_line(tmp_path, capsys, monkeypatch, args, message):
    convert = _load_convert()
    monkeypatch.chdir(tmp_path)
    torch.save({'model': _official_state_dict(**OFFICIAL['test_lbvim'])}, 'SRC')
    with pytest.raises(SystemExit):
        convert.main(args)
    assert f'error: {message}' in capsys.readouterr().err
    assert not os.path.exists('out.safetensors')

# ---------------------------------------------------------------------------------------------------------------
# The official forward, written from its description (docs/families.md#plain-stack-vim-lbvim-shufflemamba): flipped
# copies for the backward branch, a flip of the sequence after every LBVim layer, a step-by-step scan. The same
# official state dict must give the same logits through checkpoint_filter_fn and our index-order model.

def _scan_oracle(u, delta, A, B, C, D, window=0):
    """Step-by-step selective scan, plus the LBMamba window-local reverse recurrence (docs/ops.md#local-window)."""
    dA = torch.exp(delta[..., None] * A[None, :, None, :])              # (b, E, L, N)
    dBu = delta[..., None] * B.transpose(1, 2)[:, None] * u[..., None]  # (b, E, L, N)
    length = u.shape[-1]
    h = torch.zeros_like(dA[:, :, 0])
    states = []
    for t in range(length):
        h = dA[:, :, t] * h + dBu[:, :, t]
        states.append(h)
    H = torch.stack(states, 2)
    if window:
        r = torch.zeros_like(H)
        for t in reversed(range(length)):
            last_of_window = (t + 1) % window == 0 or t == length - 1
            r[:, :, t] = dBu[:, :, t] + (0 if last_of_window else dA[:, :, t] * r[:, :, t + 1])
        H = H + r - dBu
    return (H * C.transpose(1, 2)[:, None]).sum(-1) + D[None, :, None] * u


def _branch_oracle(sd, p, s, x, z, window):
    E = x.shape[1]
    conv_w, conv_b = sd[p + f'conv1d{s}.weight'], sd[p + f'conv1d{s}.bias']
    k = conv_w.shape[-1]
    x = F.silu(F.conv1d(x, conv_w, conv_b, padding=k - 1, groups=E)[..., :x.shape[-1]])
    x_dbl = x.transpose(1, 2) @ sd[p + f'x_proj{s}.weight'].T
    R, N = sd[p + f'dt_proj{s}.weight'].shape[1], (x_dbl.shape[-1] - sd[p + f'dt_proj{s}.weight'].shape[1]) // 2
    dt = (x_dbl[..., :R] @ sd[p + f'dt_proj{s}.weight'].T).transpose(1, 2)
    delta = F.softplus(dt + sd[p + f'dt_proj{s}.bias'][:, None])
    A = -torch.exp(sd[p + ('mixer.A_log' if not s else 'mixer.A_b_log').replace('mixer.', '')])
    y = _scan_oracle(x, delta, A, x_dbl[..., R:R + N].transpose(1, 2), x_dbl[..., R + N:].transpose(1, 2),
                     sd[p + 'D' + s], window)
    return y * F.silu(z)


def _mixer_oracle(sd, i, h, bi, window):
    p = f'layers.{i}.mixer.'
    xz = (h @ sd[p + 'in_proj.weight'].T).transpose(1, 2)
    E = xz.shape[1] // 2
    y = _branch_oracle(sd, p, '', xz[:, :E], xz[:, E:], window)
    if bi:
        xz_b = xz.flip(-1)
        y = (y + _branch_oracle(sd, p, '_b', xz_b[:, :E], xz_b[:, E:], 0).flip(-1)) / 2
    return y.transpose(1, 2) @ sd[p + 'out_proj.weight'].T


def _norm_oracle(sd, key, x):
    if key + '.bias' in sd:
        return F.layer_norm(x, x.shape[-1:], sd[key + '.weight'], sd[key + '.bias'], 1e-5)
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * sd[key + '.weight']


def _official_forward(sd, img, family, stride=16, regs=0):
    x = F.conv2d(img, sd['patch_embed.proj.weight'], sd['patch_embed.proj.bias'], stride=stride)
    x = x.flatten(2).transpose(1, 2)
    batch, M, D = x.shape
    if family == 'vim':
        x = torch.cat([x[:, :M // 2], sd['cls_token'].expand(batch, -1, -1), x[:, M // 2:]], 1) + sd['pos_embed']
    elif family == 'shuffle':
        x = torch.cat([sd['cls_token'].expand(batch, -1, -1), x], 1) + sd['pos_embed']
    elif family == 'reg':
        x = x + sd['pos_embed']
        G = M // (regs + 1)  # Mamba-Reg's get_cls_idx, from its description
        token_idx = torch.cat([torch.cat([torch.arange(G * regs).view(regs, G),
                                          torch.arange(M, M + regs)[:, None]], 1).flatten(),
                               torch.arange(G * regs, M)])
        x = torch.cat([x, (sd['cls_token'] + sd['pos_embed_cls']).expand(batch, -1, -1)], 1)[:, token_idx]
    else:
        x = x + sd['pos_embed']
    depth = 1 + max(int(k.split('.')[1]) for k in sd if k.startswith('layers.'))
    h, r = x, None
    for i in range(depth):
        r = h if r is None else r + h
        h = _mixer_oracle(sd, i, _norm_oracle(sd, f'layers.{i}.norm', r), family != 'lbvim',
                          lbmamba_window(r.shape[1]) if family == 'lbvim' else 0)
        if family == 'lbvim':
            h, r = h.flip(1), r.flip(1)
    f = _norm_oracle(sd, 'norm_f', r + h)
    if family == 'vim':
        return f[:, M // 2] @ sd['head.weight'].T + sd['head.bias']
    if family == 'shuffle':
        return f[:, 0] @ sd['head.weight'].T + sd['head.bias']
    if family == 'reg':
        G = M // (regs + 1)
        pos = torch.arange(G, G * (regs + 1) + regs, G + 1)
        feat = (f[:, pos] @ sd['neck.weight'].T).reshape(batch, -1)
        feat = _norm_oracle(sd, 'norm_neck', feat)
        return feat @ sd['head.weight'].T + sd['head.bias']
    # LBVim-528's head: latent query, kv Linear, SDPA, post LayerNorm, classifier.
    heads = 2
    kv = (f @ sd['head.0.kv.weight'].T + sd['head.0.kv.bias']).reshape(batch, f.shape[1], 2, heads, D // heads)
    k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
    q = sd['head.0.latent'].reshape(1, 1, heads, D // heads).transpose(1, 2).expand(batch, -1, -1, -1)
    att = F.scaled_dot_product_attention(q, k, v).reshape(batch, D)
    att = F.layer_norm(att, (D,), sd['head.0.post_norm.weight'], sd['head.0.post_norm.bias'], 1e-5)
    return att @ sd['head.1.weight'].T + sd['head.1.bias']


@pytest.mark.parametrize('name,family', [('test_vim', 'vim'), ('test_lbvim', 'lbvim'),
                                         ('test_shufflemamba', 'shuffle'), ('test_shufflemamba_reg', 'reg')])
def test_matches_official_forward(name, family):
    # Weights scaled down to keep the random network tame; fp32 values, compared in fp64.
    sd = {k: v * (0.3 if v.dim() > 1 and not k.endswith('A_log') else 1.)
          for k, v in _official_state_dict(**OFFICIAL[name]).items()}
    model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(state_dict=sd)).double().eval()
    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        expected = _official_forward({k: v.double() for k, v in sd.items()}, x, family,
                                     stride=8 if name == 'test_vim' else 16, regs=OFFICIAL[name].get('regs', 0))
        torch.testing.assert_close(model(x), expected, rtol=1e-7, atol=1e-7)


def test_mixer_loads_per_direction_state_dict():
    """load_state_dict takes the official per-direction layout (conv1d_b.weight, A_b_log, ...) as it is and stacks
    it; a direction missing is reported under the file's own key."""
    mixer = _mixer(bidirectional=True)
    official = {}
    for k, v in mixer.state_dict().items():
        stacked = k in ('conv1d.weight', 'conv1d.bias', 'x_proj.weight', 'dt_proj.weight', 'dt_proj.bias', 'A_log', 'D')
        if not stacked:
            official[k] = v
            continue
        fwd, bwd = v.unbind(0)
        if k == 'conv1d.weight':
            fwd, bwd = fwd[:, None], bwd[:, None]
        official[k] = fwd
        official[{'A_log': 'A_b_log', 'D': 'D_b'}.get(k, k.replace('.', '_b.', 1))] = bwd
    fresh = MambaMixer(16, d_state=4).double()
    fresh.load_state_dict(official)
    for k, v in mixer.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    del official['x_proj_b.weight']
    result = fresh.load_state_dict(official, strict=False)
    assert result.missing_keys == ['x_proj_b.weight'] and not result.unexpected_keys
