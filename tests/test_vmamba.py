"""The VMamba family: the published VMamba v2 variants under their own names, on the AtrousMamba class with the
cross scan. Offline `pretrained=True` is in test_pretrained.py, the timm contract in test_timm_contract.py."""
import pytest
import timm
import torch
from timm.models import get_pretrained_cfg

import vimamba
from vimamba.benchmark import model_family
from vimamba.models.atrousmamba import AtrousMamba
from vimamba.scans import CrossScan

# VMamba v2 parameter counts measured on the official code (vmamba.py, the classification configs), with the head.
SPEC_PARAMS = {
    'vmamba_tiny_s2l5': 30_705_832,
    'vmamba_small_s2l15': 50_147_752,
    'vmamba_base_s2l15': 88_557_800,
    'vmamba_tiny_s1l8': 30_249_064,
    'vmamba_small_s1l20': 49_012_840,
    'vmamba_base_s1l20': 86_614_504,
}
# The same networks registered as AtrousMamba sizes (whose `.vmamba_in1k` is the same file).
ATROUS_NAMES = {
    'vmamba_tiny_s2l5': 'atrousmamba_tiny', 'vmamba_small_s2l15': 'atrousmamba_small',
    'vmamba_base_s2l15': 'atrousmamba_base', 'vmamba_tiny_s1l8': 'atrousmamba_tiny_s1l8',
    'vmamba_small_s1l20': 'atrousmamba_small_s1l20', 'vmamba_base_s1l20': 'atrousmamba_base_s1l20',
}


def test_registered_as_their_own_family():
    assert vimamba.list_models('vmamba_*') == sorted(SPEC_PARAMS)
    assert 'test_vmamba' in vimamba.list_models(include_test=True)
    assert all(model_family(n) == ('vmamba', False) for n in list(SPEC_PARAMS) + ['test_vmamba'])
    assert timm.list_pretrained('vmamba_*') == sorted(f'{n}.in1k' for n in SPEC_PARAMS)


@pytest.mark.parametrize('name', sorted(SPEC_PARAMS))
def test_parameter_count_and_cross_scan(name):
    with torch.device('meta'):
        model = timm.create_model(name, device='meta')
        atrous = timm.create_model(ATROUS_NAMES[name], device='meta')
    assert isinstance(model, AtrousMamba)
    assert sum(p.numel() for p in model.parameters()) == SPEC_PARAMS[name]
    assert all(b.mixer.pattern == CrossScan() for s in model.stages for b in s.blocks)
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in atrous.state_dict().items()}
    assert model.stages[2].blocks[-1].drop_path.drop_prob == atrous.stages[2].blocks[-1].drop_path.drop_prob
    cfg = get_pretrained_cfg(name)
    assert cfg.url == get_pretrained_cfg(ATROUS_NAMES[name] + '.vmamba_in1k').url
    assert cfg.paper_ids == 'arXiv:2401.10166'


def test_equals_atrousmamba_with_the_cross_scan(one_thread):
    model = timm.create_model('test_vmamba').eval()
    atrous = timm.create_model('test_atrousmamba', scan='cross', window_size=8, atrous_rates=(1,)).eval()
    atrous.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(x), atrous(x), rtol=0, atol=0)
    # the scan can still be swapped, like any AtrousMamba
    with torch.device('meta'):
        swapped = timm.create_model('test_vmamba', device='meta', scan='atrous_window')
    assert swapped.stages[0].blocks[1].mixer.pattern.rate == 2
