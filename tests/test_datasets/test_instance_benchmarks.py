# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Instance-segmentation benchmarks of the paper (Tables 4 and 5): the COCO
48/17 split (CocoOVDDataset, its constrained-setting converter, mmdet's
coco2ovd.py outputs) and LVIS v1 (LVISV1OVDataset), each with mmdet's
metrics on perfect predictions and on hand-computed wrong ones."""
import importlib.util
import json
import os
import os.path as osp
import sys
from argparse import Namespace

import cv2
import mmdet
import numpy as np
import pytest
import torch
from mmdet.datasets import CocoDataset, LVISV1Dataset
from mmdet.registry import DATASETS, METRICS
from mmdet.structures.bbox import get_box_tensor
from mmengine.registry import DefaultScope
from pycocotools import mask as mask_utils

import mmmaskclip.evaluation  # noqa: F401  (registers LVISCompatMetric)
from mmmaskclip.datasets.coco_ovd import (COCO_OVD_BASE_CLASSES, COCO_OVD_CLASSES,
                                          COCO_OVD_NOVEL_CLASSES, CocoOVDDataset, filter_coco_split)
from mmmaskclip.datasets.lvis import LVISV1OVDataset, lvis_natural_name

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tools', 'dataset_converters'))
from coco_ovd_constrained import convert, main  # noqa: E402

SIZE = 64
META_KEYS = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'text')
# COCO's 80 category ids (1..90 without the 10 unused ones).
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
COCO_ID = dict(zip(CocoDataset.METAINFO['classes'], COCO_IDS))


def _rect(x1, y1, x2, y2):
    """A binary SIZE x SIZE mask of the rectangle [x1, x2) x [y1, y2)."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[y1:y2, x1:x2] = 1
    return mask


def _ann(ann_id, img_id, cat_id, box, rle=False, crowd=False):
    """A COCO annotation of a rectangle, as a polygon or a compressed RLE."""
    x1, y1, x2, y2 = box
    if rle:
        seg = mask_utils.encode(np.asfortranarray(_rect(*box)))
        seg['counts'] = seg['counts'].decode()
    else:
        seg = [[x1, y1, x2, y1, x2, y2, x1, y2]]
    return dict(
        id=ann_id,
        image_id=img_id,
        category_id=cat_id,
        segmentation=seg,
        area=float((x2 - x1) * (y2 - y1)),
        bbox=[x1, y1, x2 - x1, y2 - y1],
        iscrowd=int(crowd))


def _write_images(root, names):
    for name in names:
        path = osp.join(root, name)
        os.makedirs(osp.dirname(path), exist_ok=True)
        cv2.imwrite(path, np.full((SIZE, SIZE, 3), 127, np.uint8))


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    """A 4-image COCO val json with all 80 categories (COCO ids).

    Image 11: person (polygon), cat (polygon), scissors (RLE);
    image 22: airplane (polygon), toothbrush (RLE), a crowd person (RLE);
    image 33: dining table only (in neither split);
    image 44: bicycle only (base).
    """
    root = str(tmp_path_factory.mktemp('coco'))
    spec = {
        11: [('person', (2, 2, 20, 30), False, False), ('cat', (30, 4, 60, 24), False, False),
             ('scissors', (30, 40, 50, 60), True, False)],
        22: [('airplane', (4, 4, 40, 20), False, False),
             ('toothbrush', (44, 30, 60, 62), True, False),
             ('person', (2, 40, 30, 62), True, True)],
        33: [('dining table', (8, 8, 56, 56), False, False)],
        44: [('bicycle', (10, 10, 50, 40), False, False)],
    }
    images, anns = [], []
    for img_id, objs in spec.items():
        images.append(dict(id=img_id, file_name=f'{img_id:012d}.jpg', height=SIZE, width=SIZE))
        for name, box, rle, crowd in objs:
            anns.append(_ann(len(anns) + 1, img_id, COCO_ID[name], box, rle, crowd))
    data = dict(
        info=dict(description='synthetic'),
        licenses=[],
        images=images,
        annotations=anns,
        categories=[dict(id=i, name=n, supercategory='x') for n, i in COCO_ID.items()])
    _write_images(osp.join(root, 'val2017'), [i['file_name'] for i in images])
    ann_dir = osp.join(root, 'annotations')
    os.makedirs(ann_dir)
    for stem in ('instances_val2017', 'instances_train2017'):
        with open(osp.join(ann_dir, f'{stem}.json'), 'w') as f:
            json.dump(data, f)
    return dict(root=root, json=osp.join(ann_dir, 'instances_val2017.json'), data=data)


def _pipeline():
    return [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='PackDetInputs', meta_keys=META_KEYS)
    ]


def _coco_ovd(coco, ann_file=None, **kwargs):
    cfg = dict(
        type='CocoOVDDataset',
        data_root=coco['root'],
        ann_file=ann_file or coco['json'],
        data_prefix=dict(img='val2017/'),
        test_mode=True,
        return_classes=True,
        pipeline=_pipeline(),
        **kwargs)
    with DefaultScope.overwrite_default_scope('mmdet'):
        return DATASETS.build(cfg)


def _samples(dataset):
    return [dataset[i]['data_samples'] for i in range(len(dataset))]


def _predict(samples, relabel=(), extra=()):
    """Perfect predictions (GT masks, boxes, labels, score 1) as metric input.

    ``relabel``: ``(img_id, true label, new label, score)`` changes one
    prediction; ``extra``: ``(img_id, label, mask, score)`` adds one.
    """
    outputs = []
    for sample in samples:
        gt = sample.gt_instances
        masks = torch.from_numpy(gt.masks.masks.astype(bool))
        labels, scores = gt.labels.clone(), torch.ones(len(gt))
        for img_id, old, new, score in relabel:
            if sample.img_id == img_id:
                index = (labels == old).nonzero()[0, 0]
                labels[index], scores[index] = new, score
        bboxes = get_box_tensor(gt.bboxes).float()
        for img_id, label, mask, score in extra:
            if sample.img_id == img_id:
                masks = torch.cat([masks, torch.from_numpy(mask.astype(bool))[None]])
                bboxes = torch.cat([bboxes, bboxes.new_tensor([[0, 0, 1, 1]])])
                labels = torch.cat([labels, labels.new_tensor([label])])
                scores = torch.cat([scores, scores.new_tensor([score])])
        outputs.append(
            dict(
                img_id=sample.img_id,
                ori_shape=sample.ori_shape,
                pred_instances=dict(masks=masks, labels=labels, scores=scores, bboxes=bboxes)))
    return outputs


def _evaluate(metric_cfg, dataset, outputs):
    metric = METRICS.build(metric_cfg)
    metric.dataset_meta = dataset.metainfo
    metric.process({}, outputs)
    return metric.evaluate(len(outputs))


def _label(dataset, name):
    return dataset.metainfo['classes'].index(name)


# --------------------------------------------------------------- COCO 48/17
def test_class_lists():
    assert len(COCO_OVD_BASE_CLASSES) == 48 and len(COCO_OVD_NOVEL_CLASSES) == 17
    assert not set(COCO_OVD_BASE_CLASSES) & set(COCO_OVD_NOVEL_CLASSES)
    assert len(COCO_OVD_CLASSES) == 65
    coco80 = list(CocoDataset.METAINFO['classes'])
    for names in (COCO_OVD_BASE_CLASSES, COCO_OVD_NOVEL_CLASSES, COCO_OVD_CLASSES):
        assert [coco80.index(n) for n in names] == sorted(coco80.index(n) for n in names)
    for bad in (dict(setting='constrained',
                     split='all'), dict(setting='generalized',
                                        split='novel'), dict(setting='open')):
        with pytest.raises(ValueError):
            CocoOVDDataset(ann_file='x.json', lazy_init=True, **bad)
    with pytest.raises(ValueError, match='do not override'):
        CocoOVDDataset(ann_file='x.json', lazy_init=True, metainfo=dict(classes=('cat', 'dog')))


@pytest.mark.parametrize('setting,split,vocab,img_ids',
                         [('constrained', 'novel', COCO_OVD_NOVEL_CLASSES, [11, 22]),
                          ('constrained', 'base', COCO_OVD_BASE_CLASSES, [11, 22, 44]),
                          ('generalized', None, COCO_OVD_CLASSES, [11, 22, 44])])
def test_coco_ovd_vocabulary_and_images(coco, setting, split, vocab, img_ids):
    dataset = _coco_ovd(coco, setting=setting, split=split)
    meta = dataset.metainfo
    assert tuple(meta['classes']) == vocab
    assert tuple(meta['base_classes']) == COCO_OVD_BASE_CLASSES
    assert tuple(meta['novel_classes']) == COCO_OVD_NOVEL_CLASSES
    assert len(meta['palette']) == len(vocab)
    samples = _samples(dataset)
    assert [s.img_id for s in samples] == img_ids  # split images only
    for sample in samples:
        assert tuple(sample.metainfo['text']) == vocab
        names = {vocab[i] for i in sample.gt_instances.labels.tolist()}
        assert names and names <= set(vocab)
    # Unfiltered: mmdet's CocoDataset behaviour (all 4 images in test mode).
    full = _coco_ovd(coco, setting=setting, split=split, filter_split_images=False)
    assert len(full) == 4


def test_coco_ovd_from_converted_jsons(coco, tmp_path):
    """The dataset reads the standard json, coco2ovd.py's and ours alike."""
    paths = convert(coco['json'], str(tmp_path), splits=('novel', 'base', 'all'))
    assert sorted(osp.basename(p) for p in paths.values()) == [
        'instances_val2017_all_65.json', 'instances_val2017_base_48.json',
        'instances_val2017_novel_17.json'
    ]
    with open(paths['novel']) as f:
        novel = json.load(f)
    assert [c['name'] for c in novel['categories']] == list(COCO_OVD_NOVEL_CLASSES)
    assert [i['id'] for i in novel['images']] == [11, 22]
    assert len(novel['annotations']) == 3
    assert novel == dict(
        filter_coco_split(coco['data'], COCO_OVD_NOVEL_CLASSES), info=novel['info'])
    # mmdet's converter (generalized setting only).
    script = osp.join(
        osp.dirname(mmdet.__file__), '.mim', 'tools', 'dataset_converters', 'coco2ovd.py')
    spec = importlib.util.spec_from_file_location('coco2ovd', script)
    coco2ovd = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(coco2ovd)
    assert tuple(coco2ovd.base_classes) == COCO_OVD_BASE_CLASSES
    assert tuple(coco2ovd.novel_classes) == COCO_OVD_NOVEL_CLASSES
    coco2ovd.coco2ovd(Namespace(data_root=coco['root']))
    all_2 = osp.join(coco['root'], 'annotations', 'instances_val2017_all_2.json')

    def content(dataset):
        return [(d['img_id'], [(i['bbox'], i['bbox_label'], i['ignore_flag'])
                               for i in d['instances']])
                for d in (dataset.get_data_info(k) for k in range(len(dataset)))]

    for setting, split, files in [('constrained', 'novel', [paths['novel'], paths['all'], all_2]),
                                  ('constrained', 'base', [paths['base'], paths['all'], all_2]),
                                  ('generalized', None, [paths['all'], all_2])]:
        ref = content(_coco_ovd(coco, setting=setting, split=split))
        for path in files:
            assert content(_coco_ovd(coco, path, setting=setting, split=split)) == ref
    # A json lacking a vocabulary class, or out of COCO order, is refused
    # (mmdet numbers labels in json order: text and labels would disagree).
    with pytest.raises(ValueError, match='lacks'):
        _coco_ovd(coco, paths['novel'], setting='constrained', split='base')
    novel['categories'].reverse()
    with open(tmp_path / 'reversed.json', 'w') as f:
        json.dump(novel, f)
    with pytest.raises(ValueError, match='reorder'):
        _coco_ovd(coco, str(tmp_path / 'reversed.json'), setting='constrained')
    # The CLI.
    main([coco['json'], '--out-dir', str(tmp_path / 'cli')])
    assert sorted(p.name for p in (tmp_path / 'cli').iterdir()) == [
        'instances_val2017_base_48.json', 'instances_val2017_novel_17.json'
    ]


def test_coco_constrained_novel_metrics(coco, tmp_path):
    dataset = _coco_ovd(coco, setting='constrained', split='novel')
    samples = _samples(dataset)
    cat, dog = _label(dataset, 'cat'), _label(dataset, 'dog')
    airplane, scissors = _label(dataset, 'airplane'), _label(dataset, 'scissors')
    assert scissors == 16  # the last class of the vocabulary is predicted
    ov = dict(type='OVCocoMetric', ann_file=coco['json'], metric='segm')
    cw = dict(type='CocoMetric', ann_file=coco['json'], metric='segm', classwise=True)

    res = _evaluate(cw, dataset, _predict(samples))
    assert res['coco/segm_mAP'] == 1.0
    scored = {k[5:-10] for k in res if k.endswith('_precision')}
    assert scored == set(COCO_OVD_NOVEL_CLASSES)  # exactly the novel classes
    present = {'cat', 'airplane', 'scissors'}
    assert all(res[f'coco/{n}_precision'] == 1.0 for n in present)
    assert all(np.isnan(res[f'coco/{n}_precision']) for n in scored - present)
    res = _evaluate(ov, dataset, _predict(samples))
    assert res['coco/novel_ap'] == pytest.approx(1) == res['coco/novel_ap50']
    assert res['coco/base_ap'] == -1  # no base class is scored
    # The converted json as the metric's ann_file gives the same numbers.
    novel_json = convert(coco['json'], str(tmp_path), splits=('novel', ))['novel']
    res2 = _evaluate(dict(ov, ann_file=novel_json), dataset, _predict(samples))
    assert res2 == res

    # cat predicted as dog (no dog anywhere): cat AP 0, mean of 3 -> 2/3.
    wrong = _predict(samples, relabel=[(11, cat, dog, 1.0)])
    res = _evaluate(cw, dataset, wrong)
    assert res['coco/cat_precision'] == 0 and res['coco/scissors_precision'] == 1
    assert res['coco/segm_mAP'] == 0.667
    assert _evaluate(ov, dataset, wrong)['coco/novel_ap'] == pytest.approx(2 / 3)
    # cat predicted as airplane, above the true airplane (score 0.5): the
    # airplane PR curve starts with a false positive -> precision 1/2 at all
    # recalls, AP 0.5; cat AP 0; mean (0 + 0.5 + 1) / 3.
    wrong = _predict(samples, relabel=[(11, cat, airplane, 1.0), (22, airplane, airplane, 0.5)])
    res = _evaluate(cw, dataset, wrong)
    assert res['coco/airplane_precision'] == 0.5
    assert res['coco/segm_mAP'] == 0.5
    # Ranked below the true airplane, the same error costs airplane nothing.
    wrong = _predict(samples, relabel=[(11, cat, airplane, 0.4)])
    res = _evaluate(cw, dataset, wrong)
    assert res['coco/airplane_precision'] == 1.0
    assert res['coco/segm_mAP'] == 0.667


def test_coco_generalized_and_base_metrics(coco):
    ov = dict(type='OVCocoMetric', ann_file=coco['json'], metric='segm')
    dataset = _coco_ovd(coco)  # generalized
    samples = _samples(dataset)
    toothbrush, zebra = _label(dataset, 'toothbrush'), _label(dataset, 'zebra')
    assert toothbrush == 64
    res = _evaluate(ov, dataset, _predict(samples))
    assert res['coco/segm_mAP'] == 1.0
    assert res['coco/base_ap'] == pytest.approx(1) == res['coco/novel_ap']
    # toothbrush (last class, base) -> zebra: base (person, bicycle,
    # toothbrush) 2/3, novel untouched, 5 of 6 scored classes right.
    res = _evaluate(ov, dataset, _predict(samples, relabel=[(22, toothbrush, zebra, 1.)]))
    assert res['coco/base_ap'] == pytest.approx(2 / 3)
    assert res['coco/novel_ap'] == pytest.approx(1)
    assert res['coco/segm_mAP'] == 0.833

    dataset = _coco_ovd(coco, setting='constrained', split='base')
    samples = _samples(dataset)
    assert _label(dataset, 'toothbrush') == 47
    cw = dict(type='CocoMetric', ann_file=coco['json'], metric='segm', classwise=True)
    res = _evaluate(cw, dataset, _predict(samples))
    assert {k[5:-10] for k in res if k.endswith('_precision')} == set(COCO_OVD_BASE_CLASSES)
    assert res['coco/segm_mAP'] == 1.0 and res['coco/toothbrush_precision'] == 1.0
    res = _evaluate(ov, dataset, _predict(samples))
    assert res['coco/base_ap'] == pytest.approx(1) and res['coco/novel_ap'] == -1


# -------------------------------------------------------------------- LVIS
LVIS_CATS = [  # (id, name, frequency), json order = label order
    (1, 'aerosol_can', 'f'), (2, 'bow_(weapon)', 'r'), (3, 'teddy_bear', 'c'), (4, 'zebra', 'f')
]


@pytest.fixture(scope='module')
def lvis(tmp_path_factory):
    """A 2-image LVIS v1 val json.

    Image 101: bow_(weapon) (polygon), teddy_bear (RLE); zebra is a verified
    negative, aerosol_can not exhaustively annotated.
    Image 102: zebra (polygon), aerosol_can (polygon); bow_(weapon) negative.
    """
    root = str(tmp_path_factory.mktemp('lvis'))
    images = [
        dict(
            id=101,
            height=SIZE,
            width=SIZE,
            neg_category_ids=[4],
            not_exhaustive_category_ids=[1],
            coco_url='http://images.cocodataset.org/val2017/000000000101.jpg'),
        dict(
            id=102,
            height=SIZE,
            width=SIZE,
            neg_category_ids=[2],
            not_exhaustive_category_ids=[],
            coco_url='http://images.cocodataset.org/val2017/000000000102.jpg')
    ]
    anns = [
        _ann(1, 101, 2, (4, 4, 30, 30)),
        _ann(2, 101, 3, (34, 8, 60, 50), rle=True),
        _ann(3, 102, 4, (2, 20, 40, 60)),
        _ann(4, 102, 1, (44, 4, 60, 40))
    ]
    for ann in anns:
        del ann['iscrowd']
    cats = [
        dict(id=i, name=n, frequency=f, synset=f'{n}.n.01', image_count=1, instance_count=1)
        for i, n, f in LVIS_CATS
    ]
    data = dict(info={}, licenses=[], images=images, annotations=anns, categories=cats)
    _write_images(root, ['val2017/000000000101.jpg', 'val2017/000000000102.jpg'])
    path = osp.join(root, 'lvis_v1_val.json')
    with open(path, 'w') as f:
        json.dump(data, f)
    return dict(root=root, json=path)


def _lvis(lvis, type='LVISV1OVDataset', **kwargs):
    kwargs.setdefault('metainfo', dict(classes=tuple(n for _, n, _ in LVIS_CATS)))
    cfg = dict(
        type=type,
        data_root=lvis['root'],
        ann_file=lvis['json'],
        data_prefix=dict(img=''),
        test_mode=True,
        return_classes=True,
        pipeline=_pipeline(),
        **kwargs)
    with DefaultScope.overwrite_default_scope('mmdet'):
        return DATASETS.build(cfg)


def test_lvis_prompts(lvis):
    raw = tuple(n for _, n, _ in LVIS_CATS)
    natural = ('aerosol can', 'bow (weapon)', 'teddy bear', 'zebra')
    assert lvis_natural_name('monitor_(computer_equipment) computer_monitor') \
        == 'monitor (computer equipment) computer monitor'
    assert lvis_natural_name('football_(American)') == 'football (American)'
    assert lvis_natural_name('flip-flop_(sandal)') == 'flip-flop (sandal)'
    for kwargs, text in [
        (dict(type='LVISV1Dataset'), raw),  # mmdet's own
        (dict(prompt_style='raw'), raw),
        ({}, natural)
    ]:
        dataset = _lvis(lvis, **kwargs)
        assert tuple(dataset.metainfo['classes']) == raw  # metric unaffected
        for sample in _samples(dataset):
            assert tuple(sample.metainfo['text']) == text
    dataset = _lvis(lvis)
    assert isinstance(dataset, LVISV1OVDataset)
    assert 'text' not in LVISV1Dataset.get_data_info(dataset, 0)  # not stored
    assert dataset.get_data_info(0)['text'] == natural
    with pytest.raises(ValueError, match='categories'):
        _lvis(lvis, metainfo=dict(classes=raw[:3]))
    with pytest.raises(ValueError):
        _lvis(lvis, prompt_style='fancy')


def test_lvis_metric(lvis):
    dataset = _lvis(lvis)
    samples = _samples(dataset)
    assert [s.img_id for s in samples] == [101, 102]
    # LVISMetric with np.float restored for lvis 0.5.3 on NumPy >= 1.24.
    metric = dict(type='LVISCompatMetric', ann_file=lvis['json'], metric='segm')
    had_float = hasattr(np, 'float')
    bow, teddy, zebra = 1, 2, 3  # zebra: last class

    res = _evaluate(metric, dataset, _predict(samples))
    for key in ('AP', 'AP50', 'AP75', 'APr', 'APc', 'APf'):
        assert res[f'lvis/segm_{key}'] == 1.0
    # zebra predicted as bow_(weapon), a verified negative of image 102, above
    # the true bow (0.5): bow AP 0.5 (false positive first), zebra 0.
    wrong = _predict(samples, relabel=[(102, zebra, bow, 1.0), (101, bow, bow, 0.5)])
    res = _evaluate(metric, dataset, wrong)
    assert res['lvis/segm_AP'] == pytest.approx((1 + 0.5 + 1 + 0) / 4, abs=1e-3)
    assert res['lvis/segm_APr'] == 0.5 and res['lvis/segm_APc'] == 1.0
    assert res['lvis/segm_APf'] == 0.5
    # As teddy_bear, neither annotated nor negative on image 102: the federated
    # protocol ignores the detection, only the zebra miss counts.
    wrong = _predict(samples, relabel=[(102, zebra, teddy, 1.0)])
    res = _evaluate(metric, dataset, wrong)
    assert res['lvis/segm_AP'] == 0.75 and res['lvis/segm_APc'] == 1.0
    # At most 300 detections per image, all classes together: with the
    # aerosol_can (score 1), 299 better-scored junk zebra masks push the true
    # zebra (score 0.5) out as the 301st -> zebra AP 0.
    junk = np.zeros((SIZE, SIZE), np.uint8)
    junk[0, 0] = 1
    extra = [(102, zebra, junk, 0.9)] * 299
    res = _evaluate(metric, dataset,
                    _predict(samples, relabel=[(102, zebra, zebra, 0.5)], extra=extra))
    assert res['lvis/segm_AP'] == 0.75 and res['lvis/segm_APf'] == 0.5
    # With 298 the true zebra is the 300th and stays, ranked after 298 junk
    # zebras: zebra AP = precision 1/299 at every recall.
    res = _evaluate(metric, dataset,
                    _predict(samples, relabel=[(102, zebra, zebra, 0.5)], extra=extra[:298]))
    assert res['lvis/segm_APf'] == pytest.approx((1 + 1 / 299) / 2, abs=1e-3)
    assert hasattr(np, 'float') == had_float  # the alias does not leak
