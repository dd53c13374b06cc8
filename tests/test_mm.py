"""OpenMMLab integration: the backbone wrapper, the layer-decay constructor, every seg / det config, Runner smoke
trainings on generated ADE20K- and COCO-layout data, and 2-process DDP over gloo.

CPU and tiny: the real configs are loaded and only the backbone is swapped for a `test_*` variant (plus head
widths, image sizes and the schedule). Skipped only with VIMAMBA_NO_MM=1; a missing mmcv is a failure.
"""
import glob
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from expected_no_decay import expected_no_decay

NO_MM = os.environ.get('VIMAMBA_NO_MM') == '1'
pytestmark = [pytest.mark.mm, pytest.mark.skipif(NO_MM, reason='set up with VIMAMBA_NO_MM=1')]

ROOT = Path(__file__).resolve().parents[1]
SEG_CONFIGS = sorted(glob.glob(str(ROOT / 'configs' / 'seg' / '*.py')))
DET_CONFIGS = sorted(glob.glob(str(ROOT / 'configs' / 'det' / '*.py')))

# one real config per family, and the tiny variant that replaces its backbone
FAMILIES = {
    'vim': dict(model='test_vim', out_indices=(0, 1, 2, 3),
                seg='upernet_vim-tiny_8xb2-160k_ade20k-512x512.py', det='mask-rcnn_vim-tiny_fpn_1x_coco.py'),
    'lbvim': dict(model='test_lbvim', out_indices=(0, 1, 2, 3),
                  seg='upernet_lbvim-tiny_8xb2-160k_ade20k-512x512.py', det='mask-rcnn_lbvim-tiny_fpn_1x_coco.py'),
    'shufflemamba': dict(model='test_shufflemamba_reg', out_indices=(0, 1, 2, 3),
                         seg='upernet_shufflemamba-base_8xb2-160k_ade20k-512x512.py',
                         det='mask-rcnn_shufflemamba-base_fpn_1x_coco.py'),
    'atrousmamba': dict(model='test_atrousmamba', out_indices=(0, 1, 2, 3),
                        seg='upernet_atrousmamba-tiny_8xb2-160k_ade20k-512x512.py',
                        det='mask-rcnn_atrousmamba-tiny_fpn_1x_coco.py'),
    'vmamba': dict(model='test_vmamba', out_indices=(0, 1, 2, 3),
                   seg='upernet_vmamba-tiny-s2l5_8xb2-160k_ade20k-512x512.py',
                   det='mask-rcnn_vmamba-tiny-s2l5_fpn_1x_coco.py'),
    'mobilemamba': dict(model='test_mobilemamba', out_indices=(1, 2, 3),
                        seg='upernet_mobilemamba-b4_8xb2-160k_ade20k-512x512.py',
                        det='mask-rcnn_mobilemamba-b1_fpn_1x_coco.py'),
}
CROP = (64, 64)


@pytest.fixture(scope='module')
def mm():
    """The registration module (imported like a config's custom_imports does)."""
    import mmdet.models  # noqa: F401  (both stacks importable with compiled ops)
    import mmseg.models  # noqa: F401

    import vimamba.downstream.mm as mm
    return mm


def _tiny_backbone(family: str, det: bool = False, **extra) -> dict:
    info = FAMILIES[family]
    cfg = dict(model_name=info['model'], out_indices=info['out_indices'], init_cfg=None, **extra)
    if family in ('vim', 'lbvim', 'shufflemamba'):
        cfg['img_size'] = CROP
    return cfg


def _out_channels(backbone_cfg: dict) -> list:
    from mmengine.registry import MODELS
    with torch.device('meta'):
        return list(MODELS.build(dict(type='VimambaBackbone', **backbone_cfg)).out_channels)


def _tiny_seg_cfg(family: str):
    from mmengine.config import Config
    cfg = Config.fromfile(str(ROOT / 'configs' / 'seg' / FAMILIES[family]['seg']))
    cfg.model.backbone.update(_tiny_backbone(family))
    cfg.model.backbone.pyramid_norm_cfg = dict(type='BN')
    chans = _out_channels({k: v for k, v in cfg.model.backbone.items() if k != 'type'})
    aux_index = cfg.model.auxiliary_head.in_index
    cfg.model.data_preprocessor.size = CROP
    cfg.model.decode_head.update(in_channels=chans, channels=16, norm_cfg=dict(type='BN', requires_grad=True))
    cfg.model.auxiliary_head.update(in_channels=chans[aux_index], channels=8,
                                    norm_cfg=dict(type='BN', requires_grad=True))
    if cfg.model.test_cfg.get('mode') == 'slide':
        cfg.model.test_cfg.update(crop_size=CROP, stride=(43, 43))
    return cfg


def _tiny_det_cfg(family: str, num_classes: int = 2):
    from mmengine.config import Config
    cfg = Config.fromfile(str(ROOT / 'configs' / 'det' / FAMILIES[family]['det']))
    cfg.model.backbone.update(_tiny_backbone(family))
    chans = _out_channels({k: v for k, v in cfg.model.backbone.items() if k != 'type'})
    cfg.model.neck.update(in_channels=chans, out_channels=32)
    cfg.model.rpn_head.update(in_channels=32, feat_channels=32)
    roi = cfg.model.roi_head
    roi.bbox_roi_extractor.out_channels = 32
    roi.mask_roi_extractor.out_channels = 32
    roi.bbox_head.update(in_channels=32, fc_out_channels=64, num_classes=num_classes)
    roi.mask_head.update(in_channels=32, conv_out_channels=32, num_classes=num_classes)
    # fewer proposals and detections: CPU time, not behaviour
    cfg.model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=100)
    cfg.model.train_cfg.rcnn.sampler.num = 64
    cfg.model.test_cfg.rpn.update(nms_pre=200, max_per_img=50)
    cfg.model.test_cfg.rcnn.max_per_img = 20
    return cfg


def _build(model_cfg, scope: str):
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(scope)
    return MODELS.build(model_cfg)


# ---------------------------------------------------------------------------------------------------------
# registration and the wrapper


def test_registered_in_root_registries_and_found_from_mmseg_and_mmdet(mm):
    from mmdet.registry import MODELS as DET_MODELS
    from mmengine.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
    from mmseg.registry import MODELS as SEG_MODELS

    assert MODELS.get('VimambaBackbone') is mm.VimambaBackbone
    assert SEG_MODELS.get('VimambaBackbone') is mm.VimambaBackbone
    assert DET_MODELS.get('VimambaBackbone') is mm.VimambaBackbone
    assert OPTIM_WRAPPER_CONSTRUCTORS.get('LayerDecayOptimWrapperConstructor') is mm.LayerDecayOptimWrapperConstructor


def test_import_vimamba_downstream_imports_no_openmmlab():
    code = ('import sys, vimamba, vimamba.downstream\n'
            'mm = {"mmcv", "mmengine", "mmseg", "mmdet"}\n'
            'print(",".join(sorted(m for m in sys.modules if m.split(".")[0] in mm)))')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ''


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_backbone_any_input_size_gives_the_pyramid(mm, family):
    strides = (4, 8, 16, 32) if family != 'mobilemamba' else (4, 8, 16, 32, 64)
    bb = mm.VimambaBackbone(**_tiny_backbone(family), pyramid='deconv', pyramid_strides=strides)
    assert bb.out_strides == list(strides)
    x = torch.randn(2, 3, 70, 90)  # not a multiple of any patch size or stride
    outs = bb(x)
    assert isinstance(outs, tuple) and len(outs) == len(strides)
    for out, stride, chans in zip(outs, strides, bb.out_channels):
        assert out.shape[:2] == (2, chans)
        # padded to cover the image: ceil(size / stride), less the border of overlapping patches (test_vim
        # has 16-px patches every 8 px: one token fewer, two at stride 4)
        assert abs(out.shape[2] - np.ceil(70 / stride)) <= 2 and abs(out.shape[3] - np.ceil(90 / stride)) <= 2
    # without the pyramid: the model's own maps (plain: all at the token stride)
    raw = mm.VimambaBackbone(**_tiny_backbone(family), pyramid='none')(x)
    assert len(raw) == len(FAMILIES[family]['out_indices'])


def test_backbone_prunes_to_the_outputs_and_every_parameter_gets_a_gradient(mm):
    bb = mm.VimambaBackbone(model_name='test_vim', img_size=CROP, out_indices=(1, 2), pyramid='none')
    assert len(bb.model.blocks) == 3 and isinstance(bb.model.norm, torch.nn.Identity)
    sum(o.float().mean() for o in bb(torch.randn(1, 3, 64, 64))).backward()
    assert [n for n, p in bb.named_parameters() if p.grad is None] == []


def test_backbone_rejects_bad_arguments(mm):
    with pytest.raises(ValueError, match='out_indices'):
        mm.VimambaBackbone(model_name='test_vim', out_indices=(0, 7))
    with pytest.raises(ValueError, match="model_name 'vim_tinyy' is not a vimamba model; nearest: vim_tiny_patch16"):
        mm.VimambaBackbone(model_name='vim_tinyy')
    with pytest.raises(ValueError, match='not a vimamba'):
        mm.VimambaBackbone(model_name='resnet18')
    with pytest.raises(ValueError, match='init_cfg'):
        mm.VimambaBackbone(model_name='test_vim', init_cfg=dict(type='Normal'))
    with pytest.raises(ValueError, match='pyramid_strides'):
        mm.VimambaBackbone(model_name='test_vim', pyramid_strides=(4, 12, 16, 32))


def _official_vim_names(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        k = 'layers.' + k[len('blocks.'):] if k.startswith('blocks.') else k
        k = 'norm_f.' + k[len('norm.'):] if k.startswith('norm.') else k
        out[k] = v
    return out


def test_pretrained_loads_through_the_family_filter_and_survives_the_runner_init(mm, tmp_path):
    import timm
    from mmengine.model import BaseModule

    torch.manual_seed(1)
    source = timm.create_model('test_vim', num_classes=10)  # 64 px grid: 7x7 tokens
    ckpt = tmp_path / 'official.pth'
    torch.save({'model': _official_vim_names(source.state_dict())}, ckpt)

    class Detector(BaseModule):  # what the Runner calls init_weights on
        def __init__(self):
            super().__init__()
            self.backbone = mm.VimambaBackbone(
                model_name='test_vim', img_size=CROP, out_indices=(1, 3), pyramid='none',
                init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)))

    det = Detector()
    det.init_weights()
    loaded = det.backbone.model.state_dict()
    for k, v in loaded.items():
        assert torch.equal(v, source.state_dict()[k]), k

    # an mm checkpoint of the whole detector, read back with a prefix
    mm_ckpt = tmp_path / 'mm.pth'
    torch.save({'state_dict': {'backbone.model.' + k: v for k, v in loaded.items()}}, mm_ckpt)
    again = mm.VimambaBackbone(model_name='test_vim', img_size=CROP, out_indices=(1, 3), pyramid='none',
                               init_cfg=dict(type='Pretrained', checkpoint=str(mm_ckpt), prefix='backbone.model.'))
    again.init_weights()
    assert all(torch.equal(v, loaded[k]) for k, v in again.model.state_dict().items())

    # at another input size the position embedding is resampled on load (7x7 -> 15x15 grid)
    big = mm.VimambaBackbone(model_name='test_vim', img_size=(128, 128), out_indices=(3,),
                             init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)))
    big.init_weights()
    assert big.model.pos_embed.shape[1] == 15 * 15 + 1


def test_pretrained_argument_is_the_init_cfg_shorthand(mm, tmp_path):
    import timm
    source = timm.create_model('test_vim')
    ckpt = tmp_path / 'w.pth'
    torch.save({'model': _official_vim_names(source.state_dict())}, ckpt)
    bb = mm.VimambaBackbone(model_name='test_vim', out_indices=(3,), pretrained=str(ckpt))
    assert bb.init_cfg == dict(type='Pretrained', checkpoint=str(ckpt))
    bb.init_weights()
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in bb.model.state_dict().items())
    with pytest.raises(ValueError, match='give one of the two'):
        mm.VimambaBackbone(model_name='test_vim', pretrained=str(ckpt),
                           init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)))


@pytest.mark.parametrize('config', ['seg/upernet_vmamba-tiny-s2l5_8xb2-160k_ade20k-512x512.py',
                                    'det/mask-rcnn_vmamba-tiny-s1l8_fpn_1x_coco.py'])
def test_vmamba_configs_start_from_the_official_release_file(mm, config, tmp_path, monkeypatch):
    """The configs' init_cfg URL is read from torch hub's cache, where pretrained=True puts the same file."""
    import timm
    from mmengine.config import Config
    from test_atrousmamba import _to_vmamba_names
    from test_checkpoint import _vmamba_file

    backbone = Config.fromfile(str(ROOT / 'configs' / config)).model.backbone
    url = backbone.init_cfg.checkpoint
    assert url.startswith('https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/')
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    (tmp_path / 'hub' / 'checkpoints').mkdir(parents=True)
    small = dict(embed_dim=16, depths=(2, 1, 1, 1))  # the config's variant at test size
    source = timm.create_model(backbone.model_name, **small)
    _vmamba_file(tmp_path / 'hub' / 'checkpoints' / url.rsplit('/', 1)[-1], _to_vmamba_names(source.state_dict()))
    net = mm.VimambaBackbone(**dict({k: v for k, v in backbone.items() if k != 'type'}, model_kwargs=small))
    net.init_weights()
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in net.model.state_dict().items())

def test_pretrained_mismatch_fails_listing_the_keys(mm, tmp_path):
    import timm
    state = timm.create_model('test_vim').state_dict()
    state.pop('blocks.0.mixer.in_proj.weight')
    state['blocks.0.mixer.surprise'] = torch.zeros(1)
    ckpt = tmp_path / 'bad.pth'
    torch.save(state, ckpt)
    bb = mm.VimambaBackbone(model_name='test_vim', img_size=CROP,
                            init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)))
    from vimamba.checkpoint import CheckpointMismatchError
    with pytest.raises(CheckpointMismatchError) as err:
        bb.init_weights()
    assert 'blocks.0.mixer.in_proj.weight' in str(err.value) and 'blocks.0.mixer.surprise' in str(err.value)


def test_frozen_stages_and_norm_eval(mm):
    bb = mm.VimambaBackbone(model_name='test_vim', img_size=CROP, out_indices=(0, 1, 2, 3), frozen_stages=2)
    frozen = {n for n, p in bb.model.named_parameters() if not p.requires_grad}
    assert {'pos_embed', 'cls_token', 'patch_embed.proj.weight'} <= frozen
    assert any(n.startswith('blocks.1.') for n in frozen) and not any(n.startswith('blocks.2.') for n in frozen)
    bb.train()
    assert not bb.model.blocks[1].training and bb.model.blocks[2].training

    mob = mm.VimambaBackbone(model_name='test_mobilemamba', frozen_stages=1, norm_eval=True)
    assert mob.out_indices == (1, 2, 3)  # the default: every stage, the stem left out
    frozen = {n.split('.')[0] + '.' + n.split('.')[1] for n, p in mob.model.named_parameters() if not p.requires_grad}
    assert frozen == {'stem.conv1', 'stem.conv2', 'stem.conv3', 'stem.conv4', 'stages.0'}
    assert all(p.requires_grad for p in mob.model.stages[1:].parameters())
    mob.train()
    bns = [m for m in mob.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    assert not mob.model.stem.training and not mob.model.stages[0].training and mob.model.stages[1].training
    stem_only = mm.VimambaBackbone(model_name='test_mobilemamba', frozen_stages=0)
    assert not any(p.requires_grad for p in stem_only.model.stem.parameters())
    assert all(p.requires_grad for p in stem_only.model.stages.parameters())
    stem_only.train()
    assert not stem_only.model.stem.training and stem_only.model.stages[0].training


def test_layer_decay_constructor_rates_and_no_decay_set(mm):
    from mmengine.optim import build_optim_wrapper

    cfg = _tiny_seg_cfg('vim')
    model = _build(cfg.model, 'mmseg')
    rate, lr, wd = 0.5, 1e-3, 0.05
    wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper', optimizer=dict(type='AdamW', lr=lr, weight_decay=wd),
        constructor='LayerDecayOptimWrapperConstructor', paramwise_cfg=dict(layer_decay_rate=rate)))
    by_param = {}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            by_param[id(p)] = (group['lr'], group['weight_decay'])
    named = dict(model.named_parameters())
    assert len(by_param) == sum(p.requires_grad for p in named.values())
    depth = 4  # test_vim: stem = layer 0, blocks 1..4, everything else on top (layer 5)
    top = depth + 1

    def lr_wd(name):
        return by_param[id(named[name])]

    assert lr_wd('backbone.model.patch_embed.proj.weight') == pytest.approx((lr * rate ** top, wd))
    assert lr_wd('backbone.model.pos_embed') == pytest.approx((lr * rate ** top, 0.))
    assert lr_wd('backbone.model.cls_token') == pytest.approx((lr * rate ** top, 0.))
    for i in range(depth):
        block_lr = lr * rate ** (top - 1 - i)
        assert lr_wd(f'backbone.model.blocks.{i}.mixer.in_proj.weight') == pytest.approx((block_lr, wd))
        assert lr_wd(f'backbone.model.blocks.{i}.mixer.A_log')[1] == 0.
        assert lr_wd(f'backbone.model.blocks.{i}.mixer.D')[1] == 0.
        assert lr_wd(f'backbone.model.blocks.{i}.norm.weight')[1] == 0.
    assert lr_wd('decode_head.conv_seg.weight') == pytest.approx((lr, wd))
    assert lr_wd('decode_head.bottleneck.bn.weight') == pytest.approx((lr, 0.))
    assert lr_wd('backbone.pyramid.0.weight') == pytest.approx((lr, wd))  # the new pyramid sits on top


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_layer_decay_constructor_skips_the_models_no_weight_decay_and_norms(mm, family):
    """No decay exactly on the model's no_weight_decay() (A_log and D of every mixer, embeddings, tokens) and on
    the norm layers' parameters; biases and everything else decay."""
    model = torch.nn.Module()
    model.backbone = mm.VimambaBackbone(**_tiny_backbone(family))
    wrapper = mm.LayerDecayOptimWrapperConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05)))(model)
    names = {id(p): n for n, p in model.named_parameters()}
    zero = {names[id(p)] for g in wrapper.optimizer.param_groups if g['weight_decay'] == 0 for p in g['params']}
    norms = {f'{m}.{n}' for m, mod in model.named_modules() if 'norm' in type(mod).__name__.lower()
             for n, _ in mod.named_parameters(recurse=False)}
    assert norms and zero == expected_no_decay(FAMILIES[family]['model'], 'backbone.model.') | norms


def test_mm_does_not_import_the_classification_trainer():
    """Neither the import nor the optimiser's no-decay rule (the backbone's no_weight_decay()) loads it."""
    code = textwrap.dedent('''
        import sys, torch, vimamba.downstream.mm as mm
        model = torch.nn.Module()
        model.backbone = mm.VimambaBackbone(model_name='test_vim', init_cfg=None)
        mm.LayerDecayOptimWrapperConstructor(dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3)))(model)
        print(sorted(m for m in sys.modules if m.startswith('vimamba.classification')))
    ''')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == '[]'


# ---------------------------------------------------------------------------------------------------------
# every config


@pytest.mark.parametrize('path', SEG_CONFIGS + DET_CONFIGS, ids=lambda p: os.path.basename(p))
def test_every_config_loads_and_builds_on_meta(mm, path):
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper

    cfg = Config.fromfile(path)
    assert cfg.model.backbone.type == 'VimambaBackbone'
    assert 'vimamba.downstream.mm' in cfg.custom_imports['imports']
    with torch.device('meta'):
        model = _build(cfg.model, cfg.default_scope)
    backbone_params = sum(p.numel() for p in model.backbone.parameters())
    assert backbone_params > 0
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert sum(len(g['params']) for g in wrapper.optimizer.param_groups) == \
        sum(p.requires_grad for p in model.parameters())
    # the decode head / neck widths agree with what the backbone returns
    chans = model.backbone.out_channels
    if 'decode_head' in cfg.model:
        assert [chans[i] for i in cfg.model.decode_head.in_index] == list(cfg.model.decode_head.in_channels)
    else:
        assert list(cfg.model.neck.in_channels) == chans


# ---------------------------------------------------------------------------------------------------------
# forward / backward of every family in the real configs


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_seg_model_forward_backward(mm, family):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    model = _build(_tiny_seg_cfg(family).model, 'mmseg')
    model.init_weights()
    model.train()
    samples = []
    for _ in range(2):
        sample = SegDataSample(metainfo=dict(img_shape=CROP, ori_shape=CROP))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, 150, (1, *CROP)))
        samples.append(sample)
    data = model.data_preprocessor(dict(inputs=[torch.randint(0, 256, (3, *CROP), dtype=torch.uint8)] * 2,
                                        data_samples=samples), True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.backbone.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_det_model_forward_backward_and_predict(mm, family):
    from mmdet.testing import demo_mm_inputs

    model = _build(_tiny_det_cfg(family).model, 'mmdet')
    model.init_weights()
    model.train()
    packed = demo_mm_inputs(2, [(3, 96, 128), (3, 80, 110)], num_items=[3, 2], num_classes=2, with_mask=True)
    data = model.data_preprocessor(packed, True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.backbone.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    model.eval()
    with torch.no_grad():
        results = model(**model.data_preprocessor(packed, False), mode='predict')
    assert len(results) == 2 and all('pred_instances' in r for r in results)


# ---------------------------------------------------------------------------------------------------------
# Runner smoke trainings on generated datasets (through tools' train_main / test_main)


def _write_image(path: Path, h: int, w: int, rng) -> None:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def make_ade20k(root: Path, n_train: int = 4, n_val: int = 2) -> Path:
    """ADEChallengeData2016 layout: images/{training,validation}/*.jpg, annotations/.../*.png (0 = ignore)."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (('training', n_train), ('validation', n_val)):
        for i in range(n):
            name = f'ADE_{split[:5]}_{i:08d}'
            _write_image(root / 'images' / split / f'{name}.jpg', 72, 96, rng)
            label = np.zeros((72, 96), np.uint8)
            label[:, 32:] = 1 + rng.integers(0, 4)
            label[36:, :] = 5 + i
            (root / 'annotations' / split).mkdir(parents=True, exist_ok=True)
            Image.fromarray(label).save(root / 'annotations' / split / f'{name}.png')
    return root


def make_coco(root: Path, n_train: int = 4, n_val: int = 2) -> Path:
    """COCO layout: {train,val}2017/*.jpg and annotations/instances_{train,val}2017.json, boxes + polygons."""
    rng = np.random.default_rng(0)
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    for split, n in (('train2017', n_train), ('val2017', n_val)):
        images, anns = [], []
        for i in range(n):
            h, w = 96, 128
            name = f'{i:012d}.jpg'
            _write_image(root / split / name, h, w, rng)
            images.append(dict(id=i + 1, file_name=name, height=h, width=w))
            for j, (x, y, bw, bh) in enumerate(((8, 8, 40, 30), (60, 40, 50, 40))):
                anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=1 + (i + j) % 2, iscrowd=0,
                                 bbox=[x, y, bw, bh], area=bw * bh,
                                 segmentation=[[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]))
        coco = dict(images=images, annotations=anns, categories=[dict(id=1, name='a'), dict(id=2, name='b')])
        (root / 'annotations' / f'instances_{split}.json').write_text(json.dumps(coco))
    return root


def _seg_smoke_config(tmp_path: Path, data_root: Path, family: str = 'vim') -> Path:
    model = _tiny_seg_cfg(family).model.to_dict()
    text = f'''
    _base_ = [{str(ROOT / 'configs' / 'seg' / FAMILIES[family]['seg'])!r}]
    crop_size = {CROP!r}
    model = dict(
        data_preprocessor=dict(size=crop_size),
        backbone={model['backbone']!r},
        decode_head={model['decode_head']!r},
        auxiliary_head={model['auxiliary_head']!r},
        test_cfg={model['test_cfg']!r})
    train_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='RandomResize', scale=(128, 64), ratio_range=(0.5, 2.0), keep_ratio=True),
        dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PhotoMetricDistortion'),
        dict(type='PackSegInputs')]
    test_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(128, 64), keep_ratio=True),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='PackSegInputs')]
    train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                            dataset=dict(data_root={str(data_root)!r}, pipeline=train_pipeline))
    val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                          dataset=dict(data_root={str(data_root)!r}, pipeline=test_pipeline))
    test_dataloader = val_dataloader
    train_cfg = dict(max_iters=2, val_interval=2)
    param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)]
    default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
    env_cfg = dict(cudnn_benchmark=False)
    randomness = dict(seed=0)
    '''
    path = tmp_path / f'smoke_seg_{family}.py'
    path.write_text(textwrap.dedent(text))
    return path


def test_runner_seg_train_val_test_on_ade20k_layout(mm, tmp_path):
    from vimamba.downstream.mm.runner import test_main, train_main

    data_root = make_ade20k(tmp_path / 'ade' / 'ADEChallengeData2016')
    config = _seg_smoke_config(tmp_path, data_root)
    work = tmp_path / 'work'
    metrics = train_main([str(config), '--work-dir', str(work)])
    assert {'mIoU', 'aAcc'} <= set(metrics) and all(np.isfinite(metrics[k]) for k in ('mIoU', 'aAcc'))
    assert json.loads((work / 'metrics.json').read_text())['metrics'] == pytest.approx(metrics)
    logs = sorted(work.glob('*/vis_data/scalars.json'))
    losses = [json.loads(line)['loss'] for line in logs[-1].read_text().splitlines() if '"loss"' in line]
    assert len(losses) == 2 and all(np.isfinite(losses))

    out = tmp_path / 'metrics.json'
    tested = test_main([str(config), str(work / 'iter_2.pth'), '--work-dir', str(tmp_path / 'test'),
                        '--out', str(out)])
    assert json.loads(out.read_text())['metrics'] == pytest.approx(tested)
    assert tested['mIoU'] == pytest.approx(metrics['mIoU'])


def test_runner_det_train_val_on_coco_layout(mm, tmp_path):
    from vimamba.downstream.mm.runner import train_main

    root = make_coco(tmp_path / 'coco')
    model = _tiny_det_cfg('vim').model.to_dict()
    text = f'''
    _base_ = [{str(ROOT / 'configs' / 'det' / FAMILIES['vim']['det'])!r}]
    metainfo = dict(classes=('a', 'b'))
    model = dict(backbone={model['backbone']!r}, neck={model['neck']!r},
                 rpn_head={model['rpn_head']!r}, roi_head={model['roi_head']!r},
                 train_cfg={model['train_cfg']!r}, test_cfg={model['test_cfg']!r})
    train_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='Resize', scale=(128, 96), keep_ratio=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackDetInputs')]
    test_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=(128, 96), keep_ratio=True),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
    train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(
        data_root={str(root)!r}, metainfo=metainfo, filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=train_pipeline))
    val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False, dataset=dict(
        data_root={str(root)!r}, metainfo=metainfo, pipeline=test_pipeline))
    test_dataloader = val_dataloader
    val_evaluator = dict(ann_file={str(root / 'annotations' / 'instances_val2017.json')!r})
    test_evaluator = val_evaluator
    train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=2, val_interval=2)
    param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=2)]
    default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2), logger=dict(interval=1))
    log_processor = dict(by_epoch=False)
    randomness = dict(seed=0)
    '''
    config = tmp_path / 'smoke_det.py'
    config.write_text(textwrap.dedent(text))
    work = tmp_path / 'work'
    metrics = train_main([str(config), '--work-dir', str(work)])
    assert {'coco/bbox_mAP', 'coco/segm_mAP'} <= set(metrics)
    logs = sorted(work.glob('*/vis_data/scalars.json'))
    losses = [json.loads(line)['loss'] for line in logs[-1].read_text().splitlines() if '"loss"' in line]
    assert len(losses) == 2 and all(np.isfinite(losses))

    # --resume (latest checkpoint of the work dir): one more iteration, from iteration 2
    train_main([str(config), '--work-dir', str(work), '--resume',
                '--cfg-options', 'train_cfg.max_iters=3', 'train_cfg.val_interval=3'])
    assert torch.load(work / 'iter_3.pth', weights_only=False)['meta']['iter'] == 3
    # (mmengine's visualizer is a per-process singleton: both runs log into the first run's folder)
    steps = [json.loads(line)['step'] for log in work.glob('*/vis_data/scalars.json')
             for line in log.read_text().splitlines() if '"loss"' in line]
    assert sorted(steps) == [1, 2, 3]


# ---------------------------------------------------------------------------------------------------------
# tools/train.py and tools/test.py: the help's example, checkpoints that do not fit, plain mistakes


def test_help_cfg_options_example_is_mmengine_syntax(mm, tmp_path):
    from vimamba.downstream.mm.runner import build_test_parser, build_train_parser, load_config

    for parser in (build_train_parser(), build_test_parser()):
        help_text = ' '.join(parser.format_help().split())
        example = re.search(r'\(e\.g\. (.*?): list items by index\)', help_text).group(1).split()
        assert 'param_scheduler.1.end=1000' in example
        args = build_train_parser().parse_args([str(ROOT / 'configs' / 'seg' / FAMILIES['vim']['seg']),
                                                '--cfg-options', *example])
        cfg = load_config(args)
        assert cfg.param_scheduler[1].end == 1000 and cfg.model.backbone.with_cp is True
        assert cfg.train_dataloader.batch_size == 4


def test_test_py_stops_on_a_checkpoint_of_another_model(mm, tmp_path, capsys):
    from mmengine.registry import MODELS, init_default_scope

    from vimamba.downstream.mm.runner import test_main

    config = _seg_smoke_config(tmp_path, make_ade20k(tmp_path / 'ade' / 'ADEChallengeData2016'))
    # a detector's checkpoint (the case of a Mask R-CNN file given to an UperNet config)
    init_default_scope('mmdet')
    with torch.device('meta'):
        detector = MODELS.build(_tiny_det_cfg('vim').model)
    torch.save({'state_dict': {k: torch.zeros(v.shape) for k, v in detector.state_dict().items()}, 'meta': {}},
               tmp_path / 'det.pth')
    # the right model with one layer of another shape (another class count)
    init_default_scope('mmseg')
    segmentor = MODELS.build(_tiny_seg_cfg('vim').model)
    state = segmentor.state_dict()
    state['decode_head.conv_seg.weight'] = torch.zeros(3, *state['decode_head.conv_seg.weight'].shape[1:])
    torch.save({'state_dict': state}, tmp_path / 'classes.pth')
    for ckpt, expected in (('det.pth', r'missing keys \(\d+\): decode_head\..*; unexpected keys \(\d+\): neck\.'),
                           ('classes.pth', r'shape mismatches \(1\): size mismatch for decode_head\.conv_seg\.weight')):
        out = tmp_path / f'{ckpt}.json'
        with pytest.raises(SystemExit) as e:
            test_main([str(config), str(tmp_path / ckpt), '--work-dir', str(tmp_path / 'w'), '--out', str(out)])
        err = capsys.readouterr().err
        assert e.value.code == 1 and not out.exists()
        fits = rf"error: checkpoint .*{ckpt}' does not fit the config's EncoderDecoder: .*{expected}"
        assert re.search(fits, err), err


@pytest.mark.parametrize('tool, args, message', [
    ('train', ['missing.py'], "config 'missing.py' is not a .py config file"),
    ('train', ['bad.py'], "config 'bad.py' does not load: SyntaxError"),
    ('train', ['CONFIG', '--cfg-options', 'model.backbone.init_cfg.type=Pretrained'],
     '--cfg-options: .*init_cfg'),
    ('train', ['CONFIG', '--cfg-options', 'train_dataloader.dataset.data_root=nowhere'],
     "train_dataloader.dataset.data_root 'nowhere' is not a folder"),
    ('train', ['CONFIG', '--resume', 'nope.pth'], "--resume 'nope.pth' is not a file"),
    ('train', ['CONFIG', '--cfg-options', 'model.backbone.model_name=vim_tinyy'],
     "the config does not build: .*model_name 'vim_tinyy' is not a vimamba model; nearest: vim_tiny_patch16_224"),
    ('test', ['CONFIG', 'nope.pth'], "checkpoint 'nope.pth' is not a file"),
    ('test', ['CONFIG', 'CONFIG', '--out', '.'], "--out '.' is a folder"),
])
def test_train_and_test_py_stop_on_plain_mistakes_with_one_line(mm, tool, args, message, tmp_path, monkeypatch,
                                                                 capsys):
    from vimamba.downstream.mm.runner import test_main, train_main

    monkeypatch.chdir(tmp_path)
    config = _seg_smoke_config(tmp_path, make_ade20k(tmp_path / 'ade' / 'ADEChallengeData2016'))
    (tmp_path / 'bad.py').write_text('model = dict(\n')
    args = [str(config) if a == 'CONFIG' else a for a in args]
    with pytest.raises(SystemExit) as e:
        (train_main if tool == 'train' else test_main)(args + ['--work-dir', str(tmp_path / 'w')])
    err = capsys.readouterr().err
    assert e.value.code in (1, 2) and re.search(f'error: {message}', err), err
    assert not list(tmp_path.glob('w/**/*.pth')) and 'Traceback' not in err  # stopped before the run


# ---------------------------------------------------------------------------------------------------------
# DDP: 2 CPU processes over gloo through tools/train.py --launcher pytorch

_DUMP_HOOK = '''
import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class DumpWeightsPerRank(Hook):
    """After training, every rank saves its parameters (the CheckpointHook saves rank 0 only)."""

    def __init__(self, out):
        self.out = out

    def _dump(self, runner, tag):
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        state = {k: v.detach().clone() for k, v in model.named_parameters()}
        torch.save(state, f'{self.out}/{tag}_rank{dist.get_rank()}.pth')

    def before_train(self, runner):
        self._dump(runner, 'start')

    def after_train(self, runner):
        self._dump(runner, 'end')
'''


def test_ddp_two_cpu_processes_end_with_equal_weights(mm, tmp_path):
    data_root = make_ade20k(tmp_path / 'ade' / 'ADEChallengeData2016')
    config = _seg_smoke_config(tmp_path, data_root)
    (tmp_path / 'dump_hook.py').write_text(_DUMP_HOOK)
    with open(config, 'a') as f:
        f.write("custom_imports = dict(imports=['vimamba.downstream.mm', 'dump_hook'], allow_failed_imports=False)\n")
        f.write(f"custom_hooks = [dict(type='DumpWeightsPerRank', out={str(tmp_path)!r})]\n")
        f.write("train_cfg = dict(max_iters=2, val_interval=100)\n")  # training only
    env = dict(os.environ, PYTHONPATH=str(tmp_path), OMP_NUM_THREADS='1',
               CUDA_VISIBLE_DEVICES='')
    done = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc-per-node', '2', '--master-port', '29533',
         str(ROOT / 'tools' / 'train.py'), str(config), '--launcher', 'pytorch', '--work-dir', str(tmp_path / 'w')],
        capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    rank0 = torch.load(tmp_path / 'end_rank0.pth')
    rank1 = torch.load(tmp_path / 'end_rank1.pth')
    assert rank0.keys() == rank1.keys()
    for k in rank0:
        assert torch.equal(rank0[k], rank1[k]), k
    start = torch.load(tmp_path / 'start_rank0.pth')
    moved = [k for k in rank0 if not torch.equal(rank0[k], start[k])]
    assert any(k.startswith('backbone.model.blocks.') for k in moved)
