# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Command lines of ``tools/train.py`` and ``tools/test.py``."""
import os.path as osp
import pickle
import subprocess
import sys

import pytest
from conftest import load_script, registrations_undone

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = {name: osp.join(REPO_ROOT, 'tools', f'{name}.py') for name in ('train', 'test')}

BASE_CONFIG = """
default_scope = 'mmdet'
model = dict(type='ToyRegressor')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))
auto_scale_lr = dict(enable=False, base_batch_size=2)
default_hooks = dict(visualization=dict(type='DetVisualizationHook'))
test_dataloader = dict(
    batch_size=2,
    dataset=dict(
        type='RepeatDataset',
        times=2,
        dataset=dict(type='ToyDataset', pipeline=[dict(type='A')])))
"""

TTA_CONFIG = """
tta_model = dict(type='DetTTAModel')
tta_pipeline = [dict(type='TestTimeAug', transforms=[])]
"""


@pytest.fixture(scope='module')
def train_tool():
    return load_script('tools/train.py')


@pytest.fixture(scope='module')
def test_tool():
    return load_script('tools/test.py')


@pytest.fixture
def config(tmp_path):
    path = tmp_path / 'toy_config.py'
    path.write_text(BASE_CONFIG)
    return str(path)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args],
                          cwd=REPO_ROOT,
                          capture_output=True,
                          text=True,
                          timeout=60)


@pytest.mark.parametrize('name', ['train', 'test'])
def test_help(name):
    proc = _run(TOOLS[name], '--help')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f'usage: {name}.py')
    for option in ('--work-dir', '--cfg-options', '--launcher'):
        assert option in proc.stdout
    # mim adds --gpus/--device to the command when the help mentions them.
    assert '--gpus' not in proc.stdout


@pytest.mark.parametrize('name', ['train', 'test'])
def test_missing_config_is_one_line_error(name, tmp_path):
    missing = str(tmp_path / 'no_such_config.py')
    args = [missing] if name == 'train' else [missing, 'model.pth']
    proc = _run(TOOLS[name], *args)
    assert proc.returncode != 0
    assert 'Traceback' not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert 'config file not found' in lines[0] and missing in lines[0]


def test_train_defaults(train_tool, config):
    cfg = train_tool.build_cfg(train_tool.parse_args([config]))
    assert cfg.work_dir == osp.join('./work_dirs', 'toy_config')
    assert cfg.launcher == 'none'
    assert cfg.optim_wrapper.type == 'OptimWrapper'
    assert not cfg.get('resume', False)
    assert cfg.auto_scale_lr.enable is False


def test_train_work_dir_and_cfg_options(train_tool, config, tmp_path):
    args = train_tool.parse_args([
        config, '--work-dir',
        str(tmp_path / 'wd'), '--launcher', 'pytorch', '--cfg-options',
        'optim_wrapper.optimizer.lr=0.5', 'work_dir=ignored'
    ])
    cfg = train_tool.build_cfg(args)
    assert cfg.work_dir == str(tmp_path / 'wd')  # CLI beats cfg-options
    assert cfg.launcher == 'pytorch'
    assert cfg.optim_wrapper.optimizer.lr == 0.5
    # A work_dir set in the config wins over the config name.
    cfg = train_tool.build_cfg(train_tool.parse_args([config, '--cfg-options', 'work_dir=here']))
    assert cfg.work_dir == 'here'


def test_train_amp(train_tool, config):
    cfg = train_tool.build_cfg(train_tool.parse_args([config, '--amp']))
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    assert cfg.optim_wrapper.optimizer.lr == 0.1


def test_train_amp_keeps_amp_config(train_tool, config):
    args = train_tool.parse_args([
        config, '--amp', '--cfg-options', 'optim_wrapper.type=AmpOptimWrapper',
        'optim_wrapper.loss_scale=512'
    ])
    cfg = train_tool.build_cfg(args)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 512


def test_train_amp_needs_optim_wrapper(train_tool, tmp_path):
    path = tmp_path / 'no_optim.py'
    path.write_text("model = dict(type='ToyRegressor')\n")
    with pytest.raises(train_tool.ToolError, match='optim_wrapper'):
        train_tool.build_cfg(train_tool.parse_args([str(path), '--amp']))


def test_train_resume(train_tool, config, tmp_path):
    args = train_tool.parse_args([config, '--resume', '--cfg-options', 'load_from=pretrained.pth'])
    assert args.resume == 'auto'
    cfg = train_tool.build_cfg(args)
    assert cfg.resume is True
    assert cfg.load_from is None  # search work_dir for the latest

    checkpoint = tmp_path / 'iter_10.pth'
    checkpoint.write_bytes(b'')
    cfg = train_tool.build_cfg(train_tool.parse_args([config, '--resume', str(checkpoint)]))
    assert cfg.resume is True
    assert cfg.load_from == str(checkpoint)

    with pytest.raises(train_tool.ToolError, match='not found'):
        train_tool.build_cfg(
            train_tool.parse_args([config, '--resume',
                                   str(tmp_path / 'missing.pth')]))


def test_train_auto_scale_lr(train_tool, config):
    cfg = train_tool.build_cfg(train_tool.parse_args([config, '--auto-scale-lr']))
    assert cfg.auto_scale_lr.enable is True
    args = train_tool.parse_args([config, '--auto-scale-lr', '--cfg-options', 'auto_scale_lr=None'])
    with pytest.raises(train_tool.ToolError, match='auto_scale_lr'):
        train_tool.build_cfg(args)


def test_train_main_reports_config_errors(train_tool, config, capsys):
    status = train_tool.main([config, '--auto-scale-lr', '--cfg-options', 'auto_scale_lr=None'])
    assert status == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('train.py: error:')


def test_test_defaults(test_tool, config):
    cfg = test_tool.build_cfg(test_tool.parse_args([config, 'model.pth']))
    assert cfg.load_from == 'model.pth'
    assert cfg.work_dir == osp.join('./work_dirs', 'toy_config')
    assert cfg.launcher == 'none'
    assert not cfg.default_hooks.visualization.get('draw', False)


def test_test_show(test_tool, config):
    args = test_tool.parse_args(
        [config, 'model.pth', '--show-dir', 'vis', '--show', '--wait-time', '0.5'])
    hook = test_tool.build_cfg(args).default_hooks.visualization
    assert hook.draw is True
    assert hook.test_out_dir == 'vis'
    assert hook.show is True and hook.wait_time == 0.5

    args = test_tool.parse_args([
        config, 'model.pth', '--show-dir', 'vis', '--cfg-options',
        'default_hooks.visualization=None'
    ])
    with pytest.raises(test_tool.ToolError, match='visualization'):
        test_tool.build_cfg(args)


def test_test_out_must_be_pickle(test_tool, config):
    args = test_tool.parse_args([config, 'model.pth', '--out', 'out.json'])
    with pytest.raises(test_tool.ToolError, match='.pkl'):
        test_tool.build_cfg(args)


def test_test_tta(test_tool, config, tmp_path):
    with pytest.raises(test_tool.ToolError, match='tta_model'):
        test_tool.build_cfg(test_tool.parse_args([config, 'model.pth', '--tta']))

    path = tmp_path / 'tta_config.py'
    path.write_text(BASE_CONFIG + TTA_CONFIG)
    cfg = test_tool.build_cfg(test_tool.parse_args([str(path), 'model.pth', '--tta']))
    assert cfg.model.type == 'DetTTAModel'
    assert cfg.model.module.type == 'ToyRegressor'
    inner = cfg.test_dataloader.dataset.dataset
    assert inner.pipeline == [dict(type='TestTimeAug', transforms=[])]
    assert 'pipeline' not in cfg.test_dataloader.dataset


TOY_MODULE = '''
import torch
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseModel
from mmengine.structures import InstanceData
from torch import nn
from torch.utils.data import Dataset

from mmdet.registry import DATASETS, METRICS, MODELS
from mmdet.structures import DetDataSample


@MODELS.register_module(force=True)
class ToyRegressor(BaseModel):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 1)

    def forward(self, inputs, targets=None, mode='tensor'):
        out = self.fc(inputs)
        if mode == 'loss':
            return dict(loss=((out - targets)**2).mean())
        if mode == 'predict':
            samples = []
            for score in out.detach().sigmoid():
                sample = DetDataSample(metainfo=dict(img_id=0))
                sample.pred_instances = InstanceData(
                    bboxes=torch.zeros(1, 4), scores=score,
                    labels=torch.zeros(1, dtype=torch.long))
                samples.append(sample)
            return samples
        return out


@DATASETS.register_module(force=True)
class ToyDataset(Dataset):
    metainfo = dict(classes=('toy', ))

    def __init__(self, pipeline=None):
        gen = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(8, 4, generator=gen)
        self.targets = torch.randn(8, 1, generator=gen)

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, idx):
        return dict(inputs=self.inputs[idx], targets=self.targets[idx])


@METRICS.register_module(force=True)
class ToyCount(BaseMetric):
    default_prefix = 'toy'

    def process(self, data_batch, data_samples):
        self.results.append(len(data_samples))

    def compute_metrics(self, results):
        return dict(count=sum(results))
'''

RUN_CONFIG = """
default_scope = 'mmdet'
custom_imports = dict(imports=['toy_tools_module'])
model = dict(type='ToyRegressor')
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    dataset=dict(type='ToyDataset'),
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'))
test_dataloader = dict(
    batch_size=4,
    num_workers=0,
    dataset=dict(type='ToyDataset'),
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='default_collate'))
test_evaluator = dict(type='ToyCount')
train_cfg = dict(type='IterBasedTrainLoop', max_iters=2, val_interval=100)
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
    logger=dict(type='LoggerHook', interval=1))
log_level = 'WARNING'
"""


@pytest.mark.slow
def test_train_resume_and_test_end_to_end(train_tool, test_tool, tmp_path, monkeypatch):
    """Train two iterations, auto-resume to four, test with ``--out``."""
    (tmp_path / 'toy_tools_module.py').write_text(TOY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = tmp_path / 'toy_run.py'
    config.write_text(RUN_CONFIG)
    work_dir = str(tmp_path / 'work_dir')

    # the config's custom_imports registers the toy modules: undone afterwards
    with registrations_undone():
        # Distinct experiment names: runs within one second would otherwise
        # share mmengine's logger and log folder.
        assert train_tool.main(
            [str(config), '--work-dir', work_dir, '--cfg-options', 'experiment_name=train']) == 0
        first = osp.join(work_dir, 'iter_2.pth')
        with open(first, 'rb') as f:
            first_bytes = f.read()
        assert train_tool.main([
            str(config), '--work-dir', work_dir, '--cfg-options', 'train_cfg.max_iters=4',
            'experiment_name=resume', '--resume'
        ]) == 0
        assert osp.isfile(osp.join(work_dir, 'iter_4.pth'))
        with open(first, 'rb') as f:  # resumed at iteration 2, not rerun
            assert f.read() == first_bytes

        out = str(tmp_path / 'predictions.pkl')
        assert test_tool.main([
            str(config),
            osp.join(work_dir, 'iter_4.pth'), '--work-dir', work_dir, '--out', out, '--cfg-options',
            'experiment_name=test'
        ]) == 0
        with open(out, 'rb') as f:
            predictions = pickle.load(f)
        assert len(predictions) == 8


def test_test_progress_bar_hook(test_tool, config):
    cfg = test_tool.build_cfg(test_tool.parse_args([config, 'none']))
    assert cfg.load_from is None  # 'none': a training-free model
    assert [h['type'] for h in cfg.custom_hooks] == ['TestProgressBarHook']
    cfg = test_tool.build_cfg(test_tool.parse_args([config, 'none', '--no-progress']))
    assert not cfg.get('custom_hooks')


MASKCLIP_CONFIG = """
model = dict(
    type='MaskCLIP',
    clip=dict(name='ViT-L-14-336', pretrained='openai'),
    proposer=dict(type='DetectorProposer', detector='d.py', checkpoint='https://x/m2f.pth'))
randomness = dict(deterministic=False)
"""


@pytest.mark.parametrize('name', ['train', 'test'])
def test_random_weights_and_seed(name, train_tool, test_tool, tmp_path):
    """``--random-weights`` drops CLIP's and the proposer's pretrained
    weights (after ``--cfg-options``), ``--seed`` sets ``randomness.seed``."""
    tool = train_tool if name == 'train' else test_tool
    path = tmp_path / 'maskclip.py'
    path.write_text(MASKCLIP_CONFIG)
    extra = [] if name == 'train' else ['none']
    cfg = tool.build_cfg(tool.parse_args([str(path), *extra]))
    assert cfg.model.clip.pretrained == 'openai' and 'seed' not in cfg.randomness
    cfg = tool.build_cfg(
        tool.parse_args([
            str(path), *extra, '--random-weights', '--seed', '3', '--cfg-options',
            'model.clip.pretrained=/some/file.bin'
        ]))
    assert cfg.model.clip.pretrained is None
    assert cfg.model.proposer.checkpoint is None
    assert cfg.randomness == dict(deterministic=False, seed=3)
    # a proposer without weights (ground truth, precomputed) is left alone
    path.write_text(MASKCLIP_CONFIG + "model.update(proposer=dict(type='GTMaskProposer'))\n")
    cfg = tool.build_cfg(tool.parse_args([str(path), *extra, '--random-weights']))
    assert cfg.model.proposer.to_dict() == dict(type='GTMaskProposer')


@pytest.mark.parametrize('name', ['train', 'test'])
def test_random_weights_needs_a_maskclip_config(name, config):
    args = [config, '--random-weights'] if name == 'train' else [config, 'none', '--random-weights']
    proc = _run(TOOLS[name], *args)
    assert proc.returncode == 2, proc.stderr
    assert 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f'{name}.py: error: --random-weights replaces the CLIP and proposer weights of a '
        'MaskCLIP config, but this config has no model.clip')


@pytest.mark.parametrize('name', ['train', 'test'])
def test_help_lists_random_weights_and_seed(name):
    proc = _run(TOOLS[name], '--help')
    assert '--random-weights' in proc.stdout and '--seed' in proc.stdout
