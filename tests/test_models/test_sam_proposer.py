# Copyright (c) mmmaskclip contributors. All rights reserved.
"""SAMProposer with a tiny, randomly initialised SAM built from
segment_anything's own modules (no download).

The reference is ``SamAutomaticMaskGenerator`` called directly on the
original image. The pipeline upsamples x2 with nearest interpolation and
flips: the proposer recovers the original image exactly from the batch
(bilinear /2 averages equal pixels), and SAM's +-4 masks survive the round
trip original -> batch (bilinear x2 keeps a pixel's sign: weight 9/16 on
itself) -> original (/2 averages four such values) exactly.
"""
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from conftest import make_tiny_clip
from mmdet.registry import MODELS, TRANSFORMS
from mmengine.dataset import Compose, pseudo_collate
from mmengine.registry import init_default_scope

import mmmaskclip  # noqa: F401
from mmmaskclip.engine import TrainableParamsOptimWrapperConstructor
from mmmaskclip.models.geometry import to_original_geometry
from mmmaskclip.models.proposers import (ProposerWeightsNotFoundError, SAMProposer,
                                         SAMWeightsNotFoundError)
from mmmaskclip.models.proposers.sam_proposer import SAM_CHECKPOINT_URLS, build_sam_model

segment_anything = pytest.importorskip('segment_anything')

#: A 64-pixel SAM: 4x4 image embedding, 32 channels, two encoder blocks.
TINY_SAM = dict(
    encoder_embed_dim=32,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1, ),
    image_size=64,
    window_size=2,
    prompt_embed_dim=32,
    mask_in_chans=4,
    decoder_mlp_dim=64,
    decoder_num_heads=2,
    iou_head_hidden_dim=32)
#: Keep every mask (random weights): no quality filter, no NMS.
KEEP_ALL = dict(
    points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
SIZES = ((40, 56), (48, 36))  # original images (H, W); SAM's long side is 64
PREPROCESSOR = dict(
    type='DetDataPreprocessor', mean=None, std=None, bgr_to_rgb=True, pad_size_divisor=32)


def distinct_scores(proposer):
    """Random weights predict IoUs near 0: move them to distinct values in (0, 1)."""
    with torch.no_grad():
        proposer.sam.mask_decoder.iou_prediction_head.layers[-1].bias.fill_(0.5)
    return proposer


def tiny_proposer(seed=0, **kwargs):
    """A proposer with a tiny SAM (distinct predicted IoUs in (0, 1))."""
    torch.manual_seed(seed)
    return distinct_scores(SAMProposer(model_cfg=TINY_SAM, **dict(KEEP_ALL, **kwargs)))


def reference(proposer, rgb, score='predicted_iou'):
    """SAM's own generator on the original image, best first: bool masks
    ``(M, H, W)`` and scores ``(M,)``."""
    generator = segment_anything.SamAutomaticMaskGenerator(proposer.sam, **KEEP_ALL)
    records = sorted(generator.generate(rgb), key=lambda r: -r[score])
    masks = np.stack([r['segmentation'] for r in records])
    return torch.from_numpy(masks), torch.tensor([r[score] for r in records])


def images(seed=0, noise=40):
    """Synthetic RGB uint8 originals: coloured rectangles on noise (0 to
    ``noise - 1``)."""
    rng = np.random.default_rng(seed)
    out = []
    for height, width in SIZES:
        img = rng.integers(0, noise, (height, width, 3)).astype(np.uint8)
        for _ in range(5):
            y, x = rng.integers(0, height - 8), rng.integers(0, width - 8)
            h, w = rng.integers(6, 20, 2)
            img[y:y + h, x:x + w] = rng.integers(60, 256, 3)
        out.append(img)
    return out


def pipeline_data(rgbs, resize=None):
    """``rgbs`` through an mmdet test pipeline (resize, horizontal flip, pack),
    collated."""
    init_default_scope('mmdet')
    resize = resize or dict(
        type='Resize', scale_factor=2.0, keep_ratio=True, interpolation='nearest')
    pipeline = Compose([
        TRANSFORMS.build(t) for t in (
            dict(type='LoadImageFromNDArray'),
            resize,
            dict(type='RandomFlip', prob=1.0, direction='horizontal'),
            dict(type='PackDetInputs'),
        )
    ])
    return pseudo_collate([pipeline(dict(img=rgb[..., ::-1].copy())) for rgb in rgbs])


def batch(rgbs, resize=None):
    """:func:`pipeline_data` through the data preprocessor (RGB, padded to
    32): ``(inputs, samples)``."""
    out = MODELS.build(PREPROCESSOR)(pipeline_data(rgbs, resize), False)
    return out['inputs'], out['data_samples']


def test_build_from_registry_frozen():
    init_default_scope('mmdet')
    proposer = MODELS.build(dict(type='SAMProposer', model_cfg=TINY_SAM, points_per_side=4))
    assert isinstance(proposer, SAMProposer)
    assert not any(p.requires_grad for p in proposer.parameters())
    before = {k: v.clone() for k, v in proposer.state_dict().items()}
    proposer.init_weights()  # what the runner calls: SAM's weights stay
    proposer.train()
    assert not proposer.training and not proposer.sam.training
    assert all(torch.equal(v, before[k]) for k, v in proposer.state_dict().items())
    # next to a trainable layer, the optimizer of MaskCLIP's configs sees that layer only
    net = nn.Module()
    net.proposer, net.head = proposer, nn.Linear(4, 4)
    cfg = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4))
    wrapper = TrainableParamsOptimWrapperConstructor(cfg)(net)
    seen = {id(p) for g in wrapper.optimizer.param_groups for p in g['params']}
    assert seen == {id(p) for p in net.head.parameters()}
    inputs, samples = batch(images()[:1])
    with torch.enable_grad():
        proposals = proposer(inputs, samples)
    assert not proposals.mask_logits.requires_grad


def shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_official_model_types_and_builder():
    """``model_type`` builds segment_anything's official SAMs; the builder's
    defaults are ViT-B (shapes only: on the meta device, no weights)."""
    with torch.device('meta'):
        for model_type in ('vit_b', 'vit_l', 'vit_h'):
            official = segment_anything.sam_model_registry[model_type]()
            assert shapes(SAMProposer(model_type=model_type).sam) == shapes(official)
        assert shapes(build_sam_model()) == shapes(segment_anything.sam_model_registry['vit_b']())
    with pytest.raises(ValueError, match='Unknown SAM model_type'):
        SAMProposer(model_type='vit_x')


def test_proposals_are_sams_masks_through_the_pipeline_geometry():
    proposer = tiny_proposer()
    rgbs = images()
    inputs, samples = batch(rgbs)
    batch_size = tuple(inputs.shape[-2:])
    assert batch_size == (96, 128)  # (80, 112) and (96, 72), padded to 32
    proposals = proposer(inputs, samples)
    assert proposals.mask_logits.shape[-2:] == batch_size
    for i, (rgb, sample) in enumerate(zip(rgbs, samples)):
        meta = sample.metainfo
        assert meta['flip'] and meta['scale_factor'] == (2.0, 2.0)
        # the image SAM sees is the original, recovered from the batch
        assert np.array_equal(proposer.original_image(inputs[i], meta, batch_size), rgb)
        masks, scores = reference(proposer, rgb)
        assert len(masks) == 3 * KEEP_ALL['points_per_side']**2
        valid = proposals.valid[i]
        assert valid.sum() == len(masks)
        torch.testing.assert_close(proposals.objectness[i][valid], scores.clamp(0, 1))
        logits = proposals.mask_logits[i][valid]
        img_h, img_w = meta['img_shape']
        assert not (logits[:, img_h:] > 0).any() and not (logits[:, :, img_w:] > 0).any()
        back = to_original_geometry(logits, meta, batch_size, rgb.shape[:2]) > 0
        assert torch.equal(back, masks)
        # and in the batch: SAM's masks upsampled x2 and flipped
        up = masks.repeat_interleave(2, 1).repeat_interleave(2, 2).flip(-1)
        inside = logits[:, :img_h, :img_w] > 0
        assert (inside == up).float().mean() > 0.97  # bilinear vs nearest at edges


def test_original_image_undoes_a_bilinear_resize():
    """A non-integer bilinear resize (mmdet's default) is undone up to
    resampling: the recovered image is the original, slightly blurred."""
    rgbs = images(seed=1, noise=1)  # flat background: resampling errs at edges only
    inputs, samples = batch(rgbs, dict(type='Resize', scale_factor=1.5, keep_ratio=True))
    for image, sample, rgb in zip(inputs, samples, rgbs):
        got = SAMProposer.original_image(image, sample.metainfo, inputs.shape[-2:])
        assert got.shape == rgb.shape and got.dtype == np.uint8
        diff = np.abs(got.astype(float) - rgb)
        assert diff.mean() < 5 and np.median(diff) == 0, diff.mean()
        # without the unflip it would be far off
        assert np.abs(got[:, ::-1].astype(float) - rgb).mean() > 4 * diff.mean()


@pytest.mark.parametrize('score', ['predicted_iou', 'stability_score'])
def test_max_proposals_keeps_the_best(score):
    rgbs = images()
    inputs, samples = batch(rgbs)
    capped = tiny_proposer(max_proposals=5, score=score)
    proposals = capped(inputs, samples)
    assert proposals.mask_logits.shape[1] == 5 and proposals.valid.all()
    for i, (rgb, sample) in enumerate(zip(rgbs, samples)):
        masks, scores = reference(capped, rgb, score)
        torch.testing.assert_close(proposals.objectness[i], scores[:5].clamp(0, 1))
        back = to_original_geometry(proposals.mask_logits[i], sample.metainfo, inputs.shape[-2:],
                                    rgb.shape[:2]) > 0
        assert torch.equal(back, masks[:5])
    assert (proposals.objectness[:, :-1] >= proposals.objectness[:, 1:]).all()


def test_no_masks_gives_no_valid_proposals():
    inputs, samples = batch(images())
    proposals = tiny_proposer(pred_iou_thresh=2.0)(inputs, samples)  # nothing passes
    assert proposals.mask_logits.shape == (2, 1, *inputs.shape[-2:])
    assert not proposals.valid.any() and (proposals.mask_logits < 0).all()


def test_maskclip_classifies_sams_masks():
    """In a MaskCLIP (no RMA), the proposals it outputs on the original image
    are SAM's own masks; SAM stays out of its checkpoints and optimizer."""
    init_default_scope('mmdet')
    model = MODELS.build(
        dict(
            type='MaskCLIP',
            clip=make_tiny_clip(),
            proposer=dict(type='SAMProposer', model_cfg=TINY_SAM, **KEEP_ALL),
            head=None,
            class_names=['thing', 'stuff'],
            output_proposals=True,
            data_preprocessor=PREPROCESSOR)).eval()
    distinct_scores(model.proposer)
    assert not any(key.startswith('proposer.') for key in model.state_dict())
    cfg = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4))
    with pytest.raises(ValueError, match='no trainable parameters'):
        TrainableParamsOptimWrapperConstructor(cfg)(model)
    rgbs = images()[:1]
    pred = model.test_step(pipeline_data(rgbs))[0]
    masks, _ = reference(model.proposer, rgbs[0])
    assert torch.equal(pred.pred_proposals.mask_logits > 0, masks)
    assert pred.pred_sem_seg.sem_seg.shape[-2:] == rgbs[0].shape[:2]


@pytest.mark.parametrize('model_type', ['vit_h', 'vit_l', 'vit_b'])
def test_missing_checkpoint_names_the_download(model_type, tmp_path):
    path = str(tmp_path / 'missing.pth')
    with pytest.raises(SAMWeightsNotFoundError) as info:
        SAMProposer(model_type=model_type, checkpoint=path)
    message = str(info.value)
    assert isinstance(info.value, ProposerWeightsNotFoundError)
    assert SAM_CHECKPOINT_URLS[model_type] in message and path in message
    assert 'model.proposer.checkpoint=' in message
    assert message.count('. ') == 0 and message.endswith('.')  # one sentence


def test_failed_download_is_a_weights_error(monkeypatch):

    def offline(*args, **kwargs):
        raise OSError('no network')

    monkeypatch.setattr(torch.hub, 'load_state_dict_from_url', offline)
    with pytest.raises(SAMWeightsNotFoundError, match='model.proposer.checkpoint='):
        SAMProposer(model_cfg=TINY_SAM, checkpoint=SAM_CHECKPOINT_URLS['vit_b'])


def test_checkpoint_is_loaded_strictly(tmp_path):
    source = tiny_proposer(seed=1)
    path = str(tmp_path / 'tiny_sam.pth')
    torch.save(source.sam.state_dict(), path)
    loaded = tiny_proposer(seed=2, checkpoint=path)
    for key, value in source.sam.state_dict().items():
        if 'iou_prediction_head.layers.2.bias' not in key:  # tiny_proposer sets it
            assert torch.equal(loaded.sam.state_dict()[key], value), key
    with pytest.raises(RuntimeError, match='size mismatch'):  # another architecture
        SAMProposer(model_cfg=dict(TINY_SAM, encoder_embed_dim=64), checkpoint=path)


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'segment_anything', None)
    with pytest.raises(ImportError, match='pip install segment-anything'):
        SAMProposer(model_cfg=TINY_SAM)


def test_generator_cfg_cannot_override_the_arguments():
    with pytest.raises(ValueError, match='output_mode'):
        SAMProposer(model_cfg=TINY_SAM, generator_cfg=dict(output_mode='coco_rle'))
    proposer = SAMProposer(model_cfg=TINY_SAM, generator_cfg=dict(crop_n_layers=1))
    assert proposer.mask_generator().crop_n_layers == 1


def test_dump_tool_writes_sams_proposals(tmp_path):
    """SAM's proposals dumped once and read back by PrecomputedProposer are
    the ones SAMProposer gives on the same batch."""
    from mmdet.registry import DATASETS
    from mmengine.config import Config
    from synthetic_coco import write_coco_panoptic
    from tiny_maskclip import panoptic_dataset

    from mmmaskclip.apis import dump_proposals
    from mmmaskclip.models.proposers import PrecomputedProposer
    data = write_coco_panoptic(str(tmp_path / 'coco'), num_images=2, image_size=(40, 56))
    dataset = panoptic_dataset(data, test=True)
    cfg = Config(
        dict(
            default_scope='mmdet',
            model=dict(data_preprocessor=PREPROCESSOR),
            test_dataloader=dict(batch_size=1, dataset=dataset)))
    proposer = tiny_proposer(max_proposals=6)
    out = str(tmp_path / 'sam')
    assert dump_proposals(cfg, out, proposer=proposer, scale=1.0, progress=False)['written'] == 2
    init_default_scope('mmdet')
    batch = MODELS.build(PREPROCESSOR)(pseudo_collate(
        [DATASETS.build(dataset)[i] for i in range(2)]), False)
    direct = proposer.propose(batch['inputs'], batch['data_samples'])
    read = PrecomputedProposer(proposal_dir=out).propose(batch['inputs'], batch['data_samples'])
    assert torch.equal(direct.valid, read.valid) and int(direct.valid.sum()) > 0
    assert torch.equal(direct.mask_logits[direct.valid] > 0, read.mask_logits[read.valid] > 0)
