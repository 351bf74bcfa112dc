# Copyright (c) mmmaskclip contributors. All rights reserved.
"""model-index.yml, metafiles and every config: they parse and resolve."""
import glob
import os.path as osp

import pytest
import torch
import yaml
from mmdet.registry import MODELS
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(
    p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    if '_base_' not in p)


def test_model_index_lists_every_config():
    with open(osp.join(REPO, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    listed = set()
    for meta in index['Import']:
        with open(osp.join(REPO, meta)) as f:
            for model in yaml.safe_load(f)['Models']:
                assert osp.isfile(osp.join(REPO, model['Config'])), model['Config']
                listed.add(osp.join(REPO, model['Config']))
    assert listed == set(CONFIGS)


def test_metafile_is_up_to_date_and_help_writes_nothing(tmp_path):
    from conftest import load_script
    tool = load_script('tools/misc/update_metafile.py')
    assert tool.main(['--check']) == 0
    config_dir = tmp_path / 'maskclip'
    config_dir.mkdir()
    (config_dir / 'maskclip_vit-l-14-336_toy.py').write_text('')
    assert tool.main(['--check', '--config-dir', str(config_dir)]) == 1
    with pytest.raises(SystemExit):
        tool.main(['--help', '--config-dir', str(config_dir)])
    assert not (config_dir / 'metafile.yml').exists()
    assert tool.main(['--config-dir', str(config_dir)]) == 0
    assert 'Name: maskclip_vit-l-14-336_toy' in (config_dir / 'metafile.yml').read_text()
    assert tool.main(['--check', '--config-dir', str(config_dir)]) == 0


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_parses_and_types_resolve(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmdet'
    assert 'mmmaskclip' in cfg.custom_imports['imports']
    assert MODELS.get(cfg.model.type) is not None
    for key in ('visual_encoder', 'text_encoder', 'proposer', 'head'):
        if cfg.model.get(key):
            assert MODELS.get(cfg.model[key]['type']) is not None, key
    from mmdet.registry import DATASETS, METRICS
    if cfg.get('test_dataloader'):
        assert DATASETS.get(cfg.test_dataloader.dataset.type) is not None
        evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator,
                                                      list) else [cfg.test_evaluator]
        for evaluator in evaluators:
            assert METRICS.get(evaluator.type) is not None, evaluator.type


@pytest.mark.slow
def test_coco_recipe_runs_two_iterations(tmp_path):
    """The real recipe (ViT-L/14@336px + Mask2Former R-50, random weights)
    trains two iterations and tests on a synthetic COCO-panoptic dataset."""
    from mmengine.runner import Runner
    from synthetic_coco import write_coco_panoptic
    data = write_coco_panoptic(str(tmp_path / 'coco'), num_images=2, image_size=(96, 128))
    cfg = Config.fromfile(
        osp.join(REPO, 'configs/maskclip/'
                 'maskclip_vit-l-14-336_8xb1-10k_coco-panoptic.py'))
    cfg.model.clip.pretrained = None  # random weights: no download
    cfg.model.proposer.checkpoint = None
    cfg.model.num_things_classes = len(data['thing_classes'])
    for loader in (cfg.train_dataloader, cfg.test_dataloader):
        loader.num_workers, loader.persistent_workers = 0, False
        loader.dataset.update(
            data_root=data['data_root'],
            ann_file=data['ann_file'],
            data_prefix=data['data_prefix'],
            metainfo=dict(
                classes=data['classes'],
                thing_classes=data['thing_classes'],
                stuff_classes=data['stuff_classes']))
    pipeline = cfg.train_dataloader.dataset.pipeline
    assert pipeline[3].type == 'Resize'  # the authors' squash, to 96 x 96 here
    pipeline[3].scale = (96, 96)
    cfg.test_dataloader.dataset.pipeline[1].scale = (128, 96)
    cfg.test_dataloader.dataset.test_mode = True
    cfg.test_evaluator = [
        dict(
            type='CocoPanopticMetric',
            ann_file=f"{data['data_root']}/{data['ann_file']}",
            seg_prefix=f"{data['data_root']}/{data['data_prefix']['seg']}"),
        dict(type='SemSegMetric')
    ]
    cfg.train_cfg.update(max_iters=2, val_interval=100)
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.default_hooks.checkpoint.interval = 2
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    assert 'coco_panoptic/PQ' in metrics and 'mIoU' in metrics
    # four paper-style RMA layers only: no CLIP, no proposer in the checkpoint
    from mmmaskclip.utils import runner_checkpoint_globals
    with runner_checkpoint_globals():
        state = torch.load(osp.join(cfg.work_dir, 'iter_2.pth'), map_location='cpu')
    keys = set(state['state_dict'])
    assert keys and all(k.startswith('visual_encoder.mask_attention.') for k in keys)
    assert {k.split('.')[2] for k in keys} == {'5', '11', '17', '23'}


def test_coco_recipe_augmentation_is_the_authors(tmp_path):
    """The recipe's training images are flipped half of the time and squashed
    to 1024 x 1024 (the authors' mapper); mmdet's large-scale jitter is the
    documented -lsj option."""
    from mmdet.registry import DATASETS
    from mmengine.registry import init_default_scope
    from synthetic_coco import write_coco_panoptic
    init_default_scope('mmdet')
    data = write_coco_panoptic(str(tmp_path / 'coco'), num_images=1, image_size=(96, 128))
    recipe = osp.join(REPO, 'configs/maskclip/maskclip_vit-l-14-336_8xb1-10k_coco-panoptic.py')
    dataset_cfg = Config.fromfile(recipe).train_dataloader.dataset
    dataset_cfg.update(
        data_root=data['data_root'],
        ann_file=data['ann_file'],
        data_prefix=data['data_prefix'],
        metainfo=data['metainfo'],
        filter_cfg=None)
    dataset = DATASETS.build(dataset_cfg)
    flips = []
    for _ in range(40):
        sample = dataset[0]['data_samples']
        assert sample.img_shape == (1024, 1024) and sample.ori_shape == (96, 128)
        assert sample.scale_factor == pytest.approx((1024 / 128, 1024 / 96))
        assert sample.gt_instances.masks.height == 1024
        flips.append(sample.flip)
    assert 5 < sum(flips) < 35
    lsj = Config.fromfile(recipe.replace('.py', '-lsj.py'))
    types = [t['type'] for t in lsj.train_dataloader.dataset.pipeline]
    assert 'RandomResize' in types and 'RandomCrop' in types
    assert lsj.model == Config.fromfile(recipe).model
