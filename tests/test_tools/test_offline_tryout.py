# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The README's offline try-out (synthetic dataset, ``tools/test.py`` and
``tools/train.py`` with ``--random-weights --seed``) and the one-sentence
error of ``tools/train.py`` when CLIP's weights cannot be downloaded."""
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO, load_script
from mmengine.config import Config

TRYOUT_SECTION = '### Try test and train offline (three commands)'


def readme_tryout_commands() -> list:
    """The three command lines of the README's try-out, verbatim."""
    with open(osp.join(REPO, 'README.md'), encoding='utf-8') as f:
        text = f.read()
    section = text.split(TRYOUT_SECTION, 1)[1]
    block = re.search(r'```bash\n(.*?)```', section, flags=re.S).group(1)
    commands = block.strip().splitlines()
    assert len(commands) == 3, commands
    return commands


def offline_env(tmp_path) -> dict:
    """No hub access, an empty hub cache: weights cannot come from anywhere."""
    return dict(os.environ, HF_HUB_OFFLINE='1', HF_HOME=str(tmp_path / 'hf_home'))


def json_metrics(work_dir: str) -> dict:
    """The last metrics line of the newest mmengine json log in ``work_dir``."""
    # tests log to <timestamp>/<timestamp>.json, training to <timestamp>/vis_data/
    logs = sorted(
        path for path in glob.glob(osp.join(work_dir, '*', '**', '*.json'), recursive=True)
        if osp.basename(path) != 'scalars.json')
    with open(logs[-1], encoding='utf-8') as f:
        lines = [json.loads(line) for line in f if line.strip()]
    return [line for line in lines if any(k.startswith('coco_panoptic/') for k in line)][-1]


@pytest.mark.slow
def test_readme_tryout_commands_run_offline(tmp_path):
    """The three commands as the README writes them, from a folder that
    holds the checkout's tools, configs and .venv (what the commands name)."""
    for name in ('tools', 'configs', '.venv'):
        if osp.exists(osp.join(REPO, name)):
            (tmp_path / name).symlink_to(osp.join(REPO, name))
    commands = readme_tryout_commands()
    assert commands[0].startswith('.venv/bin/python tools/misc/make_synthetic_dataset.py')
    if not osp.exists(osp.join(REPO, '.venv', 'bin', 'python')):  # another environment
        commands = [c.replace('.venv/bin/python', sys.executable, 1) for c in commands]
    seconds = []
    for command in commands:
        start = time.perf_counter()
        proc = subprocess.run(['bash', '-c', command],
                              cwd=tmp_path,
                              env=offline_env(tmp_path),
                              capture_output=True,
                              text=True,
                              timeout=300)
        seconds.append(round(time.perf_counter() - start, 1))
        print(f'{seconds[-1]:6.1f} s  {command}')
        assert proc.returncode == 0, f'{command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'
    data = tmp_path / 'data' / 'synthetic_coco'
    assert len(os.listdir(data / 'train2017')) == 4 and len(os.listdir(data / 'val2017')) == 2
    test_metrics = json_metrics(str(tmp_path / 'work_dirs' / 'maskclip-wo-rma_synthetic'))
    assert 0 <= test_metrics['coco_panoptic/PQ'] <= 100
    work = tmp_path / 'work_dirs' / 'maskclip_synthetic'
    assert (work / 'iter_4.pth').is_file()  # trained 4 iterations, then validated
    assert 0 <= json_metrics(str(work))['coco_panoptic/PQ'] <= 100


def test_synthetic_configs_point_at_the_data(tmp_path, capsys):
    """The written configs are the shipped ones with the data (and with
    ``--tiny`` the model) swapped; the tests' generator is the tool's."""
    tool = load_script('tools/misc/make_synthetic_dataset.py')
    from synthetic_coco import write_coco_panoptic
    assert write_coco_panoptic is sys.modules['synthetic_coco_panoptic'].write_coco_panoptic

    out = tmp_path / 'full'
    assert tool.main([str(out), '--num-train', '2', '--num-val', '1', '--image-size', '32',
                      '48']) == 0
    printed = capsys.readouterr().out
    assert 'tools/test.py' in printed and '--random-weights --seed 0' in printed
    test_cfg = Config.fromfile(str(out / 'maskclip-wo-rma_synthetic.py'))
    dataset = test_cfg.test_dataloader.dataset
    assert dataset.data_root == f'{out}/'
    assert dataset.ann_file == 'annotations/panoptic_val2017.json'
    assert dataset.metainfo.classes == ('person', 'car', 'sky', 'grass')
    assert test_cfg.test_evaluator.ann_file == f'{out}/annotations/panoptic_val2017.json'
    assert test_cfg.val_dataloader == test_cfg.test_dataloader
    assert test_cfg.model.clip.name == 'ViT-L-14-336'  # the shipped model
    assert test_cfg.test_dataloader.num_workers == 0
    train_cfg = Config.fromfile(str(out / 'maskclip_synthetic.py'))
    assert train_cfg.train_dataloader.dataset.data_prefix.img == 'train2017/'
    assert sorted(train_cfg.model.visual_encoder.mask_attention_overrides) == [5, 11, 17, 23]
    assert len(os.listdir(out / 'train2017')) == 2 and len(os.listdir(out / 'val2017')) == 1

    tiny = tmp_path / 'tiny'
    assert tool.main([str(tiny), '--tiny']) == 0
    train_cfg = Config.fromfile(str(tiny / 'maskclip_synthetic.py'))
    assert train_cfg.model.clip.pretrained is None and 'name' not in train_cfg.model.clip
    assert sorted(train_cfg.model.visual_encoder.mask_attention_overrides) == [1, 2]
    assert train_cfg.model.proposer.detector == str(tiny / 'tiny_mask2former.py')
    resize = [t for t in train_cfg.train_dataloader.dataset.pipeline if t.type == 'Resize']
    assert resize[0].scale == (128, 128)


@pytest.mark.slow
def test_same_seed_same_random_weights(tmp_path):
    """``--random-weights --seed N``: the runner of ``tools/test.py`` builds
    the same random CLIP and proposer for the same seed, others for another."""
    make = load_script('tools/misc/make_synthetic_dataset.py')
    assert make.main([str(tmp_path / 'data'), '--tiny', '--num-train', '1', '--num-val', '1']) == 0
    config = str(tmp_path / 'data' / 'maskclip-wo-rma_synthetic.py')
    test_tool = load_script('tools/test.py')
    common = load_script('tools/tool_common.py')

    def weights(seed: int, name: str) -> dict:
        args = test_tool.parse_args([
            config, 'none', '--random-weights', '--seed',
            str(seed), '--work-dir',
            str(tmp_path / name), '--cfg-options', f'experiment_name={name}'
        ])
        model = common.build_runner(test_tool.build_cfg(args)).model
        # parameters: the state dict holds the trainable ones only (none here)
        return {k: v.detach().clone() for k, v in model.named_parameters()}

    first, again, other = weights(0, 'first'), weights(0, 'again'), weights(1, 'other')
    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    differ = {k.split('.')[0] for k in first if not torch.equal(first[k], other[k])}
    assert {'visual_encoder', 'text_encoder', 'proposer'} <= differ  # CLIP's towers, Mask2Former


def test_train_without_clip_weights_offline_is_one_sentence(tmp_path):
    """The shipped training recipe with its default ``pretrained='openai'``
    and no way to download it: exit 2 and one sentence naming the file and
    where to put it, no traceback and no config dump."""
    config = 'configs/maskclip/maskclip_vit-l-14-336_8xb1-10k_coco-panoptic.py'
    proc = subprocess.run(
        [sys.executable, 'tools/train.py', config, '--work-dir',
         str(tmp_path / 'work')],
        cwd=REPO,
        env=offline_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    err = proc.stderr.strip().splitlines()
    assert len(err) <= 3, proc.stderr  # open_clip's own line, then ours
    assert 'Traceback' not in proc.stderr
    last = err[-1]
    assert last.startswith('train.py: error: ')
    for part in ('open_clip_pytorch_model.bin', 'timm/vit_large_patch14_clip_336.openai',
                 str(tmp_path / 'hf_home' / 'hub'), "pretrained='/path/to/"):
        assert part in last, part
    # mmengine's environment and config log (~400 lines) waits for the model
    assert 'Config:' not in proc.stdout and len(proc.stdout.splitlines()) <= 3, proc.stdout
