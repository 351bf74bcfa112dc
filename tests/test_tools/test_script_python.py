# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The interpreter that ``tools/dist_train.sh``, ``dist_test.sh`` and the
slurm scripts run (``tools/misc/find_python.sh``): dry runs in which fake
interpreters (and a fake ``srun``) record how they were called."""
import os
import os.path as osp
import shutil
import subprocess

import pytest
from conftest import REPO

SCRIPTS = ('dist_train.sh', 'dist_test.sh', 'slurm_launch.sh', 'slurm_train.sh', 'slurm_test.sh',
           'misc/find_python.sh')
RECORDER = '#!/usr/bin/env bash\n{{ echo "$0"; printf "%s\\n" "$@"; }} > "{record}"\n'


def fake_program(path, record) -> None:
    """An executable at ``path`` that writes its own path and arguments to
    ``record``."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(RECORDER.format(record=record))
    os.chmod(path, 0o755)


@pytest.fixture
def checkout(tmp_path):
    """A checkout with the launch scripts, a ``.venv/bin/python`` and a
    ``python`` first on PATH (both fake); ``run(script, *args, **env)``
    returns the recorded call of whichever interpreter ran."""
    root = tmp_path / 'checkout'
    for script in SCRIPTS:
        os.makedirs(root / 'tools' / osp.dirname(script), exist_ok=True)
        shutil.copy(osp.join(REPO, 'tools', script), root / 'tools' / script)
    record = tmp_path / 'call.txt'
    fake_program(str(root / '.venv' / 'bin' / 'python'), record)
    fake_program(str(tmp_path / 'bin' / 'python'), record)
    fake_program(str(tmp_path / 'other' / 'python3.11'), record)

    def run(script, *args, **env):
        full_env = {k: v for k, v in os.environ.items() if k not in ('PYTHON', 'VIRTUAL_ENV')}
        full_env.update(env, PATH=f'{tmp_path / "bin"}{os.pathsep}{os.environ["PATH"]}')
        if record.exists():
            record.unlink()
        proc = subprocess.run(['bash', str(root / 'tools' / script), *args],
                              env=full_env,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT,
                              text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stdout
        return record.read_text().splitlines()

    run.root, run.tmp = root, tmp_path
    return run


def test_dist_scripts_run_the_checkouts_venv(checkout):
    call = checkout('dist_train.sh', 'cfg.py', '2', '--amp')
    assert call[0] == str(checkout.root / '.venv' / 'bin' / 'python')
    assert call[1:3] == ['-m', 'torch.distributed.run']
    assert call[-5:] == [
        f'{checkout.root}/tools/train.py', 'cfg.py', '--launcher', 'pytorch', '--amp'
    ]
    call = checkout('dist_test.sh', 'cfg.py', 'none', '2')
    assert call[0] == str(checkout.root / '.venv' / 'bin' / 'python')
    assert call[-4:] == ['cfg.py', 'none', '--launcher', 'pytorch']


def test_python_env_var_wins(checkout):
    other = str(checkout.tmp / 'other' / 'python3.11')
    assert checkout('dist_train.sh', 'cfg.py', '1', PYTHON=other)[0] == other


def test_active_virtualenv_wins_over_the_checkout(checkout):
    """An activated virtualenv puts its ``python`` first on PATH."""
    call = checkout('dist_test.sh', 'cfg.py', 'none', '1', VIRTUAL_ENV='/some/venv')
    assert call[0] == str(checkout.tmp / 'bin' / 'python')


def test_no_venv_falls_back_to_python(checkout):
    shutil.rmtree(checkout.root / '.venv')
    assert checkout('dist_train.sh', 'cfg.py', '1')[0] == str(checkout.tmp / 'bin' / 'python')


def test_slurm_scripts_run_the_checkouts_venv(checkout):
    """srun (fake, first on PATH) is given the venv's interpreter."""
    fake_program(str(checkout.tmp / 'bin' / 'srun'), checkout.tmp / 'call.txt')
    call = checkout('slurm_train.sh', 'part', 'job', 'cfg.py', 'work')
    venv_python = str(checkout.root / '.venv' / 'bin' / 'python')
    assert call[0] == str(checkout.tmp / 'bin' / 'srun')
    assert call[call.index(venv_python) + 1:call.index(venv_python) +
                3] == ['-u', f'{checkout.root}/tools/train.py']
    call = checkout('slurm_test.sh', 'part', 'job', 'cfg.py', 'none')
    assert venv_python in call


def test_this_checkouts_scripts(tmp_path):
    """The scripts as shipped here pick this checkout's .venv when it exists
    (srun faked, nothing else set)."""
    fake_program(str(tmp_path / 'bin' / 'srun'), tmp_path / 'call.txt')
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHON', 'VIRTUAL_ENV')}
    env['PATH'] = f'{tmp_path / "bin"}{os.pathsep}{os.environ["PATH"]}'
    proc = subprocess.run(['bash', 'tools/slurm_test.sh', 'part', 'job', 'cfg.py', 'none'],
                          cwd=REPO,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    call = (tmp_path / 'call.txt').read_text().splitlines()
    venv_python = osp.join(REPO, '.venv', 'bin', 'python')
    expected = venv_python if os.access(venv_python, os.X_OK) else 'python'
    assert call[call.index('-u') - 1] == expected
