"""The contract timm's own test suite applies to its models, re-stated for every vimamba model.

timm's tests/test_models.py filters models by timm module names hard-coded in the file, so a third-party package
gets none of its forward_intermediates / prune checks and lands plain (token-output) models in the wrong bucket.
This suite re-states the checks in our words:

- cheap checks on EVERY registered variant, on the meta device (shapes only, no compute): construction with
  device/dtype kwargs, the parameter count where one is known, the pretrained cfg fields, and the API
  contract (unknown kwarg -> TypeError, reset_classifier, num_classes=0, global_pool='', pre-logits width,
  bf16 dtype, group_matcher, no_weight_decay, set_input_size keeping frozen params frozen);
- heavy checks on the tiny `test_*` variants, for real on CPU: forward / backward with every parameter getting a
  gradient, num_classes override, features_only channels and reductions, forward_intermediates against
  forward_features, the prune contract, grad checkpointing, torch.fx feature extraction and torch.compile.

Models are collected from vimamba's registry, so every family registered later joins automatically. A model
whose cfg has `num_classes=None` is image-to-image (restoration): it gets the checks that do not assume a
classifier.
"""
import fnmatch
import re

import pytest
import torch
import timm
from timm.layers import get_graph_node_names, get_notrace_functions, get_notrace_modules
from timm.models import get_pretrained_cfg, group_parameters

import vimamba
from vimamba.registry import list_models

ALL_MODELS = list_models(include_test=True)
TEST_MODELS = [n for n in ALL_MODELS if n.startswith('test_')]
CLASSIFIERS = [n for n in ALL_MODELS if get_pretrained_cfg(n).num_classes is not None]
TEST_CLASSIFIERS = [n for n in TEST_MODELS if n in CLASSIFIERS]
TEST_RESTORATION = [n for n in TEST_MODELS if n not in CLASSIFIERS]

# Parameter counts computed from the official configurations (other families add theirs here).
SPEC_PARAMS = {
    'vim_tiny_patch16_224': 7_148_008,
    'vim_tiny_patch16_stride8_224': 7_250_344,
    'vim_small_patch16_224': 25_796_584,
    'vim_small_patch16_stride8_224': 26_001_256,
    'vim_base_patch16_224': 97_598_440,
    'lbvim_tiny_patch16_224': 6_419_560,
    'lbvim_300_patch16_224': 14_897_200,
    'lbvim_small_patch16_224': 23_897_320,
    'lbvim_528_patch16_224': 44_823_448,
    'shufflemamba_middle_patch16_224': 74_236_456,
    'shufflemamba_base_patch16_224': 97_598_440,
    'shufflemamba_large_patch16_224': 283_698_152,
    'shufflemamba_large_d48_patch16_224': 340_034_536,
    'shufflemamba_tiny_patch16_reg12_224': 9_264_232,
    'shufflemamba_small_patch16_reg12_224': 27_801_064,
    'shufflemamba_base_patch16_reg12_224': 99_301_096,
    'shufflemamba_large_patch16_reg16_224': 341_222_376,
}

# The test variants are tiny; 3 levels are enough for the feature checks, 2 samples for the batch checks.
BATCH = 2


def _meta_model(name, **kwargs):
    with torch.device('meta'):
        return timm.create_model(name, device='meta', **kwargs)


def _input_size(model):
    return tuple(model.pretrained_cfg['input_size'])


def _input(model, batch=BATCH, device='cpu', dtype=torch.float32):
    return torch.randn((batch,) + _input_size(model), device=device, dtype=dtype)


def _create(name, **kwargs):
    torch.manual_seed(0)
    return timm.create_model(name, **kwargs)


def _features_shape(model, x):
    with torch.no_grad():
        return tuple(model.forward_features(x).shape)


# ---------------------------------------------------------------------------------------------------------------
# Every variant, on the meta device

def test_registry_has_models():
    assert TEST_MODELS, 'no test_* variant registered'
    for name in SPEC_PARAMS:
        assert name in ALL_MODELS, f'{name} is in the spec but not registered'


@pytest.mark.parametrize('name, kwargs, message', [
    ('test_vim', dict(expand=2), "test_vim: keyword argument 'expand' is no longer accepted; pass ssm_ratio"),
    ('test_lbvim', dict(expand=2), "test_lbvim: keyword argument 'expand' is no longer accepted; pass ssm_ratio"),
    ('test_shufflemamba', dict(expand=2),
     "test_shufflemamba: keyword argument 'expand' is no longer accepted; pass ssm_ratio"),
    ('test_mobilemamba', dict(depth=(1, 1, 1)),
     "test_mobilemamba: keyword argument 'depth' is no longer accepted; pass depths"),
    ('mairunet_dehaze', dict(dim=8), "mairunet_dehaze: keyword argument 'dim' is no longer accepted; pass embed_dim"),
])
def test_one_spelling_per_argument(name, kwargs, message):
    """A keyword a family spelled differently before is a TypeError (as any unknown keyword) naming its spelling now."""
    with pytest.raises(TypeError, match=re.escape(message)):
        _meta_model(name, **kwargs)


@pytest.mark.parametrize('name', ALL_MODELS)
def test_variant_on_meta(name):
    """Build on the meta device; parameter count, pretrained cfg fields and the parameter-group API."""
    with pytest.raises(TypeError):
        _meta_model(name, not_a_model_argument=1)
    model = _meta_model(name)
    params = list(model.parameters())
    assert all(p.device.type == 'meta' for p in params)
    assert all(b.device.type == 'meta' for b in model.buffers())
    if name in SPEC_PARAMS:
        assert sum(p.numel() for p in params) == SPEC_PARAMS[name]

    cfg = get_pretrained_cfg(name).to_dict()  # (fields left at None are dropped)
    assert len(cfg['input_size']) == 3 and len(cfg['mean']) == 3 and len(cfg['std']) == 3
    assert 0 < cfg['crop_pct'] <= 1
    assert cfg['interpolation']
    if not name.startswith('test_'):
        assert cfg.get('license'), 'license'
        assert cfg.get('paper_ids') or cfg.get('paper_name'), 'paper'
        assert cfg.get('origin_url'), 'original code URL'
    state_dict = model.state_dict()
    assert model.in_chans == cfg['input_size'][0]
    assert cfg['first_conv'] + '.weight' in state_dict
    if cfg.get('num_classes') is not None:
        classifiers = cfg['classifier'] if isinstance(cfg['classifier'], (tuple, list)) else (cfg['classifier'],)
        for classifier in classifiers:
            assert classifier + '.weight' in state_dict
        assert model.num_classes == cfg['num_classes']
        assert model.num_features > 0 and model.head_hidden_size > 0

    groups = group_parameters(model, model.group_matcher())
    assert len(groups) > 1
    param_names = [n for n, _ in model.named_parameters()]
    for pattern in getattr(model, 'no_weight_decay', lambda: set())():
        assert any(fnmatch.fnmatch(n, pattern) for n in param_names), f'no_weight_decay {pattern!r} matches nothing'


@pytest.mark.parametrize('name', TEST_CLASSIFIERS)
def test_classifier_contract(name):
    """Shapes of features, pre-logits, reset_classifier and num_classes=0 / global_pool='', bf16 (meta tensors)."""
    model = _meta_model(name).eval()
    x = _input(model, device='meta')
    feats = model.forward_features(x)
    assert model.forward_head(feats, pre_logits=True).shape == (BATCH, model.head_hidden_size)
    assert model(x).shape == (BATCH, model.num_classes)
    assert model.to(torch.bfloat16)(x.to(torch.bfloat16)).dtype == torch.bfloat16
    model.float()
    pool = model.global_pool

    model.reset_classifier(0)
    assert model.global_pool == pool, 'reset_classifier must keep the pooling by default'
    assert model(x).shape == (BATCH, model.head_hidden_size)
    model.reset_classifier(0, '')
    assert model(x).shape == feats.shape

    unpooled = _meta_model(name, num_classes=0, global_pool='')
    assert unpooled(x).shape == feats.shape
    no_head = _meta_model(name, num_classes=0)
    assert no_head(x).shape == (BATCH, no_head.head_hidden_size)


@pytest.mark.parametrize('name', TEST_CLASSIFIERS)
def test_global_pool_is_checked_alike(name):
    """One check for every family, at construction and in reset_classifier (which leaves the model as it was)."""
    owner = {'test_mobilemamba': 'MobileMamba', 'test_atrousmamba': 'AtrousMamba', 'test_vmamba': 'AtrousMamba'}.get(
        name, 'VisionMamba')
    with pytest.raises(ValueError, match=rf"{owner}: global_pool='max'; accepted: .*'avg'"):
        _meta_model(name, global_pool='max')
    model = _meta_model(name)
    pool, head = model.global_pool, model.get_classifier()
    with pytest.raises(ValueError, match=rf"{owner}: global_pool='max'; accepted: "):
        model.reset_classifier(5, 'max')
    assert model.global_pool == pool and model.get_classifier() is head
    if owner != 'VisionMamba':  # a classifier on unpooled maps: only VisionMamba's per-token head takes it
        with pytest.raises(ValueError, match=rf"{owner}: global_pool='' needs num_classes=0, got num_classes=5"):
            _meta_model(name, num_classes=5, global_pool='')
        with pytest.raises(ValueError, match=rf"{owner}: global_pool='' needs num_classes=0, got num_classes=5"):
            model.reset_classifier(5, '')
        assert model.global_pool == pool and model.get_classifier() is head


@pytest.mark.parametrize('name', TEST_CLASSIFIERS)
def test_reset_keeps_device_dtype_and_frozen(name):
    model = _meta_model(name, dtype=torch.float64).train()
    model.reset_classifier(7)
    head = model.get_classifier()
    assert all(p.device.type == 'meta' and p.dtype == torch.float64 for p in head.parameters())
    assert head.training
    model.requires_grad_(False)
    model.reset_classifier(5)
    model.requires_grad_(False)
    if hasattr(model, 'set_input_size'):
        size = _input_size(model)[1:]
        model.set_input_size(img_size=(size[0] * 2, size[1] * 2))
        assert not any(p.requires_grad for p in model.parameters())
        x = torch.randn((1, 3, size[0] * 2, size[1] * 2), device='meta', dtype=torch.float64)
        assert model(x).shape == (1, 5)


# ---------------------------------------------------------------------------------------------------------------
# Tiny variants, for real

@pytest.mark.parametrize('name', TEST_MODELS)
def test_forward_backward(name):
    kwargs = dict(num_classes=42) if name in CLASSIFIERS else {}
    model = _create(name, **kwargs).train()
    x = _input(model)
    out = model(x)
    if name in CLASSIFIERS:
        assert out.shape == (BATCH, 42)
    assert not torch.isnan(out).any()
    out.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f'parameters without gradient: {missing}'
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize('name', TEST_MODELS)
def test_eval_deterministic_and_bf16(name):
    model = _create(name).eval()
    x = _input(model)
    with torch.no_grad():
        a, b = model(x), model(x)
        torch.testing.assert_close(a, b)
        out = model.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    assert torch.isfinite(out.float()).all()


@pytest.mark.parametrize('name', TEST_MODELS + ['mairunet_realdn'])
def test_integer_and_float64_images_name_the_dtype(name):
    """A uint8 image (MaIR used to subtract a mean cast to uint8 and return garbage) or a float64 one fails
    before any compute, naming the dtype the model takes; a float64 model takes float64."""
    model = _meta_model(name).eval() if name == 'mairunet_realdn' else _create(name).eval()
    device = next(model.parameters()).device
    for dtype, hint in ((torch.uint8, r'x\.float\(\) / 255'), (torch.int64, ''), (torch.float64, '')):
        x = _input(model, batch=1, device=device).to(dtype)
        with pytest.raises(TypeError, match=rf'input has dtype {dtype}; this model takes floating images of '
                                            rf'its dtype torch\.float32 \(x\.to\(torch\.float32\).*{hint}'):
            model(x)
        if hasattr(model, 'forward_intermediates'):
            with pytest.raises(TypeError, match=rf'input has dtype {dtype}'):
                model.forward_intermediates(x)
    if device.type == 'cpu':
        with torch.no_grad():
            assert model.double()(_input(model, batch=1, dtype=torch.float64)).dtype == torch.float64


def test_image_check_compiles_fullgraph():
    from vimamba.layers import check_image
    weight = torch.zeros(4, 3, 1, 1)
    fn = torch.compile(lambda x: check_image(x, 3, weight, 'M') * 2, fullgraph=True, backend='eager')
    torch.testing.assert_close(fn(torch.ones(1, 3, 2, 2)), torch.full((1, 3, 2, 2), 2.))
    with pytest.raises(TypeError, match='input has dtype torch.uint8'):
        torch.compile(lambda x: check_image(x, 3, weight, 'M') * 2, backend='eager')(
            torch.ones(1, 3, 2, 2, dtype=torch.uint8))


@pytest.mark.parametrize('name,kwargs,owner', [
    ('test_vim', dict(depth=0), 'VisionMamba: depth must be an int >= 1, got 0'),
    ('test_mobilemamba', dict(depths=(0, 0, 0)), r'MobileMamba: depths=\(0, 0, 0\) builds a model with no blocks'),
    ('test_atrousmamba', dict(depths=(0, 0, 0, 0)), r'AtrousMamba: depths=\(0, 0, 0, 0\) builds a model with no'),
    ('test_atrousmamba', dict(depths=(2, -1, 1, 1)), r'AtrousMamba: depths\[1\] must be an int >= 0, got -1'),
    ('test_mair', dict(depths=(0,)), r'MaIR: depths=\(0,\) builds a model with no blocks'),
    ('mairunet_realdn', dict(depths=(0, 0, 0, 0)), r'MaIRUNet: depths=\(0, 0, 0, 0\) builds a model with no'),
])
def test_a_model_without_blocks_is_refused(name, kwargs, owner):
    with pytest.raises(ValueError, match=owner):
        _meta_model(name, **kwargs)


@pytest.mark.parametrize('name', TEST_CLASSIFIERS)
def test_num_classes_and_pooling(name):
    model = _create(name, num_classes=0).eval()
    x = _input(model)
    with torch.no_grad():
        assert model(x).shape == (BATCH, model.head_hidden_size)
        unpooled = _create(name, num_classes=0, global_pool='').eval()
        assert unpooled(x).shape == _features_shape(unpooled, x)


@pytest.mark.parametrize('name', TEST_MODELS)
def test_grad_checkpointing_same_output(name):
    model = _create(name).eval()
    x = _input(model)
    with torch.no_grad():
        ref = model(x)
    model.set_grad_checkpointing(True)
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    model.train()
    model(x).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize('name', TEST_CLASSIFIERS)
def test_features_only(name):
    model = _create(name, features_only=True).eval()
    x = _input(model)
    size = x.shape[-2:]
    with torch.no_grad():
        feats = model(x)
    assert len(feats) >= 3
    assert len(feats) == len(model.feature_info.channels())
    for feat, chans, reduction in zip(feats, model.feature_info.channels(), model.feature_info.reduction()):
        assert feat.shape[:2] == (BATCH, chans)
        for dim, full in zip(feat.shape[-2:], size):
            # A wrong reduction shows here: a map of about full / reduction cells (patch and stride may differ).
            assert full / (2 * reduction) < dim <= -(-full // reduction) + 1


@pytest.mark.parametrize('name', TEST_CLASSIFIERS)
def test_forward_intermediates(name):
    model = _create(name).eval()
    x = _input(model)
    with torch.no_grad():
        ref = model.forward_features(x)
        final, inters = model.forward_intermediates(x)
        torch.testing.assert_close(final, ref, rtol=1e-5, atol=1e-6)
        assert len(inters) == len(model.feature_info)
        for feat, info in zip(inters, model.feature_info):
            assert feat.dim() == 4 and feat.shape[:2] == (BATCH, info['num_chs'])
        last3 = model.forward_intermediates(x, indices=3, intermediates_only=True)
        assert len(last3) == 3
        for a, b in zip(last3, inters[-3:]):
            torch.testing.assert_close(a, b)
        early = model.forward_intermediates(x, indices=[0, 1], stop_early=True, intermediates_only=True)
        for a, b in zip(early, inters[:2]):
            torch.testing.assert_close(a, b)
        model.set_grad_checkpointing(True)
        final_ckpt, inters_ckpt = model.forward_intermediates(x)
        torch.testing.assert_close(final_ckpt, ref, rtol=1e-5, atol=1e-6)
        for a, b in zip(inters_ckpt, inters):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name', TEST_CLASSIFIERS)
def test_prune_contract(name):
    model = _create(name).eval()
    x = _input(model)
    num_levels = len(model.feature_info)
    indices = [0, 1]
    with torch.no_grad():
        full = model.forward_intermediates(x, indices=indices, intermediates_only=True)
        final_ref = model.forward_features(x)

    # prune_head=False at the last index keeps the whole output.
    kept = _create(name).eval()
    kept.prune_intermediate_layers(num_levels, prune_head=False)
    with torch.no_grad():
        torch.testing.assert_close(kept.forward_features(x), final_ref)

    pruned = _create(name).eval()
    taken = pruned.prune_intermediate_layers(indices, prune_norm=True, prune_head=True)
    assert list(taken) == indices
    with torch.no_grad():
        taps = pruned.forward_intermediates(x, indices=indices, intermediates_only=True)
    for a, b in zip(taps, full):
        torch.testing.assert_close(a, b)

    # A pruned model trains with every remaining parameter used (DDP without find_unused_parameters).
    pruned.train()
    loss = sum(t.mean() for t in pruned.forward_intermediates(x, indices=indices, intermediates_only=True))
    loss.backward()
    unused = [n for n, p in pruned.named_parameters() if p.grad is None]
    assert not unused, f'unused parameters after pruning: {unused}'


@pytest.mark.parametrize('name', TEST_MODELS)
def test_fx(name):
    """timm's FX feature extraction traces the model: same eval output, and every parameter trains."""
    model = _create(name).eval()
    x = _input(model)
    train_nodes, eval_nodes = get_graph_node_names(model)
    # torchvision's extractor with timm's leaf modules / functions (timm's create_feature_extractor, but with
    # separate train and eval outputs: stochastic layers make the two graphs differ).
    from torchvision.models.feature_extraction import create_feature_extractor
    fx_model = create_feature_extractor(
        model, train_return_nodes=[train_nodes[-1]], eval_return_nodes=[eval_nodes[-1]],
        tracer_kwargs={'leaf_modules': get_notrace_modules(), 'autowrap_functions': get_notrace_functions()})
    with torch.no_grad():
        ref = model(x)
        out = fx_model(x)
    torch.testing.assert_close(next(iter(out.values())), ref, rtol=1e-4, atol=1e-5)

    fx_model.train()
    next(iter(fx_model(x).values())).mean().backward()
    missing = [n for n, p in fx_model.named_parameters() if p.grad is None]
    assert not missing, f'parameters without gradient through the FX graph: {missing}'


def test_torch_compile():
    """torch.compile with the aot_eager backend (inductor's C++ compile takes minutes on 2 CPU cores): the
    selective scan is one opaque custom op, and the compiled model matches eager."""
    name = 'test_vim'
    model = _create(name).eval()
    x = _input(model)
    with torch.no_grad():
        ref = model(x)
        compiled = torch.compile(model, backend='aot_eager')
        out = compiled(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
