# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Crash and resume: a run killed with SIGKILL and resumed ends where an
uninterrupted run ends (``tools/train.py --resume`` and
``tools/misc/dump_proposals.py --resume``)."""
import glob
import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import REPO, make_tiny_clip
from synthetic_coco import write_coco_panoptic
from tiny_maskclip import PREPROCESSOR, panoptic_dataset, tiny_maskclip_cfg

from mmmaskclip.models.proposers.precomputed import (TMP_MARK, PrecomputedProposer, is_complete,
                                                     read_proposals)

TESTS = osp.join(REPO, 'tests')


def subprocess_env() -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([osp.dirname(__file__), TESTS, REPO]))
    return env


def train_cmd(cfg_path: str, *extra: str) -> list:
    return [sys.executable, osp.join(REPO, 'tools', 'train.py'), cfg_path, *extra]


def wait_and_kill(proc: subprocess.Popen, path: str, timeout: float = 120) -> None:
    """SIGKILL ``proc`` as soon as ``path`` exists (possibly half-written)."""
    start = time.monotonic()
    while not osp.exists(path):
        assert proc.poll() is None, f'the run ended (rc {proc.returncode}) before {path}'
        assert time.monotonic() - start < timeout, f'no {path} after {timeout} s'
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def load(path: str) -> dict:
    return torch.load(path, map_location='cpu', weights_only=True)


@pytest.mark.slow
def test_train_resume_after_sigkill_equals_uninterrupted(tmp_path):
    max_iters, kill_at = 6, 3
    data = write_coco_panoptic(str(tmp_path / 'coco'), num_images=4, image_size=(64, 64))
    clip_path = str(tmp_path / 'tiny_clip.pt')
    torch.save(make_tiny_clip().state_dict(), clip_path)
    env = subprocess_env()
    works = {}
    for name in ('full', 'crashed'):
        work = works[name] = str(tmp_path / name)
        cfg = tiny_maskclip_cfg(work, data, clip_path, max_iters=max_iters)
        cfg.default_hooks.checkpoint.interval = 1
        cfg.custom_hooks = [dict(type='PlainCheckpointHook'), dict(type='RNGStateCheckpointHook')]
        cfg.dump(str(tmp_path / f'{name}.py'))

    subprocess.run(train_cmd(str(tmp_path / 'full.py')), env=env, check=True, capture_output=True)
    proc = subprocess.Popen(
        train_cmd(str(tmp_path / 'crashed.py')),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    wait_and_kill(proc, osp.join(works['crashed'], f'iter_{kill_at}.pth'))
    assert proc.returncode == -signal.SIGKILL
    assert not osp.exists(osp.join(works['crashed'], f'iter_{max_iters}.pth'))
    done = subprocess.run(
        train_cmd(str(tmp_path / 'crashed.py'), '--resume'),
        env=env,
        capture_output=True,
        text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    # it did resume, from the last whole checkpoint (iter_{kill_at} may be
    # half-written when killed: mmengine's last_checkpoint then names the one before)
    resumed_at = re.search(r'resumed epoch: \d+, iter: (\d+)', done.stdout + done.stderr)
    assert resumed_at and kill_at - 1 <= int(resumed_at.group(1)) < max_iters

    full = load(osp.join(works['full'], f'iter_{max_iters}.pth'))
    resumed = load(osp.join(works['crashed'], f'iter_{max_iters}.pth'))
    assert full['state_dict'].keys() == resumed['state_dict'].keys()
    torch.testing.assert_close(resumed['state_dict'], full['state_dict'], rtol=0, atol=0)
    torch.testing.assert_close(resumed['optimizer'], full['optimizer'], rtol=0, atol=0)
    # the weights did train: resuming from scratch would also "match" otherwise
    first = load(osp.join(works['full'], 'iter_1.pth'))
    assert any(not torch.equal(first['state_dict'][k], v) for k, v in full['state_dict'].items())


# ---------------------------------------------------------------- proposals
DUMP_SCRIPT = """
import os, signal, sys
import numpy as np
calls = [0]
savez = np.savez_compressed
def dying_savez(f, **arrays):
    calls[0] += 1
    if calls[0] == {die_at}:  # half a file, then SIGKILL mid-write
        f.write(b'PK\\x03\\x04 half written')
        f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    savez(f, **arrays)
np.savez_compressed = dying_savez
sys.argv = ['dump_proposals.py', {cfg!r}, '--out-dir', {out!r}, '--scale', '1',
            '--num-workers', '0', '--device', 'cpu'] + {extra!r}
import runpy
runpy.run_path({tool!r}, run_name='__main__')
"""


def run_dump(cfg_path, out, die_at=0, extra=()):
    script = DUMP_SCRIPT.format(
        die_at=die_at,
        cfg=cfg_path,
        out=out,
        extra=list(extra),
        tool=osp.join(REPO, 'tools', 'misc', 'dump_proposals.py'))
    return subprocess.run([sys.executable, '-c', script],
                          env=subprocess_env(),
                          capture_output=True,
                          text=True)


def npz_files(out):
    return sorted(osp.basename(p) for p in glob.glob(osp.join(out, '*.npz')))


@pytest.mark.slow
def test_dump_resume_after_sigkill_equals_uninterrupted(tmp_path):
    from mmengine.config import Config
    data = write_coco_panoptic(str(tmp_path / 'coco'), num_images=5, image_size=(40, 48))
    cfg = Config(
        dict(
            default_scope='mmdet',
            model=dict(
                data_preprocessor=PREPROCESSOR, proposer=dict(type='GTMaskProposer', scale=8.0)),
            test_dataloader=dict(batch_size=1, dataset=panoptic_dataset(data, test=True))))
    cfg_path = str(tmp_path / 'dump.py')
    cfg.dump(cfg_path)
    full, crashed = str(tmp_path / 'full'), str(tmp_path / 'crashed')

    done = run_dump(cfg_path, full)
    assert done.returncode == 0, done.stderr[-3000:]
    expected = npz_files(full)
    assert len(expected) == 5

    died = run_dump(cfg_path, crashed, die_at=3)
    assert died.returncode == -signal.SIGKILL, died.stderr[-3000:]
    left = os.listdir(crashed)
    partial = [n for n in left if TMP_MARK in n]
    # two whole files under final names, the third only as a temporary file
    assert len(npz_files(crashed)) == 2 and len(partial) == 1
    assert all(is_complete(osp.join(crashed, n)) for n in npz_files(crashed))
    assert not is_complete(osp.join(crashed, partial[0]))
    # a truncated file under a final name (e.g. an interrupted copy)
    victim = osp.join(crashed, npz_files(crashed)[0])
    with open(victim, 'rb') as f:
        head = f.read(40)
    with open(victim, 'wb') as f:
        f.write(head)
    assert not is_complete(victim)
    with pytest.raises(ValueError, match='truncated or corrupt.*--resume'):
        read_proposals(victim)

    done = run_dump(cfg_path, crashed, extra=['--resume'])
    assert done.returncode == 0, done.stderr[-3000:]
    # the truncated one and the 3 missing ones written, one whole one skipped
    assert '4 written, 1 already there, 5 images' in done.stdout
    assert sorted(os.listdir(crashed)) == sorted(os.listdir(full))  # no temp file left
    for name in expected:
        a = read_proposals(osp.join(full, name))
        b = read_proposals(osp.join(crashed, name))
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_truncated_proposal_file_is_a_clear_error(tmp_path):
    proposer = PrecomputedProposer(str(tmp_path))
    with open(tmp_path / 'img.npz', 'wb') as f:
        f.write(b'PK\x03\x04 half')
    meta = dict(img_path='x/img.jpg', img_id=1, ori_shape=(4, 4))
    with pytest.raises(ValueError, match=r'img\.npz is truncated or corrupt'):
        proposer.load(meta)
