# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The encoder frame: masks move exactly as the image does (both input modes),
the padding holds the pixel mean, and points are read from low-resolution
masks as from their upsampled version."""
import pytest
import torch
import torch.nn.functional as F
from mmcv.ops import point_sample
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from mmmaskclip.models import MaskCLIP
from mmmaskclip.models.geometry import (encoder_size, images_to_encoder, masks_from_encoder,
                                        masks_to_encoder, point_sample_resized)

RMA = dict(type='RelativeMaskAttention', style='paper')


def tiny_maskclip(clip, encoder_input_size=None, **kwargs):
    """A training-free tiny MaskCLIP (ground-truth proposals, one paper-style
    RMA layer whose refinement is exactly zero at initialisation)."""
    model = MaskCLIP(
        clip=clip,
        proposer=dict(type='GTMaskProposer'),
        visual_encoder=dict(type='MaskCLIPVisualEncoder', mask_attention_overrides={1: RMA}),
        head=None,
        class_names=['box', 'background'],
        num_things_classes=1,
        encoder_input_size=encoder_input_size,
        **kwargs)
    model.init_weights()
    return model.eval()


def box_sample(img_shape=(60, 62), batch=(64, 64), rows=(10, 40), cols=(20, 50)):
    """One sample padded to ``batch`` (pad_size_divisor=32) and its box."""
    sample = DetDataSample(
        metainfo=dict(
            img_shape=img_shape,
            ori_shape=img_shape,
            batch_input_shape=batch,
            scale_factor=(1.0, 1.0)))
    mask = torch.zeros(1, *batch, dtype=torch.bool)
    mask[0, rows[0]:rows[1], cols[0]:cols[1]] = True
    return sample, InstanceData(labels=torch.tensor([0]), masks=mask)


def test_patch14_padded_batch_keeps_masks_in_place(tiny_clip_p14):
    """encoder_input_size=None pads the 64x64 batch to 70x70 (patch 14): the
    proposal must be padded like the image, not stretched (on the previous
    main the refined mask spanned rows 11-43 / cols 22-54)."""
    model = tiny_maskclip(tiny_clip_p14)
    sample, gt = box_sample()
    images = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        proposals, regions, _ = model.encode(images, [sample], model.vocabulary([sample]), [gt])
    assert regions.mask_logits[-1].shape[-2:] == (70, 70)
    refined = model.batch_masks(proposals, regions, (64, 64))[-1][0, 0]
    assert refined.shape == (64, 64)
    assert torch.equal(refined > 0, gt.masks[0])
    # the predicted masks in the original frame are the box too
    with torch.no_grad():
        pred = model.to_image(
            model.batch_masks(proposals, regions, (64, 64))[-1][0],
            sample.metainfo, (64, 64),
            rescale=True).full()
    assert torch.equal(pred[0] > 0, gt.masks[0, :60, :62])


@pytest.mark.parametrize('input_size', [None, (112, 224)])
@pytest.mark.parametrize('batch,patch', [((64, 64), (14, 14)), ((96, 64), (16, 16)),
                                         ((64, 96), (14, 14))])
def test_masks_follow_the_image(input_size, batch, patch):
    """A mask equal to one channel of the image lands where that channel
    lands, in both modes (bilinear for the image here so that both use the
    same interpolation)."""
    torch.manual_seed(0)
    content = F.interpolate(torch.randn(1, 1, 8, 8), size=batch, mode='bilinear')
    images = content.expand(-1, 3, -1, -1)
    enc_images = images_to_encoder(images, patch, input_size, mode='bilinear', antialias=False)
    enc_masks = masks_to_encoder(content, batch, patch, input_size, antialias=False)
    size = encoder_size(batch, patch, input_size)
    assert enc_images.shape[-2:] == enc_masks.shape[-2:] == size
    inside = (slice(None), slice(None), slice(0, batch[0]), slice(0, batch[1])) \
        if input_size is None else (Ellipsis, )
    torch.testing.assert_close(enc_masks[inside], enc_images[:, :1][inside])
    if input_size is None:  # the padding: zero image (CLIP's mean), empty masks
        assert (enc_images[..., batch[0]:, :] == 0).all()
        assert (enc_masks[..., batch[0]:, :] < -100).all()
        assert (enc_masks[..., batch[1]:] < -100).all()
        assert torch.equal(masks_from_encoder(enc_masks, batch), content)


def test_proposals_go_straight_to_the_encoder_size():
    """Quarter-resolution proposals are resized once to the encoder input
    (not up to the padded batch and back down)."""
    quarter = torch.randn(1, 3, 16, 24)
    out = masks_to_encoder(quarter, (64, 96), (14, 14), (56, 56), antialias=False)
    ref = F.interpolate(quarter, size=(56, 56), mode='bilinear', align_corners=False)
    torch.testing.assert_close(out, ref)


def test_padding_holds_the_pixel_mean():
    """The proposer sees zeros in the padding after its normalisation (mmdet
    and detectron2 pad the normalised batch with zeros: the pixel mean);
    CLIP sees the pixel mean there, as in the authors' code."""
    import os.path as osp

    from conftest import REPO
    from mmengine.config import Config
    from tiny_maskclip import shrink_mask2former

    from mmmaskclip.models import DetectorProposer
    from mmmaskclip.models.detectors.maskclip import IMAGENET_MEAN
    from mmmaskclip.models.utils import fill_padding
    sample, _ = box_sample(img_shape=(50, 40))
    images = torch.zeros(1, 3, 64, 64)
    images[:, :, :50, :40] = 200
    filled = fill_padding(images, [sample], IMAGENET_MEAN)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    assert torch.equal(filled[0, :, 50:], mean.expand(3, 14, 64))
    assert torch.equal(filled[0, :, :50, 40:], mean.expand(3, 50, 24))
    assert (filled[0, :, :50, :40] == 200).all()
    assert fill_padding(images[:, :, :50, :40], [sample], 0.0).data_ptr() == \
        images[:, :, :50, :40].data_ptr()  # nothing padded: no copy

    detector = Config.fromfile(
        osp.join(REPO,
                 'configs/proposals/mask2former_r50_8xb2-lsj-50e_coco-panoptic_class-agnostic.py'))
    shrink_mask2former(detector.model)
    proposer = DetectorProposer(detector=detector.model)
    seen = []
    extract = proposer.detector.extract_feat
    proposer.detector.extract_feat = lambda x: seen.append(x) or extract(x)
    proposer(images, [sample])
    assert (seen[0][..., 50:, :] == 0).all() and (seen[0][..., :50, 40:] == 0).all()
    assert (seen[0][..., :50, :40] != 0).all()


@pytest.mark.parametrize('low,size', [((21, 21), (64, 64)), ((24, 24), (64, 96)),
                                      ((40, 30), (32, 20)), ((7, 9), (7, 9))])
def test_point_sample_resized_equals_the_upsampled_masks(low, size):
    torch.manual_seed(0)
    masks = torch.randn(5, 1, *low, dtype=torch.float64, requires_grad=True)
    coords = torch.rand(5, 300, 2, dtype=torch.float64)
    coords[:, :4] = torch.tensor([[0., 0.], [1., 1.], [0., 1.], [0.999, 0.001]])
    ref = point_sample(
        F.interpolate(masks, size=size, mode='bilinear', align_corners=False), coords)
    out = point_sample_resized(masks, coords, size)
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=0)
    grad, = torch.autograd.grad(out.sum(), masks)
    grad_ref, = torch.autograd.grad(ref.sum(), masks)
    torch.testing.assert_close(grad, grad_ref, atol=1e-10, rtol=0)
