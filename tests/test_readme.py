"""Every shell command of the README's code blocks is run here at tiny size, or listed as skipped with the reason.

A command is run as written, in-process (`runpy` of the tool with its argv), in a scratch folder holding links to
`tools/` and `configs/` and the files the commands name (synthesised checkpoints, generated images in the stock
data layouts). What makes it tiny is explicit per command: names swapped for the tiny `test_*` variants
(`SWAP`) and arguments appended (the last value of a flag wins, `--cfg-options` adds up). OpenMMLab commands get
the README's own tiny CPU recipe (the `--cfg-options` of its `--work-dir work_dirs/tiny` command). A README
command missing from `PLAN`, or a `PLAN` entry no longer in the README, fails the first test.
"""
import os
import re
import runpy
import shlex
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Sequence, Tuple

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
NO_MM = os.environ.get('VIMAMBA_NO_MM') == '1'
SEG = 'configs/seg/upernet_vim-tiny_8xb2-160k_ade20k-512x512.py'


def readme_commands(text: str) -> List[str]:
    """The commands of the ```bash blocks: continuation lines joined, comments dropped, one per line."""
    commands = []
    for block in re.findall(r'^```bash\n(.*?)^```', text, flags=re.S | re.M):
        for line in block.replace('\\\n', ' ').splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(' '.join(words))
    return commands


class Run(NamedTuple):
    swap: Dict[str, str] = {}
    append: Tuple[str, ...] = ()
    mm: bool = False


class Skip(NamedTuple):
    reason: str


# the tiny variant each full-size name in a command becomes
SWAP = {'vim_tiny_patch16_224': 'test_vim', 'mobilemamba_t2': 'test_mobilemamba', 'mair_sr_x2': 'test_mair',
        '/data/imagenet': 'data/imagefolder', '/data/flowers': 'data/imagefolder'}
CLS_TINY = ('--model', 'test_vim', '--img-size', '32', '--epochs', '1', '--batch-size', '16', '--workers', '0',
            '--no-progress', '--output', 'output/cls/tiny')
BENCH_TINY = ('--models', 'test_vim', '--no-baselines', '--warmup', '0', '--iters', '1', '--no-progress',
              '--out', 'out/benchmark')
MM_TINY = ('TINY',)  # replaced by the README's tiny recipe
TORCHRUN = ('several processes (torchrun); the trainer runs under torchrun with 2 CPU processes in '
            'test_classification.py::test_torchrun_two_processes_gloo_end_with_equal_weights')

PLAN = {
    'bash tools/setup.sh && .venv/bin/python tools/benchmark.py':
        Skip('the set-up is CI\'s own first step (.ci/run); `tools/benchmark.py` alone runs below'),
    'bash tools/setup.sh && .venv/bin/python -m pytest -q': Skip('this is the CI command itself (.ci/run)'),
    '.venv/bin/python tools/convert.py vim_t_midclstok_76p1acc.pth vim_tiny.safetensors --model vim_tiny_patch16_224':
        Run(SWAP),
    # classification
    'python tools/train_cls.py --config configs/cls/vim_tiny_pt.yaml --data-dir /data/imagenet': Run(SWAP, CLS_TINY),
    'torchrun --nproc_per_node=8 tools/train_cls.py --config configs/cls/vim_tiny_pt.yaml --data-dir /data/imagenet':
        Skip(TORCHRUN),
    'torchrun --nproc_per_node=8 tools/train_cls.py --config configs/cls/vim_tiny_plus_ft.yaml --data-dir '
    '/data/imagenet --initial-checkpoint output/cls/<pt run>/last.pth.tar': Skip(TORCHRUN),
    'python tools/train_cls.py --model mobilemamba_t2 --initial-checkpoint t2.pth --reset-head --data-dir '
    '/data/flowers': Run(SWAP, CLS_TINY[2:]),
    'torchrun --nproc_per_node=8 tools/train_cls.py --config ... --resume output/cls/<run>/last.pth.tar '
    '--output output/cls/<run>': Skip(TORCHRUN),
    'python tools/validate_cls.py vim_tiny_patch16_224 --data /data/imagenet --checkpoint vim_t_midclstok_76p1acc.pth '
    '--results-file vim_t.json': Run(SWAP, ('--workers', '0', '--no-progress')),
    'python tools/memorize_check.py --backends triton,reference --families atrousmamba':
        Skip('the triton backend needs a CUDA GPU (tools/gpu_check.sh runs it); test_memorize.py runs the check '
             'on every family\'s test model'),
    '.venv/bin/python tools/export_onnx.py vim_tiny_patch16_224 vim_tiny.onnx --checkpoint vim_tiny.safetensors':
        Skip('exporting the full-size model takes ~35 s; test_export.py::test_export_tool_and_torch_free_classifier '
             'runs the tool on test_vim'),
    '.venv/bin/python tools/deploy_demo.py --model vim_tiny_patch16_224 [--checkpoint vim_tiny.safetensors] '
    '--image chelsea':
        Skip('the full-size export takes ~35 s; test_export.py::test_deploy_demo_top5_matches runs the demo on '
             'test_vim'),
    # OpenMMLab
    f'python tools/train.py {SEG}': Run(append=MM_TINY, mm=True),
    'bash tools/dist_train.sh configs/det/mask-rcnn_vim-tiny_fpn_1x_coco.py 8':
        Skip('8 processes (GPUs) and COCO; tools/train.py --launcher pytorch runs with 2 CPU processes in '
             'test_mm.py::test_ddp_two_cpu_processes_end_with_equal_weights'),
    'python tools/test.py CONFIG work_dirs/<config>/iter_160000.pth':
        Run({'CONFIG': SEG, 'work_dirs/<config>/iter_160000.pth': 'work_dirs/tiny/iter_2.pth'}, MM_TINY, mm=True),
    f'python tools/train.py {SEG} --cfg-options model.backbone.pretrained=vim_tiny.safetensors':
        Run(append=MM_TINY, mm=True),
    # the tiny recipe itself: added as it is (see `tiny_recipe`)
    # benchmark
    '.venv/bin/python tools/benchmark.py': Run(append=BENCH_TINY),
    '.venv/bin/python tools/benchmark.py --models all --flops-only': Run(append=BENCH_TINY),
    '.venv/bin/python tools/benchmark.py --models vim_tiny_patch16_224 deit_tiny_patch16_224 --amp --bench both '
    '--sweep': Run(append=BENCH_TINY + ('--sweep', '32', '--sweep-models', 'test_vim')),
    '.venv/bin/python tools/benchmark.py --models vim_* --backend triton mamba_ssm':
        Skip('the triton and mamba_ssm backends need a CUDA GPU (tools/gpu_check.sh)'),
    'bash tools/gpu_benchmark.sh': Skip('needs a CUDA GPU'),
    '.venv/bin/python tools/profile_model.py --model vim_tiny_patch16_224 --batch-size 256 --amp':
        Run(SWAP, ('--batch-size', '1', '--warmup', '0', '--iters', '1', '--device', 'cpu')),
    '.venv/bin/python tools/host_overhead.py --train': Run(append=('--models', 'test_vim', '--repeats', '1')),
    # restoration
    'python tools/restore.py photo.png --model mair_sr_x2 --checkpoint checkpoints/MaIR_SR_x2.pth --tile 200 '
    '--out results/': Run(SWAP),
    'python tools/test.py configs/restoration/mair_sr_x2_df2k.py checkpoints/MaIR_SR_x2.pth':
        Skip('needs the Set5 download; the restoration Runner trains and tests at tiny size in '
             'test_mair.py::test_runner_trains_validates_and_tests'),
    'python tools/train.py configs/restoration/mair_light_s_x2_div2k.py':
        Skip('needs the DIV2K download; see test_mair.py::test_runner_trains_validates_and_tests'),
    'python tools/train.py configs/restoration/mair_cdn_sigma15_dfwb.py':
        Skip('needs the DFWB download; see test_mair.py::test_runner_runs_the_denoising_recipes'),
    # change detection
    'python tools/train.py configs/change/awmamba_bcd_tiny_levir_cd.py':
        Skip('needs the LEVIR-CD download; see test_change_detection.py::test_configs_train_and_test_with_the_runner'),
    'python tools/train.py configs/change/awmamba_scd_tiny_second.py':
        Skip('needs the SECOND download; see test_change_detection.py::test_configs_train_and_test_with_the_runner'),
    'python tools/test.py configs/change/awmamba_bcd_tiny_levir_cd.py work_dirs/.../best_f1_iter_N.pth':
        Skip('needs LEVIR-CD and a run on it; see test_change_detection.py::'
             'test_configs_train_and_test_with_the_runner'),
    'python tools/detect_changes.py A.png B.png --out change.png --config configs/change/awmamba_bcd_tiny_levir_cd.py '
    '--checkpoint work_dirs/.../best_f1_iter_N.pth':
        Skip('needs a checkpoint trained on LEVIR-CD; the demo reads a Runner checkpoint in '
             'test_change_detection.py::test_configs_train_and_test_with_the_runner'),
}

README = (ROOT / 'README.md').read_text()
COMMANDS = readme_commands(README)
TINY = [c for c in COMMANDS if '--work-dir work_dirs/tiny' in c]


def tiny_recipe() -> List[str]:
    """The `--cfg-options` of the README's tiny CPU command."""
    assert len(TINY) == 1, f'the README should have one tiny CPU recipe command, found {len(TINY)}'
    words = TINY[0].split()
    return words[words.index('--cfg-options'):]


def plan(command: str):
    return Run(append=(), mm=True) if command in TINY else PLAN.get(command, Skip('not planned'))


def test_every_readme_command_is_planned():
    unplanned = [c for c in COMMANDS if c not in PLAN and c not in TINY]
    stale = [c for c in PLAN if c not in COMMANDS]
    assert not unplanned, f'README commands with no entry in PLAN (run or skip with a reason): {unplanned}'
    assert not stale, f'PLAN entries that are no longer README commands: {stale}'


def _argv(command: str, entry: Run) -> List[str]:
    for old, new in entry.swap.items():
        command = command.replace(old, new)
    words = command.split()
    extra = [w for a in entry.append for w in (tiny_recipe() if a == 'TINY' else [a])]
    if words[0] in ('python', '.venv/bin/python'):
        return words[1:] + extra
    raise AssertionError(f'not a python command: {command}')


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """A scratch folder with links to tools/ and configs/, the checkpoints and images the commands name."""
    import timm
    from PIL import Image

    from test_classification import _make_image_folder
    from test_vim_family import OFFICIAL, _official_state_dict

    work = tmp_path_factory.mktemp('readme')
    for name in ('tools', 'configs'):
        (work / name).symlink_to(ROOT / name)
    _make_image_folder(work / 'data' / 'imagefolder')
    torch.save({'model': _official_state_dict(**OFFICIAL['test_vim'])}, work / 'vim_t_midclstok_76p1acc.pth')
    torch.save(timm.create_model('test_mobilemamba').state_dict(), work / 't2.pth')
    (work / 'checkpoints').mkdir()
    torch.save({'params': timm.create_model('test_mair').state_dict()}, work / 'checkpoints' / 'MaIR_SR_x2.pth')
    Image.new('RGB', (24, 20), (90, 140, 200)).save(work / 'photo.png')
    if not NO_MM:
        from test_mm import make_ade20k
        make_ade20k(work / 'data' / 'ade' / 'ADEChallengeData2016')
    return work


def _run(argv: Sequence[str], cwd: Path) -> None:
    old_argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = list(argv)
    os.chdir(cwd)
    try:
        runpy.run_path(str(cwd / argv[0]), run_name='__main__')
    except SystemExit as e:
        assert e.code in (None, 0), f'{" ".join(argv)} exited with {e.code}'
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)


# in README order: later commands use what earlier ones wrote (vim_tiny.safetensors, work_dirs/tiny)
ORDER = [c for c in COMMANDS if isinstance(plan(c), Run) and not plan(c).mm]
ORDER += [c for c in COMMANDS if c in TINY] + [c for c in COMMANDS if isinstance(plan(c), Run) and plan(c).mm
                                                and c not in TINY]


@pytest.mark.parametrize('command', ORDER, ids=[c[:60] for c in ORDER])
def test_readme_command_runs(command, workspace, one_thread):
    entry = plan(command)
    if entry.mm and NO_MM:
        pytest.skip('set up with VIMAMBA_NO_MM=1')
    _run(_argv(command, entry), workspace)


@pytest.mark.parametrize('command', [c for c in PLAN if isinstance(PLAN[c], Skip)])
def test_skipped_readme_command(command):
    pytest.skip(PLAN[command].reason)
