"""Change detection: metrics against hand-computed confusion matrices, losses, paired augmentation, the siamese
networks (parameter counts, atrous decoder scans, other backbones), a tiny AWMambaBCD learning on generated
bi-temporal data, the demo, and (when mmengine is importable) the configs through the mmengine Runner."""
import glob
import math
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image

from vimamba.downstream.change_detection import (
    BinaryChangeDataset, BinaryChangeNet, SemanticChangeDataset, SemanticChangeNet, binary_change_metrics,
    confusion_matrix, lovasz_softmax, scd_loss, semantic_change_hist, semantic_change_metrics, slide_inference)
from vimamba.downstream.change_detection.inference import main as detect_main
from vimamba.scans import AtrousWindowRateScan, get_pattern

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_ENCODER = dict(model_name='test_atrousmamba', model_kwargs=dict(depths=(1, 1, 1, 1)))
TINY_DECODER = dict(width=16, window_size=4, decoder_atrous_rates=(1, 2))


# ---------------------------------------------------------------------------------------------------------------
# Metrics

def test_binary_metrics_from_hand_counted_matrix():
    # TN 50, FP 10, FN 5, TP 35 (rows = target, columns = prediction).
    target = torch.tensor([0] * 60 + [1] * 40 + [255] * 7)
    pred = torch.tensor([0] * 50 + [1] * 10 + [0] * 5 + [1] * 35 + [1] * 7)
    hist = confusion_matrix(pred, target, 2)
    assert hist.tolist() == [[50, 10], [5, 35]]
    m = binary_change_metrics(hist)
    assert m['precision'] == pytest.approx(35 / 45)
    assert m['recall'] == pytest.approx(35 / 40)
    assert m['f1'] == pytest.approx(70 / 85)
    assert m['iou'] == pytest.approx(35 / 50)
    assert m['oa'] == pytest.approx(0.85)
    pe = (60 * 55 + 40 * 45) / 100 ** 2
    assert m['kappa'] == pytest.approx((0.85 - pe) / (1 - pe))
    empty = binary_change_metrics(torch.zeros(2, 2))
    assert empty['f1'] == 0 and empty['kappa'] == 0


def test_semantic_metrics_from_hand_counted_matrix():
    hist = torch.tensor([[50, 5, 5], [4, 20, 6], [2, 3, 5]])
    m = semantic_change_metrics(hist)
    assert m['oa'] == pytest.approx(0.75)
    iou_unchanged, iou_change = 50 / (60 + 56 - 50), 34 / 50
    assert m['iou_change'] == pytest.approx(iou_change)
    assert m['miou'] == pytest.approx((iou_unchanged + iou_change) / 2)
    # Kappa of the matrix with hist[0, 0] = 0: total 50, diagonal 25, rows (10, 30, 10), columns (6, 28, 16).
    pe = (10 * 6 + 30 * 28 + 10 * 16) / 50 ** 2
    kappa_n0 = (0.5 - pe) / (1 - pe)
    assert m['kappa_n0'] == pytest.approx(kappa_n0)
    assert m['sek'] == pytest.approx(kappa_n0 * math.exp(iou_change) / math.e)
    sc_p, sc_r = 25 / 44, 25 / 40
    assert m['f_scd'] == pytest.approx(2 * sc_p * sc_r / (sc_p + sc_r))


def test_semantic_change_hist_masks_and_modes():
    change_t = torch.tensor([0, 1, 1, 0])
    t1, t2 = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 2, 2, 0])
    change_p = torch.tensor([0, 1, 0, 1])
    p1, p2 = torch.tensor([1, 1, 2, 2]), torch.tensor([0, 2, 1, 1])  # masked by change_p -> [0,1,0,2], [0,2,0,1]
    hist = semantic_change_hist(change_p, p1, p2, change_t, t1, t2, 3, 'per_date')
    assert hist.tolist() == [[2, 1, 1], [0, 1, 0], [2, 0, 1]]
    from_to = semantic_change_hist(change_p, p1, p2, change_t, t1, t2, 3, 'from_to')
    expected = torch.zeros(5, 5, dtype=torch.long)
    for g, p in ((0, 0), (2, 2), (4, 0), (0, 3)):  # from-to class (c1 - 1) * 2 + c2
        expected[g, p] += 1
    assert torch.equal(from_to, expected)
    with pytest.raises(ValueError, match='mode'):
        semantic_change_hist(change_p, p1, p2, change_t, t1, t2, 3, 'both')


def test_lovasz_softmax_hand_value():
    # One present class, errors 0.1 and 0.4: sorted errors . Lovasz gradient (0.5, 0.5) = 0.25.
    probs = torch.tensor([[0.1, 0.4], [0.9, 0.6]]).reshape(1, 2, 1, 2)
    assert lovasz_softmax(probs, torch.ones(1, 1, 2, dtype=torch.long)).item() == pytest.approx(0.25)
    perfect = torch.nn.functional.one_hot(torch.tensor([[0, 1, 1]]), 2).permute(0, 2, 1)[..., None].float()
    assert lovasz_softmax(perfect, torch.tensor([[[0], [1], [1]]])).item() == pytest.approx(0.)


def test_scd_loss_terms():
    torch.manual_seed(0)
    logits = [torch.randn(2, c, 8, 8, requires_grad=True) for c in (2, 5, 5)]
    change = torch.randint(0, 2, (2, 8, 8))
    sem1, sem2 = torch.randint(0, 5, (2, 8, 8)) * change, torch.randint(0, 5, (2, 8, 8)) * change
    losses = scd_loss(*logits, change, sem1, sem2)
    assert set(losses) == {'loss_ce_cd', 'loss_ce_sem', 'loss_consistency', 'loss_lovasz_cd', 'loss_lovasz_sem'}
    sum(losses.values()).backward()
    assert all(torch.isfinite(t.grad).all() for t in logits)


# ---------------------------------------------------------------------------------------------------------------
# Data

def _write_pair_dataset(root, num, size, seed, semantic=False):
    """Date 1: noisy background; date 2: the same with bright squares pasted in; label: where they were pasted."""
    rng = np.random.RandomState(seed)
    dirs = ('im1', 'im2', 'label1', 'label2') if semantic else ('A', 'B', 'label')
    for d in dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(num):
        a = (rng.rand(size, size, 3) * 100 + 40).astype(np.uint8)
        b = np.clip(a.astype(int) + rng.randint(-10, 11, a.shape), 0, 255).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        for _ in range(rng.randint(1, 4)):
            s = rng.randint(size // 6, size // 3)
            y, x = rng.randint(0, size - s, 2)
            b[y:y + s, x:x + s] = ((255, 230, 30), (30, 240, 255), (255, 60, 200))[rng.randint(3)]
            mask[y:y + s, x:x + s] = 1
        name = f'{i:03d}.png'
        names.append(name)
        Image.fromarray(a).save(root / dirs[0] / name)
        Image.fromarray(b).save(root / dirs[1] / name)
        if semantic:  # date-1 class 2 ('ground') -> date-2 class 5 ('building') where changed (SECOND colours)
            Image.fromarray(np.where(mask[..., None], [[[128, 128, 128]]], [[[255, 255, 255]]]).astype(np.uint8)) \
                .save(root / 'label1' / name)
            Image.fromarray(np.where(mask[..., None], [[[128, 0, 0]]], [[[255, 255, 255]]]).astype(np.uint8)) \
                .save(root / 'label2' / name)
        else:
            Image.fromarray(mask * 255).save(root / 'label' / name)
    (root / 'list').mkdir(exist_ok=True)
    (root / 'list' / 'all.txt').write_text('\n'.join(osp.splitext(n)[0] for n in names) + '\n')
    return names


def test_both_dates_get_the_same_crop_and_flip(tmp_path):
    rng = np.random.RandomState(0)
    for d in ('A', 'B', 'label'):
        (tmp_path / d).mkdir()
    img = (rng.rand(24, 20, 3) * 255).astype(np.uint8)
    label = (img[..., 0] > 128).astype(np.uint8) * 255
    Image.fromarray(img).save(tmp_path / 'A' / 'x.png')
    Image.fromarray(img).save(tmp_path / 'B' / 'x.png')  # date 2 == date 1: any unpaired transform shows
    Image.fromarray(label).save(tmp_path / 'label' / 'x.png')
    ds = BinaryChangeDataset(str(tmp_path), crop_size=12, repeat=40, seed=0)
    seen = set()
    for i in range(len(ds)):
        s = ds[i]
        assert s['img1'].shape == (3, 12, 12) and s['label'].shape == (12, 12)
        assert torch.equal(s['img1'], s['img2'])
        assert torch.equal(s['label'], (s['img1'][0] * 255 > 128).long())
        seen.add(tuple(s['img1'][:, 0, 0].tolist()))
    assert len(seen) > 10  # the crops and flips really vary
    whole = BinaryChangeDataset(str(tmp_path), test_mode=True, crop_size=12)
    assert whole[0]['img1'].shape == (3, 24, 20)
    with pytest.raises(FileNotFoundError, match='split_file'):
        BinaryChangeDataset(str(tmp_path), split_file='list/missing.txt')


def test_semantic_dataset_palette(tmp_path):
    _write_pair_dataset(tmp_path, 2, 16, seed=1, semantic=True)
    ds = SemanticChangeDataset(str(tmp_path), split_file='list/all.txt', test_mode=True)
    s = ds[0]
    changed = s['label'].bool()
    assert changed.any()
    assert set(s['label1'][changed].tolist()) == {2} and set(s['label2'][changed].tolist()) == {5}
    assert set(s['label1'][~changed].tolist()) == {0}


# ---------------------------------------------------------------------------------------------------------------
# Networks

def test_parameter_counts_equal_changemamba():
    # ChangeMamba's counts, measured on its code: tiny encoder depths (2, 2, 4, 2).
    encoder = dict(model_name='atrousmamba_tiny', model_kwargs=dict(depths=(2, 2, 4, 2)))
    with torch.device('meta'):
        bcd = BinaryChangeNet(encoder=encoder)
        scd = SemanticChangeNet(encoder=encoder)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(bcd.encoder) == 27_993_984
    assert count(bcd.decoder) == 4_619_264
    assert count(bcd) == 32_613_506
    assert count(scd) == 37_125_641


def test_decoder_scans_atrous_windows_on_double_width_grids(scan_calls, one_thread):
    net = BinaryChangeNet(encoder=TINY_ENCODER, decoder=TINY_DECODER).eval()
    scans = [m.mixer.pattern for m in net.decoder.modules() if hasattr(m, 'mixer')]
    assert all(isinstance(s, AtrousWindowRateScan) for s in scans)
    dec = net.decoder
    build_order = [dec.st_concat[3], dec.st_interleave[3], dec.st_side[3], dec.st_concat[2]]  # deepest level first
    assert [b.block.mixer.pattern.rate for b in build_order] == [1, 2, 1, 2]  # rates cycle in build order
    with torch.no_grad():
        net(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64))
    seen = [order.index for _, order in scan_calls]
    # Level 0 (16x16) is decoded last: concat (16x16), interleaved (16x32), side by side (16x32) blocks.
    st = [net.decoder.st_concat[0], net.decoder.st_interleave[0], net.decoder.st_side[0]]
    for index, block, grid in zip(seen[-3:], st, ((16, 16), (16, 32), (16, 32))):
        rate = block.block.mixer.pattern.rate
        torch.testing.assert_close(index, get_pattern('atrous_window', window=4, rate=rate).order(*grid).index)


@pytest.mark.parametrize('name', ['test_vim', 'test_mobilemamba'])
def test_other_backbones(name, one_thread):
    kwargs = dict(dynamic_img_size=True) if name == 'test_vim' else {}
    net = BinaryChangeNet(encoder=dict(model_name=name, model_kwargs=kwargs), decoder=TINY_DECODER)
    out = net(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))  # MobileMamba's stride 64: 1x1 maps, BN needs 2
    assert out.shape == (2, 2, 64, 64)
    out.mean().backward()


def test_slide_inference_matches_whole_for_a_window_covering_the_image(one_thread):
    net = SemanticChangeNet(num_classes=4, encoder=TINY_ENCODER, decoder=TINY_DECODER).eval()
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        whole = net(a, b)
        slid = slide_inference(net, a, b, crop_size=32)
        for w, s in zip(whole, slid):
            torch.testing.assert_close(s, w.log_softmax(1), rtol=1e-4, atol=1e-5)
        tiles = slide_inference(net, torch.rand(1, 3, 40, 50), torch.rand(1, 3, 40, 50), crop_size=32, stride=16)
    assert [t.shape for t in tiles] == [(1, 2, 40, 50), (1, 4, 40, 50), (1, 4, 40, 50)]
    with pytest.raises(ValueError, match='stride'):
        slide_inference(net, a, b, crop_size=16, stride=32)


def _f1(net, dataset):
    net.eval()
    hist = torch.zeros(2, 2, dtype=torch.long)
    with torch.no_grad():
        for i in range(len(dataset)):
            s = dataset[i]
            pred = net(s['img1'][None], s['img2'][None]).argmax(1)
            hist += confusion_matrix(pred, s['label'][None], 2)
    net.train()
    return binary_change_metrics(hist)['f1']


def test_tiny_bcd_learns_generated_changes(tmp_path, one_thread):
    """A few dozen iterations of AWMambaBCD on shapes pasted into the second date: the F1 rises."""
    from vimamba.downstream.change_detection import bcd_loss

    _write_pair_dataset(tmp_path / 'train', 24, 48, seed=0)
    _write_pair_dataset(tmp_path / 'val', 6, 48, seed=1)
    train = BinaryChangeDataset(str(tmp_path / 'train'), split_file='list/all.txt', crop_size=32, seed=0)
    val = BinaryChangeDataset(str(tmp_path / 'val'), test_mode=True)
    torch.manual_seed(0)
    net = BinaryChangeNet(encoder=TINY_ENCODER, decoder=TINY_DECODER)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(train, batch_size=4, shuffle=True, drop_last=True)
    f1 = [_f1(net, val)]
    step = 0
    while step < 36:
        for batch in loader:
            losses = bcd_loss(net(batch['img1'], batch['img2']), batch['label'])
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
            step += 1
            if step % 18 == 0:
                f1.append(_f1(net, val))
            if step == 36:
                break
    assert f1[-1] > f1[0] + 0.2 and f1[-1] > 0.5, f1


def test_detect_changes_demo(tmp_path, one_thread):
    names = _write_pair_dataset(tmp_path, 1, 40, seed=2)
    a, b = str(tmp_path / 'A' / names[0]), str(tmp_path / 'B' / names[0])
    out = str(tmp_path / 'change.png')
    written = detect_main([a, b, '--out', out, '--encoder', 'test_atrousmamba', '--crop-size', '32',
                           '--device', 'cpu'])
    assert written == [out]
    assert Image.open(out).size == (40, 40)
    written = detect_main([a, b, '--out', out, '--task', 'scd', '--encoder', 'test_atrousmamba', '--crop-size', '32',
                           '--device', 'cpu'])
    assert len(written) == 3 and Image.open(written[1]).mode == 'P'


@pytest.mark.parametrize('args, message', [
    (['A.png', 'missing.png', '--out', 'c.png'], "images: 'missing.png' is not a file"),
    (['A.png', 'bad.png', '--out', 'c.png'], "images: 'bad.png' is not an image PIL can read"),
    (['A.png', 'small.png', '--out', 'c.png'], "images: 'A.png' is 40x40, 'small.png' is 20x40; the two dates"),
    (['A.png', 'B.png', '--out', 'c'], "--out 'c': give an image file name (e.g. change.png)"),
    (['A.png', 'B.png', '--out', 'c.png', '--encoder', 'atrousmamba_tin'],
     "--encoder 'atrousmamba_tin' is not a vimamba model; nearest: atrousmamba_tiny"),
    (['A.png', 'B.png', '--out', 'c.png', '--checkpoint', 'nope.pth'], "--checkpoint 'nope.pth' is not a file"),
    (['A.png', 'B.png', '--out', 'c.png', '--config', 'nope.py'], "--config 'nope.py' is not a file"),
    (['A.png', 'B.png', '--out', 'c.png', '--crop-size', '-1'], '--crop-size must be >= 0'),
])
def test_detect_changes_stops_on_plain_mistakes_with_one_line(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name, size in (('A.png', (40, 40)), ('B.png', (40, 40)), ('small.png', (20, 40))):
        Image.new('RGB', size).save(tmp_path / name)
    (tmp_path / 'bad.png').write_text('not an image')
    with pytest.raises(SystemExit) as e:
        detect_main(args + ['--device', 'cpu'])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f'error: {message}' in err, err
    assert 'warning' not in err  # stopped before any model work


def test_change_detection_reads_images_without_the_restoration_package():
    import subprocess
    import sys

    code = ('import sys; import vimamba.downstream.change_detection.inference; '
            'print(sorted(m for m in sys.modules if m.startswith("vimamba.downstream.")))')
    loaded = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert 'vimamba.downstream.common' in loaded and 'restoration' not in loaded, loaded


def test_detect_changes_warns_without_weights_and_creates_the_out_folder(tmp_path, capsys, one_thread):
    for name in ('A.png', 'B.png'):
        Image.new('RGB', (24, 24)).save(tmp_path / name)
    out = tmp_path / 'new' / 'change.png'
    detect_main([str(tmp_path / 'A.png'), str(tmp_path / 'B.png'), '--out', str(out), '--encoder',
                 'test_atrousmamba', '--crop-size', '0', '--device', 'cpu'])
    assert out.is_file()
    assert 'warning: no --checkpoint: the change network has random weights' in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Configs

CONFIGS = sorted(osp.basename(p) for p in glob.glob(osp.join(REPO, 'configs', 'change', '*.py')))


def _read_config(path):
    """A config's variables with its `_base_` files merged (dicts recursively), as mmengine's Config does."""
    def merge(base, new):
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict) and not value.get('_delete_'):
                merge(base[key], value)
            else:
                base[key] = value
        return base

    scope = {}
    exec(compile(open(path).read(), path, 'exec'), scope)
    merged = {}
    for base in scope.get('_base_', []):
        merged = merge(merged, _read_config(osp.join(osp.dirname(path), base)))
    return merge(merged, {k: v for k, v in scope.items() if not k.startswith('__') and k != '_base_'})


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds_the_spec_model(name):
    cfg = _read_config(osp.join(REPO, 'configs', 'change', name))
    model = dict(cfg['model'])
    kind = model.pop('type')
    for key in ('lovasz_weight', 'test_cfg'):
        model.pop(key)
    with torch.device('meta'):
        net = (BinaryChangeNet if kind == 'BinaryChangeDetector' else SemanticChangeNet)(**model)
    count = sum(p.numel() for p in net.parameters())
    expected = {  # ChangeMamba's measured counts, 7 SECOND classes
        ('BinaryChangeDetector', 'tiny'): 32_613_506, ('BinaryChangeDetector', 'small'): 53_999_618,
        ('BinaryChangeDetector', 'base'): 92_399_874, ('SemanticChangeDetector', 'tiny'): 37_125_641,
        ('SemanticChangeDetector', 'small'): 58_511_753}
    size = model['encoder']['model_name'].split('_')[1]
    if kind == 'SemanticChangeDetector' and model['num_classes'] != 7:
        expected[(kind, size)] -= (7 - model['num_classes']) * 129  # one 1x1 conv (128 + bias) per class
    assert count == expected[(kind, size)]
    loader = cfg['train_dataloader']
    assert loader['collate_fn'] == dict(type='default_collate')
    assert loader['dataset']['type'] in ('BinaryChangeDataset', 'SemanticChangeDataset')


def _tiny_runner_cfg(name, data_root, work_dir, semantic):
    from mmengine.config import Config

    cfg = Config.fromfile(osp.join(REPO, 'configs', 'change', name))
    cfg.model.encoder = TINY_ENCODER
    cfg.model.decoder = TINY_DECODER
    cfg.work_dir = str(work_dir)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=4, val_interval=4)
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 4
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[key]
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.batch_size = 2
        loader.dataset.data_root = str(data_root)
        loader.dataset.pop('img_dirs', None)
        loader.dataset.pop('label_dir', None)
        if semantic:
            loader.dataset.split_file = 'list/all.txt'
    cfg.train_dataloader.dataset.crop_size = 32
    return cfg


@pytest.mark.parametrize('name,semantic', [('awmamba_bcd_tiny_levir_cd.py', False),
                                           ('awmamba_scd_tiny_second.py', True)])
def test_configs_train_and_test_with_the_runner(name, semantic, tmp_path, one_thread):
    pytest.importorskip('mmengine')
    from mmengine.runner import Runner

    names = _write_pair_dataset(tmp_path / 'data', 4, 32, seed=3, semantic=semantic)
    cfg = _tiny_runner_cfg(name, tmp_path / 'data', tmp_path / 'work', semantic)
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    keys = ('oa', 'miou', 'sek', 'f_scd') if semantic else ('precision', 'recall', 'f1', 'iou', 'oa', 'kappa')
    assert all(k in metrics for k in keys), metrics

    # The demo rebuilds the trained network from the config and reads the Runner's checkpoint.
    cfg.dump(str(tmp_path / 'config.py'))
    dates = [str(tmp_path / 'data' / d / names[0]) for d in (('im1', 'im2') if semantic else ('A', 'B'))]
    written = detect_main(dates + ['--out', str(tmp_path / 'change.png'), '--config', str(tmp_path / 'config.py'),
                                   '--checkpoint', str(tmp_path / 'work' / 'iter_4.pth'), '--device', 'cpu'])
    assert len(written) == (3 if semantic else 1)
