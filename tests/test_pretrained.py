"""`timm.create_model(name, pretrained=True)` from the official weights' own locations, without a network.

Files in each official layout (test-model size) are placed where timm looks: the Hugging Face cache
(`HF_HOME`, `HF_HUB_OFFLINE=1`) for Vim and torch hub's checkpoint folder (`TORCH_HOME`) for the VMamba release
assets; the test model is pointed at the real variant's location with `pretrained_cfg_overlay`.
"""
import os

import pytest
import timm
import torch
from timm.models import get_pretrained_cfg

import vimamba  # noqa: F401  registers the models
from test_atrousmamba import _to_vmamba_names
from test_checkpoint import _vim_file, _vmamba_file
from test_vim_family import OFFICIAL as VIM_OFFICIAL, _official_state_dict as vim_official

# Confirmed in hustvl/Vim's README (model table -> Hugging Face repositories) and the file names in those repositories.
VIM_WEIGHTS = {
    'vim_tiny_patch16_224.in1k': ('hustvl/Vim-tiny-midclstok', 'vim_t_midclstok_76p1acc.pth'),
    'vim_tiny_patch16_stride8_224.in1k': ('hustvl/Vim-tiny-midclstok', 'vim_t_midclstok_ft_78p3acc.pth'),
    'vim_small_patch16_224.in1k': ('hustvl/Vim-small-midclstok', 'vim_s_midclstok_80p5acc.pth'),
    'vim_small_patch16_stride8_224.in1k': ('hustvl/Vim-small-midclstok', 'vim_s_midclstok_ft_81p6acc.pth'),
    'vim_base_patch16_224.in1k': ('hustvl/Vim-base-midclstok', 'vim_b_midclstok_81p9acc.pth'),
}
# MzeroMiko/VMamba README and assets/performance.md: release '#v2cls' classification checkpoints.
VMAMBA_WEIGHTS = {
    'atrousmamba_tiny.vmamba_in1k': 'vssm_tiny_0230_ckpt_epoch_262.pth',
    'atrousmamba_small.vmamba_in1k': 'vssm_small_0229_ckpt_epoch_222.pth',
    'atrousmamba_base.vmamba_in1k': 'vssm_base_0229_ckpt_epoch_237.pth',
    'atrousmamba_tiny_s1l8.vmamba_in1k': 'vssm1_tiny_0230s_ckpt_epoch_264.pth',
    'atrousmamba_small_s1l20.vmamba_in1k': 'vssm1_small_0229s_ckpt_epoch_240.pth',
    'atrousmamba_base_s1l20.vmamba_in1k': 'vssm1_base_0229s_ckpt_epoch_225.pth',
    'vmamba_tiny_s2l5.in1k': 'vssm_tiny_0230_ckpt_epoch_262.pth',
    'vmamba_small_s2l15.in1k': 'vssm_small_0229_ckpt_epoch_222.pth',
    'vmamba_base_s2l15.in1k': 'vssm_base_0229_ckpt_epoch_237.pth',
    'vmamba_tiny_s1l8.in1k': 'vssm1_tiny_0230s_ckpt_epoch_264.pth',
    'vmamba_small_s1l20.in1k': 'vssm1_small_0229s_ckpt_epoch_240.pth',
    'vmamba_base_s1l20.in1k': 'vssm1_base_0229s_ckpt_epoch_225.pth',
}
REVISION = '0123456789abcdef0123456789abcdef01234567'


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """A temporary Hugging Face home (offline) and torch hub home; yields (hf hub cache, torch checkpoints dir)."""
    import huggingface_hub.constants as hf_constants
    hf_home, torch_home = tmp_path / 'hf', tmp_path / 'torch'
    monkeypatch.setenv('HF_HOME', str(hf_home))
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setenv('TORCH_HOME', str(torch_home))
    # huggingface_hub reads its environment once, at import
    monkeypatch.setattr(hf_constants, 'HF_HUB_CACHE', str(hf_home / 'hub'))
    monkeypatch.setattr(hf_constants, 'HF_HUB_OFFLINE', True)
    checkpoints = torch_home / 'hub' / 'checkpoints'
    checkpoints.mkdir(parents=True)
    return hf_home / 'hub', checkpoints


def _hf_cache_path(cache, repo_id, filename):
    repo = cache / ('models--' + repo_id.replace('/', '--'))
    (repo / 'refs').mkdir(parents=True, exist_ok=True)
    (repo / 'refs' / 'main').write_text(REVISION)
    path = repo / 'snapshots' / REVISION / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _same_outputs(a, b, size):
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x), rtol=0, atol=0)


def test_vim_cfgs_name_the_official_hub_files():
    for name, (repo, filename) in VIM_WEIGHTS.items():
        cfg = get_pretrained_cfg(name)
        assert (cfg.hf_hub_id, cfg.hf_hub_filename) == (repo, filename), name
        assert cfg.custom_load == 'hf', name  # every source read by vimamba.checkpoint
    assert timm.list_pretrained('vim_*') == sorted(VIM_WEIGHTS)


@pytest.mark.parametrize('name', sorted(VIM_WEIGHTS))
def test_vim_pretrained_from_the_hugging_face_cache(offline, name):
    cache, _ = offline
    cfg = get_pretrained_cfg(name)
    sd = vim_official(**VIM_OFFICIAL['test_vim'])
    _vim_file(_hf_cache_path(cache, cfg.hf_hub_id, cfg.hf_hub_filename), sd)
    model = timm.create_model('test_vim', pretrained=True, pretrained_cfg_overlay=dict(
        hf_hub_id=cfg.hf_hub_id, hf_hub_filename=cfg.hf_hub_filename))
    # the same 'model' weights loaded directly, renamed by hand
    direct = timm.create_model('test_vim')
    rename = {'layers.': 'blocks.', 'norm_f.': 'norm.'}
    direct.load_state_dict({next((new + k[len(old):] for old, new in rename.items() if k.startswith(old)), k): v
                            for k, v in sd.items()})
    _same_outputs(model, direct, 64)


def test_vmamba_cfgs_name_the_official_release_assets():
    for name, filename in VMAMBA_WEIGHTS.items():
        assert get_pretrained_cfg(name).url == \
            'https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/' + filename, name
    assert timm.list_pretrained('vmamba_*') + timm.list_pretrained('atrousmamba_*') == sorted(
        n for n in VMAMBA_WEIGHTS if n.startswith('vmamba_')) + sorted(n for n in VMAMBA_WEIGHTS if n.startswith('a'))
    # the default tag of a VMamba name is the official file
    assert timm.create_model('vmamba_tiny_s2l5', pretrained=False, device='meta').pretrained_cfg['tag'] == 'in1k'


@pytest.mark.parametrize('name', sorted(VMAMBA_WEIGHTS))
def test_vmamba_pretrained_from_the_torch_hub_cache(offline, name):
    _, checkpoints = offline
    cfg = get_pretrained_cfg(name)
    test_model = 'test_' + name.split('_')[0]  # test_vmamba / test_atrousmamba
    source = timm.create_model(test_model)
    _vmamba_file(checkpoints / os.path.basename(cfg.url), _to_vmamba_names(source.state_dict()))
    model = timm.create_model(test_model, pretrained=True, pretrained_cfg_overlay=dict(url=cfg.url))
    _same_outputs(model, source, 64)
    # a new class count keeps the fresh classifier, as timm does for its own weights
    tuned = timm.create_model(test_model, pretrained=True, num_classes=7, pretrained_cfg_overlay=dict(url=cfg.url))
    assert torch.equal(tuned.stages[3].blocks[0].mixer.A_log, source.stages[3].blocks[0].mixer.A_log)
    assert tuned.head.weight.shape[0] == 7


@pytest.mark.parametrize('name, page', [
    ('mobilemamba_t2', 'https://drive.google.com/file/d/1LXh5wjVEUu5Kj1foclC9zmlKsy7JpMQ-/view'),
    ('mobilemamba_b1.kd_in1k', 'https://drive.google.com/file/d/15rBhYky_f7jNSknXujuwQESaIkiTBAR1/view'),
    ('mair_sr_x2', 'https://drive.google.com/drive/folders/1YYmIVTyynLg-Kfu-mviq24WdVkJu-S3M (MaIR_SR_x2.pth)'),
])
def test_drive_only_weights_name_the_page_and_the_route(name, page):
    with pytest.raises(RuntimeError) as err:
        timm.create_model(name, pretrained=True)
    message = str(err.value)
    assert page in message and 'pretrained_cfg_overlay=dict(file=PATH)' in message
    assert 'python tools/convert.py PATH OUT.safetensors --model ' + name.split('.')[0] in message


@pytest.mark.parametrize('name', ['lbvim_tiny_patch16_224', 'shufflemamba_base_patch16_224', 'test_vim'])
def test_no_published_weights_says_so(name):
    with pytest.raises(RuntimeError, match=f'{name}: pretrained=True: no official weights are published'):
        timm.create_model(name, pretrained=True)


def test_vmamba_name_pretrained_loads_its_own_release_file(offline):
    """The registered name and its default `.in1k` cfg, no overlay (shrunk by kwargs to test size)."""
    _, checkpoints = offline
    small = dict(embed_dim=16, depths=(2, 1, 1, 1))
    source = timm.create_model('vmamba_tiny_s2l5', **small)
    _vmamba_file(checkpoints / 'vssm_tiny_0230_ckpt_epoch_262.pth', _to_vmamba_names(source.state_dict()))
    model = timm.create_model('vmamba_tiny_s2l5', pretrained=True, **small)
    _same_outputs(model, source, 64)
