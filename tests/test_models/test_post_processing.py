# Copyright (c) mmmaskclip contributors. All rights reserved.
"""Universal post-processing on constructed logits, against hand results."""
import math

import pytest
import torch

from mmmaskclip.models.post_processing import INSTANCE_OFFSET, UniversalPostProcessor, void_column

BIG = 20.0


def one_hot_logits(labels, num_classes, strength=BIG):
    """Rows whose softmax puts ~1 on ``labels`` (column ``num_classes`` = void)."""
    logits = torch.zeros(len(labels), num_classes + 1)
    for i, label in enumerate(labels):
        logits[i, label] = strength
    return logits


def box_mask(h, w, y0, y1, x0, x1, inside=BIG, outside=-BIG):
    m = torch.full((h, w), outside)
    m[y0:y1, x0:x1] = inside
    return m


def test_semantic_reaches_the_last_class():
    masks = torch.stack([box_mask(4, 6, 0, 4, 0, 3), box_mask(4, 6, 0, 4, 3, 6)])
    cls = one_hot_logits([2, 0], num_classes=3)  # proposal 0 -> last class
    sem = UniversalPostProcessor().semantic(cls.softmax(-1), masks).sem_seg[0]
    assert (sem[:, :3] == 2).all() and (sem[:, 3:] == 0).all()


def test_semantic_void_label_marks_what_void_wins():
    masks = torch.stack([box_mask(4, 6, 0, 4, 0, 3), box_mask(4, 6, 0, 4, 3, 6)])
    cls = one_hot_logits([1, 2], num_classes=2)  # proposal 1 is void ('other')
    probs = cls.softmax(-1)
    forced = UniversalPostProcessor().semantic(probs, masks).sem_seg[0]
    assert (forced == 1).all()  # Mask2Former's rule: every pixel gets a class
    sem = UniversalPostProcessor(semantic_void_label=255).semantic(probs, masks).sem_seg[0]
    assert (sem[:, :3] == 1).all() and (sem[:, 3:] == 255).all()


def test_panoptic_by_hand():
    """Things 0, 1; stuff 2; C = 3 so VOID = 3."""
    h, w = 8, 8
    masks = torch.stack([
        box_mask(h, w, 0, 3, 0, 3),  # A thing 0
        box_mask(h, w, 0, 3, 5, 8),  # B thing 0
        box_mask(h, w, 5, 8, 0, 4),  # C stuff 2
        box_mask(h, w, 5, 8, 4, 8),  # D stuff 2 -> merged with C
        box_mask(h, w, 0, 8, 0, 8),  # E void-labelled, everywhere -> dropped
        box_mask(h, w, 3, 5, 0, 8),  # F below the score threshold -> dropped
        box_mask(h, w, 0, 3, 0, 4),  # G thing 1, mostly under A -> dropped
    ])
    cls = one_hot_logits([0, 0, 2, 2, 3, 1, 1], num_classes=3)
    cls[5] = torch.tensor([0.0, 0.5, 0.0, 0.0])  # best prob ~0.38 < 0.5
    cls[6, 1] = 3.0  # p ~0.87: loses A's pixels (A scores ~1)
    pan = UniversalPostProcessor(
        object_mask_thr=0.5, overlap_thr=0.5)(
            cls, masks, num_things=2)['pred_panoptic_seg'].sem_seg[0]
    expected = torch.full((h, w), 3, dtype=torch.int32)
    expected[0:3, 0:3] = 0 + 1 * INSTANCE_OFFSET
    expected[0:3, 5:8] = 0 + 2 * INSTANCE_OFFSET
    expected[5:8, :] = 2
    # G keeps 3 of its 12 pixels (column 3): 3/12 < 0.5 -> dropped, VOID there
    assert torch.equal(pan, expected)
    # with a low overlap threshold G survives on its own column as thing 1
    pan = UniversalPostProcessor(overlap_thr=0.2)(cls, masks, 2)['pred_panoptic_seg'].sem_seg[0]
    assert (pan[0:3, 3] == 1 + 3 * INSTANCE_OFFSET).all()


@pytest.mark.parametrize('topk', ['all', 'things'])
def test_instance_topk_and_scores(topk):
    """'all' (Mask2Former's and the authors' rule): the top-k pairs over all
    classes, then stuff pairs dropped; 'things': the top-k thing pairs."""
    h, w = 6, 6
    inside = math.log(3.0)  # sigmoid = 0.75: mask score is exactly 0.75
    masks = torch.stack(
        [box_mask(h, w, 1, 3, 1, 4, inside=inside),
         box_mask(h, w, 2, 6, 0, 2, inside=inside)])
    cls = torch.tensor([
        [2.0, 0.0, 5.0, -math.inf],  # mostly stuff class 2
        [0.5, 1.0, 0.0, -math.inf]
    ])
    post = UniversalPostProcessor(max_per_image=3, instance_topk=topk)
    inst = post(cls, masks, num_things=2)['pred_instances']
    probs = cls.softmax(-1)[:, :-1]
    if topk == 'things':
        top = probs[:, :2].flatten().topk(3)
        labels, proposals = top.indices % 2, top.indices // 2
    else:  # top 3 of all 6 pairs: (0, stuff 2), (1, 1), (1, 0)
        top = probs.flatten().topk(3)
        thing = top.indices % 3 < 2
        top = (top.values[thing], top.indices[thing])
        labels, proposals = top[1] % 3, top[1] // 3
        assert len(labels) == 2  # the stuff pair took one of the 3 places
    assert torch.equal(inst.labels, labels)  # only labels 0 and 1
    torch.testing.assert_close(inst.scores, top[0] * 0.75)
    assert inst.masks.shape == (len(labels), h, w)
    boxes = {0: [1.0, 1.0, 4.0, 3.0], 1: [0.0, 2.0, 2.0, 6.0]}  # x1, y1, x2, y2
    assert inst.bboxes.tolist() == [boxes[int(q)] for q in proposals]
    all_things = post(cls, masks, num_things=3)['pred_instances']  # a user vocabulary
    assert 2 in all_things.labels.tolist()  # the last class is reachable


def test_bad_instance_topk():
    with pytest.raises(ValueError, match='instance_topk'):
        UniversalPostProcessor(instance_topk='stuff')


def test_void_column_never_shifts_labels():
    cls = torch.tensor([[1.0, 4.0], [3.0, 0.0], [9.0, 9.0]])
    valid = torch.tensor([True, True, False])
    with_void = void_column(cls, valid)
    assert with_void.shape == (3, 3)
    assert torch.equal(with_void[:2, :2], cls[:2]) and with_void[:2, 2].isinf().all()
    assert with_void[2].argmax() == 2  # padded -> void
    masks = torch.stack([box_mask(2, 2, 0, 2, 0, 2)] * 3)
    out = UniversalPostProcessor()(with_void, masks, num_things=2)
    assert out['pred_sem_seg'].sem_seg.max() <= 1
    assert set(out['pred_instances'].labels.tolist()) <= {0, 1}
    # a void text column (the authors' 'other') that wins drops the proposal
    other = torch.tensor([[0.0, 0.0, 9.0]])
    pan = UniversalPostProcessor()(void_column(other, append=False), masks[:1], 2)
    assert (pan['pred_panoptic_seg'].sem_seg == 2).all()  # all VOID (= C)


def test_bad_thing_count():
    with pytest.raises(ValueError, match='num_things'):
        UniversalPostProcessor()(torch.zeros(1, 3), torch.zeros(1, 2, 2), num_things=3)


def test_objectness_multiplies_class_scores():
    h, w = 4, 4
    masks = torch.stack([box_mask(h, w, 0, 4, 0, 2), box_mask(h, w, 0, 4, 2, 4)])
    cls = one_hot_logits([0, 1], num_classes=2, strength=5.0)
    post = UniversalPostProcessor(object_mask_thr=0.5)
    plain = post(cls, masks, num_things=2)
    low = post(cls, masks, num_things=2, objectness=torch.tensor([1.0, 0.2]))
    torch.testing.assert_close(low['pred_instances'].scores[1:].max(),
                               plain['pred_instances'].scores[1:].max() * 0.2)
    # proposal 1's score 0.2 * ~0.99 falls below the panoptic threshold
    assert (plain['pred_panoptic_seg'].sem_seg[0, :, 2:] == 1 + 2 * INSTANCE_OFFSET).all()
    assert (low['pred_panoptic_seg'].sem_seg[0, :, 2:] == 2).all()  # VOID
