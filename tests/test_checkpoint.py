"""One checkpoint path: the reader, the families' filters, and every consumer on the files the official
repositories and our own trainers write (their containers, key names and extra pickled objects, at test size)."""
import argparse
import re
import importlib.util
import inspect
import os

import numpy as np
import pytest
import timm
import torch

import vimamba  # noqa: F401  registers the models
from vimamba.checkpoint import CheckpointError, CheckpointMismatchError, load_checkpoint, read_checkpoint
from test_atrousmamba import _to_vmamba_names
from test_mair import official_state_dict as mair_official
from test_mobilemamba import _official_state_dict as mobilemamba_official
from test_vim_family import OFFICIAL as VIM_OFFICIAL, _official_state_dict as vim_official

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAMILIES = ('vim', 'lbvim', 'shufflemamba', 'mobilemamba', 'mair', 'atrousmamba', 'vmamba')


def _optimizer_state(sd):
    """An AdamW state dict over `sd`'s tensors, as the official trainers save it."""
    return {'state': {i: {'step': torch.tensor(3.), 'exp_avg': torch.zeros_like(v), 'exp_avg_sq': torch.zeros_like(v)}
                      for i, v in enumerate(sd.values()) if v.is_floating_point()},
            'param_groups': [{'lr': 1e-3, 'betas': (0.9, 0.999), 'weight_decay': 0.05, 'params': list(range(len(sd)))}]}


def _plus(sd, x=1.0):
    return {k: v + x if v.is_floating_point() else v for k, v in sd.items()}


def _vim_file(path, sd):
    """hustvl/Vim main.py: DeiT's training checkpoint, argparse.Namespace included."""
    torch.save({'model': sd, 'optimizer': _optimizer_state(sd), 'epoch': 299, 'model_ema': _plus(sd),
                'lr_scheduler': {'t_initial': 300, 'base_values': [1e-3], 'noise_range_t': None},
                'scaler': {'scale': 65536.0, 'growth_factor': 2.0, '_growth_tracker': 7},
                'args': argparse.Namespace(model='vim_tiny', lr=5e-4, input_size=224, output_dir='out')}, path)


def _vmamba_file(path, sd):
    """MzeroMiko/VMamba save_checkpoint_ema: model / model_ema, the yacs config, numpy accuracies."""
    from yacs.config import CfgNode
    config = CfgNode({'MODEL': CfgNode({'TYPE': 'vssm', 'VSSM': CfgNode({'DEPTHS': [2, 2, 5, 2]})}), 'TAG': 'x'})
    config.freeze()
    torch.save({'model': sd, 'optimizer': _optimizer_state(sd), 'lr_scheduler': {'last_epoch': 262},
                'max_accuracy': 82.5, 'scaler': {'scale': 1024.0}, 'epoch': 262, 'config': config,
                'model_ema': _plus(sd), 'max_accuray_ema': np.float64(82.4)}, path)


def _mobilemamba_file(path, sd):
    """lewandofskee/MobileMamba save_checkpoint: net / net_E (EMA, the reported one), numpy top-k records."""
    torch.save({'net': _plus(sd), 'net_E': sd, 'optimizer': _optimizer_state(sd), 'scheduler': {'last_epoch': 300},
                'scaler': None, 'iter': 1000, 'epoch': 300, 'topk_recorder': {'net_top1': [np.float32(71.5)]},
                'total_time': 1.5, 'nan_or_inf_cnt': 0}, path)


def _basicsr_file(path, sd):
    torch.save({'params': _plus(sd), 'params_ema': sd}, path)


def _mmengine_file(path, sd, prefix):
    """Our mmengine trainers' checkpoints: message hub history buffers, ConfigDict meta, numpy scalars."""
    pytest.importorskip('mmengine')
    from mmengine.config import ConfigDict
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance(f'ckpt-{os.path.basename(path)}')
    for i in range(3):
        hub.update_scalar('train/loss', 1.0 / (i + 1))
        hub.update_scalar('train/lr', np.float32(1e-3))
    hub.update_info('iter', 3)
    torch.save({'meta': {'iter': 3, 'seed': np.int64(0), 'cfg': 'model = dict()',
                         'dataset_meta': ConfigDict(classes=('a', 'b'))},
                'state_dict': {prefix + k: v for k, v in sd.items()}, 'message_hub': hub.state_dict(),
                'optimizer': _optimizer_state(sd), 'param_schedulers': [{'last_step': 3}]}, path)


def _assert_weights(model, state):
    own = model.state_dict()
    assert own.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(own[k], v), k


# ---------------------------------------------------------------------------------------------------------
# Reading

def test_every_official_layout_loads_through_the_family_filter(tmp_path):
    safe_before = set(torch.serialization.get_safe_globals())
    cases = []
    vim_sd = vim_official(**VIM_OFFICIAL['test_vim'])
    _vim_file(tmp_path / 'vim.pth', vim_sd)
    cases.append(('test_vim', {}, tmp_path / 'vim.pth', vim_sd))
    pytest.importorskip('yacs')
    atrous = timm.create_model('test_atrousmamba')
    vmamba_sd = _to_vmamba_names(atrous.state_dict())
    _vmamba_file(tmp_path / 'vmamba.pth', vmamba_sd)
    cases.append(('test_atrousmamba', {}, tmp_path / 'vmamba.pth', atrous.state_dict()))
    mobile_sd = mobilemamba_official((48, 64, 96), (1, 1, 1), num_classes=10, fill=lambda s: 0.1 * torch.randn(s))
    _mobilemamba_file(tmp_path / 'mobilemamba.pth', mobile_sd)
    cases.append(('test_mobilemamba', dict(num_classes=10), tmp_path / 'mobilemamba.pth', None))
    mair = timm.create_model('test_mair')
    _basicsr_file(tmp_path / 'mair.pth', mair_official(mair))
    cases.append(('test_mair', {}, tmp_path / 'mair.pth', mair.state_dict()))

    for name, kwargs, path, expected in cases:
        model = timm.create_model(name, **kwargs)
        load_checkpoint(model, str(path))
        if name == 'test_vim':  # the 'model' weights, renamed
            assert torch.equal(model.norm.weight, vim_sd['norm_f.weight'])
            assert torch.equal(model.blocks[3].mixer.x_proj.weight[0], vim_sd['layers.3.mixer.x_proj.weight'])
        elif name == 'test_mobilemamba':  # net_E, the EMA weights the reported top-1 uses
            assert torch.equal(model.head.fc.weight, mobile_sd['head.l.weight'])
        else:
            _assert_weights(model, expected)
    assert set(torch.serialization.get_safe_globals()) == safe_before


def test_mmengine_checkpoints_of_our_trainers_are_read(tmp_path):
    mair = timm.create_model('test_mair')
    _mmengine_file(tmp_path / 'iter_3.pth', mair.state_dict(), 'generator.')
    ckpt = read_checkpoint(str(tmp_path / 'iter_3.pth'))
    assert ckpt['meta']['dataset_meta']['classes'] == ('a', 'b') and ckpt['meta']['seed'] == 0
    fresh = timm.create_model('test_mair')
    load_checkpoint(fresh, str(tmp_path / 'iter_3.pth'))
    _assert_weights(fresh, mair.state_dict())
    # mmengine's --resume / load_from loader rebuilds the message hub's history buffers
    from vimamba.downstream.mm.runner import _load_local_checkpoint
    from mmengine.logging import HistoryBuffer
    scalars = _load_local_checkpoint(str(tmp_path / 'iter_3.pth'))['message_hub']['log_scalars']
    assert isinstance(scalars['train/loss'], HistoryBuffer) and scalars['train/loss'].current() == pytest.approx(1 / 3)


def test_safetensors_and_bare_state_dicts(tmp_path):
    from safetensors.torch import save_file
    model = timm.create_model('test_vim')
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / 'w.safetensors'))
    torch.save({'module.' + k: v for k, v in model.state_dict().items()}, tmp_path / 'ddp.pth')
    for name in ('w.safetensors', 'ddp.pth'):
        fresh = timm.create_model('test_vim')
        load_checkpoint(fresh, str(tmp_path / name))
        _assert_weights(fresh, model.state_dict())


@pytest.mark.parametrize('content, match', [
    (b'', 'empty'),
    (os.urandom(256), 'not a checkpoint: neither a torch file nor safetensors'),
    (b'weights = [1, 2, 3]\n', 'not a checkpoint: neither a torch file nor safetensors'),
    ('truncated', 'not a checkpoint \\(truncated or corrupt torch file'),
    (b'\x80\x02garbage', 'not a checkpoint \\(corrupt torch file'),
    (b'\x10\x00\x00\x00\x00\x00\x00\x00{"a": nonsense!}', 'not a readable safetensors file'),
])
def test_a_file_that_is_not_a_checkpoint_says_so(tmp_path, content, match):
    path = tmp_path / 'weights.pth'
    if content == 'truncated':
        torch.save({'model': {'w': torch.zeros(1000)}}, path)
        content = path.read_bytes()[:600]
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f'--checkpoint: .*weights.pth.* {match}') as err:
        read_checkpoint(str(path), '--checkpoint')
    assert 'weights_only' not in str(err.value)
    with pytest.raises(CheckpointError, match='is not a file'):
        read_checkpoint(str(tmp_path / 'missing.pth'), '--checkpoint')


class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target,)


def test_a_pickled_callable_is_refused_and_never_run(tmp_path):
    target = str(tmp_path / 'created_by_unpickling')
    torch.save({'model': {'w': torch.zeros(1)}, 'payload': _Payload(target)}, tmp_path / 'bad.pth')
    with pytest.raises(CheckpointError, match=r'pickles a posix\.mkdir object.*not unpickled'):
        read_checkpoint(str(tmp_path / 'bad.pth'))
    assert not os.path.exists(target)


# ---------------------------------------------------------------------------------------------------------
# The filters

@pytest.mark.parametrize('family', FAMILIES)
def test_every_filter_has_one_signature(family):
    module = importlib.import_module(f'vimamba.models.{family}')
    params = inspect.signature(module.checkpoint_filter_fn).parameters
    assert list(params) == ['state_dict', 'model', 'strict'] and params['strict'].default is True


def test_strict_and_non_strict_filters():
    model = timm.create_model('test_vim')
    sd = vim_official(**VIM_OFFICIAL['test_vim'])
    sd['layers.0.mixer.surprise'] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError, match=r'unexpected keys \(1\): blocks.0.mixer.surprise'):
        load_checkpoint(model, {'model': sd})
    load_checkpoint(model, {'model': sd}, strict=False)
    assert torch.equal(model.norm.weight, sd['norm_f.weight'])
    with pytest.raises(CheckpointError, match='no EMA weights'):
        load_checkpoint(model, {'model': sd}, use_ema=True)


# ---------------------------------------------------------------------------------------------------------
# The consumers

def _convert():
    spec = importlib.util.spec_from_file_location('vimamba_convert', os.path.join(ROOT, 'tools', 'convert.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_convert_reads_our_trainers_checkpoints(tmp_path, capsys):
    convert = _convert()
    # a fine-tuned classifier from the timm trainer (10 classes): refused without --num-classes, then converted
    trained = timm.create_model('test_vim', num_classes=10)
    torch.save({'epoch': 3, 'state_dict': trained.state_dict(), 'state_dict_ema': _plus(trained.state_dict()),
                'args': argparse.Namespace(model='test_vim')}, tmp_path / 'last.pth.tar')
    dst = str(tmp_path / 'cls.safetensors')
    with pytest.raises(SystemExit):
        convert.main([str(tmp_path / 'last.pth.tar'), dst, '--model', 'test_vim'])
    assert re.search(r'(?s)--num-classes.*head.weight \(10, 32\) vs \(1000, 32\)', capsys.readouterr().err)
    convert.main([str(tmp_path / 'last.pth.tar'), dst, '--model', 'test_vim', '--num-classes', '10'])
    model = timm.create_model('test_vim', pretrained=True, num_classes=10,
                              pretrained_cfg_overlay=dict(file=dst, num_classes=10))
    _assert_weights(model, trained.state_dict())
    # the restoration trainer's mmengine checkpoint
    mair = timm.create_model('test_mair')
    _mmengine_file(tmp_path / 'iter_3.pth', mair.state_dict(), 'generator.')
    convert.main([str(tmp_path / 'iter_3.pth'), str(tmp_path / 'mair.safetensors'), '--model', 'test_mair'])
    assert 'test_mair' in capsys.readouterr().out
    (tmp_path / 'empty.pth').write_bytes(b'')
    with pytest.raises(SystemExit):
        convert.main([str(tmp_path / 'empty.pth'), dst, '--model', 'test_vim'])
    assert re.search('error: SRC: .* is empty', capsys.readouterr().err)


def test_restore_and_detect_changes_read_trainer_checkpoints(tmp_path):
    from vimamba.downstream.change_detection.inference import build_change_net
    from vimamba.downstream.restoration.inference import build_restorer
    mair = timm.create_model('test_mair')
    _mmengine_file(tmp_path / 'restorer.pth', mair.state_dict(), 'generator.')
    _assert_weights(build_restorer('test_mair', str(tmp_path / 'restorer.pth')), mair.state_dict())

    from test_change_detection import TINY_DECODER, TINY_ENCODER
    from vimamba.downstream.change_detection.model import BinaryChangeNet
    net = BinaryChangeNet(encoder=TINY_ENCODER, decoder=TINY_DECODER)
    _mmengine_file(tmp_path / 'change.pth', net.state_dict(), 'net.')
    loaded = build_change_net('bcd', str(tmp_path / 'change.pth'), encoder=TINY_ENCODER, decoder=TINY_DECODER)
    _assert_weights(loaded, net.state_dict())


def test_change_detection_encoder_from_vmamba_weights(tmp_path):
    from vimamba.downstream.change_detection.model import SiameseEncoder
    vmamba = timm.create_model('test_atrousmamba', depths=(2, 2, 2, 2))
    _vmamba_file(tmp_path / 'vmamba.pth', _to_vmamba_names(vmamba.state_dict()))
    encoder = dict(model_name='test_atrousmamba', model_kwargs=dict(depths=(1, 1, 1, 1)))
    with pytest.raises(CheckpointMismatchError, match='unexpected keys'):
        SiameseEncoder(**encoder, checkpoint=str(tmp_path / 'vmamba.pth'))
    shallow = SiameseEncoder(**encoder, checkpoint=str(tmp_path / 'vmamba.pth'), strict=False)
    own = shallow.backbone.model if hasattr(shallow.backbone, 'model') else shallow.backbone
    assert torch.equal(dict(own.named_parameters())['stages.0.blocks.0.norm.weight'],
                       vmamba.stages[0].blocks[0].norm.weight)
