# Copyright (c) mmmaskclip contributors. All rights reserved.
"""A-847, PC-59 and PC-459 datasets and their converters, on tiny synthetic
data written in the real formats (ADE ``*_seg.png`` + ``index_ade20k.pkl``,
PASCAL Context ``.mat`` ``LabelMap``), through mmdet's loading, packing,
data preprocessor and ``SemSegMetric``."""
import os.path as osp
import pickle
import sys

import cv2
import mmengine
import numpy as np
import pytest
import torch
from mmdet.evaluation import SemSegMetric
from mmdet.models.data_preprocessors import DetDataPreprocessor
from mmdet.registry import DATASETS
from mmdet.structures import DetDataSample
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from PIL import Image

import mmmaskclip.datasets.semseg  # noqa: F401  (registers the datasets)
from mmmaskclip.datasets.semseg_classes import (ADE20K_847_CATEGORIES, ADE20K_847_CLASSES,
                                                ADE20K_847_IDS, PASCAL_CONTEXT_59_CLASSES,
                                                PASCAL_CONTEXT_59_IDS, PASCAL_CONTEXT_459_CLASSES)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tools', 'dataset_converters'))
import ade20k_847  # noqa: E402
import pascal_context  # noqa: E402

H, W = 40, 50  # padded to 64 x 64 by pad_size_divisor=32
META_KEYS = ('img_path', 'ori_shape', 'img_shape', 'scale_factor', 'text')
# mmseg's PC-59 mapping (0 = background, then the 59 classes' 459-ids)
MMSEG_CONTEXT59_MAPPING = np.sort(
    np.array([
        0, 2, 259, 260, 415, 324, 9, 258, 144, 18, 19, 22, 23, 397, 25, 284, 158, 159, 416, 33, 162,
        420, 454, 295, 296, 427, 44, 45, 46, 308, 59, 440, 445, 31, 232, 65, 354, 424, 68, 326, 72,
        458, 34, 207, 80, 355, 85, 347, 220, 349, 360, 98, 187, 104, 105, 366, 189, 368, 113, 115
    ]))


def bands(values, rows, dtype):
    """H x W map of horizontal bands: ``values[i]`` on ``rows[i]`` rows."""
    assert sum(rows) == H
    return np.repeat(np.asarray(values, dtype=dtype), rows)[:, None].repeat(W, axis=1)


def write_jpg(path, shape=(H, W), seed=0):
    rng = np.random.default_rng(seed)
    assert cv2.imwrite(path, rng.integers(0, 255, (*shape, 3), np.uint8))


# --------------------------------------------------------------- ADE-847 --
ADE_ROWS = (10, 15, 7, 4, 4)  # 500, 750, 350, 200, 200 pixels


def ade_unknown_id():
    """An ADE object index outside the 847 classes."""
    return next(i for i in range(1, 100) if i not in set(ADE20K_847_IDS))


def write_ade_release(root):
    """A tiny ``ADE20K_2021_17_01`` with one val and one train image."""
    rel = osp.join(root, 'ADE20K_2021_17_01')
    wall, altar, adding = 2978, 3108, 3148  # labels 0, 300, 846
    items = [('images/ADE/validation/home/kitchen', 'ADE_val_00000001.jpg',
              [wall, altar, adding, 0, ade_unknown_id()]),
             ('images/ADE/training/urban/street', 'ADE_train_00000007.jpg',
              [altar, wall, wall, adding, 0])]
    index = dict(folder=[], filename=[], objectnames=[])
    for i, (folder, name, ids) in enumerate(items):
        d = osp.join(rel, folder)
        mmengine.mkdir_or_exist(d)
        write_jpg(osp.join(d, name), seed=i)
        obj = bands(ids, ADE_ROWS, np.int64)
        rgb = np.stack(
            [
                obj // 256 * 10 + 7,  # R // 10 drops the 7
                obj % 256,
                np.full_like(obj, 3)
            ],
            -1).astype(np.uint8)
        Image.fromarray(rgb).save(osp.join(d, name.replace('.jpg', '_seg.png')))
        index['folder'].append(f'ADE20K_2021_17_01/{folder}')
        index['filename'].append(name)
    with open(osp.join(rel, 'index_ade20k.pkl'), 'wb') as f:
        pickle.dump(index, f)
    return rel


@pytest.fixture(scope='module')
def ade847(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('ade'))
    rel = write_ade_release(root)
    out = osp.join(root, 'ade20k_full')
    counts = ade20k_847.convert(rel, out, max_size=0)
    assert counts == dict(training=1, validation=1)
    return dict(release=rel, root=out, gt=bands([0, 300, 846, 65535, 65535], ADE_ROWS, np.uint16))


# ---------------------------------------------------------- PASCAL Context --
PC_ROWS = (8, 12, 7, 7, 6)  # 400, 600, 350, 350, 300 pixels


def pc_id(name):
    """1-based ``LabelMap`` value of a PASCAL Context class."""
    return PASCAL_CONTEXT_459_CLASSES.index(name) + 1


# unlabeled, aeroplane, sky (459-label > 255), wool (not in the 59), person
PC_LABELMAP = bands(
    [0, pc_id('aeroplane'), pc_id('sky'),
     pc_id('wool'), pc_id('person')], PC_ROWS, np.uint16)


@pytest.fixture(scope='module')
def pascal(tmp_path_factory):
    from scipy.io import savemat
    root = str(tmp_path_factory.mktemp('pc'))
    voc = osp.join(root, 'VOCdevkit', 'VOC2010')
    for d in (osp.join(voc, 'JPEGImages'), osp.join(voc, 'ImageSets',
                                                    'Main'), osp.join(root, 'trainval')):
        mmengine.mkdir_or_exist(d)
    ids = dict(train=['2008_000003', '2008_000009'], val=['2008_000002'])
    for split, stems in ids.items():
        with open(osp.join(voc, 'ImageSets', 'Main', f'{split}.txt'), 'w') as f:
            f.writelines(f'{s}\n' for s in stems)
    # 2008_000009 has no .mat: not in the Context split
    for i, stem in enumerate(['2008_000002', '2008_000003']):
        write_jpg(osp.join(voc, 'JPEGImages', f'{stem}.jpg'), seed=i)
        savemat(osp.join(root, 'trainval', f'{stem}.mat'), dict(LabelMap=PC_LABELMAP))
    with open(osp.join(root, 'labels.txt'), 'w') as f:
        f.writelines(f'{i + 1}: {n}\n' for i, n in enumerate(PASCAL_CONTEXT_459_CLASSES))
    splits = pascal_context.convert_from_mats(
        osp.join(root, 'VOCdevkit'), osp.join(root, 'trainval'))
    assert splits == dict(train=['2008_000003'], val=['2008_000002'])
    sky = PASCAL_CONTEXT_459_CLASSES.index('sky')
    person = PASCAL_CONTEXT_459_CLASSES.index('person')
    assert sky > 255
    return dict(
        root=root,
        voc=voc,
        # as stored: 0 background, 1..59
        raw59=bands([
            0, 1,
            PASCAL_CONTEXT_59_CLASSES.index('sky') + 1, 0,
            PASCAL_CONTEXT_59_CLASSES.index('person') + 1
        ], PC_ROWS, np.uint8),
        # after reduce_zero_label
        gt59=bands([
            255, 0,
            PASCAL_CONTEXT_59_CLASSES.index('sky'), 255,
            PASCAL_CONTEXT_59_CLASSES.index('person')
        ], PC_ROWS, np.uint8),
        gt459=bands([65535, 1, sky, 458, person], PC_ROWS, np.uint16))


# ------------------------------------------------------------- helpers --
def build(type, data_root, reduce_zero_label, ignore_index, **kwargs):
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(
            type='LoadAnnotations',
            with_bbox=False,
            with_label=False,
            with_seg=True,
            reduce_zero_label=reduce_zero_label,
            ignore_index=ignore_index),
        dict(type='PackDetInputs', meta_keys=META_KEYS),
    ]
    with DefaultScope.overwrite_default_scope('mmdet'):
        return DATASETS.build(
            dict(
                type=type,
                data_root=data_root,
                pipeline=pipeline,
                test_mode=True,
                return_classes=True,
                **kwargs))


def preprocess(sample, seg_pad_value):
    """mmdet's ``DetDataPreprocessor`` in training mode (pads the seg)."""
    preprocessor = DetDataPreprocessor(
        pad_size_divisor=32, pad_seg=True, seg_pad_value=seg_pad_value)
    return preprocessor(pseudo_collate([sample]), training=True)


def evaluate(dataset, gt, pred, ignore_index):
    """``SemSegMetric`` of one prediction; ``ignore_index`` as the model
    must set it on ``pred_sem_seg`` (None: leave mmdet's default 255)."""
    metric = SemSegMetric()
    metric.dataset_meta = dataset.metainfo
    sample = DetDataSample()
    sample.gt_sem_seg = PixelData(sem_seg=gt)
    meta = {} if ignore_index is None else dict(ignore_index=ignore_index)
    sample.pred_sem_seg = PixelData(sem_seg=pred, metainfo=meta)
    metric.process({}, [sample.to_dict()])
    return metric.evaluate(1)


def check_sample(dataset, expected, ignore_index, classes):
    """Loading, packing and padding keep labels, dtype and vocabulary."""
    assert dataset.metainfo['ignore_index'] == ignore_index
    assert dataset.ignore_index == ignore_index
    assert tuple(dataset.metainfo['classes']) == classes
    assert len(dataset) == 1
    sample = dataset[0]
    data_sample = sample['data_samples']
    assert data_sample.text == list(classes)
    gt = data_sample.gt_sem_seg
    assert gt.ignore_index == ignore_index
    assert gt.sem_seg.dtype == torch.from_numpy(expected).dtype
    assert torch.equal(gt.sem_seg[0], torch.from_numpy(expected))

    batch = preprocess(sample, seg_pad_value=ignore_index)
    padded = batch['data_samples'][0].gt_sem_seg.sem_seg
    assert batch['inputs'].shape[-2:] == (64, 64)
    assert padded.shape == (1, 64, 64)
    assert padded.dtype == gt.sem_seg.dtype
    assert torch.equal(padded[0, :H, :W], torch.from_numpy(expected))
    assert (padded[0, H:] == ignore_index).all()
    assert (padded[0, :, W:] == ignore_index).all()
    return torch.from_numpy(expected)[None]


def perfect_prediction(gt, ignore_index):
    """pred = gt, with the ignored pixels set to class 0."""
    pred = gt.long().clone()
    pred[gt.long() == ignore_index] = 0
    return pred


# --------------------------------------------------------------- tests --
def test_class_lists():
    assert len(ADE20K_847_CLASSES) == len(set(ADE20K_847_IDS)) == 847
    assert ADE20K_847_CATEGORIES[0] == (2978, 'wall')
    assert ADE20K_847_CATEGORIES[846] == (3148, 'adding machine, totalizer, totaliser')
    assert len(PASCAL_CONTEXT_459_CLASSES) == 459
    assert len(set(PASCAL_CONTEXT_459_CLASSES)) == 459
    assert len(PASCAL_CONTEXT_59_CLASSES) == 59
    # the 59 are mmseg's names, at mmseg's 459-ids
    assert list(PASCAL_CONTEXT_59_IDS) == list(MMSEG_CONTEXT59_MAPPING[1:])
    mmseg_datasets = pytest.importorskip('mmseg.datasets')
    assert PASCAL_CONTEXT_59_CLASSES == tuple(
        mmseg_datasets.PascalContextDataset59.METAINFO['classes'])


def test_ade847_converter(ade847, tmp_path):
    # decoding of the RGB seg PNG and the id -> label table
    rgb = np.zeros((1, 3, 3), np.uint8)
    rgb[0, 0] = (11 * 10 + 7, 162, 5)  # 2978 = 11 * 256 + 162 (wall)
    rgb[0, 1] = (0, 0, 9)  # unlabeled
    rgb[0, 2] = (12 * 10, 76, 0)  # 3148 = 12 * 256 + 76
    ids = ade20k_847.decode_class_mask(rgb)
    assert ids.tolist() == [[2978, 0, 3148]]
    assert ade20k_847.class_mask_to_847(ids).tolist() == [[0, 65535, 846]]
    assert ade20k_847.class_mask_to_847(np.array([ade_unknown_id()]))[0] == 65535
    # resize rule: only a short side above max_size shrinks
    assert ade20k_847.target_size(400, 600, 512) is None
    assert ade20k_847.target_size(1024, 768, 512) == (683, 512)
    assert ade20k_847.target_size(600, 900, 0) is None
    assert ade20k_847.split_of('ADE_val_00000001.jpg') == 'validation'
    assert ade20k_847.split_of('ADE_frame_00000001.jpg') == 'training'

    # the converted maps: uint16, values above 255 and 65535 kept
    root = ade847['root']
    val = cv2.imread(
        osp.join(root, 'annotations', 'validation', 'ADE_val_00000001.png'), cv2.IMREAD_UNCHANGED)
    assert val.dtype == np.uint16
    np.testing.assert_array_equal(val, ade847['gt'])
    train = cv2.imread(
        osp.join(root, 'annotations', 'training', 'ADE_train_00000007.png'), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(train, bands([300, 0, 0, 846, 65535], ADE_ROWS, np.uint16))
    assert osp.isfile(osp.join(root, 'images', 'training', 'ADE_train_00000007.jpg'))
    # with a resize: short side 20, nearest labels
    out = str(tmp_path)
    for d in ('images', 'annotations'):
        mmengine.mkdir_or_exist(osp.join(out, d, 'validation'))
    ade20k_847.convert_image(
        ('ADE20K_2021_17_01/images/ADE/validation/home/kitchen', 'ADE_val_00000001.jpg'),
        ade847['release'],
        out,
        max_size=20)
    small = cv2.imread(
        osp.join(out, 'annotations', 'validation', 'ADE_val_00000001.png'), cv2.IMREAD_UNCHANGED)
    img = cv2.imread(osp.join(out, 'images', 'validation', 'ADE_val_00000001.jpg'))
    assert small.shape == img.shape[:2] == (20, 25)
    assert small.dtype == np.uint16
    assert set(np.unique(small)) == {0, 300, 846, 65535}


def test_ade847_dataset(ade847):
    dataset = build(
        'ADE20K847SegDataset', ade847['root'], reduce_zero_label=False, ignore_index=65535)
    gt = check_sample(dataset, ade847['gt'], 65535, ADE20K_847_CLASSES)
    # torch.uint16 has no max(): models must cast (.long()) before use
    assert gt.long().max() == 65535 and 300 in gt and 846 in gt

    perfect = perfect_prediction(gt, 65535)
    results = evaluate(dataset, gt, perfect, ignore_index=65535)
    assert results['mIoU'] == 100.0 and results['aAcc'] == 100.0
    # wall 500 px, label 300 750 px, label 846 350 px, 400 px ignored;
    # the 300 band predicted as 846: IoU = 1, 0, 350 / (350 + 750)
    wrong = perfect.clone()
    wrong[gt == 300] = 846
    results = evaluate(dataset, gt, wrong, ignore_index=65535)
    assert results['mIoU'] == pytest.approx(43.94, abs=0.005)
    assert results['mAcc'] == pytest.approx(200 / 3, abs=0.005)
    # NB mmdet 3.3.0's 'aAcc' is the mean of the per-class accuracies (it
    # averages intersect / label per class), not pixel accuracy 850 / 1600
    assert results['aAcc'] == results['mAcc']
    # without pred_sem_seg.ignore_index the metric ignores 255, not 65535:
    # the 400 ignored pixels (predicted 0) hurt the wall, IoU 500 / 900
    results = evaluate(dataset, gt, perfect, ignore_index=None)
    assert results['mIoU'] == pytest.approx((500 / 900 + 2) / 3 * 100, abs=0.005)


def test_pascal_context_converter(pascal):
    lm = np.array([[0, 2, 459], [pc_id('sky'), 1, pc_id('person')]])
    np.testing.assert_array_equal(
        pascal_context.to_context459(lm),
        [[65535, 1, 458], [pc_id('sky') - 1, 0, pc_id('person') - 1]])
    assert pascal_context.to_context459(lm).dtype == np.uint16
    c59 = pascal_context.to_context59(lm)
    assert c59.dtype == np.uint8
    np.testing.assert_array_equal(c59, [[0, 1, 0], [47, 0, 37]])
    # same as mmseg's digitize mapping on maps of 59-class ids
    rng = np.random.default_rng(0)
    mask = rng.choice(MMSEG_CONTEXT59_MAPPING, size=(16, 16))
    mmseg = np.digitize(mask.ravel(), MMSEG_CONTEXT59_MAPPING, right=True).reshape(mask.shape)
    np.testing.assert_array_equal(pascal_context.to_context59(mask), mmseg)
    with pytest.raises(ValueError):
        pascal_context.to_context59(np.array([460]))
    # labels.txt check
    bad = osp.join(pascal['root'], 'labels_bad.txt')
    with open(bad, 'w') as f:
        f.write('1: accordion\n2: airplane\n')
    with pytest.raises(ValueError):
        pascal_context.check_labels_txt(bad)
    pascal_context.check_labels_txt(osp.join(pascal['root'], 'labels.txt'))

    # the written maps and split files
    voc = pascal['voc']
    m59 = cv2.imread(
        osp.join(voc, 'SegmentationClassContext', '2008_000002.png'), cv2.IMREAD_UNCHANGED)
    assert m59.dtype == np.uint8
    np.testing.assert_array_equal(m59, pascal['raw59'])
    m459 = cv2.imread(
        osp.join(voc, 'SegmentationClassContext459', '2008_000002.png'), cv2.IMREAD_UNCHANGED)
    assert m459.dtype == np.uint16
    np.testing.assert_array_equal(m459, pascal['gt459'])
    with open(osp.join(voc, 'ImageSets', 'SegmentationContext', 'val.txt')) as f:
        assert f.read().split() == ['2008_000002']


def test_pascal_context59_dataset(pascal):
    dataset = build(
        'PascalContext59SegDataset', pascal['voc'], reduce_zero_label=True, ignore_index=255)
    gt = check_sample(dataset, pascal['gt59'], 255, PASCAL_CONTEXT_59_CLASSES)

    perfect = perfect_prediction(gt, 255)
    # ignore 255 is mmdet's default: no metainfo needed
    results = evaluate(dataset, gt, perfect, ignore_index=None)
    assert results['mIoU'] == 100.0
    # aeroplane 600 px, sky 350 px, person 300 px (background and wool
    # ignored); the sky band predicted as aeroplane: IoU = 600 / 950, 0, 1
    sky = PASCAL_CONTEXT_59_CLASSES.index('sky')
    wrong = perfect.clone()
    wrong[gt == sky] = 0
    results = evaluate(dataset, gt, wrong, ignore_index=255)
    assert results['mIoU'] == pytest.approx(54.39, abs=0.005)


def test_pascal_context459_dataset(pascal):
    dataset = build(
        'PascalContext459SegDataset', pascal['voc'], reduce_zero_label=False, ignore_index=65535)
    gt = check_sample(dataset, pascal['gt459'], 65535, PASCAL_CONTEXT_459_CLASSES)
    assert gt[gt != 65535].long().max() > 255

    perfect = perfect_prediction(gt, 65535)
    results = evaluate(dataset, gt, perfect, ignore_index=65535)
    assert results['mIoU'] == 100.0
    # aeroplane 600, sky 350, wool 350, person 300 px, 400 px unlabeled;
    # the sky band predicted as wool: IoU = 1, 0, 350 / 700, 1
    sky = PASCAL_CONTEXT_459_CLASSES.index('sky')
    wrong = perfect.clone()
    wrong[gt == sky] = 458
    results = evaluate(dataset, gt, wrong, ignore_index=65535)
    assert results['mIoU'] == pytest.approx(62.5, abs=0.005)


def test_return_classes_off_and_split_defaults(pascal):
    with DefaultScope.overwrite_default_scope('mmdet'):
        dataset = DATASETS.build(
            dict(
                type='PascalContext459SegDataset',
                data_root=pascal['voc'],
                ann_file='ImageSets/SegmentationContext/train.txt',
                lazy_init=False))
    assert len(dataset) == 1
    info = dataset.get_data_info(0)
    assert 'text' not in info
    assert info['img_path'].endswith(osp.join('JPEGImages', '2008_000003.jpg'))
    assert info['seg_map_path'].endswith(osp.join('SegmentationClassContext459', '2008_000003.png'))
