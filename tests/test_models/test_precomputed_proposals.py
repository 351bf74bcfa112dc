# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Proposals dumped by ``tools/misc/dump_proposals.py`` and read back by
``PrecomputedProposer`` under other pipelines (resize, flip, batching).

Exactness: the ground truth is stored at the original geometry (scale 1).
An integer upscale ``k`` (here 2) keeps the round trip exact: mmdet resizes
masks with cv2's nearest (``dst[x] = src[floor(x / k)]``) and a bilinear
upsample of ±s logits puts weight > 1/2 on that same source pixel, so the
signs agree everywhere; the inverse (the dump undoing a x2 resize) averages
two equal pixels. A non-integer scale (x1.5) may disagree next to a
boundary only: cv2's nearest is not centre-aligned, bilinear is.
"""
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import load_script, make_tiny_clip
from mmdet.registry import DATASETS, MODELS
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from synthetic_coco import write_coco_panoptic
from tiny_maskclip import PREPROCESSOR, panoptic_dataset, tiny_maskclip_cfg

import mmmaskclip  # noqa: F401
import mmmaskclip.models.geometry as geometry
import mmmaskclip.models.proposers.precomputed as precomputed
from mmmaskclip.apis import dump_proposals, split_dataset_cfg
from mmmaskclip.apis.proposals import _keys_to_dump
from mmmaskclip.models.proposers import BaseProposer, GTMaskProposer, MaskProposals
from mmmaskclip.models.proposers.precomputed import PrecomputedProposer
from mmmaskclip.models.utils import PAD_MASK_LOGIT, Vocabulary, gt_segments

SIZE = (53, 70)  # odd height
# GT logits +-SCALE/2 = +-4.03125 lie on a quantiser level of L=8
# (-8 + (192 + 0.5) / 16): they survive the dump exactly.
SCALE = 8.0625


def dataset_cfg(data, transforms=()):
    """Test dataset; ``transforms`` go after loading image and annotations."""
    cfg = panoptic_dataset(data, test=True)
    cfg['pipeline'] = cfg['pipeline'][:2] + list(transforms) + cfg['pipeline'][2:]
    return cfg


def dump_cfg(data, transforms=(), proposer=None):
    return Config(
        dict(
            default_scope='mmdet',
            model=dict(
                data_preprocessor=PREPROCESSOR,
                proposer=proposer or dict(type='GTMaskProposer', scale=SCALE)),
            test_dataloader=dict(batch_size=1, dataset=dataset_cfg(data, transforms))))


def batches(data, transforms=(), batch_size=2):
    """Preprocessed batches: ``(inputs, samples, gt_segments)``."""
    init_default_scope('mmdet')
    dataset = DATASETS.build(dataset_cfg(data, transforms))
    preprocessor = MODELS.build(PREPROCESSOR)
    for start in range(0, len(dataset), batch_size):
        batch = pseudo_collate(
            [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        # training=True pads the ground truth to the batch as in training
        # (at test time mmdet leaves it at img_shape)
        out = preprocessor(batch, True)
        samples = out['data_samples']
        yield out['inputs'], samples, gt_segments(samples, Vocabulary.of_batch(samples))


def resize(factor):
    return dict(type='Resize', scale_factor=factor, keep_ratio=True)


def boundary(masks):
    """Pixels within 1 pixel (3x3) of a label change: ``(K, H, W)`` bool."""
    x = masks[:, None].float()
    return (F.max_pool2d(x, 3, 1, 1) != -F.max_pool2d(-x, 3, 1, 1))[:, 0]


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('precomputed')
    data = write_coco_panoptic(str(tmp / 'coco'), num_images=3, image_size=SIZE)
    out = str(tmp / 'proposals')
    summary = dump_proposals(dump_cfg(data), out, scale=1.0, progress=False)
    assert summary == dict(total=3, written=3, skipped=0)
    return tmp, data, out


def test_quantisation_error_bounded():
    torch.manual_seed(0)
    logits = torch.cat([20 * torch.randn(10000), torch.tensor([0.0, -1e-6, 1e-6, 8, -8, 1e4])])
    for rng in (8.0, 3.0):
        codes = precomputed.quantise_logits(logits, rng)
        assert codes.dtype == torch.uint8
        deq = precomputed.dequantise_logits(codes, rng)
        step = 2 * rng / 256
        assert (deq - logits.clamp(-rng, rng)).abs().max() <= step / 2 + 1e-5
        # no level is 0: the binary mask (logit >= 0) survives
        assert torch.equal(deq >= 0, logits >= 0)
        levels = torch.arange(256, dtype=torch.uint8)
        assert torch.equal(
            precomputed.quantise_logits(precomputed.dequantise_logits(levels, rng), rng), levels)
    assert precomputed.dequantise_logits(
        precomputed.quantise_logits(torch.tensor([SCALE / 2]), 8.0), 8.0).item() == SCALE / 2


def test_dump_format(setup):
    _, data, out = setup
    meta = precomputed.read_meta(out)
    assert meta['format'] == 'mmmaskclip-proposals' and meta['version'] == 1
    assert meta['key'] == 'stem' and meta['scale'] == 1.0 and meta['num_images'] == 3
    assert meta['quantisation']['logit_range'] == 8.0
    assert meta['proposer']['type'] == 'GTMaskProposer'
    for image in data['images']:
        stem = osp.splitext(image['file_name'])[0]
        with np.load(osp.join(out, stem + '.npz')) as f:
            assert f['masks'].dtype == np.uint8
            assert f['masks'].shape == (len(image['segments']), *SIZE)
            assert tuple(f['ori_shape']) == SIZE and 'objectness' not in f.files


def test_ground_truth_dump_with_an_ade_sized_vocabulary(tmp_path):
    """100 things and 50 stuff classes (ADE20K-150's split): every segment of
    the panoptic json is dumped once, things and stuff alike. The vocabulary
    comes from the samples, as the model reads it (a tool default of 80
    things / 53 stuff once turned things 80-99 into stuff and dropped stuff
    133-149)."""
    things = tuple(f'thing {i}' for i in range(100))
    stuff = tuple(f'stuff {i}' for i in range(50))
    data = write_coco_panoptic(
        str(tmp_path / 'ade'), num_images=2, image_size=(100, 64), things=things, stuff=stuff)
    out = str(tmp_path / 'proposals')
    dump_proposals(dump_cfg(data), out, scale=1.0, progress=False)
    for image in data['images']:
        stem = osp.splitext(image['file_name'])[0]
        with np.load(osp.join(out, stem + '.npz')) as f:
            stored = torch.from_numpy(f['masks']) >= 128  # logit >= 0
        segments = image['segments']
        assert len(stored) == len(segments) and any(s['label'] >= 133 for s in segments)
        ids = torch.from_numpy(
            cv2.imread(osp.join(data['seg_dir'],
                                image['seg_file_name']))[..., ::-1].astype(np.int64))
        ids = ids[..., 0] + 256 * ids[..., 1] + 65536 * ids[..., 2]
        truth = torch.stack([ids == segment['id'] for segment in segments])
        same = (stored[:, None] == truth[None]).flatten(2).all(-1)  # stored x json
        assert same.sum(0).tolist() == [1] * len(segments)  # each segment exactly once


@pytest.mark.parametrize('factor', [2.0, 1.5])
def test_round_trip_under_resize(setup, factor):
    _, data, out = setup
    reader = PrecomputedProposer(out)
    for inputs, samples, gt in batches(data, [resize(factor)]):
        props = reader(inputs, samples)
        assert props.mask_logits.shape[-2:] == inputs.shape[-2:] and props.objectness is None
        for b, (sample, seg) in enumerate(zip(samples, gt)):
            k = len(seg.masks)
            assert sample.img_shape == tuple(round(s * factor) for s in SIZE)
            assert props.valid[b, :k].all() and not props.valid[b, k:].any()
            pred = props.mask_logits[b, :k] >= 0
            if factor == 2.0:
                assert torch.equal(pred, seg.masks)
            else:
                wrong = pred != seg.masks
                assert not (wrong & ~boundary(seg.masks)).any()
                assert wrong.float().mean() < 0.02
            h, w = sample.img_shape
            assert (props.mask_logits[b, :, h:] == PAD_MASK_LOGIT).all()
            assert (props.mask_logits[b, :, :, w:] == PAD_MASK_LOGIT).all()
            assert (props.mask_logits[b, k:] == PAD_MASK_LOGIT).all()


@pytest.mark.parametrize('direction', ['horizontal', 'vertical', 'diagonal'])
def test_flip(setup, direction):
    _, data, out = setup
    flip = dict(type='RandomFlip', prob=1.0, direction=direction)
    reader = PrecomputedProposer(out)
    for inputs, samples, gt in batches(data, [resize(2.0), flip]):
        props = reader(inputs, samples)
        for b, (sample, seg) in enumerate(zip(samples, gt)):
            assert sample.flip and sample.flip_direction == direction
            h, w = sample.img_shape
            pred = props.mask_logits[b, :len(seg.masks), :h, :w] >= 0
            assert torch.equal(pred, seg.masks[:, :h, :w])
            # not trivially symmetric: the unflipped proposals would differ
            assert not torch.equal(geometry.flip_logits(pred, direction), pred)


def test_dump_undoes_resize_and_downsamples(setup):
    tmp, data, out = setup
    resized = str(tmp / 'from_resized')
    dump_proposals(
        dump_cfg(data, [resize(2.0), dict(type='RandomFlip', prob=1.0)]),
        resized,
        scale=1.0,
        progress=False)
    for name in sorted(os.listdir(out)):
        if name.endswith('.npz'):
            with np.load(osp.join(out, name)) as a, np.load(osp.join(resized, name)) as b:
                assert np.array_equal(a['masks'], b['masks']), name
    # a quarter-resolution dump: small files, masks right up to the borders
    quarter = str(tmp / 'quarter')
    dump_proposals(dump_cfg(data), quarter, scale=0.25, progress=False)
    reader = PrecomputedProposer(quarter)
    for inputs, samples, gt in batches(data, [resize(1.5)]):
        props = reader(inputs, samples)
        for b, seg in enumerate(gt):
            pred = props.mask_logits[b, :len(seg.masks)] >= 0
            inter = (pred & seg.masks).flatten(1).sum(1)
            union = (pred | seg.masks).flatten(1).sum(1)
            assert (inter / union).mean() > 0.75
    with np.load(osp.join(quarter, '000000000001.npz')) as f:
        assert f['masks'].shape[1:] == (13, 18)


class CountingProposer(GTMaskProposer):

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.images = 0

    def propose(self, images, batch_data_samples, vocabulary=None, batch_gt_segments=None):
        self.images += len(batch_data_samples)
        return super().propose(images, batch_data_samples, vocabulary, batch_gt_segments)


def test_resume_and_missing_file(setup):
    tmp, data, _ = setup
    out = str(tmp / 'resume')
    proposer = CountingProposer(scale=SCALE)
    dump_proposals(dump_cfg(data), out, proposer=proposer, scale=0.5, progress=False)
    assert proposer.images == 3
    files = sorted(f for f in os.listdir(out) if f.endswith('.npz'))
    assert len(files) == 3 and not [f for f in os.listdir(out) if '.tmp' in f]
    mtimes = {f: os.stat(osp.join(out, f)).st_mtime_ns for f in files}
    os.remove(osp.join(out, files[1]))

    # the reader names the missing image, the directory and the command
    reader = PrecomputedProposer(out)
    with pytest.raises(FileNotFoundError) as err:
        for inputs, samples, _ in batches(data):
            reader(inputs, samples)
    message = str(err.value)
    stem = files[1][:-4]
    assert f'{stem}.jpg' in message and out in message
    assert 'tools/misc/dump_proposals.py' in message

    summary = dump_proposals(
        dump_cfg(data), out, proposer=proposer, scale=0.5, resume=True, progress=False)
    assert summary == dict(total=3, written=1, skipped=2) and proposer.images == 4
    for f in (files[0], files[2]):
        assert os.stat(osp.join(out, f)).st_mtime_ns == mtimes[f]
    assert osp.isfile(osp.join(out, files[1]))
    with pytest.raises(ValueError, match='other settings'):
        dump_proposals(
            dump_cfg(data), out, proposer=proposer, scale=1.0, resume=True, progress=False)


class SmoothProposer(BaseProposer):
    """Smooth random logits at 1/4 of the padded batch with objectness, the
    last slot invalid on odd images; a function of the image id and size."""

    def propose(self, images, batch_data_samples, vocabulary=None, batch_gt_segments=None):
        size = (images.shape[-2] // 4, images.shape[-1] // 4)
        logits, scores = [], []
        for sample in batch_data_samples:
            gen = torch.Generator().manual_seed(sample.img_id)
            noise = torch.randn(1, 5, 4, 4, generator=gen)
            logits.append(6 * F.interpolate(noise, size=size, mode='bilinear')[0])
            scores.append(torch.rand(5, generator=gen))
        valid = torch.ones(len(logits), 5, dtype=torch.bool)
        for b, sample in enumerate(batch_data_samples):
            valid[b, -1] = sample.img_id % 2 == 0
        return MaskProposals(torch.stack(logits), valid, torch.stack(scores))


def test_objectness_max_proposals_and_low_resolution_logits(setup):
    tmp, data, _ = setup
    out = str(tmp / 'smooth')
    proposer = SmoothProposer()
    dump_proposals(
        dump_cfg(data), out, proposer=proposer, scale=1.0, max_proposals=3, progress=False)
    step = 2 * 8.0 / 256
    for inputs, samples, _ in batches(data):
        ref = proposer(inputs, samples)
        props = PrecomputedProposer(out)(inputs, samples)
        assert props.valid.all() and props.mask_logits.shape[1] == 3
        full = F.interpolate(ref.mask_logits, size=inputs.shape[-2:], mode='bilinear')
        for b, sample in enumerate(samples):
            score = ref.objectness[b].masked_fill(~ref.valid[b], -1)
            keep = score.topk(3).indices.sort().values
            assert torch.equal(props.objectness[b], ref.objectness[b, keep])
            h, w = sample.img_shape
            err = props.mask_logits[b, :, :h, :w] - full[b, keep, :h, :w].clamp(-8, 8)
            assert err.abs().max() <= step / 2 + 1e-5
    # the reader can keep fewer, by objectness
    props = PrecomputedProposer(out, max_proposals=2)(inputs, samples)
    assert props.mask_logits.shape[1] == 2
    assert torch.equal(
        props.objectness[-1],
        ref.objectness[-1, keep][ref.objectness[-1, keep].topk(2).indices.sort().values])


def test_train_split_uses_test_pipeline_and_keys_are_unique():
    train = dict(
        type='CocoPanopticDataset',
        ann_file='train.json',
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='RandomFlip', prob=0.5)])
    test_pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(8, 8))]
    cfg = Config(
        dict(
            train_dataloader=dict(dataset=dict(type='RepeatDataset', times=2, dataset=train)),
            test_dataloader=dict(
                dataset=dict(
                    type='CocoPanopticDataset', ann_file='val.json', pipeline=test_pipeline))))
    ds = split_dataset_cfg(cfg, 'train')
    assert ds.type == 'RepeatDataset' and ds.dataset.ann_file == 'train.json'
    assert ds.dataset.pipeline == test_pipeline
    assert cfg.train_dataloader.dataset.dataset.pipeline[1].type == 'RandomFlip'

    class Paths:

        def __init__(self, paths):
            self.paths = paths

        def __len__(self):
            return len(self.paths)

        def get_data_info(self, i):
            return dict(img_path=self.paths[i], img_id=i)

    # a repeated image is one file; two images with one stem are an error
    assert _keys_to_dump(Paths(['a/1.jpg', 'a/2.jpg', 'a/1.jpg']), 'stem') == {'1': 0, '2': 1}
    with pytest.raises(ValueError, match="share the key '1'"):
        _keys_to_dump(Paths(['a/1.jpg', 'b/1.png']), 'stem')
    assert _keys_to_dump(Paths(['a/1.jpg', 'b/1.png']), 'img_id') == {'0': 0, '1': 1}


@pytest.mark.parametrize('rma', [False, True])
def test_maskclip_same_class_probabilities(tmp_path, rma):
    """Dump with the CLI, then MaskCLIP gives the same class probabilities
    (and panoptic output) with the stored proposals as with the on-the-fly
    proposer. Without RMA only the binary masks matter, so images resized
    x2 and padded are exact; with RMA the logits themselves enter the
    encoder, so images need no resize or padding (64x64, divisor 32)."""
    size, transforms = ((64, 64), []) if rma else (SIZE, [resize(2.0)])
    data = write_coco_panoptic(str(tmp_path / 'coco'), num_images=3, image_size=size)
    clip_path = str(tmp_path / 'clip.pt')
    torch.save(make_tiny_clip().state_dict(), clip_path)
    cfg = tiny_maskclip_cfg(
        str(tmp_path / 'work'),
        data,
        clip_path,
        1,
        rma_blocks=(1, 2) if rma else (),
        proposer=dict(type='GTMaskProposer', scale=SCALE),
        evaluate=True)
    cfg.test_dataloader.dataset = dataset_cfg(data, transforms)
    cfg_file = str(tmp_path / 'cfg.py')
    cfg.dump(cfg_file)
    out = str(tmp_path / 'proposals')
    assert load_script('tools/misc/dump_proposals.py').main(
        [cfg_file, '--out-dir', out, '--scale', '1', '--num-workers', '0', '--device', 'cpu']) == 0

    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model).eval()
    on_the_fly = model.proposer
    stored = PrecomputedProposer(out)
    for inputs, samples, gt in batches(data, transforms):
        vocabulary = model.vocabulary(samples)
        outputs = []
        for proposer in (on_the_fly, stored):
            model.proposer = proposer
            with torch.no_grad():
                proposals, regions, logits = model.encode(inputs, samples, vocabulary, gt)
                pred = model.predict(inputs, [s.clone() for s in samples])
            outputs.append((proposals.valid, logits.softmax(-1), pred))
        (valid_a, probs_a, pred_a), (valid_b, probs_b, pred_b) = outputs
        assert torch.equal(valid_a, valid_b)
        assert torch.allclose(probs_a[valid_a], probs_b[valid_b], atol=1e-6, rtol=0)
        for a, b in zip(pred_a, pred_b):
            assert torch.equal(a.pred_panoptic_seg.sem_seg, b.pred_panoptic_seg.sem_seg)


def test_crops_are_refused():
    logits = torch.zeros(2, 10, 20)
    meta = dict(
        img_path='a/x.jpg',
        ori_shape=(10, 20),
        img_shape=(20, 40),
        scale_factor=(2.0, 2.0),
        flip=False)
    assert geometry.to_batch_geometry(logits, meta, (32, 64)).shape == (2, 32, 64)
    with pytest.raises(ValueError, match='not crops'):
        geometry.to_batch_geometry(logits, dict(meta, img_shape=(16, 40)), (32, 64))
