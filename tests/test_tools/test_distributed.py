# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Distributed training and testing on the CPU (gloo), through the shipped
launch scripts ``tools/dist_train.sh``, ``tools/dist_test.sh`` and
``tools/slurm_train.sh``.

What makes 2 processes x batch 1 train exactly like 1 process x batch 2:

- the same samples per step: ``DefaultSampler(shuffle=False)`` gives rank
  ``r`` the samples ``r, r + 2, ...``, i.e. step ``i`` sees samples
  ``2i, 2i + 1`` in both runs;
- DDP averages the gradients over the ranks;
- losses normalised by a *global* count: ``loss_mask``/``loss_dice`` divide by
  the number of matches averaged over the ranks (``reduce_mean``), so their
  gradients agree for any batch. ``loss_cls`` divides by the *local* sum of
  class weights (as mmdet's Mask2Former does): with ``K_r`` matched
  segments on rank ``r`` the averaged gradient is ``(g_0 / K_0 + g_1 / K_1) / 2``
  against ``(g_0 + g_1) / (K_0 + K_1)`` in one process, equal only when
  ``K_0 == K_1``. The data is chosen so that both images have 5 segments;
- no randomness in the gradient: the mask losses and the assigner's mask
  costs read masks on ``torch.rand`` points, a random stream that differs
  between the runs, so the comparison trains on the class loss only (mask
  loss weights 0, class-only Hungarian matching). Those weights are exact
  zeros, so every trainable parameter still takes part in DDP's all-reduce.

Two things mmengine 0.10.7 needs for DDP on a machine without CUDA, both set
here by the test only (on GPUs neither is needed):

- ``model_wrapper_cfg=dict(type='MMDistributedDataParallel', device_ids=None)``:
  otherwise the runner passes ``device_ids=[LOCAL_RANK]``, which DDP refuses
  for a CPU module;
- ``init_dist`` calls ``torch.cuda.set_device(LOCAL_RANK)`` unconditionally: a
  ``sitecustomize.py`` on the workers' ``PYTHONPATH`` makes it a no-op when no
  CUDA device exists.
"""
import glob
import json
import os
import os.path as osp
import pickle
import socket
import subprocess
import sys

import pytest
import torch
from conftest import REPO, make_tiny_clip
from synthetic_coco import write_coco_panoptic
from tiny_maskclip import tiny_maskclip_cfg

#: ``write_coco_panoptic`` seed whose two images both have 5 segments.
EQUAL_SEGMENTS_SEED = 4


def free_port() -> int:
    """A TCP port that was free a moment ago (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


#: Loaded by every worker through ``PYTHONPATH`` (see the module docstring).
CPU_SHIM = """import os
if os.environ.get('LOCAL_RANK') is not None:
    import torch
    if not torch.cuda.is_available():
        torch.cuda.set_device = lambda device: None
"""

#: DDP with ``device_ids=None``, as a CPU module needs.
CPU_DDP = dict(type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False)


def run_script(args, shim_dir, **env) -> None:
    """Run ``bash tools/<script>`` with this interpreter; fail with its output."""
    with open(osp.join(shim_dir, 'sitecustomize.py'), 'w') as f:
        f.write(CPU_SHIM)
    full_env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1', **env)
    full_env['PYTHONPATH'] = os.pathsep.join([str(shim_dir), REPO] +
                                             [full_env.get('PYTHONPATH', '')])
    run_ok(['bash'] + [str(a) for a in args], full_env)


def run_tool(name, args) -> None:
    """Run ``tools/<name>.py`` in one plain process."""
    run_ok([sys.executable, osp.join(REPO, 'tools', f'{name}.py')] + [str(a) for a in args],
           dict(os.environ, OMP_NUM_THREADS='1'))


def run_ok(command, env) -> None:
    """Run ``command`` in the repository; it must succeed (its output's end
    is the failure message)."""
    proc = subprocess.run(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:]


def last_metrics(work_dir):
    """Metrics of the last test run, from mmengine's json log (its first
    object: every process of a distributed test writes the same metrics to
    that file, and two writes can leave one object after the other)."""
    logs = sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
    with open(logs[-1]) as f:
        return json.JSONDecoder().raw_decode(f.read().strip().splitlines()[-1])[0]


def comparable_train_cfg(tmp_path, max_iters=3):
    """A tiny MaskCLIP training config whose gradients do not depend on how a
    batch of 2 is split over processes (see the module docstring)."""
    data = write_coco_panoptic(str(tmp_path / 'coco'), num_images=2, seed=EQUAL_SEGMENTS_SEED)
    with open(data['panoptic_json']) as f:
        counts = [len(a['segments_info']) for a in json.load(f)['annotations']]
    assert counts[0] == counts[1], counts
    clip_path = str(tmp_path / 'tiny_clip.pt')
    torch.save(make_tiny_clip().state_dict(), clip_path)
    cfg = tiny_maskclip_cfg(str(tmp_path / 'work'), data, clip_path, max_iters=max_iters)
    # deterministic proposals: the blurred ground truth, no random blobs
    cfg.model.proposer = dict(type='GTMaskProposer', blur_size=11, threshold=0.15)
    cfg.model.head = dict(
        type='MaskCLIPHead',
        loss_mask=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=0.0),
        loss_dice=dict(type='DiceLoss', use_sigmoid=True, naive_dice=True, loss_weight=0.0),
        aux_mask_loss=False,
        train_cfg=dict(
            num_points=64,
            assigner=dict(
                type='HungarianAssigner', match_costs=[dict(type='ClassificationCost',
                                                            weight=1.0)])))
    cfg.train_dataloader.sampler = dict(type='DefaultSampler', shuffle=False)
    # plain SGD: Adam's g / sqrt(v) would blow float noise up on tiny gradients
    cfg.optim_wrapper.optimizer = dict(type='SGD', lr=0.5, momentum=0.0, weight_decay=0.0)
    cfg.default_hooks.checkpoint.interval = 1
    cfg.randomness = dict(seed=0, deterministic=True)
    cfg.model_wrapper_cfg = CPU_DDP
    return cfg


def trained_weights(work_dir, it):
    """The model's state dict in ``work_dir/iter_{it}.pth``."""
    return torch.load(
        osp.join(work_dir, f'iter_{it}.pth'), map_location='cpu', weights_only=False)['state_dict']


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path):
    cfg = comparable_train_cfg(tmp_path)
    one, two = str(tmp_path / 'one'), str(tmp_path / 'two')
    cfg.train_dataloader.batch_size = 2
    one_cfg = str(tmp_path / 'one.py')
    cfg.dump(one_cfg)
    cfg.train_dataloader.batch_size = 1
    two_cfg = str(tmp_path / 'two.py')
    cfg.dump(two_cfg)

    run_tool('train', [one_cfg, '--work-dir', one])
    run_script(['tools/dist_train.sh', two_cfg, 2, '--work-dir', two],
               tmp_path,
               PORT=str(free_port()))

    first, single, dist = trained_weights(one, 1), trained_weights(one, 3), trained_weights(two, 3)
    assert single.keys() == dist.keys()
    moved = [k for k in single if not torch.equal(single[k], first[k])]
    assert moved, 'training changed no weight: the comparison would be empty'
    for key in single:
        torch.testing.assert_close(dist[key], single[key], rtol=1e-4, atol=1e-5, msg=key)
    # a sum instead of a mean over ranks (or no all-reduce) moves far more
    change = max(float((single[k] - first[k]).abs().max()) for k in moved)
    assert change > 1e-3


def training_free_test_cfg(tmp_path, num_images=3):
    """MaskCLIP w/o RMA on ground-truth masks: tested with checkpoint 'none'."""
    data = write_coco_panoptic(str(tmp_path / 'coco'), num_images=num_images)
    clip_path = str(tmp_path / 'tiny_clip.pt')
    torch.save(make_tiny_clip().state_dict(), clip_path)
    cfg = tiny_maskclip_cfg(str(tmp_path / 'work'), data, clip_path, max_iters=1, evaluate=True)
    cfg.model.visual_encoder.mask_attention_overrides = None
    cfg.model.head = None
    cfg.model.proposer = dict(type='GTMaskProposer')
    # no model_wrapper_cfg: tools/test.py picks a wrapper that accepts a model
    # without trainable parameters (torch's DDP refuses one)
    path = str(tmp_path / 'free.py')
    cfg.dump(path)
    return path


@pytest.mark.slow
def test_two_process_test_odd_images(tmp_path):
    cfg_path = training_free_test_cfg(tmp_path, num_images=3)
    one, two = str(tmp_path / 'one'), str(tmp_path / 'two')
    run_tool('test', [cfg_path, 'none', '--work-dir', one, '--out', f'{one}.pkl'])
    run_script(
        ['tools/dist_test.sh', cfg_path, 'none', 2, '--work-dir', two, '--out', f'{two}.pkl'],
        tmp_path,
        PORT=str(free_port()))

    preds = {}
    for name in (one, two):
        with open(f'{name}.pkl', 'rb') as f:
            preds[name] = pickle.load(f)
    # mmengine's collect_results drops the sample the sampler padded rank 1 with
    assert len(preds[one]) == len(preds[two]) == 3
    ids = [p['img_id'] for p in preds[two]]
    assert sorted(ids) == sorted(p['img_id'] for p in preds[one]) and len(set(ids)) == 3
    metrics_one, metrics_two = last_metrics(one), last_metrics(two)
    assert 'coco_panoptic/PQ' in metrics_one and 'mIoU' in metrics_one
    for key, value in metrics_one.items():
        if key.startswith('coco_panoptic/') or key in ('mIoU', 'aAcc', 'mAcc'):
            assert metrics_two[key] == pytest.approx(value, abs=1e-6), key


def fake_srun(tmp_path, script: str, *args: str) -> list:
    """Run ``tools/<script>`` with a fake ``srun`` first on PATH; the
    arguments ``srun`` was given."""
    fake = tmp_path / 'bin'
    fake.mkdir()
    record = tmp_path / 'srun_args.txt'
    (fake / 'srun').write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "{record}"\n')
    (fake / 'srun').chmod(0o755)
    env = dict(
        os.environ,
        PATH=f'{fake}{os.pathsep}{os.environ["PATH"]}',
        GPUS='16',
        GPUS_PER_NODE='8',
        CPUS_PER_TASK='4',
        SRUN_ARGS='--quotatype=auto',
        PYTHON='python3')
    proc = subprocess.run(['bash', f'tools/{script}', 'part', 'job', *args],
                          cwd=REPO,
                          env=env,
                          stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT,
                          text=True)
    assert proc.returncode == 0, proc.stdout
    return record.read_text().splitlines()


SRUN = [
    '-p', 'part', '--job-name=job', '--gres=gpu:8', '--ntasks=16', '--ntasks-per-node=8',
    '--cpus-per-task=4', '--kill-on-bad-exit=1', '--quotatype=auto', 'python3', '-u'
]


def test_slurm_train_command(tmp_path):
    """A dry run: a fake ``srun`` first on PATH records its arguments."""
    args = fake_srun(tmp_path, 'slurm_train.sh', 'configs/x.py', 'work/x', '--cfg-options',
                     'train_cfg.max_iters=2')
    assert args == SRUN + [
        'tools/train.py', 'configs/x.py', '--work-dir=work/x', '--launcher=slurm', '--cfg-options',
        'train_cfg.max_iters=2'
    ]


def test_slurm_test_command(tmp_path):
    """``slurm_test.sh`` likewise, a training-free model (``none``)."""
    args = fake_srun(tmp_path, 'slurm_test.sh', 'configs/x.py', 'none', '--amp')
    assert args == SRUN + ['tools/test.py', 'configs/x.py', 'none', '--launcher=slurm', '--amp']
