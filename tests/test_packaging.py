# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Packaging as users install it: the sdist, the wheel and an editable install, each
driven through mim (``mim search``, ``mim run``, a two-iteration ``mim train``).

Each install goes into a throw-away venv that reuses the installed stack (a ``.pth``
naming a folder of links to this environment's site-packages, mmmaskclip left out), with
``--no-deps``: what is tested is mmmaskclip's own packaging.
"""
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig

import pytest
import torch
from conftest import make_tiny_clip
from synthetic_coco import write_coco_panoptic
from tiny_maskclip import tiny_maskclip_cfg

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
pytestmark = pytest.mark.slow


def run(cmd: list, cwd, check=True, timeout=600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run([str(c) for c in cmd],
                          cwd=str(cwd),
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f'{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n'
                    f'{proc.stderr[-3000:]}')
    return proc


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    """A copy of the tracked files, its sdist and wheel, the stack and a tiny config."""
    root = tmp_path_factory.mktemp('packaging')
    try:
        files = subprocess.run(['git', 'ls-files', '-z'], cwd=REPO, capture_output=True,
                               check=True).stdout.decode().split('\0')
    except (OSError, subprocess.CalledProcessError):
        pytest.skip('not a git checkout')
    src = root / 'src'
    for name in filter(None, files):
        if osp.isfile(osp.join(REPO, name)):  # tracked and not deleted in the work tree
            os.makedirs(src / osp.dirname(name), exist_ok=True)
            shutil.copy2(osp.join(REPO, name), src / name)
    dist = root / 'dist'
    build = [sys.executable, '-m', 'build', '--no-isolation', '--sdist', '--wheel']
    run([*build, '--outdir', dist, '.'], cwd=src)

    stack = root / 'stack'
    stack.mkdir()
    site = sysconfig.get_paths()['purelib']
    for name in os.listdir(site):
        if 'mmmaskclip' not in name:
            os.symlink(osp.join(site, name), stack / name)

    data = write_coco_panoptic(str(root / 'coco'), num_images=2, image_size=(64, 64))
    torch.save(make_tiny_clip().state_dict(), root / 'clip.pt')
    cfg = tiny_maskclip_cfg(str(root / 'unused'), data, str(root / 'clip.pt'), max_iters=2)
    cfg.default_hooks.checkpoint.interval = 2
    cfg.dump(str(root / 'tiny_maskclip.py'))
    return root


def make_venv(work, name: str):
    venv = work / name
    run([sys.executable, '-m', 'venv', '--without-pip', venv], cwd=work)
    python = venv / 'bin' / 'python'
    code = 'import sysconfig; print(sysconfig.get_paths()["purelib"])'
    purelib = run([python, '-c', code], cwd=work).stdout.strip()
    with open(osp.join(purelib, '_mmmaskclip_test_stack.pth'), 'w') as f:
        f.write(f'{work / "stack"}\n')
    return python, purelib


def pip_install(python, *args, cwd):
    pip = [sys.executable, '-m', 'pip', '--python', python, 'install', '-q', '--no-deps']
    run([*pip, '--no-build-isolation', *args], cwd=cwd)


def check_mim(python, work, pkg_root: str, name: str) -> None:
    """mim finds configs, tools and the model index of the install at ``pkg_root``."""
    mim = (python, '-m', 'mim')
    found = run([*mim, 'search', 'mmmaskclip'], cwd=work).stdout
    for config in ('maskclip_vit-l-14-336_ade20k-150-semantic',
                   'maskclip-official_vit-l-14-336_ade20k-150',
                   'mask2former_r50_maskclip-official_class-agnostic'):
        assert f'config id: {config}' in found

    helped = run([*mim, 'run', 'mmmaskclip', 'dump_proposals', '--', '--help'], cwd=work).stdout
    assert 'usage: dump_proposals.py' in helped
    assert osp.join(pkg_root, '.mim', 'tools', 'misc', 'dump_proposals.py') in helped
    helped = run([*mim, 'run', 'mmmaskclip', 'demo', '--', '--help'], cwd=work).stdout
    assert 'usage: demo.py' in helped and '--vocab' in helped
    not_a_tool = run([*mim, 'run', 'mmmaskclip', 'tool_common'], cwd=work, check=False)
    assert not_a_tool.returncode != 0 and 'not a tool' in not_a_tool.stderr

    work_dir = work / f'train_{name}'
    config = work / 'tiny_maskclip.py'
    trained = run([*mim, 'train', 'mmmaskclip', config, '--work-dir', work_dir], cwd=work)
    assert osp.join(pkg_root, '.mim', 'tools', 'train.py') in trained.stdout
    assert osp.isfile(work_dir / 'iter_2.pth')


def installed_root(python, work) -> str:
    code = 'import mmmaskclip, os; print(os.path.dirname(mmmaskclip.__file__))'
    return run([python, '-c', code], cwd=work).stdout.strip()


@pytest.mark.parametrize('kind', ['sdist', 'wheel'])
def test_built_distribution_through_mim(work, kind):
    pattern = '.tar.gz' if kind == 'sdist' else '.whl'
    (archive, ) = [p for p in (work / 'dist').iterdir() if p.name.endswith(pattern)]
    python, purelib = make_venv(work, f'venv_{kind}')
    pip_install(python, archive, cwd=work)
    root = installed_root(python, work)
    assert root == osp.join(purelib, 'mmmaskclip')  # this install, not the checkout
    for name in ('configs/maskclip/metafile.yml', 'tools/train.py', 'model-index.yml'):
        copied = osp.join(root, '.mim', name)
        assert osp.isfile(copied) and not osp.islink(copied)
    check_mim(python, work, root, kind)


def test_editable_install_through_mim(work):
    src = work / 'src'
    python, purelib = make_venv(work, 'venv_editable')
    pip_install(python, '-e', src, cwd=work)
    assert installed_root(python, work) == str(src / 'mmmaskclip')
    # mim looks next to the metadata (site-packages) and finds nothing there ...
    assert not osp.exists(osp.join(purelib, 'mmmaskclip'))
    unlinked = run([python, '-m', 'mim', 'search', 'mmmaskclip'], cwd=work, check=False)
    assert 'config id: maskclip_' not in unlinked.stdout
    # ... until the link the README's editable install runs
    link_tool = [python, src / 'tools' / 'misc' / 'link_for_mim.py']
    assert 'linked' in run(link_tool, cwd=work).stdout
    assert 'already links' in run(link_tool, cwd=work).stdout
    check_mim(python, work, osp.join(purelib, 'mmmaskclip'), 'editable')
    run([*link_tool, '--remove'], cwd=work)
    assert not osp.lexists(osp.join(purelib, 'mmmaskclip'))
