"""The vimamba benchmark (`tools/benchmark.py` calls `main(argv)`): parameters, FLOPs, throughput and peak
memory of every family next to timm baselines, optionally against resolution; table, markdown, JSON, PNG.

- FLOPs: fvcore at batch 1, one MAC = one FLOP (the papers' convention), with handles for our ops, SDPA and
  string-padded convs; unlike the official repositories, the scan is counted. Fallback: FlopCounterMode.
- Throughput: median of timed iterations after warm-up (which also autotunes Triton); inference in eval mode
  under no_grad, training as forward + MSE + backward + SGD step; fp32 or bf16 autocast (`--amp`).
- Peak memory: CUDA allocator peak (weights included), or on the CPU the growth of VmHWM.
- OOM: the main table halves the batch until it fits; the resolution sweep reports OOM.
"""
import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import timm

from . import ops
from .flops import FVCORE_HANDLES, conv_mode_flop_jit, sdpa_flop_jit  # noqa: F401  (re-exported)
from .registry import family_of, list_models, model_module

__all__ = ['main', 'count_flops', 'flop_counter_macs', 'time_step', 'scan_backend', 'is_oom', 'free_memory',
           'training_loss', 'compile_model', 'compiled_warmup', 'COMPILE_MODES', 'Job', 'Result', 'BASELINES',
           'FAMILY_REPRESENTATIVES', 'SWEEP_SIZES']

# timm models every run puts next to ours (built from timm, no weights).
BASELINES = ('deit_tiny_patch16_224', 'deit_small_patch16_224', 'swin_tiny_patch4_window7_224', 'resnet50',
             'mambaout_tiny')
# The smallest variant of each family: the default model list on a CPU.
FAMILY_REPRESENTATIVES = {
    'vim': 'vim_tiny_patch16_224',
    'lbvim': 'lbvim_tiny_patch16_224',
    'shufflemamba': 'shufflemamba_tiny_patch16_reg12_224',
    'mobilemamba': 'mobilemamba_t2',
    'mair': 'mair_light_t_x2',
    'atrousmamba': 'atrousmamba_tiny',
    'vmamba': 'vmamba_tiny_s2l5',
}
# Plain (single-stride) families: those swept over resolution, with the DeiT baselines.
PLAIN_FAMILIES = ('vim', 'lbvim', 'shufflemamba')
SWEEP_BASELINES = ('deit_tiny_patch16_224', 'deit_small_patch16_224')
# 224 to 1248 like the Vim paper's figure; every size a multiple of 32 (patch 16, Swin's stride 32).
SWEEP_SIZES = (224, 384, 512, 640, 768, 1024, 1248)

# Ops fvcore's convention leaves uncounted: listed in the closing note but not flagged.
ELEMENTWISE_OPS = frozenset(f'aten::{op}' for op in (
    'add', 'add_', 'sub', 'sub_', 'rsub', 'mul', 'mul_', 'div', 'div_', 'neg', 'exp', 'log', 'pow', 'sqrt',
    'rsqrt', 'reciprocal', 'abs', 'clamp', 'clamp_min', 'sigmoid', 'sigmoid_', 'silu', 'silu_', 'gelu',
    'relu', 'relu_', 'hardswish', 'hardswish_', 'hardsigmoid', 'softplus', 'tanh', 'softmax', 'log_softmax',
    'mean', 'sum', 'var', 'std', 'max', 'min', 'amax', 'cumsum', 'flip', 'roll', 'pad', 'constant_pad_nd',
    'reflection_pad2d', 'replication_pad2d', 'clone', 'dropout', 'feature_dropout', 'rms_norm',
    'avg_pool2d', 'max_pool2d', 'adaptive_max_pool2d', 'pixel_shuffle', 'pixel_unshuffle', 'fill_',
    'zero_', 'masked_fill', 'where', 'erf', 'floor_divide', 'remainder', 'fmod', 'lt', 'gt', 'le', 'ge', 'eq',
    'ne', 'logical_and', 'logical_or', 'logical_not', 'floor', 'ceil', 'round', 'sign', 'square', 'maximum',
    'minimum', 'lerp', 'addcmul', 'index_select', 'gather', 'scatter', 'take_along_dim', 'argsort', 'sort',
    'topk', 'randperm'))


# --- FLOPs ---
@dataclass
class FlopCount:
    total: int                       # MACs for one forward of the given input
    by_operator: Dict[str, int]
    scan: int                        # the part counted for vimamba::selective_scan
    skipped: Dict[str, int]          # ops seen but not counted (name -> occurrences)
    source: str                      # 'fvcore' or 'torch.utils.flop_counter'


def _has_fvcore() -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)  # torch.jit deprecation, at import
            import fvcore.nn  # noqa: F401
    except ImportError:
        return False
    return True


def count_flops(model: torch.nn.Module, x: torch.Tensor, method: str = 'auto') -> FlopCount:
    """Multiply-accumulates of `model(x)` (call `model.eval()` first): fvcore with our handles, or
    FlopCounterMode when fvcore is missing (method 'auto') or asked for ('torch')."""
    if method == 'torch' or (method == 'auto' and not _has_fvcore()):
        return flop_counter_macs(model, x)
    from fvcore.nn import FlopCountAnalysis

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # tracer and jit deprecation warnings, one per traced call
        analysis = FlopCountAnalysis(model, x).set_op_handle(**FVCORE_HANDLES)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings('none')
        total = int(analysis.total())
        by_operator = {k: int(v) for k, v in analysis.by_operator().items()}
        skipped = dict(analysis.unsupported_ops())
    return FlopCount(total, by_operator, by_operator.get('selective_scan', 0), skipped, 'fvcore')


def _register_cpu_sdpa_formula() -> None:
    """Give FlopCounterMode the SDPA formula for the CPU flash kernel, which it lacks (once)."""
    op = getattr(torch.ops.aten, '_scaled_dot_product_flash_attention_for_cpu', None)
    try:
        from torch.utils import flop_counter
        if op is None or op.default in flop_counter.flop_registry:
            return

        @flop_counter.register_flop_formula(op)
        def _cpu_flash(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)
    except (ImportError, AttributeError, RuntimeError):
        pass


def flop_counter_macs(model: torch.nn.Module, x: torch.Tensor) -> FlopCount:
    """The same count through FlopCounterMode: aten FLOPs halved into MACs (our ops' formulas are MACs already);
    norms and pools, which fvcore counts, are left out (a fraction of a percent here)."""
    from torch.utils.flop_counter import FlopCounterMode

    _register_cpu_sdpa_formula()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    by_operator, scan = {}, 0
    for op, count in counter.get_flop_counts().get('Global', {}).items():
        name = str(op).split('.')[-1] if str(op).startswith(('aten', 'vimamba')) else str(op)
        if 'selective_scan' in str(op):
            scan += int(count)
            by_operator['selective_scan'] = by_operator.get('selective_scan', 0) + int(count)
        elif str(op).startswith('vimamba'):
            by_operator[name] = by_operator.get(name, 0) + int(count)
        else:
            by_operator[name] = by_operator.get(name, 0) + int(count) // 2
    return FlopCount(sum(by_operator.values()), by_operator, scan, {}, 'torch.utils.flop_counter')


# --- Timing and memory ---
def _rss_bytes(field_name: str = 'VmRSS') -> Optional[int]:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field_name + ':'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak memory over a `with` block: CUDA allocator peak (absolute, so weights count), or growth of
    the CPU process' peak resident set over `baseline` (the resident set before the model was built)."""

    def __init__(self, device: torch.device, baseline: Optional[int] = None):
        self.device, self.baseline, self.peak = device, baseline, None

    def __enter__(self):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._can_reset = _reset_peak_rss()
        return self

    def __exit__(self, *exc):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        elif self._can_reset:
            hwm = _rss_bytes('VmHWM')
            if hwm is not None:
                self.peak = max(0, hwm - (self.baseline or 0))
        return False


COMPILE_MODES = ('none', 'default', 'reduce-overhead')


def compile_model(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """`model` under torch.compile `mode` (one of COMPILE_MODES; 'none': the model itself)."""
    return model if mode == 'none' else torch.compile(model, mode=None if mode == 'default' else mode)


def compiled_warmup(mode: str, warmup: int) -> int:
    # CUDA graphs record on the second or third call after compiling: a compiled model warms up past that.
    return warmup if mode == 'none' else max(warmup, 3)


def time_step(step: Callable[[], object], device: torch.device, warmup: int, iters: int,
              max_time: float = float('inf'), min_iters: int = 1) -> List[float]:
    """Milliseconds of each timed call of `step` after `warmup` untimed ones: `iters` calls, or fewer (at least
    `min_iters`) once `max_time` seconds have passed. CUDA events on the GPU, perf_counter on the CPU."""
    cuda = device.type == 'cuda'
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    times, events = [], []
    start = time.perf_counter()
    for i in range(iters):
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            step()
            end.record()
            events.append((begin, end))
        else:
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
        if i + 1 >= min_iters and time.perf_counter() - start > max_time:
            break
    if cuda:
        torch.cuda.synchronize(device)
        times = [b.elapsed_time(e) for b, e in events]
    return times


def is_oom(e: BaseException) -> bool:
    if isinstance(e, (MemoryError, getattr(torch.cuda, 'OutOfMemoryError', MemoryError))):
        return True
    text = str(e)
    return 'out of memory' in text or "can't allocate memory" in text or 'not enough memory' in text


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    else:
        # Hand freed heap pages back to the OS, so the next model's peak shows as resident-set growth.
        try:
            import ctypes
            ctypes.CDLL('libc.so.6').malloc_trim(0)
        except (OSError, AttributeError):
            pass


# --- Jobs and results ---
@dataclass
class Job:
    model: str
    family: str
    baseline: bool
    img_size: Optional[int]          # None: the model's own input size
    batch_size: int
    backend: Optional[str]           # requested op backend ('auto', ...) for vimamba models; None for baselines
    sweep: bool = False              # part of the resolution sweep (fixed batch, OOM reported)
    bench: Optional[str] = None      # infer / train / both; None: the run's setting
    flops: Optional[bool] = None     # count FLOPs; None: the run's setting


@dataclass
class Result:
    model: str
    family: str
    baseline: bool
    backend: Optional[str]               # the backend the scan ran on (None for baselines)
    sweep: bool
    tag: str = ''                        # appended to the name where one run holds several backends
    img_size: Tuple[int, int] = (0, 0)
    batch_size: int = 0
    dtype: str = 'fp32'
    channels_last: bool = False
    params_m: float = float('nan')
    gflops: Optional[float] = None       # GMACs per image, fvcore convention
    scan_gflops: Optional[float] = None
    flops_source: Optional[str] = None
    skipped_ops: Dict[str, int] = field(default_factory=dict)
    infer_ms: Optional[float] = None     # median ms per batch
    infer_ms_min: Optional[float] = None
    infer_ms_max: Optional[float] = None
    infer_img_s: Optional[float] = None
    infer_mem_mib: Optional[float] = None
    infer_iters: int = 0
    train_ms: Optional[float] = None
    train_ms_min: Optional[float] = None
    train_ms_max: Optional[float] = None
    train_img_s: Optional[float] = None
    train_mem_mib: Optional[float] = None
    train_iters: int = 0
    status: str = 'ok'                   # ok, OOM, error: ...
    notes: List[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.model + self.tag


def model_family(name: str) -> Tuple[str, bool]:
    """(family, is_baseline): the vimamba module name for our models, timm's module for others."""
    family = family_of(name)
    if family is not None:
        return family, False
    return model_module(name).rsplit('.', 1)[-1], True


def _resolve_models(patterns: Sequence[str], device: torch.device) -> List[str]:
    """Model names from the --models words: names or timm wildcards (ours or timm's), or the groups
    'default' (= 'families'), 'all', 'families', 'baselines', 'plain', 'none'."""
    ours = list_models()
    ours_all = list_models(include_test=True)
    families = {}
    for name in ours:
        families.setdefault(model_family(name)[0], []).append(name)
    representatives = [FAMILY_REPRESENTATIVES.get(f, names[0]) if FAMILY_REPRESENTATIVES.get(f) in names
                       else names[0] for f, names in families.items()]
    groups = {
        'all': ours + list(BASELINES),
        'families': representatives + list(BASELINES),
        'baselines': list(BASELINES),
        'plain': [n for n in representatives if model_family(n)[0] in PLAIN_FAMILIES] + list(SWEEP_BASELINES),
    }
    groups['default'] = groups['families']
    groups['none'] = []
    names, unknown = [], []
    for pattern in patterns:
        if pattern in groups:
            names += groups[pattern]
            continue
        matches = [n for n in timm.list_models(pattern) if n in ours_all] or timm.list_models(pattern)
        if not matches and pattern in ours_all:
            matches = [pattern]
        if not matches:
            unknown.append(pattern)
        names += matches
    if unknown:
        text = (f'--models: nothing matches {unknown}; groups: {", ".join(groups)}; '
                f'vimamba models: {", ".join(ours)}')
        if not names:
            raise ValueError(text)
        # A list written for another checkout (a family not landed yet) still runs the rest.
        warnings.warn(text + ' (skipped)')
    return list(dict.fromkeys(names))


@contextlib.contextmanager
def scan_backend(name: Optional[str]):
    """Route every selective_scan of an 'auto' call to `name` (through VIMAMBA_BACKEND)."""
    old = os.environ.get('VIMAMBA_BACKEND')
    if name == 'auto':
        name = None  # leave 'auto' (and a user's VIMAMBA_BACKEND) alone: kernels may fall back
    if name is not None:
        os.environ['VIMAMBA_BACKEND'] = name
    try:
        yield
    finally:
        if name is not None:
            if old is None:
                os.environ.pop('VIMAMBA_BACKEND', None)
            else:
                os.environ['VIMAMBA_BACKEND'] = old


def build_model(name: str, img_size: Optional[int], device: torch.device) -> torch.nn.Module:
    """timm.create_model without weights, for `img_size` where the model takes one (CNNs take any
    size without it), built directly on `device`."""
    where = torch.device(device) if device.type != 'cpu' else contextlib.nullcontext()
    with where:
        if img_size is not None:
            try:
                return timm.create_model(name, pretrained=False, img_size=img_size)
            except TypeError:
                pass  # no img_size argument: a fully convolutional model
        return timm.create_model(name, pretrained=False)


def _use_channels_last(model: torch.nn.Module, mode: str, device: torch.device) -> bool:
    if mode in ('on', 'off'):
        return mode == 'on'
    if device.type != 'cuda':
        return False
    # NHWC helps cuDNN where most weights are in 2-D convolutions (ResNet, MobileMamba).
    conv = sum(p.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d) for p in m.parameters(False))
    total = sum(p.numel() for p in model.parameters())
    return total > 0 and conv / total >= 0.5


def _reparameterize(model: torch.nn.Module) -> torch.nn.Module:
    """Fold BatchNorm for inference where the model offers it (MobileMamba's fuse(), timm's
    reparameterize): the official throughput and FLOP figures are measured that way."""
    if hasattr(model, 'fuse'):
        return model.fuse()
    from timm.utils.model import reparameterize_model
    return reparameterize_model(model, inplace=True)


def training_loss(out) -> torch.Tensor:
    if isinstance(out, (tuple, list)):
        return sum(training_loss(o) for o in out)
    return out.float().square().mean()


@dataclass
class Settings:
    device: torch.device
    amp: bool = False
    bench: str = 'infer'              # infer, train, both
    flops: bool = True
    flop_method: str = 'auto'
    channels_last: str = 'auto'
    warmup: int = 1
    iters: int = 10
    max_time: float = 2.0
    min_iters: int = 3                # timed even past max_time, so every row has a spread
    halve_on_oom: bool = True
    flops_only: bool = False          # parameters and FLOPs on the meta device, nothing timed
    compile: str = 'none'             # torch.compile mode of every timed model: none, default, reduce-overhead


def run_job(job: Job, s: Settings) -> Result:
    """Measure one model at one size and batch; OOM halves the batch (main table) or is reported
    (sweep); other failures are reported in `status`, never raised."""
    family, baseline = job.family, job.baseline
    backend = None
    if job.backend is not None:
        with scan_backend(job.backend):
            backend = ops.resolve_backend(None, s.device)
    result = Result(job.model, family, baseline, backend, job.sweep, dtype='bf16' if s.amp else 'fp32')
    batch = job.batch_size
    while True:
        try:
            with scan_backend(job.backend), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter('always')
                _measure(job, batch, s, result)
            fallbacks = sorted({str(w.message) for w in caught if 'declined' in str(w.message)})
            result.notes += [f'scan fell back: {m}' for m in fallbacks]
            if fallbacks:
                result.backend += '+reference'
            result.status = 'ok'
            return result
        except Exception as e:  # noqa: BLE001  one model's failure must not end the run
            free_memory(s.device)
            if is_oom(e):
                if s.halve_on_oom and not job.sweep and batch > 1:
                    result.notes.append(f'OOM at batch {batch}')
                    batch //= 2
                    continue
                result.status = 'OOM'
                result.batch_size = batch
                return result
            result.status = f'error: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ""}'
            return result
        finally:
            free_memory(s.device)


def _count_on_meta(job: Job, r: Result) -> None:
    """Parameters and FLOPs without running anything: the model and a batch-1 input on the meta
    device, counted by FlopCounterMode (fvcore cannot trace meta tensors; norms are left out)."""
    meta = torch.device('meta')
    model = _reparameterize(build_model(job.model, job.img_size, meta).eval())
    r.params_m = sum(p.numel() for p in model.parameters()) / 1e6
    chans, height, width = model.pretrained_cfg['input_size']
    if job.img_size is not None:
        height = width = job.img_size
    r.img_size, r.batch_size = (height, width), 1
    flops = flop_counter_macs(model, torch.empty(1, chans, height, width, device=meta))
    r.gflops, r.scan_gflops, r.flops_source = flops.total / 1e9, flops.scan / 1e9, flops.source + ' (meta)'
    r.backend = None  # nothing ran


def _measure(job: Job, batch: int, s: Settings, r: Result) -> None:
    from .scans import base as scan_base

    if s.flops_only:
        return _count_on_meta(job, r)

    device = s.device
    scan_base.clear_cache()  # orders of the previous model's grid (and GPU memory) go
    free_memory(device)
    torch.manual_seed(0)
    rss0 = _rss_bytes() if device.type == 'cpu' else None
    model = build_model(job.model, job.img_size, device)
    r.params_m = sum(p.numel() for p in model.parameters()) / 1e6
    chans, height, width = model.pretrained_cfg['input_size']
    if job.img_size is not None:
        height = width = job.img_size
    r.img_size, r.batch_size = (height, width), batch
    channels_last = _use_channels_last(model, s.channels_last, device)
    r.channels_last = channels_last
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    bench = job.bench or s.bench

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16) if s.amp else contextlib.nullcontext()

    warmup = compiled_warmup(s.compile, s.warmup)

    x = torch.randn(batch, chans, height, width, device=device).contiguous(memory_format=memory_format)

    if bench in ('train', 'both'):
        # Batch 1 cannot train BatchNorm (MobileMamba's head): the step then runs on 2 images.
        xt = x if batch > 1 else torch.cat([x, x])
        model.train()
        model.to(memory_format=memory_format)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=1e-6)
        step_model = compile_model(model, s.compile)

        def train_step():
            if s.compile == 'reduce-overhead':
                torch.compiler.cudagraph_mark_step_begin()
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = training_loss(step_model(xt))
            loss.backward()
            optimizer.step()

        with PeakMemory(device, rss0) as mem:
            times = time_step(train_step, device, warmup, s.iters, s.max_time, s.min_iters)
        r.train_ms, r.train_ms_min, r.train_ms_max = statistics.median(times), min(times), max(times)
        r.train_img_s = len(xt) * 1e3 / r.train_ms
        r.train_mem_mib = None if mem.peak is None else mem.peak / 2**20
        r.train_iters = len(times)
        del optimizer, params, xt, step_model
        model.zero_grad(set_to_none=True)
        free_memory(device)

    model.eval()
    model = _reparameterize(model)
    model.to(memory_format=memory_format)

    if s.flops if job.flops is None else job.flops:
        # Batch 1 in fp32, the convention of the papers' tables; the trace is one real forward.
        flops = count_flops(model, x[:1].float(), s.flop_method)
        r.gflops, r.scan_gflops = flops.total / 1e9, flops.scan / 1e9
        r.flops_source, r.skipped_ops = flops.source, flops.skipped
        if device.type == 'cpu' and batch == 1 and not s.amp and warmup > 0 and s.compile == 'none':
            warmup -= 1  # on the CPU the trace was that same forward: it served as a warm-up

    if bench in ('infer', 'both'):
        infer_model = compile_model(model, s.compile)

        def infer_step():
            with autocast():
                return infer_model(x)

        # Not inference_mode: cached scan orders must stay usable by a later training step.
        with torch.no_grad(), PeakMemory(device, rss0) as mem:
            times = time_step(infer_step, device, warmup, s.iters, s.max_time, s.min_iters)
        r.infer_ms, r.infer_ms_min, r.infer_ms_max = statistics.median(times), min(times), max(times)
        r.infer_img_s = batch * 1e3 / r.infer_ms
        r.infer_mem_mib = None if mem.peak is None else mem.peak / 2**20
        r.infer_iters = len(times)
        del infer_model
    del model, x
    if s.compile != 'none':
        torch._dynamo.reset()  # compiled graphs and their CUDA graph pools go with the model


# --- Output: terminal table, markdown, JSON, plots ---
def _fmt(value, spec: str = '.1f', none: str = '-') -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return none
    return format(value, spec)


def _rate(value) -> str:
    """Images per second with three significant digits or more (0.123, 12.3, 1,234)."""
    if value is None:
        return '-'
    return _fmt(value, ',.0f' if value >= 100 else '.1f' if value >= 10 else '.2f' if value >= 1 else '.3f')


def _status_cell(r: Result) -> str:
    return r.status if r.status == 'ok' or r.status == 'OOM' else 'error'


TABLE_HEADER = ('model', 'family', 'scan', 'params (M)', 'GFLOPs', 'scan %', 'input', 'batch', 'infer img/s',
                'infer ms [min-max]', 'runs', 'infer MiB', 'train img/s', 'train MiB', 'status')


def _spread(median, low, high) -> str:
    """'346 [340-360]': the median and the range of the timed runs."""
    if median is None:
        return '-'
    spec = ',.1f' if median < 100 else ',.0f'
    if low is None or high is None:
        return _fmt(median, spec)
    return f'{_fmt(median, spec)} [{_fmt(low, spec)}-{_fmt(high, spec)}]'


def _runs(r: 'Result') -> str:
    return '/'.join(str(n) for n in (r.infer_iters, r.train_iters) if n) or '-'



def table_rows(results: Sequence[Result]) -> List[Tuple[str, ...]]:
    rows = []
    for r in results:
        scan_share = (100 * r.scan_gflops / r.gflops) if r.gflops and r.scan_gflops is not None else None
        rows.append((
            r.label + (' (NHWC)' if r.channels_last else ''), r.family + (' *' if r.baseline else ''),
            r.backend or '-',
            _fmt(r.params_m, '.2f'), _fmt(r.gflops, '.2f' if (r.gflops or 0) >= 1 else '.3f'), _fmt(scan_share, '.0f'),
            f'{r.img_size[0]}x{r.img_size[1]}' if r.img_size[0] else '-', str(r.batch_size or '-'),
            _rate(r.infer_img_s), _spread(r.infer_ms, r.infer_ms_min, r.infer_ms_max), _runs(r),
            _fmt(r.infer_mem_mib, ',.0f'),
            _rate(r.train_img_s), _fmt(r.train_mem_mib, ',.0f'), _status_cell(r)))
    return rows


def sweep_table(results: Sequence[Result], what: str) -> Tuple[Tuple[str, ...], List[Tuple[str, ...]]]:
    """Pivot of the sweep: one row per model, one column per size; cells img/s or MiB (or OOM)."""
    sizes = sorted({r.img_size[0] for r in results})
    labels = list(dict.fromkeys(r.label for r in results))
    cells = {(r.label, r.img_size[0]): r for r in results}
    header = ('model',) + tuple(str(s) for s in sizes)
    rows = []
    for label in labels:
        row = [label]
        for size in sizes:
            r = cells.get((label, size))
            if r is None:
                row.append('')
            elif r.status != 'ok':
                row.append(_status_cell(r))
            else:
                row.append(_rate(r.infer_img_s) if what == 'throughput' else _fmt(r.infer_mem_mib, ',.0f'))
        rows.append(tuple(row))
    return header, rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    numeric = [i > 0 and all(c.translate(str.maketrans('', '', ',.-[]/ ')).isdigit() or c in ('', '-')
                             for c in (row[i] for row in rows)) for i in range(len(header))]
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '|'.join('---:' if n else '---' for n in numeric) + '|']
    lines += ['| ' + ' | '.join(row) + ' |' for row in rows]
    return '\n'.join(lines)


def environment(device: torch.device) -> Dict[str, object]:
    info = {
        'device': (torch.cuda.get_device_name(device) if device.type == 'cuda' else
                   (platform.processor() or platform.machine()) + f', {os.cpu_count()} cores'),
        'device_type': device.type,
        'torch': torch.__version__, 'timm': timm.__version__, 'python': platform.python_version(),
        'threads': torch.get_num_threads(),
        'available_backends': list(ops.available_backends()),
    }
    try:
        import triton
        info['triton'] = triton.__version__
    except ImportError:
        pass
    try:
        root = Path(__file__).resolve().parents[1]
        info['commit'] = subprocess.run(['git', '-C', str(root), 'rev-parse', '--short', 'HEAD'],
                                        capture_output=True, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _device_text(env: Dict) -> str:
    """The device, with the thread count on the CPU (a shared CPU slows the scan rows most)."""
    if env.get('device_type') == 'cpu' and env.get('threads'):
        return f'{env["device"]}, {env["threads"]} torch threads'
    return env['device']


def _timing_text(settings: Dict) -> str:
    least = min(settings.get('min_iters', 1), settings['iters'])
    return (f'{least} to {settings["iters"]} timed runs per model (at least {least} even past '
            f'--max-time {settings["max_time"]:g} s)')


def write_markdown(path: Path, env: Dict, settings: Dict, results: Sequence[Result]) -> None:
    main = [r for r in results if not r.sweep]
    sweep = [r for r in results if r.sweep]
    out = [f'# vimamba benchmark\n',
           f'{_device_text(env)}; torch {env["torch"]}, timm {env["timm"]}'
           + (f', triton {env["triton"]}' if 'triton' in env else '')
           + (f', commit {env["commit"]}' if env.get('commit') else '') + '.',
           f'Precision {"bf16 autocast" if settings["amp"] else "fp32"}; '
           + ('' if settings.get('compile', 'none') == 'none' else f'torch.compile mode={settings["compile"]} (every row); ')
           + f'warm-up {settings["warmup"]}, {_timing_text(settings)}; ms = median [min-max] of the timed runs. '
           'GFLOPs = fvcore-style GMACs per image at batch 1, selective scan included ("scan %" is its share). '
           'Memory = peak allocated (GPU) or peak resident-set growth (CPU). * = timm baseline. '
           'NHWC = channels-last.\n']
    if main:
        out += [markdown_table(TABLE_HEADER, table_rows(main)), '']
    if sweep:
        for what, title in (('throughput', 'inference img/s'), ('memory', 'inference peak MiB')):
            header, rows = sweep_table(sweep, what)
            out += [f'## Resolution sweep: {title}, batch {sweep[0].batch_size}\n',
                    markdown_table(header, rows), '']
    notes = [f'- {r.label} @ {r.img_size[0]}: {r.status}' for r in results if r.status not in ('ok', 'OOM')]
    notes += [f'- {r.label}: {n}' for r in results for n in r.notes]
    notes += [f'- {r.label}: timed {r.infer_iters} time(s) only (--iters {settings["iters"]}), no spread'
              for r in results if 0 < r.infer_iters < 3]
    skipped = _skipped_summary(results)
    if skipped:
        notes.append(f'- ops fvcore saw but did not count: {skipped}')
    if notes:
        out += ['## Notes\n'] + notes + ['']
    path.write_text('\n'.join(out))


def _skipped_summary(results: Sequence[Result]) -> str:
    counts = Counter()
    for r in results:
        counts.update(r.skipped_ops)
    if not counts:
        return ''
    other = [op for op in counts if op not in ELEMENTWISE_OPS]
    text = ', '.join(sorted(op.replace('aten::', '') for op in counts if op in ELEMENTWISE_OPS))
    text = f'elementwise (uncounted by convention): {text}' if text else ''
    if other:
        text += ('; ' if text else '') + 'OTHER (may hide compute): ' + ', '.join(sorted(other))
    return text


def write_json(path: Path, env: Dict, settings: Dict, results: Sequence[Result]) -> None:
    data = {'environment': env, 'settings': settings, 'results': [dataclasses.asdict(r) for r in results]}
    path.write_text(json.dumps(data, indent=1, default=str))


def load_json(path: Path) -> Tuple[Dict, Dict, List[Result]]:
    data = json.loads(Path(path).read_text())
    results = []
    for r in data['results']:
        r['img_size'] = tuple(r['img_size'])
        results.append(Result(**r))
    return data['environment'], data['settings'], results


def _plain_ticks(axis) -> None:
    """0.2, 1, 50 instead of 2x10^-1; minor labels at 2 and 5 only."""
    from matplotlib.ticker import FuncFormatter

    def minor(v, _):
        lead = round(v / 10 ** math.floor(math.log10(v))) if v > 0 else 0
        return f'{v:g}' if lead in (2, 5) else ''
    axis.set_major_formatter(FuncFormatter(lambda v, _: f'{v:g}'))
    axis.set_minor_formatter(FuncFormatter(minor))


def place_labels(ax, points: Sequence[Tuple[float, float]], labels: Sequence[str], fontsize: float = 7):
    """Label each point at the nearest free offset inside the axes, with a leader line when moved away.
    Call after the layout is final; returns the text boxes in display coordinates."""
    from matplotlib.transforms import Bbox

    renderer = ax.figure.canvas.get_renderer()
    inside = ax.get_window_extent(renderer)
    half = ax.figure.dpi * 4 / 72  # a marker of about 8 points
    taken = [Bbox.from_bounds(px - half, py - half, 2 * half, 2 * half)
             for px, py in ax.transData.transform(points)]
    directions = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
    align = {1: ('left', 'bottom'), -1: ('right', 'top'), 0: ('center', 'center')}
    boxes = []
    for (x, y), label in zip(points, labels):
        chosen, fallback = None, None
        for radius in (4, 9, 16, 26, 40, 60, 85):
            for dx, dy in directions:
                ann = ax.annotate(label, (x, y), xytext=(dx * radius, dy * radius), textcoords='offset points',
                                  fontsize=fontsize, ha=align[dx][0], va=align[dy][1])
                box = ann.get_window_extent(renderer)
                ann.remove()
                within = (box.x0 >= inside.x0 and box.x1 <= inside.x1 and box.y0 >= inside.y0
                          and box.y1 <= inside.y1)
                if within and fallback is None:
                    fallback = (dx, dy, radius, box)
                if within and not any(box.overlaps(t) for t in taken):
                    chosen = (dx, dy, radius, box)
                    break
            if chosen:
                break
        dx, dy, radius, box = chosen or fallback or (1, 1, 4, None)
        ax.annotate(label, (x, y), xytext=(dx * radius, dy * radius), textcoords='offset points',
                    fontsize=fontsize, ha=align[dx][0], va=align[dy][1],
                    arrowprops=dict(arrowstyle='-', color='0.55', lw=0.6, shrinkA=1, shrinkB=3) if radius > 4 else None)
        if box is not None:
            taken.append(box)
            boxes.append(box)
    return boxes


def throughput_figure(env: Dict, results: Sequence[Result]):
    """Inference throughput against GFLOPs of the main table: one colour per family, baselines as grey squares,
    inputs of another size than most rows hollow with the size in the label; None without matplotlib or rows."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
    except ImportError:
        return None
    main = [r for r in results if not r.sweep and r.status == 'ok' and r.gflops and r.infer_img_s]
    if not main:
        return None
    common = Counter(r.img_size for r in main).most_common(1)[0][0]
    families = list(dict.fromkeys(r.family for r in main if not r.baseline))
    colour = {f: f'C{i % 10}' for i, f in enumerate(families)}
    fig, ax = plt.subplots(figsize=(9.5, 5.5))
    labels = []
    for r in main:
        other_size = r.img_size != common
        face = 'grey' if r.baseline else colour[r.family]
        ax.scatter(r.gflops, r.infer_img_s, marker='s' if r.baseline else 'o', s=36, edgecolors=face,
                   facecolors='none' if other_size else face, linewidths=1.2)
        labels.append(r.label + (f' ({r.img_size[0]}x{r.img_size[1]})' if other_size else ''))
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.margins(0.15)
    _plain_ticks(ax.xaxis)
    _plain_ticks(ax.yaxis)
    ax.set_xlabel('GFLOPs per image (fvcore MACs, scan included)')
    ax.set_ylabel('inference images / s')
    ax.set_title(f'Throughput vs FLOPs ({_device_text(env)}, {main[0].dtype}, batch {main[0].batch_size})',
                 fontsize=9)
    ax.grid(True, which='both', alpha=0.3)
    handles = [Line2D([], [], marker='o', linestyle='', color=colour[f], label=f'vimamba: {f}') for f in families]
    if any(r.baseline for r in main):
        handles.append(Line2D([], [], marker='s', linestyle='', color='grey', label='timm baseline'))
    if any(r.img_size != common for r in main):
        handles.append(Line2D([], [], marker='o', linestyle='', markerfacecolor='none', markeredgecolor='black',
                              label=f'input not {common[0]}x{common[1]} (size in the label)'))
    ax.legend(handles=handles, loc='upper left', bbox_to_anchor=(1.01, 1), fontsize=7, frameon=False)
    fig.tight_layout()
    fig.canvas.draw()  # fixes the limits and the layout before the labels are measured
    place_labels(ax, [(r.gflops, r.infer_img_s) for r in main], labels)
    return fig


def write_plots(out: Path, env: Dict, results: Sequence[Result]) -> List[Path]:
    """PNG plots: throughput against GFLOPs for the main table; throughput and memory against
    resolution for the sweep (one line per model, log scale). Empty list without matplotlib."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn('matplotlib is not installed: no plots (the JSON has every number; '
                      'rerun with --replot on a machine that has it)')
        return []
    written = []

    fig = throughput_figure(env, results)
    if fig is not None:
        path = out / 'throughput_vs_flops.png'
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    sweep = [r for r in results if r.sweep]
    if sweep:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
        for label in dict.fromkeys(r.label for r in sweep):
            rows = sorted((r for r in sweep if r.label == label), key=lambda r: r.img_size[0])
            ok = [r for r in rows if r.status == 'ok' and (r.infer_img_s or 0) > 0]
            style = dict(linestyle='--' if rows[0].baseline else '-', marker='o', label=label)
            for ax, key in zip(axes, ('infer_img_s', 'infer_mem_mib')):
                points = [(r.img_size[0], getattr(r, key)) for r in ok if (getattr(r, key) or 0) > 0]
                line, = ax.plot([p[0] for p in points], [p[1] for p in points], **style)
                for r in rows:
                    if r.status == 'OOM':
                        ax.annotate('OOM', (r.img_size[0], ax.get_ylim()[1]), color=line.get_color(),
                                    fontsize=7, ha='center', va='top')
        for ax, ylabel in zip(axes, ('inference images / s', 'peak memory (MiB)')):
            ax.set_xlabel('image size (pixels per side)')
            ax.set_ylabel(ylabel)
            ax.set_yscale('log')
            _plain_ticks(ax.yaxis)
            ax.grid(True, which='both', alpha=0.3)
        axes[0].legend(fontsize=8)
        fig.suptitle(f'Resolution sweep ({_device_text(env)}, {sweep[0].dtype}, batch {sweep[0].batch_size})',
                     fontsize=10)
        fig.tight_layout()
        path = out / 'resolution_sweep.png'
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


def print_table(results: Sequence[Result], title: str = '') -> None:
    main = [r for r in results if not r.sweep]
    sweep = [r for r in results if r.sweep]
    tables = []
    if main:
        tables.append((title, TABLE_HEADER, table_rows(main)))
    for what in ('throughput', 'memory'):
        if sweep:
            header, rows = sweep_table(sweep, what)
            tables.append((f'resolution sweep: inference {"img/s" if what == "throughput" else "peak MiB"}',
                           header, rows))
    try:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
    except ImportError:
        for name, header, rows in tables:
            print(f'\n{name}\n' + markdown_table(header, rows))
        return
    console = Console(width=max(200, Console().width))
    for name, header, rows in tables:
        table = Table(title=name, title_justify='left')
        for i, h in enumerate(header):
            table.add_column(h, justify='left' if h in ('model', 'family', 'scan') else 'right',
                             no_wrap=h in ('model', 'family'))
        for row in rows:
            table.add_row(*(escape(c) for c in row))  # '[triton]' is text, not a style
        console.print(table)


# --- Command line ---
def default_device() -> torch.device:
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description='Parameters, FLOPs (selective scan included), throughput and peak memory of the vimamba '
                    'models next to timm baselines; optional resolution sweep. Writes results.md, '
                    'results.json and PNG plots under --out.')
    p.add_argument('--models', nargs='+', default=['default'],
                   help="names or timm wildcards (vimamba's or any timm model), or groups: 'default' = "
                        "'families' (the smallest model of each family + the baselines), 'all' (every "
                        "registered model + baselines), 'baselines', 'plain', 'none' (default: default)")
    p.add_argument('--no-baselines', action='store_true', help='leave out the timm baselines of the groups')
    p.add_argument('--img-size', type=int, default=None, help="square input size (default: each model's own)")
    p.add_argument('--batch-size', type=int, default=None, help='batch (default: 256 on CUDA, 1 on CPU)')
    p.add_argument('--amp', action='store_true', help='bf16 autocast (default fp32)')
    p.add_argument('--bench', choices=('infer', 'train', 'both'), default=None,
                   help='inference, training step or both (default: both on CUDA, infer on CPU)')
    p.add_argument('--backend', nargs='+', default=['auto'],
                   choices=('auto', 'reference', 'triton', 'mamba_ssm'),
                   help='selective-scan backend(s) for the vimamba models; several give one row each '
                        '(default: auto, i.e. VIMAMBA_BACKEND or triton on CUDA, reference elsewhere)')
    p.add_argument('--sweep', nargs='*', type=int, default=None, metavar='SIZE',
                   help=f'also sweep resolutions (default sizes {" ".join(map(str, SWEEP_SIZES))}) over '
                        "--sweep-models, inference only, at --sweep-batch")
    p.add_argument('--sweep-models', nargs='+', default=['plain'],
                   help="models for the sweep ('plain': the plain families' smallest models + DeiT-Ti/S)")
    p.add_argument('--sweep-flops', action='store_true', help='count FLOPs at every sweep size too')
    p.add_argument('--sweep-batch', type=int, default=None, help='sweep batch (default: 8 on CUDA, 1 on CPU)')
    p.add_argument('--no-flops', action='store_true', help='skip FLOP counting')
    p.add_argument('--flops-only', action='store_true',
                   help='parameters and FLOPs only, on the meta device (seconds for every model; '
                        'torch.utils.flop_counter, norms not counted)')
    p.add_argument('--flops', choices=('auto', 'fvcore', 'torch'), default='auto',
                   help='FLOP counter: fvcore (with our handles), torch.utils.flop_counter, or auto '
                        '(default: fvcore when installed)')
    p.add_argument('--channels-last', choices=('auto', 'on', 'off'), default='auto',
                   help='default auto: NHWC on CUDA for models whose weights are mostly 2-D convolutions')
    p.add_argument('--warmup', type=int, default=None, help='warm-up iterations (default: 10 on CUDA, 1 on CPU)')
    p.add_argument('--iters', type=int, default=None, help='most timed iterations (default: 30 CUDA, 10 CPU)')
    p.add_argument('--max-time', type=float, default=None,
                   help='stop timing a model after this many seconds, once 3 runs are timed (default: 5 on CUDA, '
                        '2 on CPU)')
    p.add_argument('--time-budget', type=float, default=None,
                   help='minutes; start no new measurement after this (results so far are written)')
    p.add_argument('--device', default=None, help='cpu, cuda, cuda:1 ... (default: cuda when available)')
    p.add_argument('--threads', type=int, default=None,
                   help="torch CPU threads (default: torch's, one per core); on a shared CPU give the free cores: "
                        "the reference scan's many small ops slow down most when threads compete")
    p.add_argument('--compile', choices=COMPILE_MODES, default='none',
                   help='torch.compile every timed model, baselines included (reduce-overhead: CUDA graphs)')
    p.add_argument('--out', default='out/benchmark', help='folder for results.md, results.json and plots (default: out/benchmark)')
    p.add_argument('--replot', default=None, metavar='JSON',
                   help='only rewrite the table, markdown and plots from a results.json (e.g. a GPU run)')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    return p


def _jobs(args, device: torch.device) -> List[Job]:
    main_patterns = list(args.models)
    names = _resolve_models(main_patterns, device)
    if args.no_baselines:
        names = [n for n in names if not model_family(n)[1] or n not in BASELINES]
    backends = list(dict.fromkeys(args.backend))
    jobs = []

    def add(name, img_size, batch, sweep):
        family, baseline = model_family(name)
        for backend in ([None] if baseline else backends):
            jobs.append(Job(name, family, baseline, img_size, batch, backend, sweep,
                            bench='infer' if sweep else None, flops=args.sweep_flops if sweep else None))

    for name in names:
        add(name, args.img_size, args.batch_size, False)
    if args.sweep is not None:
        sizes = args.sweep or list(SWEEP_SIZES)
        sweep_names = _resolve_models(args.sweep_models, device)
        if args.no_baselines:
            sweep_names = [n for n in sweep_names if n not in BASELINES]
        for size in sizes:
            for name in sweep_names:
                add(name, size, args.sweep_batch, True)
    return jobs


def main(argv=None) -> List[Result]:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Path(args.out)

    if args.replot:
        env, settings, results = load_json(Path(args.replot))
        out.mkdir(parents=True, exist_ok=True)
        print_table(results, f'{_device_text(env)}')
        write_markdown(out / 'results.md', env, settings, results)
        paths = write_plots(out, env, results)
        print(f'wrote {out / "results.md"}' + ''.join(f', {p}' for p in paths))
        return results

    device = torch.device(args.device) if args.device else default_device()
    cuda = device.type == 'cuda'
    for name, value in (('--batch-size', args.batch_size), ('--sweep-batch', args.sweep_batch),
                        ('--img-size', args.img_size), ('--iters', args.iters), ('--threads', args.threads)):
        if value is not None and value < 1:
            parser.error(f'{name} must be >= 1, got {value}')
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.max_time is not None and args.max_time < 0:
        parser.error(f'--max-time must be >= 0, got {args.max_time}')
    if args.warmup is not None and args.warmup < 0:
        parser.error(f'--warmup must be >= 0, got {args.warmup}')
    if args.flops == 'fvcore' and not _has_fvcore():
        parser.error('--flops fvcore: fvcore is not installed (pip install fvcore, or --flops torch)')
    available = ops.available_backends()
    for backend in args.backend:
        if backend not in ('auto',) + tuple(available):
            parser.error(f'--backend {backend}: not available here (available: {", ".join(available)})')
        if backend in ('triton', 'mamba_ssm') and not cuda and not os.environ.get('TRITON_INTERPRET'):
            parser.error(f'--backend {backend} needs a CUDA device, running on {device}')
    args.batch_size = args.batch_size or (256 if cuda else 1)
    args.sweep_batch = args.sweep_batch or (8 if cuda else 1)
    try:
        jobs = _jobs(args, device)
    except ValueError as e:
        parser.error(str(e))

    s = Settings(
        device=device, amp=args.amp, bench=args.bench or ('both' if cuda else 'infer'),
        flops=not args.no_flops, flop_method=args.flops, channels_last=args.channels_last,
        warmup=args.warmup if args.warmup is not None else (10 if cuda else 1),
        iters=args.iters or (30 if cuda else 10), max_time=args.max_time if args.max_time is not None else (5.0 if cuda else 2.0),
        flops_only=args.flops_only, compile=args.compile)
    if cuda:
        torch.backends.cudnn.benchmark = True
    if s.flops and args.flops == 'auto' and not _has_fvcore() and not s.flops_only:
        warnings.warn('fvcore is not installed: FLOPs come from torch.utils.flop_counter instead '
                      '(pip install fvcore for the fvcore count)')
    settings = {k: (str(v) if isinstance(v, torch.device) else v) for k, v in dataclasses.asdict(s).items()}
    settings.update(batch_size=args.batch_size, sweep_batch=args.sweep_batch, img_size=args.img_size,
                    backends=args.backend, argv=sys.argv[1:] if argv is None else list(argv))
    env = environment(device)
    out.mkdir(parents=True, exist_ok=True)

    progress = None
    if not args.no_progress:
        try:
            from tqdm import tqdm
            progress = tqdm(total=len(jobs), unit='run', dynamic_ncols=True, file=sys.stderr)
        except ImportError:
            pass
    say = progress.write if progress is not None else (lambda m: print(m, file=sys.stderr, flush=True))
    say(f'device: {_device_text(env)}; {len(jobs)} measurements; '
        f'{"bf16 autocast" if s.amp else "fp32"}, bench {s.bench}; writing to {out}')

    started = time.perf_counter()
    results = []
    for i, job in enumerate(jobs):
        if args.time_budget is not None and time.perf_counter() - started > args.time_budget * 60:
            say(f'time budget of {args.time_budget} min spent: {len(jobs) - i} measurements not run')
            break
        what = f'{job.model}' + (f' [{job.backend}]' if job.backend not in (None, 'auto') else '') + \
            (f' @{job.img_size}' if job.img_size else '')
        if progress is not None:
            progress.set_description(what[:40])
        t0 = time.perf_counter()
        result = run_job(job, s)
        if len(set(args.backend)) > 1 and not result.baseline:
            result.tag = f' [{job.backend}]'
        results.append(result)
        if result.status != 'ok':
            say(f'{what}: {result.status}')
        if progress is not None:
            progress.update()
        else:
            say(f'[{i + 1}/{len(jobs)}] {what}: {time.perf_counter() - t0:.1f} s')
        # Written after every measurement: a run cut short still leaves its numbers.
        write_json(out / 'results.json', env, settings, results)
    if progress is not None:
        progress.close()

    print_table(results, f'{_device_text(env)}, {"bf16 autocast" if s.amp else "fp32"}, bench {s.bench}')
    skipped = _skipped_summary(results)
    if skipped:
        warnings.warn(f'fvcore could not count these ops (not in the GFLOPs): {skipped}', stacklevel=2)
    write_markdown(out / 'results.md', env, settings, results)
    write_json(out / 'results.json', env, settings, results)
    paths = write_plots(out, env, results)
    print(f'\n{len(results)} measurements in {time.perf_counter() - started:.0f} s; wrote '
          + ', '.join(str(p) for p in [out / 'results.md', out / 'results.json'] + paths))
    return results
