# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Every shipped leaf config runs as shipped, weights and data swapped.

For each config under ``configs/`` (``_base_`` excluded; new ones are
picked up by themselves) only these change:

1. ``model.clip`` becomes a tiny open_clip ViT (patch 14, ViT-L's 24 blocks
   but 64 wide, random weights loaded from a ``.pt`` state dict), replaced
   wholesale;
2. a ``DetectorProposer``'s detector (or the detector of a class-agnostic
   proposer recipe) is shrunk (:mod:`tiny_maskclip`), without checkpoint;
3. every dataloader reads a tiny synthetic copy of its benchmark, written in
   the real format at the config's own relative paths
   (:mod:`synthetic_benchmarks`): only ``data_root`` and the evaluators'
   absolute paths change;
4. runtime: no worker processes, a temporary ``work_dir``, a unique
   experiment (and visualizer) name, 2 training iterations or 1 epoch.

Pipelines, evaluators, loops, hooks, thresholds and vocabularies stay as
shipped. Test configs run ``Runner.test()`` and must report each
evaluator's headline metric; recipes with a ``train_cfg`` train first.
"""
import glob
import math
import os
import os.path as osp
import uuid
from typing import Dict, List

import pytest
import torch
from conftest import REPO, make_tiny_clip, tiny_clip_cfg
from mmengine.config import Config, ConfigDict
from synthetic_benchmarks import writer_for
from tiny_maskclip import shrink_mask2former, shrink_mask_rcnn

# ViT-L/14's 24 blocks (64 wide): the shipped RMA block indices stay valid
TINY_CLIP = dict(patch_size=14, image_size=56, layers=24)
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
EVALUATORS = ('val_evaluator', 'test_evaluator')
EVALUATOR_PATH_KEYS = ('ann_file', 'seg_prefix')

#: Configs that fail because of the config or the package (not this test):
#: strict xfails, so that a fix shows up as XPASS.
KNOWN_FAILURES: Dict[str, str] = {}


def leaf_configs() -> List[str]:
    """Every config under ``configs/`` except ``_base_``, relative to the repo."""
    paths = glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    relpaths = (osp.relpath(path, REPO) for path in paths)
    return sorted(p for p in relpaths if '_base_' not in p.split(os.sep))


def config_id(relpath: str) -> str:
    """Test id of a config: its path under ``configs/`` without ``.py``."""
    return osp.splitext(osp.relpath(relpath, 'configs'))[0]


def config_params() -> list:
    """``pytest.param`` per leaf config, known failures as strict xfails."""
    params = []
    for relpath in leaf_configs():
        marks = [pytest.mark.xfail(strict=True, reason=KNOWN_FAILURES[relpath])
                 ] if relpath in KNOWN_FAILURES else []
        params.append(pytest.param(relpath, id=config_id(relpath), marks=marks))
    return params


@pytest.fixture(scope='module')
def tiny_clip_file(tmp_path_factory) -> str:
    """State dict of the tiny patch-14 CLIP, as a ``pretrained`` file."""
    path = str(tmp_path_factory.mktemp('clip') / 'tiny_clip.pt')
    torch.save(make_tiny_clip(seed=1, **TINY_CLIP).state_dict(), path)
    return path


def tiny_clip(clip_file: str) -> ConfigDict:
    """The ``model.clip`` config of the tiny CLIP (replaces the shipped one)."""
    return ConfigDict(model_cfg=tiny_clip_cfg(**TINY_CLIP), pretrained=clip_file)


# ----------------------------------------------------------------- models --
def shrink_detector(model: ConfigDict) -> ConfigDict:
    """Shrink an mmdet Mask2Former or Mask R-CNN model config in place."""
    if 'panoptic_head' in model:
        shrink_mask2former(model)
    elif 'roi_head' in model:
        shrink_mask_rcnn(model)
    else:
        pytest.fail(f'no tiny version of detector {model.get("type")}: add one to '
                    'tests/tiny_maskclip.py and tests/test_shipped_configs.py')
    return model


def use_tiny_models(model: ConfigDict, clip_file: str) -> None:
    """Tiny CLIP and proposer (override i and ii); a model without a CLIP is
    a class-agnostic proposer recipe: shrink the detector itself."""
    if 'clip' not in model:
        shrink_detector(model)
        return
    model.clip = tiny_clip(clip_file)
    proposer = model.get('proposer')
    if proposer and proposer.type == 'DetectorProposer':
        from mmmaskclip.models.proposers import DetectorProposer
        detector = DetectorProposer.detector_model_cfg(proposer.detector)
        proposer.update(detector=shrink_detector(ConfigDict(detector)), checkpoint=None)


# ------------------------------------------------------------------- data --
def leaf_datasets(dataset: ConfigDict) -> List[ConfigDict]:
    """The datasets that read files: ``dataset`` itself, or those that a
    wrapper holds (``dataset`` / ``datasets``)."""
    inner = dataset.get('datasets') or ([dataset.dataset] if 'dataset' in dataset else [])
    return [d for child in inner for d in leaf_datasets(child)] if inner else [dataset]


def relocate_evaluator(evaluator: ConfigDict, shipped_root: str, data: dict) -> None:
    """Move the evaluator's paths from the shipped data root to the
    synthetic one; each must be a path that the synthetic benchmark provides."""
    provided = {osp.normpath(p) for p in data['evaluator_paths']}
    for key in EVALUATOR_PATH_KEYS:
        path = evaluator.get(key)
        if not isinstance(path, str) or path.startswith(data['data_root']):
            continue  # unset, or moved already (val and test share it)
        relpath = osp.relpath(osp.normpath(path), osp.normpath(shipped_root))
        moved = osp.join(data['data_root'], relpath)
        assert osp.normpath(moved) in provided, (
            f'{evaluator.type}.{key}={path!r} is not one of the files of the dataset '
            f'(data_root {shipped_root!r}) that the synthetic benchmark writes: '
            f'{sorted(osp.relpath(p, data["data_root"]) for p in provided)}')
        evaluator[key] = moved + ('/' if path.endswith('/') else '')


def as_list(value) -> list:
    """``value`` as a list (None -> [])."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def benchmark_writer(dataset: ConfigDict, relpath: str):
    """The synthetic benchmark writer of a test dataset; fails if none."""
    writer = writer_for(dataset)
    if writer is None:
        pytest.fail(f'{relpath}: no synthetic format for the test dataset '
                    f'{dataset.get("type")} ({dataset.get("ann_file")}); add a writer to '
                    'tests/synthetic_benchmarks.py (WRITERS)')
    return writer


def use_synthetic_data(cfg: Config, root: str, relpath: str) -> None:
    """Write the test dataset's synthetic benchmark; point every dataloader
    and evaluator at it; no worker processes (override iii and iv)."""
    dataset = cfg.test_dataloader.dataset
    writer = benchmark_writer(dataset, relpath)
    shipped_root = leaf_datasets(dataset)[0].get('data_root') or ''
    data = writer(root)
    for name in LOADERS:
        loader = cfg.get(name)
        if not loader:
            continue
        loader.update(num_workers=0, persistent_workers=False)
        for inner in leaf_datasets(loader.dataset):
            inner.data_root = data['data_root']
    for name in EVALUATORS:
        for evaluator in as_list(cfg.get(name)):
            relocate_evaluator(evaluator, shipped_root, data)


def use_tmp_runtime(cfg: Config, work_dir: str) -> None:
    """A temporary work dir and a unique experiment / visualizer name."""
    cfg.work_dir = work_dir
    cfg.experiment_name = f'shipped_{uuid.uuid4().hex}'
    if cfg.get('visualizer'):
        cfg.visualizer.name = cfg.experiment_name


def shorten_training(cfg: Config) -> None:
    """2 iterations (or 1 epoch), validating once at the end."""
    loop = cfg.train_cfg
    if 'max_iters' in loop:
        loop.update(max_iters=2, val_interval=2)
    else:
        loop.update(max_epochs=1, val_interval=1)


# ---------------------------------------------------------------- metrics --
def _metrics(evaluator: ConfigDict) -> List[str]:
    return as_list(evaluator.get('metric', 'bbox'))


#: evaluator type -> (default prefix, its headline keys without prefix)
HEADLINES = {
    'CocoPanopticMetric': ('coco_panoptic', lambda ev: ['PQ']),
    'CocoMetric':
    ('coco',
     lambda ev: [f'{m}_{item}' for m in _metrics(ev)
                 for item in ev.get('metric_items') or ['mAP']]),
    'OVCocoMetric':
    ('coco', lambda ev: [f'{m}_mAP' for m in _metrics(ev)] + ['base_ap50', 'novel_ap50']),
    'LVISMetric': ('lvis', lambda ev: [f'{m}_AP' for m in _metrics(ev)]),
    'SemSegMetric': (None, lambda ev: as_list(ev.get('iou_metrics', 'mIoU'))),
}
# mmmaskclip's wrappers report what the metric they wrap reports
HEADLINES.update(
    LVISCompatMetric=HEADLINES['LVISMetric'],
    ReorderedCocoMetric=HEADLINES['CocoMetric'],
    ReorderedSemSegMetric=HEADLINES['SemSegMetric'],
    GTIgnoreSemSegMetric=HEADLINES['SemSegMetric'])


def headline_keys(evaluators) -> List[str]:
    """The metric keys every evaluator of a config must report."""
    keys = []
    for evaluator in as_list(evaluators):
        if evaluator.type not in HEADLINES:
            pytest.fail(f'no headline metric known for {evaluator.type}: add it to HEADLINES')
        default_prefix, names = HEADLINES[evaluator.type]
        prefix = evaluator.get('prefix', default_prefix)
        keys += [f'{prefix}/{name}' if prefix else name for name in names(evaluator)]
    return keys


def check_metrics(metrics: dict, evaluators) -> None:
    """Each headline key is reported, with a finite value."""
    for key in headline_keys(evaluators):
        assert key in metrics, f'{key} missing from {sorted(metrics)}'
        assert math.isfinite(metrics[key]), f'{key} = {metrics[key]}'


# ------------------------------------------------------------------ tests --
def run_benchmark(cfg: Config, relpath: str, clip_file: str, tmp_path) -> None:
    """Train (recipes) and test on the synthetic benchmark."""
    from mmengine.runner import Runner
    use_tiny_models(cfg.model, clip_file)
    use_synthetic_data(cfg, str(tmp_path / 'data'), relpath)
    use_tmp_runtime(cfg, str(tmp_path / 'work'))
    train = bool(cfg.get('train_dataloader') and cfg.get('train_cfg'))
    if train:
        shorten_training(cfg)
    runner = Runner.from_cfg(cfg)
    if train:
        runner.train()
        losses = runner.message_hub.get_scalar('train/loss').data[0]
        assert len(losses) and all(math.isfinite(v) for v in losses)
    check_metrics(runner.test(), cfg.test_evaluator)


@pytest.mark.slow
@pytest.mark.parametrize('relpath', config_params())
def test_shipped_config_runs(relpath, tiny_clip_file, tmp_path):
    cfg = Config.fromfile(osp.join(REPO, relpath))
    if not cfg.get('test_dataloader'):
        pytest.fail(f'{relpath}: no test_dataloader; teach tests/test_shipped_configs.py '
                    'how to run it')
    run_benchmark(cfg, relpath, tiny_clip_file, tmp_path)


@pytest.mark.parametrize('relpath', leaf_configs(), ids=config_id)
def test_shipped_config_has_synthetic_benchmark(relpath):
    """Fast: the synthetic format and headline metrics of every benchmark
    config are known (what the slow test needs before it runs anything)."""
    cfg = Config.fromfile(osp.join(REPO, relpath))
    assert cfg.get('test_dataloader'), relpath
    benchmark_writer(cfg.test_dataloader.dataset, relpath)
    assert headline_keys(cfg.test_evaluator)


def test_every_leaf_config_is_collected():
    """The glob sees the shipped configs of every folder, bases excluded."""
    folders = {osp.dirname(p) for p in leaf_configs()}
    assert {'configs/maskclip', 'configs/proposals'} <= folders
    assert not any('_base_' in p for p in leaf_configs())
