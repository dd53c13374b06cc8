"""MaIR / MaIRUNet (vimamba.models.mair) and the mmengine restoration stack (vimamba.downstream.restoration).

CPU only and small. The tiny networks run single-threaded: on two shared cores, intra-op threads on tensors this
small cost far more than they give (about 10x here).
"""
import math
import os.path as osp

import numpy as np
import pytest
import timm
import torch
import torch.nn as nn
from PIL import Image

import vimamba.models  # noqa: F401
from vimamba.checkpoint import CheckpointMismatchError
from vimamba.downstream.restoration import functional as RF
from vimamba.downstream.common import load_image
from vimamba.downstream.restoration.datasets import PairedImageDataset
from vimamba.models import mair as M

SAMPLE = osp.join(osp.dirname(__import__('matplotlib').__file__), 'mpl-data', 'sample_data', 'grace_hopper.jpg')

# Parameter counts measured on the official code.
SPEC_PARAMS = {
    'mair_sr_x2': 19_444_247, 'mair_sr_x3': 19_628_887, 'mair_sr_x4': 19_591_959,
    'mair_light_s_x2': 1_354_680, 'mair_light_s_x3': 1_362_795, 'mair_light_s_x4': 1_374_156,
    'mair_light_t_x2': 877_752, 'mair_light_t_x3': 885_867, 'mair_light_t_x4': 897_228,
    'mair_cdn': 14_089_035,
    'mairunet_dehaze': 3_404_376, 'mairunet_realdn': 26_293_296, 'mairunet_deblur': 26_293_296,
}


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_unet(**kw):
    args = dict(embed_dim=8, depths=(1, 1, 1, 2), num_refinement_blocks=1, ssm_ratio=1.0, flp_ratio=2.0, mlp_ratio=1.5,
                scan_len=4, base_d_state=1)
    args.update(kw)
    return M.MaIRUNet(**args)


def photo(size=None) -> torch.Tensor:
    img = load_image(SAMPLE)
    return img if size is None else img[:, :size[0], :size[1]]


# ------------------------------------------------------------------------------------------------------
# Model

@pytest.mark.parametrize('name', sorted(SPEC_PARAMS))
def test_param_count_matches_spec_on_meta(name):
    model = timm.create_model(name, device='meta')
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == SPEC_PARAMS[name]


def test_every_variant_is_registered():
    names = set(vimamba.list_models('mair*'))
    assert set(SPEC_PARAMS) <= names
    assert 'test_mair' in vimamba.list_models('test_mair', include_test=True)


def test_mairunet_names_its_width_embed_dim():
    with pytest.raises(TypeError, match=r"mairunet_realdn: keyword argument 'dim' is no longer accepted; pass "
                                        r"embed_dim \(the width of the first level\)"):
        timm.create_model('mairunet_realdn', dim=8, device='meta')
    assert timm.create_model('mairunet_realdn', embed_dim=8, device='meta').patch_embed.out_channels == 8


def test_channel_shuffle_and_rearrange_are_inverse():
    pooled = torch.randn(2, 4, 5)
    shuffled = M.channel_shuffle(pooled)
    # the four directions of channel d sit side by side: index d*4 + k holds pooled[:, k, d]
    assert torch.equal(shuffled.view(2, 5, 4)[:, 3, 1], pooled[:, 1, 3])
    assert torch.equal(M.channel_rearrange(shuffled, 4), pooled)


def test_gate_matches_grouped_conv_definition():
    gate = M.SequenceShuffleGate(d_inner=3)
    y = torch.randn(2, 4, 3, 10)
    pooled = y.mean(-1).reshape(2, 12, 1, 1)  # direction-major k*D + d
    shuffled = pooled.view(2, 4, 3, 1, 1).transpose(1, 2).reshape(2, 12, 1, 1)
    expected = torch.sigmoid(gate.conv(shuffled)).view(2, 3, 4).transpose(1, 2)
    torch.testing.assert_close(gate(y), expected)


def test_scan_is_one_op_call_with_nested_s_order(scan_calls):
    model = timm.create_model('test_mair').eval()
    with torch.no_grad():
        model(torch.rand(1, 3, 6, 10))
    assert len(scan_calls) == 2  # one call per block
    for (shape, order), shift in zip(scan_calls, (0, 2)):
        assert shape == (1, 4, model.groups[0].blocks[0].mixer.d_inner, 60)
        expected = M.get_pattern('nested_s', scan_len=4, shift=shift).order(6, 10)
        assert torch.equal(order.index, expected.index)


@pytest.mark.parametrize('size', [(7, 11), (16, 5), (1, 1)])
def test_any_size_and_scale(size):
    model = timm.create_model('test_mair').eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, 2 * size[0], 2 * size[1])
    unet = tiny_unet().eval()
    with torch.no_grad():
        out = unet(torch.rand(1, 3, *size))
    assert out.shape == (1, 3, *size)


def test_scales_and_tails():
    x = torch.rand(1, 3, 5, 6)
    for scale, upsampler in ((2, 'pixelshuffle'), (3, 'pixelshuffle'), (4, 'pixelshuffle'), (3, 'pixelshuffledirect'),
                             (1, None)):
        model = M.MaIR(upscale=scale, upsampler=upsampler, embed_dim=8, depths=(1,), d_state=1, ssm_ratio=1.0,
                       scan_len=4).eval()
        with torch.no_grad():
            assert model(x).shape == (1, 3, 5 * scale, 6 * scale)


def test_forward_backward_every_parameter_gets_a_gradient():
    for model, x in ((timm.create_model('test_mair'), torch.rand(2, 3, 8, 9)), (tiny_unet(), torch.rand(1, 3, 16, 8))):
        model(x).square().mean().backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not missing, missing


def test_grad_checkpointing_same_output_and_gradients():
    for make, x in ((lambda: timm.create_model('test_mair'), torch.rand(2, 3, 8, 8)),
                    (tiny_unet, torch.rand(1, 3, 16, 16))):
        torch.manual_seed(0)
        plain = make()
        checkpointed = make()
        checkpointed.load_state_dict(plain.state_dict())
        checkpointed.set_grad_checkpointing(True)
        out_a, out_b = plain(x), checkpointed(x)
        torch.testing.assert_close(out_a, out_b)
        out_a.sum().backward()
        out_b.sum().backward()
        for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
            torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_tiling_equals_whole_image_when_it_fits():
    model = timm.create_model('test_mair').eval()
    x = torch.rand(1, 3, 30, 25)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_tiled(x, tile_size=64), model(x))
    unet = tiny_unet().eval()
    y = torch.rand(1, 3, 20, 12)
    with torch.no_grad():
        torch.testing.assert_close(unet.forward_tiled(y, tile_size=64), unet(y))


def test_tiling_stitches_exactly():
    # A model whose receptive field (2 px) is inside the overlap: the tiled result equals the whole-image one.
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.Conv2d(12, 12, 3, padding=1), nn.PixelShuffle(2))
    x = torch.rand(1, 3, 95, 130)  # 3 x 3 tiles of ~32-44 px, 3-4 px overlap, reflect-padded at the border
    with torch.no_grad():
        whole = net(x)
        tiled = M.forward_tiled(net, x, scale=2, tile_size=40)
    assert tiled.shape == whole.shape
    torch.testing.assert_close(tiled[..., 8:-8, 8:-8], whole[..., 8:-8, 8:-8])


def test_self_ensemble_maps_every_transform_back():
    x = torch.rand(1, 3, 6, 9)
    out = M.forward_self_ensemble(lambda t: t.repeat_interleave(2, -1).repeat_interleave(2, -2), x)
    torch.testing.assert_close(out, x.repeat_interleave(2, -1).repeat_interleave(2, -2))
    model = timm.create_model('test_mair').eval()
    with torch.no_grad():
        assert model.forward_self_ensemble(x).shape == (1, 3, 12, 18)


# ------------------------------------------------------------------------------------------------------
# Checkpoints and bad input

_TO_OFFICIAL = (  # official BasicSR names
    ('embed_norm.', 'patch_embed.norm.'), ('.norm1.', '.ln_1.'), ('.norm2.', '.ln_2.'), ('.mlp.', '.conv_blk.'),
    ('.mixer.gate.conv.', '.self_attention.gating.gating.1.'), ('.mixer.dwconv.', '.self_attention.conv2d.'),
    ('.mixer.dt_proj_', '.self_attention.dt_projs_'), ('.mixer.A_log', '.self_attention.A_logs'),
    ('.mixer.D', '.self_attention.Ds'), ('.mixer.', '.self_attention.'),
)


def official_state_dict(model):
    out = {}
    for key, value in model.state_dict().items():
        for ours, theirs in _TO_OFFICIAL:
            key = key.replace(ours, theirs)
        if key.startswith('groups.'):
            group, rest = key[len('groups.'):].split('.', 1)
            key = f'layers.{group}.' + (f'residual_group.{rest}' if rest.startswith('blocks.') else rest)
        out[key] = value
    return out


def test_checkpoint_filter_loads_official_names():
    model = timm.create_model('test_mair')
    official = official_state_dict(model)
    assert 'layers.0.residual_group.blocks.1.self_attention.x_proj_weight' in official
    assert 'layers.0.residual_group.blocks.0.self_attention.gating.gating.1.weight' in official
    for container in ('params', 'params_ema'):
        converted = M.checkpoint_filter_fn({container: official}, model)
        assert converted.keys() == model.state_dict().keys()
    fresh = timm.create_model('test_mair')
    fresh.load_state_dict(M.checkpoint_filter_fn({'params': official}, fresh))
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), model.eval()(x))


def test_checkpoint_filter_lists_missing_and_unexpected_keys():
    model = timm.create_model('test_mair', device='meta')
    state = official_state_dict(model)
    state.pop('conv_first.weight')
    state['layers.0.extra.weight'] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1\): conv_first.weight\n.*keys \(1\): groups.0.extra"):
        M.checkpoint_filter_fn({'params': state}, model)


@pytest.mark.parametrize('source, target, match', [
    ('mair_light_s_x2', 'mair_light_t_x2', 'd_state 16'),  # same keys, other widths
    ('mair_light_s_x2', 'mair_light_s_x3', 'scale 2'),
    ('mair_sr_x4', 'mair_sr_x2', 'unexpected keys'),  # x4 has two upsample convs
])
def test_checkpoint_of_another_variant_is_refused(source, target, match):
    state = timm.create_model(source, device='meta').state_dict()
    with pytest.raises(CheckpointMismatchError, match=match):
        M.checkpoint_filter_fn({'params': state}, timm.create_model(target, device='meta'))


def test_non_strict_filter_keeps_matching_shapes_for_fine_tuning():
    x2 = timm.create_model('test_mair', device='meta').state_dict()
    x3 = timm.create_model('test_mair', upscale=3, device='meta')
    kept = M.checkpoint_filter_fn({'params': x2}, x3, strict=False)
    assert 'upsample.0.weight' not in kept and 'conv_first.weight' in kept


def test_bad_input_errors():
    model = timm.create_model('test_mair')
    with pytest.raises(ValueError, match=r'1 channels.*in_chans=3.*grayscale'):
        model(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r'upscale=5 is not supported.*accepted: \(2, 3, 4\)'):
        timm.create_model('mair_sr_x2', upscale=5, device='meta')
    with pytest.raises(ValueError, match=r'upscale=2 is not supported.*accepted: \(1,\)'):
        timm.create_model('mair_cdn', upscale=2, device='meta')
    with pytest.raises(ValueError, match='upsampler'):
        M.MaIR(upsampler='nearest', device='meta')
    with pytest.raises(ValueError, match='features_only'):
        timm.create_model('test_mair', features_only=True)
    with pytest.raises(ValueError, match='shift'):
        M.MaIRSelectiveScan2d(8, scan_len=4, shift=4)


# ------------------------------------------------------------------------------------------------------
# Restoration functions

def test_psnr_hand_computed():
    gt = torch.full((3, 16, 16), 100 / 255.)
    pred = gt + 10 / 255.  # every pixel off by 10 levels: MSE 100
    assert RF.psnr(pred, gt) == pytest.approx(10 * math.log10(255 ** 2 / 100))
    # the border is ignored: errors only there give inf
    border = gt.clone()
    border[:, :2] = 0
    assert RF.psnr(border, gt, crop_border=2) == float('inf')
    # Y channel: a pure red offset of 10 levels moves Y by 10 * 65.481 / 255
    red = gt.clone()
    red[0] += 10 / 255.
    dy = 10 * 65.481 / 255
    assert RF.psnr(red, gt, test_y_channel=True) == pytest.approx(10 * math.log10(255 ** 2 / dy ** 2))
    # 8-bit quantisation first (0.4 of a level rounds away)
    assert RF.psnr(gt + 0.4 / 255., gt) == float('inf')


def test_rgb_to_y_hand_computed():
    rgb = torch.tensor([255., 0., 0.]).view(3, 1, 1)
    assert RF.rgb_to_y(rgb).item() == pytest.approx(16 + 65.481)
    assert RF.rgb_to_y(torch.zeros(3, 1, 1)).item() == pytest.approx(16)
    assert RF.rgb_to_y(torch.full((3, 1, 1), 255.)).item() == pytest.approx(235, abs=1e-3)


def test_ssim_hand_computed():
    img = photo((40, 40))
    assert RF.ssim(img, img) == pytest.approx(1.0)
    # Constant images: variances and covariance are 0, SSIM = (2 m1 m2 + c1) / (m1^2 + m2^2 + c1).
    a, b = torch.full((1, 20, 20), 50 / 255.), torch.full((1, 20, 20), 80 / 255.)
    c1 = (0.01 * 255) ** 2
    assert RF.ssim(a, b) == pytest.approx((2 * 50 * 80 + c1) / (50 ** 2 + 80 ** 2 + c1))
    # Against a direct float64 evaluation of the formula at one window (the centre pixel of a 11x11 crop).
    x, y = torch.rand(1, 11, 11, dtype=torch.float64), torch.rand(1, 11, 11, dtype=torch.float64)
    x, y = (x * 255).round() / 255, (y * 255).round() / 255
    g = torch.exp(-(torch.arange(11, dtype=torch.float64) - 5) ** 2 / (2 * 1.5 ** 2))
    w = torch.outer(g, g) / g.sum() ** 2
    X, Y = x[0] * 255, y[0] * 255
    mx, my = (w * X).sum(), (w * Y).sum()
    vx, vy, cxy = (w * X * X).sum() - mx ** 2, (w * Y * Y).sum() - my ** 2, (w * X * Y).sum() - mx * my
    c2 = (0.03 * 255) ** 2
    expected = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    assert RF.ssim(x, y) == pytest.approx(expected.item(), rel=1e-10)


def test_imresize_matlab_properties():
    flat = torch.full((3, 12, 10), 0.3, dtype=torch.float64)
    torch.testing.assert_close(RF.imresize(flat, 0.5), torch.full((3, 6, 5), 0.3, dtype=torch.float64))
    assert RF.imresize(torch.rand(1, 25, 31), 1 / 3).shape == (1, 9, 11)  # ceil, as MATLAB
    # Cubic convolution reproduces linear ramps away from the border (the kernel covers 8 px when shrinking by 2).
    ramp = torch.arange(40, dtype=torch.float64).view(1, 1, 40).expand(1, 4, 40)
    out = RF.imresize(ramp, 0.5)
    # output pixel j sits at input position 2j + 0.5 (0-based)
    torch.testing.assert_close(out[0, 0, 3:-3], torch.arange(3, 17, dtype=torch.float64) * 2 + 0.5)
    # A step [0 0 0 0 1 1 1 1] shrunk by 2, by hand: output 0 sits at 1.5 (1-based), the ones at 5 and 6 are
    # 3.5 and 4.5 away, weights 0.5 * cubic(1.75) = -0.01171875 and 0.5 * cubic(2.25) = 0; output 1 (at 3.5)
    # gets 0.5 * (cubic(0.75) + cubic(1.25) + cubic(1.75)) = 0.06640625 (the weights sum to 1); the rest by symmetry.
    step = torch.tensor([[[0., 0, 0, 0, 1, 1, 1, 1]]], dtype=torch.float64)
    torch.testing.assert_close(RF.imresize(step, 0.5)[0, 0], torch.tensor(
        [-0.01171875, 0.06640625, 0.93359375, 1.01171875], dtype=torch.float64))


def test_gaussian_noise_seeded_like_the_official_evaluation():
    img = photo((8, 6))
    noisy = RF.add_gaussian_noise(img, 25, seed=0)
    expected = np.random.RandomState(0).normal(0, 25 / 255., (8, 6, 3))[..., ::-1].transpose(2, 0, 1)
    torch.testing.assert_close(noisy.double() - img.double(), torch.from_numpy(expected.copy()), atol=1e-6, rtol=0)
    torch.testing.assert_close(RF.add_gaussian_noise(img, 25, seed=0), noisy)


# ------------------------------------------------------------------------------------------------------
# Datasets in the benchmark layouts

def save(img: torch.Tensor, path: str) -> None:
    array = (img.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(np.ascontiguousarray(array)).save(path)


@pytest.fixture(scope='module')
def div2k(tmp_path_factory):
    """A DIV2K-style layout from two crops of a real photograph: HR/0001.png, LR_bicubic/X2/0001x2.png."""
    root = tmp_path_factory.mktemp('div2k')
    (root / 'HR').mkdir()
    (root / 'LR_bicubic' / 'X2').mkdir(parents=True)
    img = photo()
    for i, (top, left) in enumerate(((100, 100), (300, 200)), start=1):
        gt = img[:, top:top + 64, left:left + 48]
        save(gt, str(root / 'HR' / f'{i:04d}.png'))
        lq, _ = RF.bicubic_degrade(load_image(str(root / 'HR' / f'{i:04d}.png')), 2)
        save(lq, str(root / 'LR_bicubic' / 'X2' / f'{i:04d}x2.png'))
    return root


def test_dataset_pairs_folders_and_matches_on_the_fly_bicubic(div2k):
    folders = PairedImageDataset(str(div2k / 'HR'), str(div2k / 'LR_bicubic' / 'X2'), filename_tmpl='{}x2', scale=2,
                                 test_mode=True)
    fly = PairedImageDataset(str(div2k / 'HR'), degradation=dict(type='bicubic'), scale=2, test_mode=True)
    assert len(folders) == len(fly) == 2
    a, b = folders[1], fly[1]
    assert a['inputs'].shape == (3, 32, 24) and a['data_samples']['gt'].shape == (3, 64, 48)
    torch.testing.assert_close(a['inputs'], b['inputs'])  # the saved LR PNG is the 8-bit on-the-fly image
    torch.testing.assert_close(a['data_samples']['gt'], b['data_samples']['gt'])


def test_training_crop_and_augmentation_stay_paired(div2k):
    ds = PairedImageDataset(str(div2k / 'HR'), str(div2k / 'LR_bicubic' / 'X2'), filename_tmpl='{}x2', scale=2,
                            gt_patch_size=16, repeat=3)
    assert len(ds) == 6
    torch.manual_seed(3)
    for i in range(6):
        sample = ds[i]
        lq, gt = sample['inputs'], sample['data_samples']['gt']
        assert lq.shape == (3, 8, 8) and gt.shape == (3, 16, 16)
        # LQ is the 2x2 mean of GT up to the bicubic kernel: the two stay aligned after any flip / rotation
        assert (torch.nn.functional.avg_pool2d(gt[None], 2)[0] - lq).abs().mean() < 0.05


def test_denoising_and_haze_layouts(tmp_path):
    (tmp_path / 'clean').mkdir()
    save(photo((20, 24)), str(tmp_path / 'clean' / 'a.png'))
    ds = PairedImageDataset(str(tmp_path / 'clean'), degradation=dict(type='gaussian_noise', sigma=15), test_mode=True)
    first, again = ds[0], ds[0]
    torch.testing.assert_close(first['inputs'], again['inputs'])  # seeded in evaluation
    assert 10 < (first['inputs'] - first['data_samples']['gt']).std() * 255 < 20
    train = PairedImageDataset(str(tmp_path / 'clean'), degradation=dict(type='gaussian_noise', sigma=15),
                               gt_patch_size=8)
    assert train[0]['inputs'].shape == (3, 8, 8)
    (tmp_path / 'hazy').mkdir()
    (tmp_path / 'gt').mkdir()
    save(photo((16, 16)), str(tmp_path / 'gt' / '12.png'))
    for name in ('12_1_0.8.png', '12_2_0.9.png'):
        save(photo((16, 16)) * 0.5 + 0.4, str(tmp_path / 'hazy' / name))
    haze = PairedImageDataset(str(tmp_path / 'gt'), str(tmp_path / 'hazy'), pairing='haze', test_mode=True)
    assert [osp.basename(s['gt_path']) for s in haze.samples] == ['12.png', '12.png']


def test_dataset_errors(tmp_path, div2k):
    with pytest.raises(FileNotFoundError, match='no LQ image for 2 files'):
        PairedImageDataset(str(div2k / 'HR'), str(div2k / 'LR_bicubic' / 'X2'), filename_tmpl='{}x3', scale=2)
    with pytest.raises(ValueError, match='lq_dir is None and no degradation'):
        PairedImageDataset(str(div2k / 'HR'))
    with pytest.raises(ValueError, match="degradation type 'jpeg'"):
        PairedImageDataset(str(div2k / 'HR'), degradation=dict(type='jpeg'))
    with pytest.raises(FileNotFoundError, match='is not a directory'):
        PairedImageDataset(str(tmp_path / 'nowhere'), degradation=dict(type='bicubic'), scale=2)


# ------------------------------------------------------------------------------------------------------
# Smoke training on a real photograph

def test_tiny_mair_learns_and_beats_bicubic_on_a_held_out_crop():
    """test_mair, x2, trained on the left two thirds of grace_hopper.jpg (downscaled 2x), evaluated on the right
    third. From scratch a network needs a few hundred steps to pass bicubic; 600 cheap ones do it here."""
    torch.manual_seed(0)
    img = RF.imresize(photo(), 0.5).clamp(0, 1)
    split = img.shape[2] * 2 // 3
    lq_train, gt_train = RF.bicubic_degrade(img[:, :, :split], 2)
    lq_held, gt_held = RF.bicubic_degrade(img[:, :, split:], 2)
    model = timm.create_model('test_mair')
    iters = 600
    opt = torch.optim.Adam(model.parameters(), lr=5e-3, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / iters)))
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(iters):
        pairs = [RF.paired_augment(RF.paired_random_crop(lq_train, gt_train, 24, 2, rng=gen), rng=gen)
                 for _ in range(4)]
        loss = (model(torch.stack([p[0] for p in pairs])) - torch.stack([p[1] for p in pairs])).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
    with torch.no_grad():
        restored = model.eval()(lq_held[None])[0]
    bicubic = RF.imresize(lq_held, 2)
    ours, baseline = RF.psnr(restored, gt_held, 2, True), RF.psnr(bicubic, gt_held, 2, True)
    print(f'held-out PSNR (Y, border 2): test_mair {ours:.2f} dB, bicubic {baseline:.2f} dB')
    assert ours > baseline


# ------------------------------------------------------------------------------------------------------
# tools/restore.py

def test_restore_tool_writes_restored_images(tmp_path):
    from vimamba.downstream.restoration.inference import main

    src = tmp_path / 'in.png'
    save(photo((30, 41)), str(src))
    written = main([str(src), '--model', 'test_mair', '--tile', '16', '--device', 'cpu', '--out',
                    str(tmp_path / 'out')])
    assert [osp.basename(p) for p in written] == ['in.png']
    assert Image.open(written[0]).size == (82, 60)
    # a checkpoint in the official format goes through the model's filter
    model = timm.create_model('test_mair')
    torch.save({'params': official_state_dict(model)}, str(tmp_path / 'ckpt.pth'))
    written = main([str(src), '--model', 'test_mair', '--checkpoint', str(tmp_path / 'ckpt.pth'),
                    '--out', str(tmp_path / 'out2')])
    expected = (model.eval()(load_image(str(src))[None])[0].clamp(0, 1) * 255).round()
    got = torch.from_numpy(np.array(Image.open(written[0]))).permute(2, 0, 1).float()
    assert (got - expected).abs().max() <= 1


@pytest.mark.parametrize('args, message', [
    (['missing.png', '--out', 'o'], "images: 'missing.png' is not a file"),
    (['bad.png', '--out', 'o'], "images: 'bad.png' is not an image PIL can read"),
    (['in.png', '--model', 'vim_tiny_patch16_224', '--out', 'o'],
     "--model 'vim_tiny_patch16_224' is not a restoration model (an image classifier / backbone of "
     "vimamba.models.vim); restoration models: mair_cdn, "),
    (['in.png', '--model', 'mair_x2', '--out', 'o'],
     "--model 'mair_x2' is not a restoration model; nearest: mair_sr_x2, "),
    (['in.png', '--model', 'test_mair', '--checkpoint', 'nope.pth', '--out', 'o'],
     "--checkpoint 'nope.pth' is not a file"),
    (['in.png', '--model', 'test_mair', '--out', 'in.png'], "--out 'in.png' is a file; give a folder"),
    (['in.png', '--model', 'test_mair', '--tile', '0', '--out', 'o'], '--tile must be >= 1, got 0'),
    (['in.png', '--model', 'test_mair', '--gt', 'gt.png', 'gt.png', '--out', 'o'],
     '--gt: give one file per image (1) or one folder, got 2 paths'),
    (['in.png', '--model', 'test_mair', '--gt', 'in.png', '--out', 'o'],
     "--gt 'in.png' is 20x15 but test_mair restores 'in.png' (20x15) to 40x30"),
    (['in.png', '--model', 'test_mair', '--gt', 'nothing_here', '--out', 'o'],
     "--gt: 'nothing_here' is not a file"),
])
def test_restore_tool_stops_on_plain_mistakes_with_one_line(args, message, tmp_path, monkeypatch, capsys):
    from vimamba.downstream.restoration.inference import main

    monkeypatch.chdir(tmp_path)
    save(photo((15, 20)), 'in.png')
    (tmp_path / 'bad.png').write_text('not an image')
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and f'error: {message}' in err, err
    assert 'warning' not in err and not (tmp_path / 'o').exists()  # stopped before any model work


def test_restore_tool_scores_against_ground_truth_and_warns_without_weights(tmp_path, capsys):
    from vimamba.downstream.restoration.inference import main

    gt = photo((40, 58))
    lq = RF.quantize(RF.imresize(gt, 0.5).clamp(0, 1))
    save(gt, str(tmp_path / 'a.png'))
    (tmp_path / 'lq').mkdir()
    save(lq, str(tmp_path / 'lq' / 'ax2.png'))
    model = timm.create_model('test_mair')
    torch.save({'params': official_state_dict(model)}, str(tmp_path / 'ckpt.pth'))
    written = main([str(tmp_path / 'lq' / 'ax2.png'), '--model', 'test_mair', '--checkpoint',
                    str(tmp_path / 'ckpt.pth'), '--gt', str(tmp_path), '--out', str(tmp_path / 'out')])
    # (--gt a folder: 'ax2' finds 'a.png')
    out = capsys.readouterr()
    assert 'warning' not in out.err
    restored = load_image(written[0])
    lq = load_image(str(tmp_path / 'lq' / 'ax2.png'))
    bicubic = RF.imresize(lq, 2).clamp(0, 1)
    expected = (f"{tmp_path / 'lq' / 'ax2.png'} -> {written[0]}: PSNR {RF.psnr(restored, gt, 2, True):.2f} dB, "
                f"SSIM {RF.ssim(restored, gt, 2, True):.4f} (bicubic: {RF.psnr(bicubic, gt, 2, True):.2f} dB, "
                f"{RF.ssim(bicubic, gt, 2, True):.4f})")
    assert out.out.splitlines() == [expected]
    assert RF.psnr(bicubic, gt, 2, True) > 25  # the baseline is the real bicubic upscaling of this photo

    main([str(tmp_path / 'lq' / 'ax2.png'), '--model', 'test_mair', '--out', str(tmp_path / 'out2')])
    out = capsys.readouterr()
    assert 'warning: no --checkpoint: test_mair runs with random weights' in out.err
    assert out.out.splitlines() == [f"{tmp_path / 'lq' / 'ax2.png'} -> {tmp_path / 'out2' / 'ax2.png'}"]


# ------------------------------------------------------------------------------------------------------
# mmengine: configs, Runner

CONFIGS = sorted(p for p in __import__('glob').glob(osp.join(osp.dirname(__file__), '..', 'configs', 'restoration',
                                                            '*.py')))


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_configs_parse_and_name_matching_models(path):
    mmengine_config = pytest.importorskip('mmengine.config')
    cfg = mmengine_config.Config.fromfile(path)
    model = timm.create_model(cfg.model.generator.model_name, device='meta')
    assert cfg.model.scale == model.upscale
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[loader].dataset.get('scale', 1) == model.upscale
    crop = {m.crop_border for m in cfg.val_evaluator}
    assert crop == ({model.upscale} if model.upscale > 1 else {0})


def _runner_cfg(name, div2k, tmp_path):
    from mmengine.config import Config

    cfg = Config.fromfile(osp.join(osp.dirname(__file__), '..', 'configs', 'restoration', name))
    cfg.model.init_checkpoint = None
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].num_workers = 0
        cfg[loader].persistent_workers = False
        cfg[loader].dataset.gt_dir = str(div2k / 'HR')
        if cfg[loader].dataset.get('lq_dir'):
            sr = cfg.model.scale > 1
            cfg[loader].dataset.lq_dir = str(div2k / 'LR_bicubic' / 'X2') if sr else str(div2k / 'HR')
            cfg[loader].dataset.filename_tmpl = '{}x2' if sr else '{}'
        cfg[loader].dataset.pop('pairing', None)
    cfg.train_dataloader.batch_size = 2
    cfg.train_dataloader.dataset.gt_patch_size = 16
    cfg.train_cfg.max_iters = 4
    cfg.train_cfg.val_interval = 4
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 4
    cfg.work_dir = str(tmp_path / 'work')
    return cfg


def test_runner_trains_validates_and_tests(div2k, tmp_path):
    """The light-SR recipe with test_mair: train, validate (best checkpoint), test with tiles + x8 ensemble on
    on-the-fly bicubic LR images, then test an official BasicSR file given as `load_from`."""
    pytest.importorskip('mmengine')
    from mmengine.runner import Runner

    cfg = _runner_cfg('mair_light_t_x2_div2k.py', div2k, tmp_path)
    cfg.model.generator.model_name = 'test_mair'
    cfg.test_dataloader.dataset.lq_dir = None
    cfg.test_dataloader.dataset.degradation = dict(type='bicubic')
    cfg.model.test_cfg = dict(tile_size=20, self_ensemble=True)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert osp.isfile(osp.join(cfg.work_dir, 'best_PSNR_iter_4.pth'))
    metrics = runner.test()
    assert set(metrics) >= {'PSNR', 'SSIM'} and 0 < metrics['PSNR'] < 100

    # `load_from` (tools/test.py's checkpoint argument) may be an official BasicSR file.
    official = timm.create_model('test_mair')
    torch.save({'params': official_state_dict(official)}, str(tmp_path / 'official.pth'))
    cfg.load_from = str(tmp_path / 'official.pth')
    cfg.work_dir = str(tmp_path / 'work_test')
    cfg.model.test_cfg = dict(tile_size=None, self_ensemble=False)
    tester = Runner.from_cfg(cfg)
    tester.test()
    for (name, ours), theirs in zip(tester.model.generator.state_dict().items(), official.state_dict().values()):
        torch.testing.assert_close(ours, theirs, msg=name)


@pytest.mark.parametrize('config, generator', [
    ('mair_cdn_sigma25_dfwb.py', dict(embed_dim=8, depths=(1,), d_state=1, ssm_ratio=1.0)),
    ('mairunet_realdn_sidd.py', dict(embed_dim=8, depths=(1, 1, 1, 1), num_refinement_blocks=1, ssm_ratio=1.0,
                                     base_d_state=1)),
])
def test_runner_runs_the_denoising_recipes(config, generator, div2k, tmp_path):
    """Seeded-noise denoising (Charbonnier, MultiStepLR) and the Restormer-style recipe (AdamW, gradient clipping,
    flat-then-cosine LR, progressive patches, mixup) for a few iterations on tiny networks."""
    pytest.importorskip('mmengine')
    from mmengine.runner import Runner

    cfg = _runner_cfg(config, div2k, tmp_path)
    cfg.model.generator.update(generator)
    if 'progressive' in cfg.model.get('train_cfg', {}):
        cfg.model.train_cfg.progressive = dict(iters=[2, 2], patch_sizes=[8, 16], batch_sizes=[2, 1])
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    assert 0 < metrics['PSNR'] < 100 and 0 < metrics['SSIM'] <= 1


def test_restorer_refuses_a_model_of_another_scale():
    pytest.importorskip('mmengine')
    from vimamba.downstream.restoration import Restorer

    with pytest.raises(ValueError, match=r'scale=4 but the generator .* upscales by 2'):
        Restorer(generator=dict(model_name='test_mair'), scale=4)


def test_restorer_progressive_patches_and_predict():
    pytest.importorskip('mmengine')
    from mmengine.logging import MessageHub
    from vimamba.downstream.restoration import Restorer

    model = Restorer(generator=dict(model_name='test_mair'), scale=2,
                     train_cfg=dict(progressive=dict(iters=[2, 3], patch_sizes=[8, 16], batch_sizes=[3, 1]),
                                    mixup_beta=1.2))
    lq, gt = torch.rand(4, 3, 8, 8), torch.rand(4, 3, 16, 16)
    hub = MessageHub.get_current_instance()
    for it, (batch, size) in enumerate([(3, 8), (3, 8), (1, 16), (1, 16), (1, 16), (1, 16)]):
        hub.update_info('iter', it)
        a, b = model._training_batch(lq, gt)
        assert a.shape == (batch, 3, size // 2, size // 2) and b.shape == (batch, 3, size, size)
    # pseudo_collate's dict of lists and a plain list of dicts give the same per-image samples
    samples = [dict(gt=torch.rand(3, 8, 6), name='a'), dict(gt=torch.rand(3, 8, 6), name='b')]
    collated = dict(gt=[s['gt'] for s in samples], name=['a', 'b'])
    out = model.forward([torch.rand(3, 4, 3), torch.rand(3, 4, 3)], collated, mode='predict')
    assert [o['name'] for o in out] == ['a', 'b'] and out[1]['pred'].shape == (3, 8, 6)
    assert 0 <= out[0]['pred'].min() and out[0]['pred'].max() <= 1
    losses = model.forward(torch.rand(2, 3, 4, 3), samples, mode='loss')
    assert losses['loss_pix'].requires_grad
