# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Property tests (hypothesis) of the mask geometry (original image <->
padded batch <-> encoder input) and of the universal post-processor, over
random image sizes, resizes, flips, paddings, mask counts and vocabularies.

Derandomised (the same examples on every run); the encoder and RMA
properties live in ``test_properties.py``.
"""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmmaskclip.models.geometry import (encoder_size, flip_logits, images_to_encoder,
                                        masks_from_encoder, masks_to_encoder, to_batch_geometry,
                                        to_original_geometry)
from mmmaskclip.models.post_processing import INSTANCE_OFFSET, UniversalPostProcessor, void_column
from mmmaskclip.models.utils import PAD_MASK_LOGIT

PROPERTY = dict(deadline=None, derandomize=True, database=None)
FLIPS = [None, 'horizontal', 'vertical', 'diagonal']


def randn(gen, *shape, scale=1.0):
    return scale * torch.randn(*shape, generator=gen)


# ------------------------------------------------------------------ geometry
@st.composite
def samples(draw, resize=True):
    """Metainfo of a resized (as mmdet's ``Resize`` records it: ``scale_factor``
    ``(w, h)``), maybe flipped sample, its padded batch size and a generator."""
    ori = (draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    img = (draw(st.integers(1, 40)), draw(st.integers(1, 40))) if resize else ori
    flip = draw(st.sampled_from(FLIPS))
    meta = dict(
        ori_shape=ori,
        img_shape=img,
        scale_factor=(img[1] / ori[1], img[0] / ori[0]),
        flip=flip is not None,
        flip_direction=flip)
    batch = (img[0] + draw(st.integers(0, 9)), img[1] + draw(st.integers(0, 9)))
    return meta, batch, torch.Generator().manual_seed(draw(st.integers(0, 2**16)))


def unflipped(meta):
    return dict(meta, flip=False, flip_direction=None)


@settings(max_examples=60, **PROPERTY)
@given(sample=samples(resize=False), num=st.integers(0, 4))
def test_batch_round_trip_is_exact_without_resize(sample, num):
    """Original -> padded batch -> original gives the logits back bit for bit;
    the batch holds the (flipped) image at the top left and padding elsewhere."""
    meta, batch, gen = sample
    (img_h, img_w) = meta['img_shape']
    logits = randn(gen, num, img_h, img_w, scale=5)
    in_batch = to_batch_geometry(logits, meta, batch)
    assert in_batch.shape == (num, *batch)
    image = logits if not meta['flip'] else flip_logits(logits, meta['flip_direction'])
    assert torch.equal(in_batch[:, :img_h, :img_w], image)
    assert (in_batch[:, img_h:] == PAD_MASK_LOGIT).all()
    assert (in_batch[:, :, img_w:] == PAD_MASK_LOGIT).all()
    back = to_original_geometry(in_batch, meta, batch, meta['ori_shape'], chunk_size=3)
    assert torch.equal(back, logits)


@settings(max_examples=60, **PROPERTY)
@given(sample=samples(), num=st.integers(0, 4), low_res=st.booleans())
def test_batch_round_trip_with_resize(sample, num, low_res):
    """With any resize: shapes right, values finite, constants kept, the
    padding never reaches the original frame, and flips are inverted."""
    meta, batch, gen = sample
    ori, (img_h, img_w) = meta['ori_shape'], meta['img_shape']
    logits = randn(gen, num, *ori, scale=5)
    in_batch = to_batch_geometry(logits, meta, batch)
    assert in_batch.shape == (num, *batch) and torch.isfinite(in_batch).all()
    assert (in_batch[:, img_h:] == PAD_MASK_LOGIT).all()
    assert (in_batch[:, :, img_w:] == PAD_MASK_LOGIT).all()
    assert (in_batch[:, :img_h, :img_w].abs() < 100).all()  # no padding inside the image
    # garbage in the padding does not reach the original frame
    garbage = in_batch.clone()
    garbage[:, img_h:] = randn(gen, *garbage[:, img_h:].shape, scale=1e3)
    garbage[:, :, img_w:] = randn(gen, *garbage[:, :, img_w:].shape, scale=1e3)
    back = to_original_geometry(in_batch, meta, batch, ori)
    assert back.shape == (num, *ori) and back.dtype == torch.float32
    assert torch.equal(to_original_geometry(garbage, meta, batch, ori), back)
    # flips are inverted: a flipped sample comes back as the unflipped one
    plain = to_batch_geometry(logits, unflipped(meta), batch)
    assert torch.equal(to_original_geometry(plain, unflipped(meta), batch, ori), back)
    # constant logits stay constant through resizes (any resolution of the batch)
    const = torch.linspace(-3, 3, num)[:, None, None].expand(num, *ori)
    size = ((batch[0] + 1) // 2, (batch[1] + 1) // 2) if low_res else batch
    ones_batch = torch.ones(num, *size) * const[:, :1, :1]
    torch.testing.assert_close(
        to_original_geometry(ones_batch, meta, batch, ori), const, atol=1e-5, rtol=0)


@st.composite
def encoder_frames(draw):
    """A padded batch size, a patch size and an optional squash size."""
    batch = (draw(st.integers(1, 48)), draw(st.integers(1, 48)))
    patch = draw(st.sampled_from([(14, 14), (16, 16), (4, 6)]))
    input_size = None
    if draw(st.booleans()):
        input_size = tuple(patch[i] * draw(st.integers(1, 4)) for i in range(2))
    return batch, patch, input_size, torch.Generator().manual_seed(draw(st.integers(0, 2**16)))


@settings(max_examples=60, **PROPERTY)
@given(frame=encoder_frames(), num=st.integers(0, 3))
def test_encoder_frame(frame, num):
    """Encoder inputs are patch multiples; padded mode: the smallest such
    size, image and masks padded (zero pixels, empty masks) and cropped back
    exactly; masks move as the image does (same bilinear resize)."""
    batch, patch, input_size, gen = frame
    size = encoder_size(batch, patch, input_size)
    assert size[0] % patch[0] == 0 and size[1] % patch[1] == 0
    content = randn(gen, 1, num, *batch, scale=5)
    masks = masks_to_encoder(content, batch, patch, input_size, antialias=False)
    images = images_to_encoder(
        randn(gen, 1, 3, *batch), patch, input_size, mode='bilinear', antialias=False)
    assert masks.shape == (1, num, *size) and images.shape == (1, 3, *size)
    if input_size is not None:
        assert size == input_size
        assert masks_from_encoder(masks, batch, input_size) is masks
        if num:  # masks move as the image does
            same = images_to_encoder(content, patch, input_size, mode='bilinear', antialias=False)
            torch.testing.assert_close(masks, same, atol=1e-5, rtol=0)
        return
    assert all(batch[i] <= size[i] < batch[i] + patch[i] for i in range(2))
    assert torch.equal(masks_from_encoder(masks, batch), content)
    assert (masks[..., batch[0]:, :] == PAD_MASK_LOGIT).all()
    assert (masks[..., batch[1]:] == PAD_MASK_LOGIT).all()
    assert (images[..., batch[0]:, :] == 0).all() and (images[..., batch[1]:] == 0).all()


# ------------------------------------------------------------ post-processing
@st.composite
def post_cases(draw):
    """Options of the post-processor and one image's logits: ``M`` in 0-6,
    ``C`` in 1-5 classes, random, empty and full masks, a void text column
    or none, padded proposals, optional objectness, whole images or bands
    of rows."""
    num, classes = draw(st.integers(0, 6)), draw(st.integers(1, 5))
    height, width = draw(st.integers(1, 10)), draw(st.integers(1, 10))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    kinds = draw(st.lists(st.sampled_from(['random', 'empty', 'full']), min_size=num, max_size=num))
    masks = randn(gen, num, height, width, scale=draw(st.sampled_from([0.1, 3.0, 30.0])))
    for i, kind in enumerate(kinds):
        if kind != 'random':
            masks[i] = (1.0 if kind == 'full' else -1.0) * (1 + masks[i].abs())
    cls = randn(gen, num, classes + 1, scale=draw(st.sampled_from([0.5, 5.0, 30.0])))
    text_void = draw(st.booleans())
    valid = torch.tensor(draw(st.lists(st.booleans(), min_size=num, max_size=num)))
    cls = void_column(cls if text_void else cls[:, :-1], valid.bool(), append=not text_void)
    options = dict(
        object_mask_thr=draw(st.sampled_from([0.0, 0.3, 0.5, 0.9])),
        overlap_thr=draw(st.sampled_from([0.0, 0.5, 0.8, 1.0])),
        max_per_image=draw(st.integers(1, 8)),
        instance_score_thr=draw(st.sampled_from([0.0, 0.1])),
        instance_topk=draw(st.sampled_from(['all', 'things'])),
        semantic_void_label=draw(st.sampled_from([None, 255])),
        band_bytes=draw(st.sampled_from([None, 256 * 2**20, 1, 200])))  # 1: one row a band
    objectness = torch.rand(num, generator=gen) if draw(st.booleans()) else None
    return options, cls, masks, draw(st.integers(0, classes)), objectness


def class_probs(cls, objectness):
    """The post-processor's ``(M, C + 1)`` probabilities, written out."""
    probs = torch.exp(cls - cls.max(-1, keepdim=True).values)
    probs = probs / probs.sum(-1, keepdim=True)
    if objectness is not None:
        probs[:, :-1] *= objectness[:, None]
    return probs


def check_semantic(sem, probs, masks, void_label):
    """Each pixel's label scores within float error of the best (ties allowed)."""
    classes = probs.shape[1] - 1
    scores = torch.zeros(classes + 1, *masks.shape[-2:])
    for m in range(len(masks)):  # sum_m p(c | m) sigmoid(mask_m), one proposal at a time
        scores += probs[m][:, None, None] * torch.sigmoid(masks[m])[None]
    if void_label is None:
        scores = scores[:classes]
        assert ((sem >= 0) & (sem < classes)).all()
    else:
        assert (((sem >= 0) & (sem < classes)) | (sem == void_label)).all()
        sem = sem.masked_fill(sem == void_label, classes)
    chosen = scores.gather(0, sem.long()[None])[0]
    assert (chosen >= scores.max(0).values - 1e-5).all()


def check_panoptic(pan, probs, masks, num_things, thr):
    """Valid ids; each thing segment inside one kept proposal of its class,
    each stuff pixel inside some kept proposal of its class, instance
    numbers 1..K."""
    classes = probs.shape[1] - 1
    scores, labels = probs.max(-1)
    kept = (labels != classes) & (scores > thr)
    assert ((pan == classes) | (pan % INSTANCE_OFFSET < classes)).all()
    instances = []
    for seg in pan.unique().tolist():
        if seg == classes:
            continue
        label, number = seg % INSTANCE_OFFSET, seg // INSTANCE_OFFSET
        inside = pan == seg
        candidates = kept & (probs.argmax(-1) == label)
        covers = (masks[candidates].sigmoid() >= 0.5) & inside  # (K, H, W)
        if number:  # a thing: one proposal covers the whole segment
            assert label < num_things, seg
            assert (covers.flatten(1).sum(1) == int(inside.sum())).any(), seg
            instances.append(number)
        else:  # stuff, merged over proposals of its class
            assert num_things <= label < classes, seg
            assert torch.equal(covers.any(0), inside), seg
    assert sorted(instances) == list(range(1, len(instances) + 1))


def check_instances(inst, masks, num_things, options):
    num = len(inst.labels)
    height, width = masks.shape[-2:]
    assert num <= options['max_per_image']
    assert inst.masks.shape == (num, height, width) and inst.masks.dtype == torch.bool
    assert inst.scores.shape == (num, ) and inst.bboxes.shape == (num, 4)
    assert ((inst.labels >= 0) & (inst.labels < num_things)).all()
    assert torch.isfinite(inst.scores).all()
    assert ((inst.scores > options['instance_score_thr']) & (inst.scores <= 1)).all()
    binary = masks > 0
    for mask in inst.masks:  # every instance mask is a binarised proposal
        assert (binary == mask).flatten(1).all(1).any()
    x1, y1, x2, y2 = inst.bboxes.unbind(-1)
    assert ((0 <= x1) & (x1 <= x2) & (x2 <= width)).all()
    assert ((0 <= y1) & (y1 <= y2) & (y2 <= height)).all()


@settings(max_examples=150, **PROPERTY)
@given(case=post_cases())
def test_post_processor_outputs_are_consistent(case):
    options, cls, masks, num_things, objectness = case
    out = UniversalPostProcessor(**options)(cls, masks, num_things, objectness)
    probs = class_probs(cls, objectness)
    assert not probs.isnan().any()
    sem = out['pred_sem_seg'].sem_seg
    pan = out['pred_panoptic_seg'].sem_seg
    assert sem.shape == pan.shape == (1, *masks.shape[-2:])
    check_semantic(sem[0], probs, masks, options['semantic_void_label'])
    check_panoptic(pan[0], probs, masks, num_things, options['object_mask_thr'])
    check_instances(out['pred_instances'], masks, num_things, options)
