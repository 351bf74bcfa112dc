# Copyright (c) mmmaskclip contributors. All rights reserved.
"""The one home of mask tensors: stacking per-image masks and the resize rule."""
import pytest
import torch
import torch.nn.functional as F

from mmmaskclip.models.utils import (PAD_MASK_LOGIT, as_mask_logits, resize_mask_logits,
                                     stack_mask_logits)


def test_stack_pads_counts_and_keeps_values():
    a = torch.randn(3, 8, 10)
    b = torch.zeros(1, 8, 10, dtype=torch.bool)
    b[0, 2:5, 3:7] = True
    empty = torch.zeros(0, 8, 10)
    logits, valid, scores = stack_mask_logits([a, b, empty],
                                              scores=[torch.rand(3),
                                                      torch.rand(1),
                                                      torch.rand(0)])
    assert logits.shape == (3, 3, 8, 10) and valid.tolist() == [[True] * 3, [True, False, False],
                                                                [False] * 3]
    assert torch.equal(logits[0], a)
    assert torch.equal(logits[1, 0], as_mask_logits(b[0]))
    assert (logits[1, 1:] == PAD_MASK_LOGIT).all() and (logits[2] == PAD_MASK_LOGIT).all()
    assert scores.shape == (3, 3) and (scores[1, 1:] == 0).all()
    assert stack_mask_logits([a, b], scores=[torch.rand(3), None])[2] is None
    assert stack_mask_logits([empty])[0].shape == (1, 1, 8, 10)  # one padded slot
    with pytest.raises(ValueError, match=r'\(M, h, w\)'):
        stack_mask_logits([a[0]])


def test_resize_rule():
    x = torch.randn(2, 3, 40, 40)
    torch.testing.assert_close(
        resize_mask_logits(x, (24, 24)),  # mild: plain bilinear
        F.interpolate(x, size=(24, 24), mode='bilinear'))
    torch.testing.assert_close(
        resize_mask_logits(x, (10, 30)),  # > 2x: antialiased
        F.interpolate(x, size=(10, 30), mode='bilinear', antialias=True))
    torch.testing.assert_close(
        resize_mask_logits(x, (10, 30), antialias=False),
        F.interpolate(x, size=(10, 30), mode='bilinear'))
    assert resize_mask_logits(x, (40, 40)) is x
    assert resize_mask_logits(x[:, :0], (5, 5)).shape == (2, 0, 5, 5)
    # nearest upsampling by 2 is inverted exactly
    small = torch.randn(4, 6, 6)
    up = small.repeat_interleave(2, -1).repeat_interleave(2, -2)
    torch.testing.assert_close(resize_mask_logits(up, (6, 6)), small)
