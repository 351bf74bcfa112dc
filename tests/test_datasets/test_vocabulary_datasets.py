# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Labels and the vocabulary come from one mapping: a json whose categories
are ordered unlike ``metainfo['classes']`` (mmdet's own panoptic test fixture
lists car, person, wall while the metainfo says person, car, wall) must not
make text column ``i`` name another class than label ``i``."""
import os.path as osp

import pytest
from mmdet.registry import DATASETS
from mmengine.config import Config
from mmengine.registry import init_default_scope
from synthetic_coco import write_coco_panoptic

import mmmaskclip  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PANOPTIC_BASES = [
    'configs/_base_/datasets/coco_panoptic_maskclip.py',
    'configs/_base_/datasets/ade20k_panoptic_maskclip.py',
    'configs/_base_/datasets/ade20k-150_all-tasks_maskclip.py'
]


@pytest.fixture(scope='module')
def reordered(tmp_path_factory):
    """A panoptic json listing car, person (things), wall (stuff)."""
    return write_coco_panoptic(
        str(tmp_path_factory.mktemp('reordered')),
        num_images=2,
        things=('car', 'person'),
        stuff=('wall', ))


def shipped_dataset(base: str, data: dict, **overrides):
    """The val dataset of a shipped dataset base, on the synthetic data."""
    init_default_scope('mmdet')
    cfg = Config.fromfile(osp.join(REPO, base)).val_dataloader.dataset
    cfg.update(
        data_root=data['data_root'],
        ann_file=data['ann_file'],
        data_prefix=data['data_prefix'],
        test_mode=True,
        pipeline=[dict(type='LoadImageFromFile')],
        metainfo=dict(
            classes=('person', 'car', 'wall'),
            thing_classes=('person', 'car'),
            stuff_classes=('wall', )),
        **overrides)
    return DATASETS.build(cfg)


@pytest.mark.parametrize('base', PANOPTIC_BASES)
def test_text_follows_the_labels(reordered, base):
    dataset = shipped_dataset(base, reordered)
    cat_name = {cat_id: name for name, cat_id in zip(reordered['classes'], reordered['cat_ids'])}
    for info in dataset.load_data_list():
        vocabulary = list(info['text']) + list(info['stuff_text'])
        assert vocabulary == ['car', 'person', 'wall']
        assert len(info['text']) == 2  # things first: labels [0, T)
        json_segments = {s['id']: s for image in reordered['images'] for s in image['segments']}
        for segment in info['segments_info']:
            name = cat_name[json_segments[segment['id']]['category_id']]
            assert vocabulary[segment['category']] == name


def test_text_map_renames_only_the_text(reordered):
    dataset = shipped_dataset(PANOPTIC_BASES[0], reordered, text_map=dict(car='automobile'))
    info = dataset.load_data_list()[0]
    assert info['text'] == ['automobile', 'person']
    assert dataset.metainfo['classes'] == ('person', 'car', 'wall')


def test_stuff_before_things_is_refused(tmp_path):
    import json
    data = write_coco_panoptic(str(tmp_path / 'coco'), num_images=1)
    path = osp.join(data['data_root'], data['ann_file'])
    with open(path) as f:
        ann = json.load(f)
    ann['categories'] = ann['categories'][::-1]  # stuff first
    with open(path, 'w') as f:
        json.dump(ann, f)
    cfg = dict(
        type='CocoPanopticVocabDataset',
        data_root=data['data_root'],
        ann_file=data['ann_file'],
        data_prefix=data['data_prefix'],
        metainfo=data['metainfo'],
        return_classes=True,
        test_mode=True,
        pipeline=[])
    with pytest.raises(ValueError, match='stuff categories before thing'):
        DATASETS.build(cfg)
