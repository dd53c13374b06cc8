"""The installation: import hygiene, the OpenMMLab stack and the mmcv build script's cache and errors."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_MMCV = ROOT / 'tools' / 'build_mmcv.sh'
NO_MM = os.environ.get('VIMAMBA_NO_MM') == '1'


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)


def test_import_vimamba_never_imports_openmmlab_or_kernels():
    # timm itself may import triton (torch's native ops do), so the check is on what vimamba adds: no
    # OpenMMLab package and none of our Triton kernel modules until a CUDA tensor asks for them.
    done = _python(
        'import sys, timm\n'
        'before = set(sys.modules)\n'
        'import vimamba, vimamba.ops, vimamba.scans, vimamba.models\n'
        'added = set(sys.modules) - before\n'
        'bad = sorted(m for m in added if m.split(".")[0] in {"mmcv", "mmengine", "mmseg", "mmdet", "triton"}\n'
        '             or m in {"vimamba.kernels.selective_scan", "vimamba.kernels.mamba_ssm_backend"})\n'
        'print(",".join(bad))'
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '', f'import vimamba pulled in {done.stdout.strip()}'


def test_kernels_and_downstream_install_under_vimamba():
    import vimamba.downstream
    import vimamba.kernels

    assert Path(vimamba.kernels.__file__).parent.name == 'kernels'
    assert Path(vimamba.downstream.__file__).parent.name == 'downstream'


@pytest.mark.skipif(NO_MM, reason='set up with VIMAMBA_NO_MM=1')
def test_openmmlab_stack_has_compiled_ops():
    done = _python(
        'import torch, mmcv, mmseg.models, mmdet.models\n'
        'from mmcv.ops import nms\n'
        'boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.]])\n'
        'scores = torch.tensor([0.9, 0.8, 0.7])\n'
        '_, keep = nms(boxes, scores, 0.5)\n'
        'print(mmcv.__version__, keep.tolist())'
    )
    assert done.returncode == 0, done.stderr[-2000:]
    version, keep = done.stdout.split(maxsplit=1)
    assert version == '2.1.0'
    assert keep.strip() == '[0, 2]'


def _sandbox_path(tmp_path: Path, without: set[str]) -> str:
    """A PATH holding the usual tools except those in `without`."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for tool in ('bash', 'env', 'date', 'mktemp', 'rm', 'ls', 'head', 'tail', 'tar', 'sed', 'mkdir', 'mv',
                 'nproc', 'cat', 'dirname', 'tee', 'gcc', 'g++'):
        found = shutil.which(tool)
        if found and tool not in without:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def _build_mmcv(tmp_path: Path, path: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=path, VIMAMBA_CACHE=str(tmp_path / 'cache'))
    return subprocess.run(['bash', str(BUILD_MMCV), sys.executable], capture_output=True, text=True, env=env,
                          timeout=300)


def test_build_mmcv_reuses_the_cached_wheel(tmp_path):
    done = _python('import sys, torch; print(torch.__version__.split("+")[0], f"cp{sys.version_info[0]}{sys.version_info[1]}")')
    torch_v, py_v = done.stdout.split()
    key_dir = tmp_path / 'cache' / 'wheels' / f'mmcv-2.1.0_torch-{torch_v}_{py_v}_cpu'
    key_dir.mkdir(parents=True)
    wheel = key_dir / f'mmcv-2.1.0-{py_v}-{py_v}-linux_x86_64.whl'
    wheel.write_bytes(b'')
    done = _build_mmcv(tmp_path, _sandbox_path(tmp_path, without=set()))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(wheel)
    assert 'cached' in done.stderr


def test_build_mmcv_without_compiler_says_so(tmp_path):
    done = _build_mmcv(tmp_path, _sandbox_path(tmp_path, without={'gcc', 'g++'}))
    assert done.returncode != 0
    assert 'gcc not found' in done.stderr and 'compiler' in done.stderr
